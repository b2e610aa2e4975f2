#!/usr/bin/env bats
# Faults of real network filesystem clients (tests/storage.bash), in the
# three modes: the SFTP server killed under sshfs, the HTTP remote of an
# rclone mount stalled or reset, a lazy unmount under the reader. Each mode
# gets a fresh mount (a fault kills it); the fault comes once the reader's
# file offset has passed FAULT_AT. Timing differs between modes (the library
# may have read further before the fault), so what is compared is what must
# be equal: the reader's status (never a timeout: no hang), the error it
# sees (or its end of file), and that every byte it got is the right one at
# the right offset (pf_read --verify), its position and the kernel's offset
# agreeing. Each storage skips where it cannot run.

load test_helper
load storage

# One-way delay of the relay, in us.
DELAY_US=2000
export PREFETCH_PARALLEL=auto
SIZE=67108864
FAULT_AT=4194304
# The reader: 128 KiB reads, 10 ms of work after each (at most 12.8 MB/s):
# at the fault, at most about 40 MB of the file can have been read ahead by
# the client and the library together, so every mode meets a fault that
# ends the data. A whole read takes about 6 s; 120 s means a hang.
READER_TIMEOUT=120

setup() {
	mount_setup
}

teardown() {
	local s
	for s in "$BATS_TEST_TMPDIR"/state.*; do
		[ -d "$s" ] && storage_umount "$MNT" "$s"
	done
	return 0
}

# need_storage KIND: skips where KIND cannot run here.
need_storage() {
	local why
	if why=$(storage_unavailable "$1"); then
		skip "$1: $why"
	fi
	make_offsets "$SRC/data" "$SIZE"
}

# reader_offset PID: the file offset of PID's descriptor of $MNT/data.
reader_offset() {
	local fd
	for fd in /proc/"$1"/fd/*; do
		[ "$(readlink "$fd" 2> /dev/null)" = "$MNT/data" ] || continue
		awk '/^pos:/ { print $2 }' /proc/"$1"/fdinfo/"${fd##*/}" 2> /dev/null
		return 0
	done
	echo 0
}

# fault_run MODE KIND FAULT: mounts KIND afresh, reads $MNT/data in MODE
# (plain, disabled, enabled) and, once the reader is past FAULT_AT, runs the
# shell function FAULT (with STATE set); then waits for the reader and
# unmounts. Leaves out.MODE, err.MODE, rc.MODE.
fault_run() {
	local mode=$1 kind=$2 fault=$3 pre=() t pid i
	STATE="$BATS_TEST_TMPDIR/state.$mode"
	mkdir -p "$STATE"
	storage_mount "$kind" "$SRC" "$MNT" "$DELAY_US" "$STATE" 2> "mount.err.$mode" ||
		mount_failed_or_skip "mount.err.$mode" || return 1
	case $mode in
	plain) pre=(env -u LD_PRELOAD) ;;
	disabled) pre=(env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_DISABLE=1) ;;
	enabled) pre=(env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS="$STATS") ;;
	esac
	t=$EPOCHREALTIME
	timeout "$READER_TIMEOUT" "${pre[@]}" "$HELPERS/pf_read" "$MNT/data" --bs=131072 \
		--verify --work-us=10000 --counts=0 > "out.$mode" 2> "err.$mode" 3>&- &
	local timer=$!
	for ((i = 0; i < 600; i++)); do
		pid=$(pgrep -P "$timer" | head -n 1)
		[ -n "$pid" ] && [ "$(reader_offset "$pid")" -ge "$FAULT_AT" ] && break
		kill -0 "$timer" 2> /dev/null || break
		sleep 0.05
	done
	echo "$mode: fault $fault at offset $(reader_offset "$pid")"
	"$fault"
	local rc=0
	wait "$timer" || rc=$?
	echo "$rc" > "rc.$mode"
	echo "$mode: status $(cat "rc.$mode") after $(((${EPOCHREALTIME/./} - ${t/./}) / 1000)) ms: $(cat "out.$mode")"
	storage_umount "$MNT" "$STATE"
}

# outcome FILE: what the reader saw that must not depend on the mode: its
# first error (errno name) or eof=1, and whether all it read was right.
outcome() {
	local err
	err=$(grep -m 1 -o '^error pos=[0-9]* errno=[A-Z0-9]*' "$1" | sed 's/.*errno=//')
	echo "${err:-eof=$(grep -o ' eof=[01]' "$1" | cut -d= -f2)} $(grep -o ' bad=[0-9]*' "$1" | tr -d ' ')"
}

# check_fault KIND FAULT OUTCOMES END: the three modes under FAULT; each
# must end in time (status 0: pf_read fails only on wrong data), read only
# right bytes, keep its position and the kernel's offset equal, see one of
# OUTCOMES (an extended regex of errno names and eof=1), and have read the
# whole file (END=whole) or stopped short of its end (END=short); the
# enabled run must have prefetched.
check_fault() {
	local kind=$1 fault=$2 outcomes=$3 end=$4 mode total pos kernel
	rm -f "$STATS"
	for mode in plain disabled enabled; do
		fault_run "$mode" "$kind" "$fault"
	done
	for mode in plain disabled enabled; do
		[ "$(cat "rc.$mode")" -eq 0 ] || { echo "$mode: status $(cat "rc.$mode")"; cat "err.$mode"; return 1; }
		[[ $(outcome "out.$mode") =~ ^($outcomes)\ bad=0$ ]] ||
			{ echo "$mode saw $(outcome "out.$mode"), not $outcomes"; return 1; }
		total=$(grep -o '^total=[0-9]*' "out.$mode" | cut -d= -f2)
		pos=$(grep -o ' pos=[0-9]*' "out.$mode" | tail -n 1 | cut -d= -f2)
		kernel=$(grep -o ' kernel=[0-9]*' "out.$mode" | cut -d= -f2)
		[ "$total" = "$pos" ] && [ "$pos" = "$kernel" ] ||
			{ echo "$mode: total=$total pos=$pos kernel=$kernel"; return 1; }
		if [ "$end" = short ]; then
			[ "$total" -lt "$SIZE" ] || { echo "$mode read it all"; return 1; }
		else
			[ "$total" -eq "$SIZE" ] || { echo "$mode read $total bytes"; return 1; }
		fi
	done
	cat "$STATS"
	# The library was at work: reading ahead, or (on rclone, which reads
	# ahead of a handle itself) having stepped aside on purpose.
	if [ "$(stat_sum streams_stepped_aside)" -eq 0 ]; then
		assert_engaged
	fi
	[ "$(stat_sum streams_stepped_aside)" -gt 0 ] || [ "$(stat_sum worker_reads)" -gt 0 ]
}

kill_sftp_server() {
	local relay
	relay=$(head -n 1 "$STATE/pids")
	kill -9 "$(pgrep -P "$relay")"
}

@test "faults_real: sftp-server killed under sshfs mid-read: ENOTCONN (or an early EOF) in the three modes, no hang" {
	need_storage sshfs
	# sshfs (no reconnect) sees its SFTP channel close, fails the reads in
	# flight and exits; every later read of the dead mount fails with
	# ENOTCONN ("Transport endpoint is not connected"). The library's
	# workers meet it first: the program gets it after the data read
	# before the fault, at its own offset. A reader without the library was
	# also seen to get an early end of file instead (a read in flight when
	# the channel closed answered with 0 bytes): either is allowed in every
	# mode, always short of the real end.
	check_fault sshfs kill_sftp_server 'E107|eof=1' short
}

# storage.bash starts rclone serve, then the relay, then rclone mount.
rclone_relay() { sed -n 2p "$STATE/pids"; }

stall_rclone_remote() {
	kill -STOP "$(rclone_relay)"
	sleep 3
	kill -CONT "$(rclone_relay)"
}

@test "faults_real: the rclone remote stalled for 3 s mid-read: all the data in the three modes, no hang" {
	need_storage rclone-off
	# rclone mount's HTTP stream waits (its idle timeout is 5 minutes) and
	# goes on where it was when the remote answers again: the reader waits,
	# with or without the library, and gets every byte.
	check_fault rclone-off stall_rclone_remote eof=1 whole
}

reset_rclone_remote() {
	kill -9 "$(rclone_relay)"
}

@test "faults_real: the rclone remote's connection reset mid-read: EIO in the three modes, no hang" {
	need_storage rclone-off
	# rclone mount serves what its read-ahead buffer (--buffer-size 16M)
	# holds, then retries the range request (--low-level-retries), which
	# nothing answers, and fails the read with EIO; it stays mounted.
	# (Killing rclone serve instead is no fault here: the relay has
	# already taken the whole response over loopback, and delivers it.)
	# rclone may have read tens of MB ahead before the reset: a larger file.
	SIZE=268435456
	make_offsets "$SRC/data" "$SIZE"
	check_fault rclone-off reset_rclone_remote EIO short
}

lazy_unmount() {
	fusermount3 -uz "$MNT"
	! storage_mounted "$MNT"
}

@test "faults_real: lazy unmount (fusermount3 -uz) under an sshfs reader: all the data in the three modes" {
	need_storage sshfs
	# The mount leaves the namespace at once, but the open file keeps the
	# FUSE connection: sshfs serves it until it is closed, then exits.
	check_fault sshfs lazy_unmount eof=1 whole
}

@test "faults_real: lazy unmount under an rclone reader: all the data in the three modes" {
	need_storage rclone-off
	check_fault rclone-off lazy_unmount eof=1 whole
}
