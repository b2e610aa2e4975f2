/* pf_signal_alloc FILE SIDE_FILE [--handler-first]
 *
 * Whether reads made by a signal handler make the library allocate. A
 * handler may interrupt its thread inside malloc, and read() is
 * async-signal-safe: if the library's work for that read took malloc's lock
 * too, the thread would deadlock on itself. This program replaces malloc
 * and its kin (glibc lets an executable do so) with ones that count the
 * calls made while its own thread runs the handler.
 *
 * Main reads FILE (offset-encoded, key 0) to its end, so that the library's
 * workers run, then raises SIGUSR1. The handler reads SIDE_FILE
 * (offset-encoded, key 0x5a) from its start to its end with read() and
 * closes it: a stream starts, gets buffers, serves and ends, all inside the
 * handler. With --handler-first, the handler runs before main reads: its
 * reads would be the process's first stream, whose start starts the
 * library's threads (pthread_create allocates). Prints the data's hashes and
 * the allocations seen in the handler; exit status 1 if there were any, or
 * wrong data. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
void __libc_free(void *p);

/* Per thread: the library's workers allocate as they like. */
static __thread int in_handler;
static volatile sig_atomic_t handler_allocs;

static inline void note(void)
{
	if (in_handler)
		handler_allocs++;
}

void *malloc(size_t size)
{
	note();
	return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
	note();
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
	note();
	return __libc_realloc(p, size);
}

void free(void *p)
{
	note();
	__libc_free(p);
}

void *memalign(size_t align, size_t size)
{
	note();
	return __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size)
{
	note();
	return __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
	note();
	void *p = __libc_memalign(align, size);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void *valloc(size_t size)
{
	note();
	return __libc_valloc(size);
}

void *pvalloc(size_t size)
{
	note();
	return __libc_pvalloc(size);
}

static int side_fd = -1;
static volatile sig_atomic_t side_bad;
static off_t side_len;
static uint64_t side_hash = FNV_INIT;

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	in_handler = 1;
	static unsigned char b[65536]; /* no allocation of the handler's own */
	ssize_t r;
	while ((r = read(side_fd, b, sizeof(b))) > 0) {
		if (check_offsets(b, side_len, (size_t)r, 0x5a) >= 0)
			side_bad = 1;
		side_hash = fnv1a(side_hash, b, (size_t)r);
		side_len += r;
	}
	if (r < 0 || close(side_fd) != 0)
		side_bad = 1;
	in_handler = 0;
	errno = saved;
}

static void handler_reads(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);
}

int main(int argc, char **argv)
{
	bool first = argc == 4 && strcmp(argv[3], "--handler-first") == 0;
	if (argc != 3 && !first)
		die("usage: pf_signal_alloc FILE SIDE_FILE [--handler-first]");
	int fd = open(argv[1], O_RDONLY);
	side_fd = open(argv[2], O_RDONLY);
	if (fd < 0 || side_fd < 0)
		die("open: %m");
	if (first)
		handler_reads();
	size_t bs = 65536;
	unsigned char *buf = xmalloc(bs);
	off_t pos = 0;
	uint64_t hash = FNV_INIT;
	long bad = 0;
	ssize_t r;
	while ((r = read(fd, buf, bs)) > 0) {
		if (check_offsets(buf, pos, (size_t)r, 0) >= 0)
			bad++;
		hash = fnv1a(hash, buf, (size_t)r);
		pos += r;
	}
	if (r < 0)
		die("read: %m");
	close(fd);
	free(buf);
	if (!first)
		handler_reads();

	printf("read %lld hash=%016llx bad=%ld; in the handler: read %lld hash=%016llx bad=%d "
	       "allocations=%d\n",
	       (long long)pos, (unsigned long long)hash, bad, (long long)side_len,
	       (unsigned long long)side_hash, (int)side_bad, (int)handler_allocs);
	return bad || side_bad || handler_allocs ? 1 : 0;
}
