/* pf_dup FILE [--bs=N]
 *
 * Duplicated descriptors share one file offset. FILE must be offset-encoded
 * (pf_gen) and at least 16 MiB. The program opens FILE and makes four
 * duplicates (dup, fcntl F_DUPFD_CLOEXEC, dup2, dup3), then:
 *   1. reads 40 requests on the original descriptor,
 *   2. reads 40 requests cycling through all five descriptors,
 *   3. closes the original and reads 40 requests on the first duplicate,
 *   4. seeks with one duplicate to 12 MiB + 1000 and reads with another,
 *   5. reads to the end of the file on the last duplicate.
 * After every read it checks the data against its position and that every
 * open duplicate reports that position with lseek(fd, 0, SEEK_CUR); it prints
 * a summary per phase and every mismatch. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define NFDS 5

static int fds[NFDS];
static int open_fds[NFDS];
static unsigned char *buf;
static size_t bs = 65536;
static off_t pos;
static uint64_t hash = FNV_INIT;
static long problems;

/* One read on fds[which]: returns the byte count. */
static ssize_t read_on(int which, const char *phase)
{
	ssize_t r = read(fds[which], buf, bs);
	if (r < 0)
		die("%s: read on fd %d: %m", phase, fds[which]);
	off_t wrong = check_offsets(buf, pos, (size_t)r, 0);
	if (wrong >= 0 && problems++ < 20)
		printf("%s: BAD DATA on fd %d: read at %lld+%zd, wrong byte at %lld\n", phase,
		       fds[which], (long long)pos, r, (long long)wrong);
	hash = fnv1a(hash, buf, (size_t)r);
	pos += r;
	for (int i = 0; i < NFDS; i++) {
		if (!open_fds[i])
			continue;
		off_t k = lseek(fds[i], 0, SEEK_CUR);
		if (k != pos && problems++ < 20)
			printf("%s: OFFSET MISMATCH: fd %d reports %lld, expected %lld\n", phase,
			       fds[i], (long long)k, (long long)pos);
	}
	return r;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *v;
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "bs")))
			bs = (size_t)parse_size(v);
		else
			path = argv[i];
	}
	if (!path)
		die("usage: pf_dup FILE [--bs=N]");
	buf = xmalloc(bs);

	fds[0] = open(path, O_RDONLY);
	if (fds[0] < 0)
		die("open %s: %m", path);
	fds[1] = dup(fds[0]);
	fds[2] = fcntl(fds[0], F_DUPFD_CLOEXEC, 100);
	fds[3] = dup2(fds[0], 50);
	fds[4] = dup3(fds[0], 60, O_CLOEXEC);
	for (int i = 0; i < NFDS; i++) {
		if (fds[i] < 0)
			die("dup: %m");
		open_fds[i] = 1;
	}

	for (int i = 0; i < 40; i++)
		read_on(0, "phase1");
	printf("phase1: pos=%lld hash=%016llx problems=%ld\n", (long long)pos,
	       (unsigned long long)hash, problems);

	for (int i = 0; i < 40; i++)
		read_on(i % NFDS, "phase2");
	printf("phase2: pos=%lld hash=%016llx problems=%ld\n", (long long)pos,
	       (unsigned long long)hash, problems);

	if (close(fds[0]) < 0)
		die("close: %m");
	open_fds[0] = 0;
	for (int i = 0; i < 40; i++)
		read_on(1, "phase3");
	printf("phase3: pos=%lld hash=%016llx problems=%ld\n", (long long)pos,
	       (unsigned long long)hash, problems);

	pos = lseek(fds[2], (12 << 20) + 1000, SEEK_SET);
	for (int i = 0; i < 20; i++)
		read_on(3, "phase4");
	printf("phase4: pos=%lld hash=%016llx problems=%ld\n", (long long)pos,
	       (unsigned long long)hash, problems);

	while (read_on(4, "phase5") > 0)
		;
	printf("phase5: pos=%lld hash=%016llx problems=%ld\n", (long long)pos,
	       (unsigned long long)hash, problems);
	return problems ? 1 : 0;
}
