/* Logging: one format-checked macro, levels read once from PREFETCH_DEBUG.
 * Messages go to stderr with the pid and the function; nothing is written
 * unless PREFETCH_DEBUG asks for it (configuration warnings excepted). */
#ifndef PF_LOG_H
#define PF_LOG_H

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

extern int pf_log_level;

#define PF_LOG(level, ...)                                             \
	do {                                                           \
		if (__builtin_expect(pf_log_level >= (level), 0))      \
			pf_log_write((level), __func__, __VA_ARGS__);  \
	} while (0)

#endif
