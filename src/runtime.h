/* How a call enters the library: the gate every hook goes through first,
 * and the guard the library's own code runs under. */
#ifndef PF_RUNTIME_H
#define PF_RUNTIME_H

#include <errno.h>
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

/* Enters the library's own code on this thread: the calls it makes pass
 * straight through the hooks. Returns the program's errno, for pf_leave. */
static inline int pf_enter(void)
{
	int saved = errno;
	pf_in_library = 1;
	return saved;
}

static inline void pf_leave(int program_errno)
{
	pf_in_library = 0;
	errno = program_errno;
}

#endif
