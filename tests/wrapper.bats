#!/usr/bin/env bats
# The user-facing pieces: the prefetch wrapper (src/prefetch.in), its
# installation, and the manual pages.

load test_helper
bats_require_minimum_version 1.5.0
allow_late_sanitizer_runtime

# A harmless library that exists on this system, to stand for something
# another tool preloaded before us.
other_library() {
	local path
	path=$(gcc -print-file-name=libm.so.6 2> /dev/null) || path=
	if [[ $path != /* || ! -f $path ]]; then
		path=$(/sbin/ldconfig -p 2> /dev/null | awk '$1 == "libm.so.6" { print $NF; exit }')
	fi
	[[ -n $path && -f $path ]] || return 1
	echo "$path"
}

# make_var NAME: the value of a variable of the build's Makefile.
make_var() {
	printf 'print-var:\n\t@echo $(%s)\n' "$1" |
		env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
			make -s --no-print-directory -C "$abs_top_builddir" -f Makefile -f - print-var |
		tail -n 1 # after anything printed while make updated the Makefile
}

# first_preload: the first entry of LD_PRELOAD as the wrapper sets it.
first_preload() {
	"$@" sh -c 'printf "%s\n" "${LD_PRELOAD%%:*}"'
}

@test "--help prints the usage and exits 0" {
	run -0 "$PREFETCH_WRAPPER" --help
	[[ ${lines[0]} == "Usage: prefetch "* ]]
	[[ $output == *"--window=SIZE"* ]]
	[[ $output == *"--stats=PATH"* && $output == *"--explain PATH..."* ]]
	run -0 "$PREFETCH_WRAPPER" -h
	[[ ${lines[0]} == "Usage: prefetch "* ]]
}

@test "--version prints the configured version" {
	local version
	version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$abs_top_builddir/config.h")
	[ -n "$version" ]
	run -0 "$PREFETCH_WRAPPER" --version
	[ "$output" = "prefetch (libprefetch) $version" ]
	run -0 "$PREFETCH_WRAPPER" -V
	[ "$output" = "prefetch (libprefetch) $version" ]
}

@test "an unknown option fails with status 2" {
	run -2 --separate-stderr "$PREFETCH_WRAPPER" --no-such-option true
	[ -z "$output" ]
	[[ $stderr == *"unrecognized option '--no-such-option'"* ]]
	run -2 "$PREFETCH_WRAPPER" -x true
	run -2 "$PREFETCH_WRAPPER" --stats-file=x true
	run -2 "$PREFETCH_WRAPPER" --disable=1 true
}

@test "an invalid or missing option value fails with status 2" {
	run -2 "$PREFETCH_WRAPPER" --window=lots true
	[[ $output == *"invalid size for --window: 'lots'"* ]]
	run -2 "$PREFETCH_WRAPPER" --chunk 4Q true
	run -2 "$PREFETCH_WRAPPER" --threads=-1 true
	run -2 "$PREFETCH_WRAPPER" --min-sequential= true
	run -2 "$PREFETCH_WRAPPER" --skip-cached=2 true
	run -2 "$PREFETCH_WRAPPER" --debug=4 true
	run -2 "$PREFETCH_WRAPPER" --stats= true
	run -2 "$PREFETCH_WRAPPER" --window
	[[ $output == *"--window needs a value"* ]]
}

@test "no command is a usage error" {
	run -2 "$PREFETCH_WRAPPER"
	[[ $output == *"no command given"* ]]
	run -2 "$PREFETCH_WRAPPER" --window=1M --
}

@test "a missing command fails with status 127, a non-executable one with 126" {
	run -127 "$PREFETCH_WRAPPER" no-such-command-for-prefetch
	[[ $output == *"no-such-command-for-prefetch: command not found"* ]]
	run -127 "$PREFETCH_WRAPPER" ./no/such/file
	: > not-executable
	chmod -x not-executable
	run -126 "$PREFETCH_WRAPPER" ./not-executable
	run -126 "$PREFETCH_WRAPPER" "$BATS_TEST_TMPDIR"
}

@test "the command's own exit status and arguments are passed on" {
	need_runtime_first_or_skip
	run -3 "$PREFETCH_WRAPPER" sh -c 'exit 3'
	run -0 "$PREFETCH_WRAPPER" -- printf '%s|' --window=1M "two words" ''
	[ "$output" = "--window=1M|two words||" ]
}

@test "LD_PRELOAD: the library is prepended, what was there is kept after it" {
	need_runtime_first_or_skip
	local other
	other=$(other_library) || skip "no libm.so.6 found to preload"
	LD_PRELOAD="$other" run -0 "$PREFETCH_WRAPPER" sh -c 'echo "$LD_PRELOAD"'
	[ "$(realpath "${output%%:*}")" = "$(realpath "$PREFETCH_LIB")" ]
	[ "${output#*:}" = "$other" ]
	# Two entries separated by a blank, as ld.so allows: both kept, in order.
	LD_PRELOAD="$other $other" run -0 "$PREFETCH_WRAPPER" sh -c 'echo "$LD_PRELOAD"'
	[ "${output#*:}" = "$other $other" ]
	# Without a previous value there is no stray colon.
	run -0 env -u LD_PRELOAD "$PREFETCH_WRAPPER" sh -c 'echo "$LD_PRELOAD"'
	[[ $output != *:* ]]
	# prefetch under prefetch does not add the library twice.
	run -0 "$PREFETCH_WRAPPER" "$PREFETCH_WRAPPER" sh -c 'echo "$LD_PRELOAD"'
	[[ $output != *:* ]]
}

@test "options map to PREFETCH_ variables, in both forms" {
	need_runtime_first_or_skip
	local x=$BATS_TEST_TMPDIR/x
	run -0 "$PREFETCH_WRAPPER" --window 4M --threads 3 --stats="$x" --disable \
		env -u PREFETCH_SKIP_CACHED -u PREFETCH_BLOCK_DEVICES -u PREFETCH_PARALLEL -u PREFETCH_SHARED_BUDGET sh -c 'env | grep "^PREFETCH_" | sort'
	[ "$output" = "$(printf '%s\n' PREFETCH_DISABLE=1 "PREFETCH_STATS=$x" \
		PREFETCH_THREADS=3 PREFETCH_WINDOW=4M)" ]

	# (Statistics go to stderr, kept apart.)
	run -0 --separate-stderr "$PREFETCH_WRAPPER" --chunk=64K --max-memory 1G \
		--min-sequential=5 --skip-cached 1 --block-devices=0 --debug=3 --stats=1 --disable \
		env -u PREFETCH_PARALLEL -u PREFETCH_SHARED_BUDGET sh -c 'env | grep "^PREFETCH_" | sort'
	[ "$output" = "$(printf '%s\n' PREFETCH_BLOCK_DEVICES=0 PREFETCH_CHUNK=64K PREFETCH_DEBUG=3 \
		PREFETCH_DISABLE=1 PREFETCH_MAX_MEMORY=1G PREFETCH_MIN_SEQUENTIAL=5 \
		PREFETCH_SKIP_CACHED=1 PREFETCH_STATS=1)" ]

	# --debug alone is level 2; a relative --stats path is made absolute;
	# variables set before and not given as options are passed on.
	PREFETCH_WINDOW=16M run -0 "$PREFETCH_WRAPPER" --debug --stats=sub/stats.log --disable \
		sh -c 'echo "$PREFETCH_DEBUG $PREFETCH_STATS $PREFETCH_WINDOW"'
	[ "$output" = "2 $PWD/sub/stats.log 16M" ]
}

@test "PREFETCH_LIBRARY overrides the library" {
	need_runtime_first_or_skip
	cp "$PREFETCH_LIB" copy.so
	PREFETCH_LIBRARY="$BATS_TEST_TMPDIR/copy.so" run -0 first_preload "$PREFETCH_WRAPPER"
	[ "$output" = "$BATS_TEST_TMPDIR/copy.so" ]
	# A relative path is made absolute.
	PREFETCH_LIBRARY=copy.so run -0 first_preload "$PREFETCH_WRAPPER"
	[ "$output" = "$PWD/copy.so" ]
	# The override really is what gets loaded.
	make_file data 4194304
	PREFETCH_LIBRARY=copy.so run -0 "$PREFETCH_WRAPPER" --stats="$STATS" cat data
	assert_engaged
	# A library that is not there: status 125, nothing run.
	PREFETCH_LIBRARY="$BATS_TEST_TMPDIR/none.so" run -125 "$PREFETCH_WRAPPER" touch ran
	[[ $output == *"library not found: $BATS_TEST_TMPDIR/none.so"* ]]
	[ ! -e ran ]
	mkdir "a b" && cp copy.so "a b/"
	PREFETCH_LIBRARY="$BATS_TEST_TMPDIR/a b/copy.so" run -125 "$PREFETCH_WRAPPER" true
}

@test "in the build tree, the wrapper uses the library just built" {
	need_runtime_first_or_skip
	unset PREFETCH_LIBRARY
	run -0 first_preload "$PREFETCH_WRAPPER"
	[ "$(realpath "$output")" = "$(realpath "$abs_top_builddir/src/.libs/libprefetch.so")" ]
	make_file data 8388608
	# (Into a pipe: to a file, cat would use copy_file_range, no reads.)
	"$PREFETCH_WRAPPER" --stats="$STATS" cat data | cat > copy
	cmp data copy
	assert_engaged
	# Also when run through a relative path.
	cd "$abs_top_builddir"
	run -0 first_preload ./prefetch
	[ "$(realpath "$output")" = "$(realpath "$abs_top_builddir/src/.libs/libprefetch.so")" ]
}

@test "make install DESTDIR=: the installed wrapper, library and manual pages" {
	need_runtime_first_or_skip
	local inst=$BATS_TEST_TMPDIR/inst bindir libdir mandir
	bindir=$(make_var bindir)
	libdir=$(make_var libdir)
	mandir=$(make_var mandir)
	echo "bindir=$bindir libdir=$libdir mandir=$mandir"
	[[ $bindir == /* && $libdir == /* && $mandir == /* ]]
	run -0 env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		make -C "$abs_top_builddir" install DESTDIR="$inst"
	[ -x "$inst$bindir/prefetch" ]
	[ -f "$inst$libdir/libprefetch.so" ]
	[ -f "$inst$mandir/man1/prefetch.1" ]
	[ -f "$inst$mandir/man7/libprefetch.7" ]
	local helper
	helper=$(make_var pkglibexecdir)/prefetch-helper
	[ -x "$inst$helper" ]
	grep -qF "'$helper'" "$inst$bindir/prefetch"

	# The substituted library path is the configured libdir (no DESTDIR in
	# it), and nothing was left unsubstituted.
	grep -qF "'$libdir/libprefetch.so'" "$inst$bindir/prefetch"
	! grep -q '@[a-zA-Z_]*@' "$inst$bindir/prefetch"
	! grep -qF "$inst" "$inst$bindir/prefetch"
	# The manual pages name the configured libdir too.
	grep -qF "LD_PRELOAD=$libdir/libprefetch.so" "$inst$mandir/man7/libprefetch.7"
	grep -qF "LD_PRELOAD=$libdir/libprefetch.so" "$inst$mandir/man1/prefetch.1"
	! grep -q '@[a-zA-Z_]*@' "$inst$mandir/man7/libprefetch.7" "$inst$mandir/man1/prefetch.1"

	# With the library pointed at the DESTDIR copy, it runs and prefetches.
	make_file data 8388608
	PREFETCH_LIBRARY="$inst$libdir/libprefetch.so" \
		run -0 "$inst$bindir/prefetch" --stats="$STATS" cat data
	assert_engaged

	# PREFETCH_HELPER names the helper, as PREFETCH_LIBRARY the library.
	PREFETCH_HELPER="$inst$helper" PREFETCH_LIBRARY="$inst$libdir/libprefetch.so" \
		run -0 "$inst$bindir/prefetch" --stats cat data
	[[ $output == *"prefetch: read ahead "* ]]
	PREFETCH_HELPER="$inst$helper" run -0 "$inst$bindir/prefetch" --explain data
	[[ ${lines[0]} == "data: "* ]]
	if [ ! -x "$helper" ]; then
		run -125 "$inst$bindir/prefetch" --explain data
		[[ $output == *"--explain needs the helper, not found: $helper"* ]]
	fi

	# Without PREFETCH_LIBRARY it looks in the configured libdir, never in
	# the build tree.
	unset PREFETCH_LIBRARY
	if [ -f "$libdir/libprefetch.so" ]; then
		run -0 first_preload "$inst$bindir/prefetch"
		[ "$output" = "$libdir/libprefetch.so" ]
	else
		run -125 "$inst$bindir/prefetch" true
		[[ $output == *"library not found: $libdir/libprefetch.so"* ]]
	fi
}

@test "the manual pages render without warnings" {
	command -v man > /dev/null || skip "man is not installed"
	local page
	for page in prefetch.1 libprefetch.7; do
		MANWIDTH=80 run -0 --separate-stderr man -l "$abs_top_builddir/man/$page"
		echo "$stderr"
		[ -z "$stderr" ]
		[[ $output == *PREFETCH_WINDOW* ]]
	done
	MANWIDTH=80 run -0 man -l "$abs_top_builddir/man/prefetch.1"
	[[ $output == *"EXIT STATUS"* && $output == *"--max-memory=SIZE"* ]]
	MANWIDTH=80 run -0 man -l "$abs_top_builddir/man/libprefetch.7"
	[[ $output == *"LIMITATIONS"* && $output == *"errors_forwarded"* ]]
	if command -v groff > /dev/null; then
		for page in prefetch.1 libprefetch.7; do
			run -0 --separate-stderr groff -man -Tutf8 -ww -z "$abs_top_builddir/man/$page"
			echo "$stderr"
			[ -z "$stderr" ]
		done
	fi
}

@test "the documentation names every variable the library reads" {
	local var doc
	local -a vars
	mapfile -t vars < <(grep -ho 'PREFETCH_[A-Z_]*' "$abs_top_srcdir"/src/settings.c | sort -u)
	[ "${#vars[@]}" -ge 9 ]
	for var in "${vars[@]}"; do
		for doc in man/libprefetch.7.in man/prefetch.1.in README.md; do
			grep -q "$var" "$abs_top_srcdir/$doc" || {
				echo "$var is not in $doc"
				return 1
			}
		done
	done
}

# The defaults and ranges in libprefetch(7) are those of src/settings.h.
# setting_value MACRO: "8M" for "(8 * PF_MIB)", "3" for "3".
setting_value() {
	sed -n "s/^#define $1 *//p" "$abs_top_srcdir/src/settings.h" |
		sed -e 's/(size_t)//g' -e 's/[()]//g' -e 's/ *\* *PF_\([KMG]\)IB/\1/' -e 's/ *$//'
}

@test "libprefetch(7) gives the defaults and ranges of src/settings.h" {
	local name def min max paragraph
	for name in WINDOW CHUNK THREADS MAX_MEMORY MIN_SEQUENTIAL; do
		def=$(setting_value "PF_${name}_DEFAULT")
		min=$(setting_value "PF_${name}_MIN")
		max=$(setting_value "PF_${name}_MAX")
		[[ $def =~ ^[0-9]+[KMG]?$ && $min =~ ^[0-9]+[KMG]?$ && $max =~ ^[0-9]+[KMG]?$ ]]
		# The paragraph of .B PREFETCH_NAME, up to the next .TP, on one line.
		paragraph=$(awk -v tag=".B PREFETCH_$name" '
			$0 == tag { on = 1; next }
			on && /^\.(TP|SH|SS)/ { exit }
			on { printf "%s ", $0 }' "$abs_top_srcdir/man/libprefetch.7.in")
		echo "PREFETCH_$name: default $def, range $min to $max: $paragraph"
		[[ $paragraph == *"Default .BR $def ;"* ]]
		[[ $paragraph == *"range $min to $max."* ]]
	done
}
