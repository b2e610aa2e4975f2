#!/usr/bin/env bats
# Readers that are not strictly sequential (issue 16): two positions of one
# descriptor read in turn (a merge of two sorted runs, cmp), and files read
# footer first (Parquet, ZIP). On a local file and on slowfs: same bytes,
# offsets and exit status in the three modes, and prefetching engaged.

bats_require_minimum_version 1.5.0
load test_helper

teardown() {
	[ -z "${MNT:-}" ] || slowfs_umount "$MNT"
}

# two_streams FILE: the two-position reader, by pread and by lseek + read,
# each position served by a stream of its own.
two_streams() {
	local how
	for how in twopread twoseek; do
		rm -f "$STATS"
		run -0 check_three_modes "$HELPERS/access_pattern" "$1" "$how:65536:120"
		echo "$how: $(cat "$STATS")"
		assert_engaged
		[ "$(stat_sum files_prefetched)" -eq 1 ]
		[ "$(stat_sum streams_second)" -eq 1 ]
		[ "$(stat_sum streams_dropped)" -eq 0 ]
		# Nearly every byte of both positions came from the buffers.
		[ "$(stat_sum bytes_served)" -ge $((2 * 110 * 65536)) ]
	done
}

# footer_first FILE SIZE: a read of the last 8 bytes, then the file from
# its start to its end, twice (a reopen in between): engaged as a plain
# sequential reader, and a whole-file reader, so the second open is
# prefetched at once.
footer_first() {
	local reads=$(($2 / 65536 + 2)) how
	for how in "seek read" "at pread"; do
		set -- "$1" "$2" ${how% *} ${how#* }
		rm -f "$STATS"
		run -0 check_three_modes "$HELPERS/access_pattern" "$1" "$3:$(($2 - 8))" "$4:8:1" \
			"$3:0" "$4:65536:$reads" reopen:0 "$3:$(($2 - 8))" "$4:8:1" "$3:0" "$4:65536:$reads"
		echo "$how: $(cat "$STATS")"
		assert_engaged
		[ "$(stat_sum streams_at_open)" -eq 1 ]
		[ "$(stat_sum streams_sequential)" -eq 2 ]
		[ "$(stat_sum streams_dropped)" -eq 0 ]
		[ "$(stat_sum bytes_served)" -ge $((2 * $2 - 4 * 65536)) ]
	done
}

@test "two positions read in turn (pread, lseek + read): a stream each" {
	make_file data 40000000
	two_streams data
}

@test "two positions read in turn on slowfs: a stream each" {
	make_file "$BATS_TEST_TMPDIR/data" 40000000
	SRC=$BATS_TEST_TMPDIR/src
	mkdir -p "$SRC" && mv "$BATS_TEST_TMPDIR/data" "$SRC/data"
	mount_slowfs_or_skip --delay-us=500
	two_streams "$MNT/data"
}

@test "a merge of two runs: the first run's stream stops where the second starts" {
	# 300 rounds of 64 KiB from 0 and from the middle: the whole file, each
	# run ending where the next begins. The first stream's window used to
	# run on into the second run's bytes (a window's worth, 4 MiB, wasted).
	make_file data $((2 * 300 * 65536))
	export PREFETCH_WINDOW=4M
	local how
	for how in twopread twoseek; do
		rm -f "$STATS"
		run -0 check_three_modes "$HELPERS/access_pattern" data "$how:65536:300"
		echo "$how: $(cat "$STATS")"
		assert_engaged
		[ "$(stat_sum streams_second)" -eq 1 ]
		[ "$(stat_sum bytes_served)" -ge $((2 * 290 * 65536)) ]
		[ "$(stat_sum bytes_wasted)" -lt $((1024 * 1024)) ]
	done
}

@test "two positions, the second then jumping at random: its stream dropped, its waste counted" {
	make_file data 64000000
	export PREFETCH_WINDOW=2M
	local how
	for how in pread seek; do
		rm -f "$STATS"
		run -0 check_three_modes "$HELPERS/access_pattern" data "two$how:65536:30" "jump$how:65536:40"
		echo "$how: $(cat "$STATS")"
		assert_engaged
		[ "$(stat_sum streams_second)" -eq 1 ]
		[ "$(stat_sum streams_dropped)" -ge 1 ]
		[ "$(stat_sum bytes_wasted)" -gt 0 ]
	done
}

@test "a third position read in turn with two streamed ones passes through; no stream churns" {
	make_file data 40000000
	local steps=() i
	for i in $(seq 0 59); do
		steps+=(seek:$((i * 65536)) read:65536:1 seek:$((13000000 + i * 65536)) read:65536:1)
		[ "$i" -lt 10 ] || steps+=(seek:$((26000000 + i * 65536)) read:65536:1)
	done
	run -0 check_three_modes "$HELPERS/access_pattern" data "${steps[@]}"
	echo "stats: $(cat "$STATS")"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
	[ "$(stat_sum streams_second)" -eq 1 ]
	[ "$(stat_sum streams_dropped)" -eq 0 ]
}

@test "random readers still never engage, with two runs watched" {
	make_file data 30000000
	run -0 check_three_modes "$HELPERS/access_pattern" data random:4096:2000 lseekrandom:65536:500
	echo "stats: $(cat "$STATS")"
	[ "$(stat_sum files_prefetched)" -eq 0 ]
}

@test "footer first, then from the start (pread, lseek + read): a whole-file reader" {
	make_file data 20000000
	footer_first data 20000000
}

@test "footer first, then from the start, on slowfs" {
	SRC=$BATS_TEST_TMPDIR/src
	mkdir -p "$SRC"
	make_file "$SRC/data" 20000000
	mount_slowfs_or_skip --delay-us=500
	footer_first "$MNT/data" 20000000
}

# tar tf over members of one size: a header read, then an lseek over the
# member's data, at a step that varies by a record. Once the steps are
# steady the window holds chunks around the next headers, not the data in
# between: what the library fetched is a fraction of the archive.
@test "tar tf of equal members on slowfs: the window follows the landings, not the bytes between" {
	command -v tar > /dev/null || skip "tar missing"
	SRC=$BATS_TEST_TMPDIR/src
	mkdir -p "$SRC" m
	local i size
	for i in $(seq -w 1 48); do make_file "m/f$i" 1048576; done
	tar cf "$SRC/a.tar" -C m .
	size=$(stat -c %s "$SRC/a.tar")
	mount_slowfs_or_skip --direct-io --delay-us=2000
	run -0 check_three_modes tar tf "$MNT/a.tar"
	echo "$output"
	cat "$STATS"
	assert_engaged
	[ "$(stat_sum streams_landing)" -eq 1 ]
	echo "fetched $(stat_sum bytes_fetched) of $size"
	[ "$(stat_sum bytes_fetched)" -lt $((size / 2)) ]
	# Steady from its first steps: all but the first five or six of
	# tar's 10 KiB reads served.
	[ "$(stat_sum bytes_served)" -ge $(((48 - 6) * 10240)) ]
	# The steps went on being predicted to the end: no stream dropped.
	[ "$(stat_sum streams_dropped)" -eq 0 ]
}

# steady_steps HOW N: access_pattern steps reading 10 KiB at N headers
# 1 MiB + 512 bytes apart, each read from the 10 KiB record that holds it
# (tar's reads over members of 1 MiB: steps that vary by a record), by
# pread (HOW=at) or lseek + read (HOW=seek).
steady_steps() {
	local k at
	for k in $(seq 0 $(($2 - 1))); do
		at=$((k * 1049088 / 10240 * 10240))
		if [ "$1" = at ]; then printf '%s\n' "at:$at" "pread:10240:1"
		else printf '%s\n' "seek:$at" "read:10240:1"; fi
	done
}

# A random reader needs eight reads in a row to look like a skipping one;
# skips alike need fewer: after the fifth read, and the window holds the
# next landings at once. Seven reads: before, no stream at all.
@test "steady skips (tar's headers): a landing stream after five reads" {
	make_file data 12000000
	local how
	for how in at seek; do
		run -0 check_three_modes "$HELPERS/access_pattern" data $(steady_steps $how 7)
		echo "$how: $(cat "$STATS")"
		assert_engaged
		[ "$(stat_sum files_prefetched)" -eq 1 ]
		[ "$(stat_sum streams_landing)" -eq 1 ]
		[ "$(stat_sum streams_dropped)" -eq 0 ]
		[ "$(stat_sum bytes_served)" -eq $((2 * 10240)) ]
	done
}

# down_steps SIZE READ STEP: access_pattern steps that pread READ bytes at
# every STEP bytes going down a file of SIZE bytes, from its last one.
down_steps() {
	local at=$(($1 - $2))
	while [ "$at" -ge 0 ]; do
		printf '%s\n' "at:$at" "pread:$2:1"
		at=$((at - $3))
	done
}

@test "readers going down the file (tac; preads back to back or a stride apart): a backward stream" {
	command -v tac > /dev/null || skip "tac missing"
	head -c 12000000 /dev/urandom | base64 > text
	local size
	size=$(stat -c %s text)
	run -0 check_three_modes tac text
	assert_engaged
	[ "$(stat_sum streams_backward)" -eq 1 ]
	[ "$(stat_sum streams_dropped)" -eq 0 ]
	# Only tac's first reads, before the run was long enough, were not served.
	[ "$(stat_sum bytes_served)" -ge $((size - 256 * 1024)) ]
	make_file data 20000000
	local wanted step
	for step in 65536 262144; do
		mapfile -t steps < <(down_steps 20000000 65536 "$step")
		run -0 check_three_modes "$HELPERS/access_pattern" data "${steps[@]}"
		echo "step $step: $(cat "$STATS")"
		assert_engaged
		[ "$(stat_sum streams_backward)" -eq 1 ]
		wanted=$((${#steps[@]} / 2 * 65536))
		[ "$(stat_sum bytes_served)" -ge $((wanted - 16 * 65536)) ]
	done
}

@test "tac on slowfs: read down the file from the buffers" {
	command -v tac > /dev/null || skip "tac missing"
	SRC=$BATS_TEST_TMPDIR/src
	mkdir -p "$SRC"
	head -c 6000000 /dev/urandom | base64 > "$SRC/text"
	local size
	size=$(stat -c %s "$SRC/text")
	mount_slowfs_or_skip --direct-io --delay-us=2000
	run -0 check_three_modes tac "$MNT/text"
	assert_engaged
	[ "$(stat_sum streams_backward)" -eq 1 ]
	[ "$(stat_sum streams_dropped)" -eq 0 ]
	[ "$(stat_sum bytes_served)" -ge $((size - 256 * 1024)) ]
}

@test "a reader that goes down the file, then up: each way followed, the same bytes" {
	make_file data 20000000
	mapfile -t steps < <(down_steps 10000000 65536 65536)
	run -0 check_three_modes "$HELPERS/access_pattern" data "${steps[@]}" at:10000000 pread:65536:100 \
		seek:9000000 read:65536:100
	echo "stats: $(cat "$STATS")"
	assert_engaged
	[ "$(stat_sum streams_backward)" -eq 1 ]
	# Both ways served, but for the reads each run needed to engage.
	local wanted=$(((${#steps[@]} / 2 + 200) * 65536))
	[ "$(stat_sum bytes_served)" -ge $((wanted - 3 * 8 * 65536)) ]
}

@test "a forward reader that glances back at a block now and then is not a reader going down" {
	make_file data 20000000
	local steps=() i
	for i in $(seq 0 59); do
		steps+=(at:$((i * 65536)) pread:65536:1)
		[ $((i % 4)) -ne 3 ] || steps+=(at:$(((i - 1) * 65536)) pread:4096:1)
	done
	run -0 check_three_modes "$HELPERS/access_pattern" data "${steps[@]}"
	echo "stats: $(cat "$STATS")"
	assert_engaged
	[ "$(stat_sum streams_backward)" -eq 0 ]
	[ "$(stat_sum streams_dropped)" -eq 0 ]
	[ "$(stat_sum bytes_served)" -ge $((40 * 65536)) ]
}
