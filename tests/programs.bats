#!/usr/bin/env bats
# Unmodified programs produce byte-identical output without the library,
# with it disabled, and with it enabled, over files whose sizes sit on the
# edges of a prefetch chunk (256 KiB) and of the window (8 MiB), and over one
# large file; the programs that read large files sequentially must really be
# served by prefetching when enabled (assert_engaged).
bats_require_minimum_version 1.5.0

load test_helper

CHUNK=262144
WINDOW=8388608
SIZES="0 1 $((CHUNK - 1)) $CHUNK $((CHUNK + 1)) $((WINDOW - 1)) $WINDOW $((WINDOW + 1))"
BIG_SIZE=$((240 * 1048576 + 3))
MEDIUM_SIZE=$((32 * 1048576 + 7))

setup_file() {
	local d="$BATS_FILE_TMPDIR" s
	for s in $SIZES; do
		make_file "$d/f$s" "$s"
		gzip -1 -n -c "$d/f$s" > "$d/f$s.gz"
	done
	make_file "$d/medium" "$MEDIUM_SIZE"
	make_file "$d/big" "$BIG_SIZE"
	# A large compressed file for gzip -dc: about 150 MiB of text, 20+ MiB packed.
	make_text "$d/text" 2700000
	gzip -1 -n -c "$d/text" > "$d/text.gz"
}

# in_three_modes_over PROG [ARGS...] -- FILES...: PROG ARGS FILE, for each
# file, identical in the three modes.
in_three_modes_over() {
	local args=() f
	while [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	shift
	for f in "$@"; do
		echo "== ${args[*]} $(basename "$f") ($(stat -c %s "$f") bytes)"
		check_three_modes "${args[@]}" "$f" || return 1
	done
}

sized_files() {
	local s
	for s in $SIZES; do
		echo "$BATS_FILE_TMPDIR/f$s"
	done
}

sized_gz_files() {
	local s
	for s in $SIZES; do
		echo "$BATS_FILE_TMPDIR/f$s.gz"
	done
}

# engaged_on CMD...: CMD, enabled, must be served by prefetching.
engaged_on() {
	rm -f "$STATS"
	with_prefetch "$@" > /dev/null || return 1
	assert_engaged
}

@test "md5sum: identical output in three modes, all sizes and a large file" {
	run -0 in_three_modes_over md5sum -- $(sized_files) "$BATS_FILE_TMPDIR/big"
	echo "$output"
}

@test "md5sum: engaged on the large file and on the window+1 file" {
	run -0 engaged_on md5sum "$BATS_FILE_TMPDIR/big"
	echo "$output"
	run -0 engaged_on md5sum "$BATS_FILE_TMPDIR/f$((WINDOW + 1))"
	echo "$output"
}

@test "sha256sum: identical output in three modes, all sizes and a large file" {
	run -0 in_three_modes_over sha256sum -- $(sized_files) "$BATS_FILE_TMPDIR/big"
	echo "$output"
	# The statistics are those of the last file, the large one.
	assert_engaged
}

@test "gzip -c: identical output in three modes, all sizes and a 32 MiB file" {
	run -0 in_three_modes_over gzip -1 -n -c -- $(sized_files) "$BATS_FILE_TMPDIR/medium"
	echo "$output"
	assert_engaged
}

@test "gzip -dc: identical output in three modes, all sizes and a large file" {
	run -0 in_three_modes_over gzip -dc -- $(sized_gz_files) "$BATS_FILE_TMPDIR/text.gz"
	echo "$output"
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$BATS_FILE_TMPDIR/text"
	assert_engaged
}

@test "gzip -dc: engaged on the large compressed file" {
	run -0 engaged_on gzip -dc "$BATS_FILE_TMPDIR/text.gz"
	echo "$output"
}

# cat writing to a regular file uses copy_file_range (no read at all), so its
# output goes through a pipe: cat reads with read() then.
@test "cat (into a pipe): identical output in three modes, all sizes and a large file" {
	run -0 in_three_modes_over sh -c 'cat -- "$1" | cat' sh -- $(sized_files) "$BATS_FILE_TMPDIR/big"
	echo "$output"
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$BATS_FILE_TMPDIR/big"
	assert_engaged
}

@test "cat (into a pipe): engaged on the large file and on the window+1 file" {
	run -0 engaged_on sh -c 'cat -- "$1" | cat > /dev/null' sh "$BATS_FILE_TMPDIR/big"
	echo "$output"
	run -0 engaged_on sh -c 'cat -- "$1" | cat > /dev/null' sh "$BATS_FILE_TMPDIR/f$((WINDOW + 1))"
	echo "$output"
}

@test "cat into a regular file (copy_file_range): identical output in three modes" {
	run -0 in_three_modes_over cat -- $(sized_files) "$BATS_FILE_TMPDIR/medium"
	echo "$output"
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$BATS_FILE_TMPDIR/medium"
}

@test "wc: identical output in three modes, all sizes; wc -l on the large file" {
	run -0 in_three_modes_over wc -- $(sized_files)
	echo "$output"
	run -0 in_three_modes_over wc -l -- "$BATS_FILE_TMPDIR/big"
	echo "$output"
	assert_engaged
}

@test "{ head -n N; cat; } < file in one shell: the offset is handed over exactly" {
	local f="$BATS_FILE_TMPDIR/text"
	run -0 check_three_modes bash -c '{ head -n 1000000 | md5sum; cat | md5sum; } < "$1"' bash "$f"
	echo "$output"
	# The two parts are the first million lines and the rest of the file.
	local expected
	expected="$(head -n 1000000 "$f" | md5sum; tail -n +1000001 "$f" | md5sum)"
	echo "expected: $expected"
	echo "enabled:  $(cat "$BATS_TEST_TMPDIR/out.enabled")"
	[ "$(cat "$BATS_TEST_TMPDIR/out.enabled")" = "$expected" ]
	assert_engaged
	# head -n 1 reads one buffer and seeks back; cat must start right after
	# the first line.
	run -0 check_three_modes bash -c '{ head -n 1; cat; } < "$1" | md5sum' bash "$f"
	echo "$output"
	[ "$(cat "$BATS_TEST_TMPDIR/out.enabled")" = "$(md5sum < "$f")" ]
	assert_engaged
}

@test "{ head -c N; cat; } < file in one shell: the offset is handed over exactly" {
	local f="$BATS_FILE_TMPDIR/medium" n=$((10 * 1048576 + 12345))
	run -0 check_three_modes bash -c '{ head -c "$2" | md5sum; cat | md5sum; } < "$1"' bash "$f" "$n"
	echo "$output"
	local expected
	expected="$(head -c "$n" "$f" | md5sum; tail -c +$((n + 1)) "$f" | md5sum)"
	echo "expected: $expected"
	echo "enabled:  $(cat "$BATS_TEST_TMPDIR/out.enabled")"
	[ "$(cat "$BATS_TEST_TMPDIR/out.enabled")" = "$expected" ]
	assert_engaged
}

# Independent of the library's own statistics: strace sees pread64 calls that
# return data made by a thread other than the program's main thread.
@test "strace: an enabled md5sum has worker threads calling pread64" {
	need_strace
	local log="$BATS_TEST_TMPDIR/strace.log"
	run -0 strace -f -e trace=execve,pread64 -o "$log" \
		env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" md5sum "$BATS_FILE_TMPDIR/medium"
	echo "$output"
	local main
	main=$(awk '/execve\(.*md5sum/ { print $1; exit }' "$log")
	echo "main pid: $main"
	echo "pread64 lines: $(grep -c 'pread64(' "$log")"
	grep 'pread64(' "$log" | head -n 5
	run -0 awk -v main="$main" '$1 != main && /pread64\(/ && / = [1-9][0-9]*$/ { n++ } END { print n + 0; exit !(n > 0) }' "$log"
	echo "pread64 calls with data from other threads: $output"
	# Without the library, only the dynamic loader's small pread64 of ELF
	# headers: none of the file's data.
	run -0 strace -f -e trace=pread64 -o "$log.plain" md5sum "$BATS_FILE_TMPDIR/medium"
	run -0 awk '/pread64\(/ && / = [0-9]+$/ && $NF > 4096 { n++ } END { print n + 0; exit (n > 0) }' "$log.plain"
	echo "large pread64 calls without the library: $output"
}
