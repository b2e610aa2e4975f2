#include "config.h"

#include "fdtable.h"
#include "libc.h"

static struct pf_fd *pf_fd_pages[PF_FD_PAGES];

static inline struct pf_fd *page_of(unsigned fd)
{
	return __atomic_load_n(&pf_fd_pages[fd >> PF_FD_PAGE_SHIFT], __ATOMIC_ACQUIRE);
}

struct pf_fd *pf_fd_find(int fd)
{
	if (fd < 0 || (unsigned)fd >= PF_FD_MAX)
		return NULL;
	struct pf_fd *page = page_of((unsigned)fd);
	return page ? &page[(unsigned)fd & (PF_FD_PAGE_SLOTS - 1)] : NULL;
}

struct pf_fd *pf_fd_get(int fd)
{
	if (fd < 0 || (unsigned)fd >= PF_FD_MAX)
		return NULL;
	unsigned index = (unsigned)fd >> PF_FD_PAGE_SHIFT;
	struct pf_fd *page = page_of((unsigned)fd);
	if (!page) {
		/* Pages, not calloc: this runs on the first read of a descriptor,
		 * which may be in a signal handler that interrupted malloc.
		 * Zero pages cost no memory until a slot on them is written, and
		 * zeroed slots are valid ones (unlocked mutex, state WATCHING). */
		const size_t size = PF_FD_PAGE_SLOTS * sizeof(*page);
		struct pf_fd *fresh = pf_pages_alloc(size);
		if (!fresh)
			return NULL;
		struct pf_fd *expected = NULL;
		if (__atomic_compare_exchange_n(&pf_fd_pages[index], &expected, fresh, 0,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			page = fresh;
		} else {
			pf_pages_free(fresh, size);
			page = expected;
		}
	}
	return &page[(unsigned)fd & (PF_FD_PAGE_SLOTS - 1)];
}

void pf_fd_for_each(unsigned first, unsigned last,
		    void (*fn)(int fd, struct pf_fd *slot, void *arg), void *arg)
{
	if (last >= PF_FD_MAX)
		last = PF_FD_MAX - 1;
	for (unsigned p = first >> PF_FD_PAGE_SHIFT; first <= last && p < PF_FD_PAGES; p++) {
		struct pf_fd *page = __atomic_load_n(&pf_fd_pages[p], __ATOMIC_ACQUIRE);
		if (!page)
			continue;
		unsigned lo = p << PF_FD_PAGE_SHIFT;
		unsigned hi = lo + PF_FD_PAGE_SLOTS - 1;
		if (lo < first)
			lo = first;
		if (hi > last)
			hi = last;
		for (unsigned fd = lo; fd <= hi; fd++)
			fn((int)fd, &page[fd & (PF_FD_PAGE_SLOTS - 1)], arg);
	}
}
