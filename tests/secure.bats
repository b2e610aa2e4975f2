#!/usr/bin/env bats
# Secure mode and the statistics file. In a set-user-ID or set-group-ID
# program (AT_SECURE) the library must read none of its PREFETCH_* variables
# (secure_getenv) and so write no statistics and no debug output; and a
# PREFETCH_STATS path that cannot be written, or that is a symbolic link,
# must neither break the program nor be written through.
#
# The dynamic linker ignores LD_PRELOAD paths with a slash in secure mode,
# so tests/helpers/pf_secure dlopen()s the library and reads a file through
# its exported open/read/close. These tests run programs as the user nobody
# (setpriv), from a directory of their own that nobody can reach, on a file
# system mounted without nosuid.
bats_require_minimum_version 1.5.0

load test_helper

setup() {
	[ -r "$PREFETCH_LIB" ] || {
		echo "library not built: $PREFETCH_LIB" >&2
		return 1
	}
	need_nobody
	cd "$BATS_TEST_TMPDIR" || return 1
	# bats' own temporary directories are private to root: a world-readable
	# one next to them, under the same TMPDIR.
	D=$(mktemp -d "${BATS_RUN_TMPDIR%/*}/pf-secure.XXXXXX") || return 1
	chmod 0755 "$D"
	cp "$PREFETCH_LIB" "$D/libprefetch.so"
	cp "$HELPERS/pf_secure" "$HELPERS/pf_read" "$D/"
	chmod 0644 "$D/libprefetch.so"
	chmod 0755 "$D/pf_secure" "$D/pf_read"
	"$HELPERS/pf_gen" "$D/data" $((8 * 1048576 + 4104))
	chmod 0644 "$D/data"
	# out/: where nobody may write.
	mkdir "$D/out"
	chown nobody:nogroup "$D/out"
	# (A TMPDIR inside a private directory is out of nobody's reach.)
	as_nobody test -r "$D/data" || skip "$D cannot be reached by user nobody"
}

teardown() {
	[ -z "${D:-}" ] || rm -rf "$D"
}

# The settings that make the library prefetch a freshly written file on a
# local disk, report statistics to $1 and say when it engages.
prefetch_env() {
	echo PREFETCH_STATS="$1" PREFETCH_DEBUG=2 PREFETCH_SKIP_CACHED=0 PREFETCH_BLOCK_DEVICES=1
}

# nobody_reads STATS_PATH: pf_read of the data as nobody, with the library
# and PREFETCH_STATS=STATS_PATH (at most 20 s: a hang fails); the output is
# that of a run without the library, and prefetching engaged (the debug line
# says so: the statistics file is what these tests are about).
nobody_reads() {
	# shellcheck disable=SC2046 # prefetch_env prints words
	run -0 --separate-stderr timeout 20 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env LD_PRELOAD="$D/libprefetch.so" $(prefetch_env "$1") "$D/pf_read" "$D/data" --verify
	echo "output: $output"
	echo "stderr: $stderr"
	[ "$output" = "$(with_plain "$D/pf_read" "$D/data" --verify)" ]
	[[ $stderr == *"prefetching from offset"* ]]
}

@test "AT_SECURE (setgid, run as nobody): no PREFETCH_* variable read, no statistics, no debug output" {
	local opts
	opts=$(findmnt -no OPTIONS -T "$D") || skip "findmnt cannot tell the mount options of $D"
	[[ ,$opts, != *,nosuid,* ]] || skip "$D is on a nosuid mount: setgid is ignored there"
	! grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status ||
		skip "no_new_privs is set: setgid is ignored"
	# The setgid copy: group daemon, which nobody (group nogroup, no
	# supplementary groups) is not in, so egid != rgid: AT_SECURE.
	getent group daemon > /dev/null || skip "no group daemon"
	cp "$D/pf_secure" "$D/pf_secure_sgid"
	chown root:daemon "$D/pf_secure_sgid"
	chmod 2755 "$D/pf_secure_sgid"

	# Control: the same program and user without the setgid bit reads its
	# settings, prefetches, says so and writes its statistics.
	# shellcheck disable=SC2046 # prefetch_env prints words
	run -0 --separate-stderr as_nobody env $(prefetch_env "$D/out/stats.plain") \
		"$D/pf_secure" "$D/libprefetch.so" "$D/data"
	echo "control: $output"
	echo "control stderr: $stderr"
	[ "${lines[0]}" = "at_secure=0" ]
	local control=${lines[1]}
	[[ $control == "total=$((8 * 1048576 + 4104)) "* ]]
	[ -f "$D/out/stats.plain" ]
	cat "$D/out/stats.plain"
	grep -q ' files_prefetched=1 ' "$D/out/stats.plain"
	STATS="$D/out/stats.plain" assert_engaged
	[[ $stderr == *"prefetching from offset"* ]]

	# Secure mode: the same environment, ignored.
	# shellcheck disable=SC2046
	run -0 --separate-stderr as_nobody env $(prefetch_env "$D/out/stats.secure") \
		"$D/pf_secure_sgid" "$D/libprefetch.so" "$D/data"
	echo "secure: $output"
	echo "secure stderr: $stderr"
	[ "${lines[0]}" = "at_secure=1" ]
	[ "${lines[1]}" = "$control" ]
	[ ! -e "$D/out/stats.secure" ]
	[[ $stderr != *libprefetch* ]]
	[ "$(ls -A "$D/out")" = stats.plain ]
}

@test "PREFETCH_STATS in a directory the user cannot write: nothing created, same output and status" {
	mkdir "$D/rootonly"
	chmod 0755 "$D/rootonly"
	nobody_reads "$D/rootonly/stats"
	# The failure is reported at PREFETCH_DEBUG >= 1 (on the stderr that
	# pf_read, unlike coreutils, keeps open to the end), and nothing was created.
	[[ $stderr == *"cannot open $D/rootonly/stats: Permission denied"* ]]
	[ -z "$(ls -A "$D/rootonly")" ]
}

@test "PREFETCH_STATS naming a symbolic link: the link is not followed, its target untouched" {
	echo original > "$D/target"
	chmod 0666 "$D/target"
	ln -s "$D/target" "$D/out/stats"
	# A dangling link too: O_CREAT must not create its target.
	ln -s "$D/out/created" "$D/out/dangling"
	local link
	for link in stats dangling; do
		nobody_reads "$D/out/$link"
		[[ $stderr == *"cannot open $D/out/$link: Too many levels of symbolic links"* ]]
	done
	[ "$(cat "$D/target")" = original ]
	[ -L "$D/out/stats" ]
	[ -L "$D/out/dangling" ]
	[ ! -e "$D/out/created" ]
	# The same run as root: O_NOFOLLOW holds for root as well.
	# shellcheck disable=SC2046
	run -0 --separate-stderr env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" \
		$(prefetch_env "$D/out/stats") "$D/pf_read" "$D/data" --verify
	echo "root stderr: $stderr"
	[[ $stderr == *"prefetching from offset"* ]]
	[ "$(cat "$D/target")" = original ]
}

@test "PREFETCH_STATS naming a FIFO nobody reads: the program does not hang, nothing is written" {
	mkfifo "$D/out/fifo"
	chown nobody:nogroup "$D/out/fifo"
	nobody_reads "$D/out/fifo"
	# No reader: O_NONBLOCK makes the open fail (ENXIO) instead of waiting.
	[[ $stderr == *"cannot open $D/out/fifo"* ]]
	[ -p "$D/out/fifo" ]
	# With a reader (this shell, holding the FIFO open both ways, which
	# never blocks on Linux), the open succeeds; a FIFO is still no
	# regular file, and gets nothing.
	exec 4<> "$D/out/fifo"
	nobody_reads "$D/out/fifo"
	local got=
	read -r -t 0.5 -u 4 got || got=
	exec 4>&-
	echo "the reader got: $got"
	[ -z "$got" ]
	[[ $stderr == *"is not a regular file"* ]]
}
