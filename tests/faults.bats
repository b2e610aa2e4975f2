#!/usr/bin/env bats
# Read errors, interrupted and short reads, and slow storage, made by the
# test-only preload library libfaultinject (tests/faultinject.c) on one file.
# It is preloaded after libprefetch, so it also sees the workers' preads:
# an error a worker meets must reach the program exactly where the kernel
# would have reported it.
bats_require_minimum_version 1.5.0

load test_helper

setup_file() {
	"$HELPERS/pf_gen" "$BATS_FILE_TMPDIR/faulty" $((16 * 1048576 + 8))
	"$HELPERS/pf_gen" "$BATS_FILE_TMPDIR/side" 1048576 --key=0x5a
	make_text "$BATS_FILE_TMPDIR/text" 400000
	gzip -1 -n -c "$BATS_FILE_TMPDIR/text" > "$BATS_FILE_TMPDIR/faulty.gz"
}

setup() {
	common_setup || return 1
	need_faultinject
	FILE="$BATS_FILE_TMPDIR/faulty"
	export FI_PATH_SUFFIX=/faulty FI_LOG="$BATS_TEST_TMPDIR/fi.log"
}

# injected KIND MODE: the number of KIND (EIO, EINTR) faults the injector
# made in the run of MODE (plain, disabled, enabled).
injected() {
	grep -c "^fi: $1 at" "$FI_LOG.$2" 2> /dev/null || true
}

# worker_hit KIND: the enabled run's fault was met by a thread other than
# the main thread (a prefetching worker), so the library had to forward it.
worker_hit() {
	awk -v kind="$1" '$2 == kind && $NF != $(NF - 2) { n++ } END { exit !(n > 0) }' "$FI_LOG.enabled"
}

show_fi_log() {
	echo "--- injector log (enabled):"
	cat "$FI_LOG.enabled" 2> /dev/null
	echo "--- injector log (plain):"
	cat "$FI_LOG.plain" 2> /dev/null
	return 0
}

# --- EIO ----------------------------------------------------------------------

# The reader computes for 500us per 64 KiB read, so the workers are far
# ahead of it and meet the error first; the program must still see, call by
# call, what the kernel returns: a short read up to the bad offset, then -1
# EIO there (and again when it retries), then the data after it.
eio_same_calls() {
	local mode="$1" at="$2"
	export FI_EIO_AT="$at"
	check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --mode="$mode" --trace \
		--verify --on-error=skip:4096 --work-us=500 || { show_fi_log; return 1; }
	grep -q "^error pos=$at errno=EIO" "$BATS_TEST_TMPDIR/out.enabled" || return 1
	assert_engaged || return 1
	echo "errors_forwarded=$(stat_sum errors_forwarded)"
	show_fi_log
	worker_hit EIO || { echo "no worker met the error"; return 1; }
	[ "$(stat_sum errors_forwarded)" -ge 1 ]
}

@test "EIO mid-chunk, read(): same calls, same return values and errno as the kernel" {
	run eio_same_calls read $((3 * 1048576 + 123))
	echo "$output"
	[ "$status" -eq 0 ]
	grep -B2 -A3 'errno=EIO' "$BATS_TEST_TMPDIR/out.enabled"
}

@test "EIO on a chunk boundary, read(): same calls, same return values and errno" {
	run eio_same_calls read $((4 * 1048576))
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "EIO mid-chunk, pread(): same calls, same return values and errno" {
	run eio_same_calls pread $((5 * 1048576 + 4000))
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "EIO mid-chunk, readv(): same calls, same return values and errno" {
	run eio_same_calls readv $((3 * 1048576 + 65536 + 9))
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "EIO mid-chunk, preadv(): same calls, same return values and errno" {
	run eio_same_calls preadv $((6 * 1048576 + 1))
	echo "$output"
	[ "$status" -eq 0 ]
}

@test "EIO in a range that completes after later ranges: reported at its offset, in order" {
	# The failing range is held back 300 ms; workers complete the ranges
	# after it meanwhile. The program must still get every byte before the
	# error, then the error, at the offset the kernel gives it.
	export FI_EIO_AT=$((5 * 1048576 + 4096)) FI_SLOW_AT=$((5 * 1048576 + 4096)) FI_SLOW_US=300000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --trace --verify \
		--on-error=skip:4096
	echo "$output"
	show_fi_log
	grep -q "^error pos=$FI_EIO_AT errno=EIO" "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum errors_forwarded)" -ge 1 ]
	# Out of order for real: reads past the failing range went ahead of it.
	awk '$2 == "slow" && $5 > 0 { n++ } END { exit !(n > 0) }' "$FI_LOG.enabled"
}

@test "EIO before prefetching engaged: same calls" {
	export FI_EIO_AT=100000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --trace --verify --on-error=skip:4096
	echo "$output"
	grep -q "^error pos=100000 errno=EIO" "$BATS_TEST_TMPDIR/out.enabled"
	# Prefetching engages after the error.
	assert_engaged
}

@test "EIO with short reads: the error at the same offset, the same data" {
	export FI_EIO_AT=$((2 * 1048576 + 77)) FI_SHORT=10000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --verify \
		--on-error=skip:4096 --counts=0 --work-us=200
	echo "$output"
	show_fi_log
	cat "$BATS_TEST_TMPDIR/out.enabled"
	grep -q "^error pos=$FI_EIO_AT errno=EIO" "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
}

@test "EIO: cat and gzip -dc fail the same way, with the same partial output" {
	export FI_EIO_AT=$((3 * 1048576 + 5))
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 sh -c 'cat "$1" | md5sum' sh "$FILE"
	echo "$output"
	show_fi_log
	cat "$BATS_TEST_TMPDIR/err.enabled"
	grep -q 'Input/output error' "$BATS_TEST_TMPDIR/err.enabled"
	assert_engaged
	export FI_PATH_SUFFIX=/faulty.gz FI_EIO_AT=$((1048576 + 5))
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 sh -c 'gzip -dc "$1"; echo "gzip exit $?"' sh "$BATS_FILE_TMPDIR/faulty.gz"
	echo "$output"
	tail -n 1 "$BATS_TEST_TMPDIR/out.enabled"
	cat "$BATS_TEST_TMPDIR/err.enabled"
	grep -q 'gzip exit 1' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
}

# --- EINTR ---------------------------------------------------------------------

# The injector interrupts the first read that starts at the offset, whoever
# makes it: with prefetching that is usually a worker. Either the library
# retries, or it hands the EINTR to the program at that offset; a program
# that retries EINTR (as it must) reads the same data either way.
@test "EINTR once at an offset: the same data, and the interruption really happened" {
	export FI_EINTR_AT=$((5 * 1048576 + 17))
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --verify --counts=0 --work-us=200
	echo "$output"
	show_fi_log
	cat "$BATS_TEST_TMPDIR/out.enabled" "$BATS_TEST_TMPDIR/err.enabled"
	[ "$(injected EINTR plain)" -eq 1 ]
	[ "$(injected EINTR enabled)" -eq 1 ]
	grep -q ' bad=0' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
}

@test "EINTR once, pread(): the same data" {
	export FI_EINTR_AT=$((4 * 1048576))
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --mode=pread --verify --counts=0 --work-us=200
	echo "$output"
	show_fi_log
	[ "$(injected EINTR enabled)" -eq 1 ]
	assert_engaged
}

# --- short reads, slow storage ------------------------------------------------------

@test "short reads from the kernel: the same data, offsets right" {
	local short
	for short in 1000 4095 100000; do
		echo "== FI_SHORT=$short"
		export FI_SHORT=$short
		run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --verify --counts=0
		echo "$output"
		cat "$BATS_TEST_TMPDIR/out.enabled"
		assert_engaged
		run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --mode=pread --verify --counts=0
		echo "$output"
	done
}

@test "slow storage: workers read ahead in other threads, through the preload chain" {
	export FI_DELAY_US=2000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_read" "$FILE" --verify --work-us=1000
	echo "$output"
	show_fi_log
	assert_engaged
	# The injector counted the file's reads by thread: without the library
	# all come from the main thread, with it most come from workers.
	grep -q '^fi: reads main,other [0-9]* 0 ' "$FI_LOG.plain"
	awk '$2 == "reads" && $5 > 0 { ok = 1 } END { exit !ok }' "$FI_LOG.enabled"
	echo "wait_us=$(stat_sum wait_us)"
}

@test "slow storage with threads reading one descriptor: every byte once" {
	export FI_DELAY_US=1000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_threads" "$FILE" --threads=4
	echo "$output"
	assert_engaged
}

@test "slow storage, fork while workers have reads in flight" {
	export FI_DELAY_US=3000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_fork" "$FILE" --before=1M --child=2M
	echo "$output"
	assert_engaged
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_fork" "$FILE" --before=1M --reopen
	echo "$output"
	assert_engaged
}

@test "slow storage, exec while workers have reads in flight" {
	export FI_DELAY_US=3000
	local n=$((1048576 + 5)) expected
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_exec" "$FILE" $n md5sum
	echo "$output"
	expected=$(tail -c +$((n + 1)) "$FILE" | md5sum)
	cat "$BATS_TEST_TMPDIR/out.enabled"
	[ "$(tail -n 1 "$BATS_TEST_TMPDIR/out.enabled")" = "$expected" ]
	assert_engaged
}

@test "slow storage with a signal storm: waits for workers are interrupted, data right" {
	export FI_DELAY_US=1000
	run -0 check_three_modes_fi "$TIMEOUT_STACKS" 120 "$HELPERS/pf_signal" "$FILE" "$BATS_FILE_TMPDIR/side" --interval-us=300
	echo "$output"
	cat "$BATS_TEST_TMPDIR/out.enabled" "$BATS_TEST_TMPDIR/err.enabled"
	assert_engaged
}
