/* The exported symbols of memory mappings (mmap, munmap, mremap, madvise),
 * for mmap_prefetch.c. Thin, as in hooks.c: the gate (PF_GATE, runtime.h),
 * then the library's logic; the real functions are called as pf_libc.name.
 * The boot paths are system calls (libc.c): allocators map memory while
 * dlsym runs. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>

#include "libc.h"
#include "mmap_prefetch.h"
#include "runtime.h"

/* Anonymous memory (allocators, thread stacks) costs one test: only file
 * mappings and MAP_FIXED (which may replace a watched mapping) go further. */
#define MMAP_PASSES(flags) (((flags) & (MAP_ANONYMOUS | MAP_FIXED)) == MAP_ANONYMOUS)

static void *mapping_made(void *p, size_t len, int prot, int flags, int fd, off64_t off)
{
	if (p != MAP_FAILED)
		pf_mmap_mapped(p, len, prot, flags, fd, off);
	return p;
}

static void replacing_range(void *addr, size_t len, int flags)
{
	if ((flags & MAP_FIXED) && pf_mmap_tracking())
		pf_mmap_unmapping(addr, len);
}

PF_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	PF_GATE(MMAP_PASSES(flags), pf_boot_mmap(addr, len, prot, flags, fd, off),
		pf_libc.mmap(addr, len, prot, flags, fd, off));
	replacing_range(addr, len, flags);
	return mapping_made(pf_libc.mmap(addr, len, prot, flags, fd, off), len, prot, flags, fd, off);
}

#ifdef HAVE_MMAP64
PF_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	PF_GATE(MMAP_PASSES(flags), pf_boot_mmap(addr, len, prot, flags, fd, off),
		pf_libc.mmap64(addr, len, prot, flags, fd, off));
	replacing_range(addr, len, flags);
	return mapping_made(pf_libc.mmap64(addr, len, prot, flags, fd, off), len, prot, flags, fd,
			    off);
}
#endif

/* While no mapping is watched, the calls below cost one load more than
 * glibc's, and never start the library. */

/* Before the real call: the workers must be done with the range first. */
PF_EXPORT int munmap(void *addr, size_t len)
{
	PF_GATE(!pf_mmap_tracking(), pf_boot_munmap(addr, len), pf_libc.munmap(addr, len));
	pf_mmap_unmapping(addr, len);
	return pf_libc.munmap(addr, len);
}

/* The new address is passed only with MREMAP_FIXED, as glibc reads it. */
PF_EXPORT void *mremap(void *old_addr, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	PF_GATE(!pf_mmap_tracking(), pf_boot_mremap(old_addr, old_len, new_len, flags, new_addr),
		pf_libc.mremap(old_addr, old_len, new_len, flags, new_addr));
	pf_mmap_unmapping(old_addr, old_len);
	if (flags & MREMAP_FIXED)
		pf_mmap_unmapping(new_addr, new_len);
	return pf_libc.mremap(old_addr, old_len, new_len, flags, new_addr);
}

static int madvised(void *addr, size_t len, int advice, int result)
{
	if (result == 0)
		pf_mmap_advised(addr, len, advice);
	return result;
}

PF_EXPORT int madvise(void *addr, size_t len, int advice)
{
	PF_GATE(!pf_mmap_tracking(), pf_boot_madvise(addr, len, advice),
		pf_libc.madvise(addr, len, advice));
	return madvised(addr, len, advice, pf_libc.madvise(addr, len, advice));
}

/* The POSIX_MADV_* values are the MADV_* ones. glibc ignores
 * POSIX_MADV_DONTNEED, but it still says the data is not wanted.
 * posix_madvise returns its error instead of setting errno. */
PF_EXPORT int posix_madvise(void *addr, size_t len, int advice)
{
	PF_GATE(!pf_mmap_tracking(), ENOSYS, pf_libc.posix_madvise(addr, len, advice));
	return madvised(addr, len, advice, pf_libc.posix_madvise(addr, len, advice));
}
