/* The prefetch engine: sequential-read detection per descriptor, streams of
 * read-ahead chunks, and the worker pool that fills them.
 *
 * A read of a descriptor goes hooks.c -> pf_read_fd() (readpath.c; the
 * engine's files share stream.h). Until its reads
 * look sequential it is passed straight to the C library; once they do (and
 * the descriptor is a read-only regular file on a real filesystem), a stream
 * is attached and workers pread() the chunks ahead of the reader. A read
 * served from a stream claims its range by moving the kernel file offset
 * with one lseek(SEEK_CUR), so the offset the kernel reports is always the
 * one the program expects. */
#ifndef PF_ENGINE_H
#define PF_ENGINE_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/uio.h>

/* One read request: an iovec list, and either an explicit offset (pread
 * family) or PF_AT_FILE_OFFSET (read family: uses and advances the offset). */
#define PF_AT_FILE_OFFSET ((off64_t)-1)

struct pf_read_req {
	const struct iovec *iov;
	int iovcnt;
	off64_t offset;
};

/* True when hooks should run the library's logic at all: not disabled by
 * PREFETCH_DISABLE, and not inside the library's own code on this thread. */
int pf_active(void);

/* The read path. Returns exactly what the C library would return. */
ssize_t pf_read_fd(int fd, const struct pf_read_req *req);

/* A new descriptor number was returned by open, dup, fcntl or fopen:
 * whatever was known about that number belongs to an old file. A file just
 * opened read-only (for_reading) may be prefetched at once, if this process
 * has been reading whole files. */
void pf_fd_opened(int fd, bool for_reading);

/* The descriptor is about to be closed (close, dup2 onto it, fclose):
 * stop its stream and wait for its reads in flight. */
void pf_fd_closing(int fd);
void pf_fd_closing_range(unsigned first, unsigned last);

/* lseek moved the offset to `to` (not a SEEK_CUR query). */
void pf_fd_seeked(int fd, off64_t to);

/* posix_fadvise: RANDOM and DONTNEED stop prefetching, SEQUENTIAL starts it
 * at the next read, NORMAL restores the default. */
void pf_fd_advised(int fd, int advice);

/* fcntl(F_SETFL) set flags such as O_DIRECT. */
void pf_fd_flags_changed(int fd, int flags);

/* Files whose reads and mappings are never prefetched: anything but a
 * regular file, and (unless PREFETCH_BLOCK_DEVICES=1) files on a local
 * block device, counted in block_device_skips. */
bool pf_excluded_file(const struct stat *st);

/* The engine's fork handlers, called by the library's one set (hooks.c). */
void pf_engine_atfork_prepare(void);
void pf_engine_atfork_parent(void);
void pf_engine_atfork_child(void);

/* Per-thread guard: set while the library's own code runs, so that its own
 * IO (and a signal handler interrupting it) passes straight through. */
extern __thread int pf_in_library __attribute__((tls_model("initial-exec")));
/* The program's cancellation state while this thread is in the library
 * (pf_enter, runtime.h). */
extern __thread int pf_program_cancel __attribute__((tls_model("initial-exec")));

#endif
