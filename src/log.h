/* Logging: one format-checked macro, levels read once from PREFETCH_DEBUG.
 * Messages go to stderr with the pid and the function; nothing is written
 * unless PREFETCH_DEBUG asks for it (configuration warnings excepted). */
#ifndef PF_LOG_H
#define PF_LOG_H

#include <stddef.h>

enum pf_log_level {
	PF_LOG_NONE = 0,
	PF_LOG_WARN = 1,   /* fallbacks to pass-through, internal failures */
	PF_LOG_INFO = 2,   /* streams engaged and dropped */
	PF_LOG_TRACE = 3,  /* every decision on the read path */
};

void pf_log_write(enum pf_log_level level, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Unconditional one-line "libprefetch: " message on stderr (bad settings). */
void pf_log_always(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Remembers which file stderr is now (once; PREFETCH_STATS). From then on
 * messages and the statistics line go to that file only: to descriptor 2
 * while it is still that file, else to the file opened again by its path (a
 * terminal or a regular file: a program may close its stderr before exit),
 * else nowhere, so that a file the program opened as descriptor 2 never gets
 * them. No descriptor is held before exit() begins. */
void pf_log_keep_stderr(void);

/* Writes buf to that stderr (see above); 0 when all of it was written. */
int pf_log_to_stderr(const char *buf, size_t len);

/* Closes what pf_log_keep_stderr took at exit (after the last message). */
void pf_log_stderr_done(void);

extern int pf_log_level;

#define PF_LOG(level, ...)                                             \
	do {                                                           \
		if (__builtin_expect(pf_log_level >= (level), 0))      \
			pf_log_write((level), __func__, __VA_ARGS__);  \
	} while (0)

#endif
