/* The exported symbols: the only functions of the library a program sees.
 *
 * Each hook has glibc's exact signature and stays thin: bind the real
 * functions (pf_libc), pass straight through when the library is disabled or
 * already running on this thread (pf_active), otherwise hand the call to the
 * engine. Reads go to pf_read_fd() in engine.c; calls that return a new
 * descriptor number, close one or move its offset tell the engine so. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine.h"
#include "fileahead.h"
#include "libc.h"
#include "mmap_prefetch.h"
#include "nodebudget.h"
#include "predict.h"
#include "stats.h"
#include "stdio_path.h"
#include "thread.h"

/* <stdio.h> may define it as a macro when optimising. */
#undef fread_unlocked

#define PF_EXPORT __attribute__((visibility("default")))

/* --- lifecycle ------------------------------------------------------------------ */

/* The library's fork handlers: one set, for every module, so that the order
 * is this one whichever module was used first. Locks are taken in one
 * order, the file predictions' and fetches' (predict.c, fileahead.c), the
 * mmap table's, then the engine's pool (no code holds one while taking the
 * next); the mmap path's prepare also waits until none of its
 * threads is being started. Fd slots and streams are not locked: the child
 * re-initialises the slots and drops the streams. The child resets the
 * engine first: it zeroes the memory accounting, to which the mmap path's
 * reservations, forgotten next, were charged. */
static void pf_atfork_prepare(void)
{
	pf_predict_atfork_prepare();
	pf_mmap_atfork_prepare();
	pf_engine_atfork_prepare();
	pf_thread_wait_started();
}

static void pf_atfork_parent(void)
{
	pf_engine_atfork_parent();
	pf_mmap_atfork_parent();
	pf_predict_atfork_parent();
}

static void pf_atfork_child(void)
{
	pf_thread_forked_child();
	pf_engine_atfork_child();
	pf_mmap_atfork_child();
	pf_predict_atfork_child();
	pf_node_atfork_child();
}

/* The constructor does as little as possible: every process pays for it,
 * `true` and `ls` included. Settings and the real functions are bound on
 * first use, so hooks also work when called before it ran. */
__attribute__((constructor)) static void pf_init(void)
{
	pthread_atfork(pf_atfork_prepare, pf_atfork_parent, pf_atfork_child);
}

__attribute__((destructor)) static void pf_fini(void)
{
	pf_in_library = 1;
	pf_stats_report();
	pf_node_detach();
}

/* --- open ------------------------------------------------------------------------- */

static bool open_needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

/* A new descriptor from dup or fcntl: forget what its number meant. */
static int opened(int fd)
{
	if (fd >= 0 && pf_active())
		pf_fd_opened(fd, false);
	return fd;
}

/* A file opened with these flags is a candidate for reading ahead. */
static bool read_only_flags(int flags)
{
	return (flags & O_ACCMODE) == O_RDONLY && !(flags & (O_DIRECT | O_PATH | O_DIRECTORY));
}

/* A file opened for reading may be one fetched ahead (fileahead.c): then
 * the engine does not also start reading it at open. */
static int file_opened(int fd, int dirfd, const char *path, int flags)
{
	if (fd >= 0 && pf_active()) {
		bool reading = read_only_flags(flags);
		bool adopted = reading && pf_files_opened(fd, dirfd, path);
		pf_fd_opened(fd, reading && !adopted);
	}
	return fd;
}

static int boot_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	if (dirfd == AT_FDCWD || (path && path[0] == '/'))
		return pf_boot_open(path, flags, mode);
	errno = ENOSYS; /* only while dlsym runs on this thread */
	return -1;
}

#define OPEN_MODE(flags, last, mode)                        \
	mode_t mode = 0;                                    \
	if (open_needs_mode(flags)) {                       \
		va_list ap;                                 \
		va_start(ap, last);                         \
		mode = va_arg(ap, mode_t);                  \
		va_end(ap);                                 \
	}

PF_EXPORT int open(const char *path, int flags, ...)
{
	OPEN_MODE(flags, flags, mode);
	if (pf_libc_bind() != 0)
		return pf_boot_open(path, flags, mode);
	return file_opened(pf_libc.open(path, flags, mode), AT_FDCWD, path, flags);
}

PF_EXPORT int open64(const char *path, int flags, ...)
{
	OPEN_MODE(flags, flags, mode);
	if (pf_libc_bind() != 0)
		return pf_boot_open(path, flags, mode);
	return file_opened(pf_libc.open64(path, flags, mode), AT_FDCWD, path, flags);
}

PF_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags, flags, mode);
	if (pf_libc_bind() != 0)
		return boot_openat(dirfd, path, flags, mode);
	return file_opened(pf_libc.openat(dirfd, path, flags, mode), dirfd, path,
			   flags);
}

#ifdef HAVE_OPENAT64
PF_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags, flags, mode);
	if (pf_libc_bind() != 0)
		return boot_openat(dirfd, path, flags, mode);
	return file_opened(pf_libc.openat64(dirfd, path, flags, mode), dirfd, path,
			   flags);
}
#endif

/* The fortified entry points take no mode: glibc's own versions reject
 * O_CREAT there, so they are called as they are. */
#ifdef HAVE___OPEN_2
PF_EXPORT int __open_2(const char *path, int flags);
PF_EXPORT int __open_2(const char *path, int flags)
{
	if (pf_libc_bind() != 0)
		return pf_boot_open(path, flags, 0);
	return file_opened(pf_libc.__open_2(path, flags), AT_FDCWD, path, flags);
}
#endif

#ifdef HAVE___OPEN64_2
PF_EXPORT int __open64_2(const char *path, int flags);
PF_EXPORT int __open64_2(const char *path, int flags)
{
	if (pf_libc_bind() != 0)
		return pf_boot_open(path, flags, 0);
	return file_opened(pf_libc.__open64_2(path, flags), AT_FDCWD, path, flags);
}
#endif

#ifdef HAVE___OPENAT_2
PF_EXPORT int __openat_2(int dirfd, const char *path, int flags);
PF_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	if (pf_libc_bind() != 0)
		return boot_openat(dirfd, path, flags, 0);
	return file_opened(pf_libc.__openat_2(dirfd, path, flags), dirfd, path,
			   flags);
}
#endif

#ifdef HAVE___OPENAT64_2
PF_EXPORT int __openat64_2(int dirfd, const char *path, int flags);
PF_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	if (pf_libc_bind() != 0)
		return boot_openat(dirfd, path, flags, 0);
	return file_opened(pf_libc.__openat64_2(dirfd, path, flags), dirfd, path,
			   flags);
}
#endif

PF_EXPORT int creat(const char *path, mode_t mode)
{
	if (pf_libc_bind() != 0)
		return pf_boot_open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
	return opened(pf_libc.creat(path, mode));
}

#ifdef HAVE_CREAT64
PF_EXPORT int creat64(const char *path, mode_t mode)
{
	if (pf_libc_bind() != 0)
		return pf_boot_open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
	return opened(pf_libc.creat64(path, mode));
}
#endif

/* --- read ------------------------------------------------------------------------- */

static ssize_t read_one(int fd, void *buf, size_t count, off64_t offset)
{
	struct iovec iov = { buf, count };
	struct pf_read_req req = { &iov, 1, offset };
	return pf_read_fd(fd, &req);
}

static ssize_t read_vec(int fd, const struct iovec *iov, int iovcnt, off64_t offset)
{
	struct pf_read_req req = { iov, iovcnt, offset };
	return pf_read_fd(fd, &req);
}

PF_EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	if (pf_libc_bind() != 0)
		return pf_boot_read(fd, buf, count);
	if (!pf_active())
		return pf_libc.read(fd, buf, count);
	return read_one(fd, buf, count, PF_AT_FILE_OFFSET);
}

#ifdef HAVE___READ_CHK
PF_EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen);
PF_EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	if (pf_libc_bind() != 0)
		return pf_boot_read(fd, buf, count);
	if (count > buflen || !pf_active())
		return pf_libc.__read_chk(fd, buf, count, buflen); /* glibc reports the overflow */
	return read_one(fd, buf, count, PF_AT_FILE_OFFSET);
}
#endif

PF_EXPORT ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
	if (pf_libc_bind() != 0)
		return pf_boot_pread(fd, buf, count, offset);
	if (!pf_active())
		return pf_libc.pread(fd, buf, count, offset);
	return read_one(fd, buf, count, offset);
}

#ifdef HAVE_PREAD64
PF_EXPORT ssize_t pread64(int fd, void *buf, size_t count, off64_t offset)
{
	if (pf_libc_bind() != 0)
		return pf_boot_pread(fd, buf, count, offset);
	if (!pf_active())
		return pf_libc.pread64(fd, buf, count, offset);
	return read_one(fd, buf, count, offset);
}
#endif

#ifdef HAVE___PREAD_CHK
PF_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset, size_t buflen);
PF_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t count, off_t offset, size_t buflen)
{
	if (pf_libc_bind() != 0)
		return pf_boot_pread(fd, buf, count, offset);
	if (count > buflen || !pf_active())
		return pf_libc.__pread_chk(fd, buf, count, offset, buflen);
	return read_one(fd, buf, count, offset);
}
#endif

#ifdef HAVE___PREAD64_CHK
PF_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t offset, size_t buflen);
PF_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t count, off64_t offset, size_t buflen)
{
	if (pf_libc_bind() != 0)
		return pf_boot_pread(fd, buf, count, offset);
	if (count > buflen || !pf_active())
		return pf_libc.__pread64_chk(fd, buf, count, offset, buflen);
	return read_one(fd, buf, count, offset);
}
#endif

PF_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	if (!pf_active() || iovcnt <= 0 || iovcnt > IOV_MAX)
		return pf_libc.readv(fd, iov, iovcnt);
	return read_vec(fd, iov, iovcnt, PF_AT_FILE_OFFSET);
}

#ifdef HAVE_PREADV
PF_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	if (!pf_active() || iovcnt <= 0 || iovcnt > IOV_MAX)
		return pf_libc.preadv(fd, iov, iovcnt, offset);
	return read_vec(fd, iov, iovcnt, offset);
}
#endif

#ifdef HAVE_PREADV64
PF_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int iovcnt, off64_t offset)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	if (!pf_active() || iovcnt <= 0 || iovcnt > IOV_MAX)
		return pf_libc.preadv64(fd, iov, iovcnt, offset);
	return read_vec(fd, iov, iovcnt, offset);
}
#endif

/* --- position ----------------------------------------------------------------------- */

static void seeked(int fd, off64_t result, off64_t offset, int whence)
{
	/* lseek(fd, 0, SEEK_CUR) only asks where the offset is. */
	if (result >= 0 && !(whence == SEEK_CUR && offset == 0) && pf_active())
		pf_fd_seeked(fd, result);
}

PF_EXPORT off_t lseek(int fd, off_t offset, int whence)
{
	if (pf_libc_bind() != 0)
		return (off_t)pf_boot_lseek(fd, offset, whence);
	off_t r = pf_libc.lseek(fd, offset, whence);
	seeked(fd, r, offset, whence);
	return r;
}

#ifdef HAVE_LSEEK64
PF_EXPORT off64_t lseek64(int fd, off64_t offset, int whence)
{
	if (pf_libc_bind() != 0)
		return pf_boot_lseek(fd, offset, whence);
	off64_t r = pf_libc.lseek64(fd, offset, whence);
	seeked(fd, r, offset, whence);
	return r;
}
#endif

static int advised(int fd, int advice, int result)
{
	if (result == 0 && pf_active())
		pf_fd_advised(fd, advice);
	return result;
}

PF_EXPORT int posix_fadvise(int fd, off_t offset, off_t len, int advice)
{
	if (pf_libc_bind() != 0)
		return ENOSYS;
	return advised(fd, advice, pf_libc.posix_fadvise(fd, offset, len, advice));
}

#ifdef HAVE_POSIX_FADVISE64
PF_EXPORT int posix_fadvise64(int fd, off64_t offset, off64_t len, int advice)
{
	if (pf_libc_bind() != 0)
		return ENOSYS;
	return advised(fd, advice, pf_libc.posix_fadvise64(fd, offset, len, advice));
}
#endif

/* --- close and duplicate ------------------------------------------------------------- */

PF_EXPORT int close(int fd)
{
	if (pf_libc_bind() != 0)
		return pf_boot_close(fd);
	/* Before the close: the number may be reused as soon as it returns. */
	if (pf_active())
		pf_fd_closing(fd);
	return pf_libc.close(fd);
}

#ifdef HAVE_CLOSE_RANGE
PF_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	if (!(flags & CLOSE_RANGE_CLOEXEC) && first <= last && pf_active())
		pf_fd_closing_range(first, last);
	return pf_libc.close_range(first, last, flags);
}
#endif

#ifdef HAVE_CLOSEFROM
PF_EXPORT void closefrom(int lowfd)
{
	if (pf_libc_bind() != 0)
		return;
	if (pf_active())
		pf_fd_closing_range(lowfd < 0 ? 0 : (unsigned)lowfd, UINT_MAX);
	pf_libc.closefrom(lowfd);
}
#endif

PF_EXPORT int dup(int oldfd)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	return opened(pf_libc.dup(oldfd));
}

/* dup2 and dup3 close newfd first, unless it is oldfd. */
static void replacing(int oldfd, int newfd)
{
	if (oldfd != newfd && pf_active())
		pf_fd_closing(newfd);
}

PF_EXPORT int dup2(int oldfd, int newfd)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	replacing(oldfd, newfd);
	int r = pf_libc.dup2(oldfd, newfd);
	return oldfd == newfd ? r : opened(r);
}

PF_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	replacing(oldfd, newfd);
	return opened(pf_libc.dup3(oldfd, newfd, flags));
}

static int after_fcntl(int fd, int cmd, void *arg, int result)
{
	if (result < 0)
		return result;
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return opened(result);
	if (cmd == F_SETFL && pf_active())
		pf_fd_flags_changed(fd, (int)(intptr_t)arg);
	return result;
}

/* fcntl's third argument is an int or a pointer depending on cmd; like
 * glibc, take it as a pointer-sized value and hand it on unchanged. */
PF_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	return after_fcntl(fd, cmd, arg, pf_libc.fcntl(fd, cmd, arg));
}

#ifdef HAVE_FCNTL64
PF_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	return after_fcntl(fd, cmd, arg, pf_libc.fcntl64(fd, cmd, arg));
}
#endif

/* --- stdio ------------------------------------------------------------------------------ */

static FILE *stream_opened(FILE *fp, const char *path, const char *mode)
{
	if (fp)
		file_opened(pf_stream_fd(fp), AT_FDCWD, path,
			    mode[0] == 'r' && !strchr(mode, '+') ? O_RDONLY : O_RDWR);
	return fp;
}

PF_EXPORT FILE *fopen(const char *path, const char *mode)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return NULL;
	}
	return stream_opened(pf_libc.fopen(path, mode), path, mode);
}

#ifdef HAVE_FOPEN64
PF_EXPORT FILE *fopen64(const char *path, const char *mode)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return NULL;
	}
	return stream_opened(pf_libc.fopen64(path, mode), path, mode);
}
#endif

/* glibc closes the old descriptor internally, where no hook sees it. */
static void stream_closing(FILE *fp)
{
	int fd = pf_stream_fd(fp);
	if (fd >= 0 && pf_active())
		pf_fd_closing(fd);
}

PF_EXPORT FILE *freopen(const char *path, const char *mode, FILE *stream)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return NULL;
	}
	stream_closing(stream);
	return stream_opened(pf_libc.freopen(path, mode, stream), path, mode);
}

#ifdef HAVE_FREOPEN64
PF_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return NULL;
	}
	stream_closing(stream);
	return stream_opened(pf_libc.freopen64(path, mode, stream), path, mode);
}
#endif

PF_EXPORT int fclose(FILE *stream)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return EOF;
	}
	stream_closing(stream);
	return pf_libc.fclose(stream);
}

/* fread takes the stream's lock, as glibc's does, unless the program took
 * over locking itself (__fsetlocking FSETLOCKING_BYCALLER). */
static size_t locked_fread(void *ptr, size_t size, size_t n, FILE *stream)
{
	bool lock = !(stream->_flags & _IO_USER_LOCK);
	if (lock)
		flockfile(stream);
	size_t r = pf_fread_unlocked(ptr, size, n, stream);
	if (lock)
		funlockfile(stream);
	return r;
}

PF_EXPORT size_t fread(void *ptr, size_t size, size_t n, FILE *stream)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return 0;
	}
	if (!pf_active())
		return pf_libc.fread(ptr, size, n, stream);
	return locked_fread(ptr, size, n, stream);
}

#ifdef HAVE_FREAD_UNLOCKED
PF_EXPORT size_t fread_unlocked(void *ptr, size_t size, size_t n, FILE *stream)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return 0;
	}
	if (!pf_active())
		return pf_libc.fread_unlocked(ptr, size, n, stream);
	return pf_fread_unlocked(ptr, size, n, stream);
}
#endif

/* The checks of glibc's __fread_chk: an overflowing size * n, or more than
 * the destination holds, go to glibc, which reports them. */
static bool fread_chk_fails(size_t ptrlen, size_t size, size_t n)
{
	size_t bytes = size * n;
	return (size != 0 && bytes / size != n) || bytes > ptrlen;
}

#ifdef HAVE___FREAD_CHK
PF_EXPORT size_t __fread_chk(void *ptr, size_t ptrlen, size_t size, size_t n, FILE *stream);
PF_EXPORT size_t __fread_chk(void *ptr, size_t ptrlen, size_t size, size_t n, FILE *stream)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return 0;
	}
	if (!pf_active() || fread_chk_fails(ptrlen, size, n))
		return pf_libc.__fread_chk(ptr, ptrlen, size, n, stream);
	return locked_fread(ptr, size, n, stream);
}
#endif

#ifdef HAVE___FREAD_UNLOCKED_CHK
PF_EXPORT size_t __fread_unlocked_chk(void *ptr, size_t ptrlen, size_t size, size_t n,
				      FILE *stream);
PF_EXPORT size_t __fread_unlocked_chk(void *ptr, size_t ptrlen, size_t size, size_t n,
				      FILE *stream)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return 0;
	}
	if (!pf_active() || fread_chk_fails(ptrlen, size, n))
		return pf_libc.__fread_unlocked_chk(ptr, ptrlen, size, n, stream);
	return pf_fread_unlocked(ptr, size, n, stream);
}
#endif

/* --- mmap --- */

/* Anonymous memory (allocators, thread stacks) costs one test: only file
 * mappings and MAP_FIXED (which may replace a watched mapping) go further. */
#define MMAP_PASSES(flags) (((flags) & (MAP_ANONYMOUS | MAP_FIXED)) == MAP_ANONYMOUS)

static void *mapping_made(void *p, size_t len, int prot, int flags, int fd, off64_t off)
{
	if (p != MAP_FAILED)
		pf_mmap_mapped(p, len, prot, flags, fd, off);
	return p;
}

static void replacing_range(void *addr, size_t len, int flags)
{
	if ((flags & MAP_FIXED) && pf_mmap_tracking())
		pf_mmap_unmapping(addr, len);
}

PF_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (pf_libc_bind() != 0)
		return pf_boot_mmap(addr, len, prot, flags, fd, off);
	if (MMAP_PASSES(flags) || !pf_active())
		return pf_libc.mmap(addr, len, prot, flags, fd, off);
	replacing_range(addr, len, flags);
	return mapping_made(pf_libc.mmap(addr, len, prot, flags, fd, off), len, prot, flags, fd, off);
}

#ifdef HAVE_MMAP64
PF_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	if (pf_libc_bind() != 0)
		return pf_boot_mmap(addr, len, prot, flags, fd, off);
	if (MMAP_PASSES(flags) || !pf_active())
		return pf_libc.mmap64(addr, len, prot, flags, fd, off);
	replacing_range(addr, len, flags);
	return mapping_made(pf_libc.mmap64(addr, len, prot, flags, fd, off), len, prot, flags, fd,
			    off);
}
#endif

/* Before the real call: the thread must be done with the range first. */
PF_EXPORT int munmap(void *addr, size_t len)
{
	if (pf_libc_bind() != 0)
		return pf_boot_munmap(addr, len);
	if (pf_mmap_tracking() && pf_active())
		pf_mmap_unmapping(addr, len);
	return pf_libc.munmap(addr, len);
}

/* The new address is passed only with MREMAP_FIXED, as glibc reads it. */
PF_EXPORT void *mremap(void *old_addr, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (pf_libc_bind() != 0)
		return pf_boot_mremap(old_addr, old_len, new_len, flags, new_addr);
	if (pf_mmap_tracking() && pf_active()) {
		pf_mmap_unmapping(old_addr, old_len);
		if (flags & MREMAP_FIXED)
			pf_mmap_unmapping(new_addr, new_len);
	}
	return pf_libc.mremap(old_addr, old_len, new_len, flags, new_addr);
}

PF_EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (pf_libc_bind() != 0)
		return pf_boot_madvise(addr, len, advice);
	int r = pf_libc.madvise(addr, len, advice);
	if (r == 0 && pf_mmap_tracking() && pf_active())
		pf_mmap_advised(addr, len, advice);
	return r;
}

/* The POSIX_MADV_* values are the MADV_* ones. glibc ignores
 * POSIX_MADV_DONTNEED, but it still says the data is not wanted. */
PF_EXPORT int posix_madvise(void *addr, size_t len, int advice)
{
	if (pf_libc_bind() != 0)
		return ENOSYS;
	int r = pf_libc.posix_madvise(addr, len, advice);
	if (r == 0 && pf_mmap_tracking() && pf_active())
		pf_mmap_advised(addr, len, advice);
	return r;
}

/* --- directory listings (fileahead.c) --- */

/* What a program reads of a directory tells which files it may open next. */
static void dir_read(DIR *dirp, const char *name, unsigned char type)
{
	int saved = errno; /* readdir's end is NULL with errno unchanged */
	if (pf_active())
		pf_files_dir_entry(dirp, name, type);
	errno = saved;
}

PF_EXPORT struct dirent *readdir(DIR *dirp)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return NULL;
	}
	struct dirent *d = pf_libc.readdir(dirp);
	dir_read(dirp, d ? d->d_name : NULL, d ? d->d_type : DT_UNKNOWN);
	return d;
}

PF_EXPORT struct dirent64 *readdir64(DIR *dirp)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return NULL;
	}
	struct dirent64 *d = pf_libc.readdir64(dirp);
	dir_read(dirp, d ? d->d_name : NULL, d ? d->d_type : DT_UNKNOWN);
	return d;
}

PF_EXPORT int closedir(DIR *dirp)
{
	if (pf_libc_bind() != 0) {
		errno = ENOSYS;
		return -1;
	}
	if (pf_active())
		pf_files_dir_closing(dirp);
	return pf_libc.closedir(dirp);
}
