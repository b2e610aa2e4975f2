#include "config.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libc.h"
#include "pagecache.h"

/* Pages the mincore fallback looks at, at most: its vector is on the stack. */
#define PF_MINCORE_PAGES 256u

/* Before Linux 6.5 (no cachestat): mincore() of a mapping of our own. Since
 * Linux 5.2 it reports every page resident to whom may not write the file,
 * so it is asked only for the owner's or root's files. */
static int mincore_pages(int fd, off64_t off, uint64_t len, uint64_t *pages)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || (st.st_uid != geteuid() && geteuid() != 0))
		return -1;
	long page = sysconf(_SC_PAGESIZE);
	off64_t start = off - off % page;
	uint64_t span = len + (uint64_t)(off - start);
	if (span > (uint64_t)page * PF_MINCORE_PAGES)
		span = (uint64_t)page * PF_MINCORE_PAGES;
	void *map = pf_libc.mmap64(NULL, span, PROT_READ, MAP_SHARED, fd, start);
	if (map == MAP_FAILED)
		return -1;
	unsigned char vec[PF_MINCORE_PAGES];
	size_t n = (span + (uint64_t)page - 1) / (uint64_t)page;
	int ok = mincore(map, span, vec);
	pf_libc.munmap(map, span);
	if (ok != 0)
		return -1;
	*pages = 0;
	for (size_t i = 0; i < n; i++)
		*pages += vec[i] & 1;
	return 0;
}

/* cachestat() answers from the page cache's own records (Linux 6.5); recent
 * kernels tell only the file's owner, its writers and root (EPERM).
 * RWF_NOWAIT reads are not used: one that misses starts the kernel's
 * readahead before it returns EAGAIN, caching what it asked about. */
int pf_pages_cached(int fd, off64_t off, uint64_t len, uint64_t *pages)
{
	int saved = errno;
	int r = pf_cachestat(fd, (uint64_t)off, len, pages);
	if (r != 0 && errno == ENOSYS)
		r = mincore_pages(fd, off, len, pages);
	errno = saved;
	return r;
}

int pf_byte_cached(int fd, off64_t off)
{
	uint64_t pages;
	if (pf_pages_cached(fd, off, 1, &pages) != 0)
		return -1;
	return pages > 0;
}
