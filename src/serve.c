/* Reads of a descriptor with a stream: served from the window when they
 * land in it and the file is unchanged, else from the kernel, with the
 * stream dropped when the reader has left it. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"
#include "stats.h"
#include "stream.h"

/* Preads outside the window in a row before a stream is given up. */
#define PF_MAX_MISSES 16u
/* Longest time data read ahead is served without the server confirming the
 * file unchanged (past the client's attribute cache). */
#define PF_MAX_STALE_NS ((uint64_t)1000000000)

/* For read(): moves the file offset past the request before serving it, so
 * that other users of the open file description see it move exactly as for
 * read(). The request's start; -1 when lseek failed. */
off64_t pf_claim_range(int fd, const struct pf_read_req *req, size_t total)
{
	if (req->offset != PF_AT_FILE_OFFSET)
		return req->offset;
	off64_t end = pf_libc.lseek64(fd, (off64_t)total, SEEK_CUR);
	return end < 0 ? -1 : end - (off64_t)total;
}

/* Gives back the part of a claimed range that the read did not return. */
void pf_settle_range(int fd, const struct pf_read_req *req, off64_t start, size_t total,
		     size_t done)
{
	if (req->offset == PF_AT_FILE_OFFSET && done != total)
		pf_libc.lseek64(fd, start + (off64_t)done, SEEK_SET);
}

/* What read() returns: the bytes read, or -1 with err if there were none. */
ssize_t pf_read_result(size_t done, int err)
{
	if (err && done == 0) {
		errno = err;
		return -1;
	}
	return (ssize_t)done;
}

/* --- copying into the caller's iovecs ------------------------------------------------- */

struct iov_cursor {
	const struct iovec *iov;
	int cnt;
	int idx;       /* current element */
	size_t off;    /* bytes of it already filled */
};

/* Room left in the current element, past the full ones; 0 at the end. */
static size_t cursor_room(struct iov_cursor *cur)
{
	while (cur->idx < cur->cnt) {
		size_t room = cur->iov[cur->idx].iov_len - cur->off;
		if (room)
			return room;
		cur->idx++;
		cur->off = 0;
	}
	return 0;
}

static char *cursor_at(const struct iov_cursor *cur)
{
	return (char *)cur->iov[cur->idx].iov_base + cur->off;
}

static void cursor_copy(struct iov_cursor *cur, const char *src, size_t n)
{
	while (n) {
		size_t room = cursor_room(cur);
		if (room == 0)
			break;
		size_t k = n < room ? n : room;
		memcpy(cursor_at(cur), src, k);
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
	while (got < n) {
		size_t room = cursor_room(cur);
		if (room == 0)
			break;
		size_t want = room < n - got ? room : n - got;
		ssize_t r = pf_libc.pread64(fd, cursor_at(cur), want, off + (off64_t)got);
		if (r < 0)
			return got ? (ssize_t)got : -1;
		got += (size_t)r;
		cur->off += (size_t)r;
		if ((size_t)r < want)
			break;
	}
	return (ssize_t)got;
}

/* --- serving from the window ---------------------------------------------------------- */

enum serve_end { SERVE_REST_FROM_KERNEL, SERVE_STOP, SERVE_SUSPECT };

/* One read of a stream: its range, what was copied so far, and the errno
 * to return if nothing was. */
struct serving {
	off64_t start;
	size_t total;
	size_t done;
	int err;
	enum serve_end end;
	struct iov_cursor cur;
};

/* A chunk of the window not read yet: read it here rather than wait for
 * a worker, if the mode allows one more read, else wait (s->lock held). */
static void await_chunk(struct pf_stream *s, struct pf_chunk *c)
{
	if (c->state == CHUNK_QUEUED && s->inflight < s->max_inflight) {
		pf_chunk_claim(s, c);
		pf_chunk_read_now(s, c);
	} else {
		pthread_cond_wait(&s->changed, &s->lock);
	}
}

/* At the end of what a chunk holds: the kernel returns the data before an
 * error, then the error: the same here. The error is handed over once, by
 * the read that starts at it; later reads retry it (s->lock held). */
static enum serve_end chunk_end(struct pf_chunk *c, struct serving *sv)
{
	if (!c->err)
		return SERVE_REST_FROM_KERNEL; /* end of file as far as the worker saw */
	if (sv->done == 0) {
		sv->err = c->err;
		c->err = 0;
		PF_STAT_ADD(errors_forwarded, 1);
	}
	return SERVE_STOP;
}

/* Whether the window may hold zeros that were never the file's (s->lock
 * held): a read ahead of a FUSE file through the page cache failed or came
 * back short. A short FUSE read (a dying sshfs answers 0 bytes) zero-fills
 * its pages and marks them valid; the kernel then cuts the file's size
 * there, but only when no other read of it was in flight meanwhile, so with
 * several in flight the zeros can stay below the size, where the kernel
 * itself serves them. */
static bool window_suspect(const struct pf_stream *s)
{
	return s->zero_fill_risk && (s->failed || s->shrunk);
}

/* Copies what the window holds from sv->start on (s->lock held), and says
 * what to do with the rest: SERVE_STOP, return what was served (with
 * sv->err set if nothing was); SERVE_REST_FROM_KERNEL, read it;
 * SERVE_SUSPECT, read it, and drop the stream. */
static enum serve_end serve_from_window(struct pf_stream *s, struct serving *sv)
{
	uint64_t wait_from = 0;
	enum serve_end end = SERVE_REST_FROM_KERNEL;
	while (sv->done < sv->total) {
		off64_t p = sv->start + (off64_t)sv->done;
		struct pf_chunk *c = pf_chunk_at(s, p);
		if (!c)
			break;
		if (c->state == CHUNK_QUEUED || c->state == CHUNK_READING) {
			if (!wait_from)
				wait_from = pf_now_ns();
			await_chunk(s, c);
			continue;
		}
		if (window_suspect(s)) {
			end = SERVE_SUSPECT;
			break;
		}
		off64_t valid_end = c->off + (off64_t)c->len;
		if (p >= valid_end) {
			end = chunk_end(c, sv);
			break;
		}
		size_t n = (size_t)(valid_end - p);
		if (n > sv->total - sv->done)
			n = sv->total - sv->done;
		cursor_copy(&sv->cur, c->buf + (p - c->off), n);
		c->used += n;
		sv->done += n;
	}
	if (wait_from)
		PF_STAT_ADD(wait_ns, pf_now_ns() - wait_from);
	return end;
}

/* Reads the rest of a request the window could not serve from the kernel. */
static void read_rest(int fd, struct serving *sv)
{
	ssize_t r = cursor_pread(fd, &sv->cur, sv->total - sv->done,
				 sv->start + (off64_t)sv->done);
	if (r < 0) {
		if (sv->done == 0)
			sv->err = errno;
	} else {
		sv->done += (size_t)r;
		PF_STAT_ADD(bytes_sync, r);
	}
}

/* --- whether the stream still stands -------------------------------------------------- */

/* True when the file is no longer as it was when the stream started: it
 * was written (mtime), truncated or replaced in place (size, ctime). sync
 * is AT_STATX_DONT_SYNC (the kernel's cached attributes) or
 * AT_STATX_FORCE_SYNC (the server's). When the kernel will not tell, the
 * file counts as unchanged. */
static bool file_changed(int fd, const struct stat *then, int sync)
{
	struct statx now;
	if (statx(fd, "", AT_EMPTY_PATH | sync, STATX_SIZE | STATX_MTIME | STATX_CTIME, &now) != 0)
		return false;
	return (off64_t)now.stx_size != then->st_size || now.stx_mtime.tv_sec != then->st_mtim.tv_sec ||
	       now.stx_mtime.tv_nsec != (uint32_t)then->st_mtim.tv_nsec ||
	       now.stx_ctime.tv_sec != then->st_ctim.tv_sec ||
	       now.stx_ctime.tv_nsec != (uint32_t)then->st_ctim.tv_nsec;
}

/* Whether the stream's data no longer stands for the file (slot lock held,
 * s->lock not). At each served read, the kernel's view, without a request:
 * a short FUSE read (a dying server) cuts the cached size and leaves zeroed
 * pages behind it, which a refresh of the attributes from a client that
 * still caches the old size would bring back into reach. Then, at least
 * every PF_MAX_STALE_NS, the server's view, past the client's attribute
 * cache. A shrink is also seen by the reads ahead (pf_note_chunk_end). */
static bool stream_stale(struct pf_stream *s, int fd)
{
	if (file_changed(fd, &s->version, AT_STATX_DONT_SYNC))
		return true;
	uint64_t now = pf_now_ns();
	if (now - s->validated_ns <= PF_MAX_STALE_NS)
		return false;
	if (file_changed(fd, &s->version, AT_STATX_FORCE_SYNC))
		return true;
	s->validated_ns = now;
	return false;
}

/* The stream a read at start goes on from: one that expects it there,
 * else one whose window holds it; NULL when none does (slot lock held).
 * Two positions close together each keep their stream. */
static struct pf_stream *stream_at(struct pf_fd *slot, off64_t start)
{
	struct pf_stream *all[2] = { slot->stream, slot->stream2 }, *in_window = NULL;
	for (unsigned i = 0; i < 2 && all[i]; i++) {
		struct pf_stream *s = all[i];
		pthread_mutex_lock(&s->lock);
		bool at_pos = start == s->pos;
		if (!at_pos && !in_window && pf_chunk_at(s, start))
			in_window = s;
		pthread_mutex_unlock(&s->lock);
		if (at_pos)
			return s;
	}
	return in_window;
}

/* Drops a stream whose reader left it (slot lock held); what it read ahead
 * for nothing is counted in bytes_wasted. */
static void stream_drop(struct pf_fd *slot, int fd, struct pf_stream *s, off64_t at,
			const char *why)
{
	PF_LOG(PF_LOG_INFO, "fd %d: read at %lld %s; stream dropped", fd, (long long)at, why);
	PF_STAT_ADD(streams_dropped, 1);
	pf_stream_detach_one(slot, s, false);
}

/* A read no stream served: each stream counts it, and one that
 * PF_MAX_MISSES reads in a row missed is dropped. Returns a stream that
 * missed every read of the current run, or NULL (slot lock held). */
static struct pf_stream *count_miss(struct pf_fd *slot, int fd, off64_t at)
{
	struct pf_stream *all[2] = { slot->stream, slot->stream2 }, *left = NULL;
	for (unsigned i = 0; i < 2 && all[i]; i++) {
		pthread_mutex_lock(&all[i]->lock);
		unsigned misses = ++all[i]->misses;
		pthread_mutex_unlock(&all[i]->lock);
		if (misses >= PF_MAX_MISSES)
			stream_drop(slot, fd, all[i], at, "after many reads outside the window");
		else if (misses >= slot->run.reads && !left)
			left = all[i];
	}
	return left;
}

/* A run of reads outside the streams got long enough for one: it replaces
 * a stream the reader did not come back to during the run (it moved), or
 * is the descriptor's second (two positions read in turn). With two
 * streams both in use, a third position passes through (slot lock held). */
static void engage_run(struct pf_fd *slot, int fd, struct pf_stream *left)
{
	if (left)
		stream_drop(slot, fd, left, slot->run.next_off, "for another run of reads");
	else if (slot->stream2)
		slot->run.reads = 0;
	if (!slot->stream2)
		try_engage(slot, fd, slot->run.next_off);
}

/* A read that lands in no stream's window: from the kernel (a read()'s
 * range is claimed: sv->start), counted in its own run (slot lock held). */
static ssize_t stray_read(struct pf_fd *slot, int fd, const struct pf_read_req *req,
			  struct serving *sv)
{
	enum read_step step = pf_run_step(&slot->run, sv->start);
	if (step == STEP_ELSEWHERE) {
		pf_run_start(&slot->run, sv->start);
		step = STEP_EXACT;
	}
	ssize_t r;
	if (req->offset == PF_AT_FILE_OFFSET) {
		read_rest(fd, sv);
		pf_settle_range(fd, req, sv->start, sv->total, sv->done);
		r = pf_read_result(sv->done, sv->err);
	} else {
		r = pf_pass_through(fd, req);
	}
	int saved = errno;
	if (r > 0)
		pf_run_count(&slot->run, step, sv->start, (size_t)r);
	struct pf_stream *left = count_miss(slot, fd, sv->start);
	if (r > 0 && pf_run_long_enough(&slot->run, pf_settings()))
		engage_run(slot, fd, left);
	errno = saved;
	return r;
}

/* Pages past the window a worker's read may have had the kernel read ahead. */
#define PF_FORGET_SLACK ((off64_t)2 * 1024 * 1024)

/* Drops the streams of a FUSE file whose window may hold a short read's
 * zeros, or that changed (the size a short read cut): once their reads in
 * flight are done, the pages of [from, to) are forgotten, so that the
 * kernel asks the storage again, which answers with the data or the error
 * (slot lock held). */
static void drop_forgetting(struct pf_fd *slot, int fd, off64_t from, off64_t to)
{
	PF_LOG(PF_LOG_INFO, "fd %d: read at %lld after a failed read ahead or a change; stream dropped",
	       fd, (long long)from);
	PF_STAT_ADD(streams_dropped, 1);
	pf_stream_detach(slot, true);
	if (to < from) { /* a backward window lies below its reader */
		off64_t low = to;
		to = from;
		from = low;
	}
	to += PF_FORGET_SLACK;
	pf_libc.posix_fadvise64(fd, from, to - from, POSIX_FADV_DONTNEED);
}

/* --- the read ------------------------------------------------------------------------- */

/* A read more than a chunk ahead of the reader, which the next read does
 * not go on from: a scanner looking at an index page before it goes on with
 * its leaves (sqlite), or a footer read before the file from its start
 * (Parquet, ZIP); served from the window without moving the reader's
 * position, which would retire the chunks it comes back to. By read()
 * only before the reader went on from where the stream started: a skipping
 * reader's read() goes on from its last (s->lock held). */
static bool glance_ahead(struct pf_stream *s, const struct pf_read_req *req, off64_t start,
			 off64_t end)
{
	if (s->stride) {
		s->glance_end = 0; /* landing: every read is far ahead, and goes on */
		return false;
	}
	bool ahead = (req->offset != PF_AT_FILE_OFFSET || !s->started) &&
		     start > s->pos + (off64_t)s->chunk_size;
	bool goes_on = s->glance_end && start >= s->glance_end;
	s->glance_end = ahead && !goes_on ? end : 0;
	if (ahead && !goes_on && req->offset != PF_AT_FILE_OFFSET)
		pf_stream_pattern(s, PF_PATTERN_SCANNING);
	return ahead && !goes_on;
}

/* The same going backward: a read more than a chunk below the reader
 * that the next read does not go on down from (a reverse scan's interior
 * page, sqlite's header) leaves the reader where it was (s->lock held). */
static bool glance_below(struct pf_stream *s, off64_t start)
{
	bool below = start + (off64_t)s->chunk_size < s->pos;
	bool goes_on = s->glance_end && start < s->glance_end;
	s->glance_end = below && !goes_on ? start : 0;
	return below && !goes_on;
}

/* Serves a read that landed in the window (slot and s->lock held; s->lock
 * released). The stream, or NULL when a read error ended it. */
static struct pf_stream *serve_in_window(struct pf_fd *slot, int fd, struct pf_stream *s,
					 struct serving *sv)
{
	s->misses = 0;
	sv->end = serve_from_window(s, sv);
	s->served += sv->done;
	PF_STAT_ADD(bytes_served, sv->done);
	off64_t from = sv->start + (off64_t)sv->done, to = s->next_off;
	pthread_mutex_unlock(&s->lock);
	if (sv->end == SERVE_SUSPECT) {
		drop_forgetting(slot, fd, from, to);
		return NULL;
	}
	if (!sv->err)
		return s;
	/* The storage failed there: from now on the kernel answers every
	 * read, as without the library. */
	stream_drop(slot, fd, s, sv->start, "at a read error");
	return NULL;
}

/* The reader of s went on to sv's end, or glanced there; either way a
 * landing it made (slot lock held). */
static void stream_went_on(struct pf_stream *s, const struct pf_read_req *req,
			   const struct serving *sv)
{
	off64_t end = sv->start + (off64_t)sv->done;
	pthread_mutex_lock(&s->lock);
	if (sv->done)
		pf_stream_landed(s, sv->start, end);
	if (s->backward) {
		if (!glance_below(s, sv->start))
			pf_stream_moved(s, sv->start, false); /* the next read ends before it */
	} else if (!glance_ahead(s, req, sv->start, end)) {
		if (sv->start > s->pos)
			pf_stream_pattern(s, PF_PATTERN_SKIPPING);
		pf_stream_moved(s, end, sv->done == 0 && sv->err == 0);
	}
	pthread_mutex_unlock(&s->lock);
}

/* A read of a descriptor with a stream (slot lock held). */
ssize_t pf_stream_read(struct pf_fd *slot, int fd, const struct pf_read_req *req, size_t total)
{
	struct serving sv = { .start = pf_claim_range(fd, req, total), .total = total,
			      .end = SERVE_REST_FROM_KERNEL, .cur = { req->iov, req->iovcnt, 0, 0 } };
	if (sv.start < 0)
		return pf_pass_through(fd, req);
	struct pf_stream *s = stream_at(slot, sv.start);
	if (!s)
		return stray_read(slot, fd, req, &sv);
	bool stale = stream_stale(s, fd);
	pthread_mutex_lock(&s->lock);
	if (stale || s->shrunk || window_suspect(s)) {
		/* The file changed: the kernel has it as it is now (on FUSE,
		 * once a short read's zeros are out of its page cache). */
		bool forget = s->zero_fill_risk;
		off64_t from = s->pos < sv.start ? s->pos : sv.start, to = s->next_off;
		pthread_mutex_unlock(&s->lock);
		if (forget)
			drop_forgetting(slot, fd, from, to);
		else
			stream_drop(slot, fd, s, sv.start, "after the file changed");
		s = NULL;
	} else {
		s = serve_in_window(slot, fd, s, &sv);
	}
	if (sv.done < total && sv.end != SERVE_STOP)
		read_rest(fd, &sv);
	if (s)
		stream_went_on(s, req, &sv);
	else if (!slot->stream)
		pf_run_start(&slot->run, sv.start + (off64_t)sv.done);
	pf_settle_range(fd, req, sv.start, total, sv.done);
	return pf_read_result(sv.done, sv.err);
}
