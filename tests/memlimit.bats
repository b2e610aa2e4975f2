#!/usr/bin/env bats
# The library under a cgroup memory limit (src/budget.c): a program that
# fits the limit alone must not be OOM-killed because of the buffers.
# Needs root and a writable memory controller (cgroup v2, or the v1 memory
# hierarchy); skips where cgroups cannot be made.

load test_helper

# memcg_parent: prints the directory under which a test cgroup can be made,
# and sets MEMCG_V (1 or 2); fails when there is none.
memcg_parent() {
	local own
	if [ "$(stat -fc %T /sys/fs/cgroup 2> /dev/null)" = cgroup2fs ]; then
		MEMCG_V=2
		# v2 puts processes in leaves only: a child of the root, whose
		# memory controller must be enabled for its children.
		grep -qw memory /sys/fs/cgroup/cgroup.controllers 2> /dev/null || return 1
		grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
			echo +memory > /sys/fs/cgroup/cgroup.subtree_control || return 1
		echo /sys/fs/cgroup
	elif [ -d /sys/fs/cgroup/memory ]; then
		MEMCG_V=1
		# Under the process's own memory cgroup when it is visible here
		# (a container's), else under the hierarchy's root.
		own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3; exit }' /proc/self/cgroup)
		if [ -d "/sys/fs/cgroup/memory$own" ]; then
			echo "/sys/fs/cgroup/memory$own"
		else
			echo /sys/fs/cgroup/memory
		fi
	else
		return 1
	fi
}

# need_memcg: skips unless a memory cgroup with a limit can be made here.
need_memcg() {
	need_root
	MEMCG_PARENT=$(memcg_parent) || skip "no writable memory cgroup controller"
	memcg_parent > /dev/null # for MEMCG_V, lost in the $(...)
	local probe="$MEMCG_PARENT/pftest.$$.probe"
	mkdir "$probe" 2> /dev/null || skip "cannot create a cgroup under $MEMCG_PARENT"
	rmdir "$probe"
}

# in_memcg LIMIT CMD...: runs CMD in a new memory cgroup limited to LIMIT,
# then removes the cgroup; logs its peak and limit hits to memcg.log.
in_memcg() {
	local limit=$1 cg="$MEMCG_PARENT/pftest.$$.$BATS_TEST_NUMBER.$((++MEMCG_RUNS))" rc i
	shift
	mkdir "$cg" || return 98
	if [ "$MEMCG_V" = 2 ]; then
		# No swap where it is accounted: a limit hit must be a limit hit.
		echo "$limit" > "$cg/memory.max" &&
			{ echo 0 2> /dev/null > "$cg/memory.swap.max" || :; }
	else
		echo "$limit" > "$cg/memory.limit_in_bytes"
	fi || { rmdir "$cg"; return 98; }
	(echo "$BASHPID" > "$cg/cgroup.procs" || exit 98; "$@")
	rc=$?
	{
		echo "status $rc in $cg:"
		cat "$cg/memory.max_usage_in_bytes" "$cg/memory.failcnt" "$cg/memory.events" 2> /dev/null
	} >> "$BATS_TEST_TMPDIR/memcg.log"
	# A killed process may still be leaving it.
	for i in 1 2 3 4 5 6 7 8 9 10; do
		rmdir "$cg" 2> /dev/null && break
		sleep 0.2
	done
	return $rc
}

# The three modes in 40 MiB, on cold files, with a bound far above the
# plain run's time (about a second).
limited_plain() { evict_cold_files && in_memcg 40M timeout 120 env -u LD_PRELOAD "$@"; }
limited_disabled() { evict_cold_files && in_memcg 40M timeout 120 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_DISABLE=1 "$@"; }
limited_prefetch() { evict_cold_files && in_memcg 40M timeout 120 env LD_PRELOAD="$SANITIZER_PRELOAD$PREFETCH_LIB" PREFETCH_STATS="$STATS" "$@"; }

# limited_modes CMD...: the three modes in 40 MiB. A round where the program
# was killed without the library (plain or disabled: it did not fit that
# time, on a loaded machine) says nothing of the library: run again, up to
# three rounds.
limited_modes() {
	local round
	for round in 1 2 3; do
		compare_modes limited_plain limited_disabled limited_prefetch "$@" && return 0
		grep -q 'plain=137\|disabled=137' "$BATS_TEST_TMPDIR/status" || return 1
		echo "round $round: killed without the library; again"
	done
	return 1
}

@test "memlimit: 8 threads reading 8 cold 16 MiB files in 40 MiB of cgroup memory are not OOM-killed" {
	need_memcg
	! sanitized || skip "sanitized build: the sanitizer's shadow memory does not fit 40 MiB"
	local files=() i
	for i in 1 2 3 4 5 6 7 8; do
		make_cold_file "f$i" 16777216
		files+=("f$i")
	done
	rm -f "$STATS"
	# 1 MiB read()s: the program's own buffers take 8 MiB of the 40.
	# Before src/budget.c, the enabled run was killed (status 137).
	limited_modes "$HELPERS/many_files" 8 1048576 "${files[@]}" || {
		cat memcg.log
		show_runs
		return 1
	}
	cat memcg.log
	[ "$(wc -l < out.plain)" -eq 8 ]
	# Eight 1 MiB reads in flight at once: the library may leave such a
	# program to itself (parallel_reader_skips). In 64 KiB reads it
	# prefetches, within what the cgroup leaves.
	rm -f "$STATS"
	limited_modes "$HELPERS/many_files" 8 65536 "${files[@]}" || {
		cat memcg.log
		show_runs
		return 1
	}
	cat memcg.log
	assert_engaged
	[ "$(stat_max peak_memory)" -lt $((32 * 1048576)) ]
}
