/* mmap_forks: forks from several threads while read() streams and mappings
 * are being read ahead.
 *
 *   mmap_forks [--rounds=N] [--work-ns=N] [--hang-child] FILE...
 *
 * One thread per FILE (offset-encoded, tests/helpers/pf_gen), each N rounds
 * (default 3): drop the file from the page cache (POSIX_FADV_DONTNEED, so
 * that a mapping of it is cold), map it and open it, then read it with read()
 * in 64 KiB blocks and scan the mapping, 1 MiB of each in turn, checking
 * every byte read and one word per 4 KiB page of the mapping, spinning
 * --work-ns per page. Half-way through, the thread forks; the child carries
 * on reading both (the inherited mapping, and the file opened again at the
 * same offset: the inherited descriptor shares its offset with the parent),
 * maps and reads the file once more, checks everything, and exits (0, or 1 at the first wrong
 * byte); the parent finishes, unmaps, closes and waits for it. Prints one
 * line per file and round ("ok" or what failed); exit status 0 when every
 * check of every process passed.
 *
 * --hang-child: each child blocks forever on a mutex instead (for the test
 * of the harness's stack dump on timeout). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define STEP (1024 * 1024)
#define BLOCK (64 * 1024)

static long rounds = 3;
static long long work_ns;
static int hang_child;
static char **files;
static pthread_mutex_t hang_lock = PTHREAD_MUTEX_INITIALIZER;

struct result {
	char line[4096];
	int failed;
};

/* Every thread's buffers, made by main before the threads start and
 * freed after they end: no thread of this program is inside the allocator
 * while another forks (GCC 12's ASan does not lock its allocator around
 * fork, and a child then hangs in malloc or in the leak check at exit:
 * seen once in 21 loaded runs). Reachable from here, too, for
 * LeakSanitizer in a child, which has only its forking thread. */
static unsigned char *bufs[64];
static struct result *lines[64];
/* Nor does a thread end (ASan's thread teardown takes allocator locks)
 * before every thread is done forking. */
static pthread_barrier_t done_forking;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One word per page of [from, to) of the mapping: -1, or the first wrong
 * offset. */
static off_t scan_map(const unsigned char *p, size_t from, size_t to)
{
	for (size_t off = (from + 4095) / 4096 * 4096; off + 8 <= to; off += 4096) {
		off_t bad = check_offsets(p + off, (off_t)off, 8, 0);
		if (bad >= 0)
			return bad;
		if (work_ns) {
			uint64_t until = now_ns() + (uint64_t)work_ns;
			while (now_ns() < until)
				;
		}
	}
	return -1;
}

/* read() of [*pos, to) in BLOCK pieces, each checked: -1 or the first wrong
 * offset (or the offset where read failed or ended early). */
static off_t read_upto(int fd, unsigned char *buf, off_t *pos, off_t to)
{
	while (*pos < to) {
		size_t want = to - *pos < BLOCK ? (size_t)(to - *pos) : BLOCK;
		ssize_t r = read_full(fd, buf, want);
		if (r <= 0)
			return *pos;
		off_t bad = check_offsets(buf, *pos, (size_t)r, 0);
		if (bad >= 0)
			return bad;
		*pos += r;
	}
	return -1;
}

/* Reads [from, to) of both the descriptor (at its offset, from) and the
 * mapping, a STEP of each in turn. */
static off_t read_both(int fd, const unsigned char *p, unsigned char *buf, off_t from, off_t to)
{
	off_t pos = from;
	for (off_t at = from; at < to; at += STEP) {
		off_t end = to - at < STEP ? to : at + STEP;
		off_t bad = read_upto(fd, buf, &pos, end);
		if (bad < 0)
			bad = scan_map(p, (size_t)at, (size_t)end);
		if (bad >= 0)
			return bad;
	}
	return -1;
}

static int child_main(const char *path, const unsigned char *p, off_t size, unsigned char *buf)
{
	if (hang_child) {
		pthread_mutex_lock(&hang_lock);
		pthread_mutex_lock(&hang_lock);
	}
	int fd = open(path, O_RDONLY);
	if (fd < 0 || lseek(fd, size / 2, SEEK_SET) != size / 2)
		return 1;
	off_t bad = read_both(fd, p, buf, size / 2, size);
	if (bad < 0) {
		/* A mapping of its own, made in the child. */
		unsigned char *q = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
		if (q == MAP_FAILED)
			return 1;
		bad = scan_map(q, 0, (size_t)size);
		munmap(q, (size_t)size);
	}
	if (bad >= 0)
		fprintf(stderr, "%s: child: wrong data at %lld\n", path, (long long)bad);
	return bad >= 0;
}

static void one_round(const char *path, long round, unsigned char *buf, struct result *res)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		die("%s: %s", path, strerror(errno));
	off_t size = st.st_size;
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	unsigned char *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("%s: mmap: %s", path, strerror(errno));
	const char *what = "ok";
	off_t bad = read_both(fd, p, buf, 0, size / 2);
	pid_t pid = -1;
	if (bad < 0) {
		fflush(NULL);
		pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0)
			exit(child_main(path, p, size, buf)); /* exit: statistics */
		bad = read_both(fd, p, buf, size / 2, size);
	}
	munmap(p, (size_t)size);
	close(fd);
	int status = 0;
	if (pid > 0 && waitpid(pid, &status, 0) != pid)
		die("waitpid: %s", strerror(errno));
	if (bad >= 0)
		what = "wrong data";
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		what = "the child failed";
	snprintf(res->line, sizeof(res->line), "%s round %ld: %s", path, round, what);
	res->failed |= strcmp(what, "ok") != 0;
}

static void *thread_main(void *arg)
{
	struct result *res = arg;
	unsigned i = (unsigned char)res->line[0];
	for (long r = 0; r < rounds; r++)
		one_round(files[i], r, bufs[i], &lines[i][r]);
	res->line[0] = 0;
	for (long r = 0; r < rounds; r++) {
		size_t used = strlen(res->line);
		snprintf(res->line + used, sizeof(res->line) - used, "%s%s", r ? "\n" : "",
			 lines[i][r].line);
		res->failed |= lines[i][r].failed;
	}
	pthread_barrier_wait(&done_forking);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *v;
	int nfiles = 0;
	files = xmalloc(sizeof(*files) * (size_t)argc);
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "rounds")))
			rounds = (long)parse_size(v);
		else if ((v = opt_value(argv[i], "work-ns")))
			work_ns = parse_size(v);
		else if (!strcmp(argv[i], "--hang-child"))
			hang_child = 1;
		else
			files[nfiles++] = argv[i];
	}
	if (!nfiles || nfiles > 64 || rounds < 1 || rounds > 8)
		die("usage: mmap_forks [--rounds=1..8] [--work-ns=N] [--hang-child] FILE...");
	/* The library's lazy start-up (settings, statistics) in one thread,
	 * as in most programs: helgrind does not see pthread_once and atomics
	 * order it, and would report that, not the forks. */
	close(open(files[0], O_RDONLY));
	pthread_t tids[64];
	struct result *res = calloc((size_t)nfiles, sizeof(*res));
	if (!res)
		die("out of memory");
	for (int i = 0; i < nfiles; i++) {
		bufs[i] = xmalloc(BLOCK);
		lines[i] = calloc((size_t)rounds, sizeof(*lines[i]));
		if (!lines[i])
			die("out of memory");
	}
	if (pthread_barrier_init(&done_forking, NULL, (unsigned)nfiles) != 0)
		die("pthread_barrier_init failed");
	for (int i = 0; i < nfiles; i++) {
		res[i].line[0] = (char)i; /* which file, until the thread is done */
		if (pthread_create(&tids[i], NULL, thread_main, &res[i]) != 0)
			die("pthread_create failed");
	}
	int failed = 0;
	for (int i = 0; i < nfiles; i++) {
		pthread_join(tids[i], NULL);
		printf("%s\n", res[i].line);
		failed |= res[i].failed;
	}
	for (int i = 0; i < nfiles; i++) {
		free(bufs[i]);
		free(lines[i]);
	}
	pthread_barrier_destroy(&done_forking);
	free(res);
	free(files);
	return failed;
}
