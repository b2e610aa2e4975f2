#!/usr/bin/env bats
# A broad set of real, unmodified programs, each run on the same inputs
# without the library, with it loaded but disabled, and enabled: stdout and
# exit status must be identical (same_in_three_modes, through
# check_three_modes). Where the program's way of reading a large file lets
# the library engage (sequential read()/pread()/readv(), or fread of at least
# a stdio buffer), the enabled run must also have been served by prefetching
# (assert_engaged, or assert_prog_engaged for one process of a pipeline).
# A test that only compares output says why engagement is not expected:
#
# - mmap: the data never goes through read() (git's packs, Python's mmap
#   module); prefetched behind the mapping (PREFETCH_MMAP), asserted where used;
# - small stdio reads (getline, getc, fread below the buffer size): glibc
#   refills its buffer internally, where no preloaded library sees it;
# - one read() for the whole file (diff, sort without -S, Python's
#   f.read()): there is no second read to serve;
# - seeks instead of reads (tail -n N, tar -t on a seekable archive),
#   random access (an SQLite index lookup), or files opened read-write
#   (sqlite3 without -readonly): not sequential readers of read-only files.
#
# A missing program skips its test, naming the Debian package to install
# (scripts/check installs them: test_packages in scripts/common.sh).
bats_require_minimum_version 1.5.0

load test_helper

MiB=1048576

# git must not read the user's or the system's configuration.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_PAGER=cat PAGER=cat
export LC_ALL=C
unset PREFETCH_MMAP
# The inputs, made once by setup_file; the tests run in their own
# $BATS_TEST_TMPDIR (the setup of test_helper).
D=$BATS_FILE_TMPDIR

have() {
	command -v "$1" > /dev/null
}

# need PROG [DEBIAN-PACKAGE]: skip the test unless PROG is on PATH.
need() {
	have "$1" || skip "$1 is not installed (Debian package ${2:-$1})"
}

setup_file() {
	local d="$BATS_FILE_TMPDIR" i
	cd "$d" || return 1
	# The Python interpreter itself, not a wrapper script such as a pyenv
	# shim (whose shell would be the program under test).
	if have python3; then
		PYTHON=$(python3 -c 'import sys; print(sys.executable)') || return 1
		export PYTHON
	fi
	# bin: random data, 16 MiB + 5 (not a multiple of any buffer size);
	# bin2: the same with one byte changed near the end, to another value
	# (a fixed 'X' was already there 1 time in 256: identical files).
	make_file bin $((16 * MiB + 5))
	cp bin bin2
	local at=$((16 * MiB - 100)) old
	old=$(od -An -tu1 -j "$at" -N1 bin) || return 1
	# shellcheck disable=SC2059 # an octal escape, made here
	printf "\\$(printf %03o $(((old + 1) % 256)))" |
		dd of=bin2 bs=1 seek="$at" conv=notrunc status=none
	cmp -s bin bin2 && return 1
	# text: 400000 numbered lines (about 22 MiB); text2: 40 of them changed.
	make_text text 400000
	sed 's/^line 0000\(.\)777 /LINE 0000\1777 /' text > text2
	# mix: base64 of random data, then text; compresses to several MiB.
	{
		head -c $((3 * MiB)) /dev/urandom | base64 -w 76
		cat text
	} > mix
	gzip -1 -n -c mix > mix.gz
	! have xz || xz -0 -T1 -c mix > mix.xz
	! have bzip2 || bzip2 -1 -c mix > mix.bz2
	! have zstd || zstd -q -1 -T1 -c mix > mix.zst

	# A directory tree, and archives of it.
	mkdir -p tree/sub
	cp bin tree/a.bin
	cp text tree/b.txt
	head -c 100000 text > tree/small
	head -c $((3 * MiB + 17)) mix > tree/sub/c
	: > tree/sub/empty
	tar --sort=name -cf tree.tar tree
	tar --sort=name -czf tree.tgz tree
	find tree | sort > tree.list
	! have cpio || cpio -o -H newc --quiet < tree.list > tree.cpio

	# An SQLite database of about 16 MiB: a table filled in key order, then
	# an index on another column.
	! have sqlite3 || sqlite3 db.sqlite "
		PRAGMA page_size = 4096;
		CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
		WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200000)
		INSERT INTO t SELECT i, (i * 7919) % 100003, printf('%08d-%s', i, hex(randomblob(24))) FROM c;
		CREATE INDEX tk ON t(k);"

	# A git repository: six commits of a growing text file and a growing
	# random file, packed (the pack is about 6 MiB).
	if have git; then
		git init -q repo
		for i in 1 2 3 4 5 6; do
			head -c $((400000 * i)) text > repo/f.txt
			head -c $((i * MiB)) bin > repo/r.bin
			echo "$i" > repo/n
			git -C repo add -A
			GIT_AUTHOR_DATE="2020-01-0$i 12:00:00 +0000" GIT_COMMITTER_DATE="2020-01-0$i 12:00:00 +0000" \
				git -C repo -c user.name=T -c user.email=t@example.org commit -q -m "commit $i"
		done
		git -C repo repack -adq
	fi
}

# assert_prog_engaged PROG: the processes named PROG (one stage of a
# pipeline, a child of tar) served bytes from prefetch buffers.
assert_prog_engaged() {
	local lines served fetched
	echo "stats: $(cat "$STATS" 2> /dev/null)"
	lines=$(grep " prog=$1 " "$STATS" 2> /dev/null)
	served=$(stat_lines_sum bytes_served <<< "$lines")
	fetched=$(stat_lines_sum worker_reads <<< "$lines")
	[ "$served" -gt 0 ] || { echo "$1: no bytes served from prefetch buffers"; return 1; }
	[ "$fetched" -gt 0 ] || { echo "$1: no worker reads"; return 1; }
}

# leaks_not_checked PROG: in a sanitized build (SANITIZER_PRELOAD, see
# test_helper), no LeakSanitizer in this test: PROG leaks a few bytes of its
# own at exit (GNU sort: its key array; perl and python3: their
# interpreters), which would be reported as a finding. ASan still checks
# every memory access.
leaks_not_checked() {
	[ -n "${SANITIZER_PRELOAD:-}" ] || return 0
	export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
}

# out_is FILE: the enabled run's stdout is exactly FILE.
out_is() {
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$1"
}

# --- checksums: read() of a fixed buffer (32 KiB or more) until EOF ----------

@test "md5sum: same output, engaged (read() loop)" {
	need md5sum coreutils
	check_three_modes md5sum "$D/bin"
	assert_engaged
}

@test "sha1sum: same output, engaged (read() loop)" {
	need sha1sum coreutils
	check_three_modes sha1sum "$D/bin"
	assert_engaged
}

@test "sha256sum: same output, engaged (read() loop)" {
	need sha256sum coreutils
	check_three_modes sha256sum "$D/bin" "$D/text"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -ge 2 ]
}

@test "b2sum: same output, engaged (read() loop)" {
	need b2sum coreutils
	check_three_modes b2sum "$D/bin"
	assert_engaged
}

@test "cksum: same output, engaged (read() loop)" {
	need cksum coreutils
	check_three_modes cksum "$D/bin" "$D/text"
	assert_engaged
}

# --- compressors: read() of the input in blocks (gzip 32 KiB, xz 8 KiB,
# zstd 128 KiB; bzip2 fread of 5000 bytes, partly through the fread hook) ----

@test "gzip: compress, same output, engaged" {
	check_three_modes gzip -1 -n -c "$D/mix"
	assert_engaged
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$D/mix.gz"
}

@test "gzip -d: decompress, same output, engaged" {
	check_three_modes gzip -dc "$D/mix.gz"
	out_is "$D/mix"
	assert_engaged
}

@test "xz: compress, same output, engaged" {
	need xz xz-utils
	check_three_modes xz -0 -T1 -c "$D/mix"
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$D/mix.xz"
	assert_engaged
}

@test "xz -d: decompress, same output, engaged" {
	need xz xz-utils
	check_three_modes xz -dc "$D/mix.xz"
	out_is "$D/mix"
	assert_engaged
}

@test "bzip2: compress, same output, engaged" {
	need bzip2
	# A part of mix: bzip2 is slow.
	head -c $((6 * MiB + 3)) "$D/mix" > part
	check_three_modes bzip2 -1 -c part
	bzip2 -dc "$BATS_TEST_TMPDIR/out.enabled" | cmp - part
	assert_engaged
}

@test "bzip2 -d: decompress, same output, engaged" {
	need bzip2
	# libbz2 freads 5000 bytes at a time, more than the 4 KiB stdio buffer:
	# the direct part of each fread goes through the library, the rest is
	# glibc's own refill.
	check_three_modes bzip2 -dc "$D/mix.bz2"
	out_is "$D/mix"
	assert_engaged
}

@test "zstd: compress, same output, engaged" {
	need zstd
	check_three_modes zstd -q -1 -T1 -c "$D/mix"
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$D/mix.zst"
	assert_engaged
}

@test "zstd -d: decompress, same output, engaged" {
	need zstd
	check_three_modes zstd -q -dc "$D/mix.zst"
	out_is "$D/mix"
	assert_engaged
}

# --- archivers ------------------------------------------------------------

@test "tar -c: create to stdout, same archive, engaged (reads members with read())" {
	need tar
	check_three_modes tar --sort=name -C "$D" -cf - tree
	assert_engaged
	[ "$(stat_sum files_prefetched)" -ge 2 ]
	# The archive holds the files.
	mkdir x
	tar -xf "$BATS_TEST_TMPDIR/out.enabled" -C x
	diff -r "$D/tree" x/tree
}

@test "tar -tv: list a seekable archive, same output (not engaged: seeks over members)" {
	need tar
	# GNU tar lseek()s over the contents of members of a seekable archive
	# when listing: only the headers are read, a block at a time.
	check_three_modes tar -tvf "$D/tree.tar"
	grep -q 'tree/a.bin$' "$BATS_TEST_TMPDIR/out.enabled"
}

@test "tar --no-seek -tv and tar -xO: read the whole archive, same output, engaged" {
	need tar
	check_three_modes tar --no-seek -tvf "$D/tree.tar"
	grep -q 'tree/sub/c$' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	# Every member, to stdout, in archive order (no member names: GNU tar
	# leaks its name list, which LeakSanitizer reports in sanitized builds).
	check_three_modes tar -xOf "$D/tree.tar"
	out_is <(cd "$D" && cat tree/a.bin tree/b.txt tree/small tree/sub/c)
	assert_engaged
}

@test "tar -tzv: gzip child (inherits LD_PRELOAD) engaged, same listing" {
	need tar
	# tar reads the pipe from gzip (not prefetched); gzip -d reads the
	# archive file with read(), and carries the library from tar's
	# environment.
	check_three_modes tar -tvzf "$D/tree.tgz"
	grep -q 'tree/a.bin$' "$BATS_TEST_TMPDIR/out.enabled"
	assert_prog_engaged gzip
}

@test "tar -xz: extract through gzip, same files, gzip child engaged" {
	need tar
	check_three_modes sh -c 'rm -rf x && mkdir x && cd x && tar -xzf "$1" && find . | wc -l && md5sum tree/a.bin tree/b.txt tree/small tree/sub/c tree/sub/empty' sh "$D/tree.tgz"
	assert_prog_engaged gzip
	# x is what the enabled run extracted. (No -C, no member names: GNU tar
	# leaks its name list, which LeakSanitizer reports in sanitized builds.)
	diff -r "$D/tree" x/tree
}

@test "cpio -o: create, same archive, engaged (reads members with read())" {
	need cpio
	check_three_modes sh -c 'cd "$1" && cpio -o -H newc --quiet < tree.list' sh "$D"
	cmp "$BATS_TEST_TMPDIR/out.enabled" "$D/tree.cpio"
	assert_prog_engaged cpio
}

@test "cpio -it and -i --to-stdout: same output, engaged (reads the archive with read())" {
	need cpio
	check_three_modes cpio -it --quiet -F "$D/tree.cpio"
	grep -qx 'tree/sub/c' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	check_three_modes cpio -i --quiet --to-stdout -F "$D/tree.cpio" tree/b.txt
	out_is "$D/text"
	assert_engaged
}

# --- text tools -----------------------------------------------------------

@test "sort -S 4M: same output, engaged (input and temporary files read in buffer-sized reads)" {
	need sort coreutils
	leaks_not_checked sort
	check_three_modes sort -S 4M -r "$D/text"
	assert_engaged
	sort -r "$D/text" | cmp - "$BATS_TEST_TMPDIR/out.enabled"
}

@test "sort: same output (not engaged: one read() of the whole file)" {
	need sort coreutils
	leaks_not_checked sort
	# With its default buffer, sort reads a file that fits in one read()
	# sized to the file: nothing is left to prefetch.
	check_three_modes sort -t' ' -k2,2r "$D/text2"
}

@test "uniq -c: same output (not engaged: getline through stdio)" {
	need uniq coreutils
	# uniq reads lines with getc/getdelim: glibc refills its 4 KiB buffer
	# internally, invisible to a preloaded library.
	check_three_modes uniq -c -w 13 "$D/text2"
}

@test "wc: same output, engaged (read() loop)" {
	need wc coreutils
	check_three_modes wc "$D/text" "$D/bin"
	assert_engaged
	check_three_modes wc -l "$D/mix"
	assert_engaged
}

@test "grep: same output, engaged (read() of 96 KiB blocks)" {
	need grep
	check_three_modes grep -n 'LINE\|line 003999' "$D/text2"
	assert_engaged
	check_three_modes grep -c 7 "$D/text"
	assert_engaged
}

@test "sed: same output (not engaged: getdelim through stdio)" {
	need sed
	# sed reads lines with getdelim: glibc's internal buffer refills.
	check_three_modes sed -n 's/^LINE \([0-9]*\).*/\1/p; $=' "$D/text2"
}

@test "awk: same output, engaged (mawk and gawk read() the file in blocks)" {
	need awk mawk
	check_three_modes awk '{ n += length($0); if ($2 ~ /77$/) c++ } END { print NR, n, c }' "$D/text"
	assert_engaged
}

@test "cmp: same output, engaged (read() of both files)" {
	need cmp diffutils
	check_three_modes cmp "$D/bin" "$D/bin2"
	# "differ: byte N" or "differ: char N", by version.
	grep -q "differ: [a-z]* $((16 * MiB - 99))," "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	[ "$(stat_sum files_prefetched)" -ge 2 ]
	check_three_modes cmp "$D/text" "$D/tree/b.txt"
	assert_engaged
}

@test "diff: same output (not engaged: each file read with one read())" {
	need diff diffutils
	# diff reads each regular file whole, with one read() of its size.
	check_three_modes diff "$D/text" "$D/text2"
	grep -q '^> LINE' "$BATS_TEST_TMPDIR/out.enabled"
}

@test "split: same pieces, engaged (read() loop)" {
	need split coreutils
	# coreutils split asks aligned_alloc for a size that is not a multiple
	# of the alignment, which ASan refuses (an error, not a leak).
	[ -z "${SANITIZER_PRELOAD:-}" ] || skip "sanitized build: ASan and TSan reject split's aligned_alloc"
	check_three_modes sh -c 'rm -f p_* && split -b 1000000 "$1" p_ && ls p_* && cat p_* | md5sum' sh "$D/bin"
	assert_prog_engaged split
	cat p_* | cmp - "$D/bin"
	check_three_modes sh -c 'rm -f l_* && split -l 30000 "$1" l_ && wc -l l_*' sh "$D/text"
	assert_prog_engaged split
}

@test "head: same output, engaged (read() loop)" {
	need head coreutils
	check_three_modes head -n 250000 "$D/text"
	assert_engaged
	check_three_modes head -c $((10 * MiB + 1)) "$D/bin"
	assert_engaged
}

@test "tail -n +N: same output, engaged; tail -n N: same output (seeks to the end)" {
	need tail coreutils
	check_three_modes tail -n +1000 "$D/text"
	assert_engaged
	# tail -n N of a regular file seeks to the end and reads backwards:
	# not sequential, not engaged.
	check_three_modes tail -n 50 "$D/text2"
	check_three_modes tail -c 1000 "$D/bin"
}

@test "od -w8192: same output, engaged (fread of 8 KiB >= the stdio buffer)" {
	need od coreutils
	head -c $((3 * MiB + 5)) "$D/bin" > part
	check_three_modes od -An -tx8 -w8192 part
	assert_engaged
}

@test "od: same output (not engaged: fread of 16 bytes, below the stdio buffer)" {
	need od coreutils
	head -c $((MiB + 5)) "$D/bin" > part
	check_three_modes od -Ad -tx1z part
}

# --- python3 --------------------------------------------------------------

@test "python3: iteration over lines of a text file, same output, engaged (8 KiB read() refills)" {
	need python3
	leaks_not_checked python3
	check_three_modes "$PYTHON" -c '
import hashlib, sys
h, n = hashlib.md5(), 0
for line in open(sys.argv[1], encoding="ascii"):
    n += 1
    h.update(line.encode())
print(n, h.hexdigest())' "$D/text"
	assert_engaged
}

@test "python3: readline() loop, same output, engaged" {
	need python3
	leaks_not_checked python3
	check_three_modes "$PYTHON" -c '
import sys
f, n, longest = open(sys.argv[1], "rb"), 0, b""
while True:
    line = f.readline()
    if not line:
        break
    n += 1
    if line.startswith(b"LINE"):
        longest = max(longest, line)
print(n, longest)' "$D/text2"
	assert_engaged
}

@test "python3: binary chunks, buffered and unbuffered, same output, engaged" {
	need python3
	leaks_not_checked python3
	check_three_modes "$PYTHON" -c '
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    while chunk := f.read(65536):
        h.update(chunk)
print(h.hexdigest())' "$D/bin"
	assert_engaged
	check_three_modes "$PYTHON" -c '
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb", buffering=0) as f:
    while chunk := f.read(4096):
        h.update(chunk)
print(h.hexdigest())' "$D/bin"
	assert_engaged
}

@test "python3: f.read() of the whole file, same output (not engaged: one read())" {
	need python3
	leaks_not_checked python3
	# Python reads a whole file with one read() of its size (plus one at
	# EOF): no second read to serve.
	check_three_modes "$PYTHON" -c '
import hashlib, sys
print(hashlib.md5(open(sys.argv[1], "rb").read()).hexdigest())
print(len(open(sys.argv[2]).read().split()))' "$D/bin" "$D/text"
}

@test "python3: mmap module, same output; engaged unless PREFETCH_MMAP=0" {
	need python3
	leaks_not_checked python3
	local script='
import hashlib, mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    h, lines = hashlib.md5(), 0
    for i in range(0, len(m), 65536):
        block = m[i:i + 65536]
        h.update(block)
        lines += block.count(b"\n")
    print(h.hexdigest(), lines, m.find(b"line 00300000 "))'
	# Cold before each run: a mapping found cached is left alone.
	sync "$D/text"
	COLD_FILES=("$D/text")
	# PREFETCH_MMAP=0: mappings are not prefetched at all.
	PREFETCH_MMAP=0 check_cold_three_modes "$PYTHON" -c "$script" "$D/text"
	assert_not_engaged
	[ "$(stat_sum mmap_mappings)" -eq 0 ]
	check_cold_three_modes "$PYTHON" -c "$script" "$D/text"
	assert_mmap_engaged
}

# --- perl -----------------------------------------------------------------

@test "perl: line loop (-n and <\$fh>), same output, engaged (PerlIO read()s 8 KiB)" {
	need perl
	leaks_not_checked perl
	check_three_modes perl -ne '$n++; $c++ if /^LINE/; END { print "$n $c\n" }' "$D/text2"
	assert_engaged
	check_three_modes perl -MDigest::MD5 -e '
		open my $f, "<", $ARGV[0] or die "$!";
		my $c = Digest::MD5->new;
		while (my $l = <$f>) { $c->add($l) }
		print $c->hexdigest, "\n"' "$D/text"
	assert_engaged
}

@test "perl: read() and sysread() of binary chunks, slurp, same output, engaged" {
	need perl
	leaks_not_checked perl
	local how
	for how in 'read($f, $b, 65536)' 'sysread($f, $b, 65536)' 'defined($b = <$f>)'; do
		echo "== $how"
		check_three_modes perl -MDigest::MD5 -e '
			open my $f, "<:raw", $ARGV[0] or die "$!";
			local $/ = $ARGV[1] eq "slurp" ? undef : $/;
			my $c = Digest::MD5->new; my $b;
			while ('"$how"') { $c->add($b); last if $ARGV[1] eq "slurp" }
			print $c->hexdigest, "\n"' "$D/bin" "$([[ $how == defined* ]] && echo slurp || echo chunks)"
		[ "$(cat "$BATS_TEST_TMPDIR/out.enabled")" = "$(md5sum < "$D/bin" | cut -d' ' -f1)" ]
		assert_engaged
	done
}

# --- sqlite3 --------------------------------------------------------------

@test "sqlite3 -readonly: full scans, same output, engaged (pread() of consecutive pages)" {
	need sqlite3
	check_three_modes sqlite3 -readonly "$D/db.sqlite" 'SELECT count(*), sum(k), max(v), min(v) FROM t;'
	grep -q '^200000|' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
	check_three_modes sqlite3 -readonly "$D/db.sqlite" 'PRAGMA integrity_check; SELECT v FROM t WHERE id % 997 = 0;'
	assert_engaged
}

@test "sqlite3: index lookups and a read-write open, same output (not engaged)" {
	need sqlite3
	# An index lookup reads a handful of pages here and there: random
	# access, never a run of sequential reads.
	check_three_modes sqlite3 -readonly "$D/db.sqlite" 'SELECT id, v FROM t WHERE k BETWEEN 500 AND 530 ORDER BY id;'
	[ -s "$BATS_TEST_TMPDIR/out.enabled" ]
	assert_not_engaged
	# Without -readonly the database is opened O_RDWR: files open for
	# writing are never prefetched.
	check_three_modes sqlite3 "$D/db.sqlite" 'SELECT count(*), sum(k) FROM t;'
	assert_not_engaged
}

# --- git ------------------------------------------------------------------

@test "git log and cat-file: same output (not engaged: packs are mmap()ed)" {
	need git
	# git maps pack files and loose objects with mmap(); nothing is read
	# through read().
	check_three_modes git -C "$D/repo" log --stat --format='%H %an %ad %s'
	grep -q 'commit 6' "$BATS_TEST_TMPDIR/out.enabled"
	check_three_modes git -C "$D/repo" log -p --format=%s -- f.txt
	check_three_modes git -C "$D/repo" cat-file -p HEAD:r.bin
	out_is <(head -c $((6 * MiB)) "$D/bin")
	check_three_modes sh -c 'git -C "$1" rev-list --objects --all | git -C "$1" cat-file --batch' sh "$D/repo"
}

@test "git verify-pack: same output, engaged (index-pack read()s the pack)" {
	need git
	# verify-pack runs git index-pack, which reads the pack file
	# sequentially with read().
	local pack
	pack=$(ls "$D"/repo/.git/objects/pack/pack-*.idx)
	check_three_modes git -C "$D/repo" verify-pack -v "$pack"
	grep -q 'chain length' "$BATS_TEST_TMPDIR/out.enabled"
	assert_engaged
}
