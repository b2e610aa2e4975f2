/* Files fetched before their open (see fileahead.h): the guesses wanted
 * and passed, their adoption when the program opens one, and its first
 * reads served from what was fetched. fileahead_fetch.c holds the threads
 * that fetch them. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "fileahead.h"
#include "fileahead_table.h"
#include "libc.h"
#include "predict.h"
#include "runtime.h"
#include "settings.h"
#include "stats.h"

struct pf_ahead_table pf_fa = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
				PTHREAD_COND_INITIALIZER, { { 0 } }, 0, 0, 0, 0 };

/* Read without the lock on hot paths: an open or a read costs one load
 * when nothing was fetched. */
static unsigned live_entries, adopted_entries;

/* Not in a setuid or setgid program (AT_SECURE): its threads' credentials
 * are not the user's, and a file operand must not be read with them before
 * the program checked it. */
bool pf_files_enabled(void)
{
	static int secure = -1;
	int sec = __atomic_load_n(&secure, __ATOMIC_RELAXED);
	if (sec < 0) {
		sec = getauxval(AT_SECURE) != 0;
		__atomic_store_n(&secure, sec, __ATOMIC_RELAXED);
	}
	return !sec && pf_settings()->files;
}

bool pf_ahead_same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec &&
	       S_ISREG(a->st_mode) && S_ISREG(b->st_mode);
}

void pf_ahead_entry_free(struct ahead *e, bool unused)
{
	if (unused && e->len)
		PF_STAT_ADD(bytes_predicted_unused, e->len);
	if (e->state == AHEAD_ADOPTED)
		__atomic_sub_fetch(&adopted_entries, 1, __ATOMIC_RELAXED);
	pf_pages_free(e->buf, e->reserved);
	if (e->reserved)
		pf_memory_release(e->reserved);
	memset(e, 0, sizeof(*e));
	__atomic_sub_fetch(&live_entries, 1, __ATOMIC_RELAXED);
}

/* Drops an entry, or has its thread drop it (pf_fa.lock held). */
static void entry_drop(struct ahead *e)
{
	if (e->state == AHEAD_OPENING || e->state == AHEAD_READING)
		e->cancel = true;
	else if (e->state != AHEAD_FREE)
		pf_ahead_entry_free(e, e->state == AHEAD_READY);
}

static bool too_old(const struct ahead *e, uint64_t now)
{
	return (e->state == AHEAD_READY || e->state == AHEAD_ADOPTED || e->state == AHEAD_FAILED) &&
	       now - e->fetched_ns > PF_AHEAD_MAX_AGE_NS;
}

/* --- wanted and passed ------------------------------------------------------------------- */

/* A free slot, reclaiming entries too old to be served (pf_fa.lock held). */
static struct ahead *free_entry(void)
{
	uint64_t now = pf_now_ns();
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
		if (too_old(&pf_fa.e[i], now))
			pf_ahead_entry_free(&pf_fa.e[i], pf_fa.e[i].state == AHEAD_READY);
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
		if (pf_fa.e[i].state == AHEAD_FREE)
			return &pf_fa.e[i];
	return NULL;
}

static bool already_wanted(const char *path)
{
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
		if (pf_fa.e[i].state != AHEAD_FREE && !pf_fa.e[i].cancel &&
		    strcmp(pf_fa.e[i].path, path) == 0)
			return true;
	return false;
}

bool pf_ahead_want(unsigned source, unsigned index, const char *path)
{
	bool ok = false;
	pthread_mutex_lock(&pf_fa.lock);
	if (pf_fa.state < 0)
		goto out;
	ok = true;
	if (already_wanted(path))
		goto out;
	size_t len = strlen(path);
	if (len >= sizeof(pf_fa.e[0].path))
		goto out;
	struct ahead *e = free_entry();
	if (!e) {
		ok = false;
		goto out;
	}
	e->state = AHEAD_QUEUED;
	memcpy(e->path, path, len + 1);
	e->source = source;
	e->index = index;
	e->seq = ++pf_fa.seq;
	__atomic_add_fetch(&live_entries, 1, __ATOMIC_RELAXED);
	PF_STAT_ADD(files_predicted, 1);
	pthread_cond_signal(&pf_fa.work);
	pf_ahead_pool_grow();
out:
	pthread_mutex_unlock(&pf_fa.lock);
	return ok;
}

void pf_ahead_passed(unsigned source, unsigned index)
{
	if (!__atomic_load_n(&live_entries, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&pf_fa.lock);
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++) {
		struct ahead *e = &pf_fa.e[i];
		if (e->state != AHEAD_FREE && e->state != AHEAD_ADOPTED && e->source == source &&
		    e->index <= index)
			entry_drop(e);
	}
	pthread_mutex_unlock(&pf_fa.lock);
}

/* --- adoption ---------------------------------------------------------------------------- */

bool pf_fd_path(int fd, char *buf, size_t size)
{
	char link[32];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t r = readlink(link, buf, size - 1);
	if (r <= 0)
		return false;
	buf[r] = '\0';
	return true;
}

/* The entry fetched for the file st describes (pf_fa.lock held): waits for a
 * read in flight, and for an open in flight of the same path (whose
 * identity is not known yet), rather than ask the storage twice. */
static struct ahead *fetched_for(int fd, const struct stat *st)
{
	char path[PATH_MAX];
	int have_path = 0; /* 0 not asked, 1 known, -1 unknown */
	for (;;) {
		struct ahead *found = NULL, *opening = NULL;
		for (unsigned i = 0; i < PF_AHEAD_SLOTS && !found; i++) {
			struct ahead *e = &pf_fa.e[i];
			if (e->cancel)
				continue;
			if ((e->state == AHEAD_READING || e->state == AHEAD_READY) &&
			    e->id.st_dev == st->st_dev && e->id.st_ino == st->st_ino)
				found = e;
			else if (e->state == AHEAD_OPENING)
				opening = e;
		}
		if (!found && opening && have_path == 0)
			have_path = pf_fd_path(fd, path, sizeof(path)) ? 1 : -1;
		if (!found && opening && have_path > 0) {
			for (unsigned i = 0; i < PF_AHEAD_SLOTS && !found; i++)
				if (pf_fa.e[i].state == AHEAD_OPENING && !pf_fa.e[i].cancel &&
				    strcmp(pf_fa.e[i].path, path) == 0)
					found = &pf_fa.e[i];
		}
		if (!found || found->state == AHEAD_READY)
			return found;
		/* On its way: wait rather than ask again. */
		pthread_cond_wait(&pf_fa.done, &pf_fa.lock);
	}
}

static bool adopt(int fd, const struct stat *st)
{
	bool adopted = false;
	uint64_t now = pf_now_ns();
	pthread_mutex_lock(&pf_fa.lock);
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++) {
		struct ahead *e = &pf_fa.e[i];
		/* The number was closed and reused, or the data is too old. */
		if ((e->state == AHEAD_ADOPTED && e->fd == fd) || too_old(e, now))
			pf_ahead_entry_free(e, e->state == AHEAD_READY);
	}
	struct ahead *e = fetched_for(fd, st);
	if (e && pf_ahead_same_file(&e->id, st) && !too_old(e, pf_now_ns())) {
		e->state = AHEAD_ADOPTED;
		e->fd = fd;
		__atomic_add_fetch(&adopted_entries, 1, __ATOMIC_RELAXED);
		PF_STAT_ADD(files_predicted_opened, 1);
		adopted = true;
	} else if (e) {
		pf_ahead_entry_free(e, true); /* changed since: the kernel has it as it is now */
	}
	pthread_mutex_unlock(&pf_fa.lock);
	return adopted;
}

bool pf_files_opened(int fd, int dirfd, const char *path)
{
	if (fd < 0 || !path || !pf_files_enabled())
		return false;
	bool live = __atomic_load_n(&live_entries, __ATOMIC_RELAXED) != 0;
	if (!live && !pf_predict_any())
		return false;
	struct pf_entry entry = pf_enter();
	bool adopted = false;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		if (live)
			adopted = adopt(fd, &st);
		pf_predict_opened(fd, dirfd, path, &st);
	}
	pf_leave(entry);
	return adopted;
}

/* --- serving the first reads ---------------------------------------------------------------- */

/* Copies n bytes into the request's buffers from byte skip on. */
static void iov_fill(const struct pf_read_req *req, size_t skip, const char *src, size_t n)
{
	for (int i = 0; i < req->iovcnt && n; i++) {
		size_t len = req->iov[i].iov_len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		size_t k = len - skip < n ? len - skip : n;
		memcpy((char *)req->iov[i].iov_base + skip, src, k);
		src += k;
		n -= k;
		skip = 0;
	}
}

/* Reads the request's bytes [skip, total) from the kernel at off, as one
 * preadv would: stops at the first short read; -1 only if nothing came. */
static ssize_t iov_pread(int fd, const struct pf_read_req *req, size_t skip, size_t total,
			 off64_t off)
{
	size_t got = 0;
	for (int i = 0; i < req->iovcnt && skip + got < total; i++) {
		size_t len = req->iov[i].iov_len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		size_t want = len - skip;
		if (want > total - got)
			want = total - got;
		ssize_t r = pf_libc.pread64(fd, (char *)req->iov[i].iov_base + skip, want,
					    off + (off64_t)got);
		if (r < 0)
			return got ? (ssize_t)got : -1;
		got += (size_t)r;
		skip = 0;
		if ((size_t)r < want)
			break;
	}
	return (ssize_t)got;
}

static size_t request_total(const struct pf_read_req *req)
{
	size_t total = 0;
	for (int i = 0; i < req->iovcnt; i++) {
		if (req->iov[i].iov_len > (size_t)SSIZE_MAX - total)
			return 0; /* the kernel's EINVAL: not ours to answer */
		total += req->iov[i].iov_len;
	}
	return total < 0x7ffff000 ? total : 0x7ffff000; /* MAX_RW_COUNT */
}

/* Whether fd may still be answered from e (pf_fa.lock held): the same file,
 * unchanged, open read-only without O_DIRECT, and the data fresh enough. */
static bool still_servable(int fd, const struct ahead *e)
{
	struct stat st;
	int flags = pf_libc.fcntl(fd, F_GETFL);
	return flags >= 0 && (flags & O_ACCMODE) == O_RDONLY && !(flags & (O_DIRECT | O_PATH)) &&
	       fstat(fd, &st) == 0 && pf_ahead_same_file(&e->id, &st) && !too_old(e, pf_now_ns());
}

/* Answers a read of e's descriptor (pf_fa.lock held, dropped). Follows the
 * engine's rule: a read at the file offset claims its range first with one
 * lseek(SEEK_CUR), so that the offset is always what the program expects. */
static bool serve(struct ahead *e, int fd, const struct pf_read_req *req, size_t total,
		  ssize_t *result)
{
	off64_t start = req->offset;
	if (start == PF_AT_FILE_OFFSET) {
		off64_t end = pf_libc.lseek64(fd, (off64_t)total, SEEK_CUR);
		if (end < 0) {
			pf_ahead_entry_free(e, false);
			pthread_mutex_unlock(&pf_fa.lock);
			return false;
		}
		start = end - (off64_t)total;
	}
	size_t done = 0;
	if (start < (off64_t)e->len) {
		done = e->len - (size_t)start < total ? e->len - (size_t)start : total;
		iov_fill(req, 0, e->buf + start, done);
		PF_STAT_ADD(bytes_served, done);
	}
	bool rest = done < total && !e->whole;
	/* Past the window, or at the end of a whole file: done with it. */
	if (rest || start + (off64_t)done >= (off64_t)e->len)
		pf_ahead_entry_free(e, false);
	pthread_mutex_unlock(&pf_fa.lock);

	int err = 0;
	if (rest) {
		ssize_t r = iov_pread(fd, req, done, total, start + (off64_t)done);
		if (r < 0 && done == 0)
			err = errno;
		else if (r > 0)
			done += (size_t)r;
	}
	if (req->offset == PF_AT_FILE_OFFSET && done != total)
		pf_libc.lseek64(fd, start + (off64_t)done, SEEK_SET);
	if (err) {
		errno = err;
		*result = -1;
	} else {
		*result = (ssize_t)done;
	}
	return true;
}

bool pf_files_read(int fd, const struct pf_read_req *req, ssize_t *result)
{
	if (__builtin_expect(!__atomic_load_n(&adopted_entries, __ATOMIC_RELAXED), 1))
		return false;
	if (req->offset < 0 && req->offset != PF_AT_FILE_OFFSET)
		return false;
	size_t total = request_total(req);
	if (total == 0)
		return false;
	struct pf_entry entry = pf_enter();
	bool handled = false;
	pthread_mutex_lock(&pf_fa.lock);
	struct ahead *e = NULL;
	for (unsigned i = 0; i < PF_AHEAD_SLOTS && !e; i++)
		if (pf_fa.e[i].state == AHEAD_ADOPTED && pf_fa.e[i].fd == fd)
			e = &pf_fa.e[i];
	if (e && still_servable(fd, e)) {
		handled = serve(e, fd, req, total, result);
	} else {
		if (e)
			pf_ahead_entry_free(e, false);
		pthread_mutex_unlock(&pf_fa.lock);
	}
	if (handled && *result < 0)
		entry.program_errno = errno;
	pf_leave(entry);
	return handled;
}

/* --- fork ------------------------------------------------------------------------------------ */

void pf_ahead_atfork_prepare(void)
{
	pthread_mutex_lock(&pf_fa.lock);
}

void pf_ahead_atfork_parent(void)
{
	pthread_mutex_unlock(&pf_fa.lock);
}

/* The child has none of the threads: what they fetched or were fetching is
 * dropped, and they start again on demand. Memory is not released: the
 * engine's child handler starts the statistics (and the memory count) from
 * zero. */
void pf_ahead_atfork_child(void)
{
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++) {
		pf_pages_free(pf_fa.e[i].buf, pf_fa.e[i].reserved);
		memset(&pf_fa.e[i], 0, sizeof(pf_fa.e[i]));
	}
	live_entries = adopted_entries = 0;
	pf_fa.state = 0;
	pf_fa.started = pf_fa.idle = 0;
	pthread_cond_init(&pf_fa.work, NULL);
	pthread_cond_init(&pf_fa.done, NULL);
	/* Locked by pf_ahead_atfork_prepare, in this very thread. */
	pthread_mutex_unlock(&pf_fa.lock);
}
