/* pf_read: a configurable sequential reader.
 *
 *   pf_read FILE|--fd=N [--mode=read|pread|readv|preadv|fread|fgets]
 *           [--open=open|openat|nonblock|fopen|fdopen] [--bs=N]
 *           [--fadvise=sequential|random|dontneed|normal|willneed]
 *           [--fadvise-after=N] [--skip=EVERY:DELTA] [--stop-after=BYTES]
 *           [--offsets-every=K] [--trace] [--verify[=KEY]] [--work-us=N]
 *           [--on-error=stop|skip:N] [--ungetc] [--counts=0]
 *           [--pread-every=K:OFFSET]
 *
 * Reads until end of file (or --stop-after bytes) in requests of --bs bytes
 * and prints what a program can observe: a hash of the data, the number of
 * calls, the position it believes it is at and the kernel's file offset
 * (lseek(fd, 0, SEEK_CUR)), and errors. The output is meant to be identical
 * with and without the library.
 *
 * --skip=EVERY:DELTA moves the position by DELTA (may be negative) after
 *   every EVERY reads (lseek SEEK_CUR, fseeko, or the pread offset).
 * --offsets-every=K prints the positions after every K-th read; with
 *   --ungetc (stdio modes) it also does getc + ungetc there.
 * --trace prints every call: index, return value, errno, position before.
 * --verify checks every byte against the offset-encoded format (pf_gen).
 * --on-error: on a failed read (other than EINTR, which is retried and only
 *   counted on stderr) stop, or retry once and then skip N bytes and go on.
 * --counts=0 leaves the number of calls out of the summary (fault tests
 *   where short reads legitimately make it differ).
 * --pread-every=K:OFFSET: after every K reads, a 4 KiB pread at OFFSET
 *   (checked with --verify) that must neither move the file offset nor
 *   disturb the sequential reads around it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"

enum mode { M_READ, M_PREAD, M_READV, M_PREADV, M_FREAD, M_FGETS };

static enum mode mode = M_READ;
static int fd = -1;
static FILE *fp;
static unsigned char *buf;

static int stdio_mode(void)
{
	return mode == M_FREAD || mode == M_FGETS;
}

/* One request of want bytes at pos (pread modes). Returns the byte count or
 * -1 with errno; for stdio, -1 means ferror (with the stream's errno). */
static ssize_t do_read(size_t want, off_t pos)
{
	struct iovec iov[3];
	size_t a = want / 4, b = want / 2;

	switch (mode) {
	case M_READ:
		return read(fd, buf, want);
	case M_PREAD:
		return pread(fd, buf, want, pos);
	case M_READV:
	case M_PREADV:
		iov[0].iov_base = buf;
		iov[0].iov_len = a;
		iov[1].iov_base = buf + a;
		iov[1].iov_len = b;
		iov[2].iov_base = buf + a + b;
		iov[2].iov_len = want - a - b;
		return mode == M_READV ? readv(fd, iov, 3) : preadv(fd, iov, 3, pos);
	case M_FREAD: {
		errno = 0;
		size_t n = fread(buf, 1, want, fp);
		if (n == 0 && ferror(fp))
			return -1;
		return (ssize_t)n;
	}
	case M_FGETS:
		errno = 0;
		if (!fgets((char *)buf, (int)want, fp))
			return ferror(fp) ? -1 : 0;
		return (ssize_t)strlen((char *)buf);
	}
	return -1;
}

static int parse_advice(const char *name)
{
	if (strcmp(name, "sequential") == 0) return POSIX_FADV_SEQUENTIAL;
	if (strcmp(name, "random") == 0) return POSIX_FADV_RANDOM;
	if (strcmp(name, "dontneed") == 0) return POSIX_FADV_DONTNEED;
	if (strcmp(name, "normal") == 0) return POSIX_FADV_NORMAL;
	if (strcmp(name, "willneed") == 0) return POSIX_FADV_WILLNEED;
	die("unknown advice %s", name);
}

static long long kernel_offset(void)
{
	return (long long)lseek(fd, 0, SEEK_CUR);
}

int main(int argc, char **argv)
{
	const char *path = NULL, *open_how = "open", *v;
	size_t bs = 65536;
	int advice = -1, trace = 0, verify = 0, ungetc_too = 0, counts = 1;
	unsigned key = 0;
	long fadvise_after = 0, skip_every = 0, offsets_every = 0, work_us = 0;
	long long skip_delta = 0, stop_after = -1, error_skip = -1;
	long pread_every = 0;
	long long pread_at = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((v = opt_value(a, "mode"))) {
			if (strcmp(v, "read") == 0) mode = M_READ;
			else if (strcmp(v, "pread") == 0) mode = M_PREAD;
			else if (strcmp(v, "readv") == 0) mode = M_READV;
			else if (strcmp(v, "preadv") == 0) mode = M_PREADV;
			else if (strcmp(v, "fread") == 0) mode = M_FREAD;
			else if (strcmp(v, "fgets") == 0) mode = M_FGETS;
			else die("unknown mode %s", v);
		} else if ((v = opt_value(a, "fd"))) {
			fd = (int)parse_size(v);
		} else if ((v = opt_value(a, "open"))) {
			open_how = v;
		} else if ((v = opt_value(a, "bs"))) {
			bs = (size_t)parse_size(v);
		} else if ((v = opt_value(a, "fadvise"))) {
			advice = parse_advice(v);
		} else if ((v = opt_value(a, "fadvise-after"))) {
			fadvise_after = (long)parse_size(v);
		} else if ((v = opt_value(a, "skip"))) {
			char *colon = strchr(v, ':');
			if (!colon)
				die("--skip=EVERY:DELTA");
			*colon = '\0';
			skip_every = (long)parse_size(v);
			skip_delta = parse_size(colon + 1);
		} else if ((v = opt_value(a, "pread-every"))) {
			char *colon = strchr(v, ':');
			if (!colon)
				die("--pread-every=K:OFFSET");
			*colon = '\0';
			pread_every = (long)parse_size(v);
			pread_at = parse_size(colon + 1);
		} else if ((v = opt_value(a, "stop-after"))) {
			stop_after = parse_size(v);
		} else if ((v = opt_value(a, "offsets-every"))) {
			offsets_every = (long)parse_size(v);
		} else if (strcmp(a, "--trace") == 0) {
			trace = 1;
		} else if (strcmp(a, "--verify") == 0) {
			verify = 1;
		} else if ((v = opt_value(a, "verify"))) {
			verify = 1;
			key = (unsigned)parse_size(v);
		} else if ((v = opt_value(a, "work-us"))) {
			work_us = (long)parse_size(v);
		} else if ((v = opt_value(a, "on-error"))) {
			if (strcmp(v, "stop") == 0)
				error_skip = -1;
			else if (strncmp(v, "skip:", 5) == 0)
				error_skip = parse_size(v + 5);
			else
				die("--on-error=stop|skip:N");
		} else if (strcmp(a, "--ungetc") == 0) {
			ungetc_too = 1;
		} else if ((v = opt_value(a, "counts"))) {
			counts = (int)parse_size(v);
		} else if (a[0] == '-' && a[1] == '-') {
			die("unknown option %s", a);
		} else if (!path) {
			path = a;
		} else {
			die("more than one file");
		}
	}
	if (!path && fd < 0)
		die("usage: pf_read FILE|--fd=N [options]");
	if (bs == 0)
		die("--bs must be > 0");

	/* Open. */
	if (fd < 0) {
		if (strcmp(open_how, "open") == 0 || strcmp(open_how, "fdopen") == 0)
			fd = open(path, O_RDONLY);
		else if (strcmp(open_how, "openat") == 0)
			fd = openat(AT_FDCWD, path, O_RDONLY);
		else if (strcmp(open_how, "nonblock") == 0)
			fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
		else if (strcmp(open_how, "fopen") == 0) {
			fp = fopen(path, "r");
			if (!fp)
				die("fopen %s: %m", path);
			fd = fileno(fp);
		} else
			die("unknown --open=%s", open_how);
		if (fd < 0)
			die("open %s: %m", path);
	}
	if (stdio_mode() && !fp) {
		fp = fdopen(fd, "r");
		if (!fp)
			die("fdopen: %m");
	}
	if (!stdio_mode() && fp)
		die("--open=fopen needs a stdio mode");
	if (advice >= 0 && fadvise_after == 0)
		posix_fadvise(fd, 0, 0, advice);

	buf = xmalloc(bs + 1);
	off_t pos = stdio_mode() ? ftello(fp) : lseek(fd, 0, SEEK_CUR);
	if (pos < 0)
		pos = 0; /* a pipe: the position is only counted */
	uint64_t hash = FNV_INIT;
	long long total = 0;
	long calls = 0, reads = 0, eintr = 0, errors = 0, bad = 0;
	int eof = 0;

	for (;;) {
		size_t want = bs;
		if (stop_after >= 0) {
			if (total >= stop_after)
				break;
			if ((long long)want > stop_after - total)
				want = (size_t)(stop_after - total);
		}
		if (advice >= 0 && fadvise_after > 0 && reads == fadvise_after)
			posix_fadvise(fd, 0, 0, advice);

		off_t before = pos;
		ssize_t r = do_read(want, pos);
		int err = errno;
		calls++;
		if (trace)
			printf("call %ld ret=%zd errno=%s pos=%lld\n", calls, r,
			       r < 0 ? errno_name(err) : "0", (long long)before);
		if (r < 0 && err == EINTR) {
			eintr++;
			fprintf(stderr, "pf_read: EINTR at %lld, retrying\n", (long long)before);
			if (stdio_mode())
				clearerr(fp);
			continue;
		}
		if (r < 0) {
			errors++;
			printf("error pos=%lld errno=%s\n", (long long)before, errno_name(err));
			if (stdio_mode() || error_skip < 0 || errors > 16)
				break;
			r = do_read(want, pos);
			err = errno;
			calls++;
			printf("retry ret=%zd errno=%s pos=%lld\n", r,
			       r < 0 ? errno_name(err) : "0", (long long)pos);
			if (r < 0) {
				pos += (off_t)error_skip;
				if (mode == M_READ || mode == M_READV)
					lseek(fd, (off_t)error_skip, SEEK_CUR);
				printf("skipped to %lld\n", (long long)pos);
				continue;
			}
		}
		if (r == 0) {
			eof = 1;
			break;
		}
		reads++;
		hash = fnv1a(hash, buf, (size_t)r);
		if (verify) {
			off_t wrong = check_offsets(buf, pos, (size_t)r, key);
			if (wrong >= 0 && bad++ < 5)
				printf("BAD DATA: read %ld at %lld+%zd: first wrong byte at %lld\n",
				       reads, (long long)pos, r, (long long)wrong);
		}
		pos += (off_t)r;
		total += r;

		if (offsets_every > 0 && reads % offsets_every == 0) {
			if (stdio_mode()) {
				printf("read %ld pos=%lld ftell=%lld kernel=%lld\n", reads,
				       (long long)pos, (long long)ftello(fp), kernel_offset());
				if (ungetc_too) {
					int c = getc(fp);
					if (c != EOF && ungetc(c, fp) == EOF)
						die("ungetc failed");
					printf("  getc=%d ftell=%lld\n", c, (long long)ftello(fp));
				}
			} else {
				printf("read %ld pos=%lld kernel=%lld\n", reads, (long long)pos,
				       kernel_offset());
			}
		}
		if (pread_every > 0 && reads % pread_every == 0) {
			unsigned char side[4096];
			ssize_t n = pread(fd, side, sizeof(side), (off_t)pread_at);
			off_t wrong = n < 0 ? (off_t)pread_at : check_offsets(side, (off_t)pread_at, (size_t)n, key);
			if (n < 0 || (verify && wrong >= 0 && bad++ < 5))
				printf("BAD SIDE PREAD at %lld: ret=%zd first wrong byte %lld\n",
				       pread_at, n, (long long)wrong);
			if (!stdio_mode() && mode != M_PREAD && mode != M_PREADV &&
			    lseek(fd, 0, SEEK_CUR) != pos && bad++ < 5)
				printf("OFFSET MOVED by pread: %lld, expected %lld\n",
				       kernel_offset(), (long long)pos);
		}
		if (skip_every > 0 && reads % skip_every == 0) {
			long long delta = skip_delta;
			if (pos + delta < 0)
				delta = -(long long)pos;
			if (stdio_mode()) {
				if (fseeko(fp, (off_t)delta, SEEK_CUR) < 0)
					die("fseeko: %m");
			} else if (mode == M_READ || mode == M_READV) {
				if (lseek(fd, (off_t)delta, SEEK_CUR) < 0)
					die("lseek: %m");
			}
			pos += (off_t)delta;
		}
		if (work_us > 0)
			usleep((useconds_t)work_us);
	}

	printf("total=%lld hash=%016llx", total, (unsigned long long)hash);
	if (counts)
		printf(" reads=%ld calls=%ld", reads, calls);
	printf(" eof=%d errors=%ld pos=%lld kernel=%lld", eof, errors, (long long)pos,
	       kernel_offset());
	if (stdio_mode())
		printf(" ftell=%lld", (long long)ftello(fp));
	if (verify)
		printf(" bad=%ld", bad);
	printf("\n");
	if (eintr)
		fprintf(stderr, "pf_read: %ld EINTR retried\n", eintr);
	fflush(stdout);
	if (fp)
		fclose(fp);
	else if (path)
		close(fd);
	return bad ? 1 : 0;
}
