/* Process-wide statistics, updated with relaxed atomics and reported at exit
 * when PREFETCH_STATS is set. The report is one line of key=value pairs:
 *
 *   libprefetch: pid=N prog=NAME files_prefetched=N bytes_served=N
 *     bytes_sync=N bytes_fetched=N bytes_wasted=N wait_us=N peak_memory=N
 *     streams_dropped=N cached_skips=N errors_forwarded=N worker_reads=N
 *     mmap_mappings=N mmap_bytes_populated=N mmap_bytes_cached=N
 *     block_device_skips=N mmap_mappings_cached=N streams_uncached=N
 *     streams_at_open=N streams_ordered=N streams_stepped_aside=N
 *     streams_sequential=N streams_skipping=N streams_landing=N streams_scanning=N
 *     streams_backward=N streams_second=N reads_split=N files_predicted=N
 *     files_predicted_opened=N files_predicted_failed=N bytes_predicted_unused=N
 *     node_memory_limited=N node_requests_limited=N parallel_reader_skips=N
 *     storage_recalled=N streams_widened=N
 */
#ifndef PF_STATS_H
#define PF_STATS_H

#include <stdint.h>

/* Every reported counter, once, in report order: X(field, report name,
 * divisor for the report). */
#define PF_STATS_REPORTED(X)                                                          \
	X(files_prefetched, "files_prefetched", 1)   /* descriptors that engaged */      \
	X(bytes_served, "bytes_served", 1)           /* copied from buffers */           \
	X(bytes_sync, "bytes_sync", 1)               /* read from the kernel by the program */ \
	X(bytes_fetched, "bytes_fetched", 1)         /* read ahead */                    \
	X(bytes_wasted, "bytes_wasted", 1)           /* read ahead, dropped unread */    \
	X(wait_ns, "wait_us", 1000)                  /* readers waiting for data */      \
	X(peak_memory, "peak_memory", 1)             /* most buffer bytes at once */     \
	X(streams_dropped, "streams_dropped", 1)     /* a seek, a change, an error */    \
	X(cached_skips, "cached_skips", 1)           /* data ahead already cached */     \
	X(errors_forwarded, "errors_forwarded", 1)   /* read errors handed over */       \
	X(worker_reads, "worker_reads", 1)           /* preads that filled buffers */    \
	X(mmap_mappings, "mmap_mappings", 1)         /* mappings read ahead */           \
	X(mmap_bytes_populated, "mmap_bytes_populated", 1)                               \
	X(mmap_bytes_cached, "mmap_bytes_cached", 1) /* found cached, not read again */  \
	X(block_device_skips, "block_device_skips", 1) /* on a local block device */     \
	X(mmap_mappings_cached, "mmap_mappings_cached", 1) /* cached when mapped */      \
	X(streams_uncached, "streams_uncached", 1)   /* doubled chunks: no page cache */ \
	X(streams_at_open, "streams_at_open", 1)     /* started at open: whole-file reader */ \
	X(streams_ordered, "streams_ordered", 1)     /* one read at a time, in order */ \
	X(streams_stepped_aside, "streams_stepped_aside", 1) /* the client reads ahead itself */ \
	X(streams_sequential, "streams_sequential", 1) /* streams by pattern followed: */ \
	X(streams_skipping, "streams_skipping", 1)   /* skips forward */              \
	X(streams_landing, "streams_landing", 1)     /* fetched around steady landings */ \
	X(streams_scanning, "streams_scanning", 1)   /* preads ahead now and then */  \
	X(streams_backward, "streams_backward", 1)   /* reads going down the file */  \
	X(streams_second, "streams_second", 1)       /* a descriptor's second position */ \
	X(reads_split, "reads_split", 1)             /* large reads split in parallel pieces */ \
	X(files_predicted, "files_predicted", 1)     /* files fetched before their open */ \
	X(files_predicted_opened, "files_predicted_opened", 1) /* then opened: hits */ \
	X(files_predicted_failed, "files_predicted_failed", 1) /* could not be fetched */ \
	X(bytes_predicted_unused, "bytes_predicted_unused", 1) /* fetched, never opened */ \
	X(node_memory_limited, "node_memory_limited", 1) /* buffers the node's cap refused */ \
	X(node_requests_limited, "node_requests_limited", 1) /* reads left: node's cap reached */ \
	X(parallel_reader_skips, "parallel_reader_skips", 1) /* the program reads in parallel itself */ \
	X(storage_recalled, "storage_recalled", 1)   /* measured by another process lately */ \
	X(streams_widened, "streams_widened", 1)     /* read in order, then measured two at once */

#define PF_STATS_FIELD(field, name, div) uint64_t field;

struct pf_stats {
	PF_STATS_REPORTED(PF_STATS_FIELD)
	uint64_t memory;            /* buffer bytes allocated now */
};

extern struct pf_stats pf_stats;

#define PF_STAT_ADD(field, n) \
	__atomic_add_fetch(&pf_stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

/* Accounts an allocation of buffer memory; returns 0, or -1 (nothing
 * accounted) when it would exceed the cap, or the budget the process's
 * memory cgroup leaves (budget.c). */
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
