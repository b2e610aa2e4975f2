/* Settings from PREFETCH_* environment variables, read once and cached. */
#ifndef PF_SETTINGS_H
#define PF_SETTINGS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define PF_KIB ((size_t)1024)
#define PF_MIB (1024 * PF_KIB)
#define PF_GIB (1024 * PF_MIB)

/* A window fits in 32 bits: pf_fd.bypass_left counts down one. */
#define PF_WINDOW_DEFAULT      (8 * PF_MIB)
#define PF_WINDOW_MIN          (64 * PF_KIB)
#define PF_WINDOW_MAX          (1 * PF_GIB)
#define PF_CHUNK_DEFAULT       (256 * PF_KIB)
#define PF_CHUNK_MIN           (4 * PF_KIB)
#define PF_CHUNK_MAX           (64 * PF_MIB)
#define PF_THREADS_DEFAULT     16
#define PF_THREADS_MIN         1
#define PF_THREADS_MAX         64
#define PF_MAX_MEMORY_DEFAULT  (128 * PF_MIB)
#define PF_MAX_MEMORY_MIN      (64 * PF_KIB)
#define PF_MAX_MEMORY_MAX      ((size_t)64 * PF_GIB)
#define PF_MIN_SEQUENTIAL_DEFAULT 3
#define PF_MIN_SEQUENTIAL_MIN  1
#define PF_MIN_SEQUENTIAL_MAX  1000
#define PF_MMAP_DEFAULT        true
#define PF_SHARED_BUDGET_DEFAULT true
#define PF_PARALLEL_AUTO       (-1)

struct pf_settings {
	bool disabled;             /* PREFETCH_DISABLE: loaded, but pure pass-through */
	size_t window;             /* PREFETCH_WINDOW: bytes read ahead per descriptor */
	size_t chunk;              /* PREFETCH_CHUNK: size of one background read */
	unsigned threads;          /* PREFETCH_THREADS: worker pool size */
	size_t max_memory;         /* PREFETCH_MAX_MEMORY: cap on all buffers */
	unsigned min_sequential;   /* PREFETCH_MIN_SEQUENTIAL: reads before engaging */
	bool skip_cached;          /* PREFETCH_SKIP_CACHED: pass through cached data */
	bool block_devices;        /* PREFETCH_BLOCK_DEVICES: prefetch on local disks too */
	int stats;                 /* 0 off, 1 stderr, 2 file (stats_path) */
	char stats_path[PATH_MAX];
	int debug;                 /* PREFETCH_DEBUG level */
	bool mmap;                 /* PREFETCH_MMAP: prefetch behind read-only file mappings */
	int parallel;              /* PREFETCH_PARALLEL: 1, 0 (in order) or PF_PARALLEL_AUTO */
	bool files;                /* PREFETCH_FILES: fetch predicted files before their open */
	bool shared_budget;        /* PREFETCH_SHARED_BUDGET: one budget for the user's processes */
};

/* Reads the environment on first use (thread-safe), then returns the cache. */
const struct pf_settings *pf_settings(void);

/* Parses "123", "64K", "8M", "1G" (binary units). Returns 0 on success. */
int pf_parse_size(const char *text, unsigned long long *out);

#endif
