#!/usr/bin/env bats
# Real storages with added latency (tests/storage.bash): sshfs against
# sftp-server, rclone mount of rclone serve http (--vfs-cache-mode off and
# full), and slowfs --stream-per-handle. Programs give the same output and
# status without the library, with it disabled and enabled; the statistics
# say what the library did. Each storage skips where it cannot run.

bats_require_minimum_version 1.5.0
load test_helper
load storage

# One-way delay (sshfs, rclone) or per-request delay (slowfs), in us.
DELAY_US=2000
# What each storage rewards is the library's to find out here.
export PREFETCH_PARALLEL=auto

setup() {
	mount_setup || return 1
	STATE="$BATS_TEST_TMPDIR/state"
	mkdir -p "$STATE"
}

teardown() {
	storage_umount "$MNT" "$STATE"
}

# mount_or_skip KIND [DELAY_US]: $SRC on $MNT; skips where KIND cannot run
# here (missing package, no FUSE, no right to mount).
mount_or_skip() {
	local why
	if why=$(storage_unavailable "$1"); then
		skip "$1: $why"
	fi
	storage_mount "$1" "$SRC" "$MNT" "${2:-$DELAY_US}" "$STATE" 2> "$BATS_TEST_TMPDIR/mount.err" ||
		mount_failed_or_skip "$BATS_TEST_TMPDIR/mount.err"
}

# make_inputs: a few MiB of data and its gzip, written before the mount
# (rclone caches the listing).
make_inputs() {
	make_file "$SRC/data" 3145728
	make_text "$SRC/text" 60000
	gzip -1 -c "$SRC/text" > "$SRC/text.gz"
}

# three_programs: md5sum, cat and gzip -dc in the three modes; the
# statistics of the enabled runs accumulate in $STATS.
three_programs() {
	rm -f "$STATS"
	same_in_three_modes md5sum "$MNT/data" || { show_runs; return 1; }
	[ "$(cut -d' ' -f1 "$BATS_TEST_TMPDIR/out.enabled")" = "$(md5sum < "$SRC/data" | cut -d' ' -f1)" ]
	same_in_three_modes cat "$MNT/data" || { show_runs; return 1; }
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$SRC/data"
	same_in_three_modes gzip -dc "$MNT/text.gz" || { show_runs; return 1; }
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$SRC/text"
	echo "stats of the enabled runs:"
	cat "$STATS"
}

@test "latency_relay: pipe mode delays each way and passes bytes unchanged" {
	[ -x "$HELPERS/latency_relay" ] || skip "latency_relay not built"
	make_file in 5000000
	local t0=$EPOCHREALTIME t1
	"$HELPERS/latency_relay" --delay-us=100000 -- cat < in > out
	t1=$EPOCHREALTIME
	cmp in out
	# 100 ms each way: at least 200 ms for the first byte to come back.
	[ $(( ${t1/./} - ${t0/./} )) -ge 200000 ]
	run "$HELPERS/latency_relay" --delay-us=1000 -- sh -c 'exit 3'
	[ "$status" -eq 3 ]
	run "$HELPERS/latency_relay" --delay-us=1000 --listen=10.0.0.1:0 --connect=127.0.0.1:1
	[ "$status" -eq 2 ]
}

@test "slowfs --stream-per-handle: in-order reads never reopen, others wait and reopen" {
	local why
	! why=$(storage_unavailable slowfs-stream) || skip "$why"
	make_file "$SRC/data" 1048576
	mount_slowfs_or_skip --stream-per-handle --direct-io --delay-us=1000
	cmp "$SRC/data" "$MNT/data"
	cat "$MNT/.slowfs-stats"
	grep -q ' reopens=0$' "$MNT/.slowfs-stats"
	# One read at 512 KiB: the stream is at 0, so it waits 20 ms, reopens.
	local t0=$EPOCHREALTIME t1
	dd if="$MNT/data" bs=64k skip=8 count=1 status=none | cmp - <(tail -c +524289 "$SRC/data" | head -c 65536)
	t1=$EPOCHREALTIME
	cat "$MNT/.slowfs-stats"
	grep -q ' reopens=1$' "$MNT/.slowfs-stats"
	[ $(( ${t1/./} - ${t0/./} )) -ge 20000 ]
	slowfs_umount "$MNT"
}

@test "slowfs --stream-per-handle --stream-rate: a stream flows at its rate" {
	local why
	! why=$(storage_unavailable slowfs-stream) || skip "$why"
	make_file "$SRC/data" 4194304
	mount_slowfs_or_skip --stream-per-handle --stream-rate=8388608 --direct-io --delay-us=1000
	local t0=$EPOCHREALTIME t1
	cmp "$SRC/data" "$MNT/data"
	t1=$EPOCHREALTIME
	cat "$MNT/.slowfs-stats"
	grep -q ' reopens=0$' "$MNT/.slowfs-stats"
	# 4 MiB at 8 MiB/s: at least half a second.
	[ $(( ${t1/./} - ${t0/./} )) -ge 500000 ]
}

@test "sshfs with latency: same output in three modes, and the library engages" {
	make_inputs
	mount_or_skip sshfs
	three_programs
	assert_engaged
}

@test "rclone mount --vfs-cache-mode off with latency: same output in three modes" {
	make_inputs
	make_file "$SRC/mapped" 16777216
	mount_or_skip rclone-off
	three_programs
	# rclone serves each handle as one HTTP stream and reads 16 MiB ahead
	# of it by itself. Where the program does nothing between its reads
	# (cat), reading ahead of rclone would only add a copy: the library
	# times a few reads and steps aside.
	rm -f "$STATS"
	with_prefetch cat "$MNT/data" > /dev/null
	echo "cat: $(cat "$STATS")"
	[ "$(stat_sum streams_stepped_aside)" -eq 1 ]
	[ "$(stat_sum worker_reads)" -eq 0 ]
	# A program that works between its reads (5 ms a 64 KiB block, against
	# well under 1 ms a read): the library reads ahead of it, in order,
	# one read at a time on its handle.
	rm -f "$STATS"
	run -0 check_three_modes "$HELPERS/pf_read" "$MNT/data" --bs=65536 --work-us=5000
	echo "$output"
	assert_engaged
	[ "$(stat_sum streams_ordered)" -eq 1 ]
	[ "$(stat_sum streams_stepped_aside)" -eq 0 ]
	# A mapping there is left to the kernel, whose readahead stays in
	# order: the library's steps would each cost rclone a new request.
	rm -f "$STATS"
	run -0 check_three_modes "$HELPERS/mmap_scan" "$MNT/mapped"
	echo "$output"
	[ "$(stat_sum mmap_mappings)" -eq 0 ]
	# The control: the same scan on slowfs is read ahead (tests/mmap.bats).
	grep -q 'prog=mmap_scan' "$STATS"
}

@test "rclone mount --vfs-cache-mode full with latency: same output in three modes" {
	make_inputs
	mount_or_skip rclone-full
	three_programs
	echo "files_prefetched=$(stat_sum files_prefetched) bytes_served=$(stat_sum bytes_served)"
}

@test "slowfs --stream-per-handle: same output in three modes, and the library engages" {
	make_inputs
	mount_or_skip slowfs-stream
	three_programs
	assert_engaged
	cat "$MNT/.slowfs-stats"
}
