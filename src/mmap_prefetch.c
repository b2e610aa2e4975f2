/* Prefetching behind mmap (PREFETCH_MMAP, on by default): the table of
 * watched mappings, filled and emptied by the mmap hooks (hooks_mmap.c);
 * mmap_worker.c holds the workers that read ahead of the program.
 *
 * A program reading a file through a mapping blocks in page faults, which
 * the kernel serves one miss at a time; no read() hook sees them. Which
 * mappings are watched: PROT_READ without PROT_WRITE, of a regular file on
 * a real filesystem not backed by a local block device (unless
 * PREFETCH_BLOCK_DEVICES=1), at least PF_MMAP_MIN_CHUNKS chunks of data,
 * and not already in the page cache when made. Each gets a private
 * read-only mapping of its own of the same file data (the shadow), in which
 * the workers read, so that the program's mapping and its page tables stay
 * the program's own footprint. Mappings the dynamic loader makes never
 * reach the hook (it calls the kernel directly). Measurements:
 * docs/benchmarks.md, "mmap". */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "libc.h"
#include "log.h"
#include "mmap_prefetch.h"
#include "mmap_table.h"
#include "pagecache.h"
#include "runtime.h"
#include "settings.h"
#include "stats.h"
#include "storage.h"

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

unsigned pf_mmap_tracked;

struct pf_mmap_table pf_mm = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* --- fork ----------------------------------------------------------------------- */

/* Holds the table, once no worker is being started: from pthread_create
 * until it reaches worker_main, a thread start allocates (glibc's TLS, a
 * sanitizer runtime's thread set-up). glibc's malloc is made safe for fork;
 * gcc 12's ASan allocator is not: the child would find an allocator lock
 * held for ever. A thread start needs no lock the forking thread could
 * hold, so the wait ends. */
void pf_mmap_atfork_prepare(void)
{
	pthread_mutex_lock(&pf_mm.lock);
	while (pf_mm.starting || pf_mm.spawning || pf_mm.worker == 2)
		pthread_cond_wait(&pf_mm.idle, &pf_mm.lock);
}

void pf_mmap_atfork_parent(void)
{
	pthread_mutex_unlock(&pf_mm.lock);
}

static void init_conds(void)
{
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pf_mm.work, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&pf_mm.idle, NULL);
}

/* The child has no workers and its own page tables: it forgets every mapping
 * (their reservations went with the engine's pf_stats_reset) and starts
 * again on its next mmap. The workers' pagemap descriptors were in their
 * own tables: the child has none of them. */
void pf_mmap_atfork_child(void)
{
	init_conds();
	memset(pf_mm.maps, 0, sizeof(pf_mm.maps));
	pf_mm.nworkers = pf_mm.idle_workers = 0;
	pf_mm.spawning = pf_mm.probe_busy = false; /* no_populate stays true if it was */
	pf_mm.starting = 0;
	__atomic_store_n(&pf_mmap_tracked, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&pf_mm.worker, 0, __ATOMIC_RELAXED);
	/* Locked by pf_mmap_atfork_prepare, in this very thread. */
	pthread_mutex_unlock(&pf_mm.lock);
}

static void init_once_fn(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	pf_mm.page_size = ps > 0 ? (size_t)ps : 4096;
	init_conds();
}

/* --- candidates ------------------------------------------------------------------- */

/* Storage that serves a handle as one sequential stream (PREFETCH_PARALLEL,
 * or the storage's kind): the workers' steps, out of order with the
 * program's faults, would each cost it a wait and a new request. The
 * kernel's own readahead stays in order. */
static bool one_stream(const struct stat *st)
{
	int parallel = pf_settings()->parallel;
	return parallel == 0 ||
	       (parallel == PF_PARALLEL_AUTO && PF_STORAGE_ONE_STREAM(pf_storage_mode(st->st_dev)));
}

/* The bytes of file data the mapping holds, or 0 if it is not a candidate.
 * As for read(), files on a local block device are left to the kernel
 * unless PREFETCH_BLOCK_DEVICES=1: its read-around per fault keeps up
 * there, and the workers' steps between its windows break its chain of
 * asynchronous readahead. *truthful: mincore() tells page-cache residency
 * of mappings of this file (since Linux 5.2 only to its owner, CAP_FOWNER
 * or who may write it; anyone else is told every page is resident). Owner
 * or root is checked. *dev: the file's device. */
static size_t file_extent(int fd, off64_t off, size_t len, bool *truthful, dev_t *dev)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || pf_excluded_file(&st) || st.st_size <= off || one_stream(&st))
		return 0;
	*dev = st.st_dev;
	uid_t euid = geteuid();
	*truthful = euid == 0 || st.st_uid == euid;
	uint64_t data = (uint64_t)(st.st_size - off);
	return data < len ? (size_t)data : len;
}

/* One page of the file, at off in it and at addr in the program's mapping,
 * is in the page cache. Asked of the page cache itself (pf_byte_cached)
 * where the kernel tells, without the process's mmap_lock, which mincore()
 * takes and which threads mapping and faulting at once contend on. Else
 * mincore() of the program's mapping, where it tells the truth. */
static bool page_cached(int fd, off64_t off, void *addr, bool truthful)
{
	int cached = pf_byte_cached(fd, off);
	if (cached >= 0)
		return cached;
	unsigned char vec;
	return truthful && mincore(addr, pf_mm.page_size, &vec) == 0 && (vec & 1);
}

/* The mapping's data is in the page cache, by PF_MMAP_WARM_SAMPLES pages
 * spread over it (the first and last among them: a reader of a header and
 * a footer has not read the middle). Such a mapping is left alone: no
 * shadow, no pagemap, no thread. A mapping cached in part is watched, and
 * its workers skip what is cached as they go. */
static bool cached_when_mapped(int fd, off64_t off, void *addr, size_t data, bool truthful)
{
	size_t pages = data / pf_mm.page_size;
	for (unsigned i = 0; i < PF_MMAP_WARM_SAMPLES; i++) {
		size_t pg = (pages - 1) * i / (PF_MMAP_WARM_SAMPLES - 1);
		size_t at = pg * pf_mm.page_size;
		if (!page_cached(fd, off + (off64_t)at, (char *)addr + at, truthful))
			return false;
	}
	return true;
}

/* --- the table (pf_mm.lock held) ------------------------------------------------------- */

void pf_mmap_release_ahead(struct pf_map *m)
{
	if (m->charged)
		pf_memory_release(m->charged);
	m->charged = 0;
	if (m->ahead > m->pos)
		m->ahead = m->pos;
	m->target = m->ahead; /* no more steps until the next probe */
}

void pf_mmap_slot_free(struct pf_map *m)
{
	pf_mmap_release_ahead(m);
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

/* Registers the program's mapping at addr, read ahead through shadow, in a
 * free slot; false when there is none, or no worker. */
static bool watch(void *addr, size_t len, void *shadow, size_t data, bool truthful)
{
	pthread_mutex_lock(&pf_mm.lock);
	struct pf_map *m = NULL;
	if (pf_mmap_workers_running()) {
		for (unsigned i = 0; i < PF_MMAP_SLOTS && !m; i++)
			if (pf_mm.maps[i].state == MAP_FREE)
				m = &pf_mm.maps[i];
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
		pthread_cond_signal(&pf_mm.work);
	}
	pthread_mutex_unlock(&pf_mm.lock);
	return m != NULL;
}

/* --- the hooks' entry points ---------------------------------------------------------- */

void pf_mmap_mapped(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	const struct pf_settings *cfg = pf_settings();
	if (!cfg->mmap || (prot & (PROT_READ | PROT_WRITE)) != PROT_READ ||
	    (flags & MAP_ANONYMOUS) || fd < 0 || len < PF_MMAP_MIN_CHUNKS * cfg->chunk ||
	    __atomic_load_n(&pf_mm.worker, __ATOMIC_RELAXED) < 0 ||
	    __atomic_load_n(&pf_mmap_tracked, __ATOMIC_RELAXED) >= PF_MMAP_SLOTS)
		return;
	struct pf_entry entry = pf_enter();
	pthread_once(&init_once, init_once_fn);
	bool truthful = false;
	dev_t dev = 0;
	size_t data = file_extent(fd, off, len, &truthful, &dev);
	if (data < PF_MMAP_MIN_CHUNKS * cfg->chunk)
		goto out;
	data = (data + pf_mm.page_size - 1) & ~(pf_mm.page_size - 1);
	if (cached_when_mapped(fd, off, addr, data, truthful)) {
		PF_STAT_ADD(mmap_mappings_cached, 1);
		PF_LOG(PF_LOG_TRACE, "fd %d: mapping of %zu bytes is in the page cache", fd, data);
		goto out;
	}
	/* Asked only of mappings about to be watched: the first file of a
	 * filesystem costs a round trip to the server on NFS. */
	if (!pf_fs_holds_data(fd, dev))
		goto out;
	/* The workers' own view of the same file data: they read ahead by
	 * faulting it in there, never touching the program's mapping, whose
	 * page table entries stay the program's own footprint. */
	void *shadow = pf_libc.mmap(NULL, data, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, fd,
				    (off_t)off);
	if (shadow == MAP_FAILED)
		goto out;
	pf_libc.madvise(shadow, data, MADV_DONTFORK); /* a child starts afresh */

	if (watch(addr, len, shadow, data, truthful)) {
		PF_LOG(PF_LOG_INFO, "fd %d: watching a mapping of %zu bytes at %p", fd, data, addr);
	} else {
		pf_libc.munmap(shadow, data);
		PF_LOG(PF_LOG_TRACE, "fd %d: mapping not watched (no slot or no worker)", fd);
	}
out:
	pf_leave(entry);
}

void pf_mmap_unmapping(void *addr, size_t len)
{
	struct pf_entry entry = pf_enter();
	uintptr_t from = (uintptr_t)addr;
	pthread_mutex_lock(&pf_mm.lock);
	for (;;) {
		bool wait = false;
		for (unsigned i = 0; i < PF_MMAP_SLOTS; i++) {
			struct pf_map *m = &pf_mm.maps[i];
			if (!overlaps(m, from, len))
				continue;
			m->dead = true;
			if (m->busy || m->probing)
				wait = true;
			else
				pf_mmap_slot_free(m);
		}
		if (!wait)
			break;
		/* Each worker on it is in one step, one mincore or one pread of
		 * pagemap. */
		pthread_cond_wait(&pf_mm.idle, &pf_mm.lock);
	}
	pthread_mutex_unlock(&pf_mm.lock);
	pf_leave(entry);
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
	struct pf_entry entry = pf_enter();
	uintptr_t from = (uintptr_t)addr;
	bool any = false;
	pthread_mutex_lock(&pf_mm.lock);
	for (unsigned i = 0; i < PF_MMAP_SLOTS; i++) {
		struct pf_map *m = &pf_mm.maps[i];
		if (!overlaps(m, from, len) || m->advice == ADV_STOP)
			continue;
		m->advice = a;
		any = true;
	}
	if (any)
		pthread_cond_signal(&pf_mm.work);
	pthread_mutex_unlock(&pf_mm.lock);
	pf_leave(entry);
}


/* Frees a mapping the workers are done with, once none is on it. */
void pf_mmap_maybe_free(struct pf_map *m)
{
	if (m->stop && !m->dead && !m->busy && !m->probing)
		pf_mmap_slot_free(m);
}
