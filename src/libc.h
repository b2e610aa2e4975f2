/* The real C library functions, bound once with dlsym(RTLD_NEXT).
 *
 * Every hook calls the next definition of its symbol through this table, so
 * libprefetch composes with other preloaded libraries loaded after it. */
#ifndef PF_LIBC_H
#define PF_LIBC_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

struct pf_libc {
	int (*open)(const char *path, int flags, ...);
	int (*open64)(const char *path, int flags, ...);
	int (*openat)(int dirfd, const char *path, int flags, ...);
	int (*openat64)(int dirfd, const char *path, int flags, ...);
	int (*__open_2)(const char *path, int flags);
	int (*__open64_2)(const char *path, int flags);
	int (*__openat_2)(int dirfd, const char *path, int flags);
	int (*__openat64_2)(int dirfd, const char *path, int flags);
	int (*creat)(const char *path, mode_t mode);
	int (*creat64)(const char *path, mode_t mode);

	ssize_t (*read)(int fd, void *buf, size_t count);
	ssize_t (*__read_chk)(int fd, void *buf, size_t count, size_t buflen);
	ssize_t (*pread)(int fd, void *buf, size_t count, off_t offset);
	ssize_t (*pread64)(int fd, void *buf, size_t count, off64_t offset);
	ssize_t (*__pread_chk)(int fd, void *buf, size_t count, off_t offset, size_t buflen);
	ssize_t (*__pread64_chk)(int fd, void *buf, size_t count, off64_t offset, size_t buflen);
	ssize_t (*readv)(int fd, const struct iovec *iov, int iovcnt);
	ssize_t (*preadv)(int fd, const struct iovec *iov, int iovcnt, off_t offset);
	ssize_t (*preadv64)(int fd, const struct iovec *iov, int iovcnt, off64_t offset);
	ssize_t (*preadv2)(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags);

	off_t (*lseek)(int fd, off_t offset, int whence);
	off64_t (*lseek64)(int fd, off64_t offset, int whence);

	int (*close)(int fd);
	int (*close_range)(unsigned int first, unsigned int last, int flags);
	void (*closefrom)(int lowfd);
	int (*dup)(int fd);
	int (*dup2)(int oldfd, int newfd);
	int (*dup3)(int oldfd, int newfd, int flags);
	int (*fcntl)(int fd, int cmd, ...);
	int (*fcntl64)(int fd, int cmd, ...);
	int (*posix_fadvise)(int fd, off_t offset, off_t len, int advice);
	int (*posix_fadvise64)(int fd, off64_t offset, off64_t len, int advice);

	FILE *(*fopen)(const char *path, const char *mode);
	FILE *(*fopen64)(const char *path, const char *mode);
	FILE *(*freopen)(const char *path, const char *mode, FILE *stream);
	FILE *(*freopen64)(const char *path, const char *mode, FILE *stream);
	int (*fclose)(FILE *stream);
	size_t (*fread)(void *ptr, size_t size, size_t n, FILE *stream);
	size_t (*fread_unlocked)(void *ptr, size_t size, size_t n, FILE *stream);
	size_t (*__fread_chk)(void *ptr, size_t ptrlen, size_t size, size_t n, FILE *stream);
	size_t (*__fread_unlocked_chk)(void *ptr, size_t ptrlen, size_t size, size_t n, FILE *stream);

	/* hooks_mmap.c */
	void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
	void *(*mmap64)(void *addr, size_t len, int prot, int flags, int fd, off64_t off);
	int (*munmap)(void *addr, size_t len);
	void *(*mremap)(void *old_addr, size_t old_len, size_t new_len, int flags, ...);
	int (*madvise)(void *addr, size_t len, int advice);
	int (*posix_madvise)(void *addr, size_t len, int advice);

	/* hooks_stdio.c: directory listings */
	struct dirent *(*readdir)(DIR *dirp);
	struct dirent64 *(*readdir64)(DIR *dirp);
	int (*closedir)(DIR *dirp);
};

extern struct pf_libc pf_libc;

/* Binds the table once (pthread_once). Safe to call from any hook at any time,
 * including before the library's constructor ran. Returns 0 when the table is
 * usable, -1 when the calling thread is itself inside the binding (dlsym
 * re-entered a hook, e.g. through an allocator that opens files): the caller
 * must then use the pf_boot_* fallbacks. */
int pf_libc_bind(void);

/* Fallbacks used only while dlsym is running on this thread: glibc's own
 * exported aliases, which are not interposed. */
int pf_boot_open(const char *path, int flags, mode_t mode);
ssize_t pf_boot_read(int fd, void *buf, size_t count);
ssize_t pf_boot_pread(int fd, void *buf, size_t count, off64_t offset);
off64_t pf_boot_lseek(int fd, off64_t offset, int whence);
int pf_boot_close(int fd);
void *pf_boot_mmap(void *addr, size_t len, int prot, int flags, int fd, off64_t off);
int pf_boot_munmap(void *addr, size_t len);
void *pf_boot_mremap(void *old_addr, size_t old_len, size_t new_len, int flags, void *new_addr);
int pf_boot_madvise(void *addr, size_t len, int advice);

/* cachestat(2): sets *pages to the number of pages of [off, off + len) of
 * fd in the page cache; -1 with errno (ENOSYS before Linux 6.5). */
int pf_cachestat(int fd, uint64_t off, uint64_t len, uint64_t *pages);

/* Reads a small file whole into buf (NUL-terminated), through the real
 * functions: its length, or -1. */
ssize_t pf_read_small(const char *path, char *buf, size_t size);

/* Zeroed memory straight from the kernel, page aligned, for the library's
 * buffers and tables: a read in a signal handler that interrupted malloc
 * may need some, and no allocator lock is ever held across a fork.
 * pf_pages_free takes the size given to pf_pages_alloc. NULL when out of
 * memory, or before the real functions are bound. */
void *pf_pages_alloc(size_t size);
void pf_pages_free(void *p, size_t size);

#endif
