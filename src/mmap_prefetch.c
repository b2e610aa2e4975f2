/* Prefetching behind mmap (PREFETCH_MMAP=1).
 *
 * A program that reads a file through a mapping blocks in page faults; the
 * kernel reads a little around each miss, one miss at a time. Here one
 * lazily started thread reads ahead of it instead, in bounded steps, and only
 * as far ahead as the program is seen to go.
 *
 * Which mappings: PROT_READ without PROT_WRITE, not anonymous, of a regular
 * file on a real filesystem, holding at least PF_MMAP_MIN_CHUNKS chunks of
 * file data. At most PF_MMAP_SLOTS at once. Mappings the dynamic loader makes
 * never reach the hook (it calls the kernel directly).
 *
 * How the program's progress is seen: /proc/self/pagemap. A page is "present"
 * there when it is mapped in this process's page tables, which for a file
 * mapping happens when the program faults on it (with the kernel's
 * fault-around, up to 64 KiB at once). Reading ahead with MADV_WILLNEED only
 * puts pages in the page cache, never in the page tables, so the present
 * bits remain the program's own footprint: the highest present page past the
 * last known position is how far it got. mincore() cannot tell this: it
 * reports page-cache residency, which our own reading ahead sets, and since
 * Linux 5.2 reports every page resident for files the caller may not write.
 * One probe is one pread of at most PF_MMAP_PROBE_PAGES entries (8 bytes
 * each), at most once per millisecond per mapping, less when nothing moves.
 *
 * Why MADV_WILLNEED and not MADV_POPULATE_READ: POPULATE_READ faults the
 * pages in one after the other, synchronously, which is what the program
 * does itself (measured on FUSE with 5 ms per request: no gain at all), and
 * it maps them, which would erase the progress signal above. WILLNEED starts
 * the reads and returns: one thread keeps many requests in flight (2x on the
 * same FUSE mount). The kernel reads at most max(read_ahead_kb, device
 * io size) per call, so calls are PF_MMAP_ADVISE_STEP bytes, the smallest
 * usual read_ahead_kb.
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
 * marks the mappings in the range dead and waits until the thread is not
 * working on them; the thread only ever makes system calls on a mapping
 * (pread of pagemap, madvise), never touches its memory, checks the dead
 * flag between calls and makes at most PF_MMAP_ROUND_BYTES of calls per
 * turn, so the wait is one madvise at most. An address range unmapped
 * behind the hooks' back (raw system calls) makes madvise fail with ENOMEM,
 * which stops the mapping: no fault, no crash. mprotect needs nothing: the
 * thread's calls work, or fail harmlessly, whatever the protection.
 *
 * Locks: mm.lock guards the table. Nothing that could take a lock of the
 * program or of an allocator (malloc, stdio, logging) runs while it is held
 * or while the thread works on a mapping, since munmap may be called with
 * an allocator's lock held and waits for both. */
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "libc.h"
#include "log.h"
#include "mmap_prefetch.h"
#include "settings.h"
#include "stats.h"

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PF_MMAP_SLOTS          64u
#define PF_MMAP_MIN_CHUNKS     4u                   /* smaller mappings are not tracked */
#define PF_MMAP_ENGAGE_CHUNKS  2u                   /* progress seen before reading ahead */
#define PF_MMAP_ADVISE_STEP    ((size_t)128 * 1024) /* one MADV_WILLNEED */
#define PF_MMAP_ROUND_BYTES    ((size_t)2 * 1024 * 1024) /* per mapping per turn */
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

#define PM_PRESENT ((uint64_t)1 << 63)

enum map_state { MAP_FREE = 0, MAP_WATCHING, MAP_ENGAGED, MAP_RANDOM };

/* Advice waiting for the thread, which alone changes a mapping's state. */
enum map_advice { ADV_NONE = 0, ADV_NORMAL, ADV_SEQUENTIAL, ADV_WILLNEED, ADV_RANDOM, ADV_STOP };

/* What one turn of the thread decided, applied under the lock. */
enum turn_result { TURN_OK, TURN_ENGAGE, TURN_DONE, TURN_STOP };

struct pf_map {
	/* Set when registered; guarded by mm.lock. */
	uintptr_t start;
	size_t maplen;         /* the whole mapping, for overlap tests */
	size_t datalen;        /* the part holding file data at map time, page-rounded */
	uint8_t state;         /* enum map_state; changed by the thread only */
	uint8_t advice;        /* enum map_advice; set by hooks */
	bool dead;             /* being unmapped: never touch it again */
	bool busy;             /* the thread works on it, mm.lock not held */
	/* The thread's own, written while busy or under mm.lock. */
	bool seq_advice;
	size_t pos;            /* the program has reached this far (bytes from start) */
	size_t ahead;          /* read ahead up to here */
	size_t depth;          /* the current window */
	size_t seen;           /* dense progress seen while watching */
	uint64_t charged;      /* reserved against PREFETCH_MAX_MEMORY: max(0, ahead - pos) */
	uint64_t next_poll, interval, last_poll, last_progress;
	double rate;           /* bytes per ns, at the last progress */
};

unsigned pf_mmap_tracked;

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;     /* a mapping was added or advised (CLOCK_MONOTONIC) */
	pthread_cond_t idle;     /* the thread finished a turn on a mapping */
	int worker;              /* 0 not started, 1 running, -1 cannot run */
	int pagemap_fd;
	dev_t pagemap_dev;
	ino_t pagemap_ino;
	unsigned rr;             /* round robin start of the thread's scan */
	struct pf_map maps[PF_MMAP_SLOTS];
} mm = { .lock = PTHREAD_MUTEX_INITIALIZER, .pagemap_fd = -1 };

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static size_t page_size;
/* The thread's only buffer: static, so a turn never allocates. */
static uint64_t probe_buf[PF_MMAP_PROBE_PAGES];

/* --- fork ----------------------------------------------------------------------- */

static void atfork_prepare(void)
{
	pthread_mutex_lock(&mm.lock);
}

static void atfork_parent(void)
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

/* The child has no thread and its own page tables: it forgets every mapping
 * (their reservations went with the engine's pf_stats_reset) and the
 * parent's pagemap, and starts again on its next mmap. */
static void atfork_child(void)
{
	pthread_mutex_init(&mm.lock, NULL);
	init_conds();
	memset(mm.maps, 0, sizeof(mm.maps));
	__atomic_store_n(&pf_mmap_tracked, 0, __ATOMIC_RELAXED);
	if (mm.pagemap_fd >= 0)
		pf_libc.close(mm.pagemap_fd);
	mm.pagemap_fd = -1;
	__atomic_store_n(&mm.worker, 0, __ATOMIC_RELAXED);
}

static void init_once_fn(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	page_size = ps > 0 ? (size_t)ps : 4096;
	init_conds();
	/* Registered here, on first use, never from inside a fork handler. */
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* --- candidates ------------------------------------------------------------------- */

/* The bytes of file data the mapping holds, or 0 if it is not a candidate. */
static size_t file_extent(int fd, off64_t off, size_t len)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= off)
		return 0;
	struct statfs fs;
	if (fstatfs(fd, &fs) != 0 || pf_pseudo_filesystem((long)fs.f_type))
		return 0;
	uint64_t data = (uint64_t)(st.st_size - off);
	return data < len ? (size_t)data : len;
}

/* --- setup (program threads, mm.lock not held) -------------------------------------- */

/* Opens /proc/self/pagemap on a high descriptor, like the statistics' copy of
 * stderr: a program's own numbering does not shift. Called from the thread
 * that is calling mmap, not from ours, which would take the lowest free
 * number at random moments of the program. */
static int open_pagemap(void)
{
	int fd = pf_libc.open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct rlimit rl;
	int low = 512;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur <= (rlim_t)low * 2)
		low = (int)(rl.rlim_cur / 2);
	int high = pf_libc.fcntl(fd, F_DUPFD_CLOEXEC, low);
	pf_libc.close(fd);
	return high;
}

static void *worker_main(void *unused);

/* Opens pagemap and starts the thread if needed (mm.lock held; dropped and
 * retaken around the slow parts, which only this thread then does: worker
 * is 2 meanwhile). Returns true when both are there. */
static bool setup_locked(void)
{
	while (mm.worker == 2)
		pthread_cond_wait(&mm.idle, &mm.lock);
	if (mm.worker != 0)
		return mm.worker > 0;
	__atomic_store_n(&mm.worker, 2, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&mm.lock);

	int fd = open_pagemap();
	struct stat st;
	bool ok = fd >= 0 && fstat(fd, &st) == 0;
	if (ok) {
		pthread_attr_t attr;
		sigset_t all, old;
		pthread_t tid;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, PF_MMAP_WORKER_STACK);
		/* Like the engine's workers: the program's signals are its own. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		ok = pthread_create(&tid, &attr, worker_main, NULL) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
	}
	if (!ok && fd >= 0) {
		pf_libc.close(fd);
		fd = -1;
	}

	pthread_mutex_lock(&mm.lock);
	mm.pagemap_fd = fd;
	if (ok) {
		mm.pagemap_dev = st.st_dev;
		mm.pagemap_ino = st.st_ino;
	}
	__atomic_store_n(&mm.worker, ok ? 1 : -1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&mm.idle);
	return ok;
}

/* --- the table (mm.lock held) ------------------------------------------------------- */

static void release_ahead(struct pf_map *m)
{
	if (m->charged)
		pf_memory_release(m->charged);
	m->charged = 0;
	if (m->ahead > m->pos)
		m->ahead = m->pos;
}

static void slot_free(struct pf_map *m)
{
	release_ahead(m);
	memset(m, 0, sizeof(*m));
	__atomic_sub_fetch(&pf_mmap_tracked, 1, __ATOMIC_RELAXED);
}

static bool overlaps(const struct pf_map *m, uintptr_t from, size_t len)
{
	return m->state != MAP_FREE && from < m->start + m->maplen && m->start < from + len;
}

/* --- hooks' entry points -------------------------------------------------------------- */

void pf_mmap_mapped(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	const struct pf_settings *cfg = pf_settings();
	if (!cfg->mmap || (prot & (PROT_READ | PROT_WRITE)) != PROT_READ ||
	    (flags & MAP_ANONYMOUS) || fd < 0 || len < PF_MMAP_MIN_CHUNKS * cfg->chunk ||
	    __atomic_load_n(&mm.worker, __ATOMIC_RELAXED) < 0)
		return;
	int saved = errno;
	pf_in_library = 1;
	pthread_once(&init_once, init_once_fn);
	size_t data = file_extent(fd, off, len);
	if (data < PF_MMAP_MIN_CHUNKS * cfg->chunk)
		goto out;
	data = (data + page_size - 1) & ~(page_size - 1);

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
	if (m)
		PF_LOG(PF_LOG_INFO, "fd %d: watching a mapping of %zu bytes at %p", fd, data, addr);
	else
		PF_LOG(PF_LOG_TRACE, "fd %d: mapping not watched (no slot or no pagemap)", fd);
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
			__atomic_store_n(&m->dead, true, __ATOMIC_RELAXED);
			if (m->busy)
				wait = true;
			else
				slot_free(m);
		}
		if (!wait)
			break;
		/* A turn is a few bounded system calls that check dead in between. */
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

/* --- the thread ------------------------------------------------------------------------ */

/* Applies the program's advice (mm.lock held, not busy). False when the
 * mapping was dropped. */
static bool apply_advice(struct pf_map *m, uint64_t now)
{
	uint8_t a = m->advice;
	m->advice = ADV_NONE;
	switch (a) {
	case ADV_STOP:
		slot_free(m);
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

/* Reads ahead up to pos + depth, at most PF_MMAP_ROUND_BYTES this turn
 * (busy). Returns false when the mapping should be dropped. *more is set
 * when the budget ran out before the target. */
static bool read_ahead(struct pf_map *m, const struct pf_settings *cfg, bool *more)
{
	size_t target = m->pos + m->depth;
	if (target > m->datalen || target < m->pos)
		target = m->datalen;
	size_t budget = PF_MMAP_ROUND_BYTES;
	while (m->ahead < target) {
		if (!budget || __atomic_load_n(&m->dead, __ATOMIC_RELAXED)) {
			*more = true;
			break;
		}
		size_t n = target - m->ahead;
		if (n > PF_MMAP_ADVISE_STEP)
			n = PF_MMAP_ADVISE_STEP;
		if (pf_memory_reserve(n, cfg->max_memory) != 0)
			break; /* at the cap: wait until the program catches up */
		m->charged += n;
		if (pf_libc.madvise((void *)(m->start + m->ahead), n, MADV_WILLNEED) != 0)
			return false; /* unmapped behind our back, or not a file any more */
		m->ahead += n;
		budget -= n;
		PF_STAT_ADD(mmap_bytes_populated, n);
	}
	return true;
}

static uint64_t clamp_ns(double ns, uint64_t lo, uint64_t hi)
{
	if (!(ns >= (double)lo))
		return lo;
	return ns > (double)hi ? hi : (uint64_t)ns;
}

/* One turn on one mapping (busy, mm.lock not held): probe the program's
 * progress, release what it consumed, read further ahead. Only system calls
 * on the mapping's range; nothing that allocates or locks. */
static enum turn_result map_turn(struct pf_map *m, const struct pf_settings *cfg, int pagemap_fd,
				 uint64_t now)
{
	enum turn_result result = TURN_OK;
	size_t from = m->pos;
	size_t probe_end = (m->ahead > from ? m->ahead : from) + cfg->window;
	if (probe_end > m->datalen || probe_end < from)
		probe_end = m->datalen;
	size_t npages = (probe_end - from) / page_size;
	if (npages > PF_MMAP_PROBE_PAGES)
		npages = PF_MMAP_PROBE_PAGES;
	ssize_t got = pf_libc.pread64(pagemap_fd, probe_buf, npages * sizeof(uint64_t),
				      (off64_t)((m->start + from) / page_size * sizeof(uint64_t)));
	if (got < 0)
		return TURN_STOP;
	npages = (size_t)got / sizeof(uint64_t);

	/* The program's frontier: the end of the run of present pages that
	 * starts at pos, with gaps of at most PF_MMAP_GAP_PAGES (faults map
	 * 64 KiB blocks; a reader may skip a little). Present pages past a
	 * longer gap are not progress: a footer read first, random access. */
	size_t frontier = 0, gap = 0;
	for (size_t i = 0; i < npages; i++) {
		if (probe_buf[i] & PM_PRESENT) {
			frontier = i + 1;
			gap = 0;
		} else if (++gap > PF_MMAP_GAP_PAGES) {
			break;
		}
	}

	bool progress = frontier > 0;
	if (progress) {
		size_t advanced = frontier * page_size;
		m->seen += advanced;
		m->rate = (double)advanced / (double)(now - m->last_poll + 1);
		m->pos = from + advanced;
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
	if (m->pos >= m->datalen)
		return TURN_DONE;

	bool engaged = m->state == MAP_ENGAGED;
	if (!engaged && (m->seq_advice || m->seen >= PF_MMAP_ENGAGE_CHUNKS * cfg->chunk)) {
		engaged = true;
		result = TURN_ENGAGE;
		m->depth = 2 * cfg->chunk;
	} else if (engaged && progress && m->depth < cfg->window) {
		m->depth = m->depth * 2 < cfg->window ? m->depth * 2 : cfg->window;
	}
	if (engaged && now - m->last_progress > PF_MMAP_IDLE_RELEASE_NS && m->charged) {
		/* The program stopped reading: leave the data to the page cache,
		 * give the memory back; a new start reads ahead again. */
		pf_memory_release(m->charged);
		m->charged = 0;
		m->ahead = m->pos;
		m->depth = 2 * cfg->chunk;
	}

	bool more = false;
	if (engaged && now - m->last_progress <= PF_MMAP_IDLE_RELEASE_NS &&
	    !read_ahead(m, cfg, &more))
		return TURN_STOP;

	/* Next look: when the program should be half-way through what is
	 * ahead of it; sooner if this turn's budget ran out; later and later
	 * while nothing moves. */
	if (more) {
		m->interval = 0;
	} else if (progress) {
		double ahead = (double)(m->ahead - m->pos);
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
	return result;
}

/* The pagemap descriptor is still ours: a program that closed every
 * descriptor (closefrom) may have a file of its own at that number now. */
static bool pagemap_still_ours(void)
{
	struct stat st;
	return fstat(mm.pagemap_fd, &st) == 0 && st.st_dev == mm.pagemap_dev &&
	       st.st_ino == mm.pagemap_ino;
}

static void wait_until(uint64_t deadline_ns)
{
	struct timespec ts = { (time_t)(deadline_ns / 1000000000u),
			       (long)(deadline_ns % 1000000000u) };
	pthread_cond_timedwait(&mm.work, &mm.lock, &ts);
}

static void *worker_main(void *unused)
{
	(void)unused;
	pf_in_library = 1; /* its calls pass straight through the hooks */
	const struct pf_settings *cfg = pf_settings();
	uint64_t checked_fd_at = 0;
	pthread_mutex_lock(&mm.lock);
	for (;;) {
		uint64_t now = pf_now_ns();
		uint64_t next = now + PF_MMAP_POLL_ASLEEP_NS;
		struct pf_map *m = NULL;
		for (unsigned k = 0; k < PF_MMAP_SLOTS && !m; k++) {
			unsigned i = (mm.rr + k) % PF_MMAP_SLOTS;
			struct pf_map *c = &mm.maps[i];
			if (c->state == MAP_FREE || c->dead)
				continue;
			if (c->advice && !apply_advice(c, now))
				continue;
			if (c->state == MAP_RANDOM)
				continue;
			if (c->next_poll <= now) {
				m = c;
				mm.rr = i + 1;
			} else if (c->next_poll < next) {
				next = c->next_poll;
			}
		}
		if (!m) {
			wait_until(next);
			continue;
		}
		if (now - checked_fd_at > 100 * MS) {
			if (!pagemap_still_ours()) {
				/* Blind from now on: stop watching anything, in this
				 * process, and leave the number to the program. */
				for (unsigned i = 0; i < PF_MMAP_SLOTS; i++)
					if (mm.maps[i].state != MAP_FREE && !mm.maps[i].dead)
						mm.maps[i].advice = ADV_STOP;
				mm.pagemap_fd = -1;
				__atomic_store_n(&mm.worker, -1, __ATOMIC_RELAXED);
				continue;
			}
			checked_fd_at = now;
		}

		m->busy = true;
		int fd = mm.pagemap_fd;
		pthread_mutex_unlock(&mm.lock);
		enum turn_result r = map_turn(m, cfg, fd, now);
		pthread_mutex_lock(&mm.lock);
		m->busy = false;
		if (!m->dead) {
			switch (r) {
			case TURN_ENGAGE:
				m->state = MAP_ENGAGED;
				PF_STAT_ADD(mmap_mappings, 1);
				break;
			case TURN_DONE:
			case TURN_STOP:
				slot_free(m);
				break;
			case TURN_OK:
				break;
			}
		}
		pthread_cond_broadcast(&mm.idle);
	}
	return NULL;
}
