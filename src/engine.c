#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "engine.h"
#include "fileahead.h"
#include "fdtable.h"
#include "libc.h"
#include "log.h"
#include "nodebudget.h"
#include "pagecache.h"
#include "settings.h"
#include "stats.h"
#include "storage.h"
#include "thread.h"

__thread int pf_in_library __attribute__((tls_model("initial-exec")));

/* The kernel never transfers more than this in one read (MAX_RW_COUNT). */
#define PF_MAX_RW ((size_t)0x7ffff000)
/* Bounds the chunk bookkeeping of one stream whatever WINDOW/CHUNK say. */
#define PF_MAX_DEPTH 1024u
/* Chunks and window on storage that bypasses the page cache. */
#define PF_UNCACHED_SCALE 2u
/* The window a fresh stream starts with, in chunks. */
#define PF_INITIAL_DEPTH 8u
#define PF_OFF_MAX ((off64_t)LLONG_MAX)
#define PF_WORKER_STACK ((size_t)256 * 1024)
/* The longest skip forward that keeps a reader a forward reader, and the
 * reads in a row such a reader needs before a stream. */
#define PF_SKIP_MAX ((off64_t)2 * 1024 * 1024)
#define PF_SKIP_RUN 8u
/* Preads outside the window in a row before a stream is given up. */
#define PF_MAX_MISSES 16u
/* A new stream reads its first PF_PROBE_ALONE chunks one at a time, then
 * PF_PROBE_PAIRED two at a time: enough to see whether the storage serves
 * two at once (then it goes wide) or one after the other, as object-store
 * clients that serve a handle as one sequential stream do (then it reads in
 * order, one at a time: each out-of-order read there costs a wait and a new
 * request). */
#define PF_PROBE_ALONE 2u
#define PF_PROBE_PAIRED 4u
/* Two reads in flight must deliver this much more than one to go wide. */
#define PF_PROBE_GAIN 1.2
/* Longest time data read ahead is served without the server confirming the
 * file unchanged (past the client's attribute cache). */
#define PF_MAX_STALE_NS ((uint64_t)1000000000)

/* --- streams -------------------------------------------------------------------- */

/* Set once this process has read a whole file from its start to its end
 * through a stream (md5sum a b c, tar, sort): from then on a file opened
 * for reading is prefetched at open, keeping the pipeline full across the
 * switch. Cleared when such a speculative stream goes unused. */
static int whole_file_reader;

/* Streams attached to a descriptor: each may hold at most its share of
 * PREFETCH_MAX_MEMORY, so that a hundred files read at once all move. */
static unsigned live_streams;

static unsigned fair_depth(const struct pf_settings *cfg, size_t chunk)
{
	unsigned n = __atomic_load_n(&live_streams, __ATOMIC_RELAXED);
	uint64_t share = cfg->max_memory / (n ? n : 1) / chunk;
	return share ? (unsigned)(share < PF_MAX_DEPTH ? share : PF_MAX_DEPTH) : 1;
}

enum chunk_state { CHUNK_FREE, CHUNK_QUEUED, CHUNK_READING, CHUNK_DONE };

/* How many reads of a stream may be in flight, and so in what order they
 * reach the storage. */
enum stream_mode {
	MODE_PROBING,  /* one, then two: measuring what the storage rewards */
	MODE_PARALLEL, /* as many as there are workers */
	MODE_ORDERED,  /* one, in file order: a sequential stream per handle */
};

struct pf_chunk {
	off64_t off;     /* file offset of buf[0] */
	size_t len;      /* bytes valid once DONE */
	size_t used;     /* bytes of it handed to the program */
	int err;         /* errno that ended the chunk at off+len, 0 if none */
	uint64_t fetch_ns; /* how long its reads took */
	uint8_t state;   /* enum chunk_state */
	bool stale;      /* READING but no longer in the window: free when done */
	char *buf;       /* chunk_size bytes, allocated on first use */
};

struct pf_stream {
	pthread_mutex_t lock;     /* everything below; taken after the slot lock */
	pthread_cond_t changed;   /* a chunk finished reading */
	int fd;
	unsigned refs;            /* the slot, the run queue, a worker in flight */
	bool closing;             /* detached: schedule nothing more */
	bool in_runq;             /* protected by pool.lock */
	struct pf_stream *runq_next;       /* protected by pool.lock */
	struct pf_stream *all_prev, *all_next; /* protected by pool.lock */
	size_t chunk_size;
	unsigned max_depth;       /* PREFETCH_WINDOW in chunks */
	unsigned depth;           /* current window in chunks: grows as it is consumed */
	unsigned nslots;
	unsigned nwin;            /* chunks in the window, in file order */
	unsigned inflight;        /* chunks READING (by workers or the reader) */
	unsigned nbufs;           /* chunk buffers allocated */
	unsigned misses;          /* preads outside the window in a row */
	off64_t glance_end;       /* end of the last pread well ahead of pos, 0 if none */
	off64_t pos;              /* where the reader is expected next */
	off64_t next_off;         /* end of the window: the next chunk to schedule */
	off64_t eof_hint;         /* nothing is scheduled at or past this */
	struct stat version;      /* size and times of the file when fetched */
	uint64_t validated_ns;    /* when the server last confirmed version */
	uint64_t served;          /* bytes handed to the program */
	bool from_start;          /* the reader started at offset 0: a whole-file reader at EOF */
	bool speculative;         /* started at open, before any read */
	bool borrowed;            /* a split read: buffers are the program's */
	off64_t split_end;        /* a split read's end: its last piece is shorter */
	bool shrunk;              /* a read ahead ended short of version's size */
	bool failed;              /* a read ahead failed: fetch nothing more */
	uint8_t mode;             /* enum stream_mode */
	unsigned max_inflight;    /* reads in flight the mode allows */
	unsigned probed;          /* chunks measured while probing */
	uint64_t alone_ns;        /* how long the last one read alone took */
	unsigned probe_rounds;    /* probes that found no gain */
	uint64_t busy_ns;         /* time with a read in flight, while probing */
	uint64_t busy_since;      /* when inflight last went from 0 to 1 */
	unsigned *win;            /* nwin slot indices, file order */
	struct pf_chunk chunks[]; /* nslots */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct pf_stream *head, *tail;  /* streams with QUEUED chunks, round robin */
	struct pf_stream *all;          /* every live stream (for fork) */
	int state;                      /* 0 not started, 1 running, -1 failed */
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, NULL, 0 };

static void stream_free(struct pf_stream *s)
{
	pthread_mutex_lock(&pool.lock);
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else if (pool.all == s)
		pool.all = s->all_next;
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	pthread_mutex_unlock(&pool.lock);

	for (unsigned i = 0; i < s->nslots && !s->borrowed; i++) {
		if (s->chunks[i].buf) {
			free(s->chunks[i].buf);
			pf_memory_release(s->chunk_size);
		}
	}
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void stream_unref_locked(struct pf_stream *s)
{
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&s->lock);
	if (last)
		stream_free(s);
}

static struct pf_stream *stream_new(int fd, off64_t pos, const struct stat *version,
				    const struct pf_settings *cfg, unsigned scale)
{
	/* Scaled, the window holds as many chunks, each larger. */
	size_t chunk = cfg->chunk * scale;
	unsigned max_depth = (unsigned)(cfg->window / cfg->chunk);
	if (max_depth > PF_MAX_DEPTH)
		max_depth = PF_MAX_DEPTH;
	if (max_depth < 1)
		max_depth = 1;
	/* Room for a full window plus chunks still being read after a seek. */
	unsigned nslots = max_depth + cfg->threads + 1;
	size_t size = sizeof(struct pf_stream) + nslots * sizeof(struct pf_chunk) +
		      nslots * sizeof(unsigned);
	struct pf_stream *s = calloc(1, size);
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->changed, NULL);
	s->fd = fd;
	s->refs = 1;
	s->chunk_size = chunk;
	s->max_depth = max_depth;
	s->depth = max_depth < PF_INITIAL_DEPTH ? max_depth : PF_INITIAL_DEPTH;
	s->nslots = nslots;
	s->pos = pos;
	s->next_off = pos;
	s->eof_hint = version->st_size;
	s->version = *version;
	s->validated_ns = pf_now_ns();
	s->win = (unsigned *)&s->chunks[nslots];

	pthread_mutex_lock(&pool.lock);
	s->all_next = pool.all;
	if (pool.all)
		pool.all->all_prev = s;
	pool.all = s;
	pthread_mutex_unlock(&pool.lock);
	return s;
}

static inline struct pf_chunk *win_chunk(struct pf_stream *s, unsigned i)
{
	return &s->chunks[s->win[i]];
}

/* Hands the stream to the workers (s->lock held). */
static void runq_push(struct pf_stream *s)
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

static int free_slot(struct pf_stream *s)
{
	for (unsigned i = 0; i < s->nslots; i++)
		if (s->chunks[i].state == CHUNK_FREE && !s->chunks[i].stale)
			return (int)i;
	return -1;
}

/* Schedules chunks until the window is full (s->lock held). */
static void stream_fill(struct pf_stream *s)
{
	const struct pf_settings *cfg = pf_settings();
	unsigned limit = fair_depth(cfg, s->chunk_size);
	if (limit > s->depth)
		limit = s->depth;
	bool queued = false;
	while (!s->closing && !s->failed && s->nwin < limit && s->next_off < s->eof_hint) {
		int idx = free_slot(s);
		if (idx < 0)
			break;
		struct pf_chunk *c = &s->chunks[idx];
		if (!c->buf) {
			if (pf_memory_reserve(s->chunk_size, cfg->max_memory) != 0)
				break;
			c->buf = malloc(s->chunk_size);
			if (!c->buf) {
				pf_memory_release(s->chunk_size);
				break;
			}
			s->nbufs++;
		}
		c->off = s->next_off;
		c->len = c->used = 0;
		c->err = 0;
		c->state = CHUNK_QUEUED;
		s->win[s->nwin++] = (unsigned)idx;
		s->next_off += (off64_t)s->chunk_size;
		queued = true;
	}
	if (queued)
		runq_push(s);
}

/* A chunk became free: keep its buffer for the next chunk, unless the
 * stream holds more than its share of memory (s->lock held). */
static void chunk_free(struct pf_stream *s, struct pf_chunk *c)
{
	c->state = CHUNK_FREE;
	if (c->buf && s->nbufs > fair_depth(pf_settings(), s->chunk_size)) {
		free(c->buf);
		c->buf = NULL;
		s->nbufs--;
		pf_memory_release(s->chunk_size);
	}
}

/* Takes a chunk out of the window (s->lock held). */
static void chunk_retire(struct pf_stream *s, struct pf_chunk *c)
{
	switch (c->state) {
	case CHUNK_QUEUED:
		chunk_free(s, c);
		break;
	case CHUNK_READING:
		c->stale = true; /* its reader frees it */
		break;
	case CHUNK_DONE:
		if (c->len > c->used)
			PF_STAT_ADD(bytes_wasted, c->len - c->used);
		chunk_free(s, c);
		break;
	default:
		break;
	}
}

static void win_drop_front(struct pf_stream *s, unsigned n)
{
	memmove(s->win, s->win + n, (s->nwin - n) * sizeof(*s->win));
	s->nwin -= n;
}

/* Retires the chunks the reader has moved past and grows the window for
 * each one it consumed whole (s->lock held). */
static void stream_advance(struct pf_stream *s)
{
	unsigned n = 0;
	while (n < s->nwin) {
		struct pf_chunk *c = win_chunk(s, n);
		if (c->off + (off64_t)s->chunk_size > s->pos)
			break;
		/* Read or skipped over: the reader is moving on. */
		if (c->state == CHUNK_DONE && s->depth < s->max_depth)
			s->depth++;
		chunk_retire(s, c);
		n++;
	}
	if (n)
		win_drop_front(s, n);
	if (s->nwin == 0 && s->next_off < s->pos)
		s->next_off = s->pos; /* the reader overtook the window */
	stream_fill(s);
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

/* What a chunk's end says of the file (s->lock held). An error: the storage
 * failed, and reads ahead would only meet it again (a dead server answers
 * them with another errno than the program's own read got). A short read
 * before the size the file had: it shrank, and what was read ahead past
 * its new end must never be served, whatever the cached attributes say. */
static void note_chunk_end(struct pf_stream *s, const struct pf_chunk *c)
{
	off64_t end = c->off + (off64_t)c->len;
	if (c->err) {
		s->failed = true;
		s->eof_hint = c->off;
	} else if (c->len < s->chunk_size) {
		if (end < s->version.st_size)
			s->shrunk = true;
		if (end < s->eof_hint)
			s->eof_hint = end;
	}
}

/* --- what the storage rewards ---------------------------------------------------- */

static struct pf_chunk *first_queued(struct pf_stream *s)
{
	for (unsigned i = 0; i < s->nwin; i++)
		if (win_chunk(s, i)->state == CHUNK_QUEUED)
			return win_chunk(s, i);
	return NULL;
}


static void mode_set(struct pf_stream *s, enum stream_mode mode)
{
	s->mode = (uint8_t)mode;
	s->max_inflight = mode == MODE_PARALLEL ? UINT_MAX : 1;
}

/* A new stream starts in the mode set by PREFETCH_PARALLEL, or that its
 * filesystem was found to reward, or probes. Only where its reads bypass
 * the page cache: through it, the kernel's readahead on the same open file
 * reads ahead of the probe's reads and blurs what they take (there the
 * mount table names the clients that serve a handle as one stream). */
static void mode_start(struct pf_stream *s, bool uncached)
{
	int parallel = pf_settings()->parallel;
	enum pf_storage_mode known = parallel == PF_PARALLEL_AUTO ? pf_storage_mode(s->version.st_dev)
				     : parallel ? PF_STORAGE_PARALLEL : PF_STORAGE_ORDERED;
	if (known == PF_STORAGE_UNKNOWN && !uncached)
		known = PF_STORAGE_PARALLEL;
	mode_set(s, known == PF_STORAGE_PARALLEL  ? MODE_PARALLEL
		    : known == PF_STORAGE_ORDERED ? MODE_ORDERED : MODE_PROBING);
	if (s->mode == MODE_ORDERED)
		PF_STAT_ADD(streams_ordered, 1);
}

/* A chunk read while probing (s->lock held). After the paired chunks, the
 * gain of two reads in flight over one: the paired chunks over the time a
 * read was in flight, against one chunk per read alone. Near 1 when the
 * storage served them one after the other, near 2 when at once. A verdict
 * of no gain is measured twice: a busy CPU delays reads too. */
static void probe_note(struct pf_stream *s, const struct pf_chunk *c)
{
	if (c->len != s->chunk_size || c->err)
		return; /* the end of the file is no measure */
	uint64_t now = pf_now_ns();
	if (++s->probed <= PF_PROBE_ALONE) {
		s->alone_ns = c->fetch_ns;
		if (s->probed == PF_PROBE_ALONE) {
			s->max_inflight = 2;
			s->busy_ns = 0;
			s->busy_since = now;
		}
		return;
	}
	if (s->probed < PF_PROBE_ALONE + PF_PROBE_PAIRED)
		return;
	uint64_t busy = s->busy_ns + (s->inflight ? now - s->busy_since : 0);
	double gain = (double)PF_PROBE_PAIRED * (double)s->alone_ns / (double)(busy ? busy : 1);
	if (gain < PF_PROBE_GAIN && ++s->probe_rounds < 2) {
		s->probed = 0; /* once more, from reads alone */
		s->max_inflight = 1;
		return;
	}
	enum stream_mode mode = gain >= PF_PROBE_GAIN ? MODE_PARALLEL : MODE_ORDERED;
	mode_set(s, mode);
	if (mode == MODE_ORDERED)
		PF_STAT_ADD(streams_ordered, 1);
	PF_LOG(PF_LOG_INFO, "fd %d: two reads in flight gave %.2fx one (%u us alone, %u in %llu us): %s",
	       s->fd, gain, (unsigned)(s->alone_ns / 1000), PF_PROBE_PAIRED,
	       (unsigned long long)busy / 1000,
	       mode == MODE_ORDERED ? "reading in order, one at a time" : "reading in parallel");
	pf_storage_learn(s->version.st_dev,
			 mode == MODE_ORDERED ? PF_STORAGE_ORDERED : PF_STORAGE_PARALLEL);
}

/* The next chunk a worker may read: the first queued one, if the mode
 * allows one more read in flight (s->lock held). */
static struct pf_chunk *next_claimable(struct pf_stream *s)
{
	if (s->closing || s->failed || s->inflight >= s->max_inflight)
		return NULL;
	return first_queued(s);
}

/* Records a finished chunk (s->lock held). */
static void chunk_finished(struct pf_stream *s, struct pf_chunk *c)
{
	if (--s->inflight == 0)
		s->busy_ns += pf_now_ns() - s->busy_since;
	if (c->stale) {
		PF_STAT_ADD(bytes_wasted, c->len);
		c->stale = false;
		chunk_free(s, c);
	} else {
		c->state = CHUNK_DONE;
		note_chunk_end(s, c);
		if (s->mode == MODE_PROBING)
			probe_note(s, c);
	}
	if (next_claimable(s))
		runq_push(s); /* workers that found the mode's limit reached left it */
	pthread_cond_broadcast(&s->changed);
}

static void chunk_claim(struct pf_stream *s, struct pf_chunk *c)
{
	c->state = CHUNK_READING;
	if (s->inflight++ == 0 && s->mode == MODE_PROBING)
		s->busy_since = pf_now_ns();
}

/* Reads a claimed chunk on the calling thread (s->lock held, dropped while
 * reading). Workers do this, and so does a reader that would otherwise
 * wait for a worker to pick the chunk up. */
static void chunk_read_now(struct pf_stream *s, struct pf_chunk *c)
{
	size_t size = s->chunk_size;
	if (s->borrowed && s->split_end - c->off < (off64_t)size)
		size = (size_t)(s->split_end - c->off);
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
			chunk_claim(s, c);
			if (next_claimable(s))
				runq_push(s);
			chunk_read_now(s, c);
			pf_node_request_release();
		}
		stream_unref_locked(s);
	}
	return NULL;
}

static int pool_start(const struct pf_settings *cfg)
{
	pthread_mutex_lock(&pool.lock);
	if (pool.state == 0) {
		unsigned started = 0;
		for (unsigned i = 0; i < cfg->threads; i++) {
			if (pf_thread_start(worker_main, PF_WORKER_STACK) != 0)
				break;
			started++;
		}
		pool.state = started ? 1 : -1;
		if (started < cfg->threads)
			PF_LOG(PF_LOG_WARN, "started %u of %u worker threads%s", started,
			       cfg->threads, started ? "" : ": prefetching is off");
	}
	int ok = pool.state > 0 ? 0 : -1;
	pthread_mutex_unlock(&pool.lock);
	return ok;
}

/* Detaches the stream from its slot (slot lock held). With wait_inflight,
 * returns only when no read of the descriptor is in flight, so the caller
 * may close it: a worker must never pread a number that was reused. */
static void stream_detach(struct pf_fd *slot, bool wait_inflight)
{
	struct pf_stream *s = slot->stream;
	if (!s)
		return;
	slot->stream = NULL;
	if (slot->state == PF_FD_STREAMING)
		slot->state = PF_FD_WATCHING;
	__atomic_sub_fetch(&live_streams, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&s->lock);
	if (s->speculative && s->served == 0)
		__atomic_store_n(&whole_file_reader, 0, __ATOMIC_RELAXED);
	s->closing = true;
	for (unsigned i = 0; i < s->nwin; i++)
		chunk_retire(s, win_chunk(s, i));
	s->nwin = 0;
	while (wait_inflight && s->inflight)
		pthread_cond_wait(&s->changed, &s->lock);
	stream_unref_locked(s);
}

/* --- candidates ------------------------------------------------------------------- */

/* Only read-only regular files (the caller checked S_ISREG) on real
 * filesystems are prefetched. */
static bool is_candidate(int fd)
{
	int flags = pf_libc.fcntl(fd, F_GETFL);
	if (flags < 0 || (flags & O_ACCMODE) != O_RDONLY || (flags & (O_DIRECT | O_PATH)))
		return false;
	struct statfs fs;
	if (fstatfs(fd, &fs) != 0 || pf_pseudo_filesystem((long)fs.f_type))
		return false;
	return true;
}

/* True when both ends of [from, to) are in the page cache: a read there
 * costs a copy, and a thread hop would only add to it (a second copy of
 * every byte: docs/benchmarks-engine.md). */
static bool range_cached(int fd, off64_t from, off64_t to)
{
	return pf_byte_cached(fd, from) == 1 && pf_byte_cached(fd, to - 1) == 1;
}

/* True when the program's reads so far, [0, upto), left nothing in the page
 * cache: the file's reads bypass it (a FUSE direct_io file, say). There each
 * request is a round trip whatever its size, so larger requests pay; through
 * the page cache they cost (docs/benchmarks-engine.md). False when the
 * kernel will not tell. */
static bool bypasses_page_cache(int fd, off64_t upto)
{
	uint64_t pages;
	return upto > 0 && pf_pages_cached(fd, 0, (uint64_t)upto, &pages) == 0 && pages == 0;
}

/* Files whose reads are never prefetched: anything but a regular file, and
 * (unless PREFETCH_BLOCK_DEVICES=1) files on a local block device, where the
 * kernel's own readahead already overlaps the IO with the program and a
 * second copy through our buffers would only cost. Network, FUSE and other
 * device-less filesystems have major 0. */
bool pf_excluded_file(const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		return true;
	if (!pf_settings()->block_devices && major(st->st_dev) != 0) {
		PF_STAT_ADD(block_device_skips, 1);
		return true;
	}
	return false;
}

/* The descriptor's reads have been sequential: attach a stream if the file
 * qualifies and there is something to gain (slot lock held). pos is the
 * offset of the next read, or -1 for "the file offset". */
static struct pf_stream *try_engage(struct pf_fd *slot, int fd, off64_t pos)
{
	const struct pf_settings *cfg = pf_settings();
	slot->seq_reads = 0; /* if nothing comes of it, look again after a run of reads */
	struct stat st;
	if (fstat(fd, &st) != 0 || pf_excluded_file(&st)) {
		slot->state = PF_FD_IGNORED;
		return NULL;
	}
	if (pos < 0)
		pos = pf_libc.lseek64(fd, 0, SEEK_CUR);
	if (pos < 0 || st.st_size - pos < (off64_t)cfg->chunk) {
		/* What is left fits in one request: nothing to overlap. Look
		 * again only after another run of sequential reads. */
		slot->flags &= (uint8_t)~PF_FDF_SEQ_ADVICE;
		return NULL;
	}
	if (!(slot->flags & PF_FDF_CLASSIFIED)) {
		if (!is_candidate(fd)) {
			slot->state = PF_FD_IGNORED;
			PF_LOG(PF_LOG_TRACE, "fd %d: not a read-only regular file; ignored", fd);
			return NULL;
		}
		slot->flags |= PF_FDF_CLASSIFIED;
	}
	off64_t window_end = pos + (off64_t)cfg->window;
	if (window_end > st.st_size)
		window_end = st.st_size;
	if (cfg->skip_cached && range_cached(fd, pos, window_end)) {
		slot->state = PF_FD_CACHED;
		slot->bypass_left = cfg->window;
		PF_STAT_ADD(cached_skips, 1);
		return NULL;
	}
	if (cfg->parallel == PF_PARALLEL_AUTO &&
	    pf_storage_mode(st.st_dev) == PF_STORAGE_CLIENT_READS_AHEAD) {
		/* Measured on rclone mount: reading ahead in order there only
		 * added a copy (md5sum 1.20x, cat 1.24x). */
		slot->state = PF_FD_IGNORED;
		PF_STAT_ADD(streams_stepped_aside, 1);
		return NULL;
	}
	if (pool_start(cfg) != 0) {
		slot->state = PF_FD_IGNORED;
		return NULL;
	}
	/* Doubled only where the doubled window fits the memory cap: a small
	 * PREFETCH_MAX_MEMORY keeps chunks that it can hold. */
	bool uncached = bypasses_page_cache(fd, pos);
	unsigned scale = 1;
	if (uncached && cfg->window * PF_UNCACHED_SCALE <= cfg->max_memory &&
	    cfg->chunk * PF_UNCACHED_SCALE <= PF_CHUNK_MAX) {
		scale = PF_UNCACHED_SCALE;
		PF_STAT_ADD(streams_uncached, 1);
	}
	struct pf_stream *s = stream_new(fd, pos, &st, cfg, scale);
	if (!s) {
		PF_LOG(PF_LOG_WARN, "fd %d: out of memory for a stream; passing through", fd);
		return NULL;
	}
	mode_start(s, uncached);
	s->from_start = slot->flags & PF_FDF_FROM_START;
	slot->stream = s;
	slot->state = PF_FD_STREAMING;
	__atomic_add_fetch(&live_streams, 1, __ATOMIC_RELAXED);
	PF_STAT_ADD(files_prefetched, 1);
	PF_LOG(PF_LOG_INFO, "fd %d: prefetching from offset %lld (size %lld, chunks of %zu)", fd,
	       (long long)pos, (long long)st.st_size, s->chunk_size);
	pthread_mutex_lock(&s->lock);
	stream_fill(s);
	pthread_mutex_unlock(&s->lock);
	return s;
}

/* --- copying into the caller's iovecs ------------------------------------------------- */

struct iov_cursor {
	const struct iovec *iov;
	int cnt;
	int idx;       /* current element */
	size_t off;    /* bytes of it already filled */
};

static void cursor_copy(struct iov_cursor *cur, const char *src, size_t n)
{
	while (n) {
		const struct iovec *v = &cur->iov[cur->idx];
		size_t room = v->iov_len - cur->off;
		if (room == 0) {
			cur->idx++;
			cur->off = 0;
			continue;
		}
		size_t k = n < room ? n : room;
		memcpy((char *)v->iov_base + cur->off, src, k);
		cur->off += k;
		src += k;
		n -= k;
	}
}

/* preadv semantics for the rest of the request, one pread per element:
 * stops at the first short read, returns -1 only if nothing was read. */
static ssize_t cursor_pread(int fd, struct iov_cursor *cur, size_t n, off64_t off)
{
	size_t got = 0;
	while (got < n && cur->idx < cur->cnt) {
		const struct iovec *v = &cur->iov[cur->idx];
		size_t room = v->iov_len - cur->off;
		if (room == 0) {
			cur->idx++;
			cur->off = 0;
			continue;
		}
		size_t want = room < n - got ? room : n - got;
		ssize_t r = pf_libc.pread64(fd, (char *)v->iov_base + cur->off, want,
					    off + (off64_t)got);
		if (r < 0)
			return got ? (ssize_t)got : -1;
		got += (size_t)r;
		cur->off += (size_t)r;
		if ((size_t)r < want)
			break;
	}
	return (ssize_t)got;
}

/* --- the read path ------------------------------------------------------------------ */

static ssize_t pass_through(int fd, const struct pf_read_req *req)
{
	if (req->offset == PF_AT_FILE_OFFSET)
		return req->iovcnt == 1 ? pf_libc.read(fd, req->iov[0].iov_base, req->iov[0].iov_len)
					: pf_libc.readv(fd, req->iov, req->iovcnt);
	return req->iovcnt == 1
		       ? pf_libc.pread64(fd, req->iov[0].iov_base, req->iov[0].iov_len, req->offset)
		       : pf_libc.preadv64(fd, req->iov, req->iovcnt, req->offset);
}

enum serve_end { SERVE_REST_FROM_KERNEL, SERVE_STOP };

static struct pf_chunk *chunk_at(struct pf_stream *s, off64_t pos)
{
	if (s->nwin == 0 || pos < win_chunk(s, 0)->off || pos >= s->next_off)
		return NULL;
	return win_chunk(s, (unsigned)((pos - win_chunk(s, 0)->off) / (off64_t)s->chunk_size));
}

/* Copies what the window holds from start on (s->lock held). Waits for
 * chunks in flight, reads a queued chunk itself rather than wait for a
 * worker, and stops where the window cannot serve: SERVE_STOP means return
 * what was served (with *err set if nothing was: a worker's read error
 * reached at its offset), SERVE_REST_FROM_KERNEL means read the rest. */
static enum serve_end serve_from_window(struct pf_stream *s, off64_t start, size_t total,
					struct iov_cursor *cur, size_t *done, int *err)
{
	uint64_t wait_from = 0;
	enum serve_end end = SERVE_REST_FROM_KERNEL;
	while (*done < total) {
		off64_t p = start + (off64_t)*done;
		struct pf_chunk *c = chunk_at(s, p);
		if (!c)
			break;
		if (c->state == CHUNK_QUEUED || c->state == CHUNK_READING) {
			if (!wait_from)
				wait_from = pf_now_ns();
			if (c->state == CHUNK_QUEUED && s->inflight < s->max_inflight) {
				chunk_claim(s, c);
				chunk_read_now(s, c);
			} else {
				pthread_cond_wait(&s->changed, &s->lock);
			}
			continue;
		}
		off64_t valid_end = c->off + (off64_t)c->len;
		if (p < valid_end) {
			size_t n = (size_t)(valid_end - p);
			if (n > total - *done)
				n = total - *done;
			cursor_copy(cur, c->buf + (p - c->off), n);
			c->used += n;
			*done += n;
			continue;
		}
		if (c->err) {
			/* The kernel returns the data before an error, then the
			 * error: the same here. The error is handed over once, by
			 * the read that starts at it; later reads retry it. */
			if (*done == 0) {
				*err = c->err;
				c->err = 0;
				PF_STAT_ADD(errors_forwarded, 1);
			}
			end = SERVE_STOP;
		}
		break; /* end of file as far as the worker saw: ask the kernel */
	}
	if (wait_from)
		PF_STAT_ADD(wait_ns, pf_now_ns() - wait_from);
	return end;
}

/* True when the file is no longer as it was when the stream started: it
 * was written (mtime), truncated or replaced in place (size, ctime). Asked
 * of the attributes the client caches at each served read, and of the
 * server itself (ask_server) once they are PF_MAX_STALE_NS old. When the
 * kernel will not tell, the file counts as unchanged. */
static bool file_changed(int fd, const struct stat *then, bool ask_server)
{
	struct statx now;
	int flags = AT_EMPTY_PATH | (ask_server ? AT_STATX_FORCE_SYNC : AT_STATX_SYNC_AS_STAT);
	if (statx(fd, "", flags, STATX_SIZE | STATX_MTIME | STATX_CTIME, &now) != 0)
		return false;
	return (off64_t)now.stx_size != then->st_size || now.stx_mtime.tv_sec != then->st_mtim.tv_sec ||
	       now.stx_mtime.tv_nsec != (uint32_t)then->st_mtim.tv_nsec ||
	       now.stx_ctime.tv_sec != then->st_ctim.tv_sec ||
	       now.stx_ctime.tv_nsec != (uint32_t)then->st_ctim.tv_nsec;
}

/* Whether the stream's data no longer stands for the file (slot lock held,
 * s->lock not). A client caches attributes (FUSE, NFS: seconds), so a
 * change the server made is confirmed at least every PF_MAX_STALE_NS; a
 * shrink is also seen by the reads ahead themselves (note_chunk_end). */
static bool stream_stale(struct pf_stream *s, int fd)
{
	uint64_t now = pf_now_ns();
	bool ask_server = now - s->validated_ns > PF_MAX_STALE_NS;
	if (file_changed(fd, &s->version, ask_server))
		return true;
	if (ask_server)
		s->validated_ns = now;
	return false;
}

/* Drops the stream of a reader that left it (slot lock held). */
static void stream_drop(struct pf_fd *slot, int fd, off64_t at, const char *why)
{
	PF_LOG(PF_LOG_INFO, "fd %d: read at %lld %s; stream dropped", fd, (long long)at, why);
	PF_STAT_ADD(streams_dropped, 1);
	stream_detach(slot, false);
}

/* Reads the rest of a request the window could not serve from the kernel. */
static void read_rest(int fd, struct iov_cursor *cur, size_t total, off64_t start, size_t *done,
		      int *err)
{
	ssize_t r = cursor_pread(fd, cur, total - *done, start + (off64_t)*done);
	if (r < 0) {
		if (*done == 0)
			*err = errno;
	} else {
		*done += (size_t)r;
		PF_STAT_ADD(bytes_sync, r);
	}
}

/* The reader moved on to pos: retire what it passed, schedule more, and
 * note a whole file read from its start (slot and s->lock held). */
static void stream_moved(struct pf_stream *s, off64_t pos, bool at_eof)
{
	s->pos = pos;
	if (s->pos > s->eof_hint)
		s->eof_hint = PF_OFF_MAX; /* the file grew */
	if (at_eof && s->from_start && s->served > 0)
		__atomic_store_n(&whole_file_reader, 1, __ATOMIC_RELAXED);
	stream_advance(s);
}

/* A pread more than a chunk ahead of the reader, which the next read does
 * not go on from: a scanner looking at an index page before it goes on with
 * its leaves (sqlite), served from the window without moving the reader's
 * position, which would retire the chunks it comes back to (s->lock held). */
static bool glance_ahead(struct pf_stream *s, const struct pf_read_req *req, off64_t start,
			 off64_t end)
{
	bool ahead = req->offset != PF_AT_FILE_OFFSET && start > s->pos + (off64_t)s->chunk_size;
	bool goes_on = s->glance_end && start >= s->glance_end;
	s->glance_end = ahead && !goes_on ? end : 0;
	return ahead && !goes_on;
}

/* A pread outside the window that leaves the stream alone: the file offset
 * did not move, and an index or header read elsewhere does not end a
 * sequential reader, unless it happens PF_MAX_MISSES times in a row
 * (s->lock held). */
static bool stray_pread(struct pf_stream *s, const struct pf_read_req *req, off64_t start)
{
	if (req->offset == PF_AT_FILE_OFFSET || start == s->pos || chunk_at(s, start))
		return false;
	s->misses++;
	return s->misses < PF_MAX_MISSES;
}

/* A read of a descriptor with a stream (slot lock held). */
static ssize_t stream_read(struct pf_fd *slot, int fd, const struct pf_read_req *req,
			   size_t total)
{
	struct pf_stream *s = slot->stream;
	off64_t start = req->offset;
	if (start == PF_AT_FILE_OFFSET) {
		/* Claim the range first: other users of the open file
		 * description see the offset move exactly as for read(). */
		off64_t end = pf_libc.lseek64(fd, (off64_t)total, SEEK_CUR);
		if (end < 0)
			return pass_through(fd, req);
		start = end - (off64_t)total;
	}

	struct iov_cursor cur = { req->iov, req->iovcnt, 0, 0 };
	size_t done = 0;
	int err = 0;
	enum serve_end end = SERVE_REST_FROM_KERNEL;

	bool stale = stream_stale(s, fd);
	pthread_mutex_lock(&s->lock);
	stale = stale || s->shrunk;
	if (!stale && stray_pread(s, req, start)) {
		pthread_mutex_unlock(&s->lock);
		return pass_through(fd, req);
	}
	if (stale || (start != s->pos && !chunk_at(s, start))) {
		/* The file changed: the kernel has it as it is now. Or a
		 * seek elsewhere: not a sequential reader any more. */
		pthread_mutex_unlock(&s->lock);
		stream_drop(slot, fd, start, stale ? "after the file changed" : "outside the window");
		s = NULL;
	} else {
		s->misses = 0;
		end = serve_from_window(s, start, total, &cur, &done, &err);
		s->served += done;
		PF_STAT_ADD(bytes_served, done);
		pthread_mutex_unlock(&s->lock);
		if (err) {
			/* The storage failed there: from now on the kernel
			 * answers every read, as without the library. */
			stream_drop(slot, fd, start, "at a read error");
			s = NULL;
		}
	}

	if (done < total && end == SERVE_REST_FROM_KERNEL)
		read_rest(fd, &cur, total, start, &done, &err);

	if (s) {
		pthread_mutex_lock(&s->lock);
		if (!glance_ahead(s, req, start, start + (off64_t)done))
			stream_moved(s, start + (off64_t)done, done == 0 && err == 0);
		pthread_mutex_unlock(&s->lock);
	}

	if (req->offset == PF_AT_FILE_OFFSET && done != total)
		pf_libc.lseek64(fd, start + (off64_t)done, SEEK_SET);
	if (err && done == 0) {
		errno = err;
		return -1;
	}
	return (ssize_t)done;
}

/* At a descriptor's first read (slot lock held): true when none of its
 * reads can ever be prefetched: not a regular file, or (by default) a file
 * on a local block device. Its reads then skip the lock from the next one
 * on, which random readers, who never reach try_engage, would otherwise pay
 * on every call. Else notes whether the reads start at the file's
 * beginning: a stream that then reaches its end read the whole file. */
static bool first_look(struct pf_fd *slot, int fd, const struct pf_read_req *req)
{
	if (slot->flags & PF_FDF_LOOKED_AT)
		return false;
	slot->flags |= PF_FDF_LOOKED_AT;
	struct stat st;
	if (fstat(fd, &st) != 0 || pf_excluded_file(&st))
		return true;
	off64_t at = req->offset;
	if (at == PF_AT_FILE_OFFSET)
		at = pf_libc.lseek64(fd, 0, SEEK_CUR);
	if (at == 0)
		slot->flags |= PF_FDF_FROM_START;
	slot->next_off = at;
	return false;
}

/* Where a read lands against the last one's end. read() lands where the
 * offset is: a seek in between was judged by on_seek. */
enum read_step { STEP_EXACT, STEP_FORWARD, STEP_ELSEWHERE };

static enum read_step read_step(const struct pf_fd *slot, const struct pf_read_req *req)
{
	off64_t gap = req->offset - slot->next_off;
	if (req->offset == PF_AT_FILE_OFFSET || gap == 0)
		return STEP_EXACT;
	return slot->next_off >= 0 && gap > 0 && gap <= PF_SKIP_MAX ? STEP_FORWARD : STEP_ELSEWHERE;
}

static void count_step(struct pf_fd *slot, enum read_step step)
{
	if (step == STEP_ELSEWHERE) {
		slot->seq_reads = 1;
		slot->flags &= (uint8_t)~PF_FDF_SKIPPED;
		return;
	}
	if (step == STEP_FORWARD)
		slot->flags |= PF_FDF_SKIPPED;
	slot->seq_reads++;
}

/* Reads in a row before a stream: a run with skips forward needs more of
 * them, so that a random reader, whose next read lands ahead now and then,
 * does not look like one. */
static unsigned run_needed(const struct pf_fd *slot, const struct pf_settings *cfg)
{
	if (!(slot->flags & PF_FDF_SKIPPED) || cfg->min_sequential >= PF_SKIP_RUN)
		return cfg->min_sequential;
	return PF_SKIP_RUN;
}

/* Reads of at least PF_SPLIT_MIN are split in pieces of at least
 * PF_SPLIT_PIECE, at most one per worker (sort reads its whole input in
 * one read()). */
#define PF_SPLIT_MIN ((size_t)4 * 1024 * 1024)
#define PF_SPLIT_PIECE ((size_t)1024 * 1024)
#define PF_NOT_SPLIT ((ssize_t)-2)

/* Whether one large read of fd at start may be split (slot lock held):
 * a candidate file, data not cached, storage that takes reads out of
 * order. */
static bool splittable(struct pf_fd *slot, int fd, off64_t start, size_t total, struct stat *st)
{
	const struct pf_settings *cfg = pf_settings();
	if (fstat(fd, st) != 0 || pf_excluded_file(st) || start >= st->st_size)
		return false;
	if (!(slot->flags & PF_FDF_CLASSIFIED)) {
		if (!is_candidate(fd))
			return false;
		slot->flags |= PF_FDF_CLASSIFIED;
	}
	if (cfg->parallel == 0 || (cfg->parallel == PF_PARALLEL_AUTO &&
				   PF_STORAGE_ONE_STREAM(pf_storage_mode(st->st_dev))))
		return false;
	off64_t end = start + (off64_t)total < st->st_size ? start + (off64_t)total : st->st_size;
	return !(cfg->skip_cached && range_cached(fd, start, end)) && pool_start(cfg) == 0;
}

/* The pieces of a split read, read by the workers and this thread
 * straight into the program's buffer: the bytes up to the first piece
 * that came back short, or 0 with the first piece's errno (s->lock held). */
static ssize_t split_wait(struct pf_stream *s, int *err)
{
	struct pf_chunk *c;
	while ((c = first_queued(s)) || s->inflight) {
		if (c) {
			chunk_claim(s, c);
			chunk_read_now(s, c);
		} else {
			pthread_cond_wait(&s->changed, &s->lock);
		}
	}
	size_t done = 0;
	for (unsigned i = 0; i < s->nwin; i++) {
		c = win_chunk(s, i);
		done += c->len;
		off64_t want = s->split_end - c->off;
		if (want > (off64_t)s->chunk_size)
			want = (off64_t)s->chunk_size;
		if ((off64_t)c->len < want) {
			if (done == 0)
				*err = c->err;
			break;
		}
	}
	return (ssize_t)done;
}

/* One large read split into parallel pieces (slot lock held throughout, so
 * that a close waits for the workers' reads of the descriptor). The range
 * is claimed first, as stream_read does. PF_NOT_SPLIT when it does not
 * apply. */
static ssize_t split_read(struct pf_fd *slot, int fd, const struct pf_read_req *req, size_t total)
{
	const struct pf_settings *cfg = pf_settings();
	off64_t start = req->offset == PF_AT_FILE_OFFSET ? slot->next_off : req->offset;
	struct stat st;
	if (req->iovcnt != 1 || total < PF_SPLIT_MIN || start < 0 ||
	    !splittable(slot, fd, start, total, &st))
		return PF_NOT_SPLIT;
	if (req->offset == PF_AT_FILE_OFFSET) {
		off64_t end = pf_libc.lseek64(fd, (off64_t)total, SEEK_CUR);
		if (end < 0)
			return PF_NOT_SPLIT;
		start = end - (off64_t)total;
	}
	unsigned pieces = (unsigned)(total / PF_SPLIT_PIECE);
	if (pieces > cfg->threads)
		pieces = cfg->threads;
	size_t piece = (total / pieces + 4095) & ~(size_t)4095;
	struct pf_stream *s = stream_new(fd, start, &st, cfg, 1);
	if (!s) {
		if (req->offset == PF_AT_FILE_OFFSET)
			pf_libc.lseek64(fd, start, SEEK_SET);
		return PF_NOT_SPLIT;
	}
	s->borrowed = true;
	s->chunk_size = piece;
	s->split_end = start + (off64_t)total;
	mode_set(s, MODE_PARALLEL);
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < pieces && (size_t)i * piece < total; i++) {
		struct pf_chunk *c = &s->chunks[i];
		c->buf = (char *)req->iov[0].iov_base + (size_t)i * piece;
		c->off = start + (off64_t)((size_t)i * piece);
		c->state = CHUNK_QUEUED;
		s->win[s->nwin++] = i;
	}
	runq_push(s);
	int err = 0;
	ssize_t done = split_wait(s, &err);
	s->closing = true;
	PF_STAT_ADD(reads_split, 1);
	PF_STAT_ADD(bytes_served, done);
	stream_unref_locked(s);
	if (req->offset == PF_AT_FILE_OFFSET && done != (ssize_t)total)
		pf_libc.lseek64(fd, start + done, SEEK_SET);
	slot->next_off = start + done;
	if (done == 0 && err) {
		errno = err;
		return -1;
	}
	return done;
}

/* A read of a descriptor without a stream: pass it through, and count
 * sequential reads (slot lock held, dropped during the read itself, which
 * may block for ever on a pipe or socket). */
static ssize_t watched_read(struct pf_fd *slot, int fd, const struct pf_read_req *req,
			    size_t total)
{
	const struct pf_settings *cfg = pf_settings();
	if (slot->state == PF_FD_WATCHING && first_look(slot, fd, req))
		slot->state = PF_FD_IGNORED;
	if (slot->state == PF_FD_WATCHING && total >= PF_SPLIT_MIN) {
		ssize_t r = split_read(slot, fd, req, total);
		if (r != PF_NOT_SPLIT)
			return r;
	}
	enum read_step step = read_step(slot, req);
	if (step != STEP_EXACT)
		slot->flags &= (uint8_t)~PF_FDF_FROM_START;
	off64_t at = req->offset == PF_AT_FILE_OFFSET ? slot->next_off : req->offset;
	pthread_mutex_unlock(&slot->lock);
	ssize_t r = pass_through(fd, req);
	int saved = errno;
	pthread_mutex_lock(&slot->lock);
	if (slot->state == PF_FD_WATCHING && r > 0) {
		count_step(slot, step);
		slot->next_off = at >= 0 ? at + r : -1;
		if (slot->seq_reads >= run_needed(slot, cfg) || (slot->flags & PF_FDF_SEQ_ADVICE))
			/* read(): where the kernel says, which another descriptor
			 * of the same open file may have moved. */
			try_engage(slot, fd, req->offset == PF_AT_FILE_OFFSET ? -1 : slot->next_off);
	}
	errno = saved;
	return r;
}

/* A read of data found in the page cache (PF_FD_CACHED), counted before it
 * is made, so that the slot lock is taken once per read, not twice (a
 * short read at the end of the file counts a few bytes too many): wc -l
 * (16 KiB reads) of a cached FUSE file, +3.2% -> -0.1% (40 alternated
 * runs). After a window's worth, the next read looks at the cache again
 * (slot lock held). */
static void cached_read_counted(struct pf_fd *slot, const struct pf_read_req *req, size_t total)
{
	if ((uint64_t)total < slot->bypass_left) {
		slot->bypass_left -= (uint64_t)total;
		return;
	}
	slot->state = PF_FD_WATCHING;
	slot->seq_reads = (uint16_t)(pf_settings()->min_sequential - 1);
	slot->next_off = req->offset == PF_AT_FILE_OFFSET ? -1 : req->offset + (off64_t)total;
}

static size_t request_size(const struct pf_read_req *req, bool *valid)
{
	size_t total = 0;
	*valid = req->iovcnt > 0;
	for (int i = 0; i < req->iovcnt; i++) {
		if (req->iov[i].iov_len > (size_t)SSIZE_MAX - total) {
			*valid = false; /* the kernel answers EINVAL */
			return 0;
		}
		total += req->iov[i].iov_len;
	}
	return total < PF_MAX_RW ? total : PF_MAX_RW;
}

ssize_t pf_read_fd(int fd, const struct pf_read_req *req)
{
	/* fileahead.c (issue 15): a file fetched before its open answers its
	 * first reads; one load when there is none. */
	ssize_t ahead;
	if (pf_files_read(fd, req, &ahead))
		return ahead;
	struct pf_fd *slot = pf_fd_find(fd);
	if (slot && __atomic_load_n(&slot->state, __ATOMIC_RELAXED) == PF_FD_IGNORED)
		return pass_through(fd, req);
	bool valid;
	size_t total = request_size(req, &valid);
	if (!valid || total == 0 || (req->offset < 0 && req->offset != PF_AT_FILE_OFFSET))
		return pass_through(fd, req);
	/* From here on, a signal handler's read passes straight through
	 * (pf_active), whatever this thread is in the middle of. */
	pf_in_library = 1;
	if (!slot && !(slot = pf_fd_get(fd))) {
		ssize_t r = pass_through(fd, req);
		pf_in_library = 0;
		return r;
	}
	pthread_mutex_lock(&slot->lock);
	ssize_t r;
	switch (slot->state) {
	case PF_FD_STREAMING:
		r = stream_read(slot, fd, req, total);
		break;
	case PF_FD_CACHED:
		cached_read_counted(slot, req, total);
		/* fall through */
	case PF_FD_IGNORED:
		pthread_mutex_unlock(&slot->lock);
		r = pass_through(fd, req);
		pf_in_library = 0;
		return r;
	default:
		r = watched_read(slot, fd, req, total);
		break;
	}
	int saved = errno;
	pthread_mutex_unlock(&slot->lock);
	pf_in_library = 0;
	errno = saved;
	return r;
}

/* --- descriptor events ---------------------------------------------------------------- */

/* Forgets everything about a slot (slot lock held). */
static void slot_reset(struct pf_fd *slot)
{
	stream_detach(slot, true);
	slot->state = PF_FD_WATCHING;
	slot->flags = 0;
	slot->seq_reads = 0;
	slot->next_off = 0;
	slot->bypass_left = 0;
}

/* Runs fn on the slot of fd under its lock, if the slot exists. */
static void with_slot(int fd, void (*fn)(struct pf_fd *slot, off64_t arg), off64_t arg)
{
	struct pf_fd *slot = pf_fd_find(fd);
	if (!slot)
		return;
	int saved = errno;
	pf_in_library = 1;
	pthread_mutex_lock(&slot->lock);
	fn(slot, arg);
	pthread_mutex_unlock(&slot->lock);
	pf_in_library = 0;
	errno = saved;
}

/* Forgets the slot; then, given the descriptor of a file just opened for
 * reading (or -1), prefetches it at once. */
static void on_new_file(struct pf_fd *slot, off64_t fd_to_engage)
{
	slot_reset(slot);
	if (fd_to_engage >= 0) {
		slot->flags |= PF_FDF_FROM_START; /* a file just opened is at offset 0 */
		struct pf_stream *s = try_engage(slot, (int)fd_to_engage, 0);
		if (s) {
			s->speculative = true;
			PF_STAT_ADD(streams_at_open, 1);
		}
	}
}

void pf_fd_opened(int fd, bool for_reading)
{
	/* Only a process that reads whole files gets a slot made for this. */
	bool engage = for_reading && __atomic_load_n(&whole_file_reader, __ATOMIC_RELAXED) &&
		      pf_fd_get(fd);
	with_slot(fd, on_new_file, engage ? fd : -1);
}

void pf_fd_closing(int fd)
{
	with_slot(fd, on_new_file, -1);
}

static void reset_slot_cb(int fd, struct pf_fd *slot, void *arg)
{
	(void)fd;
	(void)arg;
	if (slot->state == PF_FD_WATCHING && !slot->stream && !slot->flags && !slot->seq_reads)
		return; /* nothing to forget; skip the lock */
	pthread_mutex_lock(&slot->lock);
	slot_reset(slot);
	pthread_mutex_unlock(&slot->lock);
}

void pf_fd_closing_range(unsigned first, unsigned last)
{
	int saved = errno;
	pf_in_library = 1;
	pf_fd_for_each(first, last, reset_slot_cb, NULL);
	pf_in_library = 0;
	errno = saved;
}

/* The file offset moved to `to` (slot lock held). A skip forward of at
 * most PF_SKIP_MAX keeps a forward reader (tar over a member's data, dd
 * skip=), and so does a stream: the next read tells whether it landed in
 * the window. Anything else starts the count again. */
static void on_seek(struct pf_fd *slot, off64_t to)
{
	if (slot->state == PF_FD_CACHED)
		slot->state = PF_FD_WATCHING;
	slot->flags &= (uint8_t)~PF_FDF_FROM_START;
	if (slot->next_off >= 0 && to >= slot->next_off && to - slot->next_off <= PF_SKIP_MAX) {
		if (to > slot->next_off)
			slot->flags |= PF_FDF_SKIPPED;
	} else {
		slot->seq_reads = 0;
		slot->flags &= (uint8_t)~PF_FDF_SKIPPED;
	}
	slot->next_off = to;
}

void pf_fd_seeked(int fd, off64_t to)
{
	struct pf_fd *slot = pf_fd_find(fd);
	if (slot && __atomic_load_n(&slot->state, __ATOMIC_RELAXED) == PF_FD_IGNORED)
		return; /* nothing to reset; an advice or a reopen changes the state */
	with_slot(fd, on_seek, to);
}

static void on_advice(struct pf_fd *slot, off64_t advice)
{
	switch (advice) {
	case POSIX_FADV_RANDOM:
	case POSIX_FADV_DONTNEED:
		/* RANDOM: read-ahead is pure waste. DONTNEED: the program
		 * wants cached data gone, and ours with it. Until NORMAL or
		 * SEQUENTIAL, nothing is prefetched for this descriptor. */
		stream_detach(slot, false);
		slot->state = PF_FD_IGNORED;
		slot->flags = (uint8_t)((slot->flags & ~PF_FDF_SEQ_ADVICE) | PF_FDF_RANDOM_ADVICE);
		break;
	case POSIX_FADV_SEQUENTIAL:
	case POSIX_FADV_NORMAL:
		if (slot->flags & PF_FDF_RANDOM_ADVICE) {
			slot->state = PF_FD_WATCHING; /* the program takes RANDOM back */
			slot->flags &= (uint8_t)~PF_FDF_RANDOM_ADVICE;
		}
		if (advice == POSIX_FADV_SEQUENTIAL)
			slot->flags |= PF_FDF_SEQ_ADVICE;
		else
			slot->flags &= (uint8_t)~PF_FDF_SEQ_ADVICE;
		break;
	default:
		break;
	}
}

void pf_fd_advised(int fd, int advice)
{
	/* Advice given before the first read must count too: make the slot. */
	if (advice != POSIX_FADV_NORMAL && advice != POSIX_FADV_WILLNEED &&
	    advice != POSIX_FADV_NOREUSE && !pf_fd_get(fd))
		return;
	with_slot(fd, on_advice, advice);
}

/* Stops prefetching for a descriptor whose open file description now has
 * O_DIRECT: its reads must reach the kernel, which checks alignment. */
static void stop_if_direct(int fd, struct pf_fd *slot, void *arg)
{
	(void)arg;
	if (slot->state != PF_FD_STREAMING && slot->state != PF_FD_CACHED)
		return;
	pthread_mutex_lock(&slot->lock);
	int flags = pf_libc.fcntl(fd, F_GETFL);
	if (flags >= 0 && (flags & O_DIRECT)) {
		stream_detach(slot, true);
		slot->state = PF_FD_IGNORED;
		slot->flags &= (uint8_t)~PF_FDF_CLASSIFIED;
	}
	pthread_mutex_unlock(&slot->lock);
}

void pf_fd_flags_changed(int fd, int flags)
{
	(void)fd;
	if (!(flags & O_DIRECT))
		return;
	/* File status flags belong to the open file description, which dup'd
	 * descriptors share: look at every descriptor being prefetched. */
	int saved = errno;
	pf_in_library = 1;
	pf_fd_for_each(0, PF_FD_MAX - 1, stop_if_direct, NULL);
	pf_in_library = 0;
	errno = saved;
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

static void child_reset_slot(int fd, struct pf_fd *slot, void *arg)
{
	(void)fd;
	(void)arg;
	/* Another thread may have held the lock when the parent forked. */
	pthread_mutex_init(&slot->lock, NULL);
	slot->stream = NULL;
	if (slot->state == PF_FD_STREAMING)
		slot->state = PF_FD_WATCHING;
	slot->seq_reads = 0;
}

/* The child has one thread and none of the workers: every stream is
 * dropped (their memory freed) and the pool restarts on demand. */
void pf_engine_atfork_child(void)
{
	struct pf_stream *s = pool.all;
	while (s) {
		struct pf_stream *next = s->all_next;
		for (unsigned i = 0; i < s->nslots && !s->borrowed; i++)
			free(s->chunks[i].buf);
		free(s);
		s = next;
	}
	/* Locked by pf_engine_atfork_prepare, in this very thread. */
	pthread_mutex_unlock(&pool.lock);
	pthread_cond_init(&pool.work, NULL);
	pool.head = pool.tail = pool.all = NULL;
	pool.state = 0;
	live_streams = 0;
	pf_fd_for_each(0, PF_FD_MAX - 1, child_reset_slot, NULL);
	pf_stats_reset();
	pf_in_library = 0;
}

int pf_active(void)
{
	static int enabled; /* 0 unknown, 1 on, -1 off */
	if (__builtin_expect(pf_in_library, 0))
		return 0;
	int e = __atomic_load_n(&enabled, __ATOMIC_RELAXED);
	if (__builtin_expect(e == 0, 0)) {
		pf_in_library = 1;
		e = pf_settings()->disabled ? -1 : 1;
		if (pf_libc_bind() == 0)
			pf_stats_init();
		pf_in_library = 0;
		__atomic_store_n(&enabled, e, __ATOMIC_RELAXED);
	}
	return e > 0;
}
