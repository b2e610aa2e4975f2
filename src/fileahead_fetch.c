/* The threads that fetch predicted files before their open (see
 * fileahead.h): each reads the first window of one file into the table
 * (fileahead_table.h), from which fileahead.c serves the program.
 *
 * The fetching threads never touch the program's descriptor table: each
 * calls unshare(CLONE_FILES) at start and at once closes every descriptor
 * its private copy inherited (a pipe's write end held there would keep a
 * reader from its EOF), so the files it opens take no number the program
 * would get and never show in /proc/self/fd. A thread whose table cannot be
 * made private exits without opening anything. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"
#include "fileahead.h"
#include "fileahead_table.h"
#include "libc.h"
#include "log.h"
#include "nodebudget.h"
#include "settings.h"
#include "stats.h"
#include "thread.h"

/* Files up to this size are fetched, whole. Larger ones are the engine's:
 * it reads them ahead from their open in a process that reads whole files
 * (streams_at_open), and a first window fetched here would be read twice. */
#define PF_AHEAD_WINDOW ((size_t)1 << 20)
#define PF_AHEAD_THREADS 8u
#define PF_AHEAD_STACK ((size_t)256 * 1024)

static size_t ahead_window(void)
{
	size_t w = pf_settings()->window;
	return w < PF_AHEAD_WINDOW ? w : PF_AHEAD_WINDOW;
}


/* Makes this thread's descriptor table its own and empty. */
static int private_table(void)
{
	if (unshare(CLONE_FILES) != 0)
		return -1;
	return syscall(SYS_close_range, 0U, ~0U, 0U) == 0 ? 0 : -1;
}

static struct ahead *next_queued(void)
{
	struct ahead *best = NULL;
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++) {
		struct ahead *e = &pf_fa.e[i];
		if (e->state == AHEAD_QUEUED && (!best || e->seq < best->seq))
			best = e;
	}
	return best;
}

/* Reads up to want bytes from offset 0; the count read, -1 on an error. */
static ssize_t read_window(int fd, char *buf, size_t want)
{
	size_t got = 0;
	while (got < want) {
		ssize_t r = pf_libc.pread64(fd, buf + got, want - got, (off64_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Ends a fetch (pf_fa.lock held): ready, or dropped; failed: the file could
 * not be opened or read (no permission, gone, not a regular file, changed). */
static void fetch_end(struct ahead *e, bool ok, bool failed)
{
	e->fetched_ns = pf_now_ns();
	if (failed)
		PF_STAT_ADD(files_predicted_failed, 1);
	if (ok && !e->cancel) {
		e->state = AHEAD_READY;
	} else if (!ok && !e->cancel) {
		/* Kept for a while so that it is not asked for again. */
		pf_pages_free(e->buf, e->reserved);
		if (e->reserved)
			pf_memory_release(e->reserved);
		e->buf = NULL;
		e->len = e->reserved = 0;
		e->state = AHEAD_FAILED;
	} else {
		e->state = AHEAD_READY; /* pf_ahead_entry_free counts what was read for nothing */
		pf_ahead_entry_free(e, ok);
	}
	pthread_cond_broadcast(&pf_fa.done);
}

/* Opens the predicted file as the program would (following symbolic
 * links, with this thread's credentials, which are the program's), but only
 * a regular file: looked at first, so that no device is ever opened, and
 * opened non-blocking, so that a FIFO put there in between cannot block. */
static int open_regular(const char *path, struct stat *st, bool *skip)
{
	if (stat(path, st) != 0 || !S_ISREG(st->st_mode))
		return -1;
	if ((uint64_t)st->st_size > ahead_window()) {
		*skip = true;
		return -1;
	}
	int fd = pf_libc.open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		pf_libc.close(fd);
		return -1;
	}
	return fd;
}

/* Fetches e, in AHEAD_OPENING (pf_fa.lock not held; e->path stays). */
static void fetch_file(struct ahead *e)
{
	struct stat st, after;
	bool skip = false;
	int fd = open_regular(e->path, &st, &skip);
	if (fd < 0) {
		pthread_mutex_lock(&pf_fa.lock);
		fetch_end(e, false, !skip);
		return;
	}
	size_t want = (size_t)st.st_size;
	char *buf = NULL;
	/* Reserved and allocated with pf_fa.lock held, and kept in the entry at
	 * once: a child forked meanwhile (the fork handlers take pf_fa.lock)
	 * never finds a buffer only this thread knew of. */
	pthread_mutex_lock(&pf_fa.lock);
	bool room = !want || pf_memory_reserve(want, pf_settings()->max_memory) == 0;
	if (room && want && !(buf = pf_pages_alloc(want))) {
		pf_memory_release(want);
		room = false;
	}
	if (!room || e->cancel) {
		/* Over the memory cap, or no longer wanted: fetch nothing. */
		if (buf) {
			pf_pages_free(buf, want);
			pf_memory_release(want);
		}
		pf_libc.close(fd);
		fetch_end(e, false, false);
		return;
	}
	e->id = st;
	e->buf = buf;
	e->reserved = want;
	e->state = AHEAD_READING;
	pthread_mutex_unlock(&pf_fa.lock);

	ssize_t got = read_window(fd, buf, want);
	/* Changed while being read: never served. */
	bool ok = got == (ssize_t)want && fstat(fd, &after) == 0 && pf_ahead_same_file(&st, &after);
	pf_libc.close(fd);
	if (got > 0)
		PF_STAT_ADD(bytes_fetched, got);

	pthread_mutex_lock(&pf_fa.lock);
	e->len = got > 0 ? (size_t)got : 0;
	e->whole = ok && (off_t)want == st.st_size;
	fetch_end(e, ok, !ok);
}

/* One fetch, from its open to its last read, is one request in flight
 * against the node's cap (nodebudget.c); at the cap the program reads the
 * file itself. Returns with pf_fa.lock held. */
static void fetch(struct ahead *e)
{
	if (!pf_node_request_acquire()) {
		pthread_mutex_lock(&pf_fa.lock);
		fetch_end(e, false, false);
		return;
	}
	fetch_file(e);
	pf_node_request_release();
}

static void *fetcher_main(void *unused)
{
	(void)unused;
	pf_in_library = 1; /* anything this thread calls passes straight through */
	int ok = private_table();
	pthread_mutex_lock(&pf_fa.lock);
	if (ok != 0) {
		/* Nothing may be opened from a table the program shares, and
		 * the next thread would fare no better: nothing is fetched. */
		__atomic_store_n(&pf_fa.state, -1, __ATOMIC_RELAXED);
		for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
			if (pf_fa.e[i].state == AHEAD_QUEUED)
				pf_ahead_entry_free(&pf_fa.e[i], false);
		pthread_mutex_unlock(&pf_fa.lock);
		PF_LOG(PF_LOG_WARN, "no private descriptor table (%s): files are not fetched ahead",
		       strerror(errno));
		return NULL;
	}
	if (pf_fa.state == 0)
		__atomic_store_n(&pf_fa.state, 1, __ATOMIC_RELAXED);
	for (;;) {
		struct ahead *e = pf_fa.state > 0 ? next_queued() : NULL;
		if (!e) {
			pf_fa.idle++;
			pthread_cond_wait(&pf_fa.work, &pf_fa.lock);
			pf_fa.idle--;
			continue;
		}
		e->state = AHEAD_OPENING;
		pthread_mutex_unlock(&pf_fa.lock);
		fetch(e); /* returns with pf_fa.lock held */
	}
	return NULL;
}

/* Starts one more thread when more files wait than threads do, up to
 * min(PREFETCH_THREADS, PF_AHEAD_THREADS): a process that predicts one file
 * has one thread (pf_fa.lock held). */
void pf_ahead_pool_grow(void)
{
	const struct pf_settings *cfg = pf_settings();
	unsigned max = cfg->threads < PF_AHEAD_THREADS ? cfg->threads : PF_AHEAD_THREADS;
	unsigned queued = 0;
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
		queued += pf_fa.e[i].state == AHEAD_QUEUED;
	if (queued <= pf_fa.idle || pf_fa.started >= max)
		return;
	pf_node_attach();
	if (pf_thread_start(fetcher_main, PF_AHEAD_STACK) == 0)
		pf_fa.started++;
	else if (pf_fa.started == 0)
		__atomic_store_n(&pf_fa.state, -1, __ATOMIC_RELAXED);
}

bool pf_ahead_usable(void)
{
	return __atomic_load_n(&pf_fa.state, __ATOMIC_RELAXED) >= 0;
}
