#!/usr/bin/env bats
# The settings a user writes and the messages they get (issue 19, item 6):
# boolean words, PREFETCH_STATS destinations that cannot be written, sizes
# that do not fit each other; and the statistics on stderr without a
# descriptor of the library's (item 5). Each case: the program's output and
# status as without the library, the exact message, and, where prefetching
# should happen, the statistics showing that it did.

bats_require_minimum_version 1.5.0
load test_helper

DATA_SIZE=20000000

setup() {
	common_setup || return 1
	make_file data "$DATA_SIZE"
	EXPECTED=$(with_plain md5sum data)
}

# with_settings VAR=VALUE... -- CMD...: CMD with the library and those
# settings (at most 20 s: a hang fails); its stdout in out, its stderr in
# err, its status in $status.
with_settings() {
	local -a vars=()
	while [ "$1" != -- ]; do
		vars+=("$1")
		shift
	done
	shift
	timeout 20 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" "${vars[@]}" "$@" > out 2> err
	status=$?
	echo "status $status; stderr:"
	cat err
}

# messages: the library's one-line messages in err, the statistics excepted.
messages() {
	grep '^libprefetch: ' err | grep -v '^libprefetch: pid='
}

# md5sum_unchanged: the last with_settings md5sum printed what it prints
# without the library, and exited 0.
md5sum_unchanged() {
	[ "$status" -eq 0 ] && [ "$(cat out)" = "$EXPECTED" ]
}

# one_message TEXT: err holds exactly one message, TEXT.
one_message() {
	[ "$(messages | wc -l)" -eq 1 ] || return 1
	[ "$(messages)" = "libprefetch: $1" ]
}

# stats_line: the statistics line on stderr (err), exactly one.
stats_line() {
	[ "$(grep -c '^libprefetch: pid=' err)" -eq 1 ] || return 1
	grep '^libprefetch: pid=' err
}

# disable_word WORD CHECK: md5sum with PREFETCH_DISABLE=WORD: the same
# output, no message, and CHECK (assert_engaged or assert_not_engaged) holds.
disable_word() {
	rm -f "$STATS"
	with_settings PREFETCH_DISABLE="$1" PREFETCH_STATS="$STATS" -- md5sum data
	md5sum_unchanged
	[ -z "$(messages)" ]
	"$2"
}

@test "PREFETCH_DISABLE: yes/true/on (any case) turn the library off, no/false/off leave it on" {
	local word
	for word in 1 yes YES true True on ON; do
		disable_word "$word" assert_not_engaged
	done
	for word in 0 no No false FALSE off Off; do
		disable_word "$word" assert_engaged
	done
}

@test "PREFETCH_DISABLE=maybe: one warning, and the library stays off" {
	with_settings PREFETCH_DISABLE=maybe PREFETCH_STATS="$STATS" -- md5sum data
	md5sum_unchanged
	one_message 'PREFETCH_DISABLE="maybe" is not one of 1/0, yes/no, true/false, on/off; the library stays off'
	assert_not_engaged
}

@test "the other booleans take the same words; a bad one warns once and keeps the default" {
	# PREFETCH_BLOCK_DEVICES=no: the local file is passed through.
	local dev
	dev=$(stat -c '%D' data)
	if [ $((0x$dev >> 8)) -ne 0 ]; then
		with_settings PREFETCH_BLOCK_DEVICES=no PREFETCH_STATS="$STATS" -- md5sum data
		md5sum_unchanged
		[ -z "$(messages)" ]
		assert_not_engaged
		[ "$(stat_sum block_device_skips)" -eq 1 ]
		rm -f "$STATS"
	fi
	# PREFETCH_SKIP_CACHED=Off on cached data: prefetched all the same.
	cat data > /dev/null
	with_settings PREFETCH_SKIP_CACHED=Off PREFETCH_BLOCK_DEVICES=yes PREFETCH_STATS="$STATS" \
		-- md5sum data
	md5sum_unchanged
	[ -z "$(messages)" ]
	assert_engaged
	[ "$(stat_sum cached_skips)" -eq 0 ]
	local var
	for var in PREFETCH_SKIP_CACHED:1 PREFETCH_BLOCK_DEVICES:0 PREFETCH_MMAP:1; do
		with_settings "${var%:*}=sometimes" -- md5sum data
		md5sum_unchanged
		one_message "${var%:*}=\"sometimes\" is not one of 1/0, yes/no, true/false, on/off; using the default ${var#*:}"
	done
}

@test "PREFETCH_STATS=yes, =on, =TRUE: statistics on stderr, no file named after the word" {
	local word
	for word in yes on TRUE 1; do
		with_settings PREFETCH_STATS="$word" -- md5sum data
		md5sum_unchanged
		[ -z "$(messages)" ]
		[[ $(stats_line) == *" prog=md5sum files_prefetched=1 "* ]]
		[ ! -e "$word" ]
	done
	for word in no off false 0 ''; do
		with_settings PREFETCH_STATS="$word" -- md5sum data
		md5sum_unchanged
		[ ! -s err ]
		[ -z "$word" ] || [ ! -e "$word" ]
	done
	[ -z "$(ls -A | grep -vx 'data\|out\|err')" ]
}

@test "PREFETCH_STATS=2: one warning, statistics on stderr, no file ./2" {
	with_settings PREFETCH_STATS=2 -- md5sum data
	md5sum_unchanged
	one_message 'PREFETCH_STATS=2: not a file name (write ./2 for one); statistics go to stderr'
	[[ $(stats_line) == *" prog=md5sum files_prefetched=1 "* ]]
	[ ! -e 2 ]
	# ./2 is a file.
	with_settings PREFETCH_STATS=./2 -- md5sum data
	md5sum_unchanged
	[ ! -s err ]
	grep -q ' prog=md5sum files_prefetched=1 ' 2
}

@test "PREFETCH_STATS=/dev/stderr: statistics on stderr" {
	with_settings PREFETCH_STATS=/dev/stderr -- md5sum data
	md5sum_unchanged
	[ -z "$(messages)" ]
	[[ $(stats_line) == *" prog=md5sum files_prefetched=1 "* ]]
}

# unwritable PATH MESSAGE: md5sum with PREFETCH_STATS=PATH gives its usual
# output and status, exactly MESSAGE on stderr, and engaged (debug line).
unwritable() {
	with_settings PREFETCH_STATS="$1" PREFETCH_DEBUG=2 -- md5sum data
	md5sum_unchanged
	one_message "$2"
	grep -q '^libprefetch\[[0-9]*\] info: try_engage: fd [0-9]*: prefetching from offset' err
}

@test "PREFETCH_STATS in a directory that does not exist: one message saying so" {
	unwritable /nonexistent/dir/x \
		'statistics not written: cannot open /nonexistent/dir/x: No such file or directory'
	[ ! -e /nonexistent ]
}

@test "PREFETCH_STATS naming a directory: one message saying so" {
	mkdir dir
	unwritable "$PWD/dir" "statistics not written: cannot open $PWD/dir: Is a directory"
	[ -z "$(ls -A dir)" ]
}

@test "PREFETCH_STATS naming a symbolic link: one message, the target untouched" {
	echo original > target
	ln -s "$PWD/target" link
	unwritable "$PWD/link" \
		"statistics not written: cannot open $PWD/link: Too many levels of symbolic links (a symbolic link: not followed)"
	[ "$(cat target)" = original ]
}

@test "PREFETCH_STATS naming a FIFO: no hang, one message, with or without a reader" {
	mkfifo fifo
	with_settings PREFETCH_STATS="$PWD/fifo" -- md5sum data
	md5sum_unchanged
	one_message "statistics not written: cannot open $PWD/fifo: No such device or address (a FIFO)"
	exec 4<> fifo
	with_settings PREFETCH_STATS="$PWD/fifo" -- md5sum data
	local got=
	read -r -t 0.5 -u 4 got || got=
	exec 4>&-
	md5sum_unchanged
	one_message "statistics not written: $PWD/fifo is not a regular file (a FIFO)"
	[ -z "$got" ]
}

@test "PREFETCH_STATS=/dev/full: one message, nothing written to the device" {
	[ -c /dev/full ] || skip "no /dev/full"
	unwritable /dev/full 'statistics not written: /dev/full is not a regular file (a character device)'
}

@test "the message reaches stderr through a pipe and a file, though md5sum closes stderr" {
	# Through a pipe (run merges stderr into its pipe).
	run -0 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS=/nonexistent/x md5sum data
	echo "$output"
	[ "${lines[0]}" = "$EXPECTED" ]
	[ "${lines[1]}" = 'libprefetch: statistics not written: cannot open /nonexistent/x: No such file or directory' ]
	[ "${#lines[@]}" -eq 2 ]
	run -0 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS=1 md5sum data
	[ "${lines[0]}" = "$EXPECTED" ]
	[[ ${lines[1]} == "libprefetch: pid="*" prog=md5sum files_prefetched=1 "* ]]
	[ "${#lines[@]}" -eq 2 ]
}

@test "PREFETCH_WINDOW=64K, the documented minimum: no warning, prefetched" {
	with_settings PREFETCH_WINDOW=64K PREFETCH_STATS="$STATS" -- md5sum data
	md5sum_unchanged
	[ -z "$(messages)" ]
	assert_engaged
	[ "$(stat_max peak_memory)" -le 65536 ]
}

@test "PREFETCH_CHUNK=64M: one warning, the chunk clamped to the window, a 20 MB file prefetched" {
	with_settings PREFETCH_CHUNK=64M PREFETCH_STATS="$STATS" -- md5sum data
	md5sum_unchanged
	one_message 'PREFETCH_CHUNK=64M is larger than the window (8M); using chunks of 8M'
	assert_engaged
	[ "$(stat_sum files_prefetched)" -eq 1 ]
	[ "$(stat_max peak_memory)" -le 8388608 ]
}

@test "PREFETCH_MAX_MEMORY=1: one warning, and a 64K window that fetches" {
	with_settings PREFETCH_MAX_MEMORY=1 PREFETCH_STATS="$STATS" -- md5sum data
	md5sum_unchanged
	one_message 'PREFETCH_MAX_MEMORY=1 is out of range [65536, 68719476736]; using 65536'
	assert_engaged
	[ "$(stat_sum bytes_fetched)" -gt 0 ]
	[ "$(stat_max peak_memory)" -le 65536 ]
}

@test "PREFETCH_WINDOW above PREFETCH_MAX_MEMORY: one warning, the window clamped to the cap" {
	with_settings PREFETCH_WINDOW=16M PREFETCH_MAX_MEMORY=4M PREFETCH_STATS="$STATS" -- md5sum data
	md5sum_unchanged
	one_message 'PREFETCH_WINDOW=16M is larger than PREFETCH_MAX_MEMORY (4M); using a window of 4M'
	assert_engaged
	[ "$(stat_max peak_memory)" -le 4194304 ]
}

# The descriptor numbers a program gets: it reads FILE to its end (so that
# the library engages), then opens FILE until EMFILE, printing each number.
# perl: a program whose own opens go through open(2) at the lowest number.
FD_PROBE='open(my $in, "<", $ARGV[0]) or die; while (read($in, my $b, 65536)) {} close($in);
my (@fds, @keep); while (open(my $f, "<", $ARGV[0])) { push @fds, fileno($f); push @keep, $f }
print "@fds then $!\n";'

# fd_probe LIMIT [VAR=VALUE...]: FD_PROBE on data under ulimit -n LIMIT,
# with the library and the settings given (none: without the library).
fd_probe() {
	local limit=$1
	shift
	local -a lib=()
	[ $# -eq 0 ] || lib=(env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_MMAP=0 "$@")
	bash -c 'ulimit -n "$1" && shift && exec "$@"' fd_probe "$limit" "${lib[@]}" \
		perl -e "$FD_PROBE" data
}

@test "PREFETCH_STATS under ulimit -n 12 and 1024: the same descriptor numbers and EMFILE point" {
	command -v perl > /dev/null || skip "perl missing"
	! sanitized || skip "sanitizer runtimes open descriptors of their own"
	local limit plain disabled enabled to_file
	for limit in 12 1024; do
		plain=$(fd_probe $limit 2> err.plain)
		disabled=$(fd_probe $limit PREFETCH_DISABLE=1 PREFETCH_STATS=1 2> err.disabled)
		enabled=$(fd_probe $limit PREFETCH_STATS=1 2> err)
		rm -f "$STATS"
		to_file=$(fd_probe $limit PREFETCH_STATS="$STATS" 2> err.file)
		echo "ulimit -n $limit"
		echo "plain:    $plain" | cut -c 1-200
		echo "disabled: $disabled" | cut -c 1-200
		echo "enabled:  $enabled" | cut -c 1-200
		echo "to file:  $to_file" | cut -c 1-200
		cat err err.file
		[[ $plain =~ ^[0-9]+( [0-9]+)*\ then\ Too\ many\ open\ files$ ]]
		[ "$disabled" = "$plain" ]
		[ "$enabled" = "$plain" ]
		[ "$to_file" = "$plain" ]
		# The enabled runs prefetched and reported.
		[[ $(stats_line) == *" prog=perl files_prefetched="[1-9]* ]]
		[[ $(stats_line) != *" worker_reads=0 "* ]]
		assert_engaged
	done
}

# Reads FILE, closes stderr, then opens DATA, which gets descriptor 2 and
# stays open to the end (a raw descriptor, which perl does not close at
# exit), and writes to it: the library's line must not land there.
CLOSE_STDERR='use POSIX;
open(my $in, "<", $ARGV[0]) or die; while (read($in, my $b, 65536)) {} close($in);
close(STDERR); my $d = POSIX::open($ARGV[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
defined $d && $d == 2 or exit 3; POSIX::write($d, "data\n", 5); print "ok\n";'

@test "a program that closed stderr and opened a data file as descriptor 2 never gets the line" {
	command -v perl > /dev/null || skip "perl missing"
	# perl leaves its memory to exit (PERL_DESTRUCT_LEVEL 0), with or
	# without the library.
	! sanitized || export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
	run -0 --separate-stderr with_plain perl -e "$CLOSE_STDERR" data out.plain
	local plain=$output
	[ "$(cat out.plain)" = data ]
	# stderr a file: the line goes there (opened again by its path).
	with_settings PREFETCH_STATS=1 -- perl -e "$CLOSE_STDERR" data out.data
	[ "$status" -eq 0 ]
	[ "$(cat out)" = "$plain" ]
	[ "$(cat out.data)" = data ]
	[[ $(stats_line) == *" prog=perl files_prefetched="[1-9]* ]]
	# stderr a pipe, which cannot be opened again: not in the data file
	# either (the line is lost).
	run -0 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS=1 \
		perl -e "$CLOSE_STDERR" data out.data
	[ "${lines[0]}" = "$plain" ]
	[ "$(cat out.data)" = data ]
}
