/* The table of watched mappings, shared by mmap_prefetch.c (which fills and
 * empties it, from the program's threads) and mmap_worker.c (its workers).
 *
 * Locks: pf_mm.lock guards the table. Nothing that could take a lock of the
 * program or of an allocator (malloc, stdio, logging) runs while it is held
 * or while a worker is on a mapping, since munmap may be called with an
 * allocator's lock held and waits for both; a worker starts another
 * (pthread_create allocates) only when it is on no mapping. */
#ifndef PF_MMAP_TABLE_H
#define PF_MMAP_TABLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PF_MMAP_SLOTS          64u
#define PF_MMAP_MIN_CHUNKS     4u                   /* smaller mappings are not tracked */
#define PF_MMAP_ENGAGE_CHUNKS  2u                   /* progress seen before reading ahead */
#define PF_MMAP_ADVISE_STEP    ((size_t)128 * 1024) /* one MADV_WILLNEED */
#define PF_MMAP_MAX_WORKERS    12u                  /* and at most PREFETCH_THREADS */
#define PF_MMAP_CHECK_SPAN     ((size_t)2 * 1024 * 1024) /* one mincore */
#define PF_MMAP_WARM_SAMPLES   8u                   /* pages looked at when mapped */
#define PF_MMAP_WARM_BYTES_PER_NS 1.0                /* 1 GB/s */
#define PF_MMAP_PROBE_PAGES    4096u                /* pagemap entries per probe */
#define PF_MMAP_GAP_PAGES      32u                  /* largest hole in a sequential run */
#define PF_MMAP_WORKER_STACK   ((size_t)64 * 1024)

#define PF_MMAP_MS ((uint64_t)1000000)
#define PF_MMAP_POLL_FIRST_NS   (2 * PF_MMAP_MS)    /* a new mapping, a mapping being read */
#define PF_MMAP_POLL_MIN_NS     (1 * PF_MMAP_MS)
#define PF_MMAP_POLL_ACTIVE_NS  (20 * PF_MMAP_MS)   /* longest wait while the program advances */
#define PF_MMAP_POLL_IDLE_NS    (250 * PF_MMAP_MS)  /* longest wait while nothing moves */
#define PF_MMAP_POLL_ASLEEP_NS  (1000 * PF_MMAP_MS) /* ... and after PF_MMAP_ASLEEP_NS of that */
#define PF_MMAP_ASLEEP_NS       (5000 * PF_MMAP_MS)
#define PF_MMAP_IDLE_RELEASE_NS (1000 * PF_MMAP_MS)
#define PF_MMAP_SLOW_STEP_NS    (1 * PF_MMAP_MS)    /* a step that blocked: one more worker */

enum map_state { MAP_FREE = 0, MAP_WATCHING, MAP_ENGAGED, MAP_RANDOM };

/* Advice waiting for the thread, which alone changes a mapping's state. */
enum map_advice { ADV_NONE = 0, ADV_NORMAL, ADV_SEQUENTIAL, ADV_WILLNEED, ADV_RANDOM, ADV_STOP };

struct pf_map {
	/* Set when registered; everything is guarded by pf_mm.lock. */
	uintptr_t start;
	uintptr_t shadow;      /* our own read-only mapping of the same file data */
	size_t maplen;         /* the whole mapping, for overlap tests */
	size_t datalen;        /* the part holding file data at map time, page-rounded */
	uint8_t state;         /* enum map_state; changed by the workers only */
	uint8_t advice;        /* enum map_advice; set by hooks */
	bool dead;             /* being unmapped: never touch it again */
	bool stop;             /* done with: freed once no worker is on it */
	bool probing;          /* a worker reads its pagemap entries, pf_mm.lock not held */
	unsigned busy;         /* workers in a madvise on it, pf_mm.lock not held */
	bool seq_advice;
	bool mincore_ok;       /* mincore() on it tells the page cache's truth */
	bool checking;         /* a worker is in mincore on it, pf_mm.lock not held */
	bool cached_run;       /* the last check found cached data */
	size_t pos;            /* the program has reached this far (bytes from start) */
	size_t ahead;          /* read ahead (or claimed by a worker) up to here */
	size_t target;         /* read ahead up to here before the next probe */
	size_t depth;          /* the current window */
	size_t seen;           /* dense progress seen while watching */
	uint64_t charged;      /* reserved against PREFETCH_MAX_MEMORY: max(0, ahead - pos) */
	uint64_t next_poll, interval, last_poll, last_progress;
	double rate;           /* bytes per ns, at the last progress */
};

struct pf_mmap_table {
	pthread_mutex_t lock;
	pthread_cond_t work;     /* a mapping was added, advised or probed (CLOCK_MONOTONIC) */
	pthread_cond_t idle;     /* a worker left a mapping, or setup finished */
	int worker;              /* 0 not set up, 2 being set up, 1 running, -1 cannot run */
	unsigned nworkers;       /* worker threads started */
	unsigned max_workers;    /* min(PREFETCH_THREADS, PF_MMAP_MAX_WORKERS) */
	unsigned idle_workers;   /* waiting for work */
	bool spawning;           /* a worker is starting another */
	unsigned starting;       /* workers created that have not reached worker_main */
	bool probe_busy;         /* the workers' probe buffer is in use */
	bool no_populate;        /* MADV_POPULATE_READ is not there (Linux < 5.14) */
	unsigned rr;             /* round robin start of the workers' scan */
	size_t page_size;        /* set before the first mapping is registered */
	struct pf_map maps[PF_MMAP_SLOTS];
};

extern struct pf_mmap_table pf_mm;

/* --- mmap_prefetch.c (pf_mm.lock held) --- */

/* Gives back the memory read ahead of the program, and stops stepping. */
void pf_mmap_release_ahead(struct pf_map *m);

/* Frees a slot no worker is on: a plain system call, no allocator, so it
 * may run inside the program's munmap. */
void pf_mmap_slot_free(struct pf_map *m);

/* Frees a mapping the workers are done with, once none is on it. */
void pf_mmap_maybe_free(struct pf_map *m);

/* --- mmap_worker.c --- */

/* Starts the first worker if needed (pf_mm.lock held, dropped meanwhile).
 * True when the workers run. */
bool pf_mmap_workers_running(void);

#endif
