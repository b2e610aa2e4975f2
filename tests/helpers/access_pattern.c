/* Reads one file in a scripted access pattern, in one process, and prints
 * an FNV-1a hash of every read's bytes with its return value, so runs with
 * and without the library can be compared.
 *
 * usage: access_pattern FILE STEP...
 *   read:SIZE:COUNT      COUNT read() calls of SIZE bytes
 *   seek:OFFSET          lseek(fd, OFFSET, SEEK_SET)
 *   skip:BYTES           lseek(fd, BYTES, SEEK_CUR)
 *   random:SIZE:COUNT    COUNT pread() calls of SIZE bytes at pseudo-random offsets
 *   lseekrandom:SIZE:COUNT  the same with lseek(SEEK_SET) + read()
 *   at:OFFSET            where the next pread: step reads (seek: sets it too)
 *   pread:SIZE:COUNT     COUNT pread() calls of SIZE bytes, each after the last
 *   twopread:SIZE:COUNT  COUNT rounds of two preads of SIZE bytes, one at each
 *                        of two positions going forward, from 0 and from the
 *                        middle of the file (a merge of two sorted runs)
 *   twoseek:SIZE:COUNT   the same with lseek(SEEK_SET) + read()
 *   jumppread:SIZE:COUNT / jumpseek:SIZE:COUNT  the same, but the second
 *                        position jumps to a pseudo-random offset each round
 *   reopen:0             close the file and open it again
 *   sleep:MS             pause (lets workers run ahead)
 *   shrink:SIZE          truncate the file's backing copy (the path in
 *                        $ACCESS_PATTERN_BACKING, else FILE) to SIZE bytes
 *   rewrite:OFFSET:LEN   overwrite LEN bytes of the backing copy at OFFSET
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t fnv(const unsigned char *p, ssize_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (ssize_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void report(const char *what, ssize_t r, const unsigned char *buf, int fd)
{
	printf("%s %zd %016llx @%lld%s%s\n", what, r,
	       (unsigned long long)(r > 0 ? fnv(buf, r) : 0),
	       (long long)lseek(fd, 0, SEEK_CUR), r < 0 ? " " : "",
	       r < 0 ? strerror(errno) : "");
}

/* One read of SIZE at *pos, by pread or lseek + read; *pos goes past it. */
static void read_at(int fd, off_t *pos, unsigned char *buf, size_t size, int by_pread,
		    const char *what)
{
	ssize_t r;
	if (by_pread) {
		r = pread(fd, buf, size, *pos);
	} else {
		lseek(fd, *pos, SEEK_SET);
		r = read(fd, buf, size);
	}
	report(what, r, buf, fd);
	if (r > 0)
		*pos += r;
}

/* Changes the file as another process (the server) would: 0 or -1. */
static int change_backing(const char *path, const char *kind, long long a, long long b)
{
	if (kind[0] == 's')
		return truncate(path, (off_t)a);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	int ok = 0;
	for (long long k = 0; k < b && ok == 0; k++)
		ok = pwrite(fd, "\xaa", 1, (off_t)(a + k)) == 1 ? 0 : -1;
	return close(fd) == 0 ? ok : -1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s FILE STEP...\n", argv[0]);
		return 2;
	}
	int fd = open(argv[1], O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		perror(argv[1]);
		return 1;
	}
	off_t at = 0, two[2] = { 0, st.st_size / 2 };
	for (int i = 2; i < argc; i++) {
		char kind[16];
		long long a = 0, b = 0;
		if (sscanf(argv[i], "%15[a-z]:%lld:%lld", kind, &a, &b) < 2 || a < 0 || b < 0) {
			fprintf(stderr, "bad step: %s\n", argv[i]);
			return 2;
		}
		unsigned char *buf = malloc(a > 0 ? (size_t)a : 1);
		if (!buf)
			return 2;
		if (strcmp(kind, "read") == 0) {
			for (long long k = 0; k < b; k++)
				report("read", read(fd, buf, (size_t)a), buf, fd);
		} else if (strcmp(kind, "seek") == 0) {
			at = (off_t)a;
			printf("seek %lld\n", (long long)lseek(fd, a, SEEK_SET));
		} else if (strcmp(kind, "at") == 0) {
			at = (off_t)a;
		} else if (strcmp(kind, "pread") == 0) {
			for (long long k = 0; k < b; k++)
				read_at(fd, &at, buf, (size_t)a, 1, kind);
		} else if (strncmp(kind, "two", 3) == 0 || strncmp(kind, "jump", 4) == 0) {
			int by_pread = strstr(kind, "pread") != NULL;
			for (long long k = 0; k < b; k++) {
				read_at(fd, &two[0], buf, (size_t)a, by_pread, kind);
				if (kind[0] == 'j')
					two[1] = (off_t)(next_random() % (uint64_t)(st.st_size + 1));
				read_at(fd, &two[1], buf, (size_t)a, by_pread, kind);
			}
		} else if (strcmp(kind, "reopen") == 0) {
			close(fd);
			fd = open(argv[1], O_RDONLY);
			printf("reopen %d\n", fd < 0 ? -1 : 0);
		} else if (strcmp(kind, "skip") == 0) {
			printf("skip %lld\n", (long long)lseek(fd, a, SEEK_CUR));
		} else if (strcmp(kind, "random") == 0 || strcmp(kind, "lseekrandom") == 0) {
			for (long long k = 0; k < b; k++) {
				off_t off = (off_t)(next_random() % (uint64_t)(st.st_size + 1));
				ssize_t r;
				if (kind[0] == 'r') {
					r = pread(fd, buf, (size_t)a, off);
				} else {
					lseek(fd, off, SEEK_SET);
					r = read(fd, buf, (size_t)a);
				}
				report(kind, r, buf, fd);
			}
		} else if (strcmp(kind, "shrink") == 0 || strcmp(kind, "rewrite") == 0) {
			const char *backing = getenv("ACCESS_PATTERN_BACKING");
			printf("%s %d\n", kind, change_backing(backing ? backing : argv[1], kind, a, b));
		} else if (strcmp(kind, "sleep") == 0) {
			struct timespec ts = { a / 1000, (a % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		} else {
			fprintf(stderr, "bad step: %s\n", argv[i]);
			return 2;
		}
		free(buf);
	}
	close(fd);
	return 0;
}
