#!/usr/bin/env bats
# prefetch --explain PATH...: what the library would do with each file and
# why, from metadata and page-cache residency only; nothing is run under the
# library and no data is read.

load test_helper
bats_require_minimum_version 1.5.0

SRC=
MNT=

setup() {
	STATS="$BATS_TEST_TMPDIR/stats"
	cd "$BATS_TEST_TMPDIR" || return 1
	# The suite's defaults (prefetch on local disks, cached data too) are
	# not the user's: each test says which it wants.
	unset PREFETCH_SKIP_CACHED PREFETCH_BLOCK_DEVICES
}

teardown() {
	[ -z "$MNT" ] || slowfs_umount "$MNT"
}

# slowfs_reads: data read requests slowfs has served so far.
slowfs_reads() {
	grep -o 'reads=[0-9]*' "$MNT/.slowfs-stats" | head -n 1 | cut -d= -f2
}

# fs_type PATH: the filesystem type as mount(8) shows it.
fs_type() {
	findmnt -n -o FSTYPE -T "$1"
}

@test "--explain: a file on FUSE storage (slowfs) is prefetched; nothing read" {
	mount_slowfs_or_skip --direct-io --delay-us=1000
	make_file "$SRC/data" 8000000
	local before
	before=$(slowfs_reads)
	# Statistics on: a library loaded anywhere would report.
	PREFETCH_STATS=$STATS run -0 "$PREFETCH_WRAPPER" --explain "$MNT/data"
	echo "$output"
	[ "${lines[0]}" = "$MNT/data: prefetched" ]
	[[ ${lines[1]} == "  filesystem: fuse.slowfs (fuse), not on a local block device (device 0:"* ]]
	[[ ${lines[2]} == "  size: 7.6 MiB; in the page cache: none of it" ]]
	[[ ${lines[3]} == "  why: after 3 sequential reads"*"256K chunks up to 8M ahead"* ]]
	[[ ${lines[4]} == "  mode: in parallel"* ]]
	[[ ${lines[5]} == "settings: window 8M, chunk 256K, threads 16, "* ]]
	[ "$(slowfs_reads)" -eq "$before" ]
	[ ! -e "$STATS" ]
}

@test "--explain: a file on a local disk is passed through, and the setting that changes it" {
	make_cold_file data 4000000
	evict_cold_files
	local dev
	dev=$(stat -c %d data)
	[ $((dev >> 8)) -ne 0 ] || skip "the test directory is not on a local block device"
	run -0 "$PREFETCH_WRAPPER" --explain data
	echo "$output"
	[ "${lines[0]}" = "data: passed through" ]
	[[ ${lines[1]} == "  filesystem: $(fs_type data)"*", on a local block device (device "* ]]
	[[ ${lines[3]} == "  why: on a local block device"*"PREFETCH_BLOCK_DEVICES=1"* ]]
	# Nothing was read: the file is still out of the page cache.
	if command -v fincore > /dev/null; then
		[ "$(fincore --bytes --noheadings --output RES data)" -eq 0 ]
		[ "${lines[2]}" = "  size: 3.8 MiB; in the page cache: none of it" ]
	fi
	# With the setting, it is prefetched (the settings line says so).
	run -0 "$PREFETCH_WRAPPER" --block-devices=1 --explain data
	[ "${lines[0]}" = "data: prefetched" ]
	[[ $output == *"block devices 1"* ]]
}

@test "--explain: a cached file is read from the page cache, unless told otherwise" {
	command -v fincore > /dev/null || skip "fincore missing (util-linux)"
	make_file data 4000000
	cat data > /dev/null
	[ "$(fincore --bytes --noheadings --output RES data)" -ge 4000000 ] ||
		skip "the page cache does not hold the file"
	run -0 "$PREFETCH_WRAPPER" --block-devices=1 --explain data
	echo "$output"
	[ "${lines[0]}" = "data: passed through" ]
	[ "${lines[2]}" = "  size: 3.8 MiB; in the page cache: all of it" ]
	[[ ${lines[3]} == "  why: in the page cache"*"PREFETCH_SKIP_CACHED=0"* ]]
	run -0 "$PREFETCH_WRAPPER" --block-devices=1 --skip-cached=0 --explain data
	[ "${lines[0]}" = "data: prefetched" ]
	# Half of it cached: prefetched, the cached part from the page cache.
	make_file half 8388608
	sync half
	dd if=half of=/dev/null iflag=nocache bs=1M skip=4 count=4 status=none
	local res
	res=$(fincore --bytes --noheadings --output RES half)
	echo "cached: $res"
	[ "$res" -gt 0 ] && [ "$res" -lt 8388608 ] || skip "could not evict half of a file"
	run -0 "$PREFETCH_WRAPPER" --block-devices=1 --explain half
	echo "$output"
	[ "${lines[0]}" = "half: prefetched" ]
	[[ ${lines[2]} == "  size: 8 MiB; in the page cache: "*" MiB ("*"%)" ]]
}

@test "--explain: a pipe and a directory are passed through, without blocking" {
	mkfifo fifo
	mkdir dir
	run -0 timeout 10 "$PREFETCH_WRAPPER" --explain fifo dir
	echo "$output"
	[ "${lines[0]}" = "fifo: passed through" ]
	[ "${lines[2]}" = "  why: a pipe: only regular files are prefetched" ]
	[ "${lines[3]}" = "dir: passed through" ]
	[ "${lines[5]}" = "  why: a directory: only regular files are prefetched" ]
	# An anonymous pipe on standard input.
	run -0 bash -c 'echo data | "$0" --explain /dev/stdin' "$PREFETCH_WRAPPER"
	[ "${lines[0]}" = "/dev/stdin: passed through" ]
	[[ ${lines[1]} == "  filesystem: pipefs, "* ]]
	[ "${lines[2]}" = "  why: a pipe: only regular files are prefetched" ]
}

@test "--explain: pseudo filesystems, small files, missing paths, usage" {
	run -0 "$PREFETCH_WRAPPER" --explain /proc/self/status
	[ "${lines[0]}" = "/proc/self/status: passed through" ]
	[[ $output == *"proc is a pseudo filesystem"* ]]
	printf 'small' > small
	run -0 "$PREFETCH_WRAPPER" --block-devices=1 --skip-cached=0 --explain small
	[[ $output == *"why: 5 bytes is less than one chunk (PREFETCH_CHUNK=256K)"* ]]
	run -1 --separate-stderr "$PREFETCH_WRAPPER" --explain missing small
	[ "$stderr" = "prefetch: missing: No such file or directory" ]
	[ "${lines[0]}" = "small: passed through" ]
	run -2 "$PREFETCH_WRAPPER" --explain
	[[ $output == *"--explain needs a path"* ]]
	# Options before --explain are the settings it reports.
	run -0 "$PREFETCH_WRAPPER" --window=16M --threads=4 --explain -- small
	[[ ${lines[-1]} == "settings: window 16M, chunk 256K, threads 4, "* ]]
}
