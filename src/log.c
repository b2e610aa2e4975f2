#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"

/* Every descriptor table has at least this many slots (the kernel's
 * NR_OPEN_DEFAULT on 64-bit). */
#define PF_FD_TABLE_MIN 64

int pf_log_level; /* set once by settings.c from PREFETCH_DEBUG */

/* The file stderr was when the library started (pf_log_keep_stderr): the
 * statistics line at exit goes to that file only, never to whatever the
 * program opened as descriptor 2 after closing its stderr. path is where it
 * can be opened again (a terminal, a regular file), or empty (a pipe). */
static struct {
	bool known;
	dev_t dev;
	ino_t ino;
	dev_t rdev;
	mode_t type;
	char path[PATH_MAX];
} first_stderr;
static pthread_once_t keep_once = PTHREAD_ONCE_INIT;

static bool is_first_stderr(const struct stat *st)
{
	return st->st_dev == first_stderr.dev && st->st_ino == first_stderr.ino &&
	       st->st_rdev == first_stderr.rdev && (st->st_mode & S_IFMT) == first_stderr.type;
}

static void keep_stderr(void)
{
	struct stat st;
	if (fstat(STDERR_FILENO, &st) != 0)
		return;
	first_stderr.dev = st.st_dev;
	first_stderr.ino = st.st_ino;
	first_stderr.rdev = st.st_rdev;
	first_stderr.type = st.st_mode & S_IFMT;
	first_stderr.known = true;
	/* Only what can be opened again as the same file: not pipes, sockets. */
	if (!S_ISCHR(st.st_mode) && !S_ISREG(st.st_mode))
		return;
	ssize_t n = readlink("/proc/self/fd/2", first_stderr.path, sizeof(first_stderr.path) - 1);
	if (n <= 0 || first_stderr.path[0] != '/')
		n = 0;
	first_stderr.path[n] = '\0';
}

/* A copy of the first stderr, taken only once exit() has begun: exit
 * handlers registered before ours (coreutils' close_stdout) close stderr
 * before the destructor that writes the report, and a pipe cannot be opened
 * again. Till then, no descriptor of ours in the program's table. */
static int exit_fd = -1;

/* The last slot of the descriptor table as it is now (FDSize in
 * /proc/self/status). A process whose threads share the table waits for an
 * RCU grace period when it grows (expand_fdtable): a copy of stderr at 512
 * cost 10-20 ms at every exit with PREFETCH_STATS set, the workers alive. */
static int table_top(void)
{
	char buf[1024]; /* FDSize comes in the first few lines */
	if (pf_read_small("/proc/self/status", buf, sizeof(buf)) <= 0)
		return PF_FD_TABLE_MIN - 1;
	const char *p = strstr(buf, "\nFDSize:");
	if (!p)
		return PF_FD_TABLE_MIN - 1;
	char *end;
	errno = 0;
	unsigned long n = strtoul(p + 8, &end, 10);
	if (errno || end == p + 8 || n < PF_FD_TABLE_MIN || n > INT_MAX)
		return PF_FD_TABLE_MIN - 1;
	return (int)n - 1;
}

static void hold_stderr_at_exit(void)
{
	struct stat st;
	if (exit_fd >= 0 || fstat(STDERR_FILENO, &st) != 0 || !is_first_stderr(&st) ||
	    pf_libc_bind() != 0)
		return;
	/* High, should an exit handler still open files; within the table. */
	struct rlimit rl;
	int low = table_top();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur <= (rlim_t)low)
		low = (int)(rl.rlim_cur / 2);
	exit_fd = pf_libc.fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, low);
}

static void keep_once_fn(void)
{
	keep_stderr();
	/* Runs before the exit handlers the program registered earlier (in
	 * main, before its first open: this runs at the library's first use). */
	if (first_stderr.known)
		(void)atexit(hold_stderr_at_exit);
}

void pf_log_keep_stderr(void)
{
	pthread_once(&keep_once, keep_once_fn);
}

void pf_log_stderr_done(void)
{
	if (exit_fd >= 0 && pf_libc_bind() == 0) {
		pf_libc.close(exit_fd);
		exit_fd = -1;
	}
}

/* Opens the first stderr again by its path, when nothing else took that path
 * since: the program closed its stderr (coreutils do before exit). */
static int reopen_first_stderr(void)
{
	struct stat st;
	if (!first_stderr.path[0] || stat(first_stderr.path, &st) != 0 || !is_first_stderr(&st) ||
	    pf_libc_bind() != 0)
		return -1;
	int fd = pf_libc.open(first_stderr.path,
			      O_WRONLY | O_APPEND | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0 && (fstat(fd, &st) != 0 || !is_first_stderr(&st))) {
		pf_libc.close(fd);
		fd = -1;
	}
	return fd;
}

int pf_log_to_stderr(const char *buf, size_t len)
{
	int saved = errno;
	struct stat st;
	int fd = STDERR_FILENO;
	bool opened = false;
	if (first_stderr.known && (fstat(fd, &st) != 0 || !is_first_stderr(&st))) {
		fd = exit_fd;
		if (fd < 0 || fstat(fd, &st) != 0 || !is_first_stderr(&st)) {
			fd = reopen_first_stderr();
			opened = fd >= 0;
		}
	}
	ssize_t n = fd >= 0 ? write(fd, buf, len) : -1;
	if (opened)
		pf_libc.close(fd);
	errno = saved;
	return n == (ssize_t)len ? 0 : -1;
}

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
	(void)pf_log_to_stderr(line, len);
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
