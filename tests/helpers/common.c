/* Shared bits of the test helper programs (see common.h). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static inline uint64_t lane_step(uint64_t h, const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	h = (h ^ w) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

uint64_t hash_block(const void *data, size_t n)
{
	/* Four independent lanes: the multiplies overlap (difftest hashes
	 * every byte it reads, and this was most of its time). */
	const unsigned char *p = data;
	uint64_t a = FNV_INIT ^ n, b = FNV_INIT + 1, c = FNV_INIT + 2, d = FNV_INIT + 3;
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		a = lane_step(a, p + i);
		b = lane_step(b, p + i + 8);
		c = lane_step(c, p + i + 16);
		d = lane_step(d, p + i + 24);
	}
	uint64_t r = (((a ^ b) * 0x100000001b3ULL ^ c) * 0x100000001b3ULL ^ d) * 0x100000001b3ULL;
	for (; i + 8 <= n; i += 8)
		r = lane_step(r, p + i);
	return fnv1a(r, p + i, n - i);
}

unsigned char offset_byte(off_t pos, unsigned key)
{
	uint64_t word = (uint64_t)pos & ~(uint64_t)7;
	unsigned shift = 8 * (7 - (unsigned)(pos & 7));
	return (unsigned char)(((word >> shift) & 0xff) ^ (key & 0xff));
}

void fill_offsets(unsigned char *buf, off_t pos, size_t n, unsigned key)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = offset_byte(pos + (off_t)i, key);
}

off_t check_offsets(const unsigned char *buf, off_t pos, size_t n, unsigned key)
{
	for (size_t i = 0; i < n; i++)
		if (buf[i] != offset_byte(pos + (off_t)i, key))
			return pos + (off_t)i;
	return -1;
}

int write_offsets(int fd, off_t pos, off_t size, unsigned key)
{
	size_t bufsize = 1 << 20;
	unsigned char *buf = xmalloc(bufsize);
	while (size > 0) {
		size_t n = size < (off_t)bufsize ? (size_t)size : bufsize;
		fill_offsets(buf, pos, n, key);
		size_t done = 0;
		while (done < n) {
			ssize_t w = pwrite(fd, buf + done, n - done, pos + (off_t)done);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				free(buf);
				return -1;
			}
			done += (size_t)w;
		}
		pos += (off_t)n;
		size -= (off_t)n;
	}
	free(buf);
	return 0;
}

long long parse_size(const char *text)
{
	char *end;
	errno = 0;
	long long v = strtoll(text, &end, 0);
	if (errno || end == text)
		die("bad number: %s", text);
	switch (toupper((unsigned char)*end)) {
	/* Multiplied, not shifted: sizes may be negative (--skip=16:-512K). */
	case 'K': v *= 1024; end++; break;
	case 'M': v *= 1024 * 1024; end++; break;
	case 'G': v *= 1024 * 1024 * 1024LL; end++; break;
	default: break;
	}
	if (*end)
		die("bad number: %s", text);
	return v;
}

const char *opt_value(const char *arg, const char *name)
{
	size_t len = strlen(name);
	if (strncmp(arg, "--", 2) == 0 && strncmp(arg + 2, name, len) == 0 && arg[2 + len] == '=')
		return arg + 3 + len;
	return NULL;
}

void die(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(99);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory (%zu bytes)", n);
	return p;
}

const char *errno_name(int err)
{
	static char other[32];
	switch (err) {
	case 0: return "0";
	case EIO: return "EIO";
	case EINTR: return "EINTR";
	case EAGAIN: return "EAGAIN";
	case EBADF: return "EBADF";
	case EINVAL: return "EINVAL";
	case ESPIPE: return "ESPIPE";
	case EFAULT: return "EFAULT";
	case EISDIR: return "EISDIR";
	case ENOENT: return "ENOENT";
	case EMFILE: return "EMFILE";
	case ENXIO: return "ENXIO";
	default:
		snprintf(other, sizeof(other), "E%d", err);
		return other;
	}
}

ssize_t read_full(int fd, void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = read(fd, (char *)buf + done, n - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -1;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

long vm_rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}
