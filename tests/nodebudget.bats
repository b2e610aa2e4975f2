#!/usr/bin/env bats
# The node budget (src/nodebudget.c, PREFETCH_SHARED_BUDGET): the processes
# of a user share one buffer-memory cap and one cap on reads in flight
# through /dev/shm/libprefetch-<uid>. Each test runs its processes in a
# mount namespace of their own with an empty /dev/shm, so that neither
# other tests nor other users of this machine share their segment (needs
# root and unshare; skips without).

bats_require_minimum_version 1.5.0
load test_helper

NODEDUMP="$HELPERS/pf_nodedump"

setup() {
	common_setup
	# test_helper turns it off for every other test file.
	export PREFETCH_SHARED_BUDGET=1
	SRC="$BATS_TEST_TMPDIR/src"
	MNT="$BATS_TEST_TMPDIR/mnt"
	mkdir -p "$SRC" "$MNT"
	# For the functions run inside the namespace (declare -f).
	export SANITIZER_PRELOAD PREFETCH_LIB STATS NODEDUMP SRC MNT
}

teardown() {
	slowfs_umount "$MNT"
}

# need_own_shm: skips unless a mount namespace with its own /dev/shm can be made.
need_own_shm() {
	need_root
	command -v unshare > /dev/null || skip "unshare missing (util-linux)"
	in_own_shm true 2> /dev/null || skip "cannot make a mount namespace with its own /dev/shm"
}

# in_own_shm CMD...: CMD in a new mount namespace, on an empty /dev/shm.
in_own_shm() {
	unshare -m --propagation private sh -c \
		'mount -t tmpfs -o mode=1777,size=4m tmpfs /dev/shm && exec "$@"' sh "$@"
}

# in_own_shm_fn FUNCTION ARGS...: a function of this file (and the test
# helper's with_prefetch) run in_own_shm.
in_own_shm_fn() {
	local fn=$1
	shift
	in_own_shm bash -c "$(declare -f with_prefetch "$fn"); $fn \"\$@\"" "$fn" "$@"
}

# mount_slowfs [--page-cache] [SLOWFS OPTIONS...]: direct_io unless --page-cache.
mount_slowfs() {
	need_fuse
	local io=(--direct-io)
	[ "${1:-}" = --page-cache ] && io=() && shift
	slowfs_mount "$SRC" "$MNT" "${io[@]}" "$@" 2> "$BATS_TEST_TMPDIR/slowfs.err" || {
		cat "$BATS_TEST_TMPDIR/slowfs.err"
		grep -qiE 'permission denied|not permitted|fuse device not found' \
			"$BATS_TEST_TMPDIR/slowfs.err" && skip "FUSE cannot be mounted here"
		return 1
	}
}

# many_readers N [CMD...]: CMD (default md5sum) on $MNT/fI by N processes at
# once, each prefetching (settings from the environment), while pf_nodedump
# samples the segment; their outputs in out.I, the samples' maxima in watch.
many_readers() {
	local n=$1 i pids=() status=0
	shift
	(($#)) || set -- md5sum
	rm -f stop
	"$NODEDUMP" --until=stop > watch &
	local watcher=$!
	for ((i = 1; i <= n; i++)); do
		with_prefetch "$@" "$MNT/f$i" > "out.$i" 2> "err.$i" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i" || status=1
	done
	touch stop
	wait "$watcher"
	ls -l /dev/shm > shm.list
	return $status
}

# The caps of the node with PREFETCH_MAX_MEMORY=1M and PREFETCH_THREADS=2.
NODE_MEMORY=$((4 * 1048576))
NODE_REQUESTS=8

# Settings under which 6 processes need more than the node's caps: each may
# hold 1 MiB (6 in all, against 4) and keep 2 reads in flight (12, against
# 8); 64 KiB chunks, one FUSE request each.
small_caps() {
	export PREFETCH_MAX_MEMORY=1M PREFETCH_THREADS=2 PREFETCH_CHUNK=64K
}

make_files() {
	local i
	for ((i = 1; i <= $1; i++)); do
		make_file "$SRC/f$i" "$2"
	done
}

check_outputs() {
	local i
	for ((i = 1; i <= $1; i++)); do
		[ "$(cut -d' ' -f1 "out.$i")" = "$(md5sum < "$SRC/f$i" | cut -d' ' -f1)" ] ||
			{ echo "output $i differs"; cat "out.$i" "err.$i"; return 1; }
	done
}

@test "nodebudget: 6 processes at once on slowfs stay within one memory cap and one in-flight cap" {
	need_own_shm
	make_files 6 16777216
	mount_slowfs --delay-us=5000
	small_caps
	run in_own_shm_fn many_readers 6
	echo "$output"
	[ "$status" -eq 0 ]
	check_outputs 6
	cat watch shm.list "$MNT/.slowfs-stats"
	assert_engaged
	# Sampled from outside, in snapshots true at one instant.
	local samples max_mem max_req server
	samples=$(grep -o 'samples=[0-9]*' watch | cut -d= -f2)
	max_mem=$(grep -o 'max_memory=[0-9]*' watch | cut -d= -f2)
	max_req=$(grep -o 'max_requests=[0-9]*' watch | cut -d= -f2)
	[ "$samples" -gt 10 ]
	[ "$max_req" -gt 0 ]
	[ "$max_mem" -le "$NODE_MEMORY" ]
	[ "$max_req" -le "$NODE_REQUESTS" ]
	# The server's own count: the workers' reads within the cap, plus one
	# read of each program at a time (a chunk it reads itself, or the rest
	# of a read).
	server=$(grep -o 'max_inflight=[0-9]*' "$MNT/.slowfs-stats" | cut -d= -f2)
	[ "$server" -le $((NODE_REQUESTS + 6)) ]
	# The caps did limit (6 x 1 MiB and 6 x 2 reads do not fit 4 MiB and 8).
	[ $(($(stat_sum node_memory_limited) + $(stat_sum node_requests_limited))) -gt 0 ]
	# Every process's slot was given back at exit.
	grep -q 'libprefetch-0' shm.list || grep -q "libprefetch-$(id -u)" shm.list
}

# node_caps_held MAX_REQUESTS_AT_LEAST: the segment's sampled maxima within
# the node's caps, and reads in flight were seen.
node_caps_held() {
	local samples max_mem max_req
	samples=$(grep -o 'samples=[0-9]*' watch | cut -d= -f2)
	max_mem=$(grep -o 'max_memory=[0-9]*' watch | cut -d= -f2)
	max_req=$(grep -o 'max_requests=[0-9]*' watch | cut -d= -f2)
	[ "$samples" -gt 10 ]
	[ "$max_req" -ge "$1" ]
	[ "$max_mem" -le "$NODE_MEMORY" ]
	[ "$max_req" -le "$NODE_REQUESTS" ]
}

# The mmap prefetcher's steps and the files fetched before their open are
# reads in flight too. Only they read ahead here (mappings; files shorter
# than a chunk, which no stream reads), so any request the segment counted
# is theirs.
@test "nodebudget: mappings and files fetched before their open count against the node's in-flight cap" {
	need_own_shm
	local i j
	make_files 6 16777216
	# The mapping reads ahead into the page cache: no direct_io.
	mount_slowfs --page-cache --delay-us=5000
	small_caps
	run in_own_shm_fn many_readers 6 "$HELPERS/mmap_scan" --work-ns=2000
	echo "$output"
	[ "$status" -eq 0 ]
	cat watch
	node_caps_held 1
	[ "$(stat_sum mmap_bytes_populated)" -gt 0 ]
	[ "$(stat_sum bytes_fetched)" -eq 0 ]
	# 6 processes, each given 30 files of 40 KiB, fetched before their opens.
	slowfs_umount "$MNT"
	rm -f "$SRC"/f* "$STATS"
	for ((i = 1; i <= 6; i++)); do
		mkdir "$SRC/f$i"
		for ((j = 1; j <= 30; j++)); do
			make_file "$SRC/f$i/$j" 40960
		done
	done
	mount_slowfs --delay-us=5000
	run in_own_shm_fn many_readers 6 sh -c 'md5sum "$1"/*' sh
	echo "$output"
	[ "$status" -eq 0 ]
	cat watch
	for ((i = 1; i <= 6; i++)); do
		diff <(cd "$SRC/f$i" && md5sum ./* | cut -d' ' -f1) <(cut -d' ' -f1 "out.$i")
	done
	node_caps_held 1
	[ "$(stat_sum files_predicted_opened)" -gt 0 ]
}

# killed_reader: a prefetching md5sum killed -9 mid-read, then another
# process: prints the segment before and after.
killed_reader() {
	local victim i
	# env execs md5sum: $! is the reader's pid.
	env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS="$STATS" \
		md5sum "$MNT/f1" > /dev/null 2> err.victim &
	victim=$!
	for ((i = 0; i < 200; i++)); do
		"$NODEDUMP" 2> /dev/null | grep -q "pid $victim .* memory [1-9]" && break
		sleep 0.05
	done
	kill -9 "$victim"
	wait "$victim"
	echo "victim $victim"
	echo "--- before"
	"$NODEDUMP"
	PREFETCH_DEBUG=2 with_prefetch md5sum "$MNT/f2" > out.2 2> err.next
	echo "--- after"
	"$NODEDUMP"
	echo "--- next's log"
	cat err.next
}

@test "nodebudget: a process killed -9 mid-read leaves a slot that the next process empties" {
	need_own_shm
	make_files 2 16777216
	mount_slowfs --delay-us=20000
	small_caps
	run in_own_shm_fn killed_reader
	echo "$output"
	[ "$status" -eq 0 ]
	local victim before after
	victim=$(sed -n 's/^victim //p' <<< "$output")
	before=$(sed -n '/^--- before/,/^--- after/p' <<< "$output")
	after=$(sed -n '/^--- after/,/^--- next/p' <<< "$output")
	# It died holding buffers, in its slot...
	grep -q "pid $victim .* memory [1-9]" <<< "$before"
	# ... which the next process emptied: nothing is held any more.
	! grep -q "pid $victim " <<< "$after"
	grep -q '^used=[0-9]* memory=0 requests=0' <<< "$after"
	grep -q "emptied slot [0-9]* of pid $victim, gone" <<< "$output"
	check_outputs_one=$(cut -d' ' -f1 < "$BATS_TEST_TMPDIR/out.2")
	[ "$check_outputs_one" = "$(md5sum < "$SRC/f2" | cut -d' ' -f1)" ]
	assert_engaged
}

@test "nodebudget: PREFETCH_SHARED_BUDGET=0 keeps a budget per process, as before" {
	need_own_shm
	make_files 6 16777216
	mount_slowfs --delay-us=5000
	small_caps
	PREFETCH_SHARED_BUDGET=0 run in_own_shm_fn many_readers 6
	echo "$output"
	[ "$status" -eq 0 ]
	check_outputs 6
	cat shm.list "$STATS"
	assert_engaged
	# No segment was made, nothing counted against a node cap...
	! grep -q libprefetch shm.list
	[ "$(stat_sum node_memory_limited)" -eq 0 ]
	[ "$(stat_sum node_requests_limited)" -eq 0 ]
	# ... and each process held up to its own cap: more than the node's in all.
	[ "$(stat_sum peak_memory)" -gt "$NODE_MEMORY" ]
}

# hostile_segment KIND: plants a file of that kind where the segment goes,
# runs a prefetching process, and shows what became of the file.
hostile_segment() {
	local seg
	seg=/dev/shm/libprefetch-$(id -u)
	echo precious > /dev/shm/victim
	chmod 600 /dev/shm/victim
	case $1 in
	symlink) ln -s victim "$seg" ;;
	size) head -c 100 /dev/zero > "$seg" && chmod 600 "$seg" ;;
	owner) head -c 65536 /dev/zero > "$seg" && chmod 600 "$seg" && chown nobody "$seg" ;;
	mode) head -c 65536 /dev/zero > "$seg" && chmod 644 "$seg" ;;
	magic) head -c 65536 /dev/urandom > "$seg" && chmod 600 "$seg" ;;
	fifo) mkfifo -m 600 "$seg" ;;
	esac
	# (No content read from a FIFO: that would wait for a writer.)
	local before after
	before=$(stat -c '%F %U %a %s %Y' "$seg"; [ -p "$seg" ] || md5sum < "$seg")
	PREFETCH_DEBUG=1 with_prefetch md5sum "$SRC/f1" > out.1 2> err.1
	echo "status $?"
	after=$(stat -c '%F %U %a %s %Y' "$seg"; [ -p "$seg" ] || md5sum < "$seg")
	[ "$before" = "$after" ] && echo "segment untouched"
	[ "$(cat /dev/shm/victim)" = precious ] && echo "victim untouched"
	ls -l /dev/shm
	cat err.1
}

@test "nodebudget: a hostile file at the segment's path is refused cleanly: a budget per process" {
	need_own_shm
	make_files 1 8388608
	local kind
	for kind in symlink size owner mode magic fifo; do
		rm -f "$STATS"
		run in_own_shm_fn hostile_segment "$kind"
		echo "--- $kind: $output"
		[ "$status" -eq 0 ]
		grep -q '^status 0$' <<< "$output"
		grep -q '^segment untouched$' <<< "$output"
		grep -q '^victim untouched$' <<< "$output"
		check_outputs 1
		# One line says why, and the process went on prefetching alone.
		[ "$(grep -c 'node budget: .*keeps a budget of its own' <<< "$output")" -eq 1 ]
		assert_engaged
	done
}

@test "nodebudget: PREFETCH_SHARED_BUDGET takes a boolean word; anything else: one warning, the default" {
	make_file data 1048576
	run -0 env PREFETCH_SHARED_BUDGET=sometimes LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" \
		cat data
	[ "$(grep -c 'PREFETCH_SHARED_BUDGET="sometimes" is not one of' <<< "$output")" -eq 1 ]
	grep -q 'using the default 1' <<< "$output"
	run -0 env PREFETCH_SHARED_BUDGET=off LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" cat data
	! grep -q PREFETCH_SHARED_BUDGET <<< "$output"
}

@test "nodebudget: a fork child takes a slot of its own; the parent's stays the parent's" {
	need_own_shm
	make_offsets data 8388608
	in_fork() {
		PREFETCH_DEBUG=2 with_prefetch "$HELPERS/pf_fork" "$@" > out 2> err
		echo "status $?"
		cat err
		"$NODEDUMP"
	}
	export HELPERS
	run in_own_shm_fn in_fork data --reopen
	echo "$output"
	grep -q '^status 0$' <<< "$output"
	# Two processes, two slots.
	[ "$(grep -o 'node budget: [^ ]* slot [0-9]*' <<< "$output" | sort -u | wc -l)" -eq 2 ]
	[ "$(grep -o 'libprefetch\[[0-9]*\] info: attach: node budget' <<< "$output" | sort -u | wc -l)" -eq 2 ]
	# Nothing held once both are gone.
	grep -q '^used=[0-9]* memory=0 requests=0' <<< "$output"
}

@test "nodebudget: after an exec, the new program takes back the slot of the old one" {
	need_own_shm
	make_offsets data 16777216
	exec_then_read() {
		# pf_exec reads 4 MiB (prefetching, buffers held), then execs
		# md5sum on the rest: the same pid and start time.
		PREFETCH_DEBUG=2 with_prefetch "$HELPERS/pf_exec" data 4194304 md5sum > out 2> err
		echo "status $?"
		cat err
		"$NODEDUMP"
	}
	export HELPERS
	run in_own_shm_fn exec_then_read
	echo "$output"
	grep -q '^status 0$' <<< "$output"
	# Both images attached, to one slot, and nothing is held after.
	[ "$(grep -c 'attach: node budget: [^ ]* slot 0:' <<< "$output")" -eq 2 ]
	grep -q '^used=1 memory=0 requests=0' <<< "$output"
	[ "$(tail -n 1 "$BATS_TEST_TMPDIR/out" | cut -d' ' -f1)" = "$(tail -c +4194305 data | md5sum | cut -d' ' -f1)" ]
}

# recall_sequence: in one mount namespace (a copy of a mount has IDs of its
# own), two processes on slowfs serving one stream per handle, then, slowfs
# remounted plain at the same place, a third; statistics in s1, s2, s3.
recall_sequence() {
	trap 'fusermount3 -u "$MNT" 2> /dev/null' EXIT
	"$SLOWFS" --direct-io --stream-per-handle --delay-us=20000 "$SRC" "$MNT" || return 1
	echo "device $(stat -c %d "$MNT/data")"
	STATS=$PWD/s1 with_prefetch md5sum "$MNT/data" > out.1 || return 1
	STATS=$PWD/s2 with_prefetch md5sum "$MNT/data" > out.2 || return 1
	cat "$MNT/.slowfs-stats"
	fusermount3 -u "$MNT" || return 1
	"$SLOWFS" --direct-io --delay-us=20000 "$SRC" "$MNT" || return 1
	echo "device $(stat -c %d "$MNT/data")"
	STATS=$PWD/s3 with_prefetch md5sum "$MNT/data" > out.3 || return 1
	cat "$MNT/.slowfs-stats"
}

# A stream on storage not known yet begins with a probe (its first chunks
# one, then two at a time: src/mode.c). What it found is kept in the
# segment for a minute under the mount's unique ID, which the kernel never
# gives another mount (Linux 6.8; the device number of a FUSE mount is
# given to the next one).
@test "nodebudget: the next process recalls what one measured of a mount; a new mount at the same place is measured again" {
	need_own_shm
	need_fuse
	printf '%s\n' 6.8 "$(uname -r | cut -d- -f1)" | sort -V -C ||
		skip "Linux $(uname -r) names no mount uniquely"
	make_file "$SRC/data" 8388608
	export SLOWFS PREFETCH_PARALLEL=auto
	run in_own_shm_fn recall_sequence
	echo "$output"
	cat s1 s2 s3
	[ "$status" -eq 0 ]
	local i want
	want=$(md5sum < "$SRC/data" | cut -d' ' -f1)
	for i in 1 2 3; do
		[ "$(cut -d' ' -f1 out.$i)" = "$want" ]
		[ "$(stat_sum worker_reads s$i)" -gt 0 ]
	done
	# One stream per handle: the first probed, the second recalled.
	[ "$(stat_sum streams_ordered s1)" -eq 1 ]
	[ "$(stat_sum storage_recalled s1)" -eq 0 ]
	[ "$(stat_sum streams_ordered s2)" -eq 1 ]
	[ "$(stat_sum storage_recalled s2)" -eq 1 ]
	# Plain direct_io: probed again, in parallel.
	[ "$(stat_sum storage_recalled s3)" -eq 0 ]
	[ "$(stat_sum streams_ordered s3)" -eq 0 ]
	[[ "$(tail -n 1 <<< "$output")" =~ max_inflight=([0-9]+) ]]
	[ "${BASH_REMATCH[1]}" -gt 2 ]
}

# recheck_sequence: a process on slowfs serving one stream per handle;
# then slowfs serves in parallel (SIGUSR1), and two more processes read a
# larger file; statistics in s1, s2, s3.
recheck_sequence() {
	trap 'fusermount3 -u "$MNT" 2> /dev/null' EXIT
	"$SLOWFS" --direct-io --stream-per-handle --delay-us=20000 "$SRC" "$MNT" || return 1
	STATS=$PWD/s1 with_prefetch md5sum "$MNT/data" > out.1 || return 1
	kill -USR1 "$(pgrep -n -f -- "--stream-per-handle .* $MNT\$")" || return 1
	STATS=$PWD/s2 with_prefetch md5sum "$MNT/big" > out.2 || return 1
	STATS=$PWD/s3 with_prefetch md5sum "$MNT/big" > out.3 || return 1
	cat "$MNT/.slowfs-stats"
}

# A verdict is measured again (src/mode.c): a stream reading in order
# probes again after 16 chunks, and what it finds goes to the next process.
@test "nodebudget: a recalled verdict that no longer holds is measured again, and the next process starts wide" {
	need_own_shm
	need_fuse
	printf '%s\n' 6.8 "$(uname -r | cut -d- -f1)" | sort -V -C ||
		skip "Linux $(uname -r) names no mount uniquely"
	make_file "$SRC/data" 8388608
	make_file "$SRC/big" 33554432
	export SLOWFS PREFETCH_PARALLEL=auto
	run in_own_shm_fn recheck_sequence
	echo "$output"
	cat s1 s2 s3
	[ "$status" -eq 0 ]
	[ "$(cut -d' ' -f1 out.1)" = "$(md5sum < "$SRC/data" | cut -d' ' -f1)" ]
	local i want
	want=$(md5sum < "$SRC/big" | cut -d' ' -f1)
	for i in 2 3; do
		[ "$(cut -d' ' -f1 out.$i)" = "$want" ]
		[ "$(stat_sum worker_reads s$i)" -gt 0 ]
	done
	# One stream per handle: in order.
	[ "$(stat_sum streams_ordered s1)" -eq 1 ]
	# Parallel now: the second recalled "in order", measured again, widened.
	[ "$(stat_sum storage_recalled s2)" -eq 1 ]
	[ "$(stat_sum streams_ordered s2)" -eq 1 ]
	[ "$(stat_sum streams_widened s2)" -eq 1 ]
	# The third starts wide.
	[ "$(stat_sum storage_recalled s3)" -eq 1 ]
	[ "$(stat_sum streams_ordered s3)" -eq 0 ]
	[ "$(stat_sum streams_widened s3)" -eq 0 ]
}
