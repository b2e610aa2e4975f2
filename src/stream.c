/* A stream: the chunks read ahead of one descriptor's reader, the window
 * they form in file order, and each stream's share of the memory. */
#include "config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libc.h"
#include "stats.h"
#include "stream.h"
#include "thread.h"

/* Bounds the chunk bookkeeping of one stream whatever WINDOW/CHUNK say. */
#define PF_MAX_DEPTH 1024u
/* The window a fresh stream starts with, in chunks. */
#define PF_INITIAL_DEPTH 8u
#define PF_OFF_MAX ((off64_t)LLONG_MAX)

/* Set once this process has read a whole file from its start to its end
 * through a stream (md5sum a b c, tar, sort): from then on a file opened
 * for reading is prefetched at open, keeping the pipeline full across the
 * switch. Cleared when such a speculative stream goes unused. */
static int whole_file_reader;

/* Descriptors with a stream: each may hold at most its share of
 * PREFETCH_MAX_MEMORY, so that a hundred files read at once all move; a
 * descriptor's two streams split its share. */
static unsigned live_streams;

static unsigned fair_depth(const struct pf_stream *s)
{
	unsigned n = __atomic_load_n(&live_streams, __ATOMIC_RELAXED);
	uint64_t share = pf_settings()->max_memory / (n ? n : 1) / s->shares / s->chunk_size;
	return share ? (unsigned)(share < PF_MAX_DEPTH ? share : PF_MAX_DEPTH) : 1;
}

bool pf_whole_file_reader(void)
{
	return __atomic_load_n(&whole_file_reader, __ATOMIC_RELAXED);
}

/* A stream's size, with its chunks and window after it. */
static size_t stream_bytes(unsigned nslots)
{
	return sizeof(struct pf_stream) + nslots * (sizeof(struct pf_chunk) + sizeof(unsigned));
}

/* Unmaps a stream's buffers and the stream; release: gives their bytes
 * back to the memory count (not in a fork child, whose count restarts). */
static void stream_unmap(struct pf_stream *s, bool release)
{
	for (unsigned i = 0; i < s->nslots && !s->borrowed; i++) {
		if (s->chunks[i].buf) {
			pf_pages_free(s->chunks[i].buf, s->chunk_size);
			if (release)
				pf_memory_release(s->chunk_size);
		}
	}
	pf_pages_free(s, stream_bytes(s->nslots));
}

static void stream_free(struct pf_stream *s)
{
	pf_pool_untrack(s);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	stream_unmap(s, true);
}

/* Drops a reference and s->lock; frees the stream with the last one. */
void pf_stream_unref_locked(struct pf_stream *s)
{
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&s->lock);
	if (last)
		stream_free(s);
}

struct pf_stream *pf_stream_new(int fd, off64_t pos, const struct stat *version,
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
	struct pf_stream *s = pf_pages_alloc(stream_bytes(nslots));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->changed, NULL);
	s->fd = fd;
	s->refs = 1;
	s->shares = 1;
	s->chunk_size = chunk;
	s->max_depth = max_depth;
	s->depth = max_depth < PF_INITIAL_DEPTH ? max_depth : PF_INITIAL_DEPTH;
	s->nslots = nslots;
	s->pos = pos;
	s->next_off = pos;
	s->land_at = -1;
	s->eof_hint = version->st_size;
	s->version = *version;
	s->validated_ns = pf_now_ns();
	s->win = (unsigned *)&s->chunks[nslots];
	pf_pool_track(s);
	return s;
}

static int free_slot(struct pf_stream *s)
{
	for (unsigned i = 0; i < s->nslots; i++)
		if (s->chunks[i].state == CHUNK_FREE && !s->chunks[i].stale)
			return (int)i;
	return -1;
}

/* Gives a free chunk a buffer, within the memory cap; false if it cannot. */
static bool chunk_buffer(struct pf_stream *s, struct pf_chunk *c, const struct pf_settings *cfg)
{
	if (c->buf)
		return true;
	if (pf_memory_reserve(s->chunk_size, cfg->max_memory) != 0)
		return false;
	/* Page aligned: a direct_io read goes to the storage in requests of
	 * whole pages of the buffer (malloc's large blocks start 16 bytes into
	 * a page: 2 MiB chunks took 3 requests each of slowfs, not 2). */
	c->buf = pf_pages_alloc(s->chunk_size);
	if (!c->buf) {
		pf_memory_release(s->chunk_size);
		return false;
	}
	s->nbufs++;
	return true;
}

/* Whether the window may grow past next_off: before the end of the file,
 * or, going backward, after its start. */
static bool more_to_fetch(const struct pf_stream *s)
{
	return s->backward ? s->next_off > 0 : s->next_off < s->eof_hint;
}

/* Places a chunk at the window's far end and moves next_off past it. */
static void chunk_place(struct pf_stream *s, struct pf_chunk *c)
{
	if (s->backward) {
		off64_t size = (off64_t)s->chunk_size;
		c->off = s->next_off > size ? s->next_off - size : 0;
		c->want = (size_t)(s->next_off - c->off);
		s->next_off = c->off;
		return;
	}
	c->off = s->next_off;
	c->want = s->stride ? s->land_span : s->chunk_size;
	s->next_off += s->stride ? s->stride : (off64_t)s->chunk_size;
}

/* Schedules chunks until the window is full (s->lock held). */
void pf_stream_fill(struct pf_stream *s)
{
	const struct pf_settings *cfg = pf_settings();
	unsigned limit = fair_depth(s);
	if (limit > s->depth)
		limit = s->depth;
	bool queued = false;
	while (!s->closing && !s->failed && s->nwin < limit && more_to_fetch(s)) {
		int idx = free_slot(s);
		if (idx < 0)
			break;
		struct pf_chunk *c = &s->chunks[idx];
		if (!chunk_buffer(s, c, cfg))
			break;
		chunk_place(s, c);
		c->len = c->used = 0;
		c->err = 0;
		c->state = CHUNK_QUEUED;
		s->win[s->nwin++] = (unsigned)idx;
		queued = true;
	}
	if (queued)
		pf_runq_push(s);
}

/* A chunk became free: keep its buffer for the next chunk, unless the
 * stream holds more than its share of memory (s->lock held). */
void pf_chunk_free(struct pf_stream *s, struct pf_chunk *c)
{
	c->state = CHUNK_FREE;
	if (c->buf && s->nbufs > fair_depth(s)) {
		pf_pages_free(c->buf, s->chunk_size);
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
		pf_chunk_free(s, c);
		break;
	case CHUNK_READING:
		c->stale = true; /* its reader frees it */
		break;
	case CHUNK_DONE:
		if (c->len > c->used)
			PF_STAT_ADD(bytes_wasted, c->len - c->used);
		pf_chunk_free(s, c);
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

/* Whether the reader moved past a chunk: it is below pos, or, going
 * backward, at or above it. */
static bool chunk_passed(const struct pf_stream *s, const struct pf_chunk *c)
{
	return s->backward ? c->off >= s->pos : c->off + (off64_t)c->want <= s->pos;
}

/* Retires the chunks the reader has moved past and grows the window for
 * each one it consumed whole (s->lock held). */
static void stream_advance(struct pf_stream *s)
{
	unsigned n = 0;
	while (n < s->nwin) {
		struct pf_chunk *c = win_chunk(s, n);
		if (!chunk_passed(s, c))
			break;
		/* Read or skipped over: the reader is moving on. */
		if (c->state == CHUNK_DONE && s->depth < s->max_depth)
			s->depth++;
		chunk_retire(s, c);
		n++;
	}
	if (n)
		win_drop_front(s, n);
	if (s->nwin == 0 && (s->backward ? s->next_off > s->pos : s->next_off < s->pos)) {
		s->next_off = s->pos; /* the reader overtook the window */
		s->stride = 0;
	}
	pf_stream_fill(s);
}

static void window_clear(struct pf_stream *s)
{
	for (unsigned i = 0; i < s->nwin; i++)
		chunk_retire(s, win_chunk(s, i));
	s->nwin = 0;
}

/* Bytes fetched around each landing of reads of len bytes. */
static size_t land_span(const struct pf_stream *s, off64_t len)
{
	size_t span = len > 0 && (size_t)len > PF_LAND_SPAN / 4 ? ((size_t)len * 4 + 4095) & ~(size_t)4095
								 : PF_LAND_SPAN;
	return span < s->chunk_size ? span : s->chunk_size;
}

/* Where the next span goes for a reader that just read [start, end): the
 * landing after the window's last, centred on it (the steps of tar over
 * members of one size vary by a record); never before the end of the
 * window's last span. */
static void land_next(struct pf_stream *s, off64_t start, off64_t end)
{
	off64_t last_end = start;
	unsigned ahead = 0;
	for (unsigned i = 0; i < s->nwin; i++) {
		struct pf_chunk *c = win_chunk(s, i);
		ahead += c->off > start;
		last_end = c->off + (off64_t)c->want;
	}
	off64_t early = ((off64_t)s->land_span - (end - start)) / 2;
	off64_t at = (start + (off64_t)(ahead + 1) * s->stride - early) & ~(off64_t)4095;
	s->next_off = at > last_end ? at : last_end;
}

/* Whether a step of gap bytes, reading [start, end), reads little of it. */
static bool sparse_step(off64_t gap, size_t span, off64_t start, off64_t end)
{
	return gap >= 2 * (off64_t)span && (end - start) * PF_LAND_SPARSE <= gap;
}

/* The window after a landing at [start, end), `alike` the last: follows
 * the landings while they are steady, else the bytes ahead. */
static void land_follow(struct pf_stream *s, off64_t start, off64_t end, off64_t gap, size_t span,
			bool alike)
{
	if (s->stride && !alike) {
		s->stride = 0; /* lost the step: the bytes ahead, from here */
		window_clear(s);
		s->next_off = end;
	} else if (s->stride) {
		s->stride = (3 * s->stride + gap) / 4; /* follows a drift */
		land_next(s, start, end);
	} else if (s->land_steady >= PF_LAND_STEADY && !s->borrowed) {
		s->stride = gap;
		s->land_span = span;
		pf_probe_restart(s);
		window_clear(s); /* the bytes in between: not wanted */
		land_next(s, start, end);
		pf_stream_pattern(s, PF_PATTERN_LANDING);
	}
}

/* The reader read [start, end) and goes on from there (s->lock held, before
 * pf_stream_moved): a few steps alike, each read a small part of its step,
 * and the window follows the landings; a step unlike the last, and it is
 * contiguous again. */
void pf_stream_landed(struct pf_stream *s, off64_t start, off64_t end)
{
	if (s->backward)
		return;
	size_t span = s->stride ? s->land_span : land_span(s, end - start);
	off64_t gap = s->land_at >= 0 ? start - s->land_at : 0;
	off64_t diff = gap > s->land_gap ? gap - s->land_gap : s->land_gap - gap;
	bool alike = sparse_step(gap, span, start, end) && diff <= (off64_t)span / 8;
	s->land_steady = alike ? (uint8_t)(s->land_steady + (s->land_steady < UINT8_MAX)) : 0;
	s->land_at = start;
	s->land_gap = gap;
	land_follow(s, start, end, gap, span, alike);
}

void pf_stream_seed_landing(struct pf_stream *s, off64_t start, off64_t end, off64_t gap,
			    unsigned alike)
{
	size_t span = land_span(s, end - start);
	s->land_at = start;
	s->land_gap = gap;
	s->land_steady = sparse_step(gap, span, start, end) ? (uint8_t)alike : 0;
	land_follow(s, start, end, gap, span, false);
}

/* The reader moved on to pos: retire what it passed, schedule more, and
 * note a whole file read from its start (slot and s->lock held). */
void pf_stream_moved(struct pf_stream *s, off64_t pos, bool at_eof)
{
	s->started |= pos != s->pos;
	s->pos = pos;
	if (s->pos > s->eof_hint)
		s->eof_hint = PF_OFF_MAX; /* the file grew */
	if (at_eof && s->from_start && s->served > 0)
		__atomic_store_n(&whole_file_reader, 1, __ATOMIC_RELAXED);
	stream_advance(s);
}

/* What a chunk's end says of the file (s->lock held). An error: the storage
 * failed, and reads ahead would only meet it again (a dead server answers
 * them with another errno than the program's own read got). A short read
 * before the size the file had: it shrank, and what was read ahead past
 * its new end must never be served, whatever the cached attributes say. */
void pf_note_chunk_end(struct pf_stream *s, const struct pf_chunk *c)
{
	off64_t end = c->off + (off64_t)c->len;
	if (c->err) {
		s->failed = true;
		s->eof_hint = c->off;
	} else if (c->len < c->want) {
		if (end < s->version.st_size)
			s->shrunk = true;
		if (end < s->eof_hint)
			s->eof_hint = end;
	}
}

/* A backward window's chunk holding pos: chunk i ends i chunks below the
 * first's end (only the last, at the file's start, may be shorter). */
static struct pf_chunk *chunk_below(struct pf_stream *s, off64_t pos)
{
	struct pf_chunk *first = win_chunk(s, 0);
	off64_t top = first->off + (off64_t)first->want;
	if (pos >= top || pos < s->next_off)
		return NULL;
	unsigned i = (unsigned)((top - 1 - pos) / (off64_t)s->chunk_size);
	return i < s->nwin ? win_chunk(s, i) : NULL;
}

/* The window's chunk holding pos, or NULL (s->lock held). A landing
 * window has gaps: the last chunk starting at or before pos, if it holds it. */
struct pf_chunk *pf_chunk_at(struct pf_stream *s, off64_t pos)
{
	if (s->nwin && s->backward)
		return chunk_below(s, pos);
	if (s->nwin == 0 || pos < win_chunk(s, 0)->off)
		return NULL;
	if (!s->stride)
		return pos < s->next_off ? win_chunk(s, (unsigned)((pos - win_chunk(s, 0)->off) /
								   (off64_t)s->chunk_size))
					 : NULL;
	unsigned lo = 0, hi = s->nwin;
	while (hi - lo > 1) {
		unsigned mid = lo + (hi - lo) / 2;
		if (win_chunk(s, mid)->off <= pos)
			lo = mid;
		else
			hi = mid;
	}
	struct pf_chunk *c = win_chunk(s, lo);
	return pos < c->off + (off64_t)c->want ? c : NULL;
}

struct pf_chunk *pf_first_queued(struct pf_stream *s)
{
	for (unsigned i = 0; i < s->nwin; i++)
		if (win_chunk(s, i)->state == CHUNK_QUEUED)
			return win_chunk(s, i);
	return NULL;
}

static void stream_share(struct pf_stream *s, unsigned shares)
{
	pthread_mutex_lock(&s->lock);
	s->shares = shares;
	pthread_mutex_unlock(&s->lock);
}

/* A second position ahead of the first: the first stream fetches up to it
 * and no further, as a merge's first run ends where the second starts (its
 * window would otherwise fetch a window's worth of what the second stream
 * served). A reader that goes on past it lifts the cap (pf_stream_moved). */
static void stream_stop_at_second(struct pf_stream *first, const struct pf_stream *second)
{
	pthread_mutex_lock(&first->lock);
	if (!first->backward && !second->backward && first->pos < second->pos &&
	    second->pos < first->eof_hint)
		first->eof_hint = second->pos;
	pthread_mutex_unlock(&first->lock);
}

void pf_stream_attach(struct pf_fd *slot, struct pf_stream *s)
{
	if (slot->stream) {
		slot->stream2 = s;
		stream_share(slot->stream, 2);
		stream_share(s, 2);
		stream_stop_at_second(slot->stream, s);
		return;
	}
	slot->stream = s;
	slot->state = PF_FD_STREAMING;
	__atomic_add_fetch(&live_streams, 1, __ATOMIC_RELAXED);
}

/* With wait_inflight, returns only when no read of the descriptor is in
 * flight, so the caller may close it: a worker must never pread a number
 * that was reused. */
void pf_stream_detach_one(struct pf_fd *slot, struct pf_stream *s, bool wait_inflight)
{
	if (s == slot->stream)
		slot->stream = slot->stream2;
	slot->stream2 = NULL;
	if (slot->stream) {
		stream_share(slot->stream, 1);
	} else {
		if (slot->state == PF_FD_STREAMING)
			slot->state = PF_FD_WATCHING;
		__atomic_sub_fetch(&live_streams, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_lock(&s->lock);
	if (s->speculative && s->served == 0)
		__atomic_store_n(&whole_file_reader, 0, __ATOMIC_RELAXED);
	s->closing = true;
	window_clear(s);
	while (wait_inflight && s->inflight)
		pthread_cond_wait(&s->changed, &s->lock);
	pf_stream_unref_locked(s);
}

void pf_stream_detach(struct pf_fd *slot, bool wait_inflight)
{
	while (slot->stream)
		pf_stream_detach_one(slot, slot->stream, wait_inflight);
}

static uint64_t *pattern_counter(enum stream_pattern p)
{
	switch (p) {
	case PF_PATTERN_SEQUENTIAL: return &pf_stats.streams_sequential;
	case PF_PATTERN_SKIPPING: return &pf_stats.streams_skipping;
	case PF_PATTERN_LANDING: return &pf_stats.streams_landing;
	case PF_PATTERN_SCANNING: return &pf_stats.streams_scanning;
	case PF_PATTERN_BACKWARD: return &pf_stats.streams_backward;
	case PF_PATTERN_SECOND: return &pf_stats.streams_second;
	default: return NULL;
	}
}

/* Counts s under pattern p instead of the one before, when p comes later
 * (slot lock held). */
void pf_stream_pattern(struct pf_stream *s, enum stream_pattern p)
{
	if (p <= s->pattern)
		return;
	uint64_t *was = pattern_counter((enum stream_pattern)s->pattern);
	if (was)
		__atomic_sub_fetch(was, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(pattern_counter(p), 1, __ATOMIC_RELAXED);
	s->pattern = (uint8_t)p;
}

/* In a forked child, which has none of the workers: frees a stream without
 * its locks or the memory count, both left behind by the parent's threads. */
void pf_stream_discard(struct pf_stream *s)
{
	stream_unmap(s, false);
}

/* In a forked child, once every stream is discarded. */
void pf_streams_forget(void)
{
	live_streams = 0;
}
