/* mmap_scan: the mmap-hazard scan, and the mapping cases of PREFETCH_MMAP.
 *
 *   mmap_scan [--mode=mmap|read] [--threads=N] [--map=shared|private]
 *             [--prot=r|rw] [--advise=none|normal|random|sequential|willneed|dontneed]
 *             [--work-ns=N] [--early-unmap=BYTES [--loops=N] [--replace]]
 *             [--random=K] [--fork] [--check-unmapped] [--evict] [--pause-ms=N]
 *             FILE...
 *
 * Scans every FILE, summing every 512th byte, either through a mapping of
 * the whole file or with read() in 128 KiB blocks; --threads=N threads take
 * the files in turn. Prints "checksum N" (the same in every mode) on stdout,
 * the elapsed time on stderr.
 *
 * --prot=rw maps PROT_READ|PROT_WRITE (MAP_SHARED opens the file O_RDWR);
 *   nothing is written.
 * --advise gives madvise() advice for the whole mapping before the scan.
 * --work-ns spins that long per 4 KiB page scanned: a program that computes.
 * --early-unmap maps each file, scans only its first BYTES and unmaps it (or,
 *   with --replace, maps anonymous memory over it with MAP_FIXED), --loops
 *   times: unmapping while a prefetch of the mapping may be under way.
 * --random=K reads one 64 KiB block in K, in a scattered order, instead of
 *   scanning (random access: nothing to prefetch).
 * --fork maps the first file and scans half of it, then forks: parent and
 *   child each scan the other half, and the child alone scans the other
 *   files (files the parent never touches: what the child's library finds
 *   cached is its own doing). Prints both checksums.
 * --evict drops the file from the page cache (POSIX_FADV_DONTNEED) right
 *   before each mapping of it: every mapping starts cold, whatever ran
 *   before (an earlier loop, its read-ahead).
 * --pause-ms sleeps once in each mapping scanned (after a quarter of it;
 *   with --early-unmap after the first loop's part; with --fork before the
 *   fork): a program that stops to compute gives the library's threads the
 *   CPU whatever the load, so that they see its progress before it ends.
 * --check-unmapped: after each munmap (and MAP_FIXED replacement) of a
 *   file's mapping, /proc/self/maps must hold no mapping of that file any
 *   more: whatever a preloaded library mapped of it went too. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define STRIDE 512
#define READ_BLOCK (128 * 1024)

static int use_mmap = 1;
static int threads = 1;
static int map_flags = MAP_SHARED;
static int prot = PROT_READ;
static int advice = -1;
static long long work_ns;
static long long early_unmap = -1;
static long loops = 1;
static int replace;
static int do_fork;
static long random_k;
static int check_unmapped;
static int evict;
static long long pause_ms;

static char **files;
static int nfiles;
static int next_file;
static uint64_t total;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void spin(long long ns)
{
	if (ns <= 0)
		return;
	uint64_t until = now_ns() + (uint64_t)ns;
	while (now_ns() < until)
		;
}

static void pause_here(void)
{
	struct timespec ts = { (time_t)(pause_ms / 1000), (long)(pause_ms % 1000) * 1000000 };
	while (pause_ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Sums the bytes at multiples of STRIDE in [from, to) of a mapping. */
static uint64_t scan_mapping(const volatile unsigned char *p, size_t from, size_t to)
{
	uint64_t sum = 0;
	for (size_t off = from; off < to; off += STRIDE) {
		sum += p[off];
		if (work_ns && (off & 4095) == 0)
			spin(work_ns);
	}
	return sum;
}

static int open_file(const char *path, off_t *size)
{
	int fd = open(path, (prot & PROT_WRITE) && map_flags == MAP_SHARED ? O_RDWR : O_RDONLY);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0)
		die("%s: fstat: %s", path, strerror(errno));
	*size = st.st_size;
	return fd;
}

/* The mappings of a file in this process (0 without --check-unmapped). */
static int count_mapped(dev_t dev, ino_t ino)
{
	if (!check_unmapped)
		return 0;
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		die("/proc/self/maps: %s", strerror(errno));
	char line[4096];
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long inode;
		if (sscanf(line, "%*s %*s %*s %x:%x %lu", &maj, &min, &inode) == 3 &&
		    inode == (unsigned long)ino && makedev(maj, min) == dev)
			n++;
	}
	fclose(f);
	return n;
}

/* With --check-unmapped: dies if the file is mapped more often than
 * `before`, the count before the program mapped it. */
static void assert_unmapped(dev_t dev, ino_t ino, int before, const char *path, const char *when)
{
	int n = count_mapped(dev, ino);
	if (n > before)
		die("%s: %d mapping(s) of it left %s (%d before)", path, n, when, before);
}

static void file_id(int fd, dev_t *dev, ino_t *ino)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		die("fstat: %s", strerror(errno));
	*dev = st.st_dev;
	*ino = st.st_ino;
}

static unsigned char *map_file(int fd, size_t size, const char *path)
{
	if (evict && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
		die("%s: posix_fadvise: %s", path, strerror(errno));
	void *p = mmap(NULL, size, prot, map_flags, fd, 0);
	if (p == MAP_FAILED)
		die("%s: mmap: %s", path, strerror(errno));
	if (advice >= 0 && madvise(p, size, advice) != 0)
		die("%s: madvise: %s", path, strerror(errno));
	return p;
}

static uint64_t scan_file_mmap(const char *path)
{
	off_t size;
	int fd = open_file(path, &size);
	if (size == 0) {
		close(fd);
		return 0;
	}
	dev_t dev;
	ino_t ino;
	file_id(fd, &dev, &ino);
	int before = count_mapped(dev, ino);
	unsigned char *p = map_file(fd, (size_t)size, path);
	close(fd); /* the mapping keeps the file */
	uint64_t sum = 0;
	if (random_k > 0) {
		/* Blocks i * 7919 mod n, a permutation when n is not a multiple of
		 * the prime 7919; every K-th of them. */
		size_t n = ((size_t)size + 65535) / 65536;
		for (size_t i = 0; i < n; i += (size_t)random_k) {
			size_t b = (i * 7919) % n;
			size_t end = (b + 1) * 65536 < (size_t)size ? (b + 1) * 65536 : (size_t)size;
			sum += scan_mapping(p, b * 65536, end);
		}
	} else {
		/* Split at a multiple of STRIDE: the same bytes as in one go. */
		size_t quarter = (size_t)size / 4 / STRIDE * STRIDE;
		sum = scan_mapping(p, 0, quarter);
		pause_here();
		sum += scan_mapping(p, quarter, (size_t)size);
	}
	if (munmap(p, (size_t)size) != 0)
		die("%s: munmap: %s", path, strerror(errno));
	assert_unmapped(dev, ino, before, path, "after munmap");
	return sum;
}

static uint64_t scan_file_read(const char *path)
{
	off_t size;
	int fd = open_file(path, &size);
	unsigned char *buf = xmalloc(READ_BLOCK);
	uint64_t sum = 0;
	off_t pos = 0;
	for (;;) {
		ssize_t r = read_full(fd, buf, READ_BLOCK);
		if (r < 0)
			die("%s: read: %s", path, strerror(errno));
		if (r == 0)
			break;
		/* The bytes at file offsets that are multiples of STRIDE. */
		off_t first = (pos + STRIDE - 1) / STRIDE * STRIDE;
		for (off_t off = first; off < pos + r; off += STRIDE) {
			sum += buf[off - pos];
			if (work_ns && (off & 4095) == 0)
				spin(work_ns);
		}
		pos += r;
	}
	free(buf);
	close(fd);
	return sum;
}

/* Maps, reads the first early_unmap bytes, unmaps (or replaces) at once. */
static uint64_t scan_file_early(const char *path)
{
	off_t size;
	int fd = open_file(path, &size);
	dev_t dev;
	ino_t ino;
	file_id(fd, &dev, &ino);
	int before = count_mapped(dev, ino);
	uint64_t sum = 0;
	for (long i = 0; i < loops && size > 0; i++) {
		unsigned char *p = map_file(fd, (size_t)size, path);
		size_t upto = (size_t)early_unmap < (size_t)size ? (size_t)early_unmap : (size_t)size;
		sum += scan_mapping(p, 0, upto);
		if (i == 0)
			pause_here();
		if (replace) {
			void *q = mmap(p, (size_t)size, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			if (q != p)
				die("%s: mmap MAP_FIXED: %s", path, strerror(errno));
			assert_unmapped(dev, ino, before, path, "after MAP_FIXED");
			/* The new memory must read as zeroes, whatever ran before. */
			for (size_t off = 0; off < (size_t)size; off += 65536)
				if (((volatile unsigned char *)q)[off] != 0)
					die("%s: replaced memory is not zero at %zu", path, off);
		}
		if (munmap(p, (size_t)size) != 0)
			die("%s: munmap: %s", path, strerror(errno));
		assert_unmapped(dev, ino, before, path, "after munmap");
	}
	close(fd);
	return sum;
}

static uint64_t scan_file(const char *path)
{
	if (early_unmap >= 0)
		return scan_file_early(path);
	return use_mmap ? scan_file_mmap(path) : scan_file_read(path);
}

static void *scanner(void *unused)
{
	(void)unused;
	uint64_t sum = 0;
	for (;;) {
		int i = __atomic_fetch_add(&next_file, 1, __ATOMIC_RELAXED);
		if (i >= nfiles)
			break;
		sum += scan_file(files[i]);
	}
	__atomic_add_fetch(&total, sum, __ATOMIC_RELAXED);
	return NULL;
}

static uint64_t scan_all(void)
{
	pthread_t *tids = xmalloc(sizeof(*tids) * (size_t)threads);
	next_file = 0;
	total = 0;
	for (int t = 1; t < threads; t++)
		if (pthread_create(&tids[t], NULL, scanner, NULL) != 0)
			die("pthread_create failed");
	scanner(NULL);
	for (int t = 1; t < threads; t++)
		pthread_join(tids[t], NULL);
	free(tids);
	return total;
}

/* The parent maps the first file and starts reading it, then forks: both
 * finish it (the child through its copy of the mapping), and the child
 * alone scans the other files. */
static void scan_with_fork(void)
{
	off_t size;
	int fd = open_file(files[0], &size);
	dev_t dev;
	ino_t ino;
	file_id(fd, &dev, &ino);
	int before = count_mapped(dev, ino);
	unsigned char *p = map_file(fd, (size_t)size, files[0]);
	close(fd);
	uint64_t head = scan_mapping(p, 0, (size_t)size / 2);
	pause_here();
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	uint64_t tail = scan_mapping(p, (size_t)size / 2, (size_t)size);
	munmap(p, (size_t)size);
	assert_unmapped(dev, ino, before, files[0],
			pid == 0 ? "after munmap in the child" : "after munmap");
	if (pid == 0) {
		files++;
		nfiles--;
		uint64_t rest = scan_all();
		printf("child checksum %llu %llu\n", (unsigned long long)(head + tail),
		       (unsigned long long)rest);
		exit(0); /* not _exit: the library's statistics are written at exit */
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("child failed");
	printf("parent checksum %llu\n", (unsigned long long)(head + tail));
}

static int parse_advice(const char *v)
{
	if (!strcmp(v, "none")) return -1;
	if (!strcmp(v, "normal")) return MADV_NORMAL;
	if (!strcmp(v, "random")) return MADV_RANDOM;
	if (!strcmp(v, "sequential")) return MADV_SEQUENTIAL;
	if (!strcmp(v, "willneed")) return MADV_WILLNEED;
	if (!strcmp(v, "dontneed")) return MADV_DONTNEED;
	die("bad --advise: %s", v);
}

int main(int argc, char **argv)
{
	int i;
	const char *v;
	for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if ((v = opt_value(argv[i], "mode"))) {
			if (strcmp(v, "mmap") && strcmp(v, "read"))
				die("bad --mode: %s", v);
			use_mmap = !strcmp(v, "mmap");
		} else if ((v = opt_value(argv[i], "threads"))) {
			threads = (int)parse_size(v);
			if (threads < 1 || threads > 256)
				die("bad --threads: %s", v);
		} else if ((v = opt_value(argv[i], "map"))) {
			if (strcmp(v, "shared") && strcmp(v, "private"))
				die("bad --map: %s", v);
			map_flags = !strcmp(v, "shared") ? MAP_SHARED : MAP_PRIVATE;
		} else if ((v = opt_value(argv[i], "prot"))) {
			if (strcmp(v, "r") && strcmp(v, "rw"))
				die("bad --prot: %s", v);
			prot = !strcmp(v, "r") ? PROT_READ : PROT_READ | PROT_WRITE;
		} else if ((v = opt_value(argv[i], "advise"))) {
			advice = parse_advice(v);
		} else if ((v = opt_value(argv[i], "work-ns"))) {
			work_ns = parse_size(v);
		} else if ((v = opt_value(argv[i], "early-unmap"))) {
			early_unmap = parse_size(v);
		} else if ((v = opt_value(argv[i], "loops"))) {
			loops = (long)parse_size(v);
		} else if ((v = opt_value(argv[i], "random"))) {
			random_k = (long)parse_size(v);
		} else if (!strcmp(argv[i], "--replace")) {
			replace = 1;
		} else if (!strcmp(argv[i], "--check-unmapped")) {
			check_unmapped = 1;
		} else if (!strcmp(argv[i], "--fork")) {
			do_fork = 1;
		} else if (!strcmp(argv[i], "--evict")) {
			evict = 1;
		} else if ((v = opt_value(argv[i], "pause-ms"))) {
			pause_ms = parse_size(v);
		} else {
			die("unknown option %s", argv[i]);
		}
	}
	files = argv + i;
	nfiles = argc - i;
	if (nfiles < 1)
		die("usage: mmap_scan [options] FILE...");

	uint64_t t0 = now_ns();
	if (do_fork) {
		scan_with_fork();
	} else {
		printf("checksum %llu\n", (unsigned long long)scan_all());
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	fprintf(stderr, "elapsed %.6f s (mode=%s threads=%d files=%d)\n", secs,
		use_mmap ? "mmap" : "read", threads, nfiles);
	return 0;
}
