#!/usr/bin/env bats
# prefetch --stats: one summary for the whole command, in words, and the
# command's output, status and signals exactly as without the wrapper.

load test_helper
bats_require_minimum_version 1.5.0
allow_late_sanitizer_runtime

PREFETCH_HELPER_BIN="$abs_top_builddir/tools/prefetch-helper"
SRC=
MNT=

teardown() {
	[ -z "$MNT" ] || slowfs_umount "$MNT"
}

# The three modes, through the wrapper: without the library, --disable
# --stats, --stats. stdout and status must match; the summary of the
# enabled run is in $BATS_TEST_TMPDIR/err.enabled.
wrap_disabled() { "$PREFETCH_WRAPPER" --disable --stats "$@"; }
wrap_stats() { "$PREFETCH_WRAPPER" --stats "$@"; }
check_wrapped() {
	need_runtime_first_or_skip
	compare_modes with_plain wrap_disabled wrap_stats "$@" || { show_runs; return 1; }
	summary=$(grep -v '^libprefetch' "$BATS_TEST_TMPDIR/err.enabled")
	echo "summary:"
	echo "$summary"
	# One summary, the disabled run's says so.
	[ "$(grep -c '^prefetch: ' <<< "$summary")" -eq 1 ]
	grep -q '^prefetch: the library was disabled' "$BATS_TEST_TMPDIR/err.disabled"
}

# summary_lines: the summary is short: at most 4 lines, none very long.
summary_is_short() {
	[ "$(wc -l <<< "$summary")" -le 4 ]
	! grep -q '.\{161\}' <<< "$summary"
}

@test "slow storage: what was read ahead and used, for the whole pipeline" {
	mount_slowfs_or_skip --direct-io --delay-us=2000
	make_file "$SRC/f1" 8000000
	unset PREFETCH_SKIP_CACHED PREFETCH_BLOCK_DEVICES
	check_wrapped sh -c "cat '$MNT/f1' | gzip -1 -c | md5sum"
	summary_is_short
	# cat read it, and the pipe readers (gzip, md5sum) read nothing worth
	# a word: only cat is named.
	[[ $summary == "prefetch: read ahead "*" for cat (1 stream); "*" of it used ("*"%), "*" wasted; still waited "*" for data" ]]
	[[ $summary != *gzip* && $summary != *md5sum* ]]
	# The same command's statistics lines say the same.
	rm -f "$STATS"
	env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS="$STATS" \
		sh -c "cat '$MNT/f1' | gzip -1 -c | md5sum" > /dev/null
	assert_engaged
	run -0 "$PREFETCH_HELPER_BIN" summary "$STATS"
	[[ ${lines[0]} == "prefetch: read ahead "*" for cat (1 stream); "* ]]
}

# md5sum_left_alone WHY: md5sum of data, through the wrapper, reads nothing
# ahead and the summary says WHY (a glob pattern); then the same under the
# library alone (statistics in $STATS, for the caller) prefetches no file.
md5sum_left_alone() {
	check_wrapped md5sum data
	summary_is_short
	[[ $summary == *"prefetch: nothing was read ahead (md5sum)"* ]]
	# shellcheck disable=SC2053 # WHY is a pattern
	[[ $summary == $1 ]]
	rm -f "$STATS"
	with_prefetch md5sum data > /dev/null
	[ "$(stat_sum files_prefetched)" -eq 0 ]
}

@test "local disk: nothing read ahead, and the setting that would change it" {
	make_file data 4000000
	unset PREFETCH_BLOCK_DEVICES
	md5sum_left_alone "*1 file on a local disk, left to the kernel's readahead*PREFETCH_BLOCK_DEVICES=1*"
	# The library agrees that it saw the file and left it.
	[ "$(stat_sum block_device_skips)" -eq 1 ]
}

@test "cached data: a second run says it was read from the page cache" {
	make_file data 20000000
	export PREFETCH_SKIP_CACHED=1 PREFETCH_BLOCK_DEVICES=1
	cat data > /dev/null # the first run: now all of it is cached
	md5sum_left_alone "*already in the page cache*PREFETCH_SKIP_CACHED=0*"
	[ "$(stat_sum cached_skips)" -gt 0 ]
}

@test "random access: streams stopped by seeks are counted in words" {
	make_file data 40000000
	check_wrapped "$HELPERS/access_pattern" data read:65536:20 sleep:50 seek:30000000 read:65536:5
	summary_is_short
	[[ ${summary%%$'\n'*} == "prefetch: read ahead "*" for access_pattern ("*" streams); "* ]]
	[[ $summary == *"1 stream stopped by random access"*"--window"* ]]
}

@test "a command that reads nothing gets one line, and processes that read nothing are not named" {
	need_runtime_first_or_skip
	run -0 --separate-stderr "$PREFETCH_WRAPPER" --stats sh -c 'true | cat'
	echo "$stderr"
	[ "$(wc -l <<< "$stderr")" -le 2 ]
	[[ $stderr == "prefetch: nothing was read ahead"$'\n'"  no file was read sequentially for long enough"* ]]
	[[ $stderr != *sh* && $stderr != *cat* ]]
}

# A statistics file with the fields a newer library adds (and one it lacks).
write_lines() {
	cat > lines <<'EOF'
libprefetch: pid=10 prog=md5sum files_prefetched=4 bytes_served=8388608 bytes_sync=0 bytes_fetched=8388608 bytes_wasted=0 wait_us=1500000 streams_at_open=3 streams_ordered=2 streams_stepped_aside=1
libprefetch: pid=11 prog=sh files_prefetched=0 bytes_served=0 bytes_fetched=0 wait_us=0
libprefetch: pid=12 prog=tar files_prefetched=1 bytes_served=1048576 bytes_fetched=2097152 bytes_wasted=1048576 wait_us=0 streams_dropped=2 block_device_skips=1 cached_skips=3 errors_forwarded=1
not a statistics line
EOF
}

@test "the summary of fields a line may or may not have (absent is 0)" {
	write_lines
	run -0 "$PREFETCH_HELPER_BIN" summary lines
	echo "$output"
	[ "${lines[0]}" = "prefetch: read ahead 10 MiB for md5sum, tar (5 streams); 9 MiB of it used (90%), 1 MiB wasted; still waited 1.5 s for data" ]
	[[ $output == *"  3 files prefetched from the open"* ]]
	[[ $output == *"  1 file on a local disk"*"PREFETCH_BLOCK_DEVICES=1"* ]]
	[[ $output == *"already in the page cache"*"(3 times;"*"PREFETCH_SKIP_CACHED=0"* ]]
	[[ $output == *"  2 streams stopped by random access"* ]]
	[[ $output == *"  2 streams read in order: the storage is slow with out-of-order reads"* ]]
	[[ $output == *"  1 stream stepped aside: prefetching did not pay"* ]]
	[[ $output == *"  1 read error passed on to the program"* ]]
	[[ $output != *" sh"* ]]
	# The raw lines stay as they are for scripts: --stats=PATH.
	[ "${#lines[@]}" -le 8 ]
}

@test "--stats=PATH and --stats=1 still give the per-process lines, unchanged" {
	need_runtime_first_or_skip
	make_file data 4000000
	run -0 --separate-stderr "$PREFETCH_WRAPPER" --stats="$STATS" sh -c 'cat data | md5sum'
	[ -z "$stderr" ]
	[ "$(grep -c '^libprefetch: pid=[0-9]* prog=[a-z0-9]* files_prefetched=' "$STATS")" -ge 2 ]
	assert_engaged
	run -0 --separate-stderr "$PREFETCH_WRAPPER" --stats=1 md5sum data
	[[ $stderr == "libprefetch: pid="*" prog=md5sum files_prefetched=1 "* ]]
	[[ $stderr != *"prefetch: read ahead"* ]]
}

@test "--stats: the command's exit status, signal, stdin and descriptors are its own" {
	need_runtime_first_or_skip
	run -3 "$PREFETCH_WRAPPER" --stats sh -c 'exit 3'
	run -0 bash -c 'echo through | "$0" --stats cat' "$PREFETCH_WRAPPER"
	[[ ${lines[0]} == through ]]
	# A caller that ignores SIGCHLD still gets the status.
	if command -v perl > /dev/null; then
		run -5 perl -e '$SIG{CHLD} = "IGNORE"; exec @ARGV' \
			"$PREFETCH_HELPER_BIN" run "$PREFETCH_LIB" sh -c 'exit 5'
		[[ $output == "prefetch: nothing was read ahead: no process reported"* ]]
	fi
	# Death by a signal is passed on as such (bash: 128 + 15).
	run -143 "$PREFETCH_WRAPPER" --stats sh -c 'kill -TERM $$'
	# The command's descriptors: the same numbers as without the wrapper
	# (the statistics file is not held open).
	[ "$("$PREFETCH_WRAPPER" --disable --stats ls /proc/self/fd 2> /dev/null)" = "$(ls /proc/self/fd)" ]
	# No statistics file is left behind.
	mkdir tmp
	TMPDIR=$PWD/tmp "$PREFETCH_WRAPPER" --stats true 2> /dev/null
	[ -z "$(ls -A tmp)" ]
}

@test "--stats: a signal sent to the wrapper reaches the command" {
	need_runtime_first_or_skip
	# The command reports the signal it got, then exits 7.
	"$PREFETCH_WRAPPER" --stats sh -c 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.05; done' \
		> out 2> err &
	local pid=$! i status
	for i in $(seq 100); do grep -q ready out && break; sleep 0.05; done
	grep -q ready out
	kill -TERM "$pid"
	status=0
	wait "$pid" || status=$?
	cat out err
	[ "$status" -eq 7 ]
	grep -q 'got TERM' out
}

@test "a settings warning is printed once for a whole pipeline" {
	need_runtime_first_or_skip
	make_file data 4000000
	run -0 --separate-stderr "$PREFETCH_WRAPPER" --window=32K --chunk=16K --stats="$STATS" \
		sh -c 'cat data | cat | cat | md5sum'
	echo "$stderr"
	[ "$(grep -c 'PREFETCH_WINDOW' <<< "$stderr")" -eq 1 ]
	[[ $stderr == *"PREFETCH_WINDOW=32K is out of range"* ]]
	# Each process got the value the warning announced, and took it silently.
	run -0 --separate-stderr "$PREFETCH_WRAPPER" --window=32K --chunk=16K sh -c 'echo "$PREFETCH_WINDOW"'
	[ "$output" = 65536 ]
	# The same for a variable set outside the wrapper, and for a pair of
	# values that disagree (a window smaller than the chunk).
	# (Which of the two the library corrects is its business: one line.)
	PREFETCH_CHUNK=1M PREFETCH_WINDOW=512K run -0 --separate-stderr "$PREFETCH_WRAPPER" \
		sh -c 'cat data | cat | md5sum > /dev/null; echo "$PREFETCH_WINDOW $PREFETCH_CHUNK"'
	echo "$stderr"
	echo "$output"
	[ "$(grep -c '^libprefetch: PREFETCH_' <<< "$stderr")" -eq 1 ]
	[[ $output =~ ^[0-9]+[KM]?\ [0-9]+[KM]?$ && $output != "512K 1M" ]]
	# With no variable set there is nothing to check: no helper is started.
	printf '#!/bin/sh\ntouch "%s/ran"\n' "$PWD" > fake-helper
	chmod +x fake-helper
	env -u PREFETCH_SKIP_CACHED -u PREFETCH_BLOCK_DEVICES PREFETCH_HELPER="$PWD/fake-helper" \
		"$PREFETCH_WRAPPER" true
	[ ! -e ran ]
	PREFETCH_HELPER="$PWD/fake-helper" "$PREFETCH_WRAPPER" true
	[ -e ran ]
	# Valid values are passed on as written.
	run -0 "$PREFETCH_WRAPPER" --window=16M --threads=4 sh -c 'echo "$PREFETCH_WINDOW $PREFETCH_THREADS"'
	[ "$output" = "16M 4" ]
}

# on_terminal CMD...: runs CMD on a new pseudo-terminal, types ^C once CMD
# printed "ready", and prints what the terminal showed and how CMD ended.
on_terminal() {
	python3 - "$@" <<'PY'
import os, pty, signal, sys
pid, fd = pty.fork()
if pid == 0:
    # A harness started in the background of a script (cmd &) runs with
    # SIGINT ignored, which sh may not trap: give CMD a terminal's default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execvp(sys.argv[1], sys.argv[1:])
out, sent = b"", False
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    out += data
    if not sent and b"ready" in out:
        os.write(fd, b"\x03")
        sent = True
_, status = os.waitpid(pid, 0)
print(out.decode(errors="replace").replace("\r", ""))
print("signal" if os.WIFSIGNALED(status) else "exit",
      os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
PY
}

@test "--stats: the terminal's ^C reaches the command once, as without the wrapper" {
	need_runtime_first_or_skip
	command -v python3 > /dev/null || skip "python3 missing"
	# The sleep outlasts any delay of a loaded machine before the ^C.
	local script='trap "echo INT" INT; echo ready; sleep 30; echo done'
	run -0 on_terminal sh -c "$script"
	local plain=$output
	run -0 on_terminal "$PREFETCH_WRAPPER" --stats sh -c "$script"
	echo "plain: $plain"
	echo "wrapped: $output"
	[ "$(grep -c 'INT$' <<< "$output")" -eq 1 ]
	[ "$(grep -v '^prefetch: \|^  ' <<< "$output")" = "$plain" ]
	# A command that dies of it: the wrapper too, after its summary.
	run -0 on_terminal "$PREFETCH_WRAPPER" --stats sh -c 'echo ready; sleep 5'
	[ "${lines[-1]}" = "signal 2" ]
	[[ $output == *"prefetch: nothing was read ahead"* ]]
}
