#!/usr/bin/env bats
# valgrind over a representative subset of the suite: memcheck (invalid
# accesses, uninitialised values, definite leaks) and helgrind (data races,
# lock misuse) on helper programs and real programs that the library
# prefetches for. Each process writes its own valgrind log (forked children
# included: their exit status does not reach the test), and every log must
# report no error; the output must equal that of a run without the library,
# and the statistics must show that prefetching engaged.
bats_require_minimum_version 1.5.0

load test_helper

setup_file() {
	# 8 MiB + 4104: several windows' worth of chunks, not a multiple of one.
	"$HELPERS/pf_gen" "$BATS_FILE_TMPDIR/data" $((8 * 1048576 + 4104))
}

setup() {
	# valgrind cannot run a process that also loads a sanitizer runtime.
	! sanitized || skip "sanitized build: valgrind and the sanitizers exclude each other"
	command -v valgrind > /dev/null || skip "valgrind not installed"
	common_setup || return 1
	DATA="$BATS_FILE_TMPDIR/data"
}

# vg TOOL CMD...: CMD and every process it starts under valgrind TOOL, with
# the library enabled (2 workers, statistics to $STATS); one log per process
# in $BATS_TEST_TMPDIR/vg.TOOL.<pid>.
vg() {
	local tool=$1
	shift
	local opts=(--tool="$tool" --error-exitcode=99 --trace-children=yes
		--log-file="$BATS_TEST_TMPDIR/vg.$tool.%p")
	if [ "$tool" = memcheck ]; then
		opts+=(--leak-check=full --errors-for-leak-kinds=definite
			--show-leak-kinds=definite)
	else
		opts+=(--suppressions="$BATS_TEST_DIRNAME/helgrind.supp")
	fi
	env LD_PRELOAD="$PREFETCH_LIB" PREFETCH_STATS="$STATS" PREFETCH_THREADS=2 \
		valgrind "${opts[@]}" "$@"
}

# vg_clean: every valgrind log of this test reports 0 errors (printed
# otherwise); at least MIN (default 1) logs exist.
vg_clean() {
	local f n=0 bad=0
	for f in "$BATS_TEST_TMPDIR"/vg.*; do
		[ -e "$f" ] || continue
		n=$((n + 1))
		grep -q 'ERROR SUMMARY: 0 errors' "$f" && continue
		bad=1
		echo "--- valgrind log ${f##*/}:"
		cat "$f"
	done
	echo "$n valgrind logs, $([ $bad = 0 ] && echo clean || echo 'with errors')"
	[ "$n" -ge "${1:-1}" ] && [ "$bad" -eq 0 ]
}

# ran_clean: the command that `run` just ran exited 0; if not, every
# valgrind log of the test so far is printed, so that a report is seen.
ran_clean() {
	[ "$status" -eq 0 ] && return 0
	echo "exit status $status; stderr: $stderr"
	vg_clean
	return 1
}

# same_as_plain CMD...: $output (stdout) equals that of CMD run without the
# library.
same_as_plain() {
	local plain
	plain=$(with_plain "$@")
	[ "$output" = "$plain" ] || {
		echo "--- without the library:"
		echo "$plain"
		return 1
	}
}

# cat_to_md5 TOOL FILE: cat FILE into a pipe (read/write, not
# copy_file_range) under valgrind; md5sum of what came out.
cat_to_md5() {
	set -o pipefail
	vg "$1" cat "$2" | md5sum
}

# --- the checks, each run under memcheck and under helgrind ---------------------

# readers TOOL MODE...: pf_read in each MODE under TOOL; same output as a
# plain run, engaged, every log clean.
readers() {
	local tool=$1 mode
	shift
	for mode in "$@"; do
		rm -f "$STATS"
		run --separate-stderr vg "$tool" "$HELPERS/pf_read" "$DATA" --mode="$mode" --bs=65536 --verify
		echo "$mode: $output"
		ran_clean
		same_as_plain "$HELPERS/pf_read" "$DATA" --mode="$mode" --bs=65536 --verify
		assert_engaged
	done
	vg_clean $#
}

# shared_descriptor TOOL: three threads reading one descriptor under TOOL.
shared_descriptor() {
	run --separate-stderr vg "$1" "$HELPERS/pf_threads" "$DATA" --threads=3 --bs=65536
	echo "$output"
	ran_clean
	same_as_plain "$HELPERS/pf_threads" "$DATA" --threads=3 --bs=65536
	assert_engaged
	vg_clean
}

# fork_while_prefetching TOOL: parent and child both read, both prefetched.
fork_while_prefetching() {
	run --separate-stderr vg "$1" "$HELPERS/pf_fork" "$DATA" --reopen
	echo "$output"
	# (The child's valgrind error shows only as its exit status.)
	ran_clean
	vg_clean 2
	same_as_plain "$HELPERS/pf_fork" "$DATA" --reopen
	assert_engaged
	[ "$(grep -c 'files_prefetched=1 ' "$STATS")" -eq 2 ]
}

# real_programs TOOL: md5sum, and cat into a pipe, under TOOL.
real_programs() {
	run --separate-stderr vg "$1" md5sum "$DATA"
	echo "$output"
	ran_clean
	same_as_plain md5sum "$DATA"
	assert_engaged
	rm -f "$STATS"
	run --separate-stderr cat_to_md5 "$1" "$DATA"
	echo "$output"
	ran_clean
	[ "$output" = "$(md5sum < "$DATA")" ]
	assert_engaged
	vg_clean 2
}

@test "memcheck: read(), readv() and fread() readers: no error, no definite leak; engaged" {
	readers memcheck read readv fread
}

@test "memcheck: threads sharing one descriptor: no error, no definite leak; engaged" {
	shared_descriptor memcheck
}

@test "memcheck: fork while prefetching, parent and child: no error, no definite leak" {
	fork_while_prefetching memcheck
}

@test "memcheck: md5sum and cat (real programs): no error, no definite leak; engaged" {
	real_programs memcheck
}

@test "helgrind: read() and fread() readers: no race, no lock misuse; engaged" {
	readers helgrind read fread
}

@test "helgrind: threads sharing one descriptor: no race, no lock misuse; engaged" {
	shared_descriptor helgrind
}

@test "helgrind: fork while prefetching, parent and child: no race, no lock misuse" {
	# The child inherits the lock the fork handler took and restarts the
	# workers: the pool's lock must be handed over correctly.
	fork_while_prefetching helgrind
}

@test "helgrind: md5sum and cat (real programs): no race, no lock misuse; engaged" {
	real_programs helgrind
}

@test "helgrind: fork while streams and mappings are read ahead, children restart: no race, no lock misuse" {
	# The one set of fork handlers (both modules' locks, the mmap path's
	# wait for thread starts) against the library's own threads, and
	# children that start workers of their own. One program thread:
	# several (mmap.bats runs that) draw reports on the engine's fd slots
	# and on pthread_once that are not about fork.
	make_offsets a 6000000
	run --separate-stderr vg helgrind "$HELPERS/mmap_forks" --rounds=3 a
	echo "$output"
	ran_clean
	same_as_plain "$HELPERS/mmap_forks" --rounds=3 a
	echo "stats: $(cat "$STATS")"
	[ "$(grep -c 'prog=mmap_forks' "$STATS")" -eq 4 ]
	[ "$(stat_sum files_prefetched)" -gt 0 ]
	vg_clean 4
}
