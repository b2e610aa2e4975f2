#!/usr/bin/env bats
# Differential testing: tests/helpers/difftest runs pseudo-random sequences
# of open, read, pread, readv, lseek, dup, fork, append, posix_fadvise and
# stdio calls, once without the library and once with it (small chunks and
# windows, so that chunk edges, window ends and dropped streams come up
# often), and compares every return value, errno, data hash and offset.
# The enabled runs must also have been served from prefetch buffers: a shim
# that did nothing would pass the comparison too.
#
# DIFFTEST_SEEDS=N runs seeds 1..N (default 60; 2000 under CI=true on a
# build without sanitizers, several minutes); scripts/soak runs more.

bats_require_minimum_version 1.5.0
load test_helper

DIFFTEST="$HELPERS/difftest"

# difftest_diff ARGS...: one --run-diff of the real library; statistics of
# the enabled runs go to $STATS.
difftest_diff() {
	env PREFETCH_STATS="$STATS" "$DIFFTEST" --run-diff --lib="$SANITIZER_PRELOAD$PREFETCH_LIB" \
		--dir="$BATS_TEST_TMPDIR/files" "$@"
}

@test "difftest: the same seed gives the same output, and --only replays the same operations" {
	mkdir files
	run -0 with_plain "$DIFFTEST" --dir=files --seed=11 --ops=120
	first=$output
	run -0 with_plain "$DIFFTEST" --dir=files --seed=11 --ops=120
	[ "$output" = "$first" ]
	[[ $output == *"h="* ]]
	# An operation does not depend on which others are selected.
	run -0 "$DIFFTEST" --describe --seed=11 --ops=120
	expected=$(echo "$output" | awk '$1 >= 30 && $1 <= 39 || $1 == 77')
	run -0 "$DIFFTEST" --describe --seed=11 --ops=120 --only=30-39,77
	[ "$output" = "$expected" ]
}

@test "difftest: random sequences observe the same with and without the library" {
	mkdir files
	local seed failed=0 seeds=60
	[ "${CI:-}" = true ] && ! sanitized && seeds=2000
	for seed in $(seq 1 "${DIFFTEST_SEEDS:-$seeds}"); do
		run difftest_diff --seed="$seed" --ops=150
		echo "$output" | head -n 1
		if [ "$status" -ne 0 ]; then
			echo "$output"
			failed=1
			break
		fi
	done
	[ "$failed" -eq 0 ]
	assert_engaged
	[ "$(stat_sum files_prefetched)" -gt 0 ]
	[ "$(stat_sum streams_dropped)" -gt 0 ]
}

@test "difftest: loaded but disabled observes the same as without the library" {
	mkdir files
	run -0 difftest_diff --seed=3 --ops=200 --disabled
	echo "$output"
	[[ $output == "seed 3: same"* ]]
	assert_not_engaged
}

@test "difftest: a library that changes reads is caught, minimised and reproduced" {
	[ -r "$FAULTINJECT_LIB" ] || skip "libfaultinject not built"
	mkdir files
	# Short reads of f0 (always one of the larger files) stand in for a
	# broken shim: they change what read() returns.
	run -1 env FI_PATH_SUFFIX=/f0 FI_SHORT=1000 "$DIFFTEST" --run-diff \
		--lib="$SANITIZER_PRELOAD$FAULTINJECT_LIB" --dir=files --seed=5 --ops=40 --tries=1
	echo "$output"
	[[ $output == *"DIFFERENCE: seed 5"* ]]
	[[ $output == *"minimal sequence:"* ]]
	# The reproduction names a subset and fails again on its own.
	repro=$(echo "$output" | sed -n '/^reproduce:/{n;p;q}')
	[[ $repro == *"--only="* ]]
	read -r -a cmd <<< "$repro"
	run -1 env FI_PATH_SUFFIX=/f0 FI_SHORT=1000 "${cmd[@]}" --tries=1
	echo "$output"
	[[ $output == *"DIFFERENCE"* ]]
}
