/* The table of files fetched ahead, shared by fileahead.c (guesses
 * wanted and passed, adoption by the program's opens, its first reads) and
 * fileahead_fetch.c (the threads that fetch them). Guarded by pf_fa.lock. */
#ifndef PF_FILEAHEAD_TABLE_H
#define PF_FILEAHEAD_TABLE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* Files fetched or being fetched at once: bounds the waste of wrong guesses. */
#define PF_AHEAD_SLOTS 32u
/* Data fetched ahead is served at most this long after it was read: the
 * engine's bound on serving data the server did not confirm. */
#define PF_AHEAD_MAX_AGE_NS ((uint64_t)1000000000)

enum ahead_state {
	AHEAD_FREE = 0,
	AHEAD_QUEUED,   /* waiting for a thread */
	AHEAD_OPENING,  /* a thread looks it up and opens it: identity unknown */
	AHEAD_READING,  /* identity known, first window being read */
	AHEAD_READY,    /* read, closed: may be adopted */
	AHEAD_ADOPTED,  /* the program opened it as fd */
	AHEAD_FAILED,   /* not fetched (failed, too large, no memory): nothing to serve */
};

struct ahead {
	uint8_t state;        /* enum ahead_state */
	bool cancel;          /* no longer wanted: the thread fetching it frees it */
	bool whole;           /* buf holds the whole file */
	unsigned source, index;
	uint64_t seq;         /* queue order */
	int fd;               /* AHEAD_ADOPTED: the program's descriptor */
	char path[PATH_MAX];  /* absolute; set while not FREE (no malloc: freed
			       * in reads, which a signal handler may make) */
	struct stat id;       /* the file as it was fetched */
	char *buf;            /* pf_pages_alloc'd, reserved bytes */
	size_t len;           /* bytes of buf valid */
	size_t reserved;      /* accounted in pf_memory_reserve */
	uint64_t fetched_ns;
};

struct pf_ahead_table {
	pthread_mutex_t lock;
	pthread_cond_t work;  /* an entry was queued */
	pthread_cond_t done;  /* an entry left AHEAD_READING */
	struct ahead e[PF_AHEAD_SLOTS];
	uint64_t seq;
	int state;            /* 0 none started yet, 1 running, -1 unusable */
	unsigned started;     /* threads created */
	unsigned idle;        /* threads waiting for work */
};

extern struct pf_ahead_table pf_fa;

/* --- fileahead.c (pf_fa.lock held) --- */

/* Same file, unchanged: what the engine compares (file_changed). */
bool pf_ahead_same_file(const struct stat *a, const struct stat *b);

/* Frees an entry no thread works on. unused: it was fetched for nothing. */
void pf_ahead_entry_free(struct ahead *e, bool unused);

/* --- fileahead_fetch.c (pf_fa.lock held) --- */

/* Starts one more thread when more files wait than threads do. */
void pf_ahead_pool_grow(void);

#endif
