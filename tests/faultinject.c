/* libfaultinject: a test-only preload library that makes reads of one file
 * fail, come back short, or slow down, to test how libprefetch forwards what
 * the kernel does. Preload it after libprefetch
 * (LD_PRELOAD="libprefetch.so:libfaultinject.so") so that it also sees the
 * worker threads' preads, which libprefetch makes through dlsym(RTLD_NEXT).
 *
 * Only descriptors whose path (readlink /proc/self/fd/N) ends with
 * FI_PATH_SUFFIX are touched; without FI_PATH_SUFFIX nothing is. Variables,
 * read once:
 *
 *   FI_EIO_AT=OFFSET   a read whose range covers OFFSET returns the bytes
 *                      before OFFSET when it starts before it (a short read,
 *                      as the kernel returns partial data), else -1 EIO.
 *                      Persistent: every later read at OFFSET fails again.
 *   FI_EINTR_AT=OFFSET the same, but -1 EINTR, and only once per process:
 *                      the first read starting at OFFSET fails, reads that
 *                      cross OFFSET are cut there until it has. Whoever reads
 *                      OFFSET first (the program, or a prefetching worker)
 *                      gets it, so a program sees the same data either way.
 *   FI_SHORT=N         reads return at most N bytes.
 *   FI_DELAY_US=N      sleep N microseconds before each read (slow storage).
 *   FI_SLOW_AT=OFFSET  a read whose range covers OFFSET sleeps FI_SLOW_US
 *   FI_SLOW_US=N       more (default 300000), then logs "slow at OFFSET
 *                      LATER": how many reads starting past OFFSET's
 *                      read had gone ahead meanwhile, i.e. completed out of
 *                      order. Applied before FI_EIO_AT, so the two together
 *                      make an error that arrives after later ranges.
 *   FI_LOG=PATH        append a line per injected error, and at exit one
 *                      line counting the reads of the file by the main
 *                      thread and by other threads.
 *
 * Interposed: read, __read_chk, pread, pread64, __pread_chk, __pread64_chk,
 * readv, preadv, preadv64, preadv2, preadv64v2. read and readv take their
 * offset from lseek(fd, 0, SEEK_CUR); the kernel moves it by what the real
 * call returns, so partial results leave the offset right. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FI_EXPORT __attribute__((visibility("default")))

/* Fortified entry points glibc exports without declaring them. */
ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t offset, size_t buflen);

static struct {
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*pread64)(int, void *, size_t, off64_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*preadv64)(int, const struct iovec *, int, off64_t);
	ssize_t (*preadv64v2)(int, const struct iovec *, int, off64_t, int);
} real;

static const char *suffix;
static size_t suffix_len;
static long long eio_at = -1, eintr_at = -1;
static long long short_max = -1;
static long long slow_at = -1, slow_us;
static unsigned long later_reads;
static long delay_us;
static const char *log_path;
static int eintr_done;
static unsigned long reads_main, reads_other;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static long long env_number(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return -1;
	return strtoll(v, NULL, 0);
}

static void fi_init(void)
{
	real.read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
	real.pread64 = (ssize_t (*)(int, void *, size_t, off64_t))dlsym(RTLD_NEXT, "pread64");
	real.readv = (ssize_t (*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "readv");
	real.preadv64 = (ssize_t (*)(int, const struct iovec *, int, off64_t))
		dlsym(RTLD_NEXT, "preadv64");
	real.preadv64v2 = (ssize_t (*)(int, const struct iovec *, int, off64_t, int))
		dlsym(RTLD_NEXT, "preadv64v2");
	suffix = getenv("FI_PATH_SUFFIX");
	if (suffix && !*suffix)
		suffix = NULL;
	suffix_len = suffix ? strlen(suffix) : 0;
	eio_at = env_number("FI_EIO_AT");
	eintr_at = env_number("FI_EINTR_AT");
	short_max = env_number("FI_SHORT");
	if (short_max == 0)
		short_max = -1;
	delay_us = (long)env_number("FI_DELAY_US");
	slow_at = env_number("FI_SLOW_AT");
	slow_us = env_number("FI_SLOW_US");
	if (slow_us < 0)
		slow_us = 300000;
	log_path = getenv("FI_LOG");
	if (log_path && !*log_path)
		log_path = NULL;
}

static void fi_bind(void)
{
	pthread_once(&init_once, fi_init);
}

/* Bound at load, before the program can set a signal handler: a handler
 * that reads while the first read binds (dlsym) would wait for itself in
 * pthread_once (tests/faults.bats "signal storm" hung 1 run in 20 to 70
 * under load, its main thread in fi_init, its handler in fi_bind). */
__attribute__((constructor)) static void fi_load(void)
{
	fi_bind();
}

/* Logging without going through any interposed function. */
static void fi_log(const char *what, long long a, long long b)
{
	char line[160];
	if (!log_path)
		return;
	int n = snprintf(line, sizeof(line), "fi: %s %lld %lld pid %lld tid %lld\n", what, a, b,
			 (long long)getpid(), (long long)syscall(SYS_gettid));
	int lfd = (int)syscall(SYS_openat, AT_FDCWD, log_path,
			       O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (lfd < 0)
		return;
	if (syscall(SYS_write, lfd, line, (size_t)n) < 0) {
		/* nothing to do */
	}
	syscall(SYS_close, lfd);
}

static int is_target(int fd)
{
	char link[64], target[PATH_MAX];
	if (!suffix || fd < 0)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0 || (size_t)n < suffix_len)
		return 0;
	target[n] = '\0';
	return memcmp(target + n - (ssize_t)suffix_len, suffix, suffix_len) == 0;
}

static off64_t current_offset(int fd)
{
	return (off64_t)syscall(SYS_lseek, fd, (off_t)0, SEEK_CUR);
}

/* Decides what a read of count bytes at off may do: returns the (possibly
 * smaller) count to pass on, or -1 with *err set to fail it. */
static ssize_t fi_decide(off64_t off, size_t count, int *err)
{
	if (syscall(SYS_gettid) == getpid())
		__atomic_add_fetch(&reads_main, 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&reads_other, 1, __ATOMIC_RELAXED);
	if (delay_us > 0) {
		struct timespec ts = { delay_us / 1000000, (delay_us % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	if (off < 0 || count == 0)
		return (ssize_t)count;
	if (slow_at >= 0 && off > slow_at)
		__atomic_add_fetch(&later_reads, 1, __ATOMIC_RELAXED);
	if (slow_at >= 0 && off <= slow_at && (unsigned long long)slow_at < (unsigned long long)off + count) {
		unsigned long before = __atomic_load_n(&later_reads, __ATOMIC_RELAXED);
		struct timespec ts = { slow_us / 1000000, (slow_us % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		fi_log("slow at", off, (long long)(__atomic_load_n(&later_reads, __ATOMIC_RELAXED) - before));
	}
	if (short_max > 0 && count > (size_t)short_max)
		count = (size_t)short_max;
	if (eio_at >= 0 && off <= eio_at && (unsigned long long)eio_at < (unsigned long long)off + count) {
		if (off == eio_at) {
			fi_log("EIO at", off, (long long)count);
			*err = EIO;
			return -1;
		}
		count = (size_t)(eio_at - off);
	}
	if (eintr_at >= 0 && !__atomic_load_n(&eintr_done, __ATOMIC_ACQUIRE) && off <= eintr_at &&
	    (unsigned long long)eintr_at < (unsigned long long)off + count) {
		if (off == eintr_at) {
			int expected = 0;
			if (__atomic_compare_exchange_n(&eintr_done, &expected, 1, 0,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				fi_log("EINTR at", off,
				       (long long)count);
				*err = EINTR;
				return -1;
			}
		} else {
			count = (size_t)(eintr_at - off);
		}
	}
	return (ssize_t)count;
}

/* Copies iov into out, cut to count bytes; returns the new iovcnt. */
static int cut_iov(const struct iovec *iov, int iovcnt, size_t count, struct iovec *out)
{
	int n = 0;
	for (int i = 0; i < iovcnt && count > 0; i++) {
		out[n] = iov[i];
		if (out[n].iov_len > count)
			out[n].iov_len = count;
		count -= out[n].iov_len;
		n++;
	}
	return n;
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	return total;
}

FI_EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	fi_bind();
	if (!is_target(fd))
		return real.read(fd, buf, count);
	int err = 0;
	ssize_t allowed = fi_decide(current_offset(fd), count, &err);
	if (allowed < 0) {
		errno = err;
		return -1;
	}
	return real.read(fd, buf, (size_t)allowed);
}

FI_EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	if (count > buflen)
		abort();
	return read(fd, buf, count);
}

FI_EXPORT ssize_t pread64(int fd, void *buf, size_t count, off64_t offset)
{
	fi_bind();
	if (!is_target(fd))
		return real.pread64(fd, buf, count, offset);
	int err = 0;
	ssize_t allowed = fi_decide(offset, count, &err);
	if (allowed < 0) {
		errno = err;
		return -1;
	}
	return real.pread64(fd, buf, (size_t)allowed, offset);
}

FI_EXPORT ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
	return pread64(fd, buf, count, offset);
}

FI_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t offset, size_t buflen)
{
	if (count > buflen)
		abort();
	return pread64(fd, buf, count, offset);
}

FI_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset, size_t buflen)
{
	if (count > buflen)
		abort();
	return pread64(fd, buf, count, offset);
}

/* The vector calls: cut the list to what fi_decide allows. */
static ssize_t fi_vector(int fd, const struct iovec *iov, int iovcnt, off64_t offset,
			 int flags, int kind)
{
	fi_bind();
	if (kind == 0 && !is_target(fd))
		return real.readv(fd, iov, iovcnt);
	if (kind == 1 && !is_target(fd))
		return real.preadv64(fd, iov, iovcnt, offset);
	if (kind == 2 && !is_target(fd))
		return real.preadv64v2(fd, iov, iovcnt, offset, flags);
	if (iovcnt < 0 || iovcnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	int err = 0;
	size_t total = iov_total(iov, iovcnt);
	off64_t at = offset;
	if (kind == 0 || (kind == 2 && offset == -1))
		at = current_offset(fd);
	ssize_t allowed = fi_decide(at, total, &err);
	if (allowed < 0) {
		errno = err;
		return -1;
	}
	struct iovec cut[iovcnt > 0 ? iovcnt : 1];
	int n = cut_iov(iov, iovcnt, (size_t)allowed, cut);
	if (n == 0) {
		/* zero bytes asked (or allowed): still make the call for its checks */
		n = iovcnt > 0 ? 1 : 0;
		if (n)
			cut[0] = (struct iovec){ iov[0].iov_base, 0 };
	}
	if (kind == 0)
		return real.readv(fd, cut, n);
	if (kind == 1)
		return real.preadv64(fd, cut, n, offset);
	return real.preadv64v2(fd, cut, n, offset, flags);
}

FI_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	return fi_vector(fd, iov, iovcnt, -1, 0, 0);
}

FI_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int iovcnt, off64_t offset)
{
	return fi_vector(fd, iov, iovcnt, offset, 0, 1);
}

FI_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
	return fi_vector(fd, iov, iovcnt, offset, 0, 1);
}

FI_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int iovcnt, off64_t offset, int flags)
{
	return fi_vector(fd, iov, iovcnt, offset, flags, 2);
}

FI_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags)
{
	return fi_vector(fd, iov, iovcnt, offset, flags, 2);
}

__attribute__((destructor)) static void fi_report(void)
{
	if (!suffix || !log_path)
		return;
	fi_log("reads main,other",
	       (long long)__atomic_load_n(&reads_main, __ATOMIC_RELAXED),
	       (long long)__atomic_load_n(&reads_other, __ATOMIC_RELAXED));
}
