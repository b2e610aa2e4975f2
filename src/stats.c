#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"
#include "settings.h"
#include "stats.h"

struct pf_stats pf_stats;

/* Where PREFETCH_STATS=1 reports: a copy of stderr taken early, since many
 * programs (coreutils' close_stdout) close stderr before the library's
 * destructor runs. Placed high, so the program's own descriptor numbers do
 * not shift. */
static int report_fd = -1;

void pf_stats_init(void)
{
	if (pf_settings()->stats != 1 || report_fd >= 0)
		return;
	struct rlimit rl;
	int low = 512;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur <= (rlim_t)low * 2)
		low = (int)(rl.rlim_cur / 2);
	report_fd = pf_libc.fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, low);
}

uint64_t pf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int pf_memory_reserve(uint64_t bytes, uint64_t cap)
{
	uint64_t now = __atomic_load_n(&pf_stats.memory, __ATOMIC_RELAXED);
	do {
		if (now + bytes > cap)
			return -1;
	} while (!__atomic_compare_exchange_n(&pf_stats.memory, &now, now + bytes, 1,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	uint64_t peak = __atomic_load_n(&pf_stats.peak_memory, __ATOMIC_RELAXED);
	while (now + bytes > peak &&
	       !__atomic_compare_exchange_n(&pf_stats.peak_memory, &peak, now + bytes, 1,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return 0;
}

void pf_memory_release(uint64_t bytes)
{
	__atomic_sub_fetch(&pf_stats.memory, bytes, __ATOMIC_RELAXED);
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

void pf_stats_report(void)
{
	const struct pf_settings *s = pf_settings();
	if (!s->stats || pf_libc_bind() != 0)
		return;
	char line[1024];
	int len = format_report(line, sizeof(line));
	if (len <= 0)
		return;
	if ((size_t)len >= sizeof(line))
		len = (int)sizeof(line) - 1;
	int saved = errno;
	if (s->stats == 1) {
		(void)!write(report_fd >= 0 ? report_fd : STDERR_FILENO, line, (size_t)len);
	} else {
		/* O_NOFOLLOW: a link planted at the path is not followed.
		 * O_NONBLOCK and the S_ISREG test: a FIFO planted there must
		 * not hang the program at exit, nor a device get the line. */
		int fd = pf_libc.open(s->stats_path,
				      O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
					      O_CLOEXEC,
				      0666);
		struct stat st;
		if (fd < 0) {
			PF_LOG(PF_LOG_WARN, "cannot open %s: %s", s->stats_path, strerror(errno));
		} else {
			if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
				(void)!write(fd, line, (size_t)len);
			else
				PF_LOG(PF_LOG_WARN, "%s is not a regular file: no statistics written",
				       s->stats_path);
			pf_libc.close(fd);
		}
	}
	errno = saved;
}
