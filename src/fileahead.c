/* Fetching predicted files before their open, and serving the program's
 * first reads of them (see fileahead.h).
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
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"
#include "fileahead.h"
#include "libc.h"
#include "log.h"
#include "predict.h"
#include "settings.h"
#include "stats.h"
#include "thread.h"

/* Files fetched or being fetched at once: bounds the waste of wrong guesses. */
#define PF_AHEAD_SLOTS 32u
/* Files up to this size are fetched, whole. Larger ones are the engine's:
 * it reads them ahead from their open in a process that reads whole files
 * (streams_at_open), and a first window fetched here would be read twice. */
#define PF_AHEAD_WINDOW ((size_t)1 << 20)
#define PF_AHEAD_THREADS 8u
#define PF_AHEAD_STACK ((size_t)256 * 1024)
/* Data fetched ahead is served at most this long after it was read: the
 * engine's bound on serving data the server did not confirm. */
#define PF_AHEAD_MAX_AGE_NS ((uint64_t)1000000000)

enum ahead_state {
	AHEAD_FREE = 0,
	AHEAD_QUEUED,   /* waiting for a thread */
	AHEAD_OPENING,  /* a thread looks it up and opens it: identity unknown */
	AHEAD_READING,  /* identity known, first window being read */
	AHEAD_READY,    /* read, closed: may be adopted */
	AHEAD_ADOPTED,  /* the program opened it as fd */
	AHEAD_FAILED,   /* not fetched (failed, too large, no memory): nothing to serve */
};

struct ahead {
	uint8_t state;        /* enum ahead_state */
	bool cancel;          /* no longer wanted: the thread fetching it frees it */
	bool whole;           /* buf holds the whole file */
	unsigned source, index;
	uint64_t seq;         /* queue order */
	int fd;               /* AHEAD_ADOPTED: the program's descriptor */
	char *path;           /* absolute; set while not FREE */
	struct stat id;       /* the file as it was fetched */
	char *buf;
	size_t len;           /* bytes of buf valid */
	size_t reserved;      /* accounted in pf_memory_reserve */
	uint64_t fetched_ns;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;  /* an entry was queued */
	pthread_cond_t done;  /* an entry left AHEAD_READING */
	struct ahead e[PF_AHEAD_SLOTS];
	uint64_t seq;
	int state;            /* 0 none started yet, 1 running, -1 unusable */
	unsigned started;     /* threads created */
	unsigned idle;        /* threads waiting for work */
} fa = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
	 { { 0 } }, 0, 0, 0, 0 };

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

static size_t ahead_window(void)
{
	size_t w = pf_settings()->window;
	return w < PF_AHEAD_WINDOW ? w : PF_AHEAD_WINDOW;
}

/* Same file, unchanged: what the engine compares (file_changed). */
static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec &&
	       S_ISREG(a->st_mode) && S_ISREG(b->st_mode);
}

/* Frees an entry no thread works on (fa.lock held). unused: it was fetched
 * for nothing. */
static void entry_free(struct ahead *e, bool unused)
{
	if (unused && e->len)
		PF_STAT_ADD(bytes_predicted_unused, e->len);
	if (e->state == AHEAD_ADOPTED)
		__atomic_sub_fetch(&adopted_entries, 1, __ATOMIC_RELAXED);
	free(e->buf);
	if (e->reserved)
		pf_memory_release(e->reserved);
	free(e->path);
	memset(e, 0, sizeof(*e));
	__atomic_sub_fetch(&live_entries, 1, __ATOMIC_RELAXED);
}

/* Drops an entry, or has its thread drop it (fa.lock held). */
static void entry_drop(struct ahead *e)
{
	if (e->state == AHEAD_OPENING || e->state == AHEAD_READING)
		e->cancel = true;
	else if (e->state != AHEAD_FREE)
		entry_free(e, e->state == AHEAD_READY);
}

static bool too_old(const struct ahead *e, uint64_t now)
{
	return (e->state == AHEAD_READY || e->state == AHEAD_ADOPTED || e->state == AHEAD_FAILED) &&
	       now - e->fetched_ns > PF_AHEAD_MAX_AGE_NS;
}

/* --- the fetching threads ----------------------------------------------------------- */

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
		struct ahead *e = &fa.e[i];
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

/* Ends a fetch (fa.lock held): ready, or dropped; failed: the file could
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
		free(e->buf);
		if (e->reserved)
			pf_memory_release(e->reserved);
		e->buf = NULL;
		e->len = e->reserved = 0;
		e->state = AHEAD_FAILED;
	} else {
		e->state = AHEAD_READY; /* entry_free counts what was read for nothing */
		entry_free(e, ok);
	}
	pthread_cond_broadcast(&fa.done);
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

/* Fetches e, in AHEAD_OPENING (fa.lock not held; e->path stays). */
static void fetch(struct ahead *e)
{
	struct stat st, after;
	bool skip = false;
	int fd = open_regular(e->path, &st, &skip);
	if (fd < 0) {
		pthread_mutex_lock(&fa.lock);
		fetch_end(e, false, !skip);
		return;
	}
	size_t want = (size_t)st.st_size;
	char *buf = NULL;
	/* Allocated with fa.lock held, and kept in the entry at once: no fork
	 * happens meanwhile (the fork handlers take fa.lock), so a child never
	 * finds an allocator's lock (a sanitizer runtime's: glibc's own are
	 * handled by fork) taken by this thread, nor a buffer only it knew of. */
	pthread_mutex_lock(&fa.lock);
	bool room = !want || pf_memory_reserve(want, pf_settings()->max_memory) == 0;
	if (room && want && !(buf = malloc(want))) {
		pf_memory_release(want);
		room = false;
	}
	if (!room || e->cancel) {
		/* Over the memory cap, or no longer wanted: fetch nothing. */
		if (buf) {
			free(buf);
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
	pthread_mutex_unlock(&fa.lock);

	ssize_t got = read_window(fd, buf, want);
	/* Changed while being read: never served. */
	bool ok = got == (ssize_t)want && fstat(fd, &after) == 0 && same_file(&st, &after);
	pf_libc.close(fd);
	if (got > 0)
		PF_STAT_ADD(bytes_fetched, got);

	pthread_mutex_lock(&fa.lock);
	e->len = got > 0 ? (size_t)got : 0;
	e->whole = ok && (off_t)want == st.st_size;
	fetch_end(e, ok, !ok);
}

static void *fetcher_main(void *unused)
{
	(void)unused;
	pf_in_library = 1; /* anything this thread calls passes straight through */
	int ok = private_table();
	pthread_mutex_lock(&fa.lock);
	if (ok != 0) {
		/* Nothing may be opened from a table the program shares, and
		 * the next thread would fare no better: nothing is fetched. */
		__atomic_store_n(&fa.state, -1, __ATOMIC_RELAXED);
		for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
			if (fa.e[i].state == AHEAD_QUEUED)
				entry_free(&fa.e[i], false);
		pthread_mutex_unlock(&fa.lock);
		PF_LOG(PF_LOG_WARN, "no private descriptor table (%s): files are not fetched ahead",
		       strerror(errno));
		return NULL;
	}
	if (fa.state == 0)
		__atomic_store_n(&fa.state, 1, __ATOMIC_RELAXED);
	for (;;) {
		struct ahead *e = fa.state > 0 ? next_queued() : NULL;
		if (!e) {
			fa.idle++;
			pthread_cond_wait(&fa.work, &fa.lock);
			fa.idle--;
			continue;
		}
		e->state = AHEAD_OPENING;
		pthread_mutex_unlock(&fa.lock);
		fetch(e); /* returns with fa.lock held */
	}
	return NULL;
}

/* Starts one more thread when more files wait than threads do, up to
 * min(PREFETCH_THREADS, PF_AHEAD_THREADS): a process that predicts one file
 * has one thread (fa.lock held). */
static void pool_grow(void)
{
	const struct pf_settings *cfg = pf_settings();
	unsigned max = cfg->threads < PF_AHEAD_THREADS ? cfg->threads : PF_AHEAD_THREADS;
	unsigned queued = 0;
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
		queued += fa.e[i].state == AHEAD_QUEUED;
	if (queued <= fa.idle || fa.started >= max)
		return;
	if (pf_thread_start(fetcher_main, PF_AHEAD_STACK) == 0)
		fa.started++;
	else if (fa.started == 0)
		__atomic_store_n(&fa.state, -1, __ATOMIC_RELAXED);
}

bool pf_ahead_usable(void)
{
	return __atomic_load_n(&fa.state, __ATOMIC_RELAXED) >= 0;
}

/* --- wanted and passed ------------------------------------------------------------------- */

/* A free slot, reclaiming entries too old to be served (fa.lock held). */
static struct ahead *free_entry(void)
{
	uint64_t now = pf_now_ns();
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
		if (too_old(&fa.e[i], now))
			entry_free(&fa.e[i], fa.e[i].state == AHEAD_READY);
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
		if (fa.e[i].state == AHEAD_FREE)
			return &fa.e[i];
	return NULL;
}

static bool already_wanted(const char *path)
{
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++)
		if (fa.e[i].state != AHEAD_FREE && !fa.e[i].cancel && strcmp(fa.e[i].path, path) == 0)
			return true;
	return false;
}

bool pf_ahead_want(unsigned source, unsigned index, const char *path)
{
	bool ok = false;
	pthread_mutex_lock(&fa.lock);
	if (fa.state < 0)
		goto out;
	ok = true;
	if (already_wanted(path))
		goto out;
	struct ahead *e = free_entry();
	char *copy = e ? strdup(path) : NULL;
	if (!copy) {
		ok = false;
		goto out;
	}
	e->state = AHEAD_QUEUED;
	e->path = copy;
	e->source = source;
	e->index = index;
	e->seq = ++fa.seq;
	__atomic_add_fetch(&live_entries, 1, __ATOMIC_RELAXED);
	PF_STAT_ADD(files_predicted, 1);
	pthread_cond_signal(&fa.work);
	pool_grow();
out:
	pthread_mutex_unlock(&fa.lock);
	return ok;
}

void pf_ahead_passed(unsigned source, unsigned index)
{
	if (!__atomic_load_n(&live_entries, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&fa.lock);
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++) {
		struct ahead *e = &fa.e[i];
		if (e->state != AHEAD_FREE && e->state != AHEAD_ADOPTED && e->source == source &&
		    e->index <= index)
			entry_drop(e);
	}
	pthread_mutex_unlock(&fa.lock);
}

/* --- adoption ---------------------------------------------------------------------------- */

/* The path of the program's fd, as the kernel names it: what an absolute
 * predicted path is when nothing on the way is a symbolic link. */
static bool fd_path(int fd, char *buf, size_t size)
{
	char link[32];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t r = readlink(link, buf, size - 1);
	if (r <= 0)
		return false;
	buf[r] = '\0';
	return true;
}

/* The entry fetched for the file st describes (fa.lock held): waits for a
 * read in flight, and for an open in flight of the same path (whose
 * identity is not known yet), rather than ask the storage twice. */
static struct ahead *fetched_for(int fd, const struct stat *st)
{
	char path[PATH_MAX];
	int have_path = 0; /* 0 not asked, 1 known, -1 unknown */
	for (;;) {
		struct ahead *found = NULL, *opening = NULL;
		for (unsigned i = 0; i < PF_AHEAD_SLOTS && !found; i++) {
			struct ahead *e = &fa.e[i];
			if (e->cancel)
				continue;
			if ((e->state == AHEAD_READING || e->state == AHEAD_READY) &&
			    e->id.st_dev == st->st_dev && e->id.st_ino == st->st_ino)
				found = e;
			else if (e->state == AHEAD_OPENING)
				opening = e;
		}
		if (!found && opening && have_path == 0)
			have_path = fd_path(fd, path, sizeof(path)) ? 1 : -1;
		if (!found && opening && have_path > 0) {
			for (unsigned i = 0; i < PF_AHEAD_SLOTS && !found; i++)
				if (fa.e[i].state == AHEAD_OPENING && !fa.e[i].cancel &&
				    strcmp(fa.e[i].path, path) == 0)
					found = &fa.e[i];
		}
		if (!found || found->state == AHEAD_READY)
			return found;
		/* On its way: wait rather than ask again. */
		pthread_cond_wait(&fa.done, &fa.lock);
	}
}

static bool adopt(int fd, const struct stat *st)
{
	bool adopted = false;
	uint64_t now = pf_now_ns();
	pthread_mutex_lock(&fa.lock);
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++) {
		struct ahead *e = &fa.e[i];
		/* The number was closed and reused, or the data is too old. */
		if ((e->state == AHEAD_ADOPTED && e->fd == fd) || too_old(e, now))
			entry_free(e, e->state == AHEAD_READY);
	}
	struct ahead *e = fetched_for(fd, st);
	if (e && same_file(&e->id, st) && !too_old(e, pf_now_ns())) {
		e->state = AHEAD_ADOPTED;
		e->fd = fd;
		__atomic_add_fetch(&adopted_entries, 1, __ATOMIC_RELAXED);
		PF_STAT_ADD(files_predicted_opened, 1);
		adopted = true;
	} else if (e) {
		entry_free(e, true); /* changed since: the kernel has it as it is now */
	}
	pthread_mutex_unlock(&fa.lock);
	return adopted;
}

bool pf_files_opened(int fd, int dirfd, const char *path)
{
	if (fd < 0 || !path || !pf_files_enabled())
		return false;
	bool live = __atomic_load_n(&live_entries, __ATOMIC_RELAXED) != 0;
	if (!live && !pf_predict_any())
		return false;
	int saved = errno;
	pf_in_library = 1;
	bool adopted = false;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		if (live)
			adopted = adopt(fd, &st);
		pf_predict_opened(fd, dirfd, path, &st);
	}
	pf_in_library = 0;
	errno = saved;
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

/* Whether fd may still be answered from e (fa.lock held): the same file,
 * unchanged, open read-only without O_DIRECT, and the data fresh enough. */
static bool still_servable(int fd, const struct ahead *e)
{
	struct stat st;
	int flags = pf_libc.fcntl(fd, F_GETFL);
	return flags >= 0 && (flags & O_ACCMODE) == O_RDONLY && !(flags & (O_DIRECT | O_PATH)) &&
	       fstat(fd, &st) == 0 && same_file(&e->id, &st) && !too_old(e, pf_now_ns());
}

/* Answers a read of e's descriptor (fa.lock held, dropped). Follows the
 * engine's rule: a read at the file offset claims its range first with one
 * lseek(SEEK_CUR), so that the offset is always what the program expects. */
static bool serve(struct ahead *e, int fd, const struct pf_read_req *req, size_t total,
		  ssize_t *result)
{
	off64_t start = req->offset;
	if (start == PF_AT_FILE_OFFSET) {
		off64_t end = pf_libc.lseek64(fd, (off64_t)total, SEEK_CUR);
		if (end < 0) {
			entry_free(e, false);
			pthread_mutex_unlock(&fa.lock);
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
		entry_free(e, false);
	pthread_mutex_unlock(&fa.lock);

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
	int saved = errno;
	pf_in_library = 1;
	bool handled = false;
	pthread_mutex_lock(&fa.lock);
	struct ahead *e = NULL;
	for (unsigned i = 0; i < PF_AHEAD_SLOTS && !e; i++)
		if (fa.e[i].state == AHEAD_ADOPTED && fa.e[i].fd == fd)
			e = &fa.e[i];
	if (e && still_servable(fd, e)) {
		handled = serve(e, fd, req, total, result);
	} else {
		if (e)
			entry_free(e, false);
		pthread_mutex_unlock(&fa.lock);
	}
	int err = errno;
	pf_in_library = 0;
	errno = handled && *result < 0 ? err : saved;
	return handled;
}

/* --- fork ------------------------------------------------------------------------------------ */

void pf_ahead_atfork_prepare(void)
{
	pthread_mutex_lock(&fa.lock);
}

void pf_ahead_atfork_parent(void)
{
	pthread_mutex_unlock(&fa.lock);
}

/* The child has none of the threads: what they fetched or were fetching is
 * dropped, and they start again on demand. Memory is not released: the
 * engine's child handler starts the statistics (and the memory count) from
 * zero. */
void pf_ahead_atfork_child(void)
{
	for (unsigned i = 0; i < PF_AHEAD_SLOTS; i++) {
		free(fa.e[i].buf);
		free(fa.e[i].path);
		memset(&fa.e[i], 0, sizeof(fa.e[i]));
	}
	live_entries = adopted_entries = 0;
	fa.state = 0;
	fa.started = fa.idle = 0;
	pthread_cond_init(&fa.work, NULL);
	pthread_cond_init(&fa.done, NULL);
	/* Locked by pf_ahead_atfork_prepare, in this very thread. */
	pthread_mutex_unlock(&fa.lock);
}
