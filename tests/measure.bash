# shellcheck shell=bash
# Measuring helpers shared by the bats suite (through test_helper.bash) and
# the scripts that time the library (scripts/bench*, demo, soak): sourced,
# not run.

# stat_sum KEY [FILE]: the sum of KEY over every process that wrote its
# statistics line to FILE (default $STATS; PREFETCH_STATS); 0 without FILE.
stat_sum() {
	local file=${2:-${STATS:-}}
	[ -r "$file" ] || { echo 0; return; }
	stat_lines_sum "$1" < "$file"
}

# stat_lines_sum KEY: the sum of KEY over the statistics lines on stdin.
stat_lines_sum() {
	grep -o " $1=[0-9]*" | cut -d= -f2 | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# stat_max KEY [FILE]: the largest value of KEY over the processes in FILE
# (default $STATS); 0 without FILE.
stat_max() {
	local file=${2:-${STATS:-}}
	[ -r "$file" ] || { echo 0; return; }
	grep -o " $1=[0-9]*" "$file" | cut -d= -f2 | sort -n | tail -n 1 |
		awk '{ print $1 + 0 } END { if (NR == 0) print 0 }'
}

# evict [--max-cached=BYTES] FILE...: drops the files' clean pages from the
# page cache (dd's nocache with no data: POSIX_FADV_DONTNEED over the whole
# file; dirty pages stay, so sync first). With --max-cached, and fincore
# (util-linux) there to tell, fails when more than BYTES of a file stay
# after 10 s of trying again: pages still being read in (the readahead of a
# program that just ended, 1.8 MB once on a quiet machine) cannot be
# dropped until their read completes.
evict() {
	local max='' f res try
	case ${1:-} in --max-cached=*) max=${1#*=}; shift ;; esac
	[ -n "$max" ] && command -v fincore > /dev/null || max=
	for f in "$@"; do
		for ((try = 0; ; try++)); do
			dd if="$f" iflag=nocache count=0 status=none || return 1
			[ -n "$max" ] || break
			res=$(fincore --bytes --noheadings --output RES "$f") || return 1
			[ "$res" -gt "$max" ] || break
			((try < 100)) || { echo "$f still has $res bytes cached" >&2; return 1; }
			sleep 0.1
		done
	done
}

# median: the median of the numbers on stdin, one a line (the lower of the
# two middle ones of an even count); "-" when there are none.
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'
}
