/* mmap_fds: the program's descriptor numbers next to a prefetched mapping.
 *
 *   mmap_fds [--work-ns=N] FILE
 *
 * Maps FILE read-only and scans its first half, spinning N ns per 4 KiB
 * page (time for a library watching the mapping to engage), then opens FILE
 * again and again, printing each descriptor number, until open fails;
 * prints the errno and how many opens succeeded, closes them, scans the
 * second half and prints the checksum (every 512th byte summed). The output
 * is the same with and without a library that takes no descriptor of the
 * program's. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static long long work_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t scan(const volatile unsigned char *p, size_t from, size_t to)
{
	uint64_t sum = 0;
	for (size_t off = (from + 511) / 512 * 512; off < to; off += 512) {
		sum += p[off];
		if (work_ns && (off & 4095) == 0) {
			uint64_t until = now_ns() + (uint64_t)work_ns;
			while (now_ns() < until)
				;
		}
	}
	return sum;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *v;
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "work-ns")))
			work_ns = parse_size(v);
		else
			path = argv[i];
	}
	if (!path)
		die("usage: mmap_fds [--work-ns=N] FILE");
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0)
		die("%s: %s", path, fd < 0 ? strerror(errno) : "empty or no stat");
	size_t size = (size_t)st.st_size;
	unsigned char *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("%s: mmap: %s", path, strerror(errno));
	close(fd);
	uint64_t sum = scan(p, 0, size / 2);

	static int fds[1 << 16];
	int n = 0, err = 0;
	for (; n < (int)(sizeof(fds) / sizeof(fds[0])); n++) {
		fds[n] = open(path, O_RDONLY);
		if (fds[n] < 0) {
			err = errno;
			break;
		}
		printf("fd %d\n", fds[n]);
	}
	printf("open failed: %s after %d opens\n", err ? errno_name(err) : "none", n);
	for (int i = 0; i < n; i++)
		close(fds[i]);

	sum += scan(p, size / 2, size);
	munmap(p, size);
	printf("checksum %llu\n", (unsigned long long)sum);
	return 0;
}
