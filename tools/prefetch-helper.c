/* prefetch-helper: the parts of the prefetch wrapper that a shell cannot do
 * cleanly. Installed in $(pkglibexecdir), run by the wrapper only:
 *
 *   prefetch-helper settings           check PREFETCH_* once (the library's
 *                                      own parser), print NAME=VALUE for each
 *                                      variable to export normalized
 *   prefetch-helper explain PATH...    what the library would do with each file
 *   prefetch-helper run PRELOAD CMD... run CMD with LD_PRELOAD=PRELOAD and
 *                                      statistics in a private file, then
 *                                      print a summary; CMD's status
 *   prefetch-helper summary FILE       the summary of a statistics file
 *
 * It links src/settings.c, src/log.c and src/libc.c, not the library: the
 * settings are read and warned about exactly as each process would. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libc.h"
#include "settings.h"
#include "storage.h"

#define ME "prefetch"

/* --- numbers in words ------------------------------------------------------------ */

/* "8 MiB", "1.5 GiB", "300 bytes": one decimal where it says something. */
static const char *human_bytes(unsigned long long n, char *buf, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	if (n < 1024) {
		snprintf(buf, size, "%llu byte%s", n, n == 1 ? "" : "s");
		return buf;
	}
	double v = (double)n;
	int u = -1;
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	if (v == (double)(unsigned long long)v)
		snprintf(buf, size, "%.0f %s", v, units[u]);
	else
		snprintf(buf, size, "%.1f %s", v, units[u]);
	return buf;
}

/* "8M", "256K", "100": the form the variables take. */
static const char *setting_size(unsigned long long n, char *buf, size_t size)
{
	static const char suffix[] = "KMG";
	int u = -1;
	while (n && n % 1024 == 0 && u < 2) {
		n /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, size, "%llu", n);
	else
		snprintf(buf, size, "%llu%c", n, suffix[u]);
	return buf;
}

/* --- settings ------------------------------------------------------------------------ */

enum kind { SIZE, COUNT, FLAG };

struct var {
	const char *name;
	enum kind kind;
	unsigned long long def;
	unsigned long long (*get)(const struct pf_settings *);
};

static unsigned long long get_window(const struct pf_settings *s) { return s->window; }
static unsigned long long get_chunk(const struct pf_settings *s) { return s->chunk; }
static unsigned long long get_threads(const struct pf_settings *s) { return s->threads; }
static unsigned long long get_memory(const struct pf_settings *s) { return s->max_memory; }
static unsigned long long get_minseq(const struct pf_settings *s) { return s->min_sequential; }
static unsigned long long get_skip(const struct pf_settings *s) { return s->skip_cached; }
static unsigned long long get_blockdev(const struct pf_settings *s) { return s->block_devices; }
static unsigned long long get_mmap(const struct pf_settings *s) { return s->mmap; }
static unsigned long long get_disabled(const struct pf_settings *s) { return s->disabled; }
static unsigned long long get_debug(const struct pf_settings *s) { return (unsigned)s->debug; }

static const struct var vars[] = {
	{ "PREFETCH_DEBUG", COUNT, 0, get_debug },
	{ "PREFETCH_DISABLE", FLAG, 0, get_disabled },
	{ "PREFETCH_WINDOW", SIZE, PF_WINDOW_DEFAULT, get_window },
	{ "PREFETCH_CHUNK", SIZE, PF_CHUNK_DEFAULT, get_chunk },
	{ "PREFETCH_THREADS", COUNT, PF_THREADS_DEFAULT, get_threads },
	{ "PREFETCH_MAX_MEMORY", SIZE, PF_MAX_MEMORY_DEFAULT, get_memory },
	{ "PREFETCH_MIN_SEQUENTIAL", COUNT, PF_MIN_SEQUENTIAL_DEFAULT, get_minseq },
	{ "PREFETCH_SKIP_CACHED", FLAG, 1, get_skip },
	{ "PREFETCH_BLOCK_DEVICES", FLAG, 0, get_blockdev },
	{ "PREFETCH_MMAP", FLAG, PF_MMAP_DEFAULT, get_mmap },
};

/* True when TEXT already says VALUE in a form the library takes without a
 * word: the user's spelling ("4M") is kept. */
static bool says(const char *text, enum kind kind, unsigned long long value)
{
	char canon[32];
	unsigned long long parsed;
	snprintf(canon, sizeof(canon), "%llu", value);
	if (strcmp(text, canon) == 0)
		return true;
	return kind == SIZE && pf_parse_size(text, &parsed) == 0 && parsed == value;
}

/* Reads the settings as the library does (its warnings, once, on stderr)
 * and prints NAME=VALUE for each variable whose value the library would
 * not take as written, so that the processes of the command get values
 * they take silently. */
static int cmd_settings(void)
{
	const struct pf_settings *s = pf_settings();
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *text = getenv(vars[i].name);
		unsigned long long value = vars[i].get(s);
		if (text ? !says(text, vars[i].kind, value) : value != vars[i].def)
			printf("%s=%llu\n", vars[i].name, value);
	}
	const char *stats = getenv("PREFETCH_STATS");
	if (stats && s->stats < 2 && strcmp(stats, s->stats ? "1" : "0") != 0)
		printf("PREFETCH_STATS=%d\n", s->stats);
	return fflush(stdout) == 0 ? 0 : 1;
}

static void print_settings(const struct pf_settings *s)
{
	char w[32], c[32], m[32];
	printf("settings: window %s, chunk %s, threads %u, max memory %s, min sequential %u, "
	       "skip cached %d, block devices %d, mmap %d%s\n",
	       setting_size(s->window, w, sizeof(w)), setting_size(s->chunk, c, sizeof(c)),
	       s->threads, setting_size(s->max_memory, m, sizeof(m)), s->min_sequential,
	       s->skip_cached, s->block_devices, s->mmap, s->disabled ? ", disabled" : "");
}

/* --- explain -------------------------------------------------------------------------- */

struct fs_name {
	long magic;
	const char *name;
};

/* statfs(2) f_type names; which are pseudo filesystems is the library's
 * own pf_pseudo_filesystem() (src/storage.c). */
static const struct fs_name fs_names[] = {
	{ 0xEF53, "ext2/ext3/ext4" },
	{ 0x58465342, "xfs" },
	{ 0x9123683E, "btrfs" },
	{ 0x01021994, "tmpfs" },
	{ 0x858458f6, "ramfs" },
	{ 0x794c7630, "overlay" },
	{ 0x65735546, "fuse" },
	{ 0x6969, "nfs" },
	{ 0xFF534D42, "cifs" },
	{ 0xFE534D42, "smb2" },
	{ 0x6B414653, "afs" },
	{ 0x00C36400, "ceph" },
	{ 0x47504653, "gpfs" },
	{ 0x0BD00BD0, "lustre" },
	{ 0x2FC12FC1, "zfs" },
	{ 0x9660, "iso9660" },
	{ 0x4d44, "vfat" },
	{ 0x5346544e, "ntfs" },
	{ 0x73717368, "squashfs" },
	{ 0xF2F52010, "f2fs" },
	{ 0x01021997, "9p" },
	{ 0x9fa0, "proc" },
	{ 0x62656572, "sysfs" },
	{ 0x64626720, "debugfs" },
	{ 0x74726163, "tracefs" },
	{ 0x73636673, "securityfs" },
	{ 0x27e0eb, "cgroup" },
	{ 0x63677270, "cgroup2" },
	{ 0x1cd1, "devpts" },
	{ 0xcafe4a11, "bpf" },
	{ 0x6165676C, "pstore" },
	{ 0xde5e81e4, "efivarfs" },
	{ 0xf97cff8c, "selinuxfs" },
	{ 0x43415d53, "smackfs" },
	{ 0x42494e4d, "binfmt_misc" },
	{ 0x958458f6, "hugetlbfs" },
	{ 0x65735543, "fusectl" },
	{ 0x19800202, "mqueue" },
	{ 0x62656570, "configfs" },
	{ 0x6e736673, "nsfs" },
	{ 0x50495045, "pipefs" },
	{ 0x534f434b, "sockfs" },
};

static const struct fs_name *fs_lookup(long magic)
{
	for (size_t i = 0; i < sizeof(fs_names) / sizeof(fs_names[0]); i++)
		if ((unsigned long)fs_names[i].magic == (unsigned long)magic)
			return &fs_names[i];
	return NULL;
}


/* Pages of the file in the page cache (cachestat(2), Linux 6.5, for the
 * owner, root or a writer), or -1 with errno. Nothing is read. */
static long long cached_pages(int fd)
{
	uint64_t pages;
	if (pf_cachestat(fd, 0, 0, &pages) != 0) /* length 0: to the end */
		return -1;
	return (long long)pages;
}

static const char *file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a pipe";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	return "not a regular file";
}

/* What is in the page cache, in words; sets *all / *none. */
static void describe_cache(const char *path, const struct stat *st, char *buf, size_t size,
			   bool *all, bool *none)
{
	*all = *none = false;
	/* O_NONBLOCK: never wait on the file; opening sends at most an open
	 * request to a network filesystem, no read. */
	int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(buf, size, "unknown (%s)", strerror(errno));
		return;
	}
	long long pages = cached_pages(fd);
	int err = errno;
	close(fd);
	if (pages < 0) {
		snprintf(buf, size, "unknown (cachestat: %s; it needs Linux 6.5 and the file's "
			 "owner or root)", strerror(err));
		return;
	}
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long total = ((unsigned long long)st->st_size + (unsigned long long)page - 1) /
				   (unsigned long long)page;
	unsigned long long cached = (unsigned long long)pages * (unsigned long long)page;
	if (cached > (unsigned long long)st->st_size)
		cached = (unsigned long long)st->st_size;
	char b[32];
	*none = pages == 0;
	*all = total > 0 && (unsigned long long)pages >= total;
	if (*none)
		snprintf(buf, size, "none of it");
	else if (*all)
		snprintf(buf, size, "all of it");
	else
		snprintf(buf, size, "%s (%llu%%)", human_bytes(cached, b, sizeof(b)),
			 (unsigned long long)pages * 100 / (total ? total : 1));
}

static int explain_one(const char *path, const struct pf_settings *s)
{
	struct stat st;
	struct statfs fs;
	if (stat(path, &st) != 0 || statfs(path, &fs) != 0) {
		fprintf(stderr, "%s: %s: %s\n", ME, path, strerror(errno));
		return 1;
	}
	const struct fs_name *fsn = fs_lookup((long)fs.f_type);
	char type[64], magic[32];
	snprintf(magic, sizeof(magic), "0x%lx", (unsigned long)fs.f_type);
	const char *base = fsn ? fsn->name : magic;
	bool pseudo = pf_pseudo_filesystem((long)fs.f_type);
	bool block = major(st.st_dev) != 0;
	if (!pf_mount_type(st.st_dev, type))
		snprintf(type, sizeof(type), "%s", base);
	char fsline[512];
	if (strcmp(type, base) == 0)
		snprintf(fsline, sizeof(fsline), "%s", type);
	else
		snprintf(fsline, sizeof(fsline), "%s (%s)", type, base);

	char why[512], cache[256], b[32], c[32], w[32];
	const char *decision = "passed through";
	bool all = false, none = false;
	bool regular = S_ISREG(st.st_mode);
	if (regular)
		describe_cache(path, &st, cache, sizeof(cache), &all, &none);
	if (!regular) {
		snprintf(why, sizeof(why), "%s: only regular files are prefetched",
			 file_kind(st.st_mode));
	} else if (s->disabled) {
		snprintf(why, sizeof(why), "the library is disabled (PREFETCH_DISABLE=1)");
	} else if (pseudo) {
		snprintf(why, sizeof(why), "%s is a pseudo filesystem: its files are made "
			 "when read, there is nothing to read ahead", base);
	} else if (block && !s->block_devices) {
		snprintf(why, sizeof(why), "on a local block device, where the kernel's readahead "
			 "keeps up (PREFETCH_BLOCK_DEVICES=1 prefetches it anyway)");
	} else if ((unsigned long long)st.st_size < s->chunk) {
		snprintf(why, sizeof(why), "%s is less than one chunk (PREFETCH_CHUNK=%s): one read, "
			 "nothing to overlap", human_bytes((unsigned long long)st.st_size, b, sizeof(b)),
			 setting_size(s->chunk, c, sizeof(c)));
	} else if (all && s->skip_cached) {
		snprintf(why, sizeof(why), "in the page cache: read straight from it, nothing to "
			 "wait for (PREFETCH_SKIP_CACHED=0 prefetches it anyway)");
	} else {
		decision = "prefetched";
		snprintf(why, sizeof(why), "after %u sequential reads (or on a whole-file reader's "
			 "open), %u threads read %s chunks up to %s ahead%s%s",
			 s->min_sequential, s->threads, setting_size(s->chunk, c, sizeof(c)),
			 setting_size(s->window, w, sizeof(w)),
			 none && !block ? "; chunk and window doubled if the first reads leave "
					  "nothing in the page cache (direct_io)" : "",
			 !none && !all && s->skip_cached ? "; the cached parts are read from the page "
							   "cache" : "");
	}
	printf("%s: %s\n", path, decision);
	printf("  filesystem: %s, %s (device %u:%u)\n", fsline,
	       block ? "on a local block device" : "not on a local block device",
	       major(st.st_dev), minor(st.st_dev));
	if (regular)
		printf("  size: %s; in the page cache: %s\n",
		       human_bytes((unsigned long long)st.st_size, b, sizeof(b)), cache);
	printf("  why: %s\n", why);
	if (strcmp(decision, "prefetched") == 0 && s->parallel == PF_PARALLEL_AUTO &&
	    pf_storage_mode(st.st_dev) == PF_STORAGE_CLIENT_READS_AHEAD)
		printf("  mode: passed through once it reads sequentially: the client reads ahead "
		       "of each handle itself, in order (PREFETCH_PARALLEL=0 reads ahead in order)\n");
	else if (strcmp(decision, "prefetched") == 0 && s->parallel == 0)
		printf("  mode: in order, one read at a time (PREFETCH_PARALLEL=0)\n");
	else if (strcmp(decision, "prefetched") == 0)
		printf("  mode: %s\n", s->parallel == 1 ? "in parallel (PREFETCH_PARALLEL=1)"
			: "in parallel, or in order where two reads in flight bring no more "
			  "than one (measured at the first stream)");
	return 0;
}

static int cmd_explain(int argc, char **argv)
{
	const struct pf_settings *s = pf_settings();
	int status = 0;
	for (int i = 0; i < argc; i++)
		status |= explain_one(argv[i], s);
	print_settings(s);
	return fflush(stdout) == 0 ? status : 1;
}

/* --- summary ------------------------------------------------------------------------- */

enum field {
	F_FILES, F_SERVED, F_SYNC, F_FETCHED, F_WASTED, F_WAIT, F_DROPPED, F_CACHED,
	F_ERRORS, F_BLOCKDEV, F_MMAP, F_MMAP_POP, F_MMAP_CACHED, F_MMAP_MAPS_CACHED,
	F_UNCACHED, F_AT_OPEN, F_ORDERED, F_STEPPED, F_COUNT
};

/* The fields of src/stats.c's line that the summary speaks of. Absent ones
 * (an older or newer library) count as 0. */
static const char *const field_names[F_COUNT] = {
	"files_prefetched", "bytes_served", "bytes_sync", "bytes_fetched", "bytes_wasted",
	"wait_us", "streams_dropped", "cached_skips", "errors_forwarded", "block_device_skips",
	"mmap_mappings", "mmap_bytes_populated", "mmap_bytes_cached", "mmap_mappings_cached",
	"streams_uncached", "streams_at_open", "streams_ordered", "streams_stepped_aside",
};

struct totals {
	unsigned long long v[F_COUNT];
	unsigned lines;         /* processes that reported */
	unsigned active;        /* of which did something worth a word */
	char progs[3][64];      /* the first few active programs */
	unsigned nprogs;
	bool more_progs;
};

/* Adds one "libprefetch: pid=N prog=NAME key=value ..." line. */
static void add_line(struct totals *t, char *line)
{
	if (strncmp(line, "libprefetch: pid=", 17) != 0)
		return;
	unsigned long long v[F_COUNT] = { 0 };
	char prog[64] = "";
	bool any = false;
	for (char *save, *tok = strtok_r(line + 13, " \n", &save); tok;
	     tok = strtok_r(NULL, " \n", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq)
			continue;
		*eq = '\0';
		if (strcmp(tok, "prog") == 0) {
			snprintf(prog, sizeof(prog), "%s", eq + 1);
			continue;
		}
		for (int f = 0; f < F_COUNT; f++) {
			if (strcmp(tok, field_names[f]) != 0)
				continue;
			char *end;
			errno = 0;
			unsigned long long n = strtoull(eq + 1, &end, 10);
			if (!errno && end != eq + 1 && *end == '\0' && eq[1] != '-') {
				v[f] = n;
				any |= n != 0;
			}
		}
	}
	t->lines++;
	if (!any)
		return; /* it read nothing worth a word */
	t->active++;
	for (int f = 0; f < F_COUNT; f++)
		t->v[f] += v[f];
	for (unsigned i = 0; i < t->nprogs; i++)
		if (strcmp(t->progs[i], prog) == 0)
			return;
	if (t->nprogs < 3)
		snprintf(t->progs[t->nprogs++], sizeof(t->progs[0]), "%s", prog);
	else
		t->more_progs = true;
}

static void prog_list(const struct totals *t, char *buf, size_t size)
{
	size_t used = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < t->nprogs && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
					 t->progs[i]);
	if (t->more_progs && used < size)
		snprintf(buf + used, size - used, ", ...");
}

static const char *plural(unsigned long long n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* The summary: what was read ahead and used, the wait, then one line per
 * reason something was not prefetched, with the setting that changes it. */
static void print_summary(const struct totals *t, FILE *out)
{
	const unsigned long long *v = t->v;
	const struct pf_settings *s = pf_settings();
	char a[32], b[32], c[32], progs[256];
	prog_list(t, progs, sizeof(progs));
	if (t->lines == 0) {
		fprintf(out, "%s: nothing was read ahead: no process reported (killed by a signal, "
			"ended by _exit, static or set-user-ID)\n", ME);
		return;
	}
	if (s->disabled) {
		fprintf(out, "%s: the library was disabled (--disable): nothing was prefetched\n", ME);
		return;
	}
	if (v[F_FILES] || v[F_MMAP]) {
		char what[256] = "", used[256] = "";
		/* files_prefetched counts streams: a file read again after a
		 * seek is a second one. */
		if (v[F_FILES])
			snprintf(what, sizeof(what), "%llu %s",
				 v[F_FILES], plural(v[F_FILES], "stream", "streams"));
		if (v[F_MMAP])
			snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%llu %s",
				 v[F_FILES] ? ", " : "", v[F_MMAP],
				 plural(v[F_MMAP], "mapping", "mappings"));
		if (v[F_FETCHED])
			snprintf(used, sizeof(used), "; %s of it used (%llu%%), %s%s",
				 human_bytes(v[F_SERVED], c, sizeof(c)),
				 v[F_SERVED] >= v[F_FETCHED] ? 100 : v[F_SERVED] * 100 / v[F_FETCHED],
				 v[F_WASTED] ? human_bytes(v[F_WASTED], b, sizeof(b)) : "nothing",
				 " wasted");
		char wait[32];
		if (v[F_WAIT] < 1000000)
			snprintf(wait, sizeof(wait), "%llu ms", (v[F_WAIT] + 500) / 1000);
		else
			snprintf(wait, sizeof(wait), "%.1f s", (double)v[F_WAIT] / 1e6);
		fprintf(out, "%s: read ahead %s for %s (%s)%s; still waited %s for data\n", ME,
			human_bytes(v[F_FETCHED] + v[F_MMAP_POP], a, sizeof(a)), progs, what, used,
			wait);
	} else {
		fprintf(out, "%s: nothing was read ahead%s%s%s\n", ME, t->nprogs ? " (" : "", progs,
			t->nprogs ? ")" : "");
	}
	bool reason = false;
	if (v[F_AT_OPEN])
		fprintf(out, "  %llu %s prefetched from the open: the program reads whole files\n",
			v[F_AT_OPEN], plural(v[F_AT_OPEN], "file", "files"));
	if (v[F_BLOCKDEV]) {
		fprintf(out, "  %llu %s on a local disk, left to the kernel's readahead "
			"(--block-devices=1 or PREFETCH_BLOCK_DEVICES=1 to prefetch)\n", v[F_BLOCKDEV],
			plural(v[F_BLOCKDEV], "file", "files"));
		reason = true;
	}
	if (v[F_CACHED] || v[F_MMAP_MAPS_CACHED]) {
		fprintf(out, "  data already in the page cache, read straight from it (%llu %s; "
			"--skip-cached=0 or PREFETCH_SKIP_CACHED=0 to prefetch anyway)\n",
			v[F_CACHED] + v[F_MMAP_MAPS_CACHED],
			plural(v[F_CACHED] + v[F_MMAP_MAPS_CACHED], "time", "times"));
		reason = true;
	}
	if (v[F_DROPPED]) {
		fprintf(out, "  %llu %s stopped by random access (a read outside the window; "
			"--window=SIZE widens it)\n", v[F_DROPPED],
			plural(v[F_DROPPED], "stream", "streams"));
		reason = true;
	}
	if (v[F_ORDERED])
		fprintf(out, "  %llu %s read in order: the storage is slow with out-of-order reads\n",
			v[F_ORDERED], plural(v[F_ORDERED], "stream", "streams"));
	if (v[F_STEPPED]) {
		fprintf(out, "  %llu %s stepped aside: prefetching did not pay there (the "
			"client reads ahead, and the program did little between reads)\n",
			v[F_STEPPED], plural(v[F_STEPPED], "stream", "streams"));
		reason = true;
	}
	if (v[F_ERRORS])
		fprintf(out, "  %llu read %s passed on to the program\n", v[F_ERRORS],
			plural(v[F_ERRORS], "error", "errors"));
	if (!v[F_FILES] && !v[F_MMAP] && !reason)
		fprintf(out, "  no file was read sequentially for long enough (%u reads in a row, "
			"more than a chunk of %s: --min-sequential, --chunk)\n", s->min_sequential,
			setting_size(s->chunk, a, sizeof(a)));
}

static int summarize(const char *path, FILE *out)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", ME, path, strerror(errno));
		return 1;
	}
	struct totals t;
	memset(&t, 0, sizeof(t));
	char *line = NULL;
	size_t size = 0;
	while (getline(&line, &size, f) > 0)
		add_line(&t, line);
	free(line);
	fclose(f);
	print_summary(&t, out);
	fflush(out);
	return 0;
}

/* --- run ------------------------------------------------------------------------------- */

static volatile sig_atomic_t child_pid;

/* Signals sent to the wrapper by a process (kill, timeout) reach the
 * command; those the kernel sends to the whole foreground process group
 * (the terminal's ^C, ^\, hang-up) reached it already. */
static void forward(int sig, siginfo_t *info, void *uctx)
{
	(void)uctx;
	if (child_pid > 0 && info->si_code != SI_KERNEL)
		kill(child_pid, sig);
}

static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM,
				 SIGCONT };

/* Dies of SIG as the command did, without a core of its own. */
static void die_of(int sig)
{
	struct rlimit none = { 0, 0 };
	setrlimit(RLIMIT_CORE, &none);
	signal(sig, SIG_DFL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	_exit(128 + sig); /* a signal whose default is to be ignored */
}

static int cmd_run(const char *preload, char **argv)
{
	const char *tmpdir = getenv("TMPDIR");
	char path[PATH_MAX];
	if (!tmpdir || !*tmpdir || strlen(tmpdir) > PATH_MAX - 32)
		tmpdir = "/tmp";
	snprintf(path, sizeof(path), "%s/prefetch-stats.XXXXXX", tmpdir);
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: no summary: cannot create a file in %s: %s\n", ME, tmpdir,
			strerror(errno));
	} else {
		close(fd);
		setenv("PREFETCH_STATS", path, 1);
	}
	setenv("LD_PRELOAD", preload, 1);

	/* The old actions, restored in the child: what the wrapper's caller
	 * ignored stays ignored. */
	struct sigaction old[sizeof(forwarded) / sizeof(forwarded[0])];
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	sigset_t all, saved;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &saved);
	/* A caller that ignored SIGCHLD would have the child reaped unseen. */
	struct sigaction old_chld, dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &dfl, &old_chld);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
		sigaction(forwarded[i], NULL, &old[i]);
		if (old[i].sa_handler != SIG_IGN)
			sigaction(forwarded[i], &sa, NULL);
	}
	pid_t pid = fork();
	if (pid == 0) {
		for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
			sigaction(forwarded[i], &old[i], NULL);
		sigaction(SIGCHLD, &old_chld, NULL);
		sigprocmask(SIG_SETMASK, &saved, NULL);
		execvp(argv[0], argv);
		int err = errno;
		fprintf(stderr, "%s: %s: %s\n", ME, argv[0], strerror(err));
		_exit(err == ENOENT ? 127 : 126);
	}
	if (pid < 0) {
		/* No child: run the command in place, without a summary. */
		fprintf(stderr, "%s: no summary: fork: %s\n", ME, strerror(errno));
		if (fd >= 0)
			unlink(path);
		unsetenv("PREFETCH_STATS");
		for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
			sigaction(forwarded[i], &old[i], NULL);
		sigaction(SIGCHLD, &old_chld, NULL);
		sigprocmask(SIG_SETMASK, &saved, NULL);
		execvp(argv[0], argv);
		fprintf(stderr, "%s: %s: %s\n", ME, argv[0], strerror(errno));
		return errno == ENOENT ? 127 : 126;
	}
	child_pid = pid;
	sigprocmask(SIG_SETMASK, &saved, NULL);

	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	child_pid = 0;
	/* A reader of our stderr that went away must not change our status. */
	signal(SIGPIPE, SIG_IGN);
	if (fd >= 0) {
		summarize(path, stderr);
		unlink(path);
	}
	if (WIFSIGNALED(status))
		die_of(WTERMSIG(status));
	return WEXITSTATUS(status);
}

/* --------------------------------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr, "usage: prefetch-helper settings | explain PATH... | "
		"run PRELOAD CMD [ARG...] | summary FILE\n"
		"(run by prefetch(1); not meant to be run by hand)\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "settings") == 0 && argc == 2)
		return cmd_settings();
	/* The library's mount-table reader calls the C library through its
	 * table of real functions. */
	if (strcmp(argv[1], "explain") == 0 && argc >= 3 && pf_libc_bind() == 0)
		return cmd_explain(argc - 2, argv + 2);
	if (strcmp(argv[1], "run") == 0 && argc >= 4)
		return cmd_run(argv[2], argv + 3);
	if (strcmp(argv[1], "summary") == 0 && argc == 3)
		return summarize(argv[2], stdout);
	return usage();
}
