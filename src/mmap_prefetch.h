/* Prefetching behind mmap (PREFETCH_MMAP): the blocking IO of page faults,
 * which no read() hook can see.
 *
 * mmap hooks register read-only mappings of regular files; lazily started
 * worker threads watch how far the program has got in each (its page
 * faults, seen in /proc/self/pagemap) and read a bounded window ahead of it,
 * several requests at once, through a private mapping of their own of the
 * same file. munmap, mremap and MAP_FIXED over a mapping stop it first,
 * waiting for the workers to be done with it. See mmap_prefetch.c and
 * mmap_worker.c. */
#ifndef PF_MMAP_PREFETCH_H
#define PF_MMAP_PREFETCH_H

#include <stddef.h>
#include <sys/types.h>

/* Number of mappings registered: while 0, munmap, mremap and madvise hooks
 * do nothing but this one load. */
extern unsigned pf_mmap_tracked;

static inline int pf_mmap_tracking(void)
{
	return __atomic_load_n(&pf_mmap_tracked, __ATOMIC_RELAXED) != 0;
}

/* A mapping was created (any kind: the candidates are picked here). */
void pf_mmap_mapped(void *addr, size_t len, int prot, int flags, int fd, off64_t off);

/* [addr, addr + len) is about to be unmapped or replaced (munmap, mremap,
 * MAP_FIXED): forget the mappings it overlaps, and return only once no
 * worker is on any of them. */
void pf_mmap_unmapping(void *addr, size_t len);

/* The program gave advice (madvise, posix_madvise) that the kernel accepted. */
void pf_mmap_advised(void *addr, size_t len, int advice);

/* Fork handlers of the mmap path, called by the library's one set
 * (hooks.c) in its order. */
void pf_mmap_atfork_prepare(void);
void pf_mmap_atfork_parent(void);
void pf_mmap_atfork_child(void);

#endif
