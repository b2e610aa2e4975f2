/* pf_close_race FILE_A FILE_B [--iterations=N] [--reads=K] [--background]
 *
 * Descriptors closed while workers read ahead on them. FILE_A is
 * offset-encoded with key 0 and large (run with FI_DELAY_US on it so that
 * reads are in flight); FILE_B is offset-encoded with key 0x5a (pf_gen
 * --key=0x5a), at least 256 KiB. Each iteration opens FILE_A, reads K
 * requests of 64 KiB (enough to engage), and then gets rid of the descriptor
 * in one of six ways: close; dup2 of a FILE_B descriptor onto it (then reads
 * FILE_B through it); close_range; closefrom; close after a dup, reading on
 * through the dup; fclose of a stdio stream. Then it opens FILE_B, which
 * usually reuses the descriptor number, and reads it: the data must be FILE_B's
 * from its start, never left-overs of FILE_A. With --background a thread
 * reads FILE_A through its own descriptor during all of it. Every byte is
 * checked; the program prints the number of iterations and of bad reads. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define BS 65536
#define KEY_B 0x5a

static const char *path_a, *path_b;
static long bad;
static const char *method_names[] = { "close", "dup2-over", "close_range", "closefrom",
				      "dup-then-close", "fclose" };

static void check(const unsigned char *buf, off_t pos, ssize_t r, unsigned key, const char *what,
		  long iteration)
{
	off_t wrong = r < 0 ? pos : check_offsets(buf, pos, (size_t)r, key);
	if (wrong >= 0 && __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED) <= 10)
		printf("iteration %ld: %s: BAD DATA at %lld+%zd (first wrong byte %lld)\n", iteration,
		       what, (long long)pos, r, (long long)wrong);
}

/* Reads k requests from fd at pos, checking them against key. */
static off_t read_some(int fd, off_t pos, int k, unsigned key, const char *what, long iteration)
{
	unsigned char buf[BS];
	for (int i = 0; i < k; i++) {
		ssize_t r = read(fd, buf, BS);
		if (r <= 0)
			die("iteration %ld: %s: read returned %zd: %m", iteration, what, r);
		check(buf, pos, r, key, what, iteration);
		pos += r;
	}
	return pos;
}

static volatile int stop_background;

static void *background(void *arg)
{
	(void)arg;
	unsigned char *buf = xmalloc(BS);
	long rounds = 0;
	while (!__atomic_load_n(&stop_background, __ATOMIC_ACQUIRE)) {
		int fd = open(path_a, O_RDONLY);
		if (fd < 0)
			die("background: open: %m");
		off_t pos = 0;
		ssize_t r;
		while (!__atomic_load_n(&stop_background, __ATOMIC_RELAXED) &&
		       (r = read(fd, buf, BS)) > 0) {
			check(buf, pos, r, 0, "background", rounds);
			pos += r;
		}
		close(fd);
		rounds++;
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *v;
	long iterations = 60;
	int k = 6, with_background = 0;
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "iterations")))
			iterations = (long)parse_size(v);
		else if ((v = opt_value(argv[i], "reads")))
			k = (int)parse_size(v);
		else if (strcmp(argv[i], "--background") == 0)
			with_background = 1;
		else if (!path_a)
			path_a = argv[i];
		else
			path_b = argv[i];
	}
	if (!path_a || !path_b)
		die("usage: pf_close_race FILE_A FILE_B [--iterations=N] [--reads=K] [--background]");

	pthread_t thread;
	if (with_background && pthread_create(&thread, NULL, background, NULL))
		die("pthread_create failed");

	long per_method[6] = { 0 };
	for (long it = 0; it < iterations; it++) {
		int method = (int)(it % 6);
		per_method[method]++;
		if (method == 5) {
			FILE *fp = fopen(path_a, "r");
			unsigned char *buf = xmalloc(BS);
			off_t pos = 0;
			if (!fp)
				die("fopen: %m");
			for (int i = 0; i < k; i++) {
				size_t n = fread(buf, 1, BS, fp);
				check(buf, pos, (ssize_t)n, 0, "fread A", it);
				pos += (off_t)n;
			}
			fclose(fp);
			free(buf);
		} else {
			int fd = open(path_a, O_RDONLY);
			if (fd < 0)
				die("open A: %m");
			off_t pos = read_some(fd, 0, k, 0, "A", it);
			int b, d;
			switch (method) {
			case 0:
				close(fd);
				break;
			case 1:
				b = open(path_b, O_RDONLY);
				if (b < 0 || dup2(b, fd) < 0)
					die("dup2: %m");
				close(b);
				read_some(fd, 0, 2, KEY_B, "B through dup2 target", it);
				close(fd);
				break;
			case 2:
				if (close_range((unsigned)fd, (unsigned)fd, 0) < 0)
					die("close_range: %m");
				break;
			case 3:
				if (with_background)
					close(fd); /* closefrom would close the thread's file */
				else
					closefrom(fd);
				break;
			case 4:
				d = dup(fd);
				close(fd);
				read_some(d, pos, 2, 0, "A through dup", it);
				close(d);
				break;
			}
		}
		int fb = open(path_b, O_RDONLY);
		if (fb < 0)
			die("open B: %m");
		read_some(fb, 0, 3, KEY_B, "B", it);
		close(fb);
	}
	if (with_background) {
		__atomic_store_n(&stop_background, 1, __ATOMIC_RELEASE);
		pthread_join(thread, NULL);
	}
	printf("iterations=%ld", iterations);
	for (int m = 0; m < 6; m++)
		printf(" %s=%ld", method_names[m], per_method[m]);
	printf(" bad=%ld\n", bad);
	return bad ? 1 : 0;
}
