/* The workers of the mmap path (see mmap_prefetch.c): they follow how far
 * the program has got in each watched mapping and read a bounded window
 * ahead of it, several requests in flight.
 *
 * Progress is read from /proc/self/pagemap: a page of the program's mapping
 * is present there once the program faulted on it, and the workers never
 * touch that mapping. (mincore() reports page-cache residency, which the
 * reading ahead itself sets.) A mapping engages after PF_MMAP_ENGAGE_CHUNKS
 * chunks of forward progress, or at once after MADV_SEQUENTIAL; the window
 * then doubles with each progress seen, up to PREFETCH_WINDOW, and what is
 * read ahead counts against PREFETCH_MAX_MEMORY. The workers make system
 * calls on the shadow only, so nothing the program does to its mapping can
 * make them fault; a step's error drops the mapping, and the program meets
 * the error itself, as without the library. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "libc.h"
#include "mmap_table.h"
#include "nodebudget.h"
#include "settings.h"
#include "stats.h"
#include "thread.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define PM_PRESENT ((uint64_t)1 << 63)

/* The workers' only buffer, one probe at a time (pf_mm.probe_busy): static,
 * so no worker allocates while it works on a mapping. */
static uint64_t probe_buf[PF_MMAP_PROBE_PAGES];

/* --- starting workers ------------------------------------------------------------------ */

static void *worker_main(void *unused);

/* Starts one worker thread, with every signal blocked: like the engine's
 * workers, the program's signals are its own. Called with pf_mm.lock not held
 * and no mapping busy: pthread_create may allocate. */
static bool spawn_worker(void)
{
	pf_node_attach();
	return pf_thread_start(worker_main, PF_MMAP_WORKER_STACK) == 0;
}

/* Starts the first worker if needed (pf_mm.lock held; dropped and retaken
 * around pthread_create, which only this thread then does: worker is 2
 * meanwhile). Returns true when it runs (or, if it cannot open pagemap, it
 * will drop every mapping: worker_failed). More workers are started by the
 * workers, when steps block (do_step). */
bool pf_mmap_workers_running(void)
{
	while (pf_mm.worker == 2)
		pthread_cond_wait(&pf_mm.idle, &pf_mm.lock);
	if (pf_mm.worker != 0)
		return pf_mm.worker > 0;
	/* A fork waits while worker is 2 (pf_mmap_atfork_prepare): none
	 * from a signal handler of this thread meanwhile. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	__atomic_store_n(&pf_mm.worker, 2, __ATOMIC_RELAXED);
	pf_mm.nworkers = 1; /* before it runs: it counts itself out if it fails */
	pf_mm.starting++;
	pthread_mutex_unlock(&pf_mm.lock);
	bool ok = spawn_worker();
	pthread_mutex_lock(&pf_mm.lock);
	if (!ok) {
		pf_mm.nworkers = 0;
		pf_mm.starting--;
	}
	unsigned t = pf_settings()->threads;
	pf_mm.max_workers = t < PF_MMAP_MAX_WORKERS ? (t ? t : 1) : PF_MMAP_MAX_WORKERS;
	/* Unless the worker failed already (worker_failed set it to -1). */
	if (pf_mm.worker == 2)
		__atomic_store_n(&pf_mm.worker, ok ? 1 : -1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&pf_mm.idle);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pf_mm.worker > 0;
}

/* --- the workers (pf_mm.lock held unless said otherwise) -------------------------------- */

/* Applies the program's advice (not probing). False when the mapping is
 * to be dropped. */
static bool apply_advice(struct pf_map *m, uint64_t now)
{
	uint8_t a = m->advice;
	m->advice = ADV_NONE;
	switch (a) {
	case ADV_STOP:
		pf_mmap_release_ahead(m);
		m->stop = true;
		pf_mmap_maybe_free(m);
		return false;
	case ADV_RANDOM:
		pf_mmap_release_ahead(m);
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
		pf_mmap_release_ahead(m);
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
 * what is read ahead, with pf_mm.lock dropped meanwhile (m->probing,
 * pf_mm.probe_busy). */
static void do_probe(struct pf_map *m, const struct pf_settings *cfg, int pagemap)
{
	size_t from = m->pos;
	size_t probe_end = (m->ahead > from ? m->ahead : from) + cfg->window;
	if (probe_end > m->datalen || probe_end < from)
		probe_end = m->datalen;
	size_t npages = (probe_end - from) / pf_mm.page_size;
	if (npages > PF_MMAP_PROBE_PAGES)
		npages = PF_MMAP_PROBE_PAGES;
	off64_t at = (off64_t)((m->start + from) / pf_mm.page_size * sizeof(uint64_t));
	m->probing = true;
	pf_mm.probe_busy = true;
	pthread_mutex_unlock(&pf_mm.lock);

	ssize_t got = pf_libc.pread64(pagemap, probe_buf, npages * sizeof(uint64_t), at);
	size_t advanced = got > 0 ? frontier_pages((size_t)got / sizeof(uint64_t)) * pf_mm.page_size : 0;

	pthread_mutex_lock(&pf_mm.lock);
	m->probing = false;
	pf_mm.probe_busy = false;
	pthread_cond_broadcast(&pf_mm.idle);
	/* Steps to take, or a probe another worker waited for. */
	pthread_cond_broadcast(&pf_mm.work);
	if (m->dead)
		return;
	if (got < 0)
		m->stop = true;
	else
		probe_apply(m, cfg, advanced, pf_now_ns());
	pf_mmap_maybe_free(m);
}

/* Another worker, when a step blocked, more steps wait and no worker is
 * idle: blocked steps are what the workers are for (a FUSE request in
 * flight per step). Not while on a mapping; pf_mm.lock dropped meanwhile. */
static void maybe_spawn(uint64_t took)
{
	if (took < PF_MMAP_SLOW_STEP_NS || pf_mm.idle_workers || pf_mm.spawning ||
	    pf_mm.nworkers >= pf_mm.max_workers)
		return;
	bool pending = false;
	for (unsigned i = 0; i < PF_MMAP_SLOTS && !pending; i++) {
		const struct pf_map *c = &pf_mm.maps[i];
		pending = c->state == MAP_ENGAGED && !c->dead && !c->stop && c->ahead < c->target;
	}
	if (!pending)
		return;
	pf_mm.spawning = true;
	pf_mm.nworkers++;
	pf_mm.starting++;
	pthread_mutex_unlock(&pf_mm.lock);
	bool ok = spawn_worker();
	pthread_mutex_lock(&pf_mm.lock);
	pf_mm.spawning = false;
	pthread_cond_broadcast(&pf_mm.idle); /* a fork may wait for this */
	if (!ok) {
		pf_mm.starting--;
		pf_mm.nworkers--;
		pf_mm.max_workers = pf_mm.nworkers; /* no more tries */
	}
}

/* How many bytes from addr (of a shadow mapping, n bytes at most) are in
 * the page cache already. One mincore() of up to PF_MMAP_CHECK_SPAN. */
static size_t cached_prefix(void *addr, size_t n)
{
	unsigned char vec[PF_MMAP_CHECK_SPAN / 4096];
	size_t pages = n / pf_mm.page_size;
	if (pages > sizeof(vec))
		pages = sizeof(vec);
	if (!pages || mincore(addr, pages * pf_mm.page_size, vec) != 0)
		return 0;
	size_t i = 0;
	while (i < pages && (vec[i] & 1))
		i++;
	return i * pf_mm.page_size;
}

/* One step on the next PF_MMAP_ADVISE_STEP bytes up to the target,
 * claimed under the lock so that workers take distinct ranges, with
 * pf_mm.lock dropped during the calls (m->busy), all on the shadow mapping:
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
		 * worker checks a mapping at a time, pf_mm.lock dropped). */
		size_t start = m->ahead, span = m->target - start;
		size_t most = m->cached_run ? PF_MMAP_CHECK_SPAN : PF_MMAP_ADVISE_STEP;
		void *at = (void *)(m->shadow + start);
		m->checking = true;
		m->busy++;
		pthread_mutex_unlock(&pf_mm.lock);
		size_t cached = cached_prefix(at, span < most ? span : most);
		pthread_mutex_lock(&pf_mm.lock);
		m->checking = false;
		m->busy--;
		if (m->dead) {
			pthread_cond_broadcast(&pf_mm.idle);
			return;
		}
		m->cached_run = cached > 0;
		if (cached && m->ahead == start) {
			m->ahead += cached; /* not charged: not ours */
			PF_STAT_ADD(mmap_bytes_cached, cached);
		}
		pf_mmap_maybe_free(m);
		if (cached || m->stop || m->ahead >= m->target)
			return;
	}
	/* Fewer workers than PF_MMAP_MAX_WORKERS (PREFETCH_THREADS) take
	 * several steps at once, to keep as many reads in flight. */
	size_t per = (PF_MMAP_MAX_WORKERS + pf_mm.max_workers - 1) / pf_mm.max_workers;
	size_t n = m->target - m->ahead;
	if (n > per * PF_MMAP_ADVISE_STEP)
		n = per * PF_MMAP_ADVISE_STEP;
	/* A step is one read in flight against the node's cap (nodebudget.c). */
	bool reserved = pf_node_request_acquire();
	if (reserved && pf_memory_reserve(n, cfg->max_memory) != 0) {
		/* Near the memory cap: one step at a time. */
		reserved = n > PF_MMAP_ADVISE_STEP &&
			   pf_memory_reserve(PF_MMAP_ADVISE_STEP, cfg->max_memory) == 0;
		if (reserved)
			n = PF_MMAP_ADVISE_STEP;
		else
			pf_node_request_release();
	}
	if (!reserved) {
		m->target = m->ahead; /* at a cap: wait until the program catches up */
		return;
	}
	void *addr = (void *)(m->shadow + m->ahead);
	bool populate = !pf_mm.no_populate;
	m->charged += n;
	m->ahead += n;
	m->busy++;
	pthread_mutex_unlock(&pf_mm.lock);

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
	pf_node_request_release();

	pthread_mutex_lock(&pf_mm.lock);
	m->busy--;
	if (err == EINVAL)
		pf_mm.no_populate = true; /* old kernel: MADV_WILLNEED alone */
	if (r == 0 && (err == 0 || err == EINVAL || err == EINTR || err == EAGAIN))
		PF_STAT_ADD(mmap_bytes_populated, n);
	else if (!m->dead)
		m->stop = true; /* an IO error, or the file shrank: leave it to the program */
	if (m->dead)
		pthread_cond_broadcast(&pf_mm.idle);
	else
		pf_mmap_maybe_free(m);
	maybe_spawn(took);
}

static void wait_until(uint64_t deadline_ns)
{
	struct timespec ts = { (time_t)(deadline_ns / 1000000000u),
			       (long)(deadline_ns % 1000000000u) };
	pthread_cond_timedwait(&pf_mm.work, &pf_mm.lock, &ts);
}

/* The worker's own descriptor of pagemap, or -1. close_range(UNSHARE) over
 * every number first gives this thread a private, empty descriptor table
 * (no copy of the program's descriptors, so no pipe's write end held): the
 * program's numbers and its EMFILE point stay its own, and its fork or exec
 * copies or keeps none of ours. /proc/thread-self: this thread's view of
 * the process's memory, there even when the main thread has exited. */
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

/* A worker that has no pagemap leaves (pf_mm.lock held). The last one to go
 * turns mmap prefetching off in this process and drops every mapping, which
 * no worker is on any more. */
static void worker_failed(void)
{
	pf_mm.nworkers--;
	pf_mm.max_workers = pf_mm.nworkers; /* no more tries */
	if (pf_mm.nworkers == 0) {
		__atomic_store_n(&pf_mm.worker, -1, __ATOMIC_RELAXED);
		for (unsigned i = 0; i < PF_MMAP_SLOTS; i++)
			if (pf_mm.maps[i].state != MAP_FREE && !pf_mm.maps[i].dead)
				pf_mmap_slot_free(&pf_mm.maps[i]);
	}
	pthread_cond_broadcast(&pf_mm.idle);
}

/* A worker: takes the next due probe, else the next step of any mapping
 * (round robin), else waits. Every worker runs the same loop. */
static void *worker_main(void *unused)
{
	(void)unused;
	pf_in_library = 1; /* its calls pass straight through the hooks */
	pthread_mutex_lock(&pf_mm.lock);
	pf_mm.starting--; /* done with allocating: a fork may go on */
	pthread_cond_broadcast(&pf_mm.idle);
	pthread_mutex_unlock(&pf_mm.lock);
	const struct pf_settings *cfg = pf_settings();
	int pagemap = private_pagemap();
	pthread_mutex_lock(&pf_mm.lock);
	if (pagemap < 0) {
		/* Its exit frees memory too, like the starts a fork waits
		 * for; but this happens once per process at most. */
		worker_failed();
		pthread_mutex_unlock(&pf_mm.lock);
		return NULL;
	}
	for (;;) {
		uint64_t now = pf_now_ns();
		uint64_t next = now + PF_MMAP_POLL_ASLEEP_NS;
		struct pf_map *probe = NULL, *step = NULL;
		unsigned probe_i = 0, step_i = 0;
		for (unsigned k = 0; k < PF_MMAP_SLOTS && !probe; k++) {
			unsigned i = (pf_mm.rr + k) % PF_MMAP_SLOTS;
			struct pf_map *c = &pf_mm.maps[i];
			if (c->state == MAP_FREE || c->dead)
				continue;
			if (c->stop) {
				pf_mmap_maybe_free(c);
				continue;
			}
			if (c->probing)
				continue; /* its prober wakes everyone when done */
			if (c->advice && !apply_advice(c, now))
				continue;
			if (c->state == MAP_RANDOM)
				continue;
			if (c->next_poll <= now) {
				if (!pf_mm.probe_busy) {
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
			pf_mm.rr = probe_i + 1;
			do_probe(probe, cfg, pagemap);
		} else if (step) {
			pf_mm.rr = step_i + 1;
			do_step(step, cfg);
		} else {
			pf_mm.idle_workers++;
			wait_until(next);
			pf_mm.idle_workers--;
		}
	}
	return NULL;
}