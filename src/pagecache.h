/* The page-cache oracle: how much of a file range is cached, asked without
 * reading it. Every "is this cached?" question of the library comes here. */
#ifndef PF_PAGECACHE_H
#define PF_PAGECACHE_H

#include <stdint.h>
#include <sys/types.h>

/* Sets *pages to the pages of [off, off + len) of fd in the page cache
 * (len at most PF_PAGECACHE_MAX_LEN where only mincore can tell); -1 when
 * the kernel will not tell this process. Never starts IO. */
int pf_pages_cached(int fd, off64_t off, uint64_t len, uint64_t *pages);

/* Whether the byte at off is in the page cache: 1 or 0, -1 unknown. */
int pf_byte_cached(int fd, off64_t off);

#endif
