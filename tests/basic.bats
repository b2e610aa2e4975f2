#!/usr/bin/env bats
# Smoke tests of the core shim: it loads, passes through when disabled,
# engages on sequential reads, and leaves non-candidates alone.

bats_require_minimum_version 1.5.0
load test_helper

@test "the library exports only its hooks" {
	run -0 nm -D --defined-only "$PREFETCH_LIB"
	echo "$output"
	# Every exported function is one of the interposed entry points.
	bad=$(echo "$output" | awk '$2 == "T" || $2 == "W" { print $3 }' |
		grep -vxE '(open|open64|openat|openat64|__open_2|__open64_2|__openat_2|__openat64_2|creat|creat64|read|__read_chk|pread|pread64|__pread_chk|__pread64_chk|readv|preadv|preadv64|lseek|lseek64|close|close_range|closefrom|dup|dup2|dup3|fcntl|fcntl64|posix_fadvise|posix_fadvise64|fopen|fopen64|freopen|freopen64|fclose|fread|fread_unlocked|__fread_chk|__fread_unlocked_chk|mmap|mmap64|munmap|mremap|madvise|posix_madvise|readdir|readdir64|closedir)' || true)
	[ -z "$bad" ]
}

@test "md5sum: same digest in three modes, and the enabled run is served from buffers" {
	make_file data 20000000
	same_in_three_modes md5sum data
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
}

@test "disabled: loaded but nothing is prefetched and no statistics are gathered" {
	make_file data 20000000
	run -0 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_DISABLE=1 PREFETCH_STATS="$STATS" md5sum data
	echo "$output"
	assert_not_engaged
}

@test "worker threads start only when a descriptor engages" {
	make_file small 1000
	make_file big 20000000
	# awk reads its input, then reports its own thread count.
	count_threads='END { while ((getline l < "/proc/self/status") > 0) if (l ~ /^Threads/) print l }'
	run -0 with_prefetch awk "$count_threads" small
	echo "small file: $output"
	[[ "$output" =~ Threads:[[:space:]]*1$ ]]
	run -0 with_prefetch env PREFETCH_THREADS=3 awk "$count_threads" big
	echo "big file: $output"
	# (ThreadSanitizer starts a thread of its own with the first worker.)
	local expect=4
	[ "$SANITIZER" != thread ] || expect=5
	[[ "$output" =~ Threads:[[:space:]]*$expect$ ]]
}

@test "warm page cache: reads pass straight through by default" {
	make_file data 20000000
	cat data > /dev/null
	run -0 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_SKIP_CACHED=1 PREFETCH_STATS="$STATS" md5sum data
	echo "$output"
	cat "$STATS"
	[ "$(stat_sum cached_skips)" -gt 0 ]
	[ "$(stat_sum bytes_served)" -eq 0 ]
}

@test "stats: PREFETCH_STATS=1 reports on stderr even when the program closed it" {
	make_file data 2000000
	run -0 --separate-stderr env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS=1 md5sum data
	echo "stderr: $stderr"
	[[ "$stderr" == *"libprefetch: pid="*"prog=md5sum"* ]]
}

@test "a bad setting warns once and uses the default" {
	make_file data 2000000
	run -0 --separate-stderr env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_WINDOW=lots md5sum data
	echo "stderr: $stderr"
	[ "$(echo "$stderr" | grep -c 'libprefetch: PREFETCH_WINDOW')" -eq 1 ]
	with_plain md5sum data > plain.out
	[ "$output" = "$(cat plain.out)" ]
}

@test "local block devices: passed through by default, prefetched with PREFETCH_BLOCK_DEVICES=1" {
	make_file data 20000000
	dev=$(stat -c '%D' data)
	[ $((0x$dev >> 8)) -ne 0 ] || skip "the test directory is not on a block device"
	run -0 env -u PREFETCH_BLOCK_DEVICES LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS="$STATS" md5sum data
	echo "$output"
	assert_not_engaged
	[ "$(stat_sum block_device_skips)" -eq 1 ]
	rm -f "$STATS"
	run -0 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_BLOCK_DEVICES=1 PREFETCH_STATS="$STATS" md5sum data
	assert_engaged
	[ "$(stat_sum block_device_skips)" -eq 0 ]
}
