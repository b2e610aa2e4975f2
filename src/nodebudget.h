/* The node budget: one buffer-memory cap and one cap on reads in flight
 * for all the processes of a user on this machine (PREFETCH_SHARED_BUDGET).
 *
 * They meet in a small shared segment, /dev/shm/libprefetch-<euid>: a
 * header and a table of slots, one per process, each holding what its
 * process has taken. A process checks a claim against the sum of every
 * slot's claims; a slot whose process is gone (its pid no longer runs with
 * the start time the slot names) is emptied by the next process that looks.
 * Where the segment cannot be used, each process keeps its own budget, as
 * without it. The layout is here for tests/helpers/pf_nodedump. */
#ifndef PF_NODEBUDGET_H
#define PF_NODEBUDGET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PF_NODE_MAGIC 0x424e4650u /* "PFNB" */
#define PF_NODE_VERSION 1u
#define PF_NODE_SLOTS 1023u
/* The node's caps, in multiples of one process's (PREFETCH_MAX_MEMORY,
 * PREFETCH_THREADS): one process alone never meets them. */
#define PF_NODE_FACTOR 4u
#define PF_NODE_PATH_FMT "/dev/shm/libprefetch-%u"
#define PF_NODE_LEARNED 4u

enum { PF_NODE_MEMORY, PF_NODE_REQUESTS, PF_NODE_KINDS };

/* owner: 0 when free, else the process's pid in the low PF_NODE_PID_BITS
 * and its start time (clock ticks after boot) above; PF_NODE_RECLAIMING
 * while a process empties the slot. A claim is counted before it is
 * checked against the cap, and held once it passed: the sum of held never
 * exceeds a cap, that of claimed may for an instant. */
#define PF_NODE_PID_BITS 22
#define PF_NODE_RECLAIMING (1ull << 63)
struct pf_node_slot {
	uint64_t owner;
	int64_t claimed[PF_NODE_KINDS];
	int64_t held[PF_NODE_KINDS];
	uint64_t unused[3];
};

struct pf_node_header {
	uint32_t magic;
	uint32_t version;
	uint64_t size;      /* of the segment */
	uint64_t pid_ns;    /* the pid namespace's inode: pids name processes there only */
	uint32_t nslots;
	uint32_t used;      /* slots [0, used) were ever taken: sums stop there */
	/* What processes measured of filesystems (pf_node_recall), a word
	 * each. Unused space in the first layout, which kept it zero. */
	uint64_t learned[PF_NODE_LEARNED];
	struct pf_node_slot slots[PF_NODE_SLOTS];
};

/* Accounts bytes of buffers against the node's cap: 0, or -1 (nothing
 * accounted). 0 without a node budget. */
int pf_node_memory_reserve(uint64_t bytes);
void pf_node_memory_release(uint64_t bytes);

/* One read ahead in flight: true when it may start (then release it when
 * it ends), false when the node's cap is reached: never waits. */
bool pf_node_request_acquire(void);
void pf_node_request_release(void);

/* What a process of the node measured of the storage of a mount (named by
 * its unique ID, which the kernel never gives another mount) in the last
 * PF_NODE_RECALL_S seconds: a value 1-15 of the caller's (storage.c's
 * modes), or 0: not known, or no node budget. */
unsigned pf_node_recall(uint64_t mount);
void pf_node_remember(uint64_t mount, unsigned value);

/* Attaches now if it has not: before a thread with a descriptor table of
 * its own starts (mmap workers, fetchers of files), whose first claim would
 * otherwise attach where stderr, for attaching's message, is not open. */
void pf_node_attach(void);

/* At exit: frees the slot. In a fork child: the next use takes a slot of
 * its own. */
void pf_node_detach(void);
void pf_node_atfork_child(void);

#endif
