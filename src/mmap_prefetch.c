/* Prefetching behind mmap (PREFETCH_MMAP, on by default).
 *
 * A program that reads a file through a mapping blocks in page faults; the
 * kernel reads a little around each miss, one miss at a time. Here a few
 * lazily started worker threads read ahead of it instead, on distinct
 * ranges, several requests in flight, and only as far ahead as the program
 * is seen to go.
 *
 * Which mappings: PROT_READ without PROT_WRITE, not anonymous, of a regular
 * file on a real filesystem not backed by a local block device (unless
 * PREFETCH_BLOCK_DEVICES=1), holding at least PF_MMAP_MIN_CHUNKS chunks of
 * file data. At most PF_MMAP_SLOTS at once. Mappings the dynamic loader makes
 * never reach the hook (it calls the kernel directly).
 *
 * How the program's progress is seen: /proc/self/pagemap. A page is "present"
 * there when it is mapped in this process's page tables, which for the
 * program's mapping happens when the program faults on it (with the kernel's
 * fault-around, up to 64 KiB at once). The workers never touch the program's
 * mapping: the hook makes a second, private read-only mapping of the same
 * file data (the shadow, MADV_DONTFORK), and the workers read ahead in that
 * one. So the present bits of the program's mapping remain its own
 * footprint: the highest present page past the last known position is how
 * far it got. mincore() cannot tell this: it reports page-cache residency,
 * which our own reading ahead sets. One probe is one pread of at most
 * PF_MMAP_PROBE_PAGES entries (8 bytes each), at most once per millisecond
 * per mapping, less when nothing moves; one probe at a time.
 *
 * How a worker reads ahead: one step is PF_MMAP_ADVISE_STEP (128 KiB, one
 * FUSE request) of the shadow: MADV_WILLNEED (sends the read), then
 * MADV_POPULATE_READ (waits until the data is there, and reads it itself if
 * the kernel dropped the readahead), then MADV_DONTNEED (unmaps it from the
 * shadow again; the page cache keeps it, the process's RSS does not grow).
 * Steps are claimed under the lock in file order, so workers read distinct
 * ranges nearest the program first. A worker whose step blocked
 * PF_MMAP_SLOW_STEP_NS while more steps wait and none is idle starts
 * another, up to min(PREFETCH_THREADS, PF_MMAP_MAX_WORKERS): on a local
 * disk or a warm cache one worker mostly stays alone. With fewer than
 * PF_MMAP_MAX_WORKERS allowed, a worker takes several steps at once
 * (WILLNEED each, then one POPULATE_READ), to keep as many reads in flight.
 * Without MADV_POPULATE_READ (Linux < 5.14), WILLNEED alone.
 *
 * Data already cached is not read again: before stepping, one worker at a
 * time per mapping asks mincore() how much of what is next is in the page
 * cache (one step's worth, or PF_MMAP_CHECK_SPAN after a cached one) and
 * skips it (mmap_bytes_cached). Only where mincore tells the truth: files
 * of the caller, or root; elsewhere every step is taken. And when a probe
 * finds that the program went past all that was read ahead at more than
 * PF_MMAP_WARM_BYTES_PER_NS, it reads from the page cache: no steps, and
 * probes every PF_MMAP_POLL_ACTIVE_NS, until it slows down.
 *
 * Why so, measured on slowfs (FUSE, 5 ms per request, 16 server threads;
 * Linux 6.18), a program faulting through a 64 MiB mapping while threads
 * read a window ahead of it:
 *   - One thread issuing MADV_WILLNEED (the previous design): 75-110 MB/s.
 *     WILLNEED returns once the requests are queued, and FUSE drops
 *     readahead while its background queue is congested (num_background >=
 *     congestion_threshold, 9 of max_background 12) and the file's readahead
 *     state says the pages are only "async": the program's own faults set
 *     that state, so most of a window advised in a burst was dropped and
 *     the program then faulted it in itself, 1-2 requests in flight.
 *     Raising congestion_threshold to 12 took 4 WILLNEED threads from
 *     163-195 to 279-281 MB/s (1 thread stayed at ~100).
 *   - WILLNEED of more than 128 KiB per call: the kernel reads only the
 *     first max(read_ahead_kb, io size) of it; 512 KiB steps: 39 MB/s.
 *   - pread() from several threads: 8: 173, 16: 230-278 MB/s, but it needs
 *     a descriptor of the program's file and does not fill the page cache
 *     of a direct_io file (MAP_PRIVATE mappings of those use it).
 *   - MADV_POPULATE_READ alone: 8 threads 158-162, 16 threads 243-270 MB/s
 *     (a fault reads around the faulting page: two 64 KiB requests per
 *     step).
 *   - WILLNEED + POPULATE_READ per step, K threads: K x 128 KiB / 5 ms up to
 *     FUSE's max_background: 4: 95, 8: 188, 12: 279, 16: 278 MB/s; the same
 *     with direct_io and MAP_PRIVATE. Hence 12 workers at most.
 * The whole scan (tests/helpers/mmap_scan, 8 x 64 MiB, 1 thread; see
 * docs/benchmarks.md): slowfs 5 ms 11.2 s without the library, 5.7 s with
 * the previous design, 2.4 s with this one (read() with 8 threads and no
 * library: 2.4 s); with direct_io 11.2 / 5.7 / 2.5 s (read(): 2.7 s).
 * Descriptors: the program's table holds none of ours. Each worker starts
 * with close_range(CLOSE_RANGE_UNSHARE) over every number, which gives it a
 * private, empty table (no copy of the program's descriptors, so no pipe's
 * write end held), and opens pagemap there. The program's numbers and its
 * EMFILE point are its own, and a fork or exec of the program copies or
 * keeps none of them. The hook needs no descriptor of its own: the shadow
 * is mapped from the program's descriptor, in the program's thread.
 *
 * A mapping whose data is in the page cache when it is made, by a sample
 * of its pages (cached_when_mapped), is left alone: no shadow, pagemap or
 * thread. Watching every mapping cost a warm scan 1.5-2 ms per process
 * (6-9%); sampling with mincore() still cost +2.0% with 1 thread and +5.7%
 * with 8; sampling with RWF_NOWAIT reads, -0.1% and -1.0% (200 and 150
 * alternated runs, scan clock).
 *
 * Engagement: after PF_MMAP_ENGAGE_CHUNKS chunks of forward progress (a run
 * of present pages from where the program was, holes of at most
 * PF_MMAP_GAP_PAGES), or at once after MADV_SEQUENTIAL. Random access makes
 * no such run and never engages. The window then starts at two chunks and
 * doubles with each progress seen, up to PREFETCH_WINDOW. Bytes read ahead
 * and not yet reached by the program count against PREFETCH_MAX_MEMORY
 * (pf_memory_reserve), as the engine's buffers do; a mapping the program
 * stops reading releases them after PF_MMAP_IDLE_RELEASE_NS.
 *
 * Unmapping: munmap, mremap and MAP_FIXED call pf_mmap_unmapping() first. It
 * marks the mappings in the range dead (and those whose shadow it meets),
 * waits until no worker is in a call on them (each is in one step, one
 * mincore or one pagemap read: the wait is one step at most), and unmaps
 * their shadows. The workers only make system calls on the
 * shadow, which is theirs, and never touch memory, so neither the program's
 * unmapping nor its mprotect can make them fault. An error of a step (the
 * file shrank: EFAULT; an IO error) drops the mapping; the program sees the
 * error itself, as without the library.
 *
 * Locks: mm.lock guards the table. Nothing that could take a lock of the
 * program or of an allocator (malloc, stdio, logging) runs while it is held
 * or while a worker is on a mapping, since munmap may be called with an
 * allocator's lock held and waits for both; a worker starts another
 * (pthread_create allocates) only when it is on no mapping. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "libc.h"
#include "log.h"
#include "mmap_prefetch.h"
#include "pagecache.h"
#include "storage.h"
#include "thread.h"
#include "settings.h"
#include "stats.h"

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

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

#define MS ((uint64_t)1000000)
#define PF_MMAP_POLL_FIRST_NS   (2 * MS)    /* a new mapping, a mapping being read */
#define PF_MMAP_POLL_MIN_NS     (1 * MS)
#define PF_MMAP_POLL_ACTIVE_NS  (20 * MS)   /* longest wait while the program advances */
#define PF_MMAP_POLL_IDLE_NS    (250 * MS)  /* longest wait while nothing moves */
#define PF_MMAP_POLL_ASLEEP_NS  (1000 * MS) /* ... and after PF_MMAP_ASLEEP_NS of that */
#define PF_MMAP_ASLEEP_NS       (5000 * MS)
#define PF_MMAP_IDLE_RELEASE_NS (1000 * MS)
#define PF_MMAP_SLOW_STEP_NS    (1 * MS)    /* a step that blocked: one more worker */

#define PM_PRESENT ((uint64_t)1 << 63)

enum map_state { MAP_FREE = 0, MAP_WATCHING, MAP_ENGAGED, MAP_RANDOM };

/* Advice waiting for the thread, which alone changes a mapping's state. */
enum map_advice { ADV_NONE = 0, ADV_NORMAL, ADV_SEQUENTIAL, ADV_WILLNEED, ADV_RANDOM, ADV_STOP };

struct pf_map {
	/* Set when registered; everything is guarded by mm.lock. */
	uintptr_t start;
	uintptr_t shadow;      /* our own read-only mapping of the same file data */
	size_t maplen;         /* the whole mapping, for overlap tests */
	size_t datalen;        /* the part holding file data at map time, page-rounded */
	uint8_t state;         /* enum map_state; changed by the workers only */
	uint8_t advice;        /* enum map_advice; set by hooks */
	bool dead;             /* being unmapped: never touch it again */
	bool stop;             /* done with: freed once no worker is on it */
	bool probing;          /* a worker reads its pagemap entries, mm.lock not held */
	unsigned busy;         /* workers in a madvise on it, mm.lock not held */
	bool seq_advice;
	bool mincore_ok;       /* mincore() on it tells the page cache's truth */
	bool checking;         /* a worker is in mincore on it, mm.lock not held */
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

unsigned pf_mmap_tracked;

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;     /* a mapping was added, advised or probed (CLOCK_MONOTONIC) */
	pthread_cond_t idle;     /* a worker left a mapping, or setup finished */
	int worker;              /* 0 not set up, 2 being set up, 1 running, -1 cannot run */
	unsigned nworkers;       /* worker threads started */
	unsigned max_workers;    /* min(PREFETCH_THREADS, PF_MMAP_MAX_WORKERS) */
	unsigned idle_workers;   /* waiting for work */
	bool spawning;           /* a worker is starting another */
	unsigned starting;       /* workers created that have not reached worker_main */
	bool probe_busy;         /* probe_buf is in use */
	bool no_populate;        /* MADV_POPULATE_READ is not there (Linux < 5.14) */
	unsigned rr;             /* round robin start of the workers' scan */
	struct pf_map maps[PF_MMAP_SLOTS];
} mm = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static size_t page_size;
/* The workers' only buffer, one probe at a time (mm.probe_busy): static,
 * so no worker allocates while it works on a mapping. */
static uint64_t probe_buf[PF_MMAP_PROBE_PAGES];

/* --- fork ----------------------------------------------------------------------- */

/* Holds the table, once no worker is being started: from pthread_create
 * until it reaches worker_main, a thread start allocates (glibc's TLS, a
 * sanitizer runtime's thread set-up). glibc's malloc is made safe for fork;
 * gcc 12's ASan allocator is not: a fork then left the child an allocator
 * lock held for ever, and the child hung in its next malloc (seen: its own
 * worker's start, and LeakSanitizer at exit). A thread start needs no lock
 * the forking thread could hold, so the wait ends. */
void pf_mmap_atfork_prepare(void)
{
	pthread_mutex_lock(&mm.lock);
	while (mm.starting || mm.spawning || mm.worker == 2)
		pthread_cond_wait(&mm.idle, &mm.lock);
}

void pf_mmap_atfork_parent(void)
{
	pthread_mutex_unlock(&mm.lock);
}

static void init_conds(void)
{
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&mm.work, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&mm.idle, NULL);
}

/* The child has no workers and its own page tables: it forgets every mapping
 * (their reservations went with the engine's pf_stats_reset) and starts
 * again on its next mmap. The workers' pagemap descriptors were in their
 * own tables: the child has none of them. */
void pf_mmap_atfork_child(void)
{
	init_conds();
	memset(mm.maps, 0, sizeof(mm.maps));
	mm.nworkers = mm.idle_workers = 0;
	mm.spawning = mm.probe_busy = false; /* no_populate stays true if it was */
	mm.starting = 0;
	__atomic_store_n(&pf_mmap_tracked, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&mm.worker, 0, __ATOMIC_RELAXED);
	/* Locked by pf_mmap_atfork_prepare, in this very thread. */
	pthread_mutex_unlock(&mm.lock);
}

static void init_once_fn(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	page_size = ps > 0 ? (size_t)ps : 4096;
	init_conds();
}

/* --- candidates ------------------------------------------------------------------- */

/* The bytes of file data the mapping holds, or 0 if it is not a candidate.
 * As for read(), files on a local block device are left to the kernel
 * unless PREFETCH_BLOCK_DEVICES=1: its read-around of up to read_ahead_kb
 * per fault keeps up there, and steps of the workers between its windows
 * break its chain of asynchronous readahead. On the cold scan (30
 * alternated runs) the workers made the median 8% faster but the mean 5%
 * slower: a third of the runs took 0.4-0.6 s against 0.3 s.
 * *truthful: mincore() tells page-cache residency of mappings of this file:
 * since Linux 5.2 only for its owner, CAP_FOWNER or who may write it;
 * anyone else is told every page is resident. Owner or root is checked. */
/* Storage that serves a handle as one sequential stream (PREFETCH_PARALLEL,
 * or the storage's kind): the workers' steps, out of order with the
 * program's faults, would each cost it a wait and a new request (rclone:
 * a 64 MiB scan 10x slower). The kernel's own readahead stays in order. */
static bool one_stream(const struct stat *st)
{
	int parallel = pf_settings()->parallel;
	return parallel == 0 ||
	       (parallel == PF_PARALLEL_AUTO && PF_STORAGE_ONE_STREAM(pf_storage_mode(st->st_dev)));
}

static size_t file_extent(int fd, off64_t off, size_t len, bool *truthful)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || pf_excluded_file(&st) || st.st_size <= off || one_stream(&st))
		return 0;
	uid_t euid = geteuid();
	*truthful = euid == 0 || st.st_uid == euid;
	uint64_t data = (uint64_t)(st.st_size - off);
	return data < len ? (size_t)data : len;
}

/* The file is on a filesystem whose data is not read from storage (procfs,
 * hugetlbfs...). Asked only of mappings about to be watched: fstatfs() is a
 * round trip to the server on FUSE (40 us on slowfs) and on NFS. */
static bool on_pseudo_filesystem(int fd)
{
	struct statfs fs;
	return fstatfs(fd, &fs) != 0 || pf_pseudo_filesystem((long)fs.f_type);
}

/* One page of the file, at off in it and at addr in the program's mapping,
 * is in the page cache. Asked of the page cache itself (pf_byte_cached)
 * where the kernel tells, without the process's mmap_lock, which mincore()
 * takes and which threads mapping and faulting at once contend on (about
 * 12 us a mincore in a warm 8-thread scan, against 1.5 us alone; on slowfs
 * with the data cached, 8 threads, 150 alternated runs: +1.9% with
 * cachestat, +4.1% with mincore, +2.6% with PREFETCH_MMAP=0). Else
 * mincore(), which since Linux 5.2 tells the truth only to the file's owner
 * or writers (truthful: owner or root). */
static bool page_cached(int fd, off64_t off, void *addr, bool truthful)
{
	int cached = pf_byte_cached(fd, off);
	if (cached >= 0)
		return cached;
	unsigned char vec;
	return truthful && mincore(addr, page_size, &vec) == 0 && (vec & 1);
}

/* The mapping's data is in the page cache, by PF_MMAP_WARM_SAMPLES pages
 * spread over it (the first and last among them: a reader of a header and
 * a footer has not read the middle). Such a mapping is left alone: no
 * shadow, no pagemap, no thread. A mapping cached in part is watched, and
 * its workers skip what is cached as they go. */
static bool cached_when_mapped(int fd, off64_t off, void *addr, size_t data, bool truthful)
{
	size_t pages = data / page_size;
	for (unsigned i = 0; i < PF_MMAP_WARM_SAMPLES; i++) {
		size_t pg = (pages - 1) * i / (PF_MMAP_WARM_SAMPLES - 1);
		if (!page_cached(fd, off + (off64_t)(pg * page_size), (char *)addr + pg * page_size,
				 truthful))
			return false;
	}
	return true;
}

/* --- setup (program threads, mm.lock not held) -------------------------------------- */

static void *worker_main(void *unused);

/* Starts one worker thread, with every signal blocked: like the engine's
 * workers, the program's signals are its own. Called with mm.lock not held
 * and no mapping busy: pthread_create may allocate. */
static bool spawn_worker(void)
{
	return pf_thread_start(worker_main, PF_MMAP_WORKER_STACK) == 0;
}

/* Starts the first worker if needed (mm.lock held; dropped and retaken
 * around pthread_create, which only this thread then does: worker is 2
 * meanwhile). Returns true when it runs (or, if it cannot open pagemap, it
 * will drop every mapping: worker_failed). More workers are started by the
 * workers, when steps block (do_step). */
static bool setup_locked(void)
{
	while (mm.worker == 2)
		pthread_cond_wait(&mm.idle, &mm.lock);
	if (mm.worker != 0)
		return mm.worker > 0;
	/* A fork waits while worker is 2 (pf_mmap_atfork_prepare): none
	 * from a signal handler of this thread meanwhile. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	__atomic_store_n(&mm.worker, 2, __ATOMIC_RELAXED);
	mm.nworkers = 1; /* before it runs: it counts itself out if it fails */
	mm.starting++;
	pthread_mutex_unlock(&mm.lock);
	bool ok = spawn_worker();
	pthread_mutex_lock(&mm.lock);
	if (!ok) {
		mm.nworkers = 0;
		mm.starting--;
	}
	unsigned t = pf_settings()->threads;
	mm.max_workers = t < PF_MMAP_MAX_WORKERS ? (t ? t : 1) : PF_MMAP_MAX_WORKERS;
	/* Unless the worker failed already (worker_failed set it to -1). */
	if (mm.worker == 2)
		__atomic_store_n(&mm.worker, ok ? 1 : -1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&mm.idle);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return mm.worker > 0;
}

/* --- the table (mm.lock held) ------------------------------------------------------- */

static void release_ahead(struct pf_map *m)
{
	if (m->charged)
		pf_memory_release(m->charged);
	m->charged = 0;
	if (m->ahead > m->pos)
		m->ahead = m->pos;
	m->target = m->ahead; /* no more steps until the next probe */
}

/* Frees a slot no worker is on (mm.lock held): a plain system call, no
 * allocator, so it may run inside the program's munmap. */
static void slot_free(struct pf_map *m)
{
	release_ahead(m);
	if (m->shadow)
		pf_libc.munmap((void *)m->shadow, m->datalen);
	memset(m, 0, sizeof(*m));
	__atomic_sub_fetch(&pf_mmap_tracked, 1, __ATOMIC_RELAXED);
}

/* The range meets the program's mapping, or our shadow of it (which only
 * a confused program would unmap or map over: let it, safely). */
static bool overlaps(const struct pf_map *m, uintptr_t from, size_t len)
{
	return m->state != MAP_FREE &&
	       ((from < m->start + m->maplen && m->start < from + len) ||
		(from < m->shadow + m->datalen && m->shadow < from + len));
}

/* --- hooks' entry points -------------------------------------------------------------- */

void pf_mmap_mapped(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	const struct pf_settings *cfg = pf_settings();
	if (!cfg->mmap || (prot & (PROT_READ | PROT_WRITE)) != PROT_READ ||
	    (flags & MAP_ANONYMOUS) || fd < 0 || len < PF_MMAP_MIN_CHUNKS * cfg->chunk ||
	    __atomic_load_n(&mm.worker, __ATOMIC_RELAXED) < 0 ||
	    __atomic_load_n(&pf_mmap_tracked, __ATOMIC_RELAXED) >= PF_MMAP_SLOTS)
		return;
	int saved = errno;
	pf_in_library = 1;
	pthread_once(&init_once, init_once_fn);
	bool truthful = false;
	size_t data = file_extent(fd, off, len, &truthful);
	if (data < PF_MMAP_MIN_CHUNKS * cfg->chunk)
		goto out;
	data = (data + page_size - 1) & ~(page_size - 1);
	if (cached_when_mapped(fd, off, addr, data, truthful)) {
		PF_STAT_ADD(mmap_mappings_cached, 1);
		PF_LOG(PF_LOG_TRACE, "fd %d: mapping of %zu bytes is in the page cache", fd, data);
		goto out;
	}
	if (on_pseudo_filesystem(fd))
		goto out;
	/* The workers' own view of the same file data: they read ahead by
	 * faulting it in there, never touching the program's mapping, whose
	 * page table entries stay the program's own footprint. */
	void *shadow = pf_libc.mmap(NULL, data, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, fd,
				    (off_t)off);
	if (shadow == MAP_FAILED)
		goto out;
	pf_libc.madvise(shadow, data, MADV_DONTFORK); /* a child starts afresh */

	pthread_mutex_lock(&mm.lock);
	struct pf_map *m = NULL;
	if (setup_locked()) {
		for (unsigned i = 0; i < PF_MMAP_SLOTS && !m; i++)
			if (mm.maps[i].state == MAP_FREE)
				m = &mm.maps[i];
	}
	if (m) {
		uint64_t now = pf_now_ns();
		memset(m, 0, sizeof(*m));
		m->start = (uintptr_t)addr;
		m->shadow = (uintptr_t)shadow;
		m->mincore_ok = truthful;
		m->maplen = len;
		m->datalen = data;
		m->state = MAP_WATCHING;
		m->interval = PF_MMAP_POLL_FIRST_NS;
		m->next_poll = now + PF_MMAP_POLL_FIRST_NS;
		m->last_poll = m->last_progress = now;
		__atomic_add_fetch(&pf_mmap_tracked, 1, __ATOMIC_RELAXED);
		pthread_cond_signal(&mm.work);
	}
	pthread_mutex_unlock(&mm.lock);
	if (!m)
		pf_libc.munmap(shadow, data);
	if (m)
		PF_LOG(PF_LOG_INFO, "fd %d: watching a mapping of %zu bytes at %p", fd, data, addr);
	else
		PF_LOG(PF_LOG_TRACE, "fd %d: mapping not watched (no slot or no worker)", fd);
out:
	pf_in_library = 0;
	errno = saved;
}

void pf_mmap_unmapping(void *addr, size_t len)
{
	int saved = errno;
	pf_in_library = 1;
	uintptr_t from = (uintptr_t)addr;
	pthread_mutex_lock(&mm.lock);
	for (;;) {
		bool wait = false;
		for (unsigned i = 0; i < PF_MMAP_SLOTS; i++) {
			struct pf_map *m = &mm.maps[i];
			if (!overlaps(m, from, len))
				continue;
			m->dead = true;
			if (m->busy || m->probing)
				wait = true;
			else
				slot_free(m);
		}
		if (!wait)
			break;
		/* Each worker on it is in one step, one mincore or one pread of
		 * pagemap. */
		pthread_cond_wait(&mm.idle, &mm.lock);
	}
	pthread_mutex_unlock(&mm.lock);
	pf_in_library = 0;
	errno = saved;
}

/* Advice applies to the whole of each mapping it touches: a program that
 * gives different advice for parts of one mapping gets the last one. */
void pf_mmap_advised(void *addr, size_t len, int advice)
{
	uint8_t a;
	switch (advice) {
	case MADV_NORMAL: a = ADV_NORMAL; break;
	case MADV_SEQUENTIAL: a = ADV_SEQUENTIAL; break;
	case MADV_WILLNEED: a = ADV_WILLNEED; break;
	case MADV_RANDOM: a = ADV_RANDOM; break;
	/* The program drops or pages out the data: stop reading it back in. */
	case MADV_DONTNEED: case MADV_FREE: case MADV_REMOVE: case MADV_COLD:
	case MADV_PAGEOUT: a = ADV_STOP; break;
	default: return;
	}
	int saved = errno;
	pf_in_library = 1;
	uintptr_t from = (uintptr_t)addr;
	bool any = false;
	pthread_mutex_lock(&mm.lock);
	for (unsigned i = 0; i < PF_MMAP_SLOTS; i++) {
		struct pf_map *m = &mm.maps[i];
		if (!overlaps(m, from, len) || m->advice == ADV_STOP)
			continue;
		m->advice = a;
		any = true;
	}
	if (any)
		pthread_cond_signal(&mm.work);
	pthread_mutex_unlock(&mm.lock);
	pf_in_library = 0;
	errno = saved;
}

/* --- the workers (mm.lock held unless said otherwise) ----------------------------------- */

/* Frees a mapping the workers are done with, once none is on it. */
static void maybe_free(struct pf_map *m)
{
	if (m->stop && !m->dead && !m->busy && !m->probing)
		slot_free(m);
}

/* Applies the program's advice (not probing). False when the mapping is
 * to be dropped. */
static bool apply_advice(struct pf_map *m, uint64_t now)
{
	uint8_t a = m->advice;
	m->advice = ADV_NONE;
	switch (a) {
	case ADV_STOP:
		release_ahead(m);
		m->stop = true;
		maybe_free(m);
		return false;
	case ADV_RANDOM:
		release_ahead(m);
		m->state = MAP_RANDOM;
		return true;
	case ADV_NORMAL:
	case ADV_SEQUENTIAL:
		if (m->state == MAP_RANDOM) {
			m->state = MAP_WATCHING;
			m->seen = 0;
		}
		m->seq_advice = a == ADV_SEQUENTIAL;
		break;
	default:
		break;
	}
	/* Look at it now: the program is about to read, or said how. */
	m->next_poll = now;
	m->interval = PF_MMAP_POLL_FIRST_NS;
	return true;
}

static uint64_t clamp_ns(double ns, uint64_t lo, uint64_t hi)
{
	if (!(ns >= (double)lo))
		return lo;
	return ns > (double)hi ? hi : (uint64_t)ns;
}

/* The program's frontier in probe_buf: the end of the run of present
 * pages that starts at its first entry, with gaps of at most
 * PF_MMAP_GAP_PAGES (faults map 64 KiB blocks; a reader may skip a little).
 * Present pages past a longer gap are not progress: a footer read first,
 * random access. */
static size_t frontier_pages(size_t npages)
{
	size_t frontier = 0, gap = 0;
	for (size_t i = 0; i < npages; i++) {
		if (probe_buf[i] & PM_PRESENT) {
			frontier = i + 1;
			gap = 0;
		} else if (++gap > PF_MMAP_GAP_PAGES) {
			break;
		}
	}
	return frontier;
}

/* What a probe saw: the program went `advanced` bytes past pos. Releases
 * what it consumed, engages, sizes the window and sets the next probe. */
static void probe_apply(struct pf_map *m, const struct pf_settings *cfg, size_t advanced,
			uint64_t now)
{
	bool progress = advanced > 0;
	/* The program went past all that was read ahead, faster than storage
	 * that needs help delivers: its data is in the page cache already. */
	bool warm = false;
	if (progress) {
		warm = m->pos + advanced > m->ahead &&
		       (double)advanced / (double)(now - m->last_poll + 1) > PF_MMAP_WARM_BYTES_PER_NS;
		m->seen += advanced;
		m->rate = (double)advanced / (double)(now - m->last_poll + 1);
		m->pos += advanced;
		m->last_progress = now;
		/* What the program reached is no longer ahead of it. */
		uint64_t want = m->ahead > m->pos ? m->ahead - m->pos : 0;
		if (m->charged > want) {
			pf_memory_release(m->charged - want);
			m->charged = want;
		}
		if (m->ahead < m->pos)
			m->ahead = m->pos;
	}
	m->last_poll = now;
	if (m->pos >= m->datalen) {
		m->stop = true;
		return;
	}

	bool engaged = m->state == MAP_ENGAGED;
	if (!engaged && (m->seq_advice || m->seen >= PF_MMAP_ENGAGE_CHUNKS * cfg->chunk)) {
		engaged = true;
		m->state = MAP_ENGAGED;
		PF_STAT_ADD(mmap_mappings, 1);
		m->depth = 2 * cfg->chunk;
	} else if (engaged && progress && m->depth < cfg->window) {
		m->depth = m->depth * 2 < cfg->window ? m->depth * 2 : cfg->window;
	}
	bool reading = now - m->last_progress <= PF_MMAP_IDLE_RELEASE_NS;
	if (engaged && !reading && m->charged) {
		/* The program stopped reading: leave the data to the page cache,
		 * give the memory back; a new start reads ahead again. */
		release_ahead(m);
		m->depth = 2 * cfg->chunk;
	}
	size_t target = m->ahead;
	if (engaged && reading && !warm) {
		target = m->pos + m->depth;
		if (target > m->datalen || target < m->pos)
			target = m->datalen;
		if (target < m->ahead)
			target = m->ahead;
	}
	m->target = target;

	/* Next look: when the program should be half-way through what is
	 * ahead of it; later and later while nothing moves. */
	if (progress && warm) {
		m->interval = PF_MMAP_POLL_ACTIVE_NS; /* until it slows down */
	} else if (progress) {
		double ahead = (double)(m->target - m->pos);
		m->interval = engaged ? clamp_ns(ahead / 2 / m->rate, PF_MMAP_POLL_MIN_NS,
						 PF_MMAP_POLL_ACTIVE_NS)
				      : PF_MMAP_POLL_FIRST_NS;
	} else {
		uint64_t cap = now - m->last_progress > PF_MMAP_ASLEEP_NS ? PF_MMAP_POLL_ASLEEP_NS
									    : PF_MMAP_POLL_IDLE_NS;
		m->interval = m->interval * 2 > cap ? cap : m->interval * 2;
		if (m->interval < PF_MMAP_POLL_MIN_NS)
			m->interval = PF_MMAP_POLL_MIN_NS;
	}
	m->next_poll = now + m->interval;
}

/* Probes the program's progress in one mapping: one pread of its pagemap
 * entries (the worker's own descriptor, pagemap), from pos to a window past
 * what is read ahead, with mm.lock dropped meanwhile (m->probing,
 * mm.probe_busy). */
static void do_probe(struct pf_map *m, const struct pf_settings *cfg, int pagemap)
{
	size_t from = m->pos;
	size_t probe_end = (m->ahead > from ? m->ahead : from) + cfg->window;
	if (probe_end > m->datalen || probe_end < from)
		probe_end = m->datalen;
	size_t npages = (probe_end - from) / page_size;
	if (npages > PF_MMAP_PROBE_PAGES)
		npages = PF_MMAP_PROBE_PAGES;
	off64_t at = (off64_t)((m->start + from) / page_size * sizeof(uint64_t));
	m->probing = true;
	mm.probe_busy = true;
	pthread_mutex_unlock(&mm.lock);

	ssize_t got = pf_libc.pread64(pagemap, probe_buf, npages * sizeof(uint64_t), at);
	size_t advanced = got > 0 ? frontier_pages((size_t)got / sizeof(uint64_t)) * page_size : 0;

	pthread_mutex_lock(&mm.lock);
	m->probing = false;
	mm.probe_busy = false;
	pthread_cond_broadcast(&mm.idle);
	/* Steps to take, or a probe another worker waited for. */
	pthread_cond_broadcast(&mm.work);
	if (m->dead)
		return;
	if (got < 0)
		m->stop = true;
	else
		probe_apply(m, cfg, advanced, pf_now_ns());
	maybe_free(m);
}

/* Another worker, when a step blocked, more steps wait and no worker is
 * idle: blocked steps are what the workers are for (a FUSE request in
 * flight per step). Not while on a mapping; mm.lock dropped meanwhile. */
static void maybe_spawn(uint64_t took)
{
	if (took < PF_MMAP_SLOW_STEP_NS || mm.idle_workers || mm.spawning ||
	    mm.nworkers >= mm.max_workers)
		return;
	bool pending = false;
	for (unsigned i = 0; i < PF_MMAP_SLOTS && !pending; i++) {
		const struct pf_map *c = &mm.maps[i];
		pending = c->state == MAP_ENGAGED && !c->dead && !c->stop && c->ahead < c->target;
	}
	if (!pending)
		return;
	mm.spawning = true;
	mm.nworkers++;
	mm.starting++;
	pthread_mutex_unlock(&mm.lock);
	bool ok = spawn_worker();
	pthread_mutex_lock(&mm.lock);
	mm.spawning = false;
	pthread_cond_broadcast(&mm.idle); /* a fork may wait for this */
	if (!ok) {
		mm.starting--;
		mm.nworkers--;
		mm.max_workers = mm.nworkers; /* no more tries */
	}
}

/* How many bytes from addr (of a shadow mapping, n bytes at most) are in
 * the page cache already. One mincore() of up to PF_MMAP_CHECK_SPAN. */
static size_t cached_prefix(void *addr, size_t n)
{
	unsigned char vec[PF_MMAP_CHECK_SPAN / 4096];
	size_t pages = n / page_size;
	if (pages > sizeof(vec))
		pages = sizeof(vec);
	if (!pages || mincore(addr, pages * page_size, vec) != 0)
		return 0;
	size_t i = 0;
	while (i < pages && (vec[i] & 1))
		i++;
	return i * page_size;
}

/* One step on the next PF_MMAP_ADVISE_STEP bytes up to the target,
 * claimed under the lock so that workers take distinct ranges, with
 * mm.lock dropped during the calls (m->busy), all on the shadow mapping:
 * MADV_WILLNEED sends the read (the kernel reads at most
 * max(read_ahead_kb, device io size) per call, so steps are the smallest
 * usual read_ahead_kb); MADV_POPULATE_READ then waits until the data is
 * there, and reads it itself if the kernel dropped the readahead (FUSE
 * drops readahead while its background queue is congested); MADV_DONTNEED
 * unmaps it again from the shadow (the page cache keeps it). */
static void do_step(struct pf_map *m, const struct pf_settings *cfg)
{
	if (m->mincore_ok) {
		/* Skip what is cached already: one mincore of a step, or of
		 * PF_MMAP_CHECK_SPAN after a cached one (m->checking: one
		 * worker checks a mapping at a time, mm.lock dropped). */
		size_t start = m->ahead, span = m->target - start;
		size_t most = m->cached_run ? PF_MMAP_CHECK_SPAN : PF_MMAP_ADVISE_STEP;
		void *at = (void *)(m->shadow + start);
		m->checking = true;
		m->busy++;
		pthread_mutex_unlock(&mm.lock);
		size_t cached = cached_prefix(at, span < most ? span : most);
		pthread_mutex_lock(&mm.lock);
		m->checking = false;
		m->busy--;
		if (m->dead) {
			pthread_cond_broadcast(&mm.idle);
			return;
		}
		m->cached_run = cached > 0;
		if (cached && m->ahead == start) {
			m->ahead += cached; /* not charged: not ours */
			PF_STAT_ADD(mmap_bytes_cached, cached);
		}
		maybe_free(m);
		if (cached || m->stop || m->ahead >= m->target)
			return;
	}
	/* Fewer workers than PF_MMAP_MAX_WORKERS (PREFETCH_THREADS) take
	 * several steps at once, to keep as many reads in flight. */
	size_t per = (PF_MMAP_MAX_WORKERS + mm.max_workers - 1) / mm.max_workers;
	size_t n = m->target - m->ahead;
	if (n > per * PF_MMAP_ADVISE_STEP)
		n = per * PF_MMAP_ADVISE_STEP;
	bool reserved = pf_memory_reserve(n, cfg->max_memory) == 0;
	if (!reserved && n > PF_MMAP_ADVISE_STEP) {
		n = PF_MMAP_ADVISE_STEP; /* near the cap: one step at a time */
		reserved = pf_memory_reserve(n, cfg->max_memory) == 0;
	}
	if (!reserved) {
		m->target = m->ahead; /* at the cap: wait until the program catches up */
		return;
	}
	void *addr = (void *)(m->shadow + m->ahead);
	bool populate = !mm.no_populate;
	m->charged += n;
	m->ahead += n;
	m->busy++;
	pthread_mutex_unlock(&mm.lock);

	uint64_t t0 = pf_now_ns();
	int r = 0, err = 0;
	for (size_t done = 0; done < n && r == 0; done += PF_MMAP_ADVISE_STEP) {
		size_t k = n - done < PF_MMAP_ADVISE_STEP ? n - done : PF_MMAP_ADVISE_STEP;
		r = pf_libc.madvise((char *)addr + done, k, MADV_WILLNEED);
	}
	if (r == 0 && populate) {
		if (pf_libc.madvise(addr, n, MADV_POPULATE_READ) != 0)
			err = errno;
		pf_libc.madvise(addr, n, MADV_DONTNEED);
	}
	uint64_t took = pf_now_ns() - t0;

	pthread_mutex_lock(&mm.lock);
	m->busy--;
	if (err == EINVAL)
		mm.no_populate = true; /* old kernel: MADV_WILLNEED alone */
	if (r == 0 && (err == 0 || err == EINVAL || err == EINTR || err == EAGAIN))
		PF_STAT_ADD(mmap_bytes_populated, n);
	else if (!m->dead)
		m->stop = true; /* an IO error, or the file shrank: leave it to the program */
	if (m->dead)
		pthread_cond_broadcast(&mm.idle);
	else
		maybe_free(m);
	maybe_spawn(took);
}

static void wait_until(uint64_t deadline_ns)
{
	struct timespec ts = { (time_t)(deadline_ns / 1000000000u),
			       (long)(deadline_ns % 1000000000u) };
	pthread_cond_timedwait(&mm.work, &mm.lock, &ts);
}

/* The worker's own descriptor of pagemap, in a descriptor table of its
 * own (see the top of this file), or -1. /proc/thread-self: this thread's
 * view of the process's memory, there even when the main thread has
 * exited. */
static int private_pagemap(void)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 0u, ~0u, 2u /* CLOSE_RANGE_UNSHARE */) != 0)
		return -1;
	int fd = pf_libc.open("/proc/thread-self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fd = pf_libc.open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return fd;
#else
	return -1;
#endif
}

/* A worker that has no pagemap leaves (mm.lock held). The last one to go
 * turns mmap prefetching off in this process and drops every mapping, which
 * no worker is on any more. */
static void worker_failed(void)
{
	mm.nworkers--;
	mm.max_workers = mm.nworkers; /* no more tries */
	if (mm.nworkers == 0) {
		__atomic_store_n(&mm.worker, -1, __ATOMIC_RELAXED);
		for (unsigned i = 0; i < PF_MMAP_SLOTS; i++)
			if (mm.maps[i].state != MAP_FREE && !mm.maps[i].dead)
				slot_free(&mm.maps[i]);
	}
	pthread_cond_broadcast(&mm.idle);
}

/* A worker: takes the next due probe, else the next step of any mapping
 * (round robin), else waits. Every worker runs the same loop. */
static void *worker_main(void *unused)
{
	(void)unused;
	pf_in_library = 1; /* its calls pass straight through the hooks */
	pthread_mutex_lock(&mm.lock);
	mm.starting--; /* done with allocating: a fork may go on */
	pthread_cond_broadcast(&mm.idle);
	pthread_mutex_unlock(&mm.lock);
	const struct pf_settings *cfg = pf_settings();
	int pagemap = private_pagemap();
	pthread_mutex_lock(&mm.lock);
	if (pagemap < 0) {
		/* Its exit frees memory too, like the starts a fork waits
		 * for; but this happens once per process at most. */
		worker_failed();
		pthread_mutex_unlock(&mm.lock);
		return NULL;
	}
	for (;;) {
		uint64_t now = pf_now_ns();
		uint64_t next = now + PF_MMAP_POLL_ASLEEP_NS;
		struct pf_map *probe = NULL, *step = NULL;
		unsigned probe_i = 0, step_i = 0;
		for (unsigned k = 0; k < PF_MMAP_SLOTS && !probe; k++) {
			unsigned i = (mm.rr + k) % PF_MMAP_SLOTS;
			struct pf_map *c = &mm.maps[i];
			if (c->state == MAP_FREE || c->dead)
				continue;
			if (c->stop) {
				maybe_free(c);
				continue;
			}
			if (c->probing)
				continue; /* its prober wakes everyone when done */
			if (c->advice && !apply_advice(c, now))
				continue;
			if (c->state == MAP_RANDOM)
				continue;
			if (c->next_poll <= now) {
				if (!mm.probe_busy) {
					probe = c;
					probe_i = i;
				}
			} else if (c->next_poll < next) {
				next = c->next_poll;
			}
			if (!step && c->state == MAP_ENGAGED && c->ahead < c->target && !c->checking) {
				step = c;
				step_i = i;
			}
		}
		if (probe) {
			mm.rr = probe_i + 1;
			do_probe(probe, cfg, pagemap);
		} else if (step) {
			mm.rr = step_i + 1;
			do_step(step, cfg);
		} else {
			mm.idle_workers++;
			wait_until(next);
			mm.idle_workers--;
		}
	}
	return NULL;
}
