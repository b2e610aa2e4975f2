/* pf_multi [--bs=N] FILE...
 *
 * Many streams at once in one process: opens every FILE (offset-encoded,
 * key 0; a file may be named more than once) and reads them round-robin,
 * one request of --bs bytes (default 64K) from each in turn, to their ends,
 * checking every byte. Prints per file the bytes read and a hash. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	size_t bs = 65536;
	int n = 0;
	const char *v;
	int *fds = xmalloc((size_t)argc * sizeof(int));
	off_t *pos = xmalloc((size_t)argc * sizeof(off_t));
	uint64_t *hash = xmalloc((size_t)argc * sizeof(uint64_t));
	int *done = xmalloc((size_t)argc * sizeof(int));
	const char **names = xmalloc((size_t)argc * sizeof(char *));

	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "bs"))) {
			bs = (size_t)parse_size(v);
			continue;
		}
		fds[n] = open(argv[i], O_RDONLY);
		if (fds[n] < 0)
			die("open %s: %m", argv[i]);
		names[n] = argv[i];
		pos[n] = 0;
		hash[n] = FNV_INIT;
		done[n] = 0;
		n++;
	}
	if (n == 0)
		die("usage: pf_multi [--bs=N] FILE...");
	unsigned char *buf = xmalloc(bs);
	long bad = 0;
	for (int left = n; left > 0;) {
		for (int i = 0; i < n; i++) {
			if (done[i])
				continue;
			ssize_t r = read(fds[i], buf, bs);
			if (r < 0)
				die("read %s: %m", names[i]);
			if (r == 0) {
				done[i] = 1;
				left--;
				continue;
			}
			off_t wrong = check_offsets(buf, pos[i], (size_t)r, 0);
			if (wrong >= 0 && bad++ < 10)
				printf("file %d: BAD DATA at %lld+%zd, first wrong byte %lld\n", i,
				       (long long)pos[i], r, (long long)wrong);
			hash[i] = fnv1a(hash[i], buf, (size_t)r);
			pos[i] += r;
		}
	}
	for (int i = 0; i < n; i++)
		printf("file %d: read %lld hash=%016llx offset=%lld\n", i, (long long)pos[i],
		       (unsigned long long)hash[i], (long long)lseek(fds[i], 0, SEEK_CUR));
	printf("bad=%ld\n", bad);
	free(buf);
	free(names);
	free(done);
	free(hash);
	free(pos);
	free(fds);
	return bad ? 1 : 0;
}
