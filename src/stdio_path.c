#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "libc.h"
#include "stdio_path.h"

/* <stdio.h> may define it as a macro when optimising. */
#undef fread_unlocked

/* Flag values of glibc's libio (libio/libio.h), stable since glibc 2.1; the
 * ones public in <bits/types/struct_FILE.h> are used from there. */
#define PF_IO_NO_READS          0x0004
#define PF_IO_IN_BACKUP         0x0100
#define PF_IO_CURRENTLY_PUTTING 0x0800
#define PF_IO_IS_FILEBUF        0x2000
#define PF_IO_FLAGS2_MMAP       1
#define PF_IO_POS_BAD           ((off64_t)-1)

int pf_stream_fd(FILE *fp)
{
	if (!fp || !(fp->_flags & PF_IO_IS_FILEBUF) || fp->_fileno < 0)
		return -1;
	return fp->_fileno;
}

/* Streams whose direct reads glibc does exactly as replicated below: plain
 * byte-oriented file streams, reading, with a buffer, not mmap-backed, no
 * pushed-back characters. */
static bool direct_read_possible(FILE *fp)
{
	return pf_stream_fd(fp) >= 0 && fp->_IO_buf_base != NULL && fp->_mode <= 0 &&
	       !(fp->_flags2 & PF_IO_FLAGS2_MMAP) &&
	       !(fp->_flags & (PF_IO_NO_READS | PF_IO_IN_BACKUP | PF_IO_CURRENTLY_PUTTING));
}

/* glibc's _IO_file_xsgetn: copy what the buffer holds; while at least a
 * buffer's worth is wanted, read whole blocks straight into the caller's
 * memory; leave anything smaller to glibc's own refill. */
static size_t xsgetn(FILE *fp, char *s, size_t want)
{
	size_t n = want;
	while (want > 0) {
		size_t have = (size_t)(fp->_IO_read_end - fp->_IO_read_ptr);
		if (want <= have) {
			memcpy(s, fp->_IO_read_ptr, want);
			fp->_IO_read_ptr += want;
			return n;
		}
		if (have > 0) {
			memcpy(s, fp->_IO_read_ptr, have);
			s += have;
			want -= have;
			fp->_IO_read_ptr += have;
		}
		size_t block = (size_t)(fp->_IO_buf_end - fp->_IO_buf_base);
		if (want < block)
			return n - want + pf_libc.fread_unlocked(s, 1, want, fp);

		fp->_IO_read_base = fp->_IO_read_ptr = fp->_IO_read_end = fp->_IO_buf_base;
		fp->_IO_write_base = fp->_IO_write_ptr = fp->_IO_write_end = fp->_IO_buf_base;
		size_t count = want;
		if (block >= 128)
			count -= want % block;
		struct iovec iov = { s, count };
		struct pf_read_req req = { &iov, 1, PF_AT_FILE_OFFSET };
		ssize_t got = pf_read_fd(fp->_fileno, &req);
		if (got <= 0) {
			fp->_flags |= got == 0 ? _IO_EOF_SEEN : _IO_ERR_SEEN;
			break;
		}
		s += got;
		want -= (size_t)got;
		if (fp->_offset != PF_IO_POS_BAD)
			fp->_offset += got;
	}
	return n - want;
}

/* glibc's own, exported: allocates a stream's buffer as its fread does
 * first, so that the direct path takes a stream's first read too (the
 * one from offset 0, which tells a whole-file reader). */
extern void _IO_doallocbuf(FILE *fp);

size_t pf_fread_unlocked(void *ptr, size_t size, size_t n, FILE *fp)
{
	size_t bytes = size * n;
	if (bytes && fp->_IO_buf_base == NULL && fp->_IO_save_base == NULL &&
	    pf_stream_fd(fp) >= 0 && !(fp->_flags2 & PF_IO_FLAGS2_MMAP))
		_IO_doallocbuf(fp);
	if (bytes == 0 || !direct_read_possible(fp))
		return pf_libc.fread_unlocked(ptr, size, n, fp);
	size_t got = xsgetn(fp, ptr, bytes);
	return got == bytes ? n : got / size;
}
