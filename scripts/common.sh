# shellcheck shell=bash
# Shared by scripts/check and scripts/demo (sourced, not run): installs what
# the build needs when it is missing, then configures and builds.
#
# Environment:
#   BUILD_DIR   where to build (default: _build in the source tree, or the
#               source tree itself when it was configured in place). When
#               the tree is configured in place (./configure run in it),
#               automake refuses any other build directory of it; one is then
#               built from a fresh copy of the distributed files (make
#               distdir), kept next to it in BUILD_DIR.src.
#   JOBS        parallel make jobs for the build (default: nproc)
#   NO_DEPS=1   never install packages, only report what is missing

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian package names; libc6-dev is named because gcc only recommends it.
# shellcheck disable=SC2034 # used by the scripts that source this file
build_packages=(autoconf automake libtool pkg-config make gcc libc6-dev bats
	libfuse3-dev fuse3 strace man-db)
# The programs that tests/realprograms.bats runs with and without the library
# (a missing one only skips its test); most are in every Debian system.
# shellcheck disable=SC2034 # used by scripts/check
test_packages=(coreutils diffutils grep sed mawk tar gzip xz-utils bzip2 zstd cpio
	python3 perl sqlite3 git
	valgrind # tests/valgrind.bats (memcheck, helgrind); skips without it
	gdb) # tests/helpers/timeout_stacks: every thread's stack of a test that hangs
# (python3 also makes scripts/bench's tables: scripts/bench-report.)
# Real storages of tests/storage.bats and scripts/bench (tests/storage.bash).
test_packages+=(sshfs openssh-sftp-server rclone mbuffer rsync)

say() { printf '==> %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "${0##*/}" "$*" >&2; }
fail() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# install_packages PKG...: installs those not installed yet (Debian/Ubuntu).
# Runs apt-get update only when something must be installed. Non-interactive.
install_packages() {
	local missing=() pkg status
	if ! command -v dpkg-query > /dev/null || ! command -v apt-get > /dev/null; then
		warn "not a Debian/Ubuntu system: not installing anything; needed: $*"
		return 0
	fi
	for pkg in "$@"; do
		status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2> /dev/null) || status=
		[[ $status == ii* ]] || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	if [[ ${NO_DEPS:-0} == 1 ]]; then
		warn "NO_DEPS=1: not installing missing packages: ${missing[*]}"
		return 0
	fi
	local -a as_root=()
	if ((EUID != 0)); then
		command -v sudo > /dev/null ||
			fail "missing packages: ${missing[*]}; install them as root (sudo is not available)"
		# Without a terminal, sudo must not wait for a password.
		if [[ -t 0 ]]; then as_root=(sudo); else as_root=(sudo -n); fi
	fi
	say "installing: ${missing[*]}"
	local -a apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get
		-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -q -y)
	"${apt[@]}" update || "${apt[@]}" update ||
		fail "apt-get update failed"
	"${apt[@]}" install "${missing[@]}" ||
		fail "apt-get install failed: ${missing[*]}"
}

# choose_build_dir: sets $build.
choose_build_dir() {
	if [[ -n ${BUILD_DIR:-} ]]; then
		build=$BUILD_DIR
	elif [[ -f $top/config.status ]]; then
		# Configured in place: automake refuses a second, VPATH build.
		build=$top
	else
		build=$top/_build
	fi
	mkdir -p "$build"
	build=$(cd "$build" && pwd)
}

# source_dir: sets $src, the sources $build is configured from: $top, or a
# fresh copy of its distributed files when $top is configured in place and
# $build is elsewhere (see BUILD_DIR above).
source_dir() {
	src=$top
	[[ $build != "$top" && -f $top/config.status ]] || return 0
	src=$build.src
	say "the source tree is configured in place: building a copy of it ($src)"
	make -s -C "$top" distdir distdir="$src" > /dev/null || fail "make distdir failed in $top"
}

# configured_from: the absolute source directory of $build's configuration.
configured_from() {
	local dir
	dir=$(sed -n "s/^srcdir='\(.*\)'\$/\1/p" "$build/config.status" 2> /dev/null) &&
		(cd "$build" && cd "$dir" 2> /dev/null && pwd -P)
}

# build_all: autoreconf when needed, configure when needed, make.
build_all() {
	choose_build_dir
	local jobs=${JOBS:-$(nproc 2> /dev/null || echo 2)}
	local input
	local regen=0
	if [[ ! -x $top/configure || ! -f $top/Makefile.in || ! -f $top/build-aux/tap-driver.sh ]]; then
		regen=1
	else
		for input in "$top/configure.ac" "$top/Makefile.am"; do
			[[ $input -nt $top/configure ]] && regen=1
		done
	fi
	if ((regen)); then
		say "autoreconf -fi"
		(cd "$top" && autoreconf -fi) || fail "autoreconf failed"
	fi
	source_dir
	if [[ -f $build/config.status && $(configured_from) != "$(cd "$src" && pwd -P)" ]]; then
		# Configured from the other source tree: its Makefiles would
		# re-run that configure.
		rm -f "$build/config.status" "$build/Makefile"
	fi
	if [[ ! -f $build/config.status || ! -f $build/Makefile ]]; then
		say "configure (in $build)"
		# shellcheck disable=SC2086 # CONFIGURE_FLAGS is a list of words
		(cd "$build" && "$src/configure" ${CONFIGURE_FLAGS:-}) || {
			[[ -f $build/config.log ]] && tail -n 40 "$build/config.log" >&2
			fail "configure failed"
		}
	fi
	say "make -j$jobs"
	make -C "$build" -j"$jobs" || fail "make failed"
}
