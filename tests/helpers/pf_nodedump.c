/* pf_nodedump: what the node budget's segment (src/nodebudget.h) holds, seen
 * from outside the processes that share it.
 *
 *   pf_nodedump [PATH]                  one snapshot: totals, then each slot in use
 *   pf_nodedump --until=FILE [PATH]     samples every millisecond until FILE
 *                                       exists, then prints the largest totals seen
 *
 * PATH defaults to /dev/shm/libprefetch-<euid>. A snapshot is two identical
 * reads of every slot in a row, so that its totals were all true at once. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../src/nodebudget.h"
#include "common.h"

struct view {
	uint64_t owner[PF_NODE_SLOTS];
	int64_t held[PF_NODE_SLOTS][PF_NODE_KINDS];
	int64_t claimed[PF_NODE_SLOTS][PF_NODE_KINDS];
	uint32_t used;
};

static void collect(const struct pf_node_header *h, struct view *v)
{
	memset(v, 0, sizeof(*v));
	v->used = __atomic_load_n(&h->used, __ATOMIC_SEQ_CST);
	if (v->used > PF_NODE_SLOTS)
		v->used = PF_NODE_SLOTS;
	for (uint32_t i = 0; i < v->used; i++) {
		const struct pf_node_slot *sl = &h->slots[i];
		v->owner[i] = __atomic_load_n(&sl->owner, __ATOMIC_SEQ_CST);
		for (int k = 0; k < PF_NODE_KINDS; k++) {
			v->held[i][k] = __atomic_load_n(&sl->held[k], __ATOMIC_SEQ_CST);
			v->claimed[i][k] = __atomic_load_n(&sl->claimed[k], __ATOMIC_SEQ_CST);
		}
	}
}

/* A consistent snapshot, or 0 when the slots kept changing. */
static int snapshot(const struct pf_node_header *h, struct view *v, struct view *again)
{
	for (int tries = 0; tries < 1000; tries++) {
		collect(h, v);
		collect(h, again);
		if (v->used == again->used && memcmp(v->held, again->held, sizeof(v->held)) == 0 &&
		    memcmp(v->owner, again->owner, sizeof(v->owner)) == 0)
			return 1;
	}
	return 0;
}

static int64_t total(const struct view *v, int kind)
{
	int64_t sum = 0;
	for (uint32_t i = 0; i < v->used; i++)
		sum += v->held[i][kind];
	return sum;
}

static const struct pf_node_header *map_segment(const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size != (off_t)sizeof(struct pf_node_header)) {
		close(fd);
		return NULL;
	}
	void *m = mmap(NULL, sizeof(struct pf_node_header), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return NULL;
	const struct pf_node_header *h = m;
	return h->magic == PF_NODE_MAGIC && h->version == PF_NODE_VERSION ? h : NULL;
}

static void print_snapshot(const struct pf_node_header *h)
{
	static struct view v, again;
	if (!snapshot(h, &v, &again))
		die("pf_nodedump: the slots kept changing");
	printf("used=%u memory=%lld requests=%lld\n", v.used, (long long)total(&v, PF_NODE_MEMORY),
	       (long long)total(&v, PF_NODE_REQUESTS));
	for (uint32_t i = 0; i < v.used; i++) {
		if (!v.owner[i] && !v.held[i][0] && !v.held[i][1] && !v.claimed[i][0] &&
		    !v.claimed[i][1])
			continue;
		uint64_t o = v.owner[i] & ~PF_NODE_RECLAIMING;
		printf("slot %u pid %llu start %llu%s memory %lld requests %lld claimed %lld %lld\n", i,
		       (unsigned long long)(o & ((1ull << PF_NODE_PID_BITS) - 1)),
		       (unsigned long long)(o >> PF_NODE_PID_BITS),
		       v.owner[i] & PF_NODE_RECLAIMING ? " reclaiming" : "",
		       (long long)v.held[i][0], (long long)v.held[i][1], (long long)v.claimed[i][0],
		       (long long)v.claimed[i][1]);
	}
}

static void watch(const char *path, const char *until)
{
	static struct view v, again;
	const struct pf_node_header *h = NULL;
	long samples = 0, torn = 0;
	int64_t max_mem = 0, max_req = 0;
	struct timespec ms = { 0, 1000000 };
	while (access(until, F_OK) != 0) {
		if (!h)
			h = map_segment(path);
		if (h && snapshot(h, &v, &again)) {
			samples++;
			if (total(&v, PF_NODE_MEMORY) > max_mem)
				max_mem = total(&v, PF_NODE_MEMORY);
			if (total(&v, PF_NODE_REQUESTS) > max_req)
				max_req = total(&v, PF_NODE_REQUESTS);
		} else if (h) {
			torn++;
		}
		nanosleep(&ms, NULL);
	}
	printf("samples=%ld torn=%ld max_memory=%lld max_requests=%lld\n", samples, torn,
	       (long long)max_mem, (long long)max_req);
}

int main(int argc, char **argv)
{
	const char *until = NULL;
	char path[64];
	snprintf(path, sizeof(path), PF_NODE_PATH_FMT, (unsigned)geteuid());
	for (int i = 1; i < argc; i++) {
		const char *v;
		if ((v = opt_value(argv[i], "until")))
			until = v;
		else if (argv[i][0] != '-')
			snprintf(path, sizeof(path), "%s", argv[i]);
		else
			die("usage: pf_nodedump [--until=FILE] [PATH]");
	}
	if (until) {
		watch(path, until);
		return 0;
	}
	const struct pf_node_header *h = map_segment(path);
	if (!h)
		die("pf_nodedump: %s: no segment of this version", path);
	print_snapshot(h);
	return 0;
}
