#!/usr/bin/env bats
# PREFETCH_MMAP: prefetching behind read-only file mappings. The program's
# results must not change; engagement is proved by the mmap_* statistics;
# unmapping while the thread reads ahead must be safe; the memory cap holds;
# writable mappings and advice are respected.

bats_require_minimum_version 1.5.0

load test_helper

SCAN="$HELPERS/mmap_scan"

# A mapping found in the page cache when it is made is left alone, so the
# test files are cold: written once, then dropped from the page cache
# before every run (cold_*). Mappings of files on a local disk are left to
# the kernel unless PREFETCH_BLOCK_DEVICES=1, which test_helper sets for
# every test. The local disk is fast, so the scan is slowed
# down a little (--work-ns per 4 KiB page) to give the workers time to see
# it advance and read ahead of it (mmap_bytes_populated). The tests on
# slowfs (at the end) have FUSE requests in flight. And the scan stops for
# a while once in each mapping (--pause-ms): on a loaded machine the
# workers might otherwise not get the CPU before the scan is over, and
# engagement, which these tests prove, would be luck.
WORK="--work-ns=10000 --pause-ms=100"

setup() {
	unset PREFETCH_MMAP D
	STATS="$BATS_TEST_TMPDIR/stats"
	MNT=
	cd "$BATS_TEST_TMPDIR" || return 1
	[ -x "$SCAN" ] || skip "mmap_scan not built"
	# What timeout_stacks dumps of a hung run (also in err.<mode>).
	export STACKS_LOG=$BATS_TEST_TMPDIR/stacks
}

teardown() {
	[ ! -s "$STACKS_LOG" ] || cat "$STACKS_LOG"
	[ -z "$MNT" ] || slowfs_umount "$MNT"
	[ -z "${D:-}" ] || rm -rf "$D"
}

# mmap_same_in_three_modes CMD...: plain, disabled, and enabled with
# PREFETCH_MMAP=1, each on cold files; identical stdout and exit status.
mmap_same_in_three_modes() {
	PREFETCH_MMAP=1 check_cold_three_modes "$@"
}

# assert_mmap_read_ahead: engaged, and the workers read data in. Only on
# slowfs: on the local disk (read_ahead_kb 8192 here) the kernel's own
# readahead of the faults may cache the window before the workers get
# there, and they rightly find it cached (seen once in 10 loaded runs).
assert_mmap_read_ahead() {
	assert_mmap_engaged || return 1
	[ "$(stat_sum mmap_bytes_populated)" -gt 0 ] || { echo "nothing read ahead"; return 1; }
}

assert_mmap_not_engaged() {
	echo "stats: $(cat "$STATS" 2>/dev/null)"
	[ "$(stat_sum mmap_mappings)" -eq 0 ] && [ "$(stat_sum mmap_bytes_populated)" -eq 0 ] &&
		[ "$(stat_sum mmap_bytes_cached)" -eq 0 ]
}

@test "mmap: the scan's checksum is the same with and without the library, and it engages" {
	make_cold_file a 24000000
	make_cold_file b 20000000
	make_cold_file c 9000000
	mmap_same_in_three_modes "$SCAN" --mode=mmap --threads=1 $WORK a b c
	assert_mmap_engaged
	grep -q '^checksum [0-9]' out.plain
	# The four modes of the experiment agree with each other.
	for mode in "--mode=mmap --threads=3" "--mode=read --threads=1" "--mode=read --threads=3"; do
		PREFETCH_MMAP=1 with_prefetch "$SCAN" $mode a b c > out.other
		cmp out.plain out.other
	done
}

@test "mmap: on by default, PREFETCH_MMAP=0 turns it off" {
	make_cold_file a 24000000
	cold_prefetch "$SCAN" --mode=mmap $WORK a > /dev/null
	assert_mmap_engaged
	rm -f "$STATS"
	PREFETCH_MMAP=0 cold_prefetch "$SCAN" --mode=mmap $WORK a > /dev/null
	assert_mmap_not_engaged
}

@test "mmap: local block devices: left to the kernel by default, prefetched with PREFETCH_BLOCK_DEVICES=1" {
	make_cold_file a 24000000
	dev=$(stat -c '%D' a)
	[ $((0x$dev >> 8)) -ne 0 ] || skip "the test directory is not on a block device"
	PREFETCH_BLOCK_DEVICES=0 cold_prefetch "$SCAN" --mode=mmap $WORK a > /dev/null
	assert_mmap_not_engaged
	[ "$(stat_sum block_device_skips)" -eq 1 ]
	rm -f "$STATS"
	# test_helper sets PREFETCH_BLOCK_DEVICES=1 for every test.
	cold_prefetch "$SCAN" --mode=mmap $WORK a > /dev/null
	assert_mmap_engaged
	[ "$(stat_sum block_device_skips)" -eq 0 ]
}

@test "mmap: several mappings scanned by several threads" {
	for f in a b c d; do make_cold_file $f 12000000; done
	mmap_same_in_three_modes "$SCAN" --mode=mmap --threads=4 $WORK a b c d
	assert_mmap_engaged
}

# Each loop maps the file cold (--evict): what an earlier loop and its
# read-ahead cached does not make a later mapping look cached.
@test "mmap: munmap while the thread reads ahead is safe" {
	make_cold_file big 64000000
	mmap_same_in_three_modes "$TIMEOUT_STACKS" 120 "$SCAN" --early-unmap=3M --loops=40 --check-unmapped \
		--evict $WORK big
	assert_mmap_engaged
}

@test "mmap: MAP_FIXED over a prefetched mapping is safe, the new memory is untouched" {
	make_cold_file big 64000000
	mmap_same_in_three_modes "$TIMEOUT_STACKS" 120 "$SCAN" --early-unmap=3M --loops=40 --replace \
		--check-unmapped --evict $WORK big
	assert_mmap_engaged
}

@test "mmap: a mapping larger than PREFETCH_MAX_MEMORY stays within the cap" {
	make_cold_file big 48000000
	export PREFETCH_MAX_MEMORY=1M
	mmap_same_in_three_modes "$SCAN" --mode=mmap $WORK big
	assert_mmap_engaged
	[ "$(stat_sum peak_memory)" -le 1048576 ]
}

@test "mmap: writable mappings are left alone" {
	make_cold_file a 24000000
	mmap_same_in_three_modes "$SCAN" --mode=mmap --map=private --prot=rw $WORK a
	assert_mmap_not_engaged
	mmap_same_in_three_modes "$SCAN" --mode=mmap --map=shared --prot=rw $WORK a
	assert_mmap_not_engaged
}

@test "mmap: MAP_PRIVATE read-only mappings are prefetched" {
	make_cold_file a 24000000
	mmap_same_in_three_modes "$SCAN" --mode=mmap --map=private $WORK a
	assert_mmap_engaged
}

@test "mmap: small mappings are left alone" {
	make_cold_file small 600000
	mmap_same_in_three_modes "$SCAN" --mode=mmap --work-ns=200000 small
	assert_mmap_not_engaged
}

@test "mmap: MADV_RANDOM and MADV_DONTNEED stop it, MADV_SEQUENTIAL starts it" {
	make_cold_file a 24000000
	mmap_same_in_three_modes "$SCAN" --mode=mmap --advise=random $WORK a
	assert_mmap_not_engaged
	mmap_same_in_three_modes "$SCAN" --mode=mmap --advise=dontneed $WORK a
	assert_mmap_not_engaged
	mmap_same_in_three_modes "$SCAN" --mode=mmap --advise=sequential $WORK a
	assert_mmap_engaged
}

@test "mmap: random access does not engage" {
	make_cold_file a 48000000
	mmap_same_in_three_modes "$SCAN" --mode=mmap --random=8 --work-ns=20000 a
	assert_mmap_not_engaged
}

# The child's file (b) is one the parent never touches, mapped cold
# (--evict): the parent's workers cannot have read it first. Whether a
# process's mapping was read ahead before it finished depends on how soon
# its tracker thread ran: on a machine with 4 busy processes per core the
# parent's once was not, and on the ASan build the child's once was not
# (1 run in 97). That prefetching engaged in the run is asserted, not in
# which process.
@test "mmap: fork while a mapping is prefetched; parent and child read right, the child maps a file of its own" {
	make_cold_file a 24000000
	make_cold_file b 24000000
	mmap_same_in_three_modes "$TIMEOUT_STACKS" 120 "$SCAN" --mode=mmap --fork --check-unmapped --evict \
		$WORK a b
	grep -q '^child checksum' out.enabled
	grep -q '^parent checksum' out.enabled
	# Both processes report.
	cat "$STATS"
	[ "$(grep -c 'prog=mmap_scan' "$STATS")" -eq 2 ]
	[ "$(stat_sum mmap_mappings)" -ge 1 ]
}

@test "mmap: PREFETCH_DISABLE=1 leaves mappings alone" {
	make_cold_file a 24000000
	PREFETCH_MMAP=1 PREFETCH_DISABLE=1 cold_prefetch "$SCAN" --mode=mmap $WORK a > /dev/null
	assert_mmap_not_engaged
}

@test "mmap: the library keeps no mapping of a file the program unmapped" {
	make_cold_file a 24000000
	make_cold_file b 12000000
	mmap_same_in_three_modes "$SCAN" --mode=mmap --threads=2 --check-unmapped $WORK a b
	assert_mmap_engaged
}

@test "mmap: a mapping wholly in the page cache is left alone, no thread started" {
	need_strace
	make_cold_file a 24000000
	# Control: cold, the library opens pagemap and starts a worker.
	evict_cold_files
	strace -f -qq -e trace=openat,clone,clone3 -o trace.cold \
		env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_MMAP=1 PREFETCH_STATS="$STATS" \
		"$SCAN" --mode=mmap $WORK a > out.cold
	cat trace.cold "$STATS"
	grep -q 'pagemap' trace.cold
	grep -q 'clone' trace.cold
	[ "$(stat_sum mmap_mappings_cached)" -eq 0 ]
	# Warm: no pagemap, no thread (a sanitizer's runtime may start its
	# own), counted as found cached.
	cat a > /dev/null
	rm -f "$STATS"
	strace -f -qq -e trace=openat,clone,clone3 -o trace.warm \
		env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_MMAP=1 PREFETCH_STATS="$STATS" \
		"$SCAN" --mode=mmap $WORK a > out.warm
	cat trace.warm "$STATS"
	! grep -q 'pagemap' trace.warm
	sanitized || ! grep -q 'clone' trace.warm
	[ "$(stat_sum mmap_mappings_cached)" -eq 1 ]
	assert_mmap_not_engaged
	cmp out.cold out.warm
}

# mincore() and cachestat() tell page-cache residency only to a file's
# owner (or root, or who may write it). RWF_NOWAIT reads, which would tell
# anyone, start the kernel's readahead of what they ask about, so the
# library does not use them: a cached file of another user is read ahead
# anyway (a documented limitation), with the same output.
@test "mmap: a cached file of another user is read ahead anyway, the same bytes" {
	need_nobody
	# bats' directories are private to root: one nobody can read.
	D=$(mktemp -d "${BATS_RUN_TMPDIR%/*}/pf-mmap.XXXXXX")
	chmod 0755 "$D"
	cp "$PREFETCH_LIB" "$D/libprefetch.so"
	cp "$SCAN" "$D/"
	chmod 0644 "$D/libprefetch.so"
	mkdir "$D/out"
	chown nobody:nogroup "$D/out"
	STATS=$D/out/stats
	make_cold_file "$D/a" 24000000
	chmod 0644 "$D/a"
	scan_as_nobody() {
		as_nobody env LD_PRELOAD="$D/libprefetch.so" PREFETCH_STATS="$STATS" \
			"$D/mmap_scan" --mode=mmap $WORK "$D/a"
	}
	as_nobody test -r "$D/a" || skip "$D cannot be reached by user nobody"
	# Control, cold: watched and read ahead.
	evict_cold_files
	run -0 scan_as_nobody
	echo "cold: $output; stats: $(cat "$STATS")"
	[ "$(stat_sum mmap_mappings_cached)" -eq 0 ]
	assert_mmap_engaged
	cold=$output
	# Warm: the kernel will not tell nobody that it is cached.
	cat "$D/a" > /dev/null
	rm -f "$STATS"
	run -0 scan_as_nobody
	echo "warm: $output; stats: $(cat "$STATS")"
	[ "${output#*checksum}" = "${cold#*checksum}" ]
	[ "$(stat_sum mmap_mappings_cached)" -eq 0 ]
	assert_mmap_engaged
}

# scan_threads [VAR=VALUE...]: sets max to the most threads that the scan of
# $MNT/a and $MNT/b had under the library ($lib) with these settings; its
# output must be that of the plain run (out.plain).
scan_threads() {
	rm -f "$STATS"
	# PREFETCH_FILES=0: b, the operand after a, would be predicted, and a
	# thread of fileahead.c started to look at it; only mmap workers count.
	max=$(max_tasks_while env LD_PRELOAD="$lib" PREFETCH_STATS="$STATS" PREFETCH_MMAP=1 \
		PREFETCH_FILES=0 "$@" \
		"$SCAN" --mode=mmap "$MNT/a" "$MNT/b")
	echo "threads seen with ${*:-the defaults}: $max; stats: $(cat "$STATS")"
	cmp out.plain out.sampled
}

# max_tasks_while CMD...: runs CMD (an executable: its process is sampled,
# not a subshell's) in the background, stdout to out.sampled; prints the
# largest number of threads it had (sampled every 5 ms).
max_tasks_while() {
	"$@" > "$BATS_TEST_TMPDIR/out.sampled" &
	local pid=$! max=0 n
	while kill -0 "$pid" 2> /dev/null; do
		n=$(ls "/proc/$pid/task" 2> /dev/null | wc -l)
		[ "$n" -gt "$max" ] && max=$n
		sleep 0.005
	done
	wait "$pid" || return 1
	echo "$max"
}

# mount_slowfs DELAY_US [SLOWFS OPTIONS...]: mounts src/ on mnt/ through
# slowfs (FUSE: the page cache is dropped at each open unless --keep-cache,
# kernel readahead is 128 KiB).
mount_slowfs() {
	need_fuse
	MNT=$BATS_TEST_TMPDIR/mnt
	mkdir -p "$MNT"
	local delay=$1
	shift
	slowfs_mount "$BATS_TEST_TMPDIR/src" "$MNT" --delay-us="$delay" "$@"
}

# server_bytes: bytes the slowfs server of $MNT has read so far.
server_bytes() {
	grep -o ' bytes=[0-9]*' "$MNT/.slowfs-stats" | cut -d= -f2
}

# On slowfs, where the kernel's readahead for faults is small: on the local
# disk, its 8 MiB readahead caches the data before the workers get there.
@test "mmap: data already in the page cache is not read again" {
	mkdir -p src
	make_file src/a 24000000
	mount_slowfs 1000 --keep-cache
	# The first half is cached, the second is not. The scan computes a
	# little ($WORK) so that the workers engage while it is in the cached
	# half: through it at memory speed, it was past before they looked
	# (2 runs of 6 in the sanitized build).
	dd if="$MNT/a" of=/dev/null bs=1M count=12 status=none
	local before after
	before=$(server_bytes)
	PREFETCH_MMAP=1 with_prefetch "$SCAN" --mode=mmap $WORK "$MNT/a" > /dev/null
	after=$(server_bytes)
	assert_mmap_read_ahead
	[ "$(stat_sum mmap_bytes_cached)" -gt 0 ]
	# None of the cached half was asked of the server again: the scan's
	# reads are the rest of the file at most (less if dd's readahead
	# cached more). Not mmap_bytes_populated: a step that two workers'
	# claims overlap, or one over pages that came in meanwhile, counts
	# there but reads nothing (seen once in 10 loaded runs: 256 KiB over).
	echo "server bytes during the scan: $((after - before))"
	[ $((after - before)) -gt 0 ]
	[ $((after - before)) -le $((24000000 - 12 * 1048576)) ]
}

@test "mmap: on slow storage several workers read ahead, at most PREFETCH_THREADS" {
	mkdir -p src
	make_file src/a 24000000
	make_file src/b 24000000
	mount_slowfs 3000
	with_plain "$SCAN" --mode=mmap "$MNT/a" "$MNT/b" > out.plain
	# One program thread (and ThreadSanitizer's own, in such a build): the
	# others are the library's mmap workers (mmap_scan makes no read() the
	# engine would prefetch).
	local lib=$SANITIZER_PRELOAD$PREFETCH_LIB base=1
	[ "${SANITIZER:-}" != thread ] || base=2
	scan_threads
	[ "$max" -ge $((base + 3)) ]
	assert_mmap_read_ahead
	scan_threads PREFETCH_THREADS=2
	[ "$max" -le $((base + 2)) ]
	assert_mmap_read_ahead
	# One worker takes several steps at once, but within a small memory cap
	# one at a time.
	scan_threads PREFETCH_THREADS=1 PREFETCH_MAX_MEMORY=256K
	[ "$max" -le $((base + 1)) ]
	assert_mmap_read_ahead
	[ "$(stat_sum peak_memory)" -le 262144 ]
}

# Each loop scans 2 MiB at 100 us a page (50 ms): a worker has to see the
# program advance by two chunks before it reads ahead, and without the
# compute only the first, cold loop took longer than the first probe's
# 2 ms; under load its worker once missed it (mmap_mappings=0).
@test "mmap: on slow storage, munmap and MAP_FIXED while workers read ahead are safe" {
	mkdir -p src
	make_file src/big 32000000
	mount_slowfs 1000
	local early=(--early-unmap=2M --loops=10 --work-ns=100000 --check-unmapped)
	mmap_same_in_three_modes "$TIMEOUT_STACKS" 120 "$SCAN" "${early[@]}" "$MNT/big"
	assert_mmap_read_ahead
	mmap_same_in_three_modes "$TIMEOUT_STACKS" 120 "$SCAN" "${early[@]}" --replace "$MNT/big"
	assert_mmap_read_ahead
	# Reading and unmapping while workers are blocked in their steps, in
	# MAP_PRIVATE mappings of a direct_io file (no MAP_SHARED there).
	slowfs_umount "$MNT"
	slowfs_mount "$BATS_TEST_TMPDIR/src" "$MNT" --delay-us=1000 --direct-io
	mmap_same_in_three_modes "$TIMEOUT_STACKS" 120 "$SCAN" --map=private "${early[@]}" "$MNT/big"
	assert_mmap_read_ahead
	mmap_same_in_three_modes "$SCAN" --mode=mmap --map=private --check-unmapped "$MNT/big"
	assert_mmap_read_ahead
}

# The library keeps no descriptor in the program's table (the workers read
# pagemap through descriptors of their own tables): a program that opens
# files up to its limit while a mapping is prefetched gets the same numbers
# and meets EMFILE at the same point. The statistics go to a file, opened
# only at exit (after the program closed its descriptors).
@test "mmap: the program's descriptor numbers and EMFILE point are its own (ulimit -n 12 and 1024)" {
	make_cold_file a 24000000
	for n in 12 1024; do
		(ulimit -n $n && mmap_same_in_three_modes "$HELPERS/mmap_fds" $WORK a)
		cat out.enabled
		grep -q '^open failed: EMFILE after [0-9]* opens$' out.enabled
		[ "$(grep -c '^fd ' out.enabled)" -ge $((n - 8)) ]
		assert_mmap_engaged
	done
}

# Several threads each read a file with read() and through a mapping, and
# fork half-way; the children go on reading (new streams, new mappings,
# workers of their own). Every byte is checked in every process; the
# harness's timeout prints every thread's stack if anything hangs.
@test "mmap: forks from several threads while streams and mappings are read ahead" {
	for f in a b c; do
		make_offsets $f 12000000
	done
	check_three_modes "$TIMEOUT_STACKS" 120 "$HELPERS/mmap_forks" --rounds=3 --work-ns=5000 a b c
	[ "$(grep -c ' round [0-9]: ok$' out.enabled)" -eq 9 ]
	echo "stats: $(cat "$STATS")"
	# The parent and its 9 children report.
	[ "$(grep -c 'prog=mmap_forks' "$STATS")" -eq 10 ]
	[ "$(stat_sum mmap_mappings)" -gt 0 ]
	[ "$(stat_sum files_prefetched)" -gt 0 ]
}

# The harness's stack dump, shown on a program that hangs on purpose (its
# children block on a mutex): PF_TEST_HANG=1 to run it. It passes when the
# dump names the blocked function.
@test "mmap: a hung test program's threads are dumped before it is killed" {
	[ "${PF_TEST_HANG:-}" = 1 ] || skip "set PF_TEST_HANG=1 to see the harness's stack dump"
	command -v gdb > /dev/null || skip "gdb not installed"
	make_offsets a 4000000
	run with_prefetch "$TIMEOUT_STACKS" 5 "$HELPERS/mmap_forks" --rounds=1 --hang-child a
	[ "$status" -eq 124 ]
	# The parent waiting for its child, the child blocked.
	grep -q 'in one_round' "$STACKS_LOG"
	grep -q 'pthread_mutex_lock.*hang_lock' "$STACKS_LOG"
	grep -q 'in child_main' "$STACKS_LOG"
}

# The "is it cached?" probe of a new mapping (8 sampled pages) asks the page
# cache without reading: a buffered RWF_NOWAIT read that misses starts the
# kernel's readahead before it returns EAGAIN (16 KiB were cached that way
# for a mapping nobody touched), so the probe changed what it measured.
# The probe runs in the mmap hook itself: its answer, "not cached", is the
# mapping's being watched (logged there), whatever the workers do later.
@test "mmap: asking whether a new mapping is cached reads nothing (local disk and FUSE)" {
	command -v fincore > /dev/null || skip "fincore missing (util-linux)"
	make_cold_file a 67108864
	evict_cold_files
	# Mapped and unmapped untouched: nothing may come into the page cache.
	PREFETCH_DEBUG=2 with_prefetch "$SCAN" --early-unmap=0 --loops=1 a > out 2> err
	cat err
	grep -q 'watching a mapping' err
	[ "$(fincore --bytes --noheadings --output RES a)" -eq 0 ]
	# Control: cached, the same mapping is found so.
	cat a > /dev/null
	rm -f "$STATS"
	run -0 with_prefetch "$SCAN" --early-unmap=0 --loops=1 a
	[ "$(stat_sum mmap_mappings_cached)" -eq 1 ]
	# Through FUSE: the server is asked for nothing.
	mkdir -p "$BATS_TEST_TMPDIR/src"
	make_file "$BATS_TEST_TMPDIR/src/b" 16777216
	mount_slowfs 200
	local before
	before=$(server_bytes)
	PREFETCH_DEBUG=2 with_prefetch "$SCAN" --early-unmap=0 --loops=1 "$MNT/b" > out 2> err
	grep -q 'watching a mapping' err
	[ "$(server_bytes)" -eq "$before" ]
}
