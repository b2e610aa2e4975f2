/* pf_exit FILE --how=exit|_exit|return|thread-exit|exit-while-reading [--after=BYTES]
 *
 * The process ends while workers read ahead (run with FI_DELAY_US on FILE so
 * that their reads are in flight). The program reads BYTES (default 2M) of
 * FILE in 64 KiB requests, prints a line, and then ends:
 *   exit                exit(3) from main
 *   _exit               _exit(4): no destructors at all
 *   return              return 5 from main
 *   thread-exit         another thread calls exit(6) while main keeps reading
 *   exit-while-reading  main calls exit(7) while another thread keeps reading
 * It must end promptly with that status, without a crash or a hang. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define BS 65536

static const char *path;

/* Reads fd to the end of the file, again and again. */
static void read_forever(int fd)
{
	unsigned char *buf = xmalloc(BS);
	for (;;) {
		ssize_t r = read(fd, buf, BS);
		if (r < 0)
			die("read: %m");
		if (r == 0)
			lseek(fd, 0, SEEK_SET);
	}
}

static void *exit_soon(void *arg)
{
	(void)arg;
	usleep(50000);
	exit(6);
}

static void *reader(void *arg)
{
	(void)arg;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open: %m");
	read_forever(fd);
	return NULL;
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
		else
			path = argv[i];
	}
	if (!path || !how)
		die("usage: pf_exit FILE --how=exit|_exit|return|thread-exit|exit-while-reading");
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s: %m", path);
	unsigned char *buf = xmalloc(BS);
	long long total = 0;
	while (total < after) {
		ssize_t r = read(fd, buf, BS);
		if (r <= 0)
			die("read returned %zd", r);
		total += r;
	}
	printf("read %lld, now: %s\n", total, how);
	fflush(stdout);

	pthread_t thread;
	if (strcmp(how, "exit") == 0)
		exit(3);
	if (strcmp(how, "_exit") == 0)
		_exit(4);
	if (strcmp(how, "return") == 0) {
		free(buf); /* (for LeakSanitizer: main's frame is gone after return) */
		return 5;
	}
	if (strcmp(how, "thread-exit") == 0) {
		if (pthread_create(&thread, NULL, exit_soon, NULL))
			die("pthread_create failed");
		read_forever(fd);
	}
	if (strcmp(how, "exit-while-reading") == 0) {
		if (pthread_create(&thread, NULL, reader, NULL))
			die("pthread_create failed");
		usleep(50000);
		exit(7);
	}
	die("unknown --how=%s", how);
}
