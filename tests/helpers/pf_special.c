/* pf_special CASE...
 *
 * Descriptors that must never be prefetched, read many times each:
 *   proc             /proc/self/maps, /proc/self/status, /proc/meminfo in
 *                    64-byte reads (their content differs between runs:
 *                    only "ok" is printed)
 *   sys              /sys/devices/system/cpu/possible, 1-byte reads
 *   pipe             16 MiB through a pipe from a child process
 *   socket           16 MiB through a Unix stream socket from a child
 *   devzero          16 MiB of /dev/zero
 *   stdin            standard input to its end (run with a pipe or a file)
 *   rdwr:FILE        FILE opened O_RDWR
 *   direct:FILE      FILE opened O_RDONLY|O_DIRECT (aligned reads)
 *   setfl-direct:FILE  O_DIRECT set with fcntl(F_SETFL) after the first read
 *   setfl-direct-dropped:FILE  the same after 1 MiB read in order (a stream)
 *                    and 64 preads here and there (it is dropped), then 1 MiB
 *                    in order again, and an unaligned pread: EINVAL
 *   short:FILE       FILE, smaller than one prefetch chunk, in 4 KiB reads
 *   random:FILE      FILE with posix_fadvise(RANDOM), then sequential reads
 *   control:FILE     FILE read normally: the one that should engage
 * All reads are of 64 KiB unless said otherwise. For each case one line:
 * the bytes read and a hash of the data. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define BS 65536
#define STREAM_BYTES (16 << 20)

static unsigned char *buf;

/* The case setfl-direct-dropped (see the top). The file must be 8 MiB
 * or more. */
static void setfl_direct_dropped(const char *file)
{
	int fd = open(file, O_RDONLY);
	if (fd < 0)
		die("open %s: %m", file);
	uint64_t hash = FNV_INIT;
	for (off_t at = 0; at < (1 << 20); at += BS)
		if (pread(fd, buf, BS, at) != BS)
			die("setfl-direct-dropped: short read");
	/* Far from the stream and from each other: no run, only misses. */
	for (unsigned i = 0; i < 64; i++) {
		off_t at = (off_t)((i * 7919u) % 61u) * BS + (4 << 20);
		if (pread(fd, buf, 4096, at) != 4096)
			die("setfl-direct-dropped: short scattered read");
		hash = fnv1a(hash, buf, 4096);
	}
	if (fcntl(fd, F_SETFL, O_DIRECT) < 0) {
		printf("setfl-direct-dropped: not supported here\n");
		close(fd);
		return;
	}
	for (off_t at = 0; at < (1 << 20); at += BS) {
		if (pread(fd, buf, BS, at) != BS)
			die("setfl-direct-dropped: short aligned read: %m");
		hash = fnv1a(hash, buf, BS);
	}
	ssize_t r = pread(fd, buf + 3, 1000, (1 << 20) + 100);
	printf("setfl-direct-dropped: %016llx, unaligned read: %s\n", (unsigned long long)hash,
	       r < 0 ? errno_name(errno) : "data");
	close(fd);
}

/* Reads fd to its end in requests of bs bytes. */
static void drain(int fd, size_t bs, const char *name, int print_hash)
{
	uint64_t hash = FNV_INIT;
	long long total = 0;
	long calls = 0;
	for (;;) {
		ssize_t r = read(fd, buf, bs);
		calls++;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("%s: read: %m", name);
		}
		if (r == 0)
			break;
		hash = fnv1a(hash, buf, (size_t)r);
		total += r;
	}
	if (print_hash)
		printf("%s: bytes=%lld hash=%016llx\n", name, total, (unsigned long long)hash);
	else
		printf("%s: %s\n", name, total > 0 && calls > 3 ? "ok" : "NOTHING READ");
}

static void drain_path(const char *path, int flags, size_t bs, const char *name, int print_hash)
{
	int fd = open(path, flags);
	if (fd < 0)
		die("open %s: %m", path);
	drain(fd, bs, name, print_hash);
	close(fd);
}

/* A child writes STREAM_BYTES of offset-encoded data into fd. */
static pid_t feeder(int fd)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %m");
	if (pid == 0) {
		unsigned char *out = xmalloc(BS);
		for (off_t pos = 0; pos < STREAM_BYTES; pos += BS) {
			fill_offsets(out, pos, BS, 0);
			size_t done = 0;
			while (done < BS) {
				ssize_t w = write(fd, out + done, BS - done);
				if (w < 0)
					die("feeder: write: %m");
				done += (size_t)w;
			}
		}
		_exit(0);
	}
	close(fd);
	return pid;
}

static void wait_for(pid_t pid)
{
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		die("feeder failed");
}

int main(int argc, char **argv)
{
	void *aligned;
	if (posix_memalign(&aligned, 4096, BS))
		die("out of memory");
	buf = aligned;

	for (int i = 1; i < argc; i++) {
		const char *c = argv[i];
		const char *file = strchr(c, ':') ? strchr(c, ':') + 1 : NULL;
		int fds[2], fd;
		if (strcmp(c, "proc") == 0) {
			drain_path("/proc/self/maps", O_RDONLY, 64, "proc maps", 0);
			drain_path("/proc/self/status", O_RDONLY, 64, "proc status", 0);
			drain_path("/proc/meminfo", O_RDONLY, 64, "proc meminfo", 0);
		} else if (strcmp(c, "sys") == 0) {
			drain_path("/sys/devices/system/cpu/possible", O_RDONLY, 1, "sys", 0);
		} else if (strcmp(c, "pipe") == 0) {
			if (pipe(fds) < 0)
				die("pipe: %m");
			pid_t pid = feeder(fds[1]);
			drain(fds[0], BS, "pipe", 1);
			close(fds[0]);
			wait_for(pid);
		} else if (strcmp(c, "socket") == 0) {
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
				die("socketpair: %m");
			pid_t pid = feeder(fds[1]);
			drain(fds[0], BS, "socket", 1);
			close(fds[0]);
			wait_for(pid);
		} else if (strcmp(c, "devzero") == 0) {
			fd = open("/dev/zero", O_RDONLY);
			if (fd < 0)
				die("/dev/zero: %m");
			uint64_t hash = FNV_INIT;
			for (int k = 0; k < STREAM_BYTES / BS; k++) {
				if (read(fd, buf, BS) != BS)
					die("/dev/zero: short read");
				hash = fnv1a(hash, buf, BS);
			}
			close(fd);
			printf("devzero: hash=%016llx\n", (unsigned long long)hash);
		} else if (strcmp(c, "stdin") == 0) {
			drain(0, BS, "stdin", 1);
		} else if (file && strncmp(c, "rdwr:", 5) == 0) {
			drain_path(file, O_RDWR, BS, "rdwr", 1);
		} else if (file && strncmp(c, "direct:", 7) == 0) {
			fd = open(file, O_RDONLY | O_DIRECT);
			if (fd < 0 && errno == EINVAL) {
				printf("direct: not supported here\n");
				continue;
			}
			if (fd < 0)
				die("open %s: %m", file);
			drain(fd, BS, "direct", 1);
			close(fd);
		} else if (file && strncmp(c, "setfl-direct:", 13) == 0) {
			fd = open(file, O_RDONLY);
			if (fd < 0)
				die("open %s: %m", file);
			if (read(fd, buf, BS) != BS)
				die("setfl-direct: short first read");
			if (fcntl(fd, F_SETFL, O_DIRECT) < 0) {
				printf("setfl-direct: not supported here\n");
				close(fd);
				continue;
			}
			drain(fd, BS, "setfl-direct (after the first 64K)", 1);
			close(fd);
		} else if (file && strncmp(c, "setfl-direct-dropped:", 21) == 0) {
			setfl_direct_dropped(file);
		} else if (file && strncmp(c, "short:", 6) == 0) {
			drain_path(file, O_RDONLY, 4096, "short", 1);
		} else if (file && strncmp(c, "random:", 7) == 0) {
			fd = open(file, O_RDONLY);
			if (fd < 0)
				die("open %s: %m", file);
			posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
			drain(fd, BS, "random", 1);
			close(fd);
		} else if (file && strncmp(c, "control:", 8) == 0) {
			drain_path(file, O_RDONLY, BS, "control", 1);
		} else {
			die("unknown case %s", c);
		}
	}
	return 0;
}
