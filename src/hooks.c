/* The exported symbols of descriptors (open, read, seek, advise, close,
 * dup, fcntl), and the library's lifecycle; hooks_stdio.c and hooks_mmap.c
 * hold the rest.
 *
 * Each hook has glibc's exact signature and stays thin: the gate
 * (PF_GATE, runtime.h), then the engine's logic. Reads go to pf_read_fd()
 * in readpath.c; calls that return a new descriptor number, close one or move
 * its offset tell the engine so. The real functions are called as
 * pf_libc.name. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine.h"
#include "fileahead.h"
#include "libc.h"
#include "mmap_prefetch.h"
#include "nodebudget.h"
#include "predict.h"
#include "runtime.h"
#include "stats.h"
#include "thread.h"

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
/* The forking thread's cancellation state: not cancellable while it holds
 * the locks below (pf_thread_wait_started waits). */
static __thread int fork_cancel __attribute__((tls_model("initial-exec")));

static void pf_atfork_prepare(void)
{
	/* A signal handler's read on this thread, with the locks below held,
	 * passes straight through. */
	pf_in_library = 1;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &fork_cancel);
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
	pthread_setcancelstate(fork_cancel, NULL);
	pf_in_library = 0;
}

static void pf_atfork_child(void)
{
	pf_thread_forked_child();
	pf_engine_atfork_child();
	pf_mmap_atfork_child();
	pf_predict_atfork_child();
	pf_node_atfork_child();
	pthread_setcancelstate(fork_cancel, NULL);
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

/* A new descriptor from creat, dup or fcntl: forget what its number meant. */
static int opened(int fd)
{
	if (fd >= 0)
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
int pf_hook_opened(int fd, int dirfd, const char *path, int flags)
{
	if (fd >= 0) {
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
	PF_GATE(false, pf_boot_open(path, flags, mode), pf_libc.open(path, flags, mode));
	return pf_hook_opened(pf_libc.open(path, flags, mode), AT_FDCWD, path, flags);
}

PF_EXPORT int open64(const char *path, int flags, ...)
{
	OPEN_MODE(flags, flags, mode);
	PF_GATE(false, pf_boot_open(path, flags, mode), pf_libc.open64(path, flags, mode));
	return pf_hook_opened(pf_libc.open64(path, flags, mode), AT_FDCWD, path, flags);
}

PF_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags, flags, mode);
	PF_GATE(false, boot_openat(dirfd, path, flags, mode),
		pf_libc.openat(dirfd, path, flags, mode));
	return pf_hook_opened(pf_libc.openat(dirfd, path, flags, mode), dirfd, path, flags);
}

#ifdef HAVE_OPENAT64
PF_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags, flags, mode);
	PF_GATE(false, boot_openat(dirfd, path, flags, mode),
		pf_libc.openat64(dirfd, path, flags, mode));
	return pf_hook_opened(pf_libc.openat64(dirfd, path, flags, mode), dirfd, path, flags);
}
#endif

/* The fortified entry points take no mode: glibc's own versions reject
 * O_CREAT there, so they are called as they are. Each has a 64 twin, the
 * same but for the real function it calls. */
#define FORTIFIED_OPEN(name)                                                          \
	PF_EXPORT int name(const char *path, int flags);                              \
	PF_EXPORT int name(const char *path, int flags)                               \
	{                                                                             \
		PF_GATE(false, pf_boot_open(path, flags, 0), pf_libc.name(path, flags)); \
		return pf_hook_opened(pf_libc.name(path, flags), AT_FDCWD, path, flags); \
	}

#define FORTIFIED_OPENAT(name)                                                           \
	PF_EXPORT int name(int dirfd, const char *path, int flags);                      \
	PF_EXPORT int name(int dirfd, const char *path, int flags)                       \
	{                                                                                \
		PF_GATE(false, boot_openat(dirfd, path, flags, 0),                       \
			pf_libc.name(dirfd, path, flags));                               \
		return pf_hook_opened(pf_libc.name(dirfd, path, flags), dirfd, path, flags); \
	}

#ifdef HAVE___OPEN_2
FORTIFIED_OPEN(__open_2)
#endif
#ifdef HAVE___OPEN64_2
FORTIFIED_OPEN(__open64_2)
#endif
#ifdef HAVE___OPENAT_2
FORTIFIED_OPENAT(__openat_2)
#endif
#ifdef HAVE___OPENAT64_2
FORTIFIED_OPENAT(__openat64_2)
#endif

#define CREAT_FLAGS (O_CREAT | O_WRONLY | O_TRUNC)

PF_EXPORT int creat(const char *path, mode_t mode)
{
	PF_GATE(false, pf_boot_open(path, CREAT_FLAGS, mode), pf_libc.creat(path, mode));
	return opened(pf_libc.creat(path, mode));
}

#ifdef HAVE_CREAT64
PF_EXPORT int creat64(const char *path, mode_t mode)
{
	PF_GATE(false, pf_boot_open(path, CREAT_FLAGS, mode), pf_libc.creat64(path, mode));
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

/* A vector the kernel would refuse (EINVAL) is the C library's to answer. */
#define IOV_PASSES(iovcnt) ((iovcnt) <= 0 || (iovcnt) > IOV_MAX)

PF_EXPORT ssize_t read(int fd, void *buf, size_t count)
{
	PF_GATE(false, pf_boot_read(fd, buf, count), pf_libc.read(fd, buf, count));
	return read_one(fd, buf, count, PF_AT_FILE_OFFSET);
}

/* The _chk variants: a count over buflen is glibc's to report. */
#ifdef HAVE___READ_CHK
PF_EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen);
PF_EXPORT ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	PF_GATE(count > buflen, pf_boot_read(fd, buf, count),
		pf_libc.__read_chk(fd, buf, count, buflen));
	return read_one(fd, buf, count, PF_AT_FILE_OFFSET);
}
#endif

/* A negative offset is the kernel's to refuse (EINVAL): -1 would otherwise
 * pass for PF_AT_FILE_OFFSET, a read() at the file offset. */
PF_EXPORT ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
	PF_GATE(offset < 0, pf_boot_pread(fd, buf, count, offset), pf_libc.pread(fd, buf, count, offset));
	return read_one(fd, buf, count, offset);
}

#ifdef HAVE_PREAD64
PF_EXPORT ssize_t pread64(int fd, void *buf, size_t count, off64_t offset)
{
	PF_GATE(offset < 0, pf_boot_pread(fd, buf, count, offset),
		pf_libc.pread64(fd, buf, count, offset));
	return read_one(fd, buf, count, offset);
}
#endif

/* __pread_chk and its 64 twin, the same but for the offset's type and the
 * real function. */
#define PREAD_CHK(name, off_type)                                                           \
	PF_EXPORT ssize_t name(int fd, void *buf, size_t count, off_type offset, size_t buflen); \
	PF_EXPORT ssize_t name(int fd, void *buf, size_t count, off_type offset, size_t buflen)  \
	{                                                                                   \
		PF_GATE(count > buflen || offset < 0, pf_boot_pread(fd, buf, count, offset), \
			pf_libc.name(fd, buf, count, offset, buflen));                      \
		return read_one(fd, buf, count, offset);                                    \
	}

#ifdef HAVE___PREAD_CHK
PREAD_CHK(__pread_chk, off_t)
#endif
#ifdef HAVE___PREAD64_CHK
PREAD_CHK(__pread64_chk, off64_t)
#endif

PF_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	PF_GATE(IOV_PASSES(iovcnt), PF_BOOT_FAIL(-1), pf_libc.readv(fd, iov, iovcnt));
	return read_vec(fd, iov, iovcnt, PF_AT_FILE_OFFSET);
}

/* preadv and its 64 twin, like the two above. */
#define PREADV(name, off_type)                                                             \
	PF_EXPORT ssize_t name(int fd, const struct iovec *iov, int iovcnt, off_type offset) \
	{                                                                                  \
		PF_GATE(IOV_PASSES(iovcnt) || offset < 0, PF_BOOT_FAIL(-1),                \
			pf_libc.name(fd, iov, iovcnt, offset));                            \
		return read_vec(fd, iov, iovcnt, offset);                                  \
	}

#ifdef HAVE_PREADV
PREADV(preadv, off_t)
#endif
#ifdef HAVE_PREADV64
PREADV(preadv64, off64_t)
#endif

/* --- position and advice -------------------------------------------------------------- */

static off64_t seeked(int fd, off64_t result, off64_t offset, int whence)
{
	/* lseek(fd, 0, SEEK_CUR) only asks where the offset is. */
	if (result >= 0 && !(whence == SEEK_CUR && offset == 0))
		pf_fd_seeked(fd, result);
	return result;
}

PF_EXPORT off_t lseek(int fd, off_t offset, int whence)
{
	PF_GATE(false, (off_t)pf_boot_lseek(fd, offset, whence), pf_libc.lseek(fd, offset, whence));
	return (off_t)seeked(fd, pf_libc.lseek(fd, offset, whence), offset, whence);
}

#ifdef HAVE_LSEEK64
PF_EXPORT off64_t lseek64(int fd, off64_t offset, int whence)
{
	PF_GATE(false, pf_boot_lseek(fd, offset, whence), pf_libc.lseek64(fd, offset, whence));
	return seeked(fd, pf_libc.lseek64(fd, offset, whence), offset, whence);
}
#endif

static int advised(int fd, int advice, int result)
{
	if (result == 0)
		pf_fd_advised(fd, advice);
	return result;
}

/* posix_fadvise returns its error instead of setting errno. */
PF_EXPORT int posix_fadvise(int fd, off_t offset, off_t len, int advice)
{
	PF_GATE(false, ENOSYS, pf_libc.posix_fadvise(fd, offset, len, advice));
	return advised(fd, advice, pf_libc.posix_fadvise(fd, offset, len, advice));
}

#ifdef HAVE_POSIX_FADVISE64
PF_EXPORT int posix_fadvise64(int fd, off64_t offset, off64_t len, int advice)
{
	PF_GATE(false, ENOSYS, pf_libc.posix_fadvise64(fd, offset, len, advice));
	return advised(fd, advice, pf_libc.posix_fadvise64(fd, offset, len, advice));
}
#endif

/* --- close and duplicate ------------------------------------------------------------- */

/* The engine is told before the close: the number may be reused as soon as
 * it returns. */
PF_EXPORT int close(int fd)
{
	PF_GATE(false, pf_boot_close(fd), pf_libc.close(fd));
	pf_fd_closing(fd);
	return pf_libc.close(fd);
}

#ifdef HAVE_CLOSE_RANGE
PF_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	PF_GATE(false, PF_BOOT_FAIL(-1), pf_libc.close_range(first, last, flags));
	if (!(flags & CLOSE_RANGE_CLOEXEC) && first <= last)
		pf_fd_closing_range(first, last);
	return pf_libc.close_range(first, last, flags);
}
#endif

#ifdef HAVE_CLOSEFROM
/* The one hook that returns nothing: its gate is PF_GATE's, spelled out. */
PF_EXPORT void closefrom(int lowfd)
{
	if (pf_libc_bind() != 0)
		return;
	if (!pf_gate_passes(false))
		pf_fd_closing_range(lowfd < 0 ? 0 : (unsigned)lowfd, UINT_MAX);
	pf_libc.closefrom(lowfd);
}
#endif

PF_EXPORT int dup(int oldfd)
{
	PF_GATE(false, PF_BOOT_FAIL(-1), pf_libc.dup(oldfd));
	return opened(pf_libc.dup(oldfd));
}

/* dup2 and dup3 close newfd first, unless it is oldfd. */
static void replacing(int oldfd, int newfd)
{
	if (oldfd != newfd)
		pf_fd_closing(newfd);
}

PF_EXPORT int dup2(int oldfd, int newfd)
{
	PF_GATE(false, PF_BOOT_FAIL(-1), pf_libc.dup2(oldfd, newfd));
	replacing(oldfd, newfd);
	int r = pf_libc.dup2(oldfd, newfd);
	return oldfd == newfd ? r : opened(r);
}

PF_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	PF_GATE(false, PF_BOOT_FAIL(-1), pf_libc.dup3(oldfd, newfd, flags));
	replacing(oldfd, newfd);
	return opened(pf_libc.dup3(oldfd, newfd, flags));
}

static int after_fcntl(int fd, int cmd, void *arg, int result)
{
	if (result < 0)
		return result;
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return opened(result);
	if (cmd == F_SETFL)
		pf_fd_flags_changed(fd, (int)(intptr_t)arg);
	return result;
}

/* fcntl's third argument is an int or a pointer depending on cmd; like
 * glibc, take it as a pointer-sized value and hand it on unchanged. */
#define FCNTL_ARG(cmd, arg)                 \
	va_list ap;                         \
	va_start(ap, cmd);                  \
	void *arg = va_arg(ap, void *);     \
	va_end(ap)

PF_EXPORT int fcntl(int fd, int cmd, ...)
{
	FCNTL_ARG(cmd, arg);
	PF_GATE(false, PF_BOOT_FAIL(-1), pf_libc.fcntl(fd, cmd, arg));
	return after_fcntl(fd, cmd, arg, pf_libc.fcntl(fd, cmd, arg));
}

#ifdef HAVE_FCNTL64
PF_EXPORT int fcntl64(int fd, int cmd, ...)
{
	FCNTL_ARG(cmd, arg);
	PF_GATE(false, PF_BOOT_FAIL(-1), pf_libc.fcntl64(fd, cmd, arg));
	return after_fcntl(fd, cmd, arg, pf_libc.fcntl64(fd, cmd, arg));
}
#endif
