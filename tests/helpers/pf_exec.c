/* pf_exec FILE BYTES [--fd=N] CMD [ARGS...]
 *
 * An exec'd program inherits the descriptor and its offset. Reads BYTES of
 * FILE in 64 KiB requests (enough to engage prefetching), prints what it
 * read and the kernel offset, then moves the descriptor to N (default 0,
 * standard input) and executes CMD, which reads the rest. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	int target = 0, argi = 3;
	const char *v;
	if (argc < 4)
		die("usage: pf_exec FILE BYTES [--fd=N] CMD [ARGS...]");
	if ((v = opt_value(argv[3], "fd"))) {
		target = (int)parse_size(v);
		argi = 4;
	}
	if (argi >= argc)
		die("no command");
	long long want = parse_size(argv[2]);
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		die("open %s: %m", argv[1]);

	size_t bs = 65536;
	unsigned char *buf = xmalloc(bs);
	uint64_t hash = FNV_INIT;
	long long total = 0;
	while (total < want) {
		size_t n = want - total < (long long)bs ? (size_t)(want - total) : bs;
		ssize_t r = read(fd, buf, n);
		if (r < 0)
			die("read: %m");
		if (r == 0)
			break;
		hash = fnv1a(hash, buf, (size_t)r);
		total += r;
	}
	printf("before exec: read %lld hash=%016llx offset=%lld\n", total,
	       (unsigned long long)hash, (long long)lseek(fd, 0, SEEK_CUR));
	fflush(stdout);
	if (fd != target) {
		if (dup2(fd, target) < 0)
			die("dup2: %m");
		close(fd);
	}
	execvp(argv[argi], argv + argi);
	die("exec %s: %m", argv[argi]);
}
