/* One large read (sort reads its whole input in one read()) split into
 * pieces that the workers and the reader pread() at once, straight into
 * the program's buffer: a stream whose chunks borrow that buffer. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stats.h"
#include "storage.h"
#include "stream.h"

/* Reads of at least PF_SPLIT_MIN, and of at least the window, are split in
 * pieces of at least PF_SPLIT_PIECE, at most one per worker. A smaller one
 * is a stream's to serve once the reads make a run: reads ahead overlap
 * the program's work between reads, where pieces only shorten each read
 * (8 threads of a program reading 4 MiB each were 10% slower split). */
#define PF_SPLIT_MIN ((size_t)4 * 1024 * 1024)
#define PF_SPLIT_PIECE ((size_t)1024 * 1024)

/* Whether one large read of fd at start may be split (slot lock held):
 * a candidate file, data not cached, storage that takes reads out of
 * order. */
static bool splittable(struct pf_fd *slot, int fd, off64_t start, size_t total, struct stat *st)
{
	const struct pf_settings *cfg = pf_settings();
	if (fstat(fd, st) != 0 || pf_excluded_file(st) || start >= st->st_size)
		return false;
	if (!pf_file_classified(slot, fd, st))
		return false;
	if (cfg->parallel == 0 || (cfg->parallel == PF_PARALLEL_AUTO &&
				   PF_STORAGE_ONE_STREAM(pf_storage_mode(st->st_dev))))
		return false;
	off64_t end = start + (off64_t)total < st->st_size ? start + (off64_t)total : st->st_size;
	return !(cfg->skip_cached && pf_range_cached(fd, start, end)) && pool_start(cfg) == 0;
}

/* Queues the pieces of [start, start + total) (s->lock held). Their
 * boundaries fall on page boundaries of the program's buffer: a direct_io
 * read goes to the storage in requests of whole pages of that buffer (FUSE:
 * max_pages at most), so a piece that starts inside a page costs one more
 * request. A malloc'd 4 MiB buffer starts 16 bytes into a page: in pieces
 * of 1 MiB from its start, 8 requests where the program's own read makes 5. */
static void split_queue(struct pf_stream *s, char *buf, off64_t start, size_t total,
			unsigned pieces, size_t page)
{
	size_t piece = s->chunk_size, lead = (uintptr_t)buf % page;
	for (unsigned i = 0; i < pieces; i++) {
		size_t from = i ? (size_t)i * piece - lead : 0;
		size_t to = i + 1 < pieces ? (size_t)(i + 1) * piece - lead : total;
		if (from >= total)
			break;
		struct pf_chunk *c = &s->chunks[i];
		c->buf = buf + from;
		c->off = start + (off64_t)from;
		c->want = (to < total ? to : total) - from;
		c->state = CHUNK_QUEUED;
		s->win[s->nwin++] = i;
	}
	pf_runq_push(s);
}

/* The pieces of a split read, read by the workers and this thread
 * straight into the program's buffer: the bytes up to the first piece
 * that came back short, or 0 with the first piece's errno (s->lock held). */
static ssize_t split_wait(struct pf_stream *s, int *err)
{
	struct pf_chunk *c;
	while ((c = pf_first_queued(s)) || s->inflight) {
		if (c) {
			pf_chunk_claim(s, c);
			pf_chunk_read_now(s, c);
		} else {
			pthread_cond_wait(&s->changed, &s->lock);
		}
	}
	size_t done = 0;
	for (unsigned i = 0; i < s->nwin; i++) {
		c = win_chunk(s, i);
		done += c->len;
		if (c->len < c->want) {
			if (done == 0)
				*err = c->err;
			break;
		}
	}
	return (ssize_t)done;
}

/* One large read split into parallel pieces (slot lock held throughout, so
 * that a close waits for the workers' reads of the descriptor). The range
 * is claimed first, as stream reads do. PF_NOT_SPLIT when it does not
 * apply. */
ssize_t pf_split_read(struct pf_fd *slot, int fd, const struct pf_read_req *req, size_t total)
{
	if (req->iovcnt != 1 || total < PF_SPLIT_MIN)
		return PF_NOT_SPLIT; /* first: every watched read asks */
	const struct pf_settings *cfg = pf_settings();
	if (total < cfg->window)
		return PF_NOT_SPLIT;
	off64_t start = req->offset == PF_AT_FILE_OFFSET ? slot->run.next_off : req->offset;
	struct stat st;
	if (start < 0 || !splittable(slot, fd, start, total, &st))
		return PF_NOT_SPLIT;
	start = pf_claim_range(fd, req, total);
	if (start < 0)
		return PF_NOT_SPLIT;
	unsigned pieces = (unsigned)(total / PF_SPLIT_PIECE);
	if (pieces > cfg->threads)
		pieces = cfg->threads;
	struct pf_stream *s = pf_stream_new(fd, start, &st, cfg, 1);
	if (!s) {
		pf_settle_range(fd, req, start, total, 0);
		return PF_NOT_SPLIT;
	}
	s->borrowed = true;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	s->chunk_size = (total / pieces + page - 1) / page * page;
	pf_mode_set(s, MODE_PARALLEL);
	pthread_mutex_lock(&s->lock);
	split_queue(s, req->iov[0].iov_base, start, total, pieces, page);
	int err = 0;
	ssize_t done = split_wait(s, &err);
	s->closing = true;
	PF_STAT_ADD(reads_split, 1);
	PF_STAT_ADD(bytes_served, done);
	pf_stream_unref_locked(s);
	pf_settle_range(fd, req, start, total, (size_t)done);
	slot->run.next_off = start + done;
	return pf_read_result((size_t)done, err);
}
