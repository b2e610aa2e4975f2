/* The buffer memory budget: PREFETCH_MAX_MEMORY, and no more than half of
 * what the process's memory cgroup leaves free.
 *
 * A container or batch job runs under a cgroup memory limit that counts the
 * library's buffers with the program's own memory: buffers the limit has no
 * room for get the program OOM-killed. At the first reservation the cgroup
 * is found (v1 memory controller, else v2), and every so often its limit and
 * usage are read again, at every level up to the root of the mount (the
 * tightest level counts). Reservations are refused beyond the budget; the
 * engine then holds fewer chunks, and a stream without any reads from the
 * kernel, as without the library. Where the user's processes share a node
 * budget (nodebudget.c), a reservation must fit that too. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"
#include "nodebudget.h"
#include "stats.h"

/* Limit and usage are read again at most this often: the engine reserves
 * per chunk, and reading them costs a few small file reads. */
#define PF_BUDGET_REFRESH_NS (100u * 1000u * 1000u)
/* Yields while another thread takes the first sample. */
#define PF_BUDGET_FIRST_WAIT 10000
/* Limits at least this large mean "no limit" (v1 writes 2^63 rounded down
 * to a page, v2 writes "max"). */
#define PF_BUDGET_NO_LIMIT (1ull << 60)
/* The files read (/proc/self/cgroup, memory.stat) go to one static buffer,
 * which the one sampling thread owns: no malloc (the mmap prefetcher
 * reserves under its lock, which munmap inside an allocator may wait for),
 * and no large stack (the caller may be a program thread with a small one). */
#define PF_BUDGET_FILE 8192
/* Room for the cgroup directory's path; a longer one goes without budget. */
#define PF_BUDGET_PATH 1024
#define PF_BUDGET_MOUNTS 65536

static char sample_buf[PF_BUDGET_MOUNTS];

enum { CG_UNKNOWN, CG_NONE, CG_V1, CG_V2 };

static struct {
	uint64_t sampled_ns;  /* last sample (0: none yet) */
	int taken_pid;        /* the process of the thread sampling (0: none) */
	uint64_t allowed;     /* bytes the cgroup leaves the buffers */
	int kind;             /* CG_*, written by the sampling thread only */
	size_t top;           /* length of dir's mount point: the walk stops there */
	char dir[PF_BUDGET_PATH]; /* the process's cgroup directory */
} budget;

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || (*end != '\0' && *end != '\n' && *end != ' '))
		return false;
	*out = v;
	return true;
}

/* Whether the comma-separated list names "memory". */
static bool names_memory(char *list)
{
	char *save;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (strcmp(tok, "memory") == 0)
			return true;
	return false;
}

/* The cgroup path of the memory controller in /proc/self/cgroup: the v1
 * line naming "memory" when v1 is true, else the v2 line ("0::"). */
static bool cgroup_path(bool v1, char *path, size_t size)
{
	char *buf = sample_buf;
	bool found = false;
	if (pf_read_small("/proc/self/cgroup", buf, PF_BUDGET_FILE) > 0) {
		for (char *line = buf, *end; !found && line; line = end ? end + 1 : NULL) {
			end = strchr(line, '\n');
			if (end)
				*end = '\0';
			/* "ID:CONTROLLERS:PATH" */
			char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
			if (!c2)
				continue;
			*c2 = '\0';
			bool match = v1 ? names_memory(c1 + 1) : strcmp(line, "0:") == 0;
			found = match && (size_t)snprintf(path, size, "%s", c2 + 1) < size;
		}
	}
	return found;
}

/* From a mountinfo line ("ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - TYPE
 * SOURCE SUPEROPTS"), the root and mount point of a mount of the memory
 * controller: fstype cgroup with "memory" among its options (v1), or
 * cgroup2. Escaped names (\040) are not ours to guess: skipped. */
static bool memory_mount(char *line, bool v1, char **root, char **mnt)
{
	char *sep = strstr(line, " - ");
	if (!sep || strchr(line, '\\'))
		return false;
	*sep = '\0';
	char *save, *type = strtok_r(sep + 3, " ", &save);
	(void)strtok_r(NULL, " ", &save);
	char *opts = strtok_r(NULL, " \n", &save);
	if (!type || strcmp(type, v1 ? "cgroup" : "cgroup2") != 0)
		return false;
	if (v1 && (!opts || !names_memory(opts)))
		return false;
	char *f = strtok_r(line, " ", &save);
	for (int i = 0; f && i < 3; i++)
		f = strtok_r(NULL, " ", &save);
	*root = f;
	*mnt = f ? strtok_r(NULL, " ", &save) : NULL;
	return *mnt != NULL;
}

/* Finds the cgroup directory: the mount point plus the cgroup path below
 * the mount's root. False when the controller is not mounted here, or the
 * process's cgroup lies outside what is mounted. */
static bool find_dir(bool v1)
{
	char path[PF_BUDGET_PATH];
	if (!cgroup_path(v1, path, sizeof(path)))
		return false;
	/* The first PF_BUDGET_MOUNTS bytes: cgroup mounts come early. */
	char *buf = sample_buf;
	bool found = false;
	if (pf_read_small("/proc/self/mountinfo", buf, PF_BUDGET_MOUNTS) > 0) {
		char *root, *mnt;
		for (char *line = buf, *end; !found && *line; line = end + 1) {
			end = strchr(line, '\n');
			if (end)
				*end = '\0';
			if (memory_mount(line, v1, &root, &mnt)) {
				size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
				if (strncmp(path, root, rl) == 0 &&
				    (path[rl] == '/' || path[rl] == '\0') &&
				    (size_t)snprintf(budget.dir, sizeof(budget.dir), "%s%s", mnt,
						     path + rl) < sizeof(budget.dir)) {
					budget.top = strlen(mnt);
					found = true;
				}
			}
			if (!end)
				break;
		}
	}
	return found;
}

/* The value of key ("key N" lines) in a memory.stat file, or 0. */
static uint64_t stat_value(const char *dir, const char *key)
{
	char path[PF_BUDGET_PATH + 16];
	char *buf = sample_buf;
	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	uint64_t v = 0;
	if (pf_read_small(path, buf, PF_BUDGET_FILE) > 0) {
		size_t kl = strlen(key);
		for (char *line = buf; line; line = strchr(line, '\n')) {
			if (*line == '\n')
				line++;
			if (strncmp(line, key, kl) == 0 && line[kl] == ' ' &&
			    parse_u64(line + kl + 1, &v))
				break;
			v = 0;
		}
	}
	return v;
}

static bool read_value(const char *dir, const char *name, uint64_t *v)
{
	char path[PF_BUDGET_PATH + 32], buf[64];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (pf_read_small(path, buf, sizeof(buf)) < 0)
		return false;
	if (strncmp(buf, "max", 3) == 0) {
		*v = UINT64_MAX;
		return true;
	}
	return parse_u64(buf, v);
}

/* What the level at dir leaves free: limit - usage, not counting the
 * inactive page cache (reclaimed before anything is killed); UINT64_MAX
 * when the level has no limit. */
static uint64_t level_headroom(const char *dir)
{
	bool v1 = budget.kind == CG_V1;
	uint64_t limit, usage;
	if (!read_value(dir, v1 ? "memory.limit_in_bytes" : "memory.max", &limit) ||
	    limit >= PF_BUDGET_NO_LIMIT)
		return UINT64_MAX;
	if (!read_value(dir, v1 ? "memory.usage_in_bytes" : "memory.current", &usage))
		return UINT64_MAX;
	uint64_t inactive = stat_value(dir, v1 ? "total_inactive_file" : "inactive_file");
	usage -= inactive < usage ? inactive : usage;
	return usage < limit ? limit - usage : 0;
}

/* The least headroom from the process's cgroup up to the mount's root
 * (each level's limit counts its children's usage). */
static uint64_t headroom(void)
{
	char dir[PF_BUDGET_PATH];
	memcpy(dir, budget.dir, sizeof(dir));
	uint64_t least = UINT64_MAX;
	for (;;) {
		uint64_t h = level_headroom(dir);
		if (h < least)
			least = h;
		char *slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < budget.top)
			break;
		*slash = '\0';
	}
	return least;
}

/* Takes a sample (the calling thread holds budget.taken_pid). */
static void sample(void)
{
	if (budget.kind == CG_UNKNOWN) {
		budget.kind = find_dir(true) ? CG_V1 : find_dir(false) ? CG_V2 : CG_NONE;
		PF_LOG(PF_LOG_INFO, "memory cgroup: %s",
		       budget.kind == CG_NONE ? "none found" : budget.dir);
	}
	uint64_t allowed = UINT64_MAX;
	if (budget.kind != CG_NONE) {
		uint64_t h = headroom();
		/* The usage counts the buffers held now: they are ours to
		 * give back, so they count as free. */
		uint64_t own = __atomic_load_n(&pf_stats.memory, __ATOMIC_RELAXED);
		if (h != UINT64_MAX)
			allowed = (h + own) / 2;
		if (h != UINT64_MAX && budget.sampled_ns == 0)
			PF_LOG(PF_LOG_INFO, "memory cgroup leaves %llu bytes: buffers up to %llu",
			       (unsigned long long)h, (unsigned long long)allowed);
	}
	__atomic_store_n(&budget.allowed, allowed, __ATOMIC_RELAXED);
}

/* The cap on all buffers now: cap, or less when the cgroup says so; 0
 * when the first sample, taken by another thread, is very late. */
static uint64_t budget_cap(uint64_t cap)
{
	uint64_t now = pf_now_ns();
	uint64_t last = __atomic_load_n(&budget.sampled_ns, __ATOMIC_ACQUIRE);
	if (last == 0 || now - last >= PF_BUDGET_REFRESH_NS) {
		/* One thread samples at a time. A fork child of a process that
		 * was sampling finds the parent's pid there: no thread of its
		 * own holds it, so it may take it. */
		int me = getpid();
		int taken = __atomic_load_n(&budget.taken_pid, __ATOMIC_ACQUIRE);
		if (taken != me &&
		    __atomic_compare_exchange_n(&budget.taken_pid, &taken, me, false,
						__ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
			sample();
			last = now;
			__atomic_store_n(&budget.sampled_ns, now, __ATOMIC_RELEASE);
			__atomic_store_n(&budget.taken_pid, 0, __ATOMIC_RELEASE);
		}
	}
	/* The first sample takes well under a millisecond: wait for it
	 * rather than refuse (a refused mapping or stream would not be read
	 * ahead at all); refuse only if it is very late. */
	for (int i = 0; last == 0 && i < PF_BUDGET_FIRST_WAIT; i++) {
		sched_yield();
		last = __atomic_load_n(&budget.sampled_ns, __ATOMIC_ACQUIRE);
	}
	if (last == 0)
		return 0;
	uint64_t allowed = __atomic_load_n(&budget.allowed, __ATOMIC_RELAXED);
	return allowed < cap ? allowed : cap;
}

int pf_memory_reserve(uint64_t bytes, uint64_t cap)
{
	cap = budget_cap(cap);
	uint64_t now = __atomic_load_n(&pf_stats.memory, __ATOMIC_RELAXED);
	do {
		if (now + bytes > cap)
			return -1;
	} while (!__atomic_compare_exchange_n(&pf_stats.memory, &now, now + bytes, 1,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	if (pf_node_memory_reserve(bytes) != 0) {
		__atomic_sub_fetch(&pf_stats.memory, bytes, __ATOMIC_RELAXED);
		return -1;
	}
	uint64_t peak = __atomic_load_n(&pf_stats.peak_memory, __ATOMIC_RELAXED);
	while (now + bytes > peak &&
	       !__atomic_compare_exchange_n(&pf_stats.peak_memory, &peak, now + bytes, 1,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return 0;
}

void pf_memory_release(uint64_t bytes)
{
	pf_node_memory_release(bytes);
	__atomic_sub_fetch(&pf_stats.memory, bytes, __ATOMIC_RELAXED);
}
