/* Opens the files named on its command line one after the other, as a
 * program given file operands does, and prints for each the descriptor
 * number open() returned, its size and the FNV-1a hash of its content (or
 * the errno name). The library predicts the later operands from the
 * earlier ones (tests/files.bats).
 *
 *   pf_openloop [--keep] [--pause=MS] [--rewrite] [--fork] [--stdio] FILE...
 *
 * --keep     leave every file open: the numbers grow, as the program's own
 * --pause    sleep MS milliseconds after the first file
 * --rewrite  after the first file (and the pause), rewrite the others in
 *            place with other bytes of the same size (odd ones) or replace
 *            them by rename (even ones): they must be read as they are now
 * --fork     after the first file, fork: the child reads the rest, then the
 *            parent does
 * --stdio    read through fopen/fread instead of open/read */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static bool keep, rewrite, do_fork, use_stdio;
static long pause_ms;

static void read_one(const char *path)
{
	char buf[65536];
	uint64_t h = FNV_INIT;
	long long size = 0;
	int fd;
	FILE *fp = NULL;
	if (use_stdio) {
		fp = fopen(path, "r");
		fd = fp ? fileno(fp) : -1;
	} else {
		fd = open(path, O_RDONLY);
	}
	if (fd < 0) {
		printf("%s: %s\n", path, errno_name(errno));
		return;
	}
	for (;;) {
		ssize_t r = fp ? (ssize_t)fread(buf, 1, sizeof(buf), fp) : read_full(fd, buf, sizeof(buf));
		if (r < 0) {
			printf("%s: read %s\n", path, errno_name(errno));
			break;
		}
		if (r == 0)
			break;
		h = fnv1a(h, buf, (size_t)r);
		size += r;
	}
	printf("%s: fd=%d size=%lld hash=%016llx\n", path, fd, size, (unsigned long long)h);
	fflush(stdout);
	if (!keep) {
		if (fp)
			fclose(fp);
		else
			close(fd);
	}
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Other bytes, same size: in place (odd i) or a new file renamed over it. */
static void rewrite_file(const char *path, int i)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return;
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	const char *target = i % 2 ? path : tmp;
	int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("rewrite %s: %s", target, strerror(errno));
	if (write_offsets(fd, 0, st.st_size, (unsigned)(0x5a + i)) != 0)
		die("write %s", target);
	close(fd);
	if (!(i % 2) && rename(tmp, path) != 0)
		die("rename %s: %s", tmp, strerror(errno));
}

int main(int argc, char **argv)
{
	int first = 1;
	for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
		const char *v;
		if (strcmp(argv[first], "--keep") == 0)
			keep = true;
		else if (strcmp(argv[first], "--rewrite") == 0)
			rewrite = true;
		else if (strcmp(argv[first], "--fork") == 0)
			do_fork = true;
		else if (strcmp(argv[first], "--stdio") == 0)
			use_stdio = true;
		else if ((v = opt_value(argv[first], "pause")))
			pause_ms = (long)parse_size(v);
		else
			die("unknown option %s", argv[first]);
	}
	if (first >= argc)
		die("usage: pf_openloop [--keep] [--pause=MS] [--rewrite] [--fork] [--stdio] FILE...");
	read_one(argv[first]);
	if (pause_ms)
		sleep_ms(pause_ms);
	if (rewrite)
		for (int i = first + 1; i < argc; i++)
			rewrite_file(argv[i], i);
	pid_t child = do_fork ? fork() : -1;
	if (do_fork && child < 0)
		die("fork: %s", strerror(errno));
	if (child > 0) {
		int status;
		if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
			die("child failed");
		printf("parent:\n");
	} else if (child == 0) {
		printf("child:\n");
	}
	for (int i = first + 1; i < argc; i++)
		read_one(argv[i]);
	return 0;
}
