#!/usr/bin/env bats
# Many small files (issue 15): the next files are fetched before the program
# opens them, predicted from its command-line operands and from the
# directory listings it read; a file opened as fetched serves its first reads.
# Every run is compared in the three modes; the statistics show which
# predictor engaged. Hits (files_predicted_opened) are asserted only where
# the program pauses after its first file: without a pause it may open the
# next file before any thread looked at it, which is allowed.

bats_require_minimum_version 1.5.0
load test_helper

PY=/usr/bin/python3

# make_tree DIR N: N files of 1-200 KB in DIR (names f01..), with a few
# lines that grep finds.
make_tree() {
	local i
	mkdir -p "$1"
	for i in $(seq -w 1 "$2"); do
		make_file "$1/f$i" $(((10#$i * 7919) % 200000 + 1000))
		echo "needle $i" >> "$1/f$i"
	done
}

assert_predicted() {
	echo "stats: $(cat "$STATS" 2> /dev/null)"
	[ "$(stat_sum files_predicted)" -gt 0 ] || { echo "nothing predicted"; return 1; }
}

assert_hits() {
	assert_predicted
	[ "$(stat_sum files_predicted_opened)" -gt 0 ] || { echo "no prediction was opened"; return 1; }
	[ "$(stat_sum bytes_served)" -gt 0 ] || { echo "nothing served"; return 1; }
}

# A reader of os.walk, in listing order, pausing after its first file.
WALK='
import os, sys, hashlib, time
first = True
for root, dirs, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        if not os.path.isfile(p):
            continue
        with open(p, "rb") as fh:
            print(p, hashlib.md5(fh.read()).hexdigest())
        if first:
            first = False
            time.sleep(float(sys.argv[2]))
'

@test "operands: md5sum of a glob, identical, predicted" {
	make_tree d 40
	same_in_three_modes md5sum d/*
	assert_predicted
}

@test "operands: a reader pausing after its first file opens the predicted files (open and fopen)" {
	make_tree d 12
	same_in_three_modes "$HELPERS/pf_openloop" --pause=400 d/*
	assert_hits
	rm -f "$STATS"
	same_in_three_modes "$HELPERS/pf_openloop" --stdio --pause=400 d/*
	assert_hits
}

@test "operands: find -exec md5sum {} + gets its operands from find" {
	make_tree d 30
	make_tree d/sub 20
	same_in_three_modes find d -type f -exec md5sum {} +
	assert_predicted
}

@test "listings: grep -r, identical, predicted from the listings" {
	make_tree d 30
	make_tree d/sub 20
	same_in_three_modes grep -r needle d
	assert_predicted
}

@test "listings: python os.walk reader opens the predicted files" {
	[ -x "$PY" ] || skip "no $PY"
	make_tree d 20
	make_tree d/sub 10
	same_in_three_modes "$PY" -c "$WALK" d 0.4
	assert_hits
}

@test "listings: a reader in sorted order (sorted(os.listdir), rsync) opens the predicted files" {
	[ -x "$PY" ] || skip "no $PY"
	make_tree d 24
	# shellcheck disable=SC2016
	sorted='
import os, sys, hashlib, time
for i, f in enumerate(sorted(os.listdir(sys.argv[1]))):
    with open(os.path.join(sys.argv[1], f), "rb") as fh:
        print(f, hashlib.md5(fh.read()).hexdigest())
    if i == 1:
        time.sleep(0.4)
'
	same_in_three_modes "$PY" -c "$sorted" d
	assert_hits
	if command -v rsync > /dev/null; then
		rm -f "$STATS"
		copy() { rm -rf copy && "$@" rsync -a d/ copy/ && (cd copy && md5sum ./*); }
		run -0 copy with_plain
		plain=$output
		run -0 copy with_prefetch
		[ "$output" = "$plain" ]
		assert_predicted
	fi
}

@test "PREFETCH_FILES=0 predicts nothing" {
	make_tree d 12
	export PREFETCH_FILES=0
	same_in_three_modes "$HELPERS/pf_openloop" --pause=400 d/*
	echo "stats: $(cat "$STATS")"
	[ "$(stat_sum files_predicted)" -eq 0 ]
}

@test "a file rewritten or replaced between its prediction and its open is read as it is now" {
	for i in $(seq 1 9); do "$HELPERS/pf_gen" "f$i" $((i * 10000 + 17)); done
	# The rewrite is the same in every mode: the outputs must match.
	for mode in with_plain with_disabled with_prefetch; do
		for i in $(seq 1 9); do "$HELPERS/pf_gen" "f$i" $((i * 10000 + 17)); done
		"$mode" "$HELPERS/pf_openloop" --pause=400 --rewrite f? > "out.$mode"
	done
	cat out.with_prefetch
	cmp out.with_plain out.with_disabled
	cmp out.with_plain out.with_prefetch
	assert_predicted
}

@test "descriptor numbers: the same as without the library while predictions are in flight" {
	make_tree d 30
	same_in_three_modes "$HELPERS/pf_openloop" --keep d/*
	assert_predicted
	rm -f "$STATS"
	same_in_three_modes "$HELPERS/pf_openloop" --keep --pause=100 d/*
	assert_hits
	# A shell: exec 3< file takes number 3 in every mode.
	# shellcheck disable=SC2016
	script='for f in "$@"; do exec 3< "$f"; ls -l /proc/$$/fd | grep -c " 3 -> "; read -r x <&3; exec 3<&-; done'
	same_in_three_modes bash -c "$script" sh d/*
}

@test "the library's files never show in the program's /proc/self/fd" {
	make_tree d 20
	# The shell opens its first operand; the others are fetched meanwhile.
	# shellcheck disable=SC2016
	script='exec 3< "$1"; sleep 0.3; ls /proc/$$/fd; exec 3<&-'
	same_in_three_modes bash -c "$script" sh d/*
	assert_predicted
}

@test "a FIFO and a device among the operands and in a listing are never opened, and nothing hangs" {
	need_strace
	[ -x "$PY" ] || skip "no $PY"
	make_tree d 6
	# Named to sort between the regular files: operands predicted after f1.
	mkfifo d/f1a-fifo
	mknod d/f2a-dev c 1 3
	ln -s f1a-fifo d/f1b-link-to-fifo
	ln -s f2a-dev d/f2b-link-to-dev
	# Operands: a reader that skips what is not a regular file.
	reader='
import os, sys, time
for i, p in enumerate(sys.argv[1:]):
    if os.path.isfile(p):
        print(p, len(open(p, "rb").read()))
        if i == 0:
            time.sleep(0.4)
'
	same_in_three_modes timeout 60 "$PY" -c "$reader" d/*
	assert_predicted
	[ "$(stat_sum files_predicted_failed)" -gt 0 ]
	rm -f "$STATS"
	same_in_three_modes timeout 60 "$PY" -c "$WALK" d 0.4
	assert_predicted
	# Under strace, no thread opens any of them.
	rm -f "$STATS"
	run -0 with_prefetch timeout 60 strace -f -qq -e trace=open,openat -o trace.log \
		"$PY" -c "$reader" d/*
	run -0 with_prefetch timeout 60 strace -f -qq -e trace=open,openat -o trace2.log \
		"$PY" -c "$WALK" d 0.4
	assert_predicted
	run ! grep -E 'f[12][ab]-' trace.log trace2.log
}

@test "a file the user may not read stays denied with the same error" {
	need_nobody
	D=$(mktemp -d "${BATS_RUN_TMPDIR%/*}/pf-files.XXXXXX")
	chmod 0755 "$D"
	cp "$PREFETCH_LIB" "$D/libprefetch.so"
	cp "$HELPERS/pf_openloop" "$D/"
	chmod 0644 "$D/libprefetch.so"
	chmod 0755 "$D/pf_openloop"
	mkdir "$D/out" "$D/d"
	chown nobody:nogroup "$D/out"
	for i in 1 2 3 4 5 6; do make_file "$D/d/f$i" 30000; done
	chmod 0644 "$D"/d/f*
	chmod 0600 "$D/d/f3" "$D/d/f5"
	as_nobody test -r "$D/d/f1" || { rm -rf "$D"; skip "$D cannot be reached by user nobody"; }
	# shellcheck disable=SC2030 # this test's own statistics file
	STATS=$D/out/stats
	run_nobody() {
		as_nobody env LD_PRELOAD="$D/libprefetch.so" PREFETCH_STATS="$STATS" "$@"
	}
	plain=$(as_nobody "$D/pf_openloop" --pause=400 "$D"/d/f* 2>&1)
	lib=$(run_nobody "$D/pf_openloop" --pause=400 "$D"/d/f* 2>&1)
	plain_md5=$(cd "$D/d" && as_nobody md5sum f1 f2 f3 f4 f5 f6 2>&1; echo "rc=$?")
	lib_md5=$(cd "$D/d" && run_nobody md5sum f1 f2 f3 f4 f5 f6 2>&1; echo "rc=$?")
	echo "$plain"
	echo "stats: $(cat "$STATS")"
	files_failed=$(stat_sum files_predicted_failed)
	hits=$(stat_sum files_predicted_opened)
	rm -rf "$D"
	[ "$plain" = "$lib" ]
	[ "$plain_md5" = "$lib_md5" ]
	[[ "$plain" == *"f3: E13"* ]] # EACCES
	[ "$files_failed" -gt 0 ]
	[ "$hits" -gt 0 ]
}

@test "fork while predictions are in flight: parent and child read the same bytes" {
	make_tree d 16
	same_in_three_modes "$HELPERS/pf_openloop" --fork d/*
	assert_predicted
	rm -f "$STATS"
	same_in_three_modes "$HELPERS/pf_openloop" --pause=100 --fork d/*
	assert_hits
}

@test "exec while predictions are in flight" {
	make_tree d 16
	# shellcheck disable=SC2016
	same_in_three_modes bash -c 'exec 3< "$1"; exec md5sum "$@"' sh d/*
	assert_predicted
}

@test "10,000 files listed: memory stays within the cap" {
	mkdir d
	(cd d && seq -w 1 10000 | xargs touch)
	for i in $(seq -w 1 200); do make_file "d/$(printf '%05d' "$i")" 300000; done
	export PREFETCH_MAX_MEMORY=2M
	same_in_three_modes "$PY" -c "$WALK" d 0
	echo "stats: $(cat "$STATS")"
	assert_predicted
	[ "$(stat_sum peak_memory)" -le $((2 * 1024 * 1024)) ]
}
