#!/usr/bin/env bats
# slowfs, the slow storage of the benchmarks: it must pass data through
# unchanged, really be slow, serve concurrent requests concurrently; and
# libprefetch must engage on it.

bats_require_minimum_version 1.5.0
load test_helper

# The slowfs checks do not need the library: only the last tests do.
setup() {
	mount_setup
}

teardown() {
	slowfs_umount "$MNT"
}

# elapsed_ms CMD...: runs CMD, prints its wall time in milliseconds.
elapsed_ms() {
	local t0=$EPOCHREALTIME t1
	"$@" > /dev/null || return 1
	t1=$EPOCHREALTIME
	echo $(( (${t1/./} - ${t0/./}) / 1000 ))
}

read_dd() {
	dd if="$1" of=/dev/null bs=128k status=none
}

read_two_parallel() {
	read_dd "$1" & local p=$!
	read_dd "$2"
	wait "$p"
}

read_two_serial() {
	read_dd "$1" && read_dd "$2"
}

@test "slowfs: content, listing, links and statfs pass through" {
	make_file "$SRC/data" 3000000
	mkdir "$SRC/dir"
	make_text "$SRC/dir/text" 1000
	ln -s data "$SRC/link"
	mount_slowfs_or_skip --delay-us=100
	cmp "$SRC/data" "$MNT/data"
	cmp "$SRC/dir/text" "$MNT/dir/text"
	[ "$(readlink "$MNT/link")" = data ]
	cmp "$SRC/data" "$MNT/link"
	[ "$(ls "$MNT")" = "$(ls "$SRC")" ]
	[ "$(stat -c %s "$MNT/data")" -eq 3000000 ]
	df "$MNT" > /dev/null
	# read-only, and the stats file stays hidden
	run touch "$MNT/new"
	[ "$status" -ne 0 ]
	run ls -a "$MNT"
	[[ "$output" != *slowfs-stats* ]]
}

@test "slowfs: direct_io content and request counters" {
	make_file "$SRC/data" 1048576
	mount_slowfs_or_skip --direct-io --delay-us=100
	cmp "$SRC/data" "$MNT/data"
	dd if="$MNT/data" bs=128k status=none | cmp - "$SRC/data"
	cat "$MNT/.slowfs-stats"
	grep -q 'reads=[1-9]' "$MNT/.slowfs-stats"
}

@test "slowfs: the per-request delay is applied" {
	make_file "$SRC/data" 1048576
	mount_slowfs_or_skip --direct-io --delay-us=20000
	local ms
	ms=$(elapsed_ms read_dd "$MNT/data")
	echo "1 MiB in 8 requests of 128 KiB at 20 ms: $ms ms"
	[ "$ms" -ge 160 ]
}

@test "slowfs: the bandwidth cap is applied" {
	make_file "$SRC/data" 1048576
	mount_slowfs_or_skip --direct-io --bandwidth=4194304
	local ms
	ms=$(elapsed_ms read_dd "$MNT/data")
	echo "1 MiB at 4 MiB/s: $ms ms"
	[ "$ms" -ge 240 ]
}

@test "slowfs: concurrent requests are served concurrently" {
	make_file "$SRC/a" 1048576
	make_file "$SRC/b" 1048576
	mount_slowfs_or_skip --direct-io --delay-us=20000
	local serial parallel
	serial=$(elapsed_ms read_two_serial "$MNT/a" "$MNT/b")
	parallel=$(elapsed_ms read_two_parallel "$MNT/a" "$MNT/b")
	echo "serial $serial ms, parallel $parallel ms"
	cat "$MNT/.slowfs-stats"
	# The server's own count: two requests were in its hands at once. The
	# times are shown, not asserted: under load (two suites and a busy loop
	# per core) parallel took 346 ms against 395 serial, once in 14 runs.
	grep -q 'max_inflight=[2-9]' "$MNT/.slowfs-stats"
}

@test "slowfs: unmount writes the counters to --stats" {
	make_file "$SRC/data" 65536
	mount_slowfs_or_skip --direct-io --stats="$BATS_TEST_TMPDIR/slowfs.stats"
	cat "$MNT/data" > /dev/null
	slowfs_umount "$MNT"
	# the daemon writes the file as it exits, just after the unmount
	local i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[ -s "$BATS_TEST_TMPDIR/slowfs.stats" ] && break
		sleep 0.1
	done
	cat "$BATS_TEST_TMPDIR/slowfs.stats"
	grep -q 'bytes=65536' "$BATS_TEST_TMPDIR/slowfs.stats"
}

need_library() {
	[ -r "$PREFETCH_LIB" ] || { echo "library not built: $PREFETCH_LIB"; return 1; }
}

@test "libprefetch engages on slowfs direct_io: same md5sum" {
	need_library
	make_file "$SRC/data" 4194304
	mount_slowfs_or_skip --direct-io --delay-us=5000
	local plain enabled
	plain=$(with_plain md5sum < "$MNT/data")
	enabled=$(with_prefetch md5sum "$MNT/data" | cut -d' ' -f1)
	[ "${plain%% *}" = "$enabled" ]
	[ "$enabled" = "$(md5sum < "$SRC/data" | cut -d' ' -f1)" ]
	assert_engaged
}

@test "libprefetch engages on slowfs direct_io with PREFETCH_SKIP_CACHED=1" {
	need_library
	make_file "$SRC/data" 4194304
	mount_slowfs_or_skip --direct-io --delay-us=5000
	# direct_io data is never in the page cache: the shortcut must not fire.
	PREFETCH_SKIP_CACHED=1 with_prefetch gzip -1 -c "$MNT/data" > out.gz
	gzip -dc out.gz | cmp - "$SRC/data"
	assert_engaged
}

@test "libprefetch engages on cold slowfs with page cache: same gzip -dc" {
	need_library
	# incompressible, so that the .gz takes more than a few 256 KiB reads
	make_file "$SRC/data" 4194304
	gzip -1 -c "$SRC/data" > "$SRC/data.gz"
	# no --keep-cache: each open starts cold
	mount_slowfs_or_skip --delay-us=5000
	PREFETCH_SKIP_CACHED=1 with_prefetch gzip -dc "$MNT/data.gz" | cmp - "$SRC/data"
	assert_engaged
}

@test "libprefetch: md5sum on slowfs direct_io 5 ms is faster than plain" {
	need_library
	[ "$SANITIZER" != thread ] || skip "ThreadSanitizer build: timings mean nothing there"
	make_file "$SRC/data" 4194304
	mount_slowfs_or_skip --direct-io --delay-us=5000
	local plain enabled
	plain=$(elapsed_ms with_plain md5sum "$MNT/data")
	enabled=$(elapsed_ms with_prefetch md5sum "$MNT/data")
	echo "plain $plain ms, libprefetch $enabled ms"
	# 128 requests of 32 KiB at 5 ms one after the other (~640 ms) against
	# a pipeline; a loose bound so that a loaded machine does not flake.
	[ $(( enabled * 100 )) -lt $(( plain * 60 )) ]
}

# slowfs_counter NAME: a counter of the mounted slowfs (.slowfs-stats).
slowfs_counter() {
	grep -o "$1=[0-9]*" "$MNT/.slowfs-stats" | cut -d= -f2
}

@test "libprefetch: twice the chunk where reads bypass the page cache (direct_io), not through it" {
	need_library
	# cachestat(2), which tells, is Linux 6.5 and later.
	printf '%s\n' 6.5 "$(uname -r | cut -d- -f1)" | sort -V -C ||
		skip "Linux $(uname -r) has no cachestat"
	make_file "$SRC/data" 8388608
	mount_slowfs_or_skip --direct-io --delay-us=200
	run -0 check_three_modes md5sum "$MNT/data"
	echo "$output"
	assert_engaged
	cat "$MNT/.slowfs-stats"
	[ "$(stat_sum streams_uncached)" -eq 1 ]
	# The storage's own count: the workers asked for 512 KiB at a time.
	[ "$(slowfs_counter max_request)" -eq $((2 * 262144)) ]

	# Not when the doubled window would not fit the memory cap.
	slowfs_umount "$MNT"
	mount_slowfs_or_skip --direct-io --delay-us=200
	PREFETCH_MAX_MEMORY=8M run -0 check_three_modes md5sum "$MNT/data"
	echo "$output"
	assert_engaged
	[ "$(stat_sum streams_uncached)" -eq 0 ]
	[ "$(slowfs_counter max_request)" -eq 262144 ]

	# Through the page cache, the program's first reads stay cached: the
	# default chunk (FUSE reads at most 128 KiB per request there).
	slowfs_umount "$MNT"
	mount_slowfs_or_skip --delay-us=200
	run -0 check_three_modes md5sum "$MNT/data"
	echo "$output"
	assert_engaged
	[ "$(stat_sum streams_uncached)" -eq 0 ]
}

# A direct_io read reaches the storage in requests of whole pages of the
# program's buffer; pf_read's is malloc'd, 16 bytes into a page. Pieces cut
# from the buffer's start would cost one request more each (8 for a 4 MiB
# read, where the program alone makes 5).
@test "libprefetch: a split read asks the storage no more requests than the program's own read" {
	need_library
	make_file "$SRC/data" 16777216
	mount_slowfs_or_skip --direct-io --delay-us=200
	# Reads of the window or more are split.
	export PREFETCH_WINDOW=4M
	local plain enabled
	with_plain "$HELPERS/pf_read" --mode=pread --bs=4194304 "$MNT/data" > out.plain
	plain=$(slowfs_counter reads)
	with_prefetch "$HELPERS/pf_read" --mode=pread --bs=4194304 "$MNT/data" > out.enabled
	enabled=$(( $(slowfs_counter reads) - plain ))
	cat "$MNT/.slowfs-stats" "$STATS"
	echo "requests: $plain without the library, $enabled with it"
	cmp out.plain out.enabled
	[ "$(stat_sum reads_split)" -ge 2 ]
	[ "$enabled" -le "$plain" ]
}

# The same for the workers' own buffers: malloc's would start 16 bytes into
# a page, and a 2 MiB chunk (PREFETCH_CHUNK=1M, doubled on direct_io) would
# be 3 requests of FUSE's 1 MiB, not 2.
@test "libprefetch: a chunk read ahead is whole pages of its buffer: no request more than its size needs" {
	need_library
	make_file "$SRC/data" 16777216
	mount_slowfs_or_skip --direct-io --delay-us=200
	PREFETCH_CHUNK=1M with_prefetch "$HELPERS/pf_read" --bs=65536 "$MNT/data" > out.enabled
	cat "$MNT/.slowfs-stats" "$STATS"
	assert_engaged
	local fetched requests own
	fetched=$(stat_sum bytes_fetched)
	requests=$(slowfs_counter reads)
	# the program's own reads of 64 KiB before the stream started
	own=$(( (16777216 - fetched) / 65536 ))
	echo "$requests requests: $own of the program's, for $fetched bytes read ahead"
	[ "$(slowfs_counter max_request)" -eq 1048576 ]
	# At most two more, the reads at the end of the file that find nothing;
	# with a request more per chunk, 8 more.
	[ "$requests" -le $(( own + (fetched + 1048575) / 1048576 + 2 )) ]
}

# FUSE refuses RWF_NOWAIT, the library's usual test for cached data; there
# cachestat(2) tells (as root or the file's owner), and a cached file is
# read straight from the page cache: no copy through the workers.
@test "libprefetch: a file in FUSE's page cache is read straight from it" {
	need_library
	printf '%s\n' 6.5 "$(uname -r | cut -d- -f1)" | sort -V -C ||
		skip "Linux $(uname -r) has no cachestat"
	make_file "$SRC/cached" 8388608
	make_file "$SRC/cold" 8388608
	mount_slowfs_or_skip --keep-cache --delay-us=200
	cat "$MNT/cached" > /dev/null
	# Control: a cold file on the same mount is prefetched (read once: the
	# mount keeps what it read).
	PREFETCH_SKIP_CACHED=1 run -0 with_prefetch md5sum "$MNT/cold"
	echo "$output"
	[ "${output%% *}" = "$(md5sum < "$SRC/cold" | cut -d' ' -f1)" ]
	assert_engaged
	rm -f "$STATS"
	PREFETCH_SKIP_CACHED=1 run -0 check_three_modes md5sum "$MNT/cached"
	echo "$output; stats: $(cat "$STATS")"
	[ "$(stat_sum cached_skips)" -gt 0 ]
	[ "$(stat_sum bytes_served)" -eq 0 ]
	[ "$(stat_sum worker_reads)" -eq 0 ]
}

@test "libprefetch: md5sum of four files on slowfs serves every byte of files 2-4 from the window" {
	need_library
	for i in 1 2 3 4; do make_file "$SRC/f$i" 3000000; done
	mount_slowfs_or_skip --direct-io --delay-us=1000
	run -0 check_three_modes md5sum "$MNT/f1" "$MNT/f2" "$MNT/f3" "$MNT/f4"
	echo "$output"
	assert_engaged
	# Files 2-4 were prefetched from their open, the first from its first
	# read (md5sum advises SEQUENTIAL): only that read went to the kernel.
	[ "$(stat_sum streams_at_open)" -eq 3 ]
	[ "$(stat_sum bytes_served)" -eq $((4 * 3000000 - 32768)) ]
}

# On a network FUSE client, statfs() is a round trip to the server (sshfs:
# 20 ms at 10 ms one way, twice per file before): the library tells FUSE
# from the mount table, and asks fstatfs() at most once per local filesystem.
@test "libprefetch: engaging files on FUSE costs the server no statfs" {
	need_library
	need_strace
	for i in 1 2 3; do make_file "$SRC/f$i" 2000000; done
	mount_slowfs_or_skip --direct-io --delay-us=1000
	strace -f -qq -e trace=statfs,fstatfs -o "$BATS_TEST_TMPDIR/plain" \
		md5sum "$MNT/f1" "$MNT/f2" "$MNT/f3" > "$BATS_TEST_TMPDIR/plain.out"
	strace -f -qq -e trace=statfs,fstatfs -o "$BATS_TEST_TMPDIR/lib" \
		env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS="$STATS" \
		md5sum "$MNT/f1" "$MNT/f2" "$MNT/f3" > "$BATS_TEST_TMPDIR/lib.out"
	cmp "$BATS_TEST_TMPDIR/plain.out" "$BATS_TEST_TMPDIR/lib.out"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -ge 1 ]
	cat "$BATS_TEST_TMPDIR/lib"
	[ "$(grep -c 'statfs(' "$BATS_TEST_TMPDIR/lib")" -eq "$(grep -c 'statfs(' "$BATS_TEST_TMPDIR/plain")" ]
}

# write_par_read: $PAR_READ, a Python program (THREADS FILE [ALONE]):
# THREADS threads, each with its own descriptor and part of FILE, read it in
# 1 MiB preads, as programs that read in parallel by themselves do; it
# prints each part's CRC. With ALONE, the first thread makes that many
# reads before the others start, and its next one once each of them has
# made one.
write_par_read() {
	PAR_READ=$BATS_TEST_TMPDIR/par_read.py
	cat > "$PAR_READ" <<'EOF'
import os, sys, threading, zlib
n, path = int(sys.argv[1]), sys.argv[2]
alone = int(sys.argv[3]) if len(sys.argv) > 3 else 0
size = os.path.getsize(path)
part = (size + n - 1) // n
crcs = [0] * n
started = threading.Event()
first_reads = threading.Semaphore(0)
def work(i):
    fd = os.open(path, os.O_RDONLY)
    pos, end, reads = i * part, min(size, (i + 1) * part), 0
    while pos < end:
        if i == 0 and alone and reads == alone:
            started.set()
            for _ in range(n - 1):
                first_reads.acquire()
        b = os.pread(fd, min(1 << 20, end - pos), pos)
        if not b:
            break
        crcs[i] = zlib.crc32(b, crcs[i])
        pos += len(b)
        reads += 1
        if i and reads == 1:
            first_reads.release()
    if i and reads == 0:
        first_reads.release()
    os.close(fd)
threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
threads[0].start()
if alone:
    started.wait()
for t in threads[1:]:
    t.start()
for t in threads:
    t.join()
print(" ".join("%08x" % c for c in crcs))
EOF
}

# A program that keeps several large reads in flight by itself already keeps
# the storage busy: reads ahead of it only added copies (par8 in
# docs/benchmarks-storage.md). Alone, the same reader is prefetched.
# par_read_setup SIZE: $PAR_READ and $PYTHON, and slowfs with direct_io
# serving a file of SIZE bytes, each read 20 ms in the server.
par_read_setup() {
	need_library
	command -v python3 > /dev/null || skip "python3 missing"
	# The interpreter itself, not a wrapper script (pyenv's shims), and
	# no LeakSanitizer for it: it leaks a little of its own at exit.
	PYTHON=$(python3 -c 'import sys; print(sys.executable)')
	! sanitized || export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
	make_file "$SRC/data" "$1"
	mount_slowfs_or_skip --direct-io --delay-us=20000
	write_par_read
}

@test "libprefetch: a program reading in parallel by itself is left to it; one thread is prefetched" {
	par_read_setup 33554432
	# Each thread's reads take 20 ms each in the server: when a run is
	# long enough, the other threads' reads are nearly always in flight.
	run -0 same_in_three_modes "$PYTHON" "$PAR_READ" 8 "$MNT/data"
	echo "$output"
	[ "$(stat_sum parallel_reader_skips)" -ge 1 ]
	rm -f "$STATS"
	run -0 same_in_three_modes "$PYTHON" "$PAR_READ" 1 "$MNT/data"
	assert_engaged
	[ "$(stat_sum parallel_reader_skips)" -eq 0 ]
}

# A thread that read alone long enough for a stream, then joined by others:
# its stream ends once they keep their reads in flight beside it (it used
# to keep it to the end, and the others' streams often engaged too).
@test "libprefetch: a stream engaged before the program's other threads started ends when they read" {
	par_read_setup $((64 * 1048576))
	# The first thread reads 4 of its 8 MiB alone: a stream, always. Its
	# next reads come when the others have each made one and keep 20 ms
	# reads in flight.
	run -0 same_in_three_modes "$PYTHON" "$PAR_READ" 8 "$MNT/data" 4
	echo "$output"
	cat "$STATS"
	[ "$(stat_sum files_prefetched)" -ge 1 ]
	# Every descriptor was left to the program in the end, the first too.
	[ "$(stat_sum parallel_reader_skips)" -eq 8 ]
	[ "$(stat_sum bytes_served)" -lt $((16 * 1048576)) ]
}

# fresh_*: the three modes, each on a pristine copy of the file, since the
# runs below change it on the server's side.
fresh_plain() { cp "$SRC/pristine" "$SRC/data" && with_plain "$@"; }
fresh_disabled() { cp "$SRC/pristine" "$SRC/data" && with_disabled "$@"; }
fresh_prefetch() { cp "$SRC/pristine" "$SRC/data" && with_prefetch "$@"; }

# slowfs caches attributes for 10 s, as FUSE clients and NFS do: fstat does
# not see what the server changed. The library confirms the file with the
# server (statx AT_STATX_FORCE_SYNC) before serving data read ahead more than
# a second after the last confirmation (README, "Consistency").
@test "libprefetch: a file shrunk or rewritten on the server is read as it is now" {
	need_library
	make_file "$SRC/pristine" 8388608
	mount_slowfs_or_skip --direct-io --delay-us=2000
	export ACCESS_PATTERN_BACKING=$SRC/data
	# The window holds data past the new end when the server shrinks the file.
	run -0 compare_modes fresh_plain fresh_disabled fresh_prefetch "$HELPERS/access_pattern" \
		"$MNT/data" read:65536:16 sleep:300 shrink:524288 sleep:1200 read:65536:8
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum streams_dropped)" -eq 1 ]
	grep -qx 'read 0 0000000000000000 @1048576' "$BATS_TEST_TMPDIR/out.enabled"
	# Rewritten in place inside the window: same size, new bytes.
	rm -f "$STATS"
	run -0 compare_modes fresh_plain fresh_disabled fresh_prefetch "$HELPERS/access_pattern" \
		"$MNT/data" read:65536:16 sleep:300 rewrite:1200000:70000 sleep:1200 read:65536:16
	assert_engaged
	[ "$(stat_sum streams_dropped)" -eq 1 ]
}

# A read ahead that ends short of the size the file had tells that it shrank,
# whatever the attribute cache says: the window is not served past it. What
# the workers read before the shrink (the window's 512 KiB ahead of the
# reader: how much depends on when the threads ran) may still be served, as
# README's "Consistency" allows for a second; then the reader sees the end of
# file where the program alone does, and nothing old again.
@test "libprefetch: a shrink seen by the reads ahead drops the window at once" {
	need_library
	make_file "$SRC/pristine" 16777216
	mount_slowfs_or_skip --direct-io --delay-us=2000
	export ACCESS_PATTERN_BACKING=$SRC/data
	local steps=(read:65536:16 shrink:1048576 read:65536:64) d=$BATS_TEST_TMPDIR
	# Small chunks and window: after the shrink, the workers' next reads
	# (the window moves on as the reader goes) end short.
	export PREFETCH_CHUNK=64K PREFETCH_WINDOW=512K PREFETCH_MAX_MEMORY=512K
	run compare_modes fresh_plain fresh_disabled fresh_prefetch "$HELPERS/access_pattern" \
		"$MNT/data" "${steps[@]}"
	echo "$output"
	[[ $output == "exit status: plain=0 disabled=0 enabled=0"* ]]
	cmp "$d/out.plain" "$d/out.disabled"
	# The old content: the same steps with a truncate to the file's size.
	fresh_plain "$HELPERS/access_pattern" "$MNT/data" read:65536:16 shrink:16777216 \
		read:65536:64 > "$d/out.old"
	cat "$d/out.enabled"
	# Each read (its length and bytes; the offset after an old read is
	# further on) is the program's own or the old content's: old reads
	# first, at most the window's 8, then the program's to the end.
	paste -d '|' <(cut -d' ' -f1-3 "$d/out.enabled") <(cut -d' ' -f1-3 "$d/out.plain") \
		<(cut -d' ' -f1-3 "$d/out.old") | awk -F'|' '
		$1 != $2 && $1 != $3 { print "line " NR ": neither now nor before: " $1; bad = 1 }
		$1 == $3 && $1 != $2 { old++; if (now) { print "line " NR ": old after new"; bad = 1 } }
		$1 == $2 && $1 != $3 { now = 1 }
		END { print old + 0 " reads of the old content"; exit bad || old > 8 }'
	assert_engaged
	[ "$(stat_sum streams_dropped)" -eq 1 ]
}

# dies_mid_read CMD...: mounts a fresh slowfs, runs CMD on $MNT/data in the
# background, kills the server with SIGKILL 1.5 s in, and prints
# CMD's exit status and messages. At 100 ms per request, 4 workers read
# 20 MB/s: the reader is still at it, on a loaded machine too.
dies_mid_read() {
	slowfs_umount "$MNT"
	slowfs_mount "$SRC" "$MNT" --direct-io --delay-us=100000 || return 1
	"$@" "$MNT/data" > /dev/null 2> "$BATS_TEST_TMPDIR/reader.err" &
	local reader=$!
	sleep 1.5
	pkill -KILL -f "^$SLOWFS .*$MNT\$" || return 1
	wait "$reader"
	echo "exit $?: $(sed "s|$MNT|MNT|" "$BATS_TEST_TMPDIR/reader.err")"
}
dead_plain() { dies_mid_read with_plain "$@"; }
dead_disabled() { dies_mid_read with_disabled "$@"; }
dead_prefetch() { dies_mid_read with_prefetch "$@"; }

# A FUSE server that dies fails the requests in flight with ECONNABORTED
# and later ones with ENOTCONN. Without the library a reader gets ENOTCONN
# when the kill falls between two of its requests (4 runs in 68 here);
# its read is in flight nearly always, and with the library always (the
# workers'), so the program gets the error the kernel gave at that offset,
# and the workers fetch nothing after the first failure.
@test "libprefetch: the server dies mid-read: the same error as without the library" {
	need_library
	need_fuse
	make_file "$SRC/data" 134217728
	export PREFETCH_THREADS=4
	local aborted='exit 1: cat: MNT/data: Software caused connection abort'
	local gone='exit 1: cat: MNT/data: Transport endpoint is not connected'
	# SERVER_DEATH_ROUNDS=20 for the issue's 20 of 20.
	for i in $(seq 1 "${SERVER_DEATH_ROUNDS:-3}"); do
		rm -f "$STATS"
		run compare_modes dead_plain dead_disabled dead_prefetch cat
		echo "round $i: $output"
		tail -n +1 "$BATS_TEST_TMPDIR"/out.*
		for mode in plain disabled; do
			grep -qxF -e "$aborted" -e "$gone" "$BATS_TEST_TMPDIR/out.$mode"
		done
		grep -qxF "$aborted" "$BATS_TEST_TMPDIR/out.enabled"
		assert_engaged
		[ "$(stat_sum errors_forwarded)" -eq 1 ]
	done
	# No read is sent after the first failure: only those in flight then
	# (one per worker, and the reader's) fail. Under strace, whose stops
	# slow the reader, the window can be full and no read in flight when
	# the kill falls (once in about 40 loaded runs): then the first read
	# after it fails with ENOTCONN, as a plain reader's does.
	need_strace
	run -0 dies_mid_read strace -f -qq -e trace=pread64 -e status=failed \
		-o "$BATS_TEST_TMPDIR/strace" env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" cat
	echo "$output"
	grep -qxF -e "$aborted" -e "$gone" <<< "$output"
	failed=$(grep -c 'pread64(' "$BATS_TEST_TMPDIR/strace")
	echo "failed reads: $failed"
	[ "$failed" -ge 1 ] && [ "$failed" -le 5 ]
}

# A handle served as one sequential stream (slowfs --stream-per-handle, as
# rclone mount and mountpoint-s3 serve theirs) punishes reads out of order
# with a wait and a reopen. The library measures it (two reads in flight
# deliver no more than one) and reads in order there, one read at a time,
# and in parallel on ordinary storage. The server's own counters tell:
# reopens, and the most reads in flight. direct_io: through the page cache
# the kernel's readahead blurs the measure (the mount table tells there).
@test "libprefetch: in order on stream-per-handle storage, in parallel on ordinary storage" {
	need_library
	export PREFETCH_PARALLEL=auto
	make_file "$SRC/data" 16777216
	mount_slowfs_or_skip --stream-per-handle --direct-io --delay-us=50000
	run -0 check_three_modes cat "$MNT/data"
	echo "$output"
	cat "$MNT/.slowfs-stats"
	assert_engaged
	[ "$(stat_sum streams_ordered)" -eq 1 ]
	# The program's three runs opened the file three times; the two
	# reads of the probe never made the stream jump.
	[ "$(slowfs_counter reopens)" -le 1 ]

	slowfs_umount "$MNT"
	mount_slowfs_or_skip --direct-io --delay-us=50000
	run -0 check_three_modes cat "$MNT/data"
	echo "$output"
	cat "$MNT/.slowfs-stats"
	assert_engaged
	[ "$(stat_sum streams_ordered)" -eq 0 ]
	[ "$(slowfs_counter max_inflight)" -gt 2 ]
}

@test "libprefetch: PREFETCH_PARALLEL=0 reads in order, =1 in parallel, whatever the storage" {
	need_library
	make_file "$SRC/data" 16777216
	mount_slowfs_or_skip --delay-us=2000
	PREFETCH_PARALLEL=0 run -0 check_three_modes md5sum "$MNT/data"
	assert_engaged
	[ "$(stat_sum streams_ordered)" -eq 1 ]
	[ "$(slowfs_counter max_inflight)" -le 2 ]
	slowfs_umount "$MNT"
	mount_slowfs_or_skip --stream-per-handle --delay-us=2000
	PREFETCH_PARALLEL=1 run -0 check_three_modes md5sum "$MNT/data"
	assert_engaged
	[ "$(stat_sum streams_ordered)" -eq 0 ]
	[ "$(slowfs_counter reopens)" -gt 0 ]
}
