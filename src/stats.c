#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"
#include "settings.h"
#include "stats.h"

struct pf_stats pf_stats;

/* The report goes to the stderr of the start, without holding a copy of
 * it: a descriptor of ours would move the program's own numbers (log.c). */
void pf_stats_init(void)
{
	if (pf_settings()->stats)
		pf_log_keep_stderr();
}

uint64_t pf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void pf_stats_reset(void)
{
	memset(&pf_stats, 0, sizeof(pf_stats));
}

#define LOAD(field) ((unsigned long long)__atomic_load_n(&pf_stats.field, __ATOMIC_RELAXED))

#define PF_STATS_FORMAT(field, name, div) " " name "=%llu"
#define PF_STATS_VALUE(field, name, div) , LOAD(field) / (div)

static int format_report(char *line, size_t size)
{
	return snprintf(line, size,
			"libprefetch: pid=%d prog=%s" PF_STATS_REPORTED(PF_STATS_FORMAT) "\n",
			(int)getpid(), program_invocation_short_name
				PF_STATS_REPORTED(PF_STATS_VALUE));
}

/* What a path that is not a regular file is, for the user's message. */
static const char *file_kind(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return "";
	switch (st.st_mode & S_IFMT) {
	case S_IFREG: return "";
	case S_IFDIR: return " (a directory)";
	case S_IFLNK: return " (a symbolic link: not followed)";
	case S_IFIFO: return " (a FIFO)";
	case S_IFCHR: return " (a character device)";
	case S_IFBLK: return " (a block device)";
	case S_IFSOCK: return " (a socket)";
	default: return " (not a regular file)";
	}
}

/* Appends the line to the PREFETCH_STATS file; says once on stderr why not
 * when it cannot. */
static void report_to_file(const char *path, const char *line, size_t len)
{
	/* O_NOFOLLOW: a link planted at the path is not followed.
	 * O_NONBLOCK and the S_ISREG test: a FIFO planted there must not hang
	 * the program at exit, nor a device get the line. */
	int fd = pf_libc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
			      0666);
	if (fd < 0) {
		int err = errno;
		pf_log_always("statistics not written: cannot open %s: %s%s", path, strerror(err),
			      err == EISDIR ? "" : file_kind(path));
		return;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		pf_log_always("statistics not written: %s is not a regular file%s", path,
			      file_kind(path));
	} else {
		ssize_t n = write(fd, line, len);
		if (n != (ssize_t)len)
			pf_log_always("statistics not written to %s: %s", path,
				      n < 0 ? strerror(errno) : "short write");
	}
	pf_libc.close(fd);
}

void pf_stats_report(void)
{
	const struct pf_settings *s = pf_settings();
	if (!s->stats || pf_libc_bind() != 0)
		return;
	/* Room for every counter at its widest (20 digits). */
	char line[2048];
	int len = format_report(line, sizeof(line));
	if (len <= 0)
		return;
	if ((size_t)len >= sizeof(line))
		len = (int)sizeof(line) - 1;
	int saved = errno;
	if (s->stats == 1)
		(void)pf_log_to_stderr(line, (size_t)len);
	else
		report_to_file(s->stats_path, line, (size_t)len);
	pf_log_stderr_done();
	errno = saved;
}
