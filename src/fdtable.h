/* Per-descriptor state, looked up by fd number on every hooked call.
 *
 * The table is two-level: a fixed array of page pointers, each page holding
 * PF_FD_PAGE_SLOTS slots, allocated (zeroed, so lazily backed by the kernel)
 * the first time a descriptor in its range is read. Its size does not depend
 * on RLIMIT_NOFILE, which containers set to a billion; descriptors above
 * PF_FD_MAX are simply passed through. Slots are never freed, so a pointer to
 * one stays valid for the life of the process. */
#ifndef PF_FDTABLE_H
#define PF_FDTABLE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#define PF_FD_PAGE_SHIFT 10
#define PF_FD_PAGE_SLOTS (1u << PF_FD_PAGE_SHIFT)
#define PF_FD_PAGES      1024u
#define PF_FD_MAX        (PF_FD_PAGE_SLOTS * PF_FD_PAGES)

enum pf_fd_state {
	PF_FD_WATCHING = 0, /* zero-initialised: count sequential reads */
	PF_FD_IGNORED,      /* never prefetched: not a read-only regular file, advice RANDOM */
	PF_FD_CACHED,       /* data was cached: pass through, look again later */
	PF_FD_STREAMING,    /* a stream prefetches for this descriptor */
};

enum pf_fd_flags {
	PF_FDF_CLASSIFIED = 1 << 0, /* fcntl/fstatfs checks passed once */
	PF_FDF_SEQ_ADVICE = 1 << 1, /* the program said POSIX_FADV_SEQUENTIAL */
	PF_FDF_RANDOM_ADVICE = 1 << 2, /* ignored because the program said RANDOM */
	PF_FDF_LOOKED_AT = 1 << 3, /* fstat'd at its first read (first_look) */
	PF_FDF_OWN_PARALLEL = 1 << 4, /* read alongside the program's own parallel reads */
	PF_FDF_PACED = 1 << 5, /* its reads are timed: does the program compute between them? */
};

enum pf_run_flags {
	PF_RUN_FROM_START = 1 << 0, /* started at offset 0, sequential so far */
	PF_RUN_SKIPPED = 1 << 1,    /* skipped forward */
	PF_RUN_BACKWARD = 1 << 2,   /* each read before the last (tac) */
	PF_RUN_TURNED = 1 << 3,     /* a seek back was counted; its read() comes next */
};

#define PF_RUN_READS_MAX ((1u << 14) - 1)
/* A run's skips are compared in units of 16 KiB (tar's steps over members
 * of one size differ by a 10 KiB record); a skip of more than
 * PF_RUN_SKIP_UNITS_MAX units is not compared. */
#define PF_RUN_SKIP_UNIT ((off64_t)16 * 1024)
#define PF_RUN_SKIP_UNITS_MAX 255
#define PF_RUN_ALIKE_MAX 3u

/* A run of reads, each where the last ended or a short skip past it; or,
 * backward, each a short way before the last. */
struct pf_run {
	off64_t next_off; /* where its next read is expected, -1 unknown */
	uint32_t last_len; /* bytes of its last read */
	uint16_t reads : 14; /* reads in it, up to PF_RUN_READS_MAX */
	uint16_t alike : 2;  /* skips in a row alike the one before, up to PF_RUN_ALIKE_MAX */
	uint8_t flags;    /* enum pf_run_flags */
	uint8_t skip;     /* its last skip forward, in PF_RUN_SKIP_UNITs; 0 none */
};

struct pf_stream;

/* Every descriptor a program reads has one, idle or not: keep it small
 * (96 bytes; tests/invariants.bats holds 10,000 of them under 128 each). */
struct pf_fd {
	pthread_mutex_t lock;     /* all-zero is PTHREAD_MUTEX_INITIALIZER in glibc */
	uint8_t state;            /* enum pf_fd_state */
	uint8_t flags;            /* enum pf_fd_flags */
	uint32_t bypass_left;     /* PF_FD_CACHED: bytes until the next cache check (<= window) */
	/* The reads of the current position; while streaming, of those no
	 * stream serves. Watching, other holds the previous position's, so
	 * that two positions read in turn (a merge, cmp) each keep a run. */
	struct pf_run run, other;
	struct pf_stream *stream; /* PF_FD_STREAMING only */
	struct pf_stream *stream2; /* a second position's stream, or NULL */
};

_Static_assert(sizeof(struct pf_fd) <= 96, "a descriptor slot grew: idle descriptors cost more");

/* The slot of fd, or NULL when fd is out of range or its page does not exist. */
struct pf_fd *pf_fd_find(int fd);

/* Like pf_fd_find, but allocates the page; NULL only when fd is out of range
 * or memory is short (the caller then passes the call through). */
struct pf_fd *pf_fd_get(int fd);

/* Calls fn for every slot of every allocated page whose number is in
 * [first, last]. No lock is taken. */
void pf_fd_for_each(unsigned first, unsigned last,
		    void (*fn)(int fd, struct pf_fd *slot, void *arg), void *arg);

#endif
