/*
 * bench_reader: a program that computes between reads, for the benchmark.
 *
 *   bench_reader [-b BLOCK_BYTES] [-u CPU_USEC_PER_BLOCK] [FILE|-]
 *
 * Reads FILE (or stdin) with read() in 64 KiB blocks by default and, after
 * each block, burns the given CPU time; prints a 64-bit checksum and the
 * byte count. The burn is measured in this thread's CPU time, not wall
 * time, so that competing threads (prefetch workers on 2 cores) make it
 * slower, as they would slow a real computation.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void burn(unsigned long usec)
{
	uint64_t end;

	if (!usec)
		return;
	end = thread_cpu_ns() + (uint64_t)usec * 1000u;
	while (thread_cpu_ns() < end)
		;
}

/* FNV-1a over the bytes: order-sensitive, so a misplaced block shows. */
static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-b BLOCK_BYTES] [-u CPU_USEC_PER_BLOCK] [FILE|-]\n", prog);
	exit(2);
}

int main(int argc, char *argv[])
{
	size_t block = 65536;
	unsigned long usec = 0;
	uint64_t h = 0xcbf29ce484222325ULL, total = 0;
	const char *path = "-";
	unsigned char *buf;
	int c, fd;

	while ((c = getopt(argc, argv, "b:u:")) != -1) {
		switch (c) {
		case 'b': block = strtoul(optarg, NULL, 0); break;
		case 'u': usec = strtoul(optarg, NULL, 0); break;
		default: usage(argv[0]);
		}
	}
	if (optind < argc)
		path = argv[optind++];
	if (optind != argc || block == 0)
		usage(argv[0]);
	fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY);
	if (fd == -1) {
		fprintf(stderr, "bench_reader: %s: %s\n", path, strerror(errno));
		return 1;
	}
	buf = malloc(block);
	if (!buf)
		return 1;
	for (;;) {
		ssize_t n = read(fd, buf, block);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "bench_reader: read: %s\n", strerror(errno));
			return 1;
		}
		if (n == 0)
			break;
		h = fnv1a(h, buf, (size_t)n);
		total += (uint64_t)n;
		burn(usec);
	}
	printf("%016" PRIx64 " %" PRIu64 "\n", h, total);
	free(buf);
	return 0;
}
