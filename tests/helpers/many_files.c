/* Reads many files at once: T threads, each reading its share of the files
 * in turns of one block per file, so that every descriptor is sequential
 * while all of them are in flight together. Prints an FNV-1a hash and the
 * size of each file, in argument order.
 *
 * usage: many_files THREADS BLOCK FILE...
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct file {
	const char *path;
	int fd;
	uint64_t hash;
	uint64_t size;
	int done;
};

static struct file *files;
static int nfiles, nthreads;
static size_t block;

static void hash_bytes(struct file *f, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		f->hash = (f->hash ^ p[i]) * 1099511628211ULL;
	f->size += n;
}

static void *reader(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned char *buf = malloc(block);
	int open_left = 0;
	if (!buf)
		exit(2);
	for (int i = id; i < nfiles; i += nthreads)
		open_left++;
	while (open_left > 0) {
		for (int i = id; i < nfiles; i += nthreads) {
			struct file *f = &files[i];
			if (f->done)
				continue;
			ssize_t r = read(f->fd, buf, block);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				fprintf(stderr, "%s: %s\n", f->path, strerror(errno));
				exit(1);
			}
			if (r == 0) {
				f->done = 1;
				open_left--;
				close(f->fd);
				continue;
			}
			hash_bytes(f, buf, (size_t)r);
		}
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s THREADS BLOCK FILE...\n", argv[0]);
		return 2;
	}
	nthreads = (int)strtol(argv[1], NULL, 10);
	block = (size_t)strtoul(argv[2], NULL, 10);
	nfiles = argc - 3;
	if (nthreads < 1 || block < 1)
		return 2;
	files = calloc((size_t)nfiles, sizeof(*files));
	if (!files)
		return 2;
	for (int i = 0; i < nfiles; i++) {
		files[i].path = argv[i + 3];
		files[i].hash = 1469598103934665603ULL;
		files[i].fd = open(files[i].path, O_RDONLY);
		if (files[i].fd < 0) {
			perror(files[i].path);
			return 1;
		}
	}
	pthread_t *tids = calloc((size_t)nthreads, sizeof(*tids));
	for (int t = 0; t < nthreads; t++)
		pthread_create(&tids[t], NULL, reader, (void *)(intptr_t)t);
	for (int t = 0; t < nthreads; t++)
		pthread_join(tids[t], NULL);
	for (int i = 0; i < nfiles; i++)
		printf("%016llx %llu\n", (unsigned long long)files[i].hash,
		       (unsigned long long)files[i].size);
	free(tids);
	free(files);
	return 0;
}
