/* pf_manyfiles DIR N [--create] [--reads=K] [--bs=N]
 *
 * Many idle descriptors must cost (almost) nothing. With --create, makes N
 * sparse 1 MiB files in DIR and exits. Otherwise raises the soft descriptor
 * limit as needed, opens the N files read-only and makes K small reads
 * (default 1 of 4 KiB) on each, fewer than prefetching needs to engage.
 * Prints the number of files and of threads (no descriptor engaged, so the
 * library must not have started any) on stdout, and the growth of the
 * resident set size, rss_growth_kb=N, on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
	const char *dir = NULL, *v;
	long n = -1, reads = 1;
	size_t bs = 4096;
	int create = 0;
	char path[4096];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--create") == 0)
			create = 1;
		else if ((v = opt_value(argv[i], "reads")))
			reads = (long)parse_size(v);
		else if ((v = opt_value(argv[i], "bs")))
			bs = (size_t)parse_size(v);
		else if (!dir)
			dir = argv[i];
		else
			n = (long)parse_size(argv[i]);
	}
	if (!dir || n < 0)
		die("usage: pf_manyfiles DIR N [--create] [--reads=K] [--bs=N]");

	if (create) {
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			die("mkdir %s: %m", dir);
		for (long i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/f%06ld", dir, i);
			int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || ftruncate(fd, 1 << 20) < 0 || close(fd) < 0)
				die("%s: %m", path);
		}
		return 0;
	}

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit: %m");
	rlim_t need = (rlim_t)n + 64;
	if (rl.rlim_cur < need) {
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
			printf("SKIP: descriptor limit %llu < %llu\n", (unsigned long long)rl.rlim_max,
			       (unsigned long long)need);
			return 77;
		}
		rl.rlim_cur = need;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			die("setrlimit: %m");
	}

	unsigned char *buf = xmalloc(bs);
	int *fds = xmalloc((size_t)n * sizeof(*fds));
	memset(buf, 1, bs);
	memset(fds, 0, (size_t)n * sizeof(*fds));
	long rss_before = vm_rss_kb();
	long long total = 0;
	for (long i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%06ld", dir, i);
		fds[i] = open(path, O_RDONLY);
		if (fds[i] < 0)
			die("open %s: %m", path);
		for (long k = 0; k < reads; k++) {
			ssize_t r = read(fds[i], buf, bs);
			if (r < 0)
				die("read %s: %m", path);
			total += r;
		}
	}
	long rss_after = vm_rss_kb();
	printf("opened=%ld read=%lld threads=%d\n", n, total, thread_count());
	fprintf(stderr, "rss_growth_kb=%ld\n", rss_after - rss_before);
	free(fds);
	free(buf);
	return 0;
}
