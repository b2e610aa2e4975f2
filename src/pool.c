/* The worker pool: threads that take streams off a round-robin run queue,
 * claim a queued chunk and pread() it; and the engine's fork handlers,
 * which must hold the pool still across fork. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>

#include "libc.h"
#include "log.h"
#include "nodebudget.h"
#include "stats.h"
#include "stream.h"
#include "thread.h"

#define PF_WORKER_STACK ((size_t)256 * 1024)

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct pf_stream *head, *tail;  /* streams with QUEUED chunks, round robin */
	struct pf_stream *all;          /* every live stream (for fork) */
	int state;                      /* 0 not started, 1 running, -1 failed */
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, NULL, 0 };

/* Every stream is on pool.all from its creation to its free, so that a
 * forked child can free them all. */
void pf_pool_track(struct pf_stream *s)
{
	pthread_mutex_lock(&pool.lock);
	s->all_next = pool.all;
	if (pool.all)
		pool.all->all_prev = s;
	pool.all = s;
	pthread_mutex_unlock(&pool.lock);
}

void pf_pool_untrack(struct pf_stream *s)
{
	pthread_mutex_lock(&pool.lock);
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else if (pool.all == s)
		pool.all = s->all_next;
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	pthread_mutex_unlock(&pool.lock);
}

/* Hands the stream to the workers (s->lock held). */
void pf_runq_push(struct pf_stream *s)
{
	pthread_mutex_lock(&pool.lock);
	if (!s->in_runq) {
		s->in_runq = true;
		s->refs++;
		s->runq_next = NULL;
		if (pool.tail)
			pool.tail->runq_next = s;
		else
			pool.head = s;
		pool.tail = s;
		pthread_cond_signal(&pool.work);
	}
	pthread_mutex_unlock(&pool.lock);
}

/* Reads one chunk with pread, continuing after short reads, so that a
 * chunk ends early only at end of file or at an error (s->lock not held). */
static void chunk_fetch(int fd, struct pf_chunk *c, size_t size)
{
	size_t got = 0;
	int err = 0;
	uint64_t t0 = pf_now_ns();
	while (got < size) {
		ssize_t r = pf_libc.pread64(fd, c->buf + got, size - got, c->off + (off64_t)got);
		PF_STAT_ADD(worker_reads, 1);
		if (r > 0) {
			got += (size_t)r;
		} else {
			if (r < 0)
				err = errno;
			break;
		}
	}
	c->len = got;
	c->err = err;
	c->fetch_ns = pf_now_ns() - t0;
	PF_STAT_ADD(bytes_fetched, got);
}

/* The next chunk a worker may read: the first queued one, if the mode
 * allows one more read in flight (s->lock held). */
static struct pf_chunk *next_claimable(struct pf_stream *s)
{
	if (s->closing || s->failed || s->inflight >= s->max_inflight)
		return NULL;
	return pf_first_queued(s);
}

/* Records a finished chunk (s->lock held). */
static void chunk_finished(struct pf_stream *s, struct pf_chunk *c)
{
	if (--s->inflight == 0)
		s->busy_ns += pf_now_ns() - s->busy_since;
	if (c->stale) {
		PF_STAT_ADD(bytes_wasted, c->len);
		c->stale = false;
		pf_chunk_free(s, c);
	} else {
		c->state = CHUNK_DONE;
		pf_note_chunk_end(s, c);
		pf_mode_note(s, c);
	}
	if (next_claimable(s))
		pf_runq_push(s); /* workers that found the mode's limit reached left it */
	pthread_cond_broadcast(&s->changed);
}

/* Marks a queued chunk as being read (s->lock held). */
void pf_chunk_claim(struct pf_stream *s, struct pf_chunk *c)
{
	c->state = CHUNK_READING;
	if (s->inflight++ == 0 && s->mode == MODE_PROBING)
		s->busy_since = pf_now_ns();
}

/* Reads a claimed chunk on the calling thread (s->lock held, dropped while
 * reading). Workers do this, and so does a reader that would otherwise
 * wait for a worker to pick the chunk up. */
void pf_chunk_read_now(struct pf_stream *s, struct pf_chunk *c)
{
	size_t size = c->want;
	pthread_mutex_unlock(&s->lock);
	chunk_fetch(s->fd, c, size);
	pthread_mutex_lock(&s->lock);
	chunk_finished(s, c);
}

static void *worker_main(void *unused)
{
	(void)unused;
	pf_in_library = 1; /* anything this thread calls passes straight through */
	for (;;) {
		pthread_mutex_lock(&pool.lock);
		while (!pool.head)
			pthread_cond_wait(&pool.work, &pool.lock);
		struct pf_stream *s = pool.head;
		pool.head = s->runq_next;
		if (!pool.head)
			pool.tail = NULL;
		s->in_runq = false;
		pthread_mutex_unlock(&pool.lock);

		/* The run queue's reference to s is now this worker's. */
		pthread_mutex_lock(&s->lock);
		struct pf_chunk *c = next_claimable(s);
		/* At the node's cap on reads in flight the chunk waits for the
		 * next worker, or for the reader, who reads it itself. */
		if (c && pf_node_request_acquire()) {
			/* Others of this stream's chunks go back in line behind
			 * other streams: several reads in flight per stream,
			 * and no stream starves the rest. */
			pf_chunk_claim(s, c);
			if (next_claimable(s))
				pf_runq_push(s);
			pf_chunk_read_now(s, c);
			pf_node_request_release();
		}
		pf_stream_unref_locked(s);
	}
	return NULL;
}

/* Starts the workers at the first stream; 0 when they run, 1 if not from
 * this thread now (it may be in a signal handler: a later read starts
 * them), -1 if they cannot run. */
int pool_start(const struct pf_settings *cfg)
{
	int state = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
	if (__builtin_expect(state != 0, 1))
		return state > 0 ? 0 : -1;
	if (pf_thread_maybe_in_handler())
		return 1;
	pthread_mutex_lock(&pool.lock);
	if (pool.state == 0) {
		unsigned started = 0;
		for (unsigned i = 0; i < cfg->threads; i++) {
			if (pf_thread_start(worker_main, PF_WORKER_STACK) != 0)
				break;
			started++;
		}
		__atomic_store_n(&pool.state, started ? 1 : -1, __ATOMIC_RELEASE);
		if (started < cfg->threads)
			PF_LOG(PF_LOG_WARN, "started %u of %u worker threads%s", started,
			       cfg->threads, started ? "" : ": prefetching is off");
	}
	int ok = pool.state > 0 ? 0 : -1;
	pthread_mutex_unlock(&pool.lock);
	return ok;
}

/* --- fork ------------------------------------------------------------------------------ */

/* Workers are started with pool.lock held: none starts after this (the
 * library's prepare then waits for those still starting, thread.c). */
void pf_engine_atfork_prepare(void)
{
	pthread_mutex_lock(&pool.lock);
}

void pf_engine_atfork_parent(void)
{
	pthread_mutex_unlock(&pool.lock);
}

/* The child has one thread and none of the workers: every stream is
 * dropped (their memory freed) and the pool restarts on demand. */
void pf_engine_atfork_child(void)
{
	struct pf_stream *s = pool.all;
	while (s) {
		struct pf_stream *next = s->all_next;
		pf_stream_discard(s);
		s = next;
	}
	/* Locked by pf_engine_atfork_prepare, in this very thread. */
	pthread_mutex_unlock(&pool.lock);
	pthread_cond_init(&pool.work, NULL);
	pool.head = pool.tail = pool.all = NULL;
	pool.state = 0;
	pf_streams_forget();
	pf_slots_reset_in_child();
	pf_own_reads_reset_in_child();
	pf_stats_reset();
	pf_in_library = 0;
}
