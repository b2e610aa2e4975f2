# Shared set-up for the bats suite: `load test_helper` at the top of each file.
#
# The library under test is named in exactly one place, PREFETCH_LIB. Every
# behaviour is checked in three modes: without the library, with it loaded but
# disabled (PREFETCH_DISABLE=1), and enabled; enabled runs write statistics to
# $STATS so that a test can prove prefetching engaged, not only that the
# output matched (a shim that does nothing would match too).

: "${abs_top_builddir:=$(cd "$BATS_TEST_DIRNAME/.." && pwd)}"
: "${abs_top_srcdir:=$(cd "$BATS_TEST_DIRNAME/.." && pwd)}"

PREFETCH_LIB="${PREFETCH_LIB:-$abs_top_builddir/src/.libs/libprefetch.so}"
FAULTINJECT_LIB="$abs_top_builddir/tests/.libs/libfaultinject.so"
HELPERS="$abs_top_builddir/tests/helpers"
SLOWFS="$abs_top_builddir/tests/slowfs"
PREFETCH_WRAPPER="$abs_top_builddir/prefetch"

# stat_sum, stat_max, evict (shared with scripts/)
load measure

# --- sanitized builds (configure --enable-sanitizers) ----------------------------
# A library built with AddressSanitizer, preloaded into programs that are not
# (md5sum, gzip, ...), needs the ASan runtime first in LD_PRELOAD; it pulls in
# the UBSan runtime itself (both are dependencies of the library). The test
# programs of tests/ are instrumented too in such a build. SANITIZER_PRELOAD
# is that runtime followed by a colon, or empty for a normal build: every
# LD_PRELOAD that names the library puts it in front ("$SANITIZER_PRELOAD$PREFETCH_LIB").
# A ThreadSanitizer build (--enable-sanitizers=thread) needs libtsan there
# instead; SANITIZER names the kind: address, thread, or empty.
SANITIZER_PRELOAD=$(ldd "$PREFETCH_LIB" 2> /dev/null |
	awk '$1 ~ /^lib(asan|tsan)\.so/ && $3 ~ /^\// { print $3 ":"; exit }')
case $SANITIZER_PRELOAD in
*/libasan.so*) SANITIZER=address ;;
*/libtsan.so*) SANITIZER=thread ;;
*) SANITIZER= ;;
esac
if [ "$SANITIZER" = thread ]; then
	# TSan reports go to files too (teardown_file fails on them); a process
	# with a report exits with 88. die_after_fork=0: the library restarts
	# its workers in the child of a threaded process, which glibc supports
	# but TSan refuses by default. Reports are checked, not suppressed.
	SANITIZER_LOG_DIR="${BATS_FILE_TMPDIR:-${BATS_RUN_TMPDIR:-${TMPDIR:-/tmp}}}/sanitizer-reports"
	mkdir -p "$SANITIZER_LOG_DIR"
	export TSAN_OPTIONS="halt_on_error=0:exitcode=88:die_after_fork=0:log_path=$SANITIZER_LOG_DIR/tsan"
elif [ -n "$SANITIZER_PRELOAD" ]; then
	# ASan and LeakSanitizer reports go to files, one per process, that
	# teardown_file (below) prints and fails on: a report of a process whose
	# status or stderr a test ignores is not lost. The status of a process
	# with a finding is distinctive: 86 (ASan, leaks), 87 (UBSan, whose
	# reports go to stderr: UBSan ignores log_path next to ASan). Leaks are
	# reported (detect_leaks=1): LSan reports only unreachable memory, which
	# the programs run here leave almost none of at exit; tests/lsan.supp
	# names the exceptions, programs that are not ours.
	SANITIZER_LOG_DIR="${BATS_FILE_TMPDIR:-${BATS_RUN_TMPDIR:-${TMPDIR:-/tmp}}}/sanitizer-reports"
	mkdir -p "$SANITIZER_LOG_DIR"
	export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:log_path=$SANITIZER_LOG_DIR/asan"
	export LSAN_OPTIONS="suppressions=$abs_top_srcdir/tests/lsan.supp:print_suppressions=0"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=0:exitcode=87"
fi

# sanitized: true in a sanitized build.
sanitized() {
	[ -n "$SANITIZER_PRELOAD" ]
}

# allow_late_sanitizer_runtime: for programs run through the prefetch
# wrapper, which puts the library first in LD_PRELOAD: in a sanitized build
# the ASan runtime is then loaded as the library's dependency, which ASan
# refuses unless told (it checks less there: its malloc is not the one used).
allow_late_sanitizer_runtime() {
	[ "$SANITIZER" = address ] || return 0
	ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0"
}

# need_runtime_first_or_skip: skips in a ThreadSanitizer build when a
# program is run through the wrapper, which puts the library first in
# LD_PRELOAD: TSan, unlike ASan, cannot start as the library's dependency
# (the program crashes or hangs in TSan's start-up).
need_runtime_first_or_skip() {
	[ "$SANITIZER" != thread ] ||
		skip "ThreadSanitizer build: libtsan must be preloaded first; the wrapper puts the library first"
}

# sanitizer_reports: prints the sanitizer reports of this test file so far;
# fails when there is one.
sanitizer_reports() {
	sanitized || return 0
	local f status=0
	for f in "$SANITIZER_LOG_DIR"/*; do
		# (Not the warnings alone: "Running thread N was not suspended"
		# comes from the fork child of a process with threads.)
		grep -q 'ERROR\|runtime error\|fatal error\|WARNING: ThreadSanitizer' "$f" 2> /dev/null || continue
		status=1
		echo "--- sanitizer report ${f##*/}:"
		cat "$f"
	done
	return $status
}

# teardown_file: a test file with a sanitizer report fails (a test file that
# needs its own teardown_file must call sanitizer_reports from it).
teardown_file() {
	sanitizer_reports
}

# Test data is freshly written and so sits in the page cache; the library
# would rightly pass such reads through. Tests that prove engagement turn
# that shortcut off; the tests of the shortcut itself turn it back on.
export PREFETCH_SKIP_CACHED=0
# Likewise the test files sit on a local disk, which is passed through by
# default (kernel readahead keeps up there); the engine is tested on it.
export PREFETCH_BLOCK_DEVICES=1
# And the engine reads ahead in parallel: whether the storage rewards it is
# measured (PREFETCH_PARALLEL=auto) in the storage tests, which say so.
export PREFETCH_PARALLEL=1
# And a budget per process: the node's (shared by every process of this user
# on the machine) would let another program, or a second run of this suite,
# refuse the reads a test expects. tests/nodebudget.bats turns it on, in
# mount namespaces of its own.
export PREFETCH_SHARED_BUDGET=0
unset PREFETCH_DISABLE PREFETCH_STATS PREFETCH_DEBUG PREFETCH_WINDOW PREFETCH_CHUNK \
	PREFETCH_THREADS PREFETCH_MAX_MEMORY PREFETCH_MIN_SEQUENTIAL

# common_setup: every test's start (a test file with a setup of its own
# calls it first).
common_setup() {
	[ -r "$PREFETCH_LIB" ] || {
		echo "library not built: $PREFETCH_LIB" >&2
		return 1
	}
	STATS="$BATS_TEST_TMPDIR/stats"
	cd "$BATS_TEST_TMPDIR" || return 1
}

setup() {
	common_setup
}

# mount_setup: the start of tests of mounts: common_setup but for the
# library check (slowfs's own tests do not need the library); $SRC and $MNT
# made; what tests/storage.bash mounts with.
mount_setup() {
	STATS="$BATS_TEST_TMPDIR/stats"
	SRC="$BATS_TEST_TMPDIR/src"
	MNT="$BATS_TEST_TMPDIR/mnt"
	# shellcheck disable=SC2034 # both read by tests/storage.bash
	STORAGE_RELAY="$HELPERS/latency_relay" STORAGE_SLOWFS="$SLOWFS"
	mkdir -p "$SRC" "$MNT"
	cd "$BATS_TEST_TMPDIR" || return 1
}

# make_file PATH BYTES: incompressible data of an exact size.
make_file() {
	head -c "$2" /dev/urandom > "$1"
}

# Cold files: dropped from the page cache before each run of the cold_*
# modes (compare_modes cold_plain cold_disabled cold_prefetch CMD...), for
# what the library leaves alone when it finds the data cached.
COLD_FILES=()

# make_cold_file PATH BYTES: make_file, written to disk, and a cold file.
make_cold_file() {
	make_file "$1" "$2" && sync "$1" && COLD_FILES+=("$1")
}

# evict_cold_files: drops the cold files from the page cache (clean pages,
# nothing maps them); fincore, when there, confirms it.
evict_cold_files() {
	evict --max-cached=0 "${COLD_FILES[@]}"
}

cold_plain() { evict_cold_files && with_plain "$@"; }
cold_disabled() { evict_cold_files && with_disabled "$@"; }
cold_prefetch() { evict_cold_files && with_prefetch "$@"; }

# make_text PATH LINES: numbered text lines (compressible, line-oriented).
make_text() {
	seq -f 'line %08g of the test file, with some words after it' 1 "$2" > "$1"
}

# with_plain CMD...: the command without the library.
with_plain() {
	env -u LD_PRELOAD "$@"
}

# with_disabled CMD...: the library loaded, but PREFETCH_DISABLE=1.
with_disabled() {
	env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_DISABLE=1 "$@"
}

# with_prefetch CMD...: the library enabled, statistics appended to $STATS.
with_prefetch() {
	env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS="$STATS" "$@"
}

# assert_engaged: at least one process served bytes from prefetch buffers,
# read by worker threads.
assert_engaged() {
	local served fetched
	served=$(stat_sum bytes_served)
	fetched=$(stat_sum worker_reads)
	echo "stats: $(cat "$STATS" 2>/dev/null)"
	[ "$served" -gt 0 ] || { echo "no bytes served from prefetch buffers"; return 1; }
	[ "$fetched" -gt 0 ] || { echo "no worker reads"; return 1; }
}

# assert_mmap_engaged: read ahead behind a mapping (PREFETCH_MMAP).
assert_mmap_engaged() {
	echo "stats: $(cat "$STATS" 2> /dev/null)"
	[ "$(stat_sum mmap_mappings)" -gt 0 ] || { echo "no mapping prefetched"; return 1; }
	# Read ahead, or found in the page cache (the disk's own readahead).
	[ $(($(stat_sum mmap_bytes_populated) + $(stat_sum mmap_bytes_cached))) -gt 0 ] ||
		{ echo "nothing read ahead or found cached"; return 1; }
}

# assert_not_engaged: nothing was prefetched.
assert_not_engaged() {
	echo "stats: $(cat "$STATS" 2>/dev/null)"
	[ "$(stat_sum files_prefetched)" -eq 0 ]
}

# compare_modes PLAIN DISABLED ENABLED CMD...: runs CMD through each of the
# three runner functions (stdout and stderr to files in $BATS_TEST_TMPDIR);
# asserts identical stdout and exit status.
compare_modes() {
	local d=$BATS_TEST_TMPDIR mode runner rc=() i=0
	local runners=("$1" "$2" "$3") modes=(plain disabled enabled)
	shift 3
	for runner in "${runners[@]}"; do
		mode=${modes[i++]}
		"$runner" "$@" > "$d/out.$mode" 2> "$d/err.$mode"
		rc+=($?)
	done
	echo "exit status: plain=${rc[0]} disabled=${rc[1]} enabled=${rc[2]}" | tee "$d/status"
	# A sanitizer finding in all three (in a test program) is still one.
	if sanitized && [[ " ${rc[*]} " =~ \ 8[678]\  ]]; then
		echo "a sanitizer reported an error (status 86: ASan/LSan, 87: UBSan, 88: TSan):"
		for mode in "${modes[@]}"; do
			grep -h -A 30 'runtime error\|Sanitizer' "$d/err.$mode" 2> /dev/null
		done | head -n 60
		sanitizer_reports
		return 1
	fi
	[ "${rc[0]}" -eq "${rc[1]}" ] && [ "${rc[0]}" -eq "${rc[2]}" ] || return 1
	cmp "$d/out.plain" "$d/out.disabled" || return 1
	cmp "$d/out.plain" "$d/out.enabled" || return 1
}

# same_in_three_modes CMD...: CMD without the library, loaded-but-disabled
# and enabled give the same stdout and exit status.
same_in_three_modes() {
	compare_modes with_plain with_disabled with_prefetch "$@"
}

# need_root: skip unless running as root.
need_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
}

# need_nobody: skip unless this root can run programs as the user nobody
# (as_nobody). A sanitizer runtime in a process run as nobody could not write
# its reports to the test's log directory (private to root).
need_nobody() {
	need_root
	command -v setpriv > /dev/null || skip "setpriv missing (util-linux)"
	getent passwd nobody > /dev/null || skip "no user nobody"
	getent group nogroup > /dev/null || skip "no group nogroup"
	! sanitized || skip "sanitized build: the runtime's reports cannot follow a process run as nobody"
}

# as_nobody CMD...: CMD as user nobody, group nogroup, no other groups; the
# environment is kept.
as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
}

# need_strace: skip unless strace is installed and may trace here. Sanitized
# builds: LeakSanitizer cannot run under ptrace, so no leak check.
need_strace() {
	command -v strace > /dev/null || skip "strace not installed"
	strace -f -o /dev/null true 2> /dev/null || skip "strace cannot trace here (ptrace not permitted)"
	! sanitized || ASAN_OPTIONS+=:detect_leaks=0
}

# need_fuse: skip unless slowfs is built and FUSE can be mounted here.
need_fuse() {
	[ -x "$SLOWFS" ] || skip "slowfs not built (libfuse3-dev missing)"
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	command -v fusermount3 > /dev/null || skip "fusermount3 missing"
}

# slowfs_mount SRC MNT [SLOWFS OPTIONS...]: mounts tests/slowfs (absolute MNT);
# returns once the mount answers. slowfs daemonizes only after mounting, and
# the first access waits for FUSE INIT, so a daemon that died shows here.
slowfs_mount() {
	local src=$1 mnt=$2
	shift 2
	"$SLOWFS" "$@" "$src" "$mnt" || return 1
	cat "$mnt/.slowfs-stats" > /dev/null
}

# mount_failed_or_skip ERRFILE: after a failed mount whose stderr is in
# ERRFILE: shows it, and skips where FUSE cannot be mounted at all (a
# container without the right); fails otherwise.
mount_failed_or_skip() {
	cat "$1"
	if grep -qiE 'permission denied|not permitted|fuse device not found' "$1"; then
		skip "FUSE cannot be mounted here"
	fi
	return 1
}

# mount_slowfs_or_skip [SLOWFS OPTIONS...]: slowfs of $SRC on $MNT (unless
# set: $BATS_TEST_TMPDIR/src and /mnt, made here); skips where FUSE cannot
# be mounted (need_fuse, mount_failed_or_skip).
mount_slowfs_or_skip() {
	need_fuse
	SRC=${SRC:-$BATS_TEST_TMPDIR/src}
	MNT=${MNT:-$BATS_TEST_TMPDIR/mnt}
	mkdir -p "$SRC" "$MNT"
	slowfs_mount "$SRC" "$MNT" "$@" 2> "$BATS_TEST_TMPDIR/slowfs.err" ||
		mount_failed_or_skip "$BATS_TEST_TMPDIR/slowfs.err"
}

# slowfs_umount MNT: unmounts if mounted (even if the daemon is dead, hence
# /proc/self/mounts rather than a stat); retries while busy, then lazily.
slowfs_umount() {
	local mnt=$1 i
	awk -v m="$mnt" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts || return 0
	for i in 1 2 3 4 5 6 7 8 9 10; do
		fusermount3 -u "$mnt" 2> /dev/null && return 0
		sleep 0.2
	done
	fusermount3 -uz "$mnt"
}

# --- helpers for the invariant and fault-injection tests (tests/helpers) -----------

# need_faultinject: skip unless the test-only fault injector is built.
need_faultinject() {
	[ -r "$FAULTINJECT_LIB" ] || skip "fault injector not built: $FAULTINJECT_LIB"
}

# make_offsets PATH BYTES [--key=K]: offset-encoded data (every 8-byte word
# holds its own offset), which the helper programs check byte by byte.
make_offsets() {
	"$HELPERS/pf_gen" "$@"
}

# with_plain_fi / with_disabled_fi / with_prefetch_fi CMD...: the three modes
# with libfaultinject preloaded after the library; FI_* variables come from
# the environment. When FI_LOG is set, each mode logs to FI_LOG.<mode>.
with_plain_fi() {
	env LD_PRELOAD="$SANITIZER_PRELOAD$FAULTINJECT_LIB" ${FI_LOG:+FI_LOG="$FI_LOG.plain"} "$@"
}
with_disabled_fi() {
	env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB:$FAULTINJECT_LIB" PREFETCH_DISABLE=1 \
		${FI_LOG:+FI_LOG="$FI_LOG.disabled"} "$@"
}
with_prefetch_fi() {
	env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB:$FAULTINJECT_LIB" PREFETCH_STATS="$STATS" \
		${FI_LOG:+FI_LOG="$FI_LOG.enabled"} "$@"
}

# same_in_three_modes_fi CMD...: same_in_three_modes with the injector.
same_in_three_modes_fi() {
	compare_modes with_plain_fi with_disabled_fi with_prefetch_fi "$@"
}

# show_runs: what the last same_in_three_modes(_fi) runs printed, for the
# log of a failing test. To bats's fd 3 (TAP comments) when open: bats
# 1.8's `run -0` drops $output when the status differs.
show_runs() {
	if { true >&3; } 2> /dev/null; then
		show_runs_text | sed 's/^/# /' >&3
	else
		show_runs_text
	fi
}

# show_runs_text: the enabled run's output and errors, and how the plain
# and enabled outputs differ.
show_runs_text() {
	local d="$BATS_TEST_TMPDIR"
	cat "$d/status" 2> /dev/null
	echo "--- enabled stdout (first 40 lines):"
	head -n 40 "$d/out.enabled" 2> /dev/null
	echo "--- enabled stderr (first 20 lines):"
	head -n 20 "$d/err.enabled" 2> /dev/null
	echo "--- plain stderr (first 10 lines):"
	head -n 10 "$d/err.plain" 2> /dev/null
	if ! cmp -s "$d/out.plain" "$d/out.enabled"; then
		echo "--- diff plain enabled (first 40 lines):"
		diff "$d/out.plain" "$d/out.enabled" | head -n 40
	fi
	return 0
}

# check_three_modes CMD...: same_in_three_modes, showing the outputs.
check_three_modes() {
	rm -f "$STATS"
	same_in_three_modes "$@" && return 0
	show_runs
	return 1
}

# check_cold_three_modes CMD...: check_three_modes, each run on cold files
# (COLD_FILES).
check_cold_three_modes() {
	rm -f "$STATS"
	compare_modes cold_plain cold_disabled cold_prefetch "$@" && return 0
	show_runs
	return 1
}

# check_three_modes_fi CMD...: same_in_three_modes_fi, showing the outputs.
check_three_modes_fi() {
	rm -f "$STATS"
	same_in_three_modes_fi "$@" && return 0
	show_runs
	return 1
}

# TIMEOUT_STACKS SECONDS CMD...: timeout(1) that, before it kills a hung
# CMD, prints the stack of every thread of CMD and its descendants (gdb) to
# stderr and to $STACKS_LOG when set (tests/helpers/timeout_stacks).
TIMEOUT_STACKS="$abs_top_srcdir/tests/helpers/timeout_stacks"
