/* pf_threads FILE [--threads=T] [--bs=N] [--warmup=N]
 *
 * Threads reading one descriptor at once: the shared file offset hands each
 * read() its own range, so together they must read every byte of the file
 * exactly once. FILE must be offset-encoded (pf_gen) with a size that is a
 * multiple of 8: the content of each read tells where it came from. The main
 * thread first makes --warmup reads (default 4, so that prefetching is
 * engaged), then T threads (default 4) read --bs bytes (default 64K) at a
 * time until end of file. Each read is located by its content and checked
 * byte by byte; the ranges, sorted, must tile the file without gap or
 * overlap. The output does not depend on how the reads were interleaved. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

struct range {
	long long off; /* -1: the content matched no position */
	long long len;
};

struct worker {
	pthread_t thread;
	struct range *ranges;
	size_t n, cap;
};

static int fd;
static size_t bs = 65536;
static pthread_barrier_t start;

/* The file position the content of buf[0..len) came from, or -1. */
static long long locate(const unsigned char *buf, size_t len)
{
	for (size_t a = 0; a < 8 && a + 8 <= len; a++) {
		uint64_t w = 0;
		for (int i = 0; i < 8; i++)
			w = (w << 8) | buf[a + i];
		if (w % 8 != 0 || w < a)
			continue;
		long long off = (long long)(w - a);
		if (check_offsets(buf, (off_t)off, len, 0) < 0)
			return off;
	}
	return -1;
}

static void record(struct worker *w, long long off, long long len)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 256;
		w->ranges = realloc(w->ranges, w->cap * sizeof(*w->ranges));
		if (!w->ranges)
			die("out of memory");
	}
	w->ranges[w->n++] = (struct range){ off, len };
}

static void *reader(void *arg)
{
	struct worker *w = arg;
	unsigned char *buf = xmalloc(bs);
	pthread_barrier_wait(&start);
	for (;;) {
		ssize_t r = read(fd, buf, bs);
		if (r < 0)
			die("read: %m");
		if (r == 0)
			break;
		record(w, locate(buf, (size_t)r), r);
	}
	free(buf);
	return NULL;
}

static int by_offset(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return (x->off > y->off) - (x->off < y->off);
}

int main(int argc, char **argv)
{
	const char *path = NULL, *v;
	int nthreads = 4;
	long warmup = 4;
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argv[i], "threads")))
			nthreads = (int)parse_size(v);
		else if ((v = opt_value(argv[i], "bs")))
			bs = (size_t)parse_size(v);
		else if ((v = opt_value(argv[i], "warmup")))
			warmup = (long)parse_size(v);
		else
			path = argv[i];
	}
	if (!path || nthreads < 1 || bs < 16)
		die("usage: pf_threads FILE [--threads=T] [--bs=N>=16] [--warmup=N]");
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s: %m", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size % 8)
		die("%s: size must be a multiple of 8", path);

	struct worker *workers = calloc((size_t)nthreads + 1, sizeof(*workers));
	if (!workers)
		die("out of memory");
	unsigned char *buf = xmalloc(bs);
	for (long i = 0; i < warmup; i++) {
		ssize_t r = read(fd, buf, bs);
		if (r <= 0)
			break;
		record(&workers[nthreads], locate(buf, (size_t)r), r);
	}
	pthread_barrier_init(&start, NULL, (unsigned)nthreads);
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&workers[i].thread, NULL, reader, &workers[i]))
			die("pthread_create failed");
	for (int i = 0; i < nthreads; i++)
		pthread_join(workers[i].thread, NULL);

	size_t n = 0;
	for (int i = 0; i <= nthreads; i++)
		n += workers[i].n;
	struct range *all = xmalloc(n * sizeof(*all));
	n = 0;
	for (int i = 0; i <= nthreads; i++) {
		memcpy(all + n, workers[i].ranges, workers[i].n * sizeof(*all));
		n += workers[i].n;
	}
	qsort(all, n, sizeof(*all), by_offset);

	long problems = 0, unknown = 0;
	long long end = 0;
	for (size_t i = 0; i < n; i++) {
		if (all[i].off < 0) {
			unknown++;
			continue;
		}
		if (all[i].off != end && problems++ < 10)
			printf("%s at %lld: read of %lld bytes from %lld\n",
			       all[i].off > end ? "GAP" : "OVERLAP", end, all[i].len, all[i].off);
		if (all[i].off + all[i].len > end)
			end = all[i].off + all[i].len;
	}
	if (unknown)
		printf("%ld reads whose content matches no file position\n", unknown);
	if (end != st.st_size)
		printf("reads end at %lld, the file at %lld\n", end, (long long)st.st_size);
	int ok = !problems && !unknown && end == st.st_size;
	printf("threads=%d bs=%zu size=%lld coverage=%s offset=%lld\n", nthreads, bs,
	       (long long)st.st_size, ok ? "exact" : "WRONG", (long long)lseek(fd, 0, SEEK_CUR));
	free(all);
	for (int i = 0; i <= nthreads; i++)
		free(workers[i].ranges);
	free(workers);
	free(buf);
	return ok ? 0 : 1;
}
