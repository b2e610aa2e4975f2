/* pf_fork FILE [--bs=N] [--before=BYTES] [--child=BYTES] [--reopen]
 *
 * Fork while prefetching. FILE must be offset-encoded (pf_gen). The parent
 * reads BYTES (default 4M) sequentially, so that prefetching engages, then
 * forks:
 *   default:  the child reads --child bytes (default 4M, 0 = none) on the
 *             shared descriptor and exits; the parent waits, checks that the
 *             shared offset moved by what the child read, and reads the rest.
 *   --reopen: the child opens FILE again and reads all of it while the
 *             parent reads the rest of its descriptor at the same time.
 * Both check every byte against its position and print what they read. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static size_t bs = 65536;
static long problems;

/* Reads up to limit bytes (-1: to EOF) from fd at its offset, checking the
 * content; writes a summary labelled who to line. */
static void read_part(int fd, long long limit, const char *who, char *line, size_t size)
{
	unsigned char *buf = xmalloc(bs);
	off_t pos = lseek(fd, 0, SEEK_CUR), start = pos;
	uint64_t hash = FNV_INIT;
	long long total = 0;
	long bad = 0;
	for (;;) {
		size_t want = bs;
		if (limit >= 0 && (long long)want > limit - total)
			want = (size_t)(limit - total);
		if (want == 0)
			break;
		ssize_t r = read(fd, buf, want);
		if (r < 0)
			die("%s: read: %m", who);
		if (r == 0)
			break;
		off_t wrong = check_offsets(buf, pos, (size_t)r, 0);
		if (wrong >= 0 && bad++ == 0)
			fprintf(stderr, "%s: BAD DATA at %lld+%zd, first wrong byte %lld\n", who,
				(long long)pos, r, (long long)wrong);
		hash = fnv1a(hash, buf, (size_t)r);
		pos += r;
		total += r;
	}
	off_t k = lseek(fd, 0, SEEK_CUR);
	snprintf(line, size, "%s: from %lld read %lld hash=%016llx offset=%lld bad_reads=%ld%s\n",
		 who, (long long)start, total, (unsigned long long)hash, (long long)k, bad,
		 k == pos ? "" : " OFFSET MISMATCH");
	problems += bad + (k != pos);
	free(buf);
}

int main(int argc, char **argv)
{
	const char *path = NULL, *v;
	long long before = 4 << 20, child = 4 << 20;
	int reopen = 0, status;
	char line[256];

	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "bs")))
			bs = (size_t)parse_size(v);
		else if ((v = opt_value(argv[i], "before")))
			before = parse_size(v);
		else if ((v = opt_value(argv[i], "child")))
			child = parse_size(v);
		else if (strcmp(argv[i], "--reopen") == 0)
			reopen = 1;
		else
			path = argv[i];
	}
	if (!path)
		die("usage: pf_fork FILE [--bs=N] [--before=BYTES] [--child=BYTES] [--reopen]");

	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s: %m", path);
	read_part(fd, before, "parent before fork", line, sizeof(line));
	fputs(line, stdout);
	fflush(stdout);

	pid_t pid = fork();
	if (pid < 0)
		die("fork: %m");
	if (pid == 0) {
		if (reopen) {
			int fd2 = open(path, O_RDONLY);
			if (fd2 < 0)
				die("child: open: %m");
			read_part(fd2, -1, "child (own descriptor)", line, sizeof(line));
		} else {
			read_part(fd, child, "child (shared descriptor)", line, sizeof(line));
		}
		fputs(line, stdout);
		exit(problems ? 1 : 0);
	}

	/* With --reopen the parent reads while the child does; it prints only
	 * after the child finished, so that the output order is fixed. */
	if (reopen)
		read_part(fd, -1, "parent while child runs", line, sizeof(line));
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid: %m");
	printf("child exit status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	if (!reopen)
		read_part(fd, -1, "parent after child", line, sizeof(line));
	fputs(line, stdout);
	return problems ? 1 : 0;
}
