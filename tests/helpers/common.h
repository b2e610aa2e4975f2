/* Shared bits of the test helper programs: data hashing, the offset-encoded
 * test file format, argument parsing. Test code, not part of the library. */
#ifndef PF_TEST_COMMON_H
#define PF_TEST_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FNV_INIT 0xcbf29ce484222325ULL

/* FNV-1a 64 over n bytes, continuing from h. */
uint64_t fnv1a(uint64_t h, const void *data, size_t n);

/* A hash of one whole buffer, eight bytes per step (fnv1a's byte loop was
 * three quarters of difftest's time). Not for a stream hashed in pieces:
 * the result depends on where the pieces start; use fnv1a there. */
uint64_t hash_block(const void *data, size_t n);

/* The offset-encoded file format: the 8 bytes at every multiple of 8, p, hold
 * p in big-endian order, each byte XORed with key (0 for the usual file). The
 * content therefore tells where in the file any piece of data came from. */
unsigned char offset_byte(off_t pos, unsigned key);
void fill_offsets(unsigned char *buf, off_t pos, size_t n, unsigned key);

/* Checks n bytes that should come from position pos: -1 when they do, else
 * the file position of the first wrong byte. */
off_t check_offsets(const unsigned char *buf, off_t pos, size_t n, unsigned key);

/* Writes size bytes of offset-encoded data at pos of fd. 0 or -1. */
int write_offsets(int fd, off_t pos, off_t size, unsigned key);

/* "123", "64K", "8M", "1G" (binary units), optional leading '-'. Exits on junk. */
long long parse_size(const char *text);

/* "--name=value": returns value when arg starts with "--name=", else NULL. */
const char *opt_value(const char *arg, const char *name);

void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void *xmalloc(size_t n);

/* A symbolic errno ("EIO") for stable output; "E<number>" for others. */
const char *errno_name(int err);

/* read() until n bytes, EOF or an error other than EINTR. */
ssize_t read_full(int fd, void *buf, size_t n);

/* Resident set size of this process in KiB, from /proc/self/status. */
long vm_rss_kb(void);

/* Number of threads of this process (entries of /proc/self/task). */
int thread_count(void);

#endif
