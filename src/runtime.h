/* How a call enters the library: the gate every hook goes through first,
 * and the guard the library's own code runs under. */
#ifndef PF_RUNTIME_H
#define PF_RUNTIME_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include "engine.h"
#include "libc.h"

#define PF_EXPORT __attribute__((visibility("default")))

/* The library's first use reads its settings, which may leave errno
 * changed: the program must not see that (readdir's end is NULL with errno
 * unchanged). */
static inline bool pf_gate_passes(bool passes)
{
	if (passes)
		return true;
	int saved = errno;
	bool active = pf_active();
	errno = saved;
	return !active;
}

/* A hook's first statement. While dlsym runs on this thread (pf_libc_bind),
 * it returns boot; where the library stays out (passes, then disabled or
 * already running on this thread: pf_active), it returns real, the call of
 * the real function. passes is tested first: an anonymous mmap must not be
 * what starts the library. */
#define PF_GATE(passes, boot, real)              \
	do {                                     \
		if (pf_libc_bind() != 0)         \
			return boot;             \
		if (pf_gate_passes(passes))      \
			return real;             \
	} while (0)

/* boot of the hooks that have no fallback while dlsym runs on this thread. */
#define PF_BOOT_FAIL(value) (errno = ENOSYS, (value))

/* The program's call returned fd for path (relative to dirfd), opened with
 * flags: tells the engine, and the files fetched ahead (hooks.c). */
int pf_hook_opened(int fd, int dirfd, const char *path, int flags);

/* What pf_enter found, for pf_leave. */
struct pf_entry {
	int program_errno; /* restored by pf_leave; a caller may set it */
	bool outer;        /* the thread was not in the library before */
};

/* Enters the library's own code on this thread: the calls it makes pass
 * straight through the hooks, and it cannot be cancelled (pthread_cancel)
 * there: a thread cancelled in a condition wait or a read of the library's
 * would leave a lock taken or a chunk in flight, and the program's next
 * call on that descriptor, from any thread, would hang. pf_in_library is
 * set first: a signal handler's call in between passes straight through,
 * and does not record the state in its turn. */
static inline struct pf_entry pf_enter(void)
{
	struct pf_entry e = { errno, !pf_in_library };
	if (e.outer) {
		pf_in_library = 1;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &pf_program_cancel);
	}
	return e;
}

static inline void pf_leave(struct pf_entry e)
{
	if (e.outer) {
		pthread_setcancelstate(pf_program_cancel, NULL);
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		pf_in_library = 0;
	}
	errno = e.program_errno;
}

/* Around a call of the program's own that the library makes with none of
 * its locks held (a read it passes through): a cancellation point again,
 * as it is without the library. */
static inline void pf_cancel_allow(void)
{
	pthread_setcancelstate(pf_program_cancel, NULL);
}

static inline void pf_cancel_forbid(void)
{
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
}

#endif
