/* Guessing the next files (see predict.h): the sources' orders, the file
 * operands of the command line, and the entry points; the directory
 * listings are predict_listing.c's. Everything here runs under
 * pf_pred_lock, taken before fileahead.c's own lock. */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fileahead.h"
#include "predict.h"
#include "predict_source.h"
#include "settings.h"

/* Opens out of a source's order in a row before it is given up. */
#define PF_SOURCE_MISSES 3u
/* Operands compared with an open: those just after the last one matched. */
#define PF_ARGV_SCAN 64u
#define PF_ARGV_MAX 65536u

pthread_mutex_t pf_pred_lock = PTHREAD_MUTEX_INITIALIZER;

/* The file operands of the command line (argv[1..] but options). */
static struct {
	char **op;
	unsigned n;
	struct order order;
} args = { NULL, 0, { -1, 0, false } };

/* --- sources -------------------------------------------------------------------------- */

bool pf_order_step(struct order *o, int i)
{
	if (o->off)
		return false;
	if (i == o->last)
		return false; /* the same file again: predicted already */
	bool in_order = o->last < 0 || i == o->last + 1;
	o->misses = in_order ? 0 : o->misses + 1;
	o->last = i;
	if (o->misses >= PF_SOURCE_MISSES)
		__atomic_store_n(&o->off, true, __ATOMIC_RELAXED);
	return in_order;
}

/* dir/name into buf; false when too long. */
bool pf_path_join(char *buf, size_t size, const char *dir, size_t dirlen, const char *name)
{
	size_t nlen = strlen(name);
	if (dirlen + 1 + nlen + 1 > size)
		return false;
	memcpy(buf, dir, dirlen);
	buf[dirlen] = '/';
	memcpy(buf + dirlen + 1, name, nlen + 1);
	return true;
}

/* --- command-line operands ---------------------------------------------------------------- */

static bool is_operand(const char *arg)
{
	return arg[0] != '\0' && arg[0] != '-';
}

/* glibc calls the constructors of a preloaded library with argc, argv and
 * envp. The operands are copied now, before a program rewrites its argv
 * (setproctitle); fewer than two cannot predict anything. */
static void argv_keep(int argc, char **argv)
{
	size_t bytes = 0;
	unsigned n = 0;
	for (int i = 1; i < argc && n < PF_ARGV_MAX; i++) {
		if (is_operand(argv[i])) {
			bytes += strlen(argv[i]) + 1;
			n++;
		}
	}
	if (n < 2)
		return;
	char **op = malloc(n * sizeof(*op) + bytes);
	if (!op)
		return;
	char *p = (char *)(op + n);
	unsigned k = 0;
	for (int i = 1; i < argc && k < n; i++) {
		if (is_operand(argv[i])) {
			size_t len = strlen(argv[i]) + 1;
			memcpy(p, argv[i], len);
			op[k++] = p;
			p += len;
		}
	}
	args.op = op;
	args.n = n;
}

static int argv_find(const char *path)
{
	unsigned from = (unsigned)(args.order.last + 1);
	for (unsigned i = from; i < args.n && i < from + PF_ARGV_SCAN; i++)
		if (strcmp(args.op[i], path) == 0)
			return (int)i;
	/* Behind the last match: looked for only in short lists. */
	for (unsigned i = 0; i < from && args.n <= 4 * PF_ARGV_SCAN; i++)
		if (strcmp(args.op[i], path) == 0)
			return (int)i;
	return -1;
}

static void argv_opened(int dirfd, const char *path)
{
	/* An operand names a file relative to the working directory. */
	if (path[0] != '/' && dirfd != AT_FDCWD)
		return;
	int i = argv_find(path);
	if (i < 0)
		return;
	bool in_order = pf_order_step(&args.order, i);
	if (args.order.off) {
		pf_ahead_passed(PF_ARGV_SOURCE, UINT_MAX);
		return;
	}
	pf_ahead_passed(PF_ARGV_SOURCE, (unsigned)i);
	if (!in_order)
		return; /* a guess missed: predict again once the order is followed */
	char cwd[PATH_MAX], path_buf[PATH_MAX];
	bool have_cwd = false;
	for (unsigned j = (unsigned)i + 1; j < args.n && j <= (unsigned)i + PF_FILES_AHEAD; j++) {
		const char *p = args.op[j];
		if (p[0] != '/') {
			/* Resolved now: the program may change directory later. */
			if (!have_cwd && !getcwd(cwd, sizeof(cwd)))
				return;
			have_cwd = true;
			if (!pf_path_join(path_buf, sizeof(path_buf), cwd, strlen(cwd), p))
				continue;
			p = path_buf;
		}
		if (!pf_ahead_want(PF_ARGV_SOURCE, j, p))
			return;
	}
}

/* --- entry points ---------------------------------------------------------------------- */

bool pf_predict_any(void)
{
	return (args.n && !__atomic_load_n(&args.order.off, __ATOMIC_RELAXED)) ||
	       pf_listings_live();
}

void pf_predict_opened(int fd, int dirfd, const char *path, const struct stat *st)
{
	/* Local disks: the kernel's readahead keeps up (as for the engine). */
	if (major(st->st_dev) != 0 && !pf_settings()->block_devices)
		return;
	if (!pf_ahead_usable())
		return;
	pthread_mutex_lock(&pf_pred_lock);
	if (args.n && !args.order.off)
		argv_opened(dirfd, path);
	if (pf_listings_live())
		pf_listing_opened(fd);
	pthread_mutex_unlock(&pf_pred_lock);
}

/* --- fork and start ------------------------------------------------------------------------ */

void pf_predict_atfork_prepare(void)
{
	pthread_mutex_lock(&pf_pred_lock);
	pf_ahead_atfork_prepare();
}

void pf_predict_atfork_parent(void)
{
	pf_ahead_atfork_parent();
	pthread_mutex_unlock(&pf_pred_lock);
}

/* The child keeps what the process read and ran (it often goes on with
 * the same walk); what was fetched is dropped. */
void pf_predict_atfork_child(void)
{
	pf_ahead_atfork_child();
	pthread_mutex_unlock(&pf_pred_lock); /* locked in prepare, by this thread */
}

__attribute__((constructor)) static void pf_predict_init(int argc, char **argv, char **envp)
{
	(void)envp;
	if (argv)
		argv_keep(argc, argv);
}
