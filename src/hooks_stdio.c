/* The exported symbols of the C library's streams: stdio FILEs (opened,
 * read, closed) and directory listings (readdir, for fileahead.c). Thin,
 * as in hooks.c: the gate (PF_GATE, runtime.h), then the library's logic;
 * the real functions are called as pf_libc.name. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "fileahead.h"
#include "libc.h"
#include "runtime.h"
#include "stdio_path.h"

/* <stdio.h> may define it as a macro when optimising. */
#undef fread_unlocked

/* --- FILE streams ----------------------------------------------------------------------- */

static FILE *stream_opened(FILE *fp, const char *path, const char *mode)
{
	if (fp)
		pf_hook_opened(pf_stream_fd(fp), AT_FDCWD, path,
			       mode[0] == 'r' && !strchr(mode, '+') ? O_RDONLY : O_RDWR);
	return fp;
}

PF_EXPORT FILE *fopen(const char *path, const char *mode)
{
	PF_GATE(false, PF_BOOT_FAIL(NULL), pf_libc.fopen(path, mode));
	return stream_opened(pf_libc.fopen(path, mode), path, mode);
}

#ifdef HAVE_FOPEN64
PF_EXPORT FILE *fopen64(const char *path, const char *mode)
{
	PF_GATE(false, PF_BOOT_FAIL(NULL), pf_libc.fopen64(path, mode));
	return stream_opened(pf_libc.fopen64(path, mode), path, mode);
}
#endif

/* glibc closes the old descriptor internally, where no hook sees it. */
static void stream_closing(FILE *fp)
{
	int fd = pf_stream_fd(fp);
	if (fd >= 0)
		pf_fd_closing(fd);
}

PF_EXPORT FILE *freopen(const char *path, const char *mode, FILE *stream)
{
	PF_GATE(false, PF_BOOT_FAIL(NULL), pf_libc.freopen(path, mode, stream));
	stream_closing(stream);
	return stream_opened(pf_libc.freopen(path, mode, stream), path, mode);
}

#ifdef HAVE_FREOPEN64
PF_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
	PF_GATE(false, PF_BOOT_FAIL(NULL), pf_libc.freopen64(path, mode, stream));
	stream_closing(stream);
	return stream_opened(pf_libc.freopen64(path, mode, stream), path, mode);
}
#endif

PF_EXPORT int fclose(FILE *stream)
{
	PF_GATE(false, PF_BOOT_FAIL(EOF), pf_libc.fclose(stream));
	stream_closing(stream);
	return pf_libc.fclose(stream);
}

static void unlock_cancelled(void *stream)
{
	funlockfile(stream);
}

/* fread takes the stream's lock, as glibc's does, unless the program took
 * over locking itself (__fsetlocking FSETLOCKING_BYCALLER); a thread
 * cancelled in its read gives it back, as glibc's does. */
static size_t locked_fread(void *ptr, size_t size, size_t n, FILE *stream)
{
	bool lock = !(stream->_flags & _IO_USER_LOCK);
	size_t r;
	if (!lock)
		return pf_fread_unlocked(ptr, size, n, stream);
	flockfile(stream);
	pthread_cleanup_push(unlock_cancelled, stream);
	r = pf_fread_unlocked(ptr, size, n, stream);
	pthread_cleanup_pop(1);
	return r;
}

PF_EXPORT size_t fread(void *ptr, size_t size, size_t n, FILE *stream)
{
	PF_GATE(false, PF_BOOT_FAIL(0), pf_libc.fread(ptr, size, n, stream));
	return locked_fread(ptr, size, n, stream);
}

#ifdef HAVE_FREAD_UNLOCKED
PF_EXPORT size_t fread_unlocked(void *ptr, size_t size, size_t n, FILE *stream)
{
	PF_GATE(false, PF_BOOT_FAIL(0), pf_libc.fread_unlocked(ptr, size, n, stream));
	return pf_fread_unlocked(ptr, size, n, stream);
}
#endif

/* The checks of glibc's __fread_chk: an overflowing size * n, or more than
 * the destination holds, go to glibc, which reports them. */
static bool fread_chk_fails(size_t ptrlen, size_t size, size_t n)
{
	size_t bytes = size * n;
	return (size != 0 && bytes / size != n) || bytes > ptrlen;
}

#ifdef HAVE___FREAD_CHK
PF_EXPORT size_t __fread_chk(void *ptr, size_t ptrlen, size_t size, size_t n, FILE *stream);
PF_EXPORT size_t __fread_chk(void *ptr, size_t ptrlen, size_t size, size_t n, FILE *stream)
{
	PF_GATE(fread_chk_fails(ptrlen, size, n), PF_BOOT_FAIL(0),
		pf_libc.__fread_chk(ptr, ptrlen, size, n, stream));
	return locked_fread(ptr, size, n, stream);
}
#endif

#ifdef HAVE___FREAD_UNLOCKED_CHK
PF_EXPORT size_t __fread_unlocked_chk(void *ptr, size_t ptrlen, size_t size, size_t n,
				      FILE *stream);
PF_EXPORT size_t __fread_unlocked_chk(void *ptr, size_t ptrlen, size_t size, size_t n,
				      FILE *stream)
{
	PF_GATE(fread_chk_fails(ptrlen, size, n), PF_BOOT_FAIL(0),
		pf_libc.__fread_unlocked_chk(ptr, ptrlen, size, n, stream));
	return pf_fread_unlocked(ptr, size, n, stream);
}
#endif

/* --- directory listings (fileahead.c) ---------------------------------------------------- */

/* What a program reads of a directory tells which files it may open next. */
static void dir_read(DIR *dirp, const char *name, unsigned char type)
{
	int saved = errno; /* readdir's end is NULL with errno unchanged */
	pf_files_dir_entry(dirp, name, type);
	errno = saved;
}

PF_EXPORT struct dirent *readdir(DIR *dirp)
{
	PF_GATE(false, PF_BOOT_FAIL(NULL), pf_libc.readdir(dirp));
	struct dirent *d = pf_libc.readdir(dirp);
	dir_read(dirp, d ? d->d_name : NULL, d ? d->d_type : DT_UNKNOWN);
	return d;
}

PF_EXPORT struct dirent64 *readdir64(DIR *dirp)
{
	PF_GATE(false, PF_BOOT_FAIL(NULL), pf_libc.readdir64(dirp));
	struct dirent64 *d = pf_libc.readdir64(dirp);
	dir_read(dirp, d ? d->d_name : NULL, d ? d->d_type : DT_UNKNOWN);
	return d;
}

PF_EXPORT int closedir(DIR *dirp)
{
	PF_GATE(false, PF_BOOT_FAIL(-1), pf_libc.closedir(dirp));
	pf_files_dir_closing(dirp);
	return pf_libc.closedir(dirp);
}
