/* pf_cancel FILE --how=read|fread|pipe [--after=BYTES]
 *
 * A thread is cancelled (pthread_cancel) while it reads, and the program
 * goes on with what the thread used:
 *   read   the thread reads FILE through a descriptor, 64 KiB at a time,
 *          from the start again at its end, until cancelled; main then
 *          reads 64 KiB at offset 1 MiB of the same descriptor, closes it,
 *          and reads the first MiB of FILE through a new one
 *   fread  the same through a FILE (fread of 64 KiB); main then uses the
 *          same FILE (fseek, fread), fcloses it, and reopens FILE
 *   pipe   the thread blocks in a read of a pipe that nobody writes
 * Main cancels once the thread has read BYTES (default 2M; at once for
 * pipe). Run with slow storage under FILE, so that the thread is most
 * likely waiting for data when cancelled. Prints how the thread ended and
 * a hash of what main read after; must end promptly, without a hang. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define BS 65536

static const char *path;
static int fd = -1;
static FILE *fp;
static int pipefd[2];
static long long done; /* bytes the thread read */
/* The thread's buffer: static, a cancelled thread frees nothing. */
static unsigned char tbuf[BS];

static void count(size_t n)
{
	__atomic_add_fetch(&done, (long long)n, __ATOMIC_RELAXED);
}

static void *read_thread(void *arg)
{
	(void)arg;
	for (;;) {
		ssize_t r = read(fd, tbuf, BS);
		if (r < 0)
			die("read: %m");
		if (r == 0)
			lseek(fd, 0, SEEK_SET);
		count((size_t)r);
	}
	return NULL;
}

static void *fread_thread(void *arg)
{
	(void)arg;
	for (;;) {
		size_t r = fread(tbuf, 1, BS, fp);
		if (r == 0 && ferror(fp))
			die("fread failed");
		if (r == 0)
			rewind(fp);
		count(r);
	}
	return NULL;
}

static void *pipe_thread(void *arg)
{
	(void)arg;
	char c;
	if (read(pipefd[0], &c, 1) != 0)
		die("the pipe was written to");
	return NULL;
}

/* What main reads after the cancel: BS bytes at offset 1 MiB of the
 * thread's descriptor or FILE, then the first MiB of a new one. */
static uint64_t read_after(const char *how)
{
	unsigned char *buf = xmalloc(1 << 20);
	uint64_t h = FNV_INIT;
	size_t n;
	if (strcmp(how, "read") == 0) {
		if (lseek(fd, 1 << 20, SEEK_SET) != 1 << 20)
			die("lseek: %m");
		n = (size_t)read_full(fd, buf, BS);
		h = fnv1a(h, buf, n);
		if (close(fd) != 0)
			die("close: %m");
	} else {
		if (fseek(fp, 1 << 20, SEEK_SET) != 0)
			die("fseek: %m");
		n = fread(buf, 1, BS, fp);
		h = fnv1a(h, buf, n);
		if (fclose(fp) != 0)
			die("fclose: %m");
	}
	int again = open(path, O_RDONLY);
	if (again < 0)
		die("open: %m");
	n = (size_t)read_full(again, buf, 1 << 20);
	h = fnv1a(h, buf, n);
	close(again);
	free(buf);
	return h;
}

int main(int argc, char **argv)
{
	const char *how = NULL, *v;
	long long after = 2 << 20;
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "how")))
			how = v;
		else if ((v = opt_value(argv[i], "after")))
			after = parse_size(v);
		else if (argv[i][0] != '-' && !path)
			path = argv[i];
		else
			die("usage: pf_cancel FILE --how=read|fread|pipe [--after=BYTES]");
	}
	if (!path || !how)
		die("usage: pf_cancel FILE --how=read|fread|pipe [--after=BYTES]");
	void *(*fn)(void *);
	if (strcmp(how, "read") == 0) {
		fn = read_thread;
		if ((fd = open(path, O_RDONLY)) < 0)
			die("open: %m");
	} else if (strcmp(how, "fread") == 0) {
		fn = fread_thread;
		if (!(fp = fopen(path, "r")))
			die("fopen: %m");
	} else if (strcmp(how, "pipe") == 0) {
		fn = pipe_thread;
		after = 0;
		if (pipe(pipefd) != 0)
			die("pipe: %m");
	} else {
		die("--how: read, fread or pipe");
	}
	pthread_t t;
	if (pthread_create(&t, NULL, fn, NULL) != 0)
		die("pthread_create failed");
	while (__atomic_load_n(&done, __ATOMIC_RELAXED) < after)
		usleep(1000);
	if (strcmp(how, "pipe") == 0)
		usleep(100000); /* in its read by then, most likely */
	pthread_cancel(t);
	void *res;
	pthread_join(t, &res);
	printf("thread %s\n", res == PTHREAD_CANCELED ? "cancelled" : "ended");
	if (strcmp(how, "pipe") != 0)
		printf("read after: %016llx\n", (unsigned long long)read_after(how));
	return 0;
}
