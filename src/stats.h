/* Process-wide statistics, updated with relaxed atomics and reported at exit
 * when PREFETCH_STATS is set. The report is one line of key=value pairs:
 *
 *   libprefetch: pid=N prog=NAME files_prefetched=N bytes_served=N
 *     bytes_sync=N bytes_fetched=N bytes_wasted=N wait_us=N peak_memory=N
 *     streams_dropped=N cached_skips=N errors_forwarded=N worker_reads=N
 *     mmap_mappings=N mmap_bytes_populated=N mmap_bytes_cached=N
 *     block_device_skips=N mmap_mappings_cached=N streams_uncached=N
 */
#ifndef PF_STATS_H
#define PF_STATS_H

#include <stdint.h>

struct pf_stats {
	uint64_t files_prefetched;  /* descriptors that engaged the engine */
	uint64_t bytes_served;      /* bytes copied to the program from buffers */
	uint64_t bytes_sync;        /* bytes the program read from the kernel itself */
	uint64_t bytes_fetched;     /* bytes the workers read ahead */
	uint64_t bytes_wasted;      /* fetched, then dropped unread */
	uint64_t wait_ns;           /* time readers waited for data not yet there */
	uint64_t memory;            /* buffer bytes allocated now */
	uint64_t peak_memory;       /* most buffer bytes allocated at once */
	uint64_t streams_dropped;   /* streams stopped by a seek or random access */
	uint64_t cached_skips;      /* engagements skipped: data already cached */
	uint64_t errors_forwarded;  /* read errors of workers handed to the program */
	uint64_t worker_reads;      /* pread calls made by worker threads */
	uint64_t block_device_skips; /* files passed through: on a local block device */
	uint64_t mmap_mappings;     /* file mappings prefetched (PREFETCH_MMAP) */
	uint64_t mmap_bytes_populated; /* bytes of mappings read ahead */
	uint64_t mmap_bytes_cached; /* bytes of mappings found cached: not read again */
	uint64_t mmap_mappings_cached; /* mappings found cached when mapped: left alone */
	uint64_t streams_uncached;  /* streams with doubled chunks: reads bypass the page cache */
};

extern struct pf_stats pf_stats;

#define PF_STAT_ADD(field, n) \
	__atomic_add_fetch(&pf_stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

/* Accounts an allocation of buffer memory; returns 0, or -1 (nothing
 * accounted) when it would exceed the cap. */
int pf_memory_reserve(uint64_t bytes, uint64_t cap);
void pf_memory_release(uint64_t bytes);

uint64_t pf_now_ns(void);

/* Prepares the report's destination (once settings are known). */
void pf_stats_init(void);

/* Writes the report if PREFETCH_STATS asks for it (called from the destructor). */
void pf_stats_report(void);

/* In a forked child: start from zero, the parent's numbers are its own. */
void pf_stats_reset(void);

#endif
