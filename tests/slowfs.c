/*
 * slowfs: a read-only FUSE pass-through that makes storage slow on purpose.
 *
 *   slowfs [--delay-us=N] [--bandwidth=BYTES_PER_SEC] [--direct-io]
 *          [--keep-cache] [--max-read=BYTES] [--threads=N] [--stats=PATH]
 *          [--stream-per-handle] [--read-wait-us=N]
 *          [--stream-rate=BYTES_PER_SEC] [--stream-ahead=BYTES]
 *          SRCDIR MOUNTPOINT [-f] [-s] [-d] [-o fuse-options]
 *
 * Every read request sleeps delay_us, plus size/bandwidth when a bandwidth
 * is given, before it is answered: the round trip of a network or object
 * store. The cap is per request (each request "streams" at that rate), so
 * concurrent requests overlap as they would against a real server; that is
 * the headroom a prefetcher uses. Requests are served by fuse_loop_mt with
 * --threads workers (default 16).
 *
 * --direct-io sets direct_io on every open: no page cache and no kernel
 * readahead, each read() of the program is a round trip. Without it the
 * page cache works, but is dropped at each open unless --keep-cache, so that
 * each benchmark run of a file starts cold without needing root.
 *
 * --stream-per-handle serves each open handle the way object-store clients
 * do (rclone mount --vfs-cache-mode off, mountpoint-s3): a handle is one
 * sequential stream, so its requests are served one at a time; a read at
 * the stream's position costs the usual delay; a read anywhere else first
 * waits up to --read-wait-us (default 20000, rclone's --vfs-read-wait) for
 * other requests to bring the stream there, then pays a reopen (one more
 * delay) and moves the stream. Separate handles have separate streams.
 * By default the server's own run-ahead is not modelled: in-order reads cost
 * what they cost without the option, so only the out-of-order penalty
 * differs. With --stream-rate, a (re)opened stream instead pays one delay and
 * then flows at that rate, running ahead of the reader by up to
 * --stream-ahead (default 16 MiB, rclone's --buffer-size): in-order reads
 * wait only for bytes that have not arrived yet. SIGUSR1 turns it off for
 * good: from then on the mount serves like one without the option (what a
 * test of a verdict that no longer holds needs).
 *
 * Readiness: without -f the process daemonizes only after the mount is in
 * place, so when `slowfs SRC MNT` returns the mount is usable.
 *
 * Counters: the hidden file MOUNTPOINT/.slowfs-stats (not listed) reads as
 * one line "reads=N bytes=N max_inflight=N max_request=N opens=N reopens=N"
 * (reopens: out-of-order reads of --stream-per-handle, 0 without); the same
 * line is written to --stats=PATH at unmount.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <fuse.h>
#include <fuse_lowlevel.h>

#define STATS_NAME "/.slowfs-stats"
/* No real descriptor has this value: marks the open stats file. */
#define STATS_FH UINT64_MAX

struct options {
	unsigned long delay_us;
	unsigned long long bandwidth;
	unsigned long max_read;
	unsigned long threads;
	int direct_io;
	int keep_cache;
	int stream_per_handle;
	unsigned long read_wait_us;
	unsigned long long stream_rate;
	unsigned long long stream_ahead;
	char *stats_path;
	int show_help;
};

static struct options opt = { .threads = 16, .read_wait_us = 20000, .stream_ahead = 16u << 20 };
static char *srcdir;
static int srcfd = -1;

static struct {
	unsigned long long reads, bytes, opens, reopens;
	long inflight, max_inflight, max_request;
} counters;

#define OPT(t, p) { t, offsetof(struct options, p), 1 }
static const struct fuse_opt option_spec[] = {
	OPT("--delay-us=%lu", delay_us),
	OPT("--bandwidth=%llu", bandwidth),
	OPT("--max-read=%lu", max_read),
	OPT("--threads=%lu", threads),
	OPT("--direct-io", direct_io),
	OPT("--keep-cache", keep_cache),
	OPT("--stats=%s", stats_path),
	OPT("--stream-per-handle", stream_per_handle),
	OPT("--read-wait-us=%lu", read_wait_us),
	OPT("--stream-rate=%llu", stream_rate),
	OPT("--stream-ahead=%llu", stream_ahead),
	OPT("-h", show_help),
	OPT("--help", show_help),
	FUSE_OPT_END
};

static void usage(const char *prog)
{
	printf("usage: %s [options] SRCDIR MOUNTPOINT [fuse options]\n"
	       "  --delay-us=N          sleep N microseconds per read request\n"
	       "  --bandwidth=B         plus size/B seconds per request (bytes/s)\n"
	       "  --direct-io           no page cache, no kernel readahead\n"
	       "  --keep-cache          keep the page cache across opens\n"
	       "  --max-read=BYTES      largest read request (mount max_read)\n"
	       "  --threads=N           concurrent request workers (default 16)\n"
	       "  --stats=PATH          write request counters at unmount\n"
	       "  --stream-per-handle   one sequential stream per open handle;\n"
	       "                        other offsets wait, then reopen it\n"
	       "  --read-wait-us=N      wait for in-order reads (default 20000)\n"
	       "  --stream-rate=B       a stream flows at B bytes/s after one delay\n"
	       "  --stream-ahead=BYTES  and runs that far ahead (default 16 MiB)\n"
	       "  -f                    stay in the foreground\n\n", prog);
}

/* Paths from FUSE start with '/': make them relative to srcfd. */
static const char *rel(const char *path)
{
	return path[1] ? path + 1 : ".";
}

static int is_stats(const char *path)
{
	return path && strcmp(path, STATS_NAME) == 0;
}

static void counter_max(long *slot, long v)
{
	long cur = __atomic_load_n(slot, __ATOMIC_RELAXED);
	while (v > cur && !__atomic_compare_exchange_n(slot, &cur, v, 1,
			__ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static int format_stats(char *buf, size_t len)
{
	return snprintf(buf, len,
			"reads=%llu bytes=%llu max_inflight=%ld max_request=%ld opens=%llu reopens=%llu\n",
			__atomic_load_n(&counters.reads, __ATOMIC_RELAXED),
			__atomic_load_n(&counters.bytes, __ATOMIC_RELAXED),
			__atomic_load_n(&counters.max_inflight, __ATOMIC_RELAXED),
			__atomic_load_n(&counters.max_request, __ATOMIC_RELAXED),
			__atomic_load_n(&counters.opens, __ATOMIC_RELAXED),
			__atomic_load_n(&counters.reopens, __ATOMIC_RELAXED));
}

/* The simulated round trip: delay plus transfer time at the capped rate. */
static void simulate_latency(size_t size)
{
	unsigned long long ns = (unsigned long long)opt.delay_us * 1000ULL;
	struct timespec ts;

	if (opt.bandwidth)
		ns += (unsigned long long)size * 1000000000ULL / opt.bandwidth;
	if (!ns)
		return;
	ts.tv_sec = ns / 1000000000ULL;
	ts.tv_nsec = ns % 1000000000ULL;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* An open file: its descriptor and, for --stream-per-handle, its stream. */
struct handle {
	int fd;
	pthread_mutex_t lock;
	/* signalled when the stream moves or becomes free */
	pthread_cond_t moved;
	/* the offset the stream reads next */
	off_t pos;
	/* a request is being served by the stream */
	int busy;
	/* --stream-rate: the stream has started; it had fetched up to filled
	 * at fill_ns (touched only by the request that holds busy) */
	int opened;
	off_t filled;
	uint64_t fill_ns;
};

static struct handle *handle_of(const struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

static struct handle *handle_new(int fd)
{
	struct handle *h = calloc(1, sizeof(*h));
	pthread_condattr_t ca;

	if (!h)
		return NULL;
	h->fd = fd;
	pthread_mutex_init(&h->lock, NULL);
	/* Timed waits against CLOCK_MONOTONIC: immune to clock steps. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->moved, &ca);
	pthread_condattr_destroy(&ca);
	return h;
}

static void handle_free(struct handle *h)
{
	close(h->fd);
	pthread_cond_destroy(&h->moved);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned long long us)
{
	struct timespec ts = { .tv_sec = us / 1000000ULL, .tv_nsec = (us % 1000000ULL) * 1000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * Takes the handle's stream for a read at off; returns 1 when the stream
 * had to be reopened there. Like rclone, a read elsewhere first gives the
 * reads in flight a chance to bring the stream to it.
 */
static int stream_acquire(struct handle *h, off_t off)
{
	struct timespec deadline;
	int gave_up = 0, reopen;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)(opt.read_wait_us / 1000000UL);
	deadline.tv_nsec += (long)(opt.read_wait_us % 1000000UL) * 1000;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&h->lock);
	while (h->busy || (h->pos != off && !gave_up)) {
		if (h->pos != off && !gave_up)
			gave_up = pthread_cond_timedwait(&h->moved, &h->lock, &deadline) == ETIMEDOUT;
		else
			pthread_cond_wait(&h->moved, &h->lock);
	}
	h->busy = 1;
	reopen = h->pos != off;
	pthread_mutex_unlock(&h->lock);
	if (reopen) {
		__atomic_add_fetch(&counters.reopens, 1, __ATOMIC_RELAXED);
		/* Closing the old stream and opening one here: a round trip. */
		sleep_us(opt.delay_us);
	}
	if (opt.stream_rate && (reopen || !h->opened)) {
		if (!reopen)
			sleep_us(opt.delay_us);
		h->opened = 1;
		h->filled = off;
		h->fill_ns = now_ns();
	}
	return reopen;
}

/* --stream-rate: waits until the stream has brought [off, off + size). */
static void stream_transfer(struct handle *h, off_t off, size_t size)
{
	uint64_t now = now_ns(), elapsed = now - h->fill_ns;
	unsigned long long rate = opt.stream_rate;
	off_t cap = off + (off_t)opt.stream_ahead, want = off + (off_t)size, filled = cap;

	/* What arrived since the last read; the stream pauses at the cap. */
	if (elapsed < 1000000000ULL * (unsigned long long)opt.stream_ahead / rate) {
		unsigned long long add = elapsed * rate / 1000000000ULL;

		if (h->filled + (off_t)add < cap)
			filled = h->filled + (off_t)add;
	}
	if (filled < want) {
		unsigned long long wait_ns = (unsigned long long)(want - filled) * 1000000000ULL / rate;

		sleep_us(wait_ns / 1000);
		now += wait_ns;
		filled = want;
	}
	h->filled = filled;
	h->fill_ns = now;
}

static void stream_release(struct handle *h, off_t pos)
{
	pthread_mutex_lock(&h->lock);
	h->pos = pos;
	h->busy = 0;
	pthread_cond_broadcast(&h->moved);
	pthread_mutex_unlock(&h->lock);
}

static void *sfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* libfuse insists that this matches the max_read mount option. */
	if (opt.max_read)
		conn->max_read = (unsigned)opt.max_read;
	/* read, release and fgetattr work on the descriptor alone. */
	cfg->nullpath_ok = 1;
	cfg->kernel_cache = opt.keep_cache;
	/* The source is not supposed to change while mounted. */
	cfg->attr_timeout = 10;
	cfg->entry_timeout = 10;
	return NULL;
}

static int sfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	if ((fi && fi->fh == STATS_FH) || is_stats(path)) {
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		/* Size 0: read through direct_io, which does not stop at i_size. */
		return 0;
	}
	if (fi)
		return fstat(handle_of(fi)->fd, st) == -1 ? -errno : 0;
	return fstatat(srcfd, rel(path), st, AT_SYMLINK_NOFOLLOW) == -1 ? -errno : 0;
}

static int sfs_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n;

	if (size == 0)
		return -EINVAL;
	n = readlinkat(srcfd, rel(path), buf, size - 1);
	if (n == -1)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int sfs_opendir(const char *path, struct fuse_file_info *fi)
{
	int fd = openat(srcfd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (fd == -1)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return -e;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	return 0;
}

static int sfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		       off_t off, struct fuse_file_info *fi,
		       enum fuse_readdir_flags flags)
{
	DIR *d = (DIR *)(uintptr_t)fi->fh;
	struct dirent *de;

	(void)path; (void)off; (void)flags;
	/* Offsets of 0 make libfuse buffer the whole listing: one pass. */
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		memset(&st, 0, sizeof(st));
		st.st_ino = de->d_ino;
		st.st_mode = (mode_t)DTTOIF(de->d_type);
		if (filler(buf, de->d_name, &st, 0, 0))
			break;
	}
	return 0;
}

static int sfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	closedir((DIR *)(uintptr_t)fi->fh);
	return 0;
}

static int sfs_open(const char *path, struct fuse_file_info *fi)
{
	struct handle *h;
	int fd;

	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	if (is_stats(path)) {
		fi->fh = STATS_FH;
		fi->direct_io = 1;
		return 0;
	}
	fd = openat(srcfd, rel(path), O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	h = handle_new(fd);
	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = opt.direct_io;
	fi->keep_cache = opt.keep_cache;
	__atomic_add_fetch(&counters.opens, 1, __ATOMIC_RELAXED);
	return 0;
}

static int read_stats(char *buf, size_t size, off_t off)
{
	char line[256];
	int len = format_stats(line, sizeof(line));

	if (off >= len)
		return 0;
	if (size > (size_t)(len - off))
		size = (size_t)(len - off);
	memcpy(buf, line + off, size);
	return (int)size;
}

/* Reads size bytes at off (fewer at EOF); -errno on failure. */
static ssize_t read_full(int fd, char *buf, size_t size, off_t off)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, off + (off_t)done);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Set by SIGUSR1: --stream-per-handle no longer applies (a request reads
 * it once, so that it releases the stream it acquired). Atomic: the
 * handler runs in any of the loop's threads. */
static int streams_off;

static void streams_off_handler(int sig)
{
	(void)sig;
	int saved = errno;
	__atomic_store_n(&streams_off, 1, __ATOMIC_RELAXED);
	errno = saved;
}

static int sfs_read(const char *path, char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h;
	ssize_t got;
	size_t done;
	long now;
	int sph;

	(void)path;
	if (fi->fh == STATS_FH)
		return read_stats(buf, size, off);

	h = handle_of(fi);
	sph = opt.stream_per_handle && !__atomic_load_n(&streams_off, __ATOMIC_RELAXED);
	now = __atomic_add_fetch(&counters.inflight, 1, __ATOMIC_RELAXED);
	counter_max(&counters.max_inflight, now);
	if (sph)
		stream_acquire(h, off);
	if (sph && opt.stream_rate)
		stream_transfer(h, off, size);
	else
		simulate_latency(size);
	got = read_full(h->fd, buf, size, off);
	if (sph)
		stream_release(h, off + (got > 0 ? (off_t)got : 0));
	__atomic_sub_fetch(&counters.inflight, 1, __ATOMIC_RELAXED);
	if (got < 0)
		return (int)got;
	done = (size_t)got;
	__atomic_add_fetch(&counters.reads, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&counters.bytes, done, __ATOMIC_RELAXED);
	counter_max(&counters.max_request, (long)size);
	return (int)done;
}

static int sfs_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	if (fi->fh != STATS_FH)
		handle_free(handle_of(fi));
	return 0;
}

static int sfs_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fstatvfs(srcfd, sv) == -1 ? -errno : 0;
}

static void sfs_destroy(void *data)
{
	char line[256];
	FILE *f;

	(void)data;
	if (!opt.stats_path)
		return;
	format_stats(line, sizeof(line));
	f = fopen(opt.stats_path, "a");
	if (!f)
		return;
	fputs(line, f);
	fclose(f);
}

static const struct fuse_operations ops = {
	.init = sfs_init,
	.getattr = sfs_getattr,
	.readlink = sfs_readlink,
	.opendir = sfs_opendir,
	.readdir = sfs_readdir,
	.releasedir = sfs_releasedir,
	.open = sfs_open,
	.read = sfs_read,
	.release = sfs_release,
	.statfs = sfs_statfs,
	.destroy = sfs_destroy,
};

/* The first non-option is SRCDIR (consumed), the second the mountpoint. */
static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)data; (void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !srcdir) {
		srcdir = realpath(arg, NULL);
		if (!srcdir) {
			fprintf(stderr, "slowfs: %s: %s\n", arg, strerror(errno));
			return -1;
		}
		return 0;
	}
	return 1;
}

/* fuse_daemonize() changes to /: a relative --stats path would move. */
static int absolutize(char **path)
{
	char cwd[PATH_MAX], *abs;

	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	abs = malloc(strlen(cwd) + strlen(*path) + 2);
	if (!abs)
		return -1;
	sprintf(abs, "%s/%s", cwd, *path);
	free(*path);
	*path = abs;
	return 0;
}

static int add_mount_options(struct fuse_args *args)
{
	char buf[64];

	/* ro: the kernel refuses writes itself; fsname/subtype: readable `mount`. */
	if (fuse_opt_add_arg(args, "-oro,fsname=slowfs,subtype=slowfs") != 0)
		return -1;
	if (opt.max_read) {
		snprintf(buf, sizeof(buf), "-omax_read=%lu", opt.max_read);
		if (fuse_opt_add_arg(args, buf) != 0)
			return -1;
	}
	return 0;
}

static int serve(struct fuse *fuse, const struct fuse_cmdline_opts *copts)
{
	struct fuse_loop_config *lc;
	int res;

	if (copts->singlethread)
		return fuse_loop(fuse);
	lc = fuse_loop_cfg_create();
	if (!lc)
		return -1;
	fuse_loop_cfg_set_clone_fd(lc, copts->clone_fd);
	fuse_loop_cfg_set_max_threads(lc, (unsigned)opt.threads);
	/* Keep idle workers: creating a thread per burst would add latency. */
	fuse_loop_cfg_set_idle_threads(lc, (unsigned)opt.threads);
	res = fuse_loop_mt(fuse, lc);
	fuse_loop_cfg_destroy(lc);
	return res;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts copts;
	struct fuse *fuse = NULL;
	int res = 1;

	if (fuse_opt_parse(&args, &opt, option_spec, opt_proc) == -1)
		return 2;
	if (opt.show_help) {
		usage(argv[0]);
		return 0;
	}
	if (opt.stats_path && opt.stats_path[0] != '/' && absolutize(&opt.stats_path) != 0)
		return 2;
	if (!srcdir || opt.threads == 0) {
		usage(argv[0]);
		return 2;
	}
	if (add_mount_options(&args) != 0 || fuse_parse_cmdline(&args, &copts) != 0)
		return 2;
	if (!copts.mountpoint) {
		usage(argv[0]);
		return 2;
	}
	srcfd = open(srcdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (srcfd == -1) {
		fprintf(stderr, "slowfs: %s: %s\n", srcdir, strerror(errno));
		goto out;
	}
	fuse = fuse_new(&args, &ops, sizeof(ops), NULL);
	if (!fuse)
		goto out;
	if (fuse_mount(fuse, copts.mountpoint) != 0)
		goto out_destroy;
	/* Only now: the parent exits once the mount is usable. */
	if (fuse_daemonize(copts.foreground) != 0)
		goto out_unmount;
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0)
		goto out_unmount;
	signal(SIGUSR1, streams_off_handler);
	res = serve(fuse, &copts) == 0 ? 0 : 1;
	fuse_remove_signal_handlers(fuse_get_session(fuse));
out_unmount:
	fuse_unmount(fuse);
out_destroy:
	fuse_destroy(fuse);
out:
	free(copts.mountpoint);
	fuse_opt_free_args(&args);
	free(srcdir);
	if (srcfd != -1)
		close(srcfd);
	return res;
}
