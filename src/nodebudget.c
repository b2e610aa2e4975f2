/* The node budget (nodebudget.h): what all the processes of a user on this
 * machine hold of buffers and keep in flight of reads ahead, against one cap
 * each, through a shared segment.
 *
 * A claim is added to the process's own slot first, then the claims of
 * every slot are summed: of two processes claiming at once, at least one
 * sees the other's claim (sequentially consistent atomics), so what passed
 * never exceeds the cap; no lock, and nothing a process dying at any
 * instruction leaves behind but its own slot, which the next process that
 * looks empties. The segment's file is made whole under a temporary name
 * and linked into place, so that it is never seen half made. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"
#include "nodebudget.h"
#include "settings.h"
#include "stats.h"

/* Yields while another thread of the process attaches (a few system calls),
 * and at exit while the process's own calls finish with its slot. */
#define PF_NODE_WAIT 10000
/* A refused claim looks for the slots of processes that are gone at most
 * this often: the look reads /proc once per slot holding claims. */
#define PF_NODE_RECLAIM_NS (100u * 1000u * 1000u)
#define PF_NODE_PID_MASK ((1ull << PF_NODE_PID_BITS) - 1)
#define PF_NODE_START_LIMIT (1ull << (63 - PF_NODE_PID_BITS))

enum { NODE_UNTRIED, NODE_ATTACHING, NODE_ON, NODE_OFF };

static struct {
	int state;                   /* NODE_* */
	unsigned ops;                /* calls of this process using its slot now */
	struct pf_node_header *seg;  /* mapped once, kept across fork */
	struct pf_node_slot *slot;
	uint64_t me;                 /* this process's owner word */
	uint64_t reclaimed_ns;       /* the last look for processes gone */
	uint64_t caps[PF_NODE_KINDS];
} node;

/* --- processes ------------------------------------------------------------------- */

/* The start time (field 22 of /proc/PID/stat, after the parenthesised name)
 * of the process at path; false when it cannot be read. */
static bool start_time(const char *path, uint64_t *start)
{
	char buf[1024];
	if (pf_read_small(path, buf, sizeof(buf)) < 0)
		return false;
	char *p = strrchr(buf, ')');
	for (int field = 3; p && field <= 22; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return false;
	char *end;
	errno = 0;
	*start = strtoull(p + 1, &end, 10);
	return !errno && end != p + 1 && *start < PF_NODE_START_LIMIT;
}

static bool own_identity(uint64_t *me)
{
	uint64_t start;
	unsigned pid = (unsigned)getpid();
	if (pid > PF_NODE_PID_MASK || !start_time("/proc/self/stat", &start))
		return false;
	*me = start << PF_NODE_PID_BITS | pid;
	return true;
}

/* Whether the process an owner word names is gone: no such pid, or a pid
 * reused by a process started at another time. When /proc will not tell
 * (hidepid), the process counts as running. */
static bool owner_gone(uint64_t owner)
{
	owner &= ~PF_NODE_RECLAIMING;
	pid_t pid = (pid_t)(owner & PF_NODE_PID_MASK);
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return true;
	char path[40];
	uint64_t start;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!start_time(path, &start))
		return kill(pid, 0) != 0 && errno == ESRCH;
	return start != owner >> PF_NODE_PID_BITS;
}

/* --- slots ------------------------------------------------------------------------- */

static void slot_zero(struct pf_node_slot *sl)
{
	for (int k = 0; k < PF_NODE_KINDS; k++) {
		__atomic_store_n(&sl->held[k], 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&sl->claimed[k], 0, __ATOMIC_SEQ_CST);
	}
}

static uint32_t slots_used(const struct pf_node_header *seg)
{
	uint32_t used = __atomic_load_n(&seg->used, __ATOMIC_SEQ_CST);
	return used < PF_NODE_SLOTS ? used : PF_NODE_SLOTS;
}

/* Empties a slot whose owner word was seen as owner, and leaves it to
 * next: the word first names this process as reclaiming it, so that no
 * other does the same meanwhile (and one that dies there leaves a slot
 * that another empties again). */
static bool slot_reclaim(struct pf_node_header *seg, uint32_t i, uint64_t owner, uint64_t next)
{
	struct pf_node_slot *sl = &seg->slots[i];
	if (!__atomic_compare_exchange_n(&sl->owner, &owner, node.me | PF_NODE_RECLAIMING, false,
					 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
		return false;
	slot_zero(sl);
	if (next) {
		/* Counted in every sum before the slot's first claim. */
		uint32_t used = __atomic_load_n(&seg->used, __ATOMIC_SEQ_CST);
		while (used < i + 1 &&
		       !__atomic_compare_exchange_n(&seg->used, &used, i + 1, false,
						    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
			;
	}
	__atomic_store_n(&sl->owner, next, __ATOMIC_SEQ_CST);
	return true;
}

/* A slot for this process: the one it held before an exec (same pid, same
 * start time: that image is gone, and what it held with it), else a free
 * one, else one of a process that is gone. */
static struct pf_node_slot *slot_take(struct pf_node_header *seg)
{
	for (int pass = 0; pass < 3; pass++) {
		for (uint32_t i = 0; i < PF_NODE_SLOTS; i++) {
			uint64_t o = __atomic_load_n(&seg->slots[i].owner, __ATOMIC_SEQ_CST);
			bool take = pass == 0   ? (o & ~PF_NODE_RECLAIMING) == node.me
				    : pass == 1 ? o == 0
						: o == 0 || owner_gone(o);
			if (take && slot_reclaim(seg, i, o, node.me))
				return &seg->slots[i];
		}
	}
	return NULL;
}

static bool slot_claims(const struct pf_node_slot *sl)
{
	for (int k = 0; k < PF_NODE_KINDS; k++)
		if (__atomic_load_n(&sl->claimed[k], __ATOMIC_SEQ_CST) != 0)
			return true;
	return false;
}

/* Empties the slots that still count claims of processes that are gone;
 * true if it emptied one. */
static bool reclaim_gone(void)
{
	struct pf_node_header *seg = node.seg;
	bool any = false;
	int saved = errno;
	for (uint32_t i = 0, used = slots_used(seg); i < used; i++) {
		struct pf_node_slot *sl = &seg->slots[i];
		uint64_t o = __atomic_load_n(&sl->owner, __ATOMIC_SEQ_CST);
		if (o == 0 || sl == node.slot || !slot_claims(sl) || !owner_gone(o))
			continue;
		if (slot_reclaim(seg, i, o, 0)) {
			PF_LOG(PF_LOG_INFO, "node budget: emptied slot %u of pid %u, gone", i,
			       (unsigned)(o & PF_NODE_PID_MASK));
			any = true;
		}
	}
	errno = saved;
	return any;
}

static bool reclaim_due(void)
{
	uint64_t now = pf_now_ns();
	uint64_t last = __atomic_load_n(&node.reclaimed_ns, __ATOMIC_RELAXED);
	return now - last >= PF_NODE_RECLAIM_NS &&
	       __atomic_compare_exchange_n(&node.reclaimed_ns, &last, now, false,
					   __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static uint64_t claimed_sum(int kind)
{
	struct pf_node_header *seg = node.seg;
	uint64_t sum = 0;
	for (uint32_t i = 0, used = slots_used(seg); i < used; i++) {
		int64_t v = __atomic_load_n(&seg->slots[i].claimed[kind], __ATOMIC_SEQ_CST);
		sum += v > 0 ? (uint64_t)v : 0;
	}
	return sum;
}

/* Claims n of kind, checks every process's claims against the cap, and
 * holds n if they fit (looking once for the claims of processes gone). */
static bool take(int kind, int64_t n)
{
	struct pf_node_slot *sl = node.slot;
	uint64_t cap = node.caps[kind];
	__atomic_add_fetch(&sl->claimed[kind], n, __ATOMIC_SEQ_CST);
	if (claimed_sum(kind) > cap && !(reclaim_due() && reclaim_gone() && claimed_sum(kind) <= cap)) {
		__atomic_sub_fetch(&sl->claimed[kind], n, __ATOMIC_SEQ_CST);
		return false;
	}
	__atomic_add_fetch(&sl->held[kind], n, __ATOMIC_SEQ_CST);
	return true;
}

static void give(int kind, int64_t n)
{
	__atomic_sub_fetch(&node.slot->held[kind], n, __ATOMIC_SEQ_CST);
	__atomic_sub_fetch(&node.slot->claimed[kind], n, __ATOMIC_SEQ_CST);
}

/* --- the segment ------------------------------------------------------------------- */

static uint64_t pid_namespace(void)
{
	struct stat st;
	return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Makes the segment whole under a name of this process's, then links it
 * into place; another process may have been first (EEXIST): that one is
 * used. */
static void segment_create(const char *path)
{
	char tmp[80];
	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	(void)unlink(tmp); /* left by a process of the same pid that died there */
	int fd = pf_libc.open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	size_t size = sizeof(struct pf_node_header);
	void *m = MAP_FAILED;
	if (fchmod(fd, 0600) == 0 && ftruncate(fd, (off_t)size) == 0)
		m = pf_libc.mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m != MAP_FAILED) {
		struct pf_node_header *h = m;
		h->version = PF_NODE_VERSION;
		h->size = size;
		h->pid_ns = pid_namespace();
		h->nslots = PF_NODE_SLOTS;
		__atomic_store_n(&h->magic, PF_NODE_MAGIC, __ATOMIC_RELEASE);
		pf_libc.munmap(m, size);
		(void)link(tmp, path);
	}
	(void)unlink(tmp);
	pf_libc.close(fd);
}

/* Opens the segment if it is what this library makes: a regular file of
 * this user's, mode 0600, of the size, not a link; -1 with *why, or
 * PF_NODE_MISSING. */
#define PF_NODE_MISSING (-2)
static int segment_open(const char *path, const char **why)
{
	int fd = pf_libc.open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		*why = errno == ELOOP ? "a symbolic link" : strerror(errno);
		return errno == ENOENT ? PF_NODE_MISSING : -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		*why = "not a regular file";
	else if (st.st_uid != geteuid())
		*why = "owned by another user";
	else if ((st.st_mode & 07777) != 0600)
		*why = "not of mode 0600";
	else if (st.st_size != (off_t)sizeof(struct pf_node_header))
		*why = "not of the size of this version's";
	else
		return fd;
	pf_libc.close(fd);
	return -1;
}

static struct pf_node_header *segment_map(const char *path, const char **why)
{
	int fd = segment_open(path, why);
	if (fd == PF_NODE_MISSING) {
		segment_create(path);
		*why = NULL;
		fd = segment_open(path, why);
	}
	if (fd < 0)
		return NULL;
	size_t size = sizeof(struct pf_node_header);
	void *m = pf_libc.mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	pf_libc.close(fd);
	if (m == MAP_FAILED) {
		*why = "cannot be mapped";
		return NULL;
	}
	struct pf_node_header *h = m;
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != PF_NODE_MAGIC ||
	    h->version != PF_NODE_VERSION || h->size != size || h->nslots != PF_NODE_SLOTS)
		*why = "not this version's segment";
	else if (h->pid_ns != pid_namespace())
		*why = "made in another pid namespace";
	else
		return h;
	pf_libc.munmap(m, size);
	return NULL;
}

/* --- attaching ----------------------------------------------------------------------- */

/* errno is the program's: the system calls here leave it as it was. */
static void attach(void)
{
	const struct pf_settings *cfg = pf_settings();
	int state = NODE_OFF, saved = errno;
	if (cfg->shared_budget) {
		char path[40];
		const char *why = NULL;
		snprintf(path, sizeof(path), PF_NODE_PATH_FMT, (unsigned)geteuid());
		node.caps[PF_NODE_MEMORY] = (uint64_t)cfg->max_memory * PF_NODE_FACTOR;
		node.caps[PF_NODE_REQUESTS] = (uint64_t)cfg->threads * PF_NODE_FACTOR;
		if (!own_identity(&node.me))
			why = "no start time of this process in /proc";
		else if (!node.seg && !(node.seg = segment_map(path, &why)))
			;
		else {
			/* Processes gone first: their slots are free to take. */
			(void)reclaim_gone();
			if (!(node.slot = slot_take(node.seg)))
				why = "every slot is taken";
		}
		if (why) {
			PF_LOG(PF_LOG_WARN, "node budget: %s: %s; this process keeps a budget of its own",
			       path, why);
		} else {
			state = NODE_ON;
			PF_LOG(PF_LOG_INFO, "node budget: %s slot %u: buffers up to %llu, %llu reads in flight",
			       path, (unsigned)(node.slot - node.seg->slots),
			       (unsigned long long)node.caps[PF_NODE_MEMORY],
			       (unsigned long long)node.caps[PF_NODE_REQUESTS]);
		}
	}
	__atomic_store_n(&node.state, state, __ATOMIC_SEQ_CST);
	errno = saved;
}

/* 1: the slot is this call's until leave(); 0: no node budget; -1: refuse
 * (another thread's attaching is very late). Attaches on first use when
 * may_attach (a release never does: nothing was reserved before). */
static int enter(bool may_attach)
{
	for (int i = 0;; i++) {
		int st = __atomic_load_n(&node.state, __ATOMIC_SEQ_CST);
		if (st == NODE_ON) {
			__atomic_add_fetch(&node.ops, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&node.state, __ATOMIC_SEQ_CST) == NODE_ON)
				return 1;
			__atomic_sub_fetch(&node.ops, 1, __ATOMIC_SEQ_CST);
			return 0;
		}
		if (st == NODE_OFF || !may_attach)
			return 0;
		if (st == NODE_UNTRIED &&
		    __atomic_compare_exchange_n(&node.state, &st, NODE_ATTACHING, false,
						__ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
			attach();
			continue;
		}
		if (i >= PF_NODE_WAIT)
			return -1;
		sched_yield();
	}
}

static void leave(void)
{
	__atomic_sub_fetch(&node.ops, 1, __ATOMIC_SEQ_CST);
}

/* --- what was measured of mounts ------------------------------------------------------ */

/* A measure is trusted this long: the storage may change (a server's load),
 * and the next process to miss it measures again. */
#define PF_NODE_RECALL_S 60u
/* A learned word: the mount's unique ID (its low 32 bits: the kernel counts
 * them up from 2^31), the value, and when, in seconds of CLOCK_MONOTONIC
 * (one clock for every process), so that one atomic word holds it all. */
#define LEARNED_TIME_BITS 28
#define LEARNED_TIME_MASK ((1u << LEARNED_TIME_BITS) - 1)

static uint32_t now_s(void)
{
	return (uint32_t)(pf_now_ns() / 1000000000u) & LEARNED_TIME_MASK;
}

static uint32_t learned_age(uint64_t word)
{
	return (now_s() - (uint32_t)word) & LEARNED_TIME_MASK;
}

static uint32_t learned_mount(uint64_t word)
{
	return (uint32_t)(word >> 32);
}

unsigned pf_node_recall(uint64_t mount)
{
	uint32_t id = (uint32_t)mount;
	unsigned value = 0;
	if (!id || enter(true) <= 0)
		return 0;
	for (unsigned i = 0; i < PF_NODE_LEARNED && !value; i++) {
		uint64_t w = __atomic_load_n(&node.seg->learned[i], __ATOMIC_ACQUIRE);
		if (w && learned_mount(w) == id && learned_age(w) < PF_NODE_RECALL_S)
			value = (unsigned)(w >> LEARNED_TIME_BITS) & 15u;
	}
	leave();
	return value;
}

/* Over the word of the same mount, else the oldest; a race lost to
 * another process's measure leaves that one. */
void pf_node_remember(uint64_t mount, unsigned value)
{
	uint32_t id = (uint32_t)mount;
	if (!id || !value || value > 15u || enter(true) <= 0)
		return;
	unsigned pick = 0;
	uint32_t oldest = 0;
	uint64_t seen = 0;
	for (unsigned i = 0; i < PF_NODE_LEARNED; i++) {
		uint64_t w = __atomic_load_n(&node.seg->learned[i], __ATOMIC_ACQUIRE);
		uint32_t age = w ? learned_age(w) : LEARNED_TIME_MASK;
		if (w && learned_mount(w) == id) {
			pick = i, seen = w;
			break;
		}
		if (i == 0 || age > oldest)
			pick = i, oldest = age, seen = w;
	}
	uint64_t word = (uint64_t)id << 32 | (uint64_t)value << LEARNED_TIME_BITS | now_s();
	__atomic_compare_exchange_n(&node.seg->learned[pick], &seen, word, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
	leave();
}

/* --- the interface ------------------------------------------------------------------- */

int pf_node_memory_reserve(uint64_t bytes)
{
	int in = enter(true);
	if (in <= 0)
		return in;
	bool ok = take(PF_NODE_MEMORY, (int64_t)bytes);
	leave();
	if (!ok)
		PF_STAT_ADD(node_memory_limited, 1);
	return ok ? 0 : -1;
}

void pf_node_memory_release(uint64_t bytes)
{
	if (enter(false) > 0) {
		give(PF_NODE_MEMORY, (int64_t)bytes);
		leave();
	}
}

void pf_node_attach(void)
{
	if (enter(true) > 0)
		leave();
}

bool pf_node_request_acquire(void)
{
	int in = enter(true);
	if (in <= 0)
		return in == 0;
	bool ok = take(PF_NODE_REQUESTS, 1);
	leave();
	if (!ok)
		PF_STAT_ADD(node_requests_limited, 1);
	return ok;
}

void pf_node_request_release(void)
{
	if (enter(false) > 0) {
		give(PF_NODE_REQUESTS, 1);
		leave();
	}
}

/* The process's threads go on running during exit: none uses the slot once
 * the state is off and the calls under way are done; if they are not done
 * soon, the slot is left for others to empty once the process is gone. */
void pf_node_detach(void)
{
	int st = NODE_ON;
	if (!__atomic_compare_exchange_n(&node.state, &st, NODE_OFF, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_RELAXED))
		return;
	for (int i = 0; __atomic_load_n(&node.ops, __ATOMIC_SEQ_CST) != 0; i++) {
		if (i >= PF_NODE_WAIT)
			return;
		sched_yield();
	}
	slot_zero(node.slot);
	uint64_t me = node.me;
	__atomic_compare_exchange_n(&node.slot->owner, &me, 0, false, __ATOMIC_SEQ_CST,
				    __ATOMIC_RELAXED);
}

/* The parent's slot stays the parent's; the child, which holds nothing
 * yet, takes one on its first use. The mapping is inherited. */
void pf_node_atfork_child(void)
{
	node.state = NODE_UNTRIED;
	node.ops = 0;
	node.slot = NULL;
	node.me = 0;
	node.reclaimed_ns = 0;
}
