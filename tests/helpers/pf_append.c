/* pf_append FILE [--bs=N] [--rounds=R] [--append=BYTES] [--during=BYTES]
 *           [--shrink-to=SIZE] [--reset=SIZE]
 *
 * End of file is not final: data appended later must be read. FILE must be
 * offset-encoded (pf_gen). The program reads FILE to end of file on one
 * read-only descriptor, appends BYTES (default 100000) of the continued
 * encoding through a second, write-only descriptor, and reads on, R rounds
 * (default 3). With --during, the first append happens after the first
 * BYTES of the file were read: prefetching has by then reached the old end of
 * file, and the appended data must still be read in the same round.
 * --shrink-to makes that first change a cut to SIZE bytes instead (ftruncate
 * through the second descriptor), with prefetched ranges past the new end
 * in flight: the reads must stop at the new end.
 * --reset first cuts FILE to SIZE bytes, so that runs repeat. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	const char *path = NULL, *v;
	size_t bs = 65536;
	long rounds = 3;
	long long append = 100000, during = -1, reset = -1, shrink_to = -1;
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "bs")))
			bs = (size_t)parse_size(v);
		else if ((v = opt_value(argv[i], "rounds")))
			rounds = (long)parse_size(v);
		else if ((v = opt_value(argv[i], "append")))
			append = parse_size(v);
		else if ((v = opt_value(argv[i], "during")))
			during = parse_size(v);
		else if ((v = opt_value(argv[i], "shrink-to")))
			shrink_to = parse_size(v);
		else if ((v = opt_value(argv[i], "reset")))
			reset = parse_size(v);
		else
			path = argv[i];
	}
	if (!path)
		die("usage: pf_append FILE [--bs=N] [--rounds=R] [--append=BYTES] [--during=BYTES] "
		    "[--shrink-to=SIZE] [--reset=SIZE]");

	if (reset >= 0 && truncate(path, (off_t)reset) < 0)
		die("truncate %s: %m", path);
	int fd = open(path, O_RDONLY);
	int wfd = open(path, O_WRONLY | O_APPEND);
	if (fd < 0 || wfd < 0)
		die("open %s: %m", path);
	unsigned char *buf = xmalloc(bs);
	off_t pos = 0;
	long problems = 0;

	for (long round = 0; round <= rounds; round++) {
		long long got = 0;
		uint64_t hash = FNV_INIT;
		for (;;) {
			if (round == 0 && during >= 0 && pos >= during && shrink_to >= 0) {
				if (ftruncate(wfd, (off_t)shrink_to) < 0)
					die("ftruncate: %m");
				printf("round 0: cut to %lld after reading %lld\n", shrink_to,
				       (long long)pos);
				during = -1;
			}
			if (round == 0 && during >= 0 && pos >= during) {
				struct stat st;
				fstat(wfd, &st);
				if (write_offsets(wfd, st.st_size, append, 0) < 0)
					die("append: %m");
				printf("round 0: appended %lld after reading %lld\n", append,
				       (long long)pos);
				during = -1;
			}
			ssize_t r = read(fd, buf, bs);
			if (r < 0)
				die("read: %m");
			if (r == 0)
				break;
			off_t wrong = check_offsets(buf, pos, (size_t)r, 0);
			if (wrong >= 0 && problems++ < 10)
				printf("BAD DATA at %lld+%zd, first wrong byte %lld\n",
				       (long long)pos, r, (long long)wrong);
			hash = fnv1a(hash, buf, (size_t)r);
			pos += r;
			got += r;
		}
		struct stat st;
		fstat(fd, &st);
		printf("round %ld: read %lld hash=%016llx, at end of file %lld, offset %lld, size %lld\n",
		       round, got, (unsigned long long)hash, (long long)pos,
		       (long long)lseek(fd, 0, SEEK_CUR), (long long)st.st_size);
		if (pos != st.st_size)
			problems++;
		if (round < rounds) {
			if (write_offsets(wfd, st.st_size, append, 0) < 0)
				die("append: %m");
		}
	}
	free(buf);
	return problems ? 1 : 0;
}
