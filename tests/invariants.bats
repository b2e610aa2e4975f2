#!/usr/bin/env bats
# The shim's invariants, each checked by one helper program (tests/helpers)
# whose output must be identical without the library, with it disabled and
# with it enabled, plus proof from the statistics that prefetching really
# served the reads (a shim that does nothing would produce the same output).
# Data files are offset-encoded (pf_gen): the helpers check every byte
# against the position it was read from.
bats_require_minimum_version 1.5.0

load test_helper

CHUNK=262144
WINDOW=8388608

setup_file() {
	local d="$BATS_FILE_TMPDIR"
	# 48 MiB + 4104: a multiple of 8, not of a chunk.
	"$HELPERS/pf_gen" "$d/data" $((48 * 1048576 + 4104))
	"$HELPERS/pf_gen" "$d/data12" $((12 * 1048576 + 808))
	"$HELPERS/pf_gen" "$d/small" $((1048576 + 8))
	"$HELPERS/pf_gen" "$d/other" $((1048576)) --key=0x5a
	"$HELPERS/pf_gen" "$d/short" 200000
	make_text "$d/text" 300000
}

data() { echo "$BATS_FILE_TMPDIR/$1"; }

# --- reading -------------------------------------------------------------------

@test "read(): data, positions and kernel offsets identical; served by prefetching" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --mode=read --verify --offsets-every=16
	echo "$output"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
	# Prefetching served most of the file.
	[ "$(stat_sum bytes_served)" -gt $((40 * 1048576)) ]
}

@test "pread(): data identical, file offset untouched; served by prefetching" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --mode=pread --verify --offsets-every=16
	echo "$output"
	grep -q ' kernel=0 ' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
}

@test "readv(): data and offsets identical; served by prefetching" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --mode=readv --verify --offsets-every=16
	echo "$output"
	assert_engaged
}

@test "preadv(): data identical, file offset untouched; served by prefetching" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --mode=preadv --verify --offsets-every=16
	echo "$output"
	assert_engaged
}

@test "open variants (openat, O_NONBLOCK|O_NOCTTY as gzip does): served by prefetching" {
	local how
	for how in openat nonblock; do
		echo "== --open=$how"
		run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --open=$how --verify --offsets-every=32
		echo "$output"
		assert_engaged
	done
}

@test "request sizes around chunk and window edges: every byte where it belongs" {
	local bs
	for bs in 4095 4096 4097 65535 $((CHUNK - 1)) $CHUNK $((CHUNK + 1)) $((1048576 + 1)) \
		$((WINDOW - 1)) $((WINDOW + 1)); do
		echo "== bs=$bs"
		run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --bs=$bs --verify --offsets-every=7
		echo "$output"
	done
	# bs=4097 and smaller engage on a 12 MiB file (many sequential reads).
	echo "== bs=4097 engaged?"
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --bs=4097 --verify
	assert_engaged
}

@test "tiny requests (7 bytes) and small chunks/window: every byte where it belongs" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data small)" --bs=7 --verify --offsets-every=10000
	echo "$output"
	assert_engaged
	local bs
	for bs in 1000 4096 5000 65536 100000; do
		echo "== PREFETCH_CHUNK=4K PREFETCH_WINDOW=64K bs=$bs"
		run -0 check_three_modes env PREFETCH_CHUNK=4K PREFETCH_WINDOW=64K \
			"$HELPERS/pf_read" "$(data data12)" --bs=$bs --verify --offsets-every=9
		echo "$output"
		assert_engaged
	done
}

@test "a stream never holds more than the window; the memory cap holds" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --verify
	echo "$output"
	assert_engaged
	echo "peak_memory=$(stat_max peak_memory) window=$WINDOW"
	[ "$(stat_max peak_memory)" -le "$WINDOW" ]
	run -0 check_three_modes env PREFETCH_MAX_MEMORY=1M "$HELPERS/pf_read" "$(data data)" --verify
	echo "$output"
	assert_engaged
	echo "peak_memory=$(stat_max peak_memory) cap=1048576"
	[ "$(stat_max peak_memory)" -le 1048576 ]
}

@test "many streams in one process: default settings, then a 2 MiB cap and one worker" {
	local f
	f=$(data data12)
	run -0 check_three_modes "$HELPERS/pf_multi" "$f" "$f" "$f" "$f" "$f" "$f"
	echo "$output"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -ge 2 ]
	run -0 check_three_modes env PREFETCH_MAX_MEMORY=2M PREFETCH_THREADS=1 \
		"$HELPERS/pf_multi" "$f" "$f" "$f" "$f" "$f" "$f"
	echo "$output"
	assert_engaged
	echo "peak_memory=$(stat_max peak_memory) cap=2097152"
	[ "$(stat_max peak_memory)" -le 2097152 ]
}

@test "preads elsewhere between sequential reads: no offset moved, the stream goes on" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --verify --pread-every=4:1000 --offsets-every=8
	echo "$output"
	assert_engaged
	# The side preads did not stop prefetching of the sequential reads.
	[ "$(stat_sum bytes_served)" -gt $((40 * 1048576)) ]
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --mode=fread --open=fopen --verify \
		--pread-every=4:$((30 * 1048576)) --offsets-every=8
	echo "$output"
	assert_engaged
}

@test "signal handlers that read, landing while the library works: no deadlock, data right" {
	run -0 check_three_modes "$TIMEOUT_STACKS" 120 "$HELPERS/pf_signal" "$(data data)" "$(data other)" --interval-us=200
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled" "$BATS_TEST_TMPDIR/err.enabled"
	assert_engaged
}

@test "a signal handler's reads start, serve and end a stream without one allocation, and start no thread" {
	# The helper counts its own malloc's calls; a sanitizer's would be replaced.
	sanitized && skip "the helper replaces malloc, which the sanitizer runtime owns"
	# PREFETCH_FILES=0: the side file, the second operand, would otherwise
	# be fetched before its open now and then, and its reads served from that.
	PREFETCH_FILES=0 run -0 check_three_modes "$HELPERS/pf_signal_alloc" "$(data data12)" "$(data other)"
	echo "$output"
	assert_engaged
	# Both files engaged; the side file, read only in the handler, was served.
	[ "$(stat_sum files_prefetched)" -eq 2 ]
	[ "$(stat_sum bytes_served)" -gt $((12 * 1048576 + 808)) ]
	# The handler's reads come first: they would start the library's
	# threads, and pthread_create allocates. The threads start at main's
	# reads instead, which are prefetched.
	rm -f "$STATS"
	run -0 check_three_modes "$HELPERS/pf_signal_alloc" "$(data data12)" "$(data other)" --handler-first
	echo "$output"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
}

# --- seeks and advice --------------------------------------------------------------

@test "seeks far forward drop the stream; data and offsets stay right" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --verify --skip=8:16M --offsets-every=4
	echo "$output"
	assert_engaged
	echo "streams_dropped=$(stat_sum streams_dropped)"
	[ "$(stat_sum streams_dropped)" -ge 1 ]
}

@test "seeks backwards: data and offsets stay right" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --verify --skip=16:-512K --offsets-every=4
	echo "$output"
	assert_engaged
	[ "$(stat_sum streams_dropped)" -ge 1 ]
}

@test "small seeks within the window (pread with holes): data right" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --mode=pread --verify --skip=4:100000
	echo "$output"
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --verify --skip=4:100000 --offsets-every=4
	echo "$output"
	assert_engaged
}

@test "posix_fadvise(SEQUENTIAL) engages at once; without it the same reads do not" {
	# 100 reads: far fewer than PREFETCH_MIN_SEQUENTIAL=1000.
	run -0 check_three_modes env PREFETCH_MIN_SEQUENTIAL=1000 \
		"$HELPERS/pf_read" "$(data data)" --fadvise=sequential --stop-after=6553600 --verify
	echo "$output"
	assert_engaged
	run -0 check_three_modes env PREFETCH_MIN_SEQUENTIAL=1000 \
		"$HELPERS/pf_read" "$(data data)" --stop-after=6553600 --verify
	echo "$output"
	assert_not_engaged
}

@test "posix_fadvise(RANDOM) keeps a sequential reader from being prefetched" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --fadvise=random --verify
	echo "$output"
	assert_not_engaged
	# The control: the same reads without the advice are prefetched.
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --verify
	assert_engaged
}

# advice_midway_stops ADVICE: posix_fadvise(ADVICE) after 20 reads of 64 KiB
# stops prefetching: at most the 17 or so reads before the advice came from
# buffers.
advice_midway_stops() {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --fadvise="$1" \
		--fadvise-after=20 --verify --offsets-every=10
	echo "$output"
	assert_engaged
	[ "$(stat_sum bytes_served)" -le $((20 * 65536)) ]
}

@test "posix_fadvise(RANDOM) in the middle stops prefetching" {
	advice_midway_stops random
}

@test "posix_fadvise(DONTNEED) in the middle stops prefetching" {
	advice_midway_stops dontneed
}

# --- stdio -------------------------------------------------------------------------

@test "fread of 64K: data, ftell, kernel offset identical; served by prefetching" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data)" --mode=fread --open=fopen --verify --offsets-every=16
	echo "$output"
	assert_engaged
}

@test "fread with getc/ungetc between reads: ftell and data identical; prefetched" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --mode=fread --open=fopen \
		--bs=65536 --verify --offsets-every=3 --ungetc
	echo "$output"
	assert_engaged
}

@test "fread with odd sizes and fseeko: identical" {
	local bs
	for bs in 4095 4096 4097 100000 $((CHUNK + 1)); do
		echo "== fread bs=$bs"
		run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --mode=fread --open=fopen \
			--bs=$bs --verify --offsets-every=5 --skip=7:-3000
		echo "$output"
	done
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --mode=fread --open=fopen \
		--bs=100000 --verify --skip=7:3M
	echo "$output"
	assert_engaged
}

@test "fread on a FILE from fdopen is prefetched too" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data data12)" --mode=fread --open=fdopen --verify --offsets-every=16
	echo "$output"
	assert_engaged
}

@test "fgets stays in glibc: identical, not prefetched (control: fread is)" {
	run -0 check_three_modes "$HELPERS/pf_read" "$(data text)" --mode=fgets --open=fopen --bs=200 --offsets-every=50000
	echo "$output"
	assert_not_engaged
	run -0 check_three_modes "$HELPERS/pf_read" "$(data text)" --mode=fread --open=fopen --bs=65536
	assert_engaged
}

# --- descriptors shared by dup, fork, exec -------------------------------------------

@test "dup'd descriptors: every duplicate reports the offset the program expects" {
	run -0 check_three_modes "$HELPERS/pf_dup" "$(data data)"
	echo "$output"
	assert_engaged
}

@test "fork while prefetching: the child reads on the shared offset, then the parent" {
	run -0 check_three_modes "$HELPERS/pf_fork" "$(data data)"
	echo "$output"
	assert_engaged
}

@test "fork while prefetching: the child does not read, the parent goes on" {
	run -0 check_three_modes "$HELPERS/pf_fork" "$(data data)" --child=0
	echo "$output"
	assert_engaged
}

@test "fork while prefetching: child and parent read at the same time" {
	run -0 check_three_modes "$HELPERS/pf_fork" "$(data data)" --reopen
	echo "$output"
	assert_engaged
	# Both processes were prefetched, each with its own statistics.
	[ "$(grep -c 'files_prefetched=[1-9]' "$STATS")" -eq 2 ]
}

@test "exec with the inherited descriptor on stdin: md5sum reads exactly the rest" {
	local f n=$((3 * 1048576 + 1000)) expected
	f=$(data data)
	run -0 check_three_modes "$HELPERS/pf_exec" "$f" $n md5sum
	echo "$output"
	expected=$(tail -c +$((n + 1)) "$f" | md5sum)
	echo "expected: $expected"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	[ "$(tail -n 1 "$BATS_TEST_TMPDIR/out.enabled")" = "$expected" ]
	assert_engaged
}

@test "exec with the inherited descriptor as fd 3: the helper reads exactly the rest" {
	local f n=$((5 * 1048576 + 4))
	f=$(data data)
	run -0 check_three_modes "$HELPERS/pf_exec" "$f" $n --fd=3 "$HELPERS/pf_read" --fd=3 --verify
	echo "$output"
	grep -q " bad=0" "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	# The reader after exec was prefetched (the one before exec does not
	# report: exec runs no destructor).
	grep -q 'prog=pf_read files_prefetched=1 ' "$STATS"
}

@test "exec cat with the inherited descriptor: output is exactly the rest" {
	local f n=$((2 * 1048576 + 77)) expected
	f=$(data data12)
	run -0 check_three_modes sh -c '"$1" "$2" "$3" cat | tail -c +2 | md5sum' sh "$HELPERS/pf_exec" "$f" $n
	echo "$output"
	assert_engaged
}

# --- end of file, threads ----------------------------------------------------------

@test "end of file is not final: data appended after EOF is read" {
	local f="$BATS_TEST_TMPDIR/growing"
	make_offsets "$f" $((4 * 1048576))
	run -0 check_three_modes "$HELPERS/pf_append" "$f" --reset=4M --rounds=3 --append=100000
	echo "$output"
	assert_engaged
}

@test "data appended while prefetching has reached the old end is read in the same pass" {
	local f="$BATS_TEST_TMPDIR/growing"
	make_offsets "$f" $((4 * 1048576))
	run -0 check_three_modes "$HELPERS/pf_append" "$f" --reset=4M --during=3M --append=1000000 --rounds=1
	echo "$output"
	grep -q 'round 0: read 5194304 ' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
}

@test "a file cut short while ranges past the new end are prefetched: reads stop there" {
	local f="$BATS_TEST_TMPDIR/shrinking"
	make_offsets "$f" $((16 * 1048576))
	run -0 check_three_modes "$HELPERS/pf_append" "$f" --reset=16M --during=1M --shrink-to=3M \
		--append=100000 --rounds=1
	echo "$output"
	grep -q 'round 0: read 3145728 ' "$BATS_TEST_TMPDIR/out.enabled"
	grep -q 'round 1: read 100000 ' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	# The prefetched bytes past the cut were thrown away, not served.
	echo "bytes_wasted=$(stat_sum bytes_wasted)"
	[ "$(stat_sum bytes_wasted)" -gt 0 ]
}

@test "threads reading one descriptor: every byte read exactly once" {
	run -0 check_three_modes "$HELPERS/pf_threads" "$(data data)" --threads=4 --bs=65536
	echo "$output"
	assert_engaged
	run -0 check_three_modes "$HELPERS/pf_threads" "$(data data)" --threads=8 --bs=4104
	echo "$output"
	assert_engaged
	run -0 check_three_modes "$HELPERS/pf_threads" "$(data data12)" --threads=3 --bs=$((CHUNK + 8)) --warmup=3
	echo "$output"
}

# --- closing and exiting while workers read ------------------------------------------

@test "close/dup2/close_range/closefrom/fclose while workers read: no hang, no stale data" {
	need_faultinject
	export FI_PATH_SUFFIX=/data FI_DELAY_US=2000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_close_race" "$(data data)" "$(data other)" --iterations=60
	echo "$output"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -ge 30 ]
}

@test "close while workers read, with another thread reading the same file" {
	need_faultinject
	export FI_PATH_SUFFIX=/data FI_DELAY_US=1000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_close_race" "$(data data)" "$(data other)" \
		--iterations=30 --background
	echo "$output"
	assert_engaged
}

@test "exit while workers read: exit, _exit, return, exit from another thread" {
	need_faultinject
	export FI_PATH_SUFFIX=/data FI_DELAY_US=20000
	local how start elapsed
	for how in exit _exit return thread-exit exit-while-reading; do
		echo "== $how"
		start=$SECONDS
		run check_three_modes_fi "$TIMEOUT_STACKS" 60 "$HELPERS/pf_exit" "$(data data)" --how=$how
		elapsed=$((SECONDS - start))
		echo "$output (${elapsed}s for three runs)"
		[ "$status" -eq 0 ]
		[ "$elapsed" -lt 30 ]
		cat "$BATS_TEST_TMPDIR/out.enabled"
		if [ "$how" != _exit ]; then
			# The library's destructor ran and reported: the process ended
			# through it, engaged.
			assert_engaged
		fi
	done
}

# --- what must cost nothing, or never be prefetched -----------------------------------

@test "10,000 idle descriptors: no threads, little memory" {
	local dir="$BATS_FILE_TMPDIR/many" n=10000 plain enabled
	"$HELPERS/pf_manyfiles" "$dir" $n --create
	run -0 check_three_modes "$HELPERS/pf_manyfiles" "$dir" $n
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	grep -q "opened=$n read=$((n * 4096)) threads=1" "$BATS_TEST_TMPDIR/out.enabled"
	plain=$(sed -n 's/^rss_growth_kb=//p' "$BATS_TEST_TMPDIR/err.plain")
	enabled=$(sed -n 's/^rss_growth_kb=//p' "$BATS_TEST_TMPDIR/err.enabled")
	echo "RSS growth: plain ${plain} KiB, enabled ${enabled} KiB"
	# At most 128 bytes per descriptor (a slot is 96: the descriptor
	# table's pages); ASan's shadow memory inflates RSS.
	# ThreadSanitizer's shadow and metadata make RSS no measure at all
	# (about 5.4 MiB measured): not checked there.
	local limit=$((n * 128 / 1024))
	sanitized && limit=4000
	[ "$SANITIZER" = thread ] || [ $((enabled - plain)) -lt "$limit" ]
	# And no descriptor is idle in the read-nothing case either.
	run -0 check_three_modes "$HELPERS/pf_manyfiles" "$dir" $n --reads=0
	echo "$output"
	plain=$(sed -n 's/^rss_growth_kb=//p' "$BATS_TEST_TMPDIR/err.plain")
	enabled=$(sed -n 's/^rss_growth_kb=//p' "$BATS_TEST_TMPDIR/err.enabled")
	echo "RSS growth without reads: plain ${plain} KiB, enabled ${enabled} KiB"
	[ $((enabled - plain)) -lt "$limit" ]
	# The control: one of those processes reading a big file does engage.
	rm -f "$STATS"
	run -0 with_prefetch "$HELPERS/pf_read" "$(data data12)"
	assert_engaged
}

@test "/proc, /sys, pipes, sockets, /dev/zero are never prefetched (only the control file is)" {
	run -0 check_three_modes "$HELPERS/pf_special" proc sys pipe socket devzero "control:$(data data12)"
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
}

@test "a pipe on stdin fed by the test is never prefetched (only the control file is)" {
	local f
	f=$(data data)
	run -0 check_three_modes sh -c 'cat "$1" | "$2" stdin "control:$3"' sh "$f" "$HELPERS/pf_special" "$(data data12)"
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	# cat, which reads the file into the pipe, is prefetched too: count
	# pf_special only.
	grep -q 'prog=pf_special files_prefetched=1 ' "$STATS"
}

@test "a file opened O_RDWR is not prefetched (only the control file is)" {
	run -0 check_three_modes "$HELPERS/pf_special" "rdwr:$(data data12)" "control:$(data data12)"
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
}

@test "a file opened O_DIRECT is not prefetched (only the control file is)" {
	run -0 check_three_modes "$HELPERS/pf_special" "direct:$(data data12)" "control:$(data data12)"
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
}

@test "O_DIRECT set by fcntl(F_SETFL) after the first read is not prefetched (only the control file is)" {
	run -0 check_three_modes "$HELPERS/pf_special" "setfl-direct:$(data data12)" "control:$(data data12)"
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
}

# Found by scripts/soak (seed 324041890): a descriptor whose stream had been
# dropped kept its classification, and after F_SETFL O_DIRECT started
# another stream, which answered a misaligned read the kernel refuses.
@test "O_DIRECT set by fcntl(F_SETFL) after a stream was dropped: misaligned reads still fail as the kernel's" {
	run -0 check_three_modes "$HELPERS/pf_special" "setfl-direct-dropped:$(data data12)"
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum streams_dropped)" -ge 1 ]
	grep -q 'not supported here' "$BATS_TEST_TMPDIR/out.plain" ||
		grep -q 'unaligned read: EINVAL' "$BATS_TEST_TMPDIR/out.plain" ||
		skip "this filesystem takes misaligned O_DIRECT reads"
}

@test "a file shorter than one chunk is not prefetched (only the control file is)" {
	run -0 check_three_modes "$HELPERS/pf_special" "short:$(data short)" "control:$(data data12)"
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
}

@test "a file advised POSIX_FADV_RANDOM is not prefetched (only the control file is)" {
	run -0 check_three_modes "$HELPERS/pf_special" "random:$(data data12)" "control:$(data data12)"
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
}

# pthread_cancel acts on a thread in a cancellation point: read, or a
# condition wait inside the library, which then left a lock taken and the
# program hung at its next call on the descriptor (src/runtime.h, pf_enter).
@test "a thread cancelled while it reads: the program goes on with the descriptor, the FILE; a pipe read stays cancellable" {
	need_faultinject
	export FI_PATH_SUFFIX=/data FI_DELAY_US=20000
	local how hows=(read fread pipe)
	# GCC 12's ASan runtime fails a CHECK (in its sigaltstack interceptor)
	# unwinding a cancellation from the signal handler through a frame with
	# a cleanup: the library's, around a read in the kernel.
	! sanitized || hows=(read)
	for how in "${hows[@]}"; do
		echo "== $how"
		run check_three_modes_fi "$TIMEOUT_STACKS" 60 "$HELPERS/pf_cancel" "$(data data)" --how=$how
		echo "$output"
		[ "$status" -eq 0 ]
		grep -q '^thread cancelled$' "$BATS_TEST_TMPDIR/out.enabled"
		if [ "$how" != pipe ]; then
			assert_engaged
		fi
	done
}
