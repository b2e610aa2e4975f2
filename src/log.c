#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"

int pf_log_level; /* set once by settings.c from PREFETCH_DEBUG */

/* Appends the message to a prefix already in line[0..used) and writes the
 * whole line at once: no stdio stream (the host's stderr buffering is not
 * ours to disturb) and no allocation. */
static void finish_line(char *line, size_t size, int used, const char *fmt, va_list ap)
{
	int saved = errno;
	size_t len = (used > 0 && (size_t)used < size) ? (size_t)used : 0;
	int m = vsnprintf(line + len, size - len, fmt, ap);
	if (m > 0)
		len += (size_t)m;
	if (len > size - 2)
		len = size - 2;
	line[len++] = '\n';
	(void)!write(STDERR_FILENO, line, len);
	errno = saved;
}

void pf_log_write(enum pf_log_level level, const char *func, const char *fmt, ...)
{
	static const char *const names[] = { "", "warning", "info", "trace" };
	char line[512];
	int used = snprintf(line, sizeof(line), "libprefetch[%d] %s: %s: ", (int)getpid(),
			    names[level <= PF_LOG_TRACE ? level : PF_LOG_TRACE], func);
	va_list ap;
	va_start(ap, fmt);
	finish_line(line, sizeof(line), used, fmt, ap);
	va_end(ap);
}

void pf_log_always(const char *fmt, ...)
{
	char line[512];
	int used = snprintf(line, sizeof(line), "libprefetch: ");
	va_list ap;
	va_start(ap, fmt);
	finish_line(line, sizeof(line), used, fmt, ap);
	va_end(ap);
}
