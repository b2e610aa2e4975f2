/* difftest: a differential tester of the shim.
 *
 *   difftest --dir=D --seed=S [--ops=N] [--only=LIST]
 *       Creates a few files in D (sizes and content chosen by the seed),
 *       generates N pseudo-random operations from the seed and runs them,
 *       printing one line per operation or step: every return value, errno
 *       on failure, a hash of the bytes read (hash_block), and the offset
 *       (lseek(fd, 0, SEEK_CUR) for descriptors, ftello for streams) after
 *       it. LIST ("3,7,10-12") runs only those operations; the others are
 *       still generated, so an operation is the same in every subset.
 *   difftest --describe --seed=S [--ops=N] [--only=LIST]
 *       Prints the operations without running them.
 *   difftest --run-diff --lib=PATH --dir=D --seed=S [--ops=N] [--only=LIST]
 *            [--disabled] [--rewrite] [--chunk=N] [--window=N] [--threads=N]
 *            [--min-seq=N] [--tries=N] [--timeout=SECONDS]
 *       Runs the sequence without the library and with it (PREFETCH_*
 *       settings chosen by the seed unless given; --disabled instead loads it
 *       with PREFETCH_DISABLE=1) and compares the outputs. On a difference:
 *       prints the first differing line, minimises the sequence (shortest
 *       failing prefix, then delta debugging) and prints the command that
 *       reproduces it. Exit status 0 same, 1 different, 2 tester error.
 *       --rewrite (in every mode) also rewrites and truncates files in place
 *       while they are read: opt-in, see rewrite_mode.
 *
 * Nothing printed depends on the library: no descriptor numbers (handles are
 * named H0..H3 for descriptors, S0..S1 for streams), pointers, pids or times.
 * The output is therefore identical with and without the shim, unless the
 * shim changes what the program observes. Test code, not part of the
 * library. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define NRAW 4              /* descriptor handles H0..H3 */
#define NSTREAM 2           /* stream handles S0..S1 */
#define MAXFILES 5
#define BUFSZ (10u << 20)   /* the largest request (a read of up to 9 MiB) fits */
#define IOV_GAP 64          /* untouched bytes between readv elements */
#define FILL 0xa5           /* what a buffer holds before a read */
#define DUP2_BASE 100       /* dup2 targets: fixed numbers, the same in every run */
#define VBUF_MAX (256u << 10)

/* --- pseudo-random numbers: splitmix64 ------------------------------------------- */

struct rng {
	uint64_t s;
};

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rng_next(struct rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return mix64(r->s);
}

/* Uniform in [0, n) (n > 0; the bias is irrelevant here). */
static uint64_t below(struct rng *r, uint64_t n)
{
	return rng_next(r) % n;
}

static long long range(struct rng *r, long long lo, long long hi)
{
	return lo + (long long)below(r, (uint64_t)(hi - lo + 1));
}

static bool chance(struct rng *r, unsigned percent)
{
	return below(r, 100) < percent;
}

static struct rng rng_for(uint64_t seed, uint64_t stream)
{
	struct rng r = { mix64(seed ^ mix64(stream + 0x51ed270b27f3a1c5ULL)) };
	return r;
}

/* Read sizes: mostly 4K..300K, with tiny ones, block and chunk boundaries,
 * zero and the odd megabyte. */
static size_t pick_size(struct rng *r)
{
	static const size_t edges[] = { 4095, 4096, 4097, 16383, 16384, 16385, 32768,
					65535, 65536, 65537, 131072, 262144 };
	unsigned k = (unsigned)below(r, 100);
	if (k < 12)
		return (size_t)range(r, 1, 64);
	if (k < 24)
		return edges[below(r, sizeof(edges) / sizeof(edges[0]))];
	if (k < 34)
		return (size_t)range(r, 65, 4095);
	if (k < 36)
		return k == 34 ? 0 : (size_t)range(r, 300000, 1u << 20);
	if (k == 99) /* what the library splits in pieces, often past the end */
		return (size_t)range(r, 4u << 20, 9u << 20);
	return (size_t)range(r, 4096, 300000);
}

/* --- the files -------------------------------------------------------------------- */

struct file_spec {
	off_t size;          /* as created; appends grow it */
	unsigned nl_words;   /* about one newline per this many 8-byte words, 0: none */
};

struct files {
	uint64_t seed;
	int n;
	struct file_spec f[MAXFILES];
};

static off_t pick_file_size(struct rng *r, bool big)
{
	static const off_t edges[] = { 4095, 4096, 4097, 65535, 65536, 65537,
				       262143, 262144, 262145 };
	unsigned k = big ? 7 + (unsigned)below(r, 3) : (unsigned)below(r, 10);
	switch (k) {
	case 0: return 0;
	case 1: return 1;
	case 2: return range(r, 2, 5000);
	case 3: case 4: return edges[below(r, sizeof(edges) / sizeof(edges[0]))];
	case 5: case 6: return range(r, 5000, 300000);
	case 7: return 16384 * range(r, 16, 128) + range(r, -1, 1); /* chunk edges */
	default: return range(r, 300000, 4 << 20);
	}
}

/* Sizes and content are the seed's: the first two files are big enough for
 * prefetching to engage, the others anything from empty to a few MiB. */
static void files_plan(struct files *fs, uint64_t seed)
{
	static const unsigned nl_choices[] = { 0, 1, 3, 10, 500, 20000 };
	struct rng r = rng_for(seed, 0xf11e);
	fs->seed = seed;
	fs->n = (int)range(&r, 3, MAXFILES);
	for (int i = 0; i < fs->n; i++) {
		fs->f[i].size = pick_file_size(&r, i < 2);
		fs->f[i].nl_words = nl_choices[below(&r, sizeof(nl_choices) / sizeof(nl_choices[0]))];
	}
}

/* The byte at pos of file i never changes: appends continue the same
 * sequence, so what is at an offset does not depend on how the file grew. */
static void content(const struct files *fs, int i, off_t pos, unsigned char *out, size_t n)
{
	uint64_t key = mix64(fs->seed ^ ((uint64_t)(i + 1) << 56));
	unsigned nl = fs->f[i].nl_words;
	while (n > 0) {
		uint64_t word = (uint64_t)pos / 8;
		uint64_t h = mix64(key ^ word);
		uint64_t h2 = mix64(h);
		bool has_nl = nl && h2 % nl == 0;
		if (pos % 8 == 0 && n >= 8 && !has_nl) { /* the common case, a word at once */
			for (unsigned b = 0; b < 8; b++)
				out[b] = (unsigned char)(h >> (8 * b));
			out += 8;
			pos += 8;
			n -= 8;
			continue;
		}
		for (unsigned b = (unsigned)(pos % 8); b < 8 && n > 0; b++, n--, pos++) {
			unsigned char c = (unsigned char)(h >> (8 * b));
			if (has_nl && (h2 >> 32) % 8 == b)
				c = '\n';
			*out++ = c;
		}
	}
}

static void file_path(char *path, size_t size, const char *dir, int i)
{
	snprintf(path, size, "%s/f%d", dir, i);
}

/* Appends n bytes of file i's sequence to fd, which is at the end of file. */
static int append_content(const struct files *fs, int i, int fd, off_t at, off_t n)
{
	static unsigned char block[1 << 16];
	while (n > 0) {
		size_t k = n < (off_t)sizeof(block) ? (size_t)n : sizeof(block);
		content(fs, i, at, block, k);
		for (size_t done = 0; done < k;) {
			ssize_t w = write(fd, block + done, k - done);
			if (w < 0)
				return -1;
			done += (size_t)w;
		}
		at += (off_t)k;
		n -= (off_t)k;
	}
	return 0;
}

static void files_create(const struct files *fs, const char *dir)
{
	char path[PATH_MAX];
	for (int i = 0; i < fs->n; i++) {
		file_path(path, sizeof(path), dir, i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || append_content(fs, i, fd, 0, fs->f[i].size) != 0 || close(fd) != 0)
			die("%s: %s", path, strerror(errno));
	}
}

/* --- operations -------------------------------------------------------------------- */

enum kind {
	/* on a descriptor handle */
	OP_OPEN, OP_CLOSE, OP_READ_RUN, OP_READV_RUN, OP_PREAD_RUN, OP_PREAD_RANDOM,
	OP_TWO_RUNS, OP_STRIDE,
	OP_LSEEK, OP_DUP, OP_EOF_APPEND, OP_FCNTL, OP_FADVISE,
	/* on a stream handle */
	OP_FOPEN, OP_FCLOSE, OP_FREAD_RUN, OP_FGETS_RUN, OP_GETLINE_RUN, OP_GETC_RUN,
	OP_FSEEKO, OP_FILENO_READ,
	/* either, or neither */
	OP_FORK, OP_APPEND, OP_THREADS,
	OP_OVERWRITE,      /* only with --rewrite */
	OP_KINDS
};

static const struct {
	const char *name;
	unsigned weight;
} kinds[OP_KINDS] = {
	[OP_OPEN] = { "open", 6 },          [OP_CLOSE] = { "close", 3 },
	[OP_READ_RUN] = { "read-run", 14 }, [OP_READV_RUN] = { "readv-run", 5 },
	[OP_PREAD_RUN] = { "pread-run", 6 }, [OP_PREAD_RANDOM] = { "pread-random", 3 },
	[OP_TWO_RUNS] = { "two-runs", 3 },  [OP_STRIDE] = { "stride", 2 },
	[OP_LSEEK] = { "lseek", 6 },        [OP_DUP] = { "dup", 4 },
	[OP_EOF_APPEND] = { "eof-append", 2 }, [OP_FCNTL] = { "fcntl-setfl", 1 },
	[OP_FADVISE] = { "fadvise", 2 },
	[OP_FOPEN] = { "fopen", 5 },        [OP_FCLOSE] = { "fclose", 2 },
	[OP_FREAD_RUN] = { "fread-run", 10 }, [OP_FGETS_RUN] = { "fgets-run", 3 },
	[OP_GETLINE_RUN] = { "getline-run", 3 }, [OP_GETC_RUN] = { "getc-run", 3 },
	[OP_FSEEKO] = { "fseeko", 4 },      [OP_FILENO_READ] = { "fileno-read", 3 },
	[OP_FORK] = { "fork", 2 },          [OP_APPEND] = { "append", 2 },
	[OP_THREADS] = { "threads", 2 },
	[OP_OVERWRITE] = { "overwrite", 0 },
};

/* --rewrite: files are also rewritten in place (a pwrite of new bytes
 * through another descriptor, or a truncation), not only appended to. The
 * library's buffers are not coherent with such writes, so this mode is
 * opt-in: it shows that limitation rather than regressions. */
static bool rewrite_mode;

struct op {
	enum kind kind;
	int slot;          /* handle: H<slot> or S<slot> */
	int slot2;         /* dup: the target handle */
	int file;
	int variant;       /* kind-specific choice */
	int count;         /* steps of a run */
	bool alt;          /* the other entry point: openat, close_range, freopen,
			    * fread_unlocked */
	uint64_t arg;      /* kind-specific number */
	uint64_t rs;       /* seed of the choices made step by step */
};

static const int open_flags[] = { O_RDONLY, O_RDONLY, O_RDONLY, O_RDONLY | O_NONBLOCK,
				  O_RDONLY | O_CLOEXEC, O_RDWR };
static const char *const open_flag_names[] = { "O_RDONLY", "O_RDONLY", "O_RDONLY",
					       "O_RDONLY|O_NONBLOCK", "O_RDONLY|O_CLOEXEC",
					       "O_RDWR" };
#define N_OPEN_FLAGS ((int)(sizeof(open_flags) / sizeof(open_flags[0])))

static const char *const fopen_modes[] = { "r", "r", "re", "rm", "r+" };
#define N_FOPEN_MODES ((int)(sizeof(fopen_modes) / sizeof(fopen_modes[0])))
/* setvbuf choices: 0 none, else the size (1 = unbuffered); 100 < glibc's 128 */
static const size_t vbuf_sizes[] = { 0, 0, 0, 1, 100, 1024, 65536, VBUF_MAX };
#define N_VBUF ((int)(sizeof(vbuf_sizes) / sizeof(vbuf_sizes[0])))

static const int advices[] = { POSIX_FADV_SEQUENTIAL, POSIX_FADV_RANDOM, POSIX_FADV_NORMAL,
			       POSIX_FADV_DONTNEED, POSIX_FADV_WILLNEED, POSIX_FADV_NOREUSE };
static const char *const advice_names[] = { "SEQUENTIAL", "RANDOM", "NORMAL",
					    "DONTNEED", "WILLNEED", "NOREUSE" };
#define N_ADVICES ((int)(sizeof(advices) / sizeof(advices[0])))

enum seek_variant { SK_SET, SK_FWD, SK_BACK, SK_END, SK_PAST_END, SK_FAR, SK_HUGE,
		    SK_VARIANTS };
static const char *const seek_names[] = { "set", "skip-forward", "back", "from-end",
					  "past-end", "far-forward", "huge" };

static const char *const dup_names[] = { "dup", "dup2", "F_DUPFD", "F_DUPFD_CLOEXEC", "dup3" };
#define N_DUPS ((int)(sizeof(dup_names) / sizeof(dup_names[0])))

/* F_SETFL: O_DIRECT makes unaligned reads fail with EINVAL, in both runs. */
static const int setfl_flags[] = { O_NONBLOCK, O_DIRECT, 0 };
static const char *const setfl_names[] = { "O_NONBLOCK", "O_DIRECT", "0" };

/* Which handles are open, as far as generation knows: operations are
 * generated for handles that will be open when the whole sequence runs;
 * in a subset (--only) some find their handle closed and say so. */
struct sim {
	bool raw[NRAW];
	bool strm[NSTREAM];
};

static int pick_slot(struct rng *r, const bool *open, int n, bool want_open)
{
	int cand[NRAW > NSTREAM ? NRAW : NSTREAM], k = 0;
	for (int i = 0; i < n; i++)
		if (open[i] == want_open)
			cand[k++] = i;
	return k ? cand[below(r, (uint64_t)k)] : -1;
}

static unsigned weight(int k)
{
	return k == OP_OVERWRITE && rewrite_mode ? 3 : kinds[k].weight;
}

static enum kind pick_kind(struct rng *r)
{
	unsigned total = 0;
	for (int k = 0; k < OP_KINDS; k++)
		total += weight(k);
	unsigned x = (unsigned)below(r, total);
	for (int k = 0; k < OP_KINDS; k++) {
		if (x < weight(k))
			return (enum kind)k;
		x -= weight(k);
	}
	return OP_READ_RUN;
}

static bool on_raw(enum kind k)
{
	return k <= OP_FADVISE;
}

static bool on_stream(enum kind k)
{
	return k >= OP_FOPEN && k <= OP_FILENO_READ;
}

/* Chooses the handle; turns the operation into an open (or a close) when
 * no handle fits. */
static void choose_slots(struct op *op, struct rng *r, struct sim *sim)
{
	if (op->kind == OP_FORK) {
		op->variant = chance(r, 30) ? 1 : 0; /* 1: a stream */
		if (pick_slot(r, op->variant ? sim->strm : sim->raw,
			      op->variant ? NSTREAM : NRAW, true) < 0)
			op->variant = !op->variant;
		op->slot = pick_slot(r, op->variant ? sim->strm : sim->raw,
				     op->variant ? NSTREAM : NRAW, true);
		if (op->slot < 0)
			op->kind = OP_OPEN;
		else
			return;
	}
	if (op->kind == OP_FOPEN && op->alt) {
		/* freopen an open stream, if there is one */
		op->slot = pick_slot(r, sim->strm, NSTREAM, true);
		if (op->slot >= 0)
			return;
		op->alt = false;
	}
	if (op->kind == OP_OPEN || op->kind == OP_FOPEN) {
		bool raw = op->kind == OP_OPEN;
		op->slot = pick_slot(r, raw ? sim->raw : sim->strm, raw ? NRAW : NSTREAM, false);
		if (op->slot < 0) {
			op->kind = raw ? OP_CLOSE : OP_FCLOSE;
			op->slot = pick_slot(r, raw ? sim->raw : sim->strm, raw ? NRAW : NSTREAM, true);
		}
		return;
	}
	if (on_raw(op->kind)) {
		op->slot = pick_slot(r, sim->raw, NRAW, true);
		if (op->slot < 0) {
			op->kind = OP_OPEN;
			op->slot = pick_slot(r, sim->raw, NRAW, false);
		}
	} else if (on_stream(op->kind)) {
		op->slot = pick_slot(r, sim->strm, NSTREAM, true);
		if (op->slot < 0) {
			op->kind = OP_FOPEN;
			op->slot = pick_slot(r, sim->strm, NSTREAM, false);
		}
	}
	if (op->kind == OP_OVERWRITE)
		op->slot = pick_slot(r, sim->raw, NRAW, true); /* write ahead of its reader */
	if (op->kind == OP_DUP) {
		/* A free handle, else another open one: dup2 replaces it. */
		op->slot2 = pick_slot(r, sim->raw, NRAW, false);
		while (op->slot2 < 0 || op->slot2 == op->slot)
			op->slot2 = (int)below(r, NRAW);
	}
}

static void choose_params(struct op *op, struct rng *r)
{
	switch (op->kind) {
	case OP_OPEN:
		op->variant = (int)below(r, N_OPEN_FLAGS);
		break;
	case OP_READ_RUN:
	case OP_PREAD_RUN:
		op->count = chance(r, 15) ? (int)range(r, 1, 3) : (int)range(r, 4, 40);
		op->variant = (int)below(r, 2);
		break;
	case OP_READV_RUN:
		op->count = (int)range(r, 2, 20);
		break;
	case OP_PREAD_RANDOM:
		op->count = (int)range(r, 1, 8);
		break;
	case OP_TWO_RUNS:
	case OP_STRIDE:
		op->count = (int)range(r, 4, 40);
		op->variant = (int)below(r, 2);
		break;
	case OP_LSEEK:
	case OP_FSEEKO:
		op->variant = (int)below(r, SK_VARIANTS);
		break;
	case OP_DUP:
		op->variant = (int)below(r, N_DUPS);
		op->count = (int)range(r, 2, 12);
		break;
	case OP_FORK:
		op->count = (int)range(r, 1, 6);
		break;
	case OP_OVERWRITE:
		op->variant = chance(r, 25); /* 1: truncate */
		/* fall through */
	case OP_APPEND:
	case OP_EOF_APPEND:
		op->arg = (uint64_t)(chance(r, 30) ? range(r, 1, 100) : range(r, 100, 300000));
		op->count = (int)range(r, 1, 5);
		break;
	case OP_FADVISE:
		op->variant = (int)below(r, N_ADVICES);
		break;
	case OP_FCNTL:
		op->variant = (int)below(r, 3);
		break;
	case OP_THREADS:
		op->variant = (int)range(r, 2, 3); /* threads */
		op->count = (int)range(r, 4, 30);
		break;
	case OP_FOPEN:
		op->variant = (int)below(r, N_FOPEN_MODES);
		op->arg = below(r, N_VBUF);
		op->count = chance(r, 30); /* posix_fadvise(SEQUENTIAL) as md5sum does */
		break;
	case OP_FREAD_RUN:
		op->count = (int)range(r, 2, 30);
		break;
	case OP_FGETS_RUN:
		op->count = (int)range(r, 1, 50);
		break;
	case OP_GETLINE_RUN:
		op->count = (int)range(r, 1, 30);
		break;
	case OP_GETC_RUN:
		op->count = (int)range(r, 5, 100);
		break;
	case OP_FILENO_READ:
		op->count = (int)range(r, 1, 3);
		break;
	default:
		break;
	}
}

static void sim_apply(struct sim *sim, const struct op *op)
{
	switch (op->kind) {
	case OP_OPEN: sim->raw[op->slot] = true; break;
	case OP_CLOSE: sim->raw[op->slot] = false; break;
	case OP_DUP: sim->raw[op->slot2] = true; break;
	case OP_FOPEN: sim->strm[op->slot] = true; break;
	case OP_FCLOSE: sim->strm[op->slot] = false; break;
	default: break;
	}
}

/* Operation i depends only on the seed, i and which handles the earlier
 * operations left open. */
static void generate(struct op *ops, int n, uint64_t seed, int nfiles)
{
	struct sim sim;
	memset(&sim, 0, sizeof(sim));
	for (int i = 0; i < n; i++) {
		struct rng r = rng_for(seed, (uint64_t)i + 1);
		struct op *op = &ops[i];
		memset(op, 0, sizeof(*op));
		op->kind = pick_kind(&r);
		op->rs = rng_next(&r);
		op->file = (int)below(&r, (uint64_t)nfiles);
		op->slot2 = -1;
		op->alt = chance(&r, 30);
		choose_slots(op, &r, &sim);
		choose_params(op, &r);
		sim_apply(&sim, op);
	}
}

static void describe(const struct op *op, char *s, size_t size)
{
	const char *name = kinds[op->kind].name;
	char h = on_stream(op->kind) || (op->kind == OP_FORK && op->variant) ? 'S' : 'H';
	switch (op->kind) {
	case OP_OPEN:
		snprintf(s, size, "%s H%d f%d %s", op->alt ? "openat" : "open", op->slot, op->file,
			 open_flag_names[op->variant]);
		break;
	case OP_FOPEN:
		snprintf(s, size, "%s S%d f%d \"%s\" setvbuf=%zu%s", op->alt ? "freopen" : "fopen",
			 op->slot, op->file,
			 fopen_modes[op->variant], vbuf_sizes[op->arg],
			 op->count ? " fadvise=SEQUENTIAL" : "");
		break;
	case OP_DUP:
		snprintf(s, size, "dup H%d -> H%d by %s, %d alternating reads", op->slot, op->slot2,
			 dup_names[op->variant], op->count);
		break;
	case OP_LSEEK:
	case OP_FSEEKO:
		snprintf(s, size, "%s %c%d %s", name, h, op->slot, seek_names[op->variant]);
		break;
	case OP_FADVISE:
		snprintf(s, size, "fadvise H%d %s", op->slot, advice_names[op->variant]);
		break;
	case OP_FCNTL:
		snprintf(s, size, "fcntl H%d F_SETFL %s", op->slot, setfl_names[op->variant]);
		break;
	case OP_THREADS:
		snprintf(s, size, "threads %d from f%d, %d reads each", op->variant, op->file,
			 op->count);
		break;
	case OP_APPEND:
		snprintf(s, size, "append f%d %" PRIu64 " bytes", op->file, op->arg);
		break;
	case OP_OVERWRITE:
		snprintf(s, size, "%s f%d, or ahead of H%d", op->variant ? "truncate" : "overwrite",
			 op->file, op->slot);
		break;
	case OP_EOF_APPEND:
		snprintf(s, size, "eof-append H%d %" PRIu64 " bytes, %d reads", op->slot, op->arg,
			 op->count);
		break;
	case OP_CLOSE:
	case OP_FCLOSE:
		snprintf(s, size, "%s %c%d", op->alt && op->kind == OP_CLOSE ? "close_range" : name,
			 h, op->slot);
		break;
	case OP_FREAD_RUN:
		snprintf(s, size, "%s S%d x%d", op->alt ? "fread_unlocked-run" : name, op->slot,
			 op->count);
		break;
	default:
		snprintf(s, size, "%s %c%d x%d", name, h, op->slot, op->count);
		break;
	}
}

/* --- running: the state and the output ------------------------------------------------ */

struct raw {
	int fd;      /* -1: closed */
	int file;
};

struct strm {
	FILE *fp;    /* NULL: closed */
	int file;
	bool mmap;   /* "rm": glibc reads through a read-only mapping */
};

static struct {
	const char *dir;
	struct files fs;
	struct raw raw[NRAW];
	struct strm strm[NSTREAM];
	unsigned char *buf;
	char *vbuf[NSTREAM];
} run;

static char prefix[32];
static int step;

/* One line of output: "<op>.<step> text". */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	printf("%s.%d ", prefix, step++);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* "r h=HASH" over the len bytes of the request region (bytes past r must
 * still hold FILL), or "-1 ERRNO". */
static void result(char *s, size_t size, ssize_t r, int err, const void *region, size_t len)
{
	if (r < 0)
		snprintf(s, size, "-1 %s", errno_name(err));
	else
		snprintf(s, size, "%zd h=%016" PRIx64, r, hash_block(region, len));
}

static long long fd_offset(int fd)
{
	return (long long)lseek(fd, 0, SEEK_CUR);
}

static void stream_state(FILE *fp, char *s, size_t size)
{
	errno = 0;
	long long pos = (long long)ftello(fp);
	snprintf(s, size, "pos=%lld%s%s eof=%d err=%d", pos, pos < 0 ? " " : "",
		 pos < 0 ? errno_name(errno) : "", feof(fp) != 0, ferror(fp) != 0);
}

static off_t file_size_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? st.st_size : 0;
}

/* An offset at a fraction of the file, sometimes page aligned. */
static off_t offset_in(struct rng *r, off_t size, off_t slack)
{
	off_t off = (off_t)below(r, (uint64_t)(size + slack + 1));
	if (chance(r, 30))
		off &= ~(off_t)4095;
	return off;
}

static ssize_t read_step(int fd, size_t n, const char *what)
{
	char res[64];
	memset(run.buf, FILL, n);
	ssize_t r = read(fd, run.buf, n);
	int err = errno;
	result(res, sizeof(res), r, err, run.buf, n);
	say("%s %zu -> %s off=%lld", what, n, res, fd_offset(fd));
	return r;
}

/* Runs stop after two empty reads in a row: end of file. */
static bool run_over(ssize_t r, size_t asked, int *empty)
{
	*empty = r == 0 && asked > 0 ? *empty + 1 : 0;
	return *empty >= 2;
}

/* Runs often start somewhere else, so that they do not all end up at the
 * end of file. */
static void maybe_reposition(struct rng *r, int fd)
{
	if (!chance(r, 40))
		return;
	off_t to = offset_in(r, file_size_of(fd), 0);
	say("lseek %lld SEEK_SET -> %lld", (long long)to, (long long)lseek(fd, to, SEEK_SET));
}

/* --- operations on descriptors --------------------------------------------------------- */

static struct raw *raw_handle(const struct op *op)
{
	struct raw *h = &run.raw[op->slot];
	if (h->fd < 0) {
		say("skip: H%d is not open", op->slot);
		return NULL;
	}
	return h;
}

static void raw_close_by(int slot, bool by_range)
{
	struct raw *h = &run.raw[slot];
	int rc = by_range ? close_range((unsigned)h->fd, (unsigned)h->fd, 0) : close(h->fd);
	say("close H%d -> %d%s%s", slot, rc, rc ? " " : "", rc ? errno_name(errno) : "");
	h->fd = -1;
}

static void raw_close(int slot)
{
	raw_close_by(slot, false);
}

static void do_open(const struct op *op)
{
	char path[PATH_MAX];
	if (run.raw[op->slot].fd >= 0)
		raw_close(op->slot);
	file_path(path, sizeof(path), run.dir, op->file);
	int fd = op->alt ? openat(AT_FDCWD, path, open_flags[op->variant])
			 : open(path, open_flags[op->variant]);
	if (fd < 0) {
		say("open -> -1 %s", errno_name(errno));
		return;
	}
	run.raw[op->slot] = (struct raw){ fd, op->file };
	say("open -> ok size=%lld off=%lld", (long long)file_size_of(fd), fd_offset(fd));
}

static void do_close(const struct op *op)
{
	if (raw_handle(op))
		raw_close_by(op->slot, op->alt);
}

/* Sequential reads; now and then a short skip forward, which stays inside
 * a prefetch window. */
static void do_read_run(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	size_t fixed = pick_size(&r);
	int empty = 0;
	if (!h)
		return;
	maybe_reposition(&r, h->fd);
	for (int i = 0; i < op->count; i++) {
		if (chance(&r, 12)) {
			off_t skip = range(&r, 1, 20000);
			long long to = (long long)lseek(h->fd, skip, SEEK_CUR);
			say("lseek +%lld SEEK_CUR -> %lld", (long long)skip, to);
		}
		size_t n = op->variant ? fixed : pick_size(&r);
		if (run_over(read_step(h->fd, n, "read"), n, &empty))
			break;
	}
}

/* Lays out 1..4 elements in run.buf with gaps between them; returns the
 * length of the whole region (gaps included). */
static size_t make_iov(struct rng *r, struct iovec *iov, int *cnt)
{
	size_t at = 0;
	*cnt = (int)range(r, 1, 4);
	for (int i = 0; i < *cnt; i++) {
		size_t n = chance(r, 10) ? 0 : pick_size(r);
		if (n > 300000)
			n = 300000;
		iov[i].iov_base = run.buf + at;
		iov[i].iov_len = n;
		at += n + IOV_GAP;
	}
	memset(run.buf, FILL, at);
	return at;
}

static void do_readv_run(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	int empty = 0;
	if (!h)
		return;
	maybe_reposition(&r, h->fd);
	for (int i = 0; i < op->count; i++) {
		struct iovec iov[4];
		int cnt;
		char res[64];
		size_t len = make_iov(&r, iov, &cnt);
		ssize_t got = readv(h->fd, iov, cnt);
		result(res, sizeof(res), got, errno, run.buf, len);
		say("readv %d [%zu %zu %zu %zu] -> %s off=%lld", cnt, iov[0].iov_len,
		    cnt > 1 ? iov[1].iov_len : 0, cnt > 2 ? iov[2].iov_len : 0,
		    cnt > 3 ? iov[3].iov_len : 0, res, fd_offset(h->fd));
		if (run_over(got, len, &empty))
			break;
	}
}

static void pread_step(int fd, size_t n, off_t at, bool vec)
{
	char res[64];
	ssize_t got;
	size_t len = n;
	memset(run.buf, FILL, n + IOV_GAP);
	if (vec) {
		/* Two halves with a gap between them. */
		struct iovec iov[2] = { { run.buf, n / 2 }, { run.buf + n / 2 + IOV_GAP, n - n / 2 } };
		got = preadv(fd, iov, 2, at);
		len = n + IOV_GAP;
	} else {
		got = pread(fd, run.buf, n, at);
	}
	result(res, sizeof(res), got, errno, run.buf, len);
	say("%s %zu @%lld -> %s off=%lld", vec ? "preadv" : "pread", n, (long long)at, res,
	    fd_offset(fd));
}

/* Sequential preads from somewhere in the file, until end of file. */
static void do_pread_run(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	size_t fixed = pick_size(&r);
	if (!h)
		return;
	off_t at = offset_in(&r, file_size_of(h->fd) / 2, 0);
	for (int i = 0; i < op->count; i++) {
		size_t n = op->variant ? fixed : pick_size(&r);
		pread_step(h->fd, n, at, chance(&r, 25));
		at += (off_t)n;
		if (at > file_size_of(h->fd))
			break;
	}
}

static void do_pread_random(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	if (!h)
		return;
	for (int i = 0; i < op->count; i++) {
		off_t at = offset_in(&r, file_size_of(h->fd), 70000);
		pread_step(h->fd, pick_size(&r), at, chance(&r, 20));
	}
}

/* Two positions read in turn, each going forward (a merge of two sorted
 * runs of one file): by pread, or (variant 1) by lseek + read. */
static void do_two_runs(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	if (!h)
		return;
	off_t size = file_size_of(h->fd), at[2] = { offset_in(&r, size / 2, 0), 0 };
	at[1] = at[0] + range(&r, 1, size / 2 + 1);
	size_t n = pick_size(&r);
	for (int i = 0; i < 2 * op->count; i++) {
		off_t *p = &at[i % 2];
		if (op->variant) {
			long long to = (long long)lseek(h->fd, *p, SEEK_SET);
			say("lseek %lld SEEK_SET -> %lld", (long long)*p, to);
			read_step(h->fd, n, "read");
		} else {
			pread_step(h->fd, n, *p, false);
		}
		*p += (off_t)n;
	}
}

/* Reads going down the file from its end (tac), back to back or a skip
 * apart, by lseek + read (variant 1) or pread. */
static void stride_down(struct raw *h, const struct op *op, struct rng *r, size_t n, off_t skip)
{
	struct stat st;
	if (fstat(h->fd, &st) != 0)
		return;
	off_t at = st.st_size - (off_t)n;
	if (chance(r, 50))
		skip = 0;
	for (int i = 0; i < op->count; i++) {
		if (!op->variant) {
			pread_step(h->fd, n, at, false);
		} else {
			long long to = (long long)lseek(h->fd, at, SEEK_SET);
			say("lseek %lld SEEK_SET -> %lld", (long long)at, to);
			read_step(h->fd, n, "read");
		}
		at -= (off_t)n + skip;
	}
}

/* A fixed-size read, then a fixed skip forward, by lseek (variant 1) or
 * pread at the stride; a third of them go down the file instead. */
static void do_stride(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	if (!h)
		return;
	if (chance(&r, 33)) {
		size_t n = pick_size(&r);
		stride_down(h, op, &r, n ? n : 1, range(&r, 1, 300000));
		return;
	}
	/* Half read little of each step and stay within the small windows
	 * the seeds choose: the window then follows the landings alone. */
	bool sparse = chance(&r, 50);
	size_t n = sparse ? (size_t)range(&r, 1, 8192) : pick_size(&r);
	off_t skip = sparse ? range(&r, 8192, 120000) : range(&r, 1, 600000);
	off_t at = fd_offset(h->fd);
	/* Half of them land a little off the step each time, as tar over
	 * members of one size does (its reads are whole records). */
	off_t jitter = chance(&r, 50) ? range(&r, 1, sparse ? 2000 : 20000) : 0;
	for (int i = 0; i < op->count; i++) {
		off_t this_skip = skip + (jitter ? range(&r, 0, jitter) : 0);
		if (!op->variant) {
			pread_step(h->fd, n, at, false);
		} else {
			read_step(h->fd, n, "read");
			long long to = (long long)lseek(h->fd, this_skip, SEEK_CUR);
			say("lseek +%lld SEEK_CUR -> %lld", (long long)this_skip, to);
		}
		at += (off_t)n + this_skip;
	}
}

/* The target of a seek: offset and whence for each variant. */
static void seek_target(struct rng *r, int variant, off_t size, off_t *off, int *whence)
{
	switch (variant) {
	case SK_SET: *off = offset_in(r, size, 0); *whence = SEEK_SET; break;
	case SK_FWD: *off = range(r, 1, 65536); *whence = SEEK_CUR; break;
	case SK_BACK: *off = -range(r, 1, 40000); *whence = SEEK_CUR; break;
	case SK_END: *off = -range(r, 0, 100000); *whence = SEEK_END; break;
	case SK_PAST_END: *off = size + range(r, 0, 100000); *whence = SEEK_SET; break;
	case SK_HUGE: /* reads there must not wrap the offset around */
		*off = chance(r, 50) ? (off_t)1 << 40 : LLONG_MAX - range(r, 0, 300000);
		*whence = SEEK_SET;
		break;
	default: *off = range(r, 1 << 20, 4 << 20); *whence = SEEK_CUR; break;
	}
}

static const char *whence_name(int whence)
{
	return whence == SEEK_SET ? "SEEK_SET" : whence == SEEK_CUR ? "SEEK_CUR" : "SEEK_END";
}

static void do_lseek(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	off_t off;
	int whence;
	if (!h)
		return;
	seek_target(&r, op->variant, file_size_of(h->fd), &off, &whence);
	off_t to = lseek(h->fd, off, whence);
	say("lseek %lld %s -> %lld%s%s off=%lld", (long long)off, whence_name(whence),
	    (long long)to, to < 0 ? " " : "", to < 0 ? errno_name(errno) : "", fd_offset(h->fd));
}

/* Duplicates the handle into slot2 (dup2 replaces an open target in place;
 * the others close it first), then reads alternately from both. */
static int dup_into(const struct op *op, int src)
{
	struct raw *t = &run.raw[op->slot2];
	int target = t->fd >= 0 ? t->fd : DUP2_BASE + op->slot2;
	if (op->variant != 1 && t->fd >= 0)
		raw_close(op->slot2); /* dup2 replaces it in place */
	switch (op->variant) {
	case 0: return dup(src);
	case 1: return dup2(src, target);
	case 2: return fcntl(src, F_DUPFD, DUP2_BASE);
	case 3: return fcntl(src, F_DUPFD_CLOEXEC, DUP2_BASE);
	default: return dup3(src, DUP2_BASE + op->slot2, O_CLOEXEC);
	}
}

static void do_dup(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	size_t fixed = pick_size(&r);
	if (!h)
		return;
	int fd = dup_into(op, h->fd);
	if (fd < 0) {
		say("%s -> -1 %s", dup_names[op->variant], errno_name(errno));
		return;
	}
	run.raw[op->slot2] = (struct raw){ fd, h->file };
	say("%s -> ok", dup_names[op->variant]);
	maybe_reposition(&r, fd);
	int empty = 0;
	for (int i = 0; i < op->count; i++) {
		int use = i % 2 ? op->slot2 : op->slot;
		char what[16];
		size_t n = chance(&r, 50) ? fixed : pick_size(&r);
		snprintf(what, sizeof(what), "read H%d", use);
		if (run_over(read_step(run.raw[use].fd, n, what), n, &empty))
			break;
	}
}

/* Opens the file for appending through a separate descriptor. */
static void append_to(int file, off_t n)
{
	char path[PATH_MAX];
	file_path(path, sizeof(path), run.dir, file);
	int fd = open(path, O_WRONLY | O_APPEND);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	off_t size = file_size_of(fd);
	if (append_content(&run.fs, file, fd, size, n) != 0)
		die("append to %s: %s", path, strerror(errno));
	say("append f%d +%lld -> size=%lld", file, (long long)n, (long long)file_size_of(fd));
	close(fd);
}

static void do_append(const struct op *op)
{
	append_to(op->file, (off_t)op->arg);
}

/* New bytes over a range of the file, or a truncation, through another
 * descriptor. */
static void do_overwrite(const struct op *op)
{
	char path[PATH_MAX];
	struct rng r = { op->rs };
	int file = op->file;
	off_t at = -1;
	if (op->slot >= 0 && run.raw[op->slot].fd >= 0 && chance(&r, 60)) {
		/* Just ahead of a reader: where its prefetched data is. */
		file = run.raw[op->slot].file;
		at = lseek(run.raw[op->slot].fd, 0, SEEK_CUR) + range(&r, 0, 20000);
	}
	file_path(path, sizeof(path), run.dir, file);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	off_t size = file_size_of(fd);
	if (at < 0)
		at = offset_in(&r, size, 0);
	if (op->variant) {
		int rc = ftruncate(fd, at);
		say("ftruncate f%d %lld -> %d size=%lld", file, (long long)at, rc,
		    (long long)file_size_of(fd));
	} else {
		size_t n = (size_t)range(&r, 1, 300000);
		for (size_t i = 0; i < n; i++)
			run.buf[i] = (unsigned char)rng_next(&r);
		ssize_t w = pwrite(fd, run.buf, n, at);
		say("pwrite f%d %zu @%lld -> %zd size=%lld", file, n, (long long)at, w,
		    (long long)file_size_of(fd));
	}
	close(fd);
}

/* Reads to end of file, appends, and reads on: the new data must show. */
static void do_eof_append(const struct op *op)
{
	struct raw *h = raw_handle(op);
	struct rng r = { op->rs };
	if (!h)
		return;
	uint64_t hash = FNV_INIT;
	long long total = 0;
	ssize_t got;
	int calls = 0;
	while ((got = read(h->fd, run.buf, 65536)) > 0 && calls++ < 1000) {
		hash = fnv1a(hash, run.buf, (size_t)got);
		total += got;
	}
	say("read to eof -> total=%lld h=%016" PRIx64 " last=%zd%s%s off=%lld", total, hash, got,
	    got < 0 ? " " : "", got < 0 ? errno_name(errno) : "", fd_offset(h->fd));
	append_to(h->file, (off_t)op->arg);
	for (int i = 0; i < op->count; i++)
		read_step(h->fd, pick_size(&r), "read");
}

static void do_fcntl(const struct op *op)
{
	struct raw *h = raw_handle(op);
	if (!h)
		return;
	int flags = fcntl(h->fd, F_GETFL);
	int rc = fcntl(h->fd, F_SETFL, (flags & ~(O_NONBLOCK | O_DIRECT)) | setfl_flags[op->variant]);
	int err = errno;
	say("F_SETFL %s -> %d%s%s flags=%#x", setfl_names[op->variant], rc, rc ? " " : "",
	    rc ? errno_name(err) : "", fcntl(h->fd, F_GETFL) & (O_NONBLOCK | O_DIRECT));
}

static void do_fadvise(const struct op *op)
{
	struct raw *h = raw_handle(op);
	if (!h)
		return;
	int rc = posix_fadvise(h->fd, 0, 0, advices[op->variant]);
	say("posix_fadvise %s -> %s off=%lld", advice_names[op->variant], errno_name(rc),
	    fd_offset(h->fd));
}

/* --- operations on streams --------------------------------------------------------------- */

static struct strm *stream_handle(const struct op *op)
{
	struct strm *s = &run.strm[op->slot];
	if (!s->fp) {
		say("skip: S%d is not open", op->slot);
		return NULL;
	}
	return s;
}

static void stream_close(int slot)
{
	int rc = fclose(run.strm[slot].fp);
	say("fclose S%d -> %d%s%s", slot, rc, rc ? " " : "", rc ? errno_name(errno) : "");
	run.strm[slot].fp = NULL;
}

static void do_fopen(const struct op *op)
{
	char path[PATH_MAX], st[64];
	size_t vb = vbuf_sizes[op->arg];
	bool reopen = op->alt && run.strm[op->slot].fp;
	/* glibc's freopen of an "rm" stream keeps reading it as one: a pushed
	 * back character other than the last read crashes it (with or
	 * without the shim; seed 212718258). */
	bool was_mmap = reopen && run.strm[op->slot].mmap;
	if (run.strm[op->slot].fp && !reopen)
		stream_close(op->slot);
	file_path(path, sizeof(path), run.dir, op->file);
	FILE *fp = reopen ? freopen(path, fopen_modes[op->variant], run.strm[op->slot].fp)
			  : fopen(path, fopen_modes[op->variant]);
	if (!fp) {
		run.strm[op->slot].fp = NULL; /* freopen closed it */
		say("fopen -> NULL %s", errno_name(errno));
		return;
	}
	run.strm[op->slot] = (struct strm){ fp, op->file,
					    was_mmap || strchr(fopen_modes[op->variant], 'm') };
	int rc = 0;
	if (vb == 1)
		rc = setvbuf(fp, NULL, _IONBF, 0);
	else if (vb)
		rc = setvbuf(fp, run.vbuf[op->slot], _IOFBF, vb);
	if (op->count)
		rc |= posix_fadvise(fileno(fp), 0, 0, POSIX_FADV_SEQUENTIAL);
	stream_state(fp, st, sizeof(st));
	say("fopen -> ok setup=%d %s", rc, st);
}

static void do_fclose(const struct op *op)
{
	if (stream_handle(op))
		stream_close(op->slot);
}

/* One fread of n elements of size es; reports the elements read and a
 * hash of the whole request. */
static size_t fread_step_by(FILE *fp, size_t es, size_t n, bool unlocked)
{
	char st[64];
	memset(run.buf, FILL, es * n);
	size_t got = unlocked ? fread_unlocked(run.buf, es, n, fp) : fread(run.buf, es, n, fp);
	stream_state(fp, st, sizeof(st));
	say("%s %zux%zu -> %zu h=%016" PRIx64 " %s", unlocked ? "fread_unlocked" : "fread", es, n, got,
	    hash_block(run.buf, es * n), st);
	return got;
}

static size_t fread_step(FILE *fp, size_t es, size_t n)
{
	return fread_step_by(fp, es, n, false);
}

static void maybe_fseek(struct rng *r, FILE *fp)
{
	if (!chance(r, 40))
		return;
	off_t to = offset_in(r, file_size_of(fileno(fp)), 0);
	int rc = fseeko(fp, to, SEEK_SET);
	say("fseeko %lld SEEK_SET -> %d", (long long)to, rc);
}

/* Small and large freads (larger than the stream buffer: glibc then reads
 * straight into the caller's memory, which is the path the shim takes). */
static void do_fread_run(const struct op *op)
{
	static const size_t elem[] = { 1, 1, 1, 1, 3, 7, 512, 4096 };
	struct strm *s = stream_handle(op);
	struct rng r = { op->rs };
	int empty = 0;
	if (!s)
		return;
	maybe_fseek(&r, s->fp);
	for (int i = 0; i < op->count; i++) {
		size_t es = elem[below(&r, sizeof(elem) / sizeof(elem[0]))];
		size_t bytes = chance(&r, 30) ? (size_t)range(&r, 1, 5000) : pick_size(&r);
		if (chance(&r, 8)) {
			clearerr(s->fp);
			say("clearerr");
		}
		size_t n = bytes / es ? bytes / es : 1;
		if (run_over((ssize_t)fread_step_by(s->fp, es, n, op->alt), 1, &empty))
			break;
	}
}

static void do_fgets_run(const struct op *op)
{
	static const int sizes[] = { 2, 10, 100, 4096, 70000 };
	struct strm *s = stream_handle(op);
	struct rng r = { op->rs };
	if (!s)
		return;
	maybe_fseek(&r, s->fp);
	for (int i = 0; i < op->count && !feof(s->fp); i++) {
		int n = sizes[below(&r, sizeof(sizes) / sizeof(sizes[0]))];
		char st[64];
		memset(run.buf, FILL, (size_t)n);
		char *p = fgets((char *)run.buf, n, s->fp);
		stream_state(s->fp, st, sizeof(st));
		say("fgets %d -> %s h=%016" PRIx64 " %s", n, p ? "ok" : "NULL",
		    hash_block(run.buf, (size_t)n), st);
	}
}

static void do_getline_run(const struct op *op)
{
	struct strm *s = stream_handle(op);
	struct rng r = { op->rs };
	char *line = NULL;
	size_t cap = 0;
	if (!s)
		return;
	maybe_fseek(&r, s->fp);
	for (int i = 0; i < op->count && !feof(s->fp); i++) {
		char st[64];
		ssize_t n = getline(&line, &cap, s->fp);
		stream_state(s->fp, st, sizeof(st));
		say("getline -> %zd h=%016" PRIx64 " %s", n,
		    hash_block(line, n > 0 ? (size_t)n : 0), st);
	}
	free(line);
}

/* getc with pushed-back characters, and large freads right after a
 * pushback (the stream is then reading from its backup area). */
static void do_getc_run(const struct op *op)
{
	struct strm *s = stream_handle(op);
	struct rng r = { op->rs };
	int last = 'x';
	bool just_got = false;
	if (!s)
		return;
	maybe_fseek(&r, s->fp);
	for (int i = 0; i < op->count; i++) {
		char st[64];
		unsigned k = (unsigned)below(&r, 100);
		if (k < 70) {
			int c = getc(s->fp);
			if (c != EOF)
				last = c;
			just_got = c != EOF;
			stream_state(s->fp, st, sizeof(st));
			say("getc -> %d %s", c, st);
		} else if (k < 90) {
			/* glibc writes a pushed-back character into the buffer,
			 * which for "rm" is a read-only mapping (it crashes
			 * with or without the shim): there, only the character
			 * just read goes back. */
			if (s->mmap && !just_got)
				continue;
			just_got = false;
			int c = chance(&r, 50) || s->mmap ? last : (int)below(&r, 256);
			int rc = ungetc(c, s->fp);
			stream_state(s->fp, st, sizeof(st));
			say("ungetc %d -> %d %s", c, rc, st);
		} else {
			just_got = false;
			fread_step(s->fp, 1, (size_t)range(&r, 4096, 200000));
		}
	}
}

static void do_fseeko(const struct op *op)
{
	struct strm *s = stream_handle(op);
	struct rng r = { op->rs };
	off_t off;
	int whence;
	char st[64];
	if (!s)
		return;
	seek_target(&r, op->variant, file_size_of(fileno(s->fp)), &off, &whence);
	int rc = fseeko(s->fp, off, whence);
	int err = errno;
	stream_state(s->fp, st, sizeof(st));
	say("fseeko %lld %s -> %d%s%s %s", (long long)off, whence_name(whence), rc, rc ? " " : "",
	    rc ? errno_name(err) : "", st);
}

/* read() on the stream's descriptor, behind the stream's back. */
static void do_fileno_read(const struct op *op)
{
	struct strm *s = stream_handle(op);
	struct rng r = { op->rs };
	char st[64];
	if (!s)
		return;
	for (int i = 0; i < op->count; i++)
		read_step(fileno(s->fp), pick_size(&r), "read(fileno)");
	stream_state(s->fp, st, sizeof(st));
	say("after: %s", st);
}

/* --- fork ----------------------------------------------------------------------------------- */

/* The child reads a few blocks from the inherited handle (moving the shared
 * offset) and exits; the parent waits, so the lines come in order. */
static void do_fork(const struct op *op)
{
	struct rng r = { op->rs };
	bool stream = op->variant;
	if (stream ? !stream_handle(op) : !raw_handle(op))
		return;
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		snprintf(prefix + strlen(prefix), sizeof(prefix) - strlen(prefix), ".child");
		step = 0;
		for (int i = 0; i < op->count; i++) {
			size_t n = pick_size(&r);
			if (stream)
				fread_step(run.strm[op->slot].fp, 1, n);
			else
				read_step(run.raw[op->slot].fd, n, "read");
		}
		fflush(stdout);
		_exit(0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	char st[64];
	if (stream)
		stream_state(run.strm[op->slot].fp, st, sizeof(st));
	else
		snprintf(st, sizeof(st), "off=%lld", fd_offset(run.raw[op->slot].fd));
	say("child status=%d %s", status, st);
}

/* --- threads ----------------------------------------------------------------------------------- */

#define THREAD_STEPS 30

/* One reader thread: its own descriptor, its own results, printed by the
 * main thread after the join so that the output does not depend on the
 * interleaving. */
struct reader {
	pthread_t tid;
	int file;
	struct rng r;
	int steps;
	int err_open;
	struct {
		ssize_t got;
		int err;
		bool pread;
		size_t n;
		long long at, off;
		uint64_t hash;
	} res[THREAD_STEPS];
};

static void *reader_main(void *arg)
{
	struct reader *t = arg;
	char path[PATH_MAX];
	unsigned char *buf = xmalloc(1 << 20);
	file_path(path, sizeof(path), run.dir, t->file);
	int fd = open(path, O_RDONLY);
	t->err_open = fd < 0 ? errno : 0;
	for (int i = 0; fd >= 0 && i < t->steps; i++) {
		size_t n = pick_size(&t->r);
		bool pr = chance(&t->r, 20);
		long long at = pr ? (long long)offset_in(&t->r, file_size_of(fd), 0) : -1;
		if (n > 1 << 20)
			n = 1 << 20;
		memset(buf, FILL, n);
		ssize_t got = pr ? pread(fd, buf, n, (off_t)at) : read(fd, buf, n);
		t->res[i].got = got;
		t->res[i].err = got < 0 ? errno : 0;
		t->res[i].pread = pr;
		t->res[i].n = n;
		t->res[i].at = at;
		t->res[i].off = fd_offset(fd);
		t->res[i].hash = hash_block(buf, n);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/* Readers of their own descriptors at the same time (the same file or
 * others): the library's shared state is exercised concurrently. */
static void do_threads(const struct op *op)
{
	struct reader t[3];
	struct rng r = { op->rs };
	int n = op->variant;
	for (int i = 0; i < n; i++) {
		t[i].file = chance(&r, 50) ? op->file : (op->file + i) % run.fs.n;
		t[i].r.s = rng_next(&r);
		t[i].steps = op->count < THREAD_STEPS ? op->count : THREAD_STEPS;
		if (pthread_create(&t[i].tid, NULL, reader_main, &t[i]) != 0)
			die("pthread_create failed");
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i].tid, NULL);
	for (int i = 0; i < n; i++) {
		if (t[i].err_open) {
			say("thread %d f%d: open -> -1 %s", i, t[i].file, errno_name(t[i].err_open));
			continue;
		}
		for (int k = 0; k < t[i].steps; k++) {
			char res[32];
			if (t[i].res[k].got < 0)
				snprintf(res, sizeof(res), "-1 %s", errno_name(t[i].res[k].err));
			else
				snprintf(res, sizeof(res), "%zd", t[i].res[k].got);
			say("thread %d f%d %s %zu @%lld -> %s h=%016" PRIx64 " off=%lld", i, t[i].file,
			    t[i].res[k].pread ? "pread" : "read", t[i].res[k].n, t[i].res[k].at,
			    res, t[i].res[k].hash, t[i].res[k].off);
		}
	}
}

/* --- running a sequence ---------------------------------------------------------------------- */

static void execute(const struct op *op)
{
	switch (op->kind) {
	case OP_OPEN: do_open(op); break;
	case OP_CLOSE: do_close(op); break;
	case OP_READ_RUN: do_read_run(op); break;
	case OP_READV_RUN: do_readv_run(op); break;
	case OP_PREAD_RUN: do_pread_run(op); break;
	case OP_PREAD_RANDOM: do_pread_random(op); break;
	case OP_TWO_RUNS: do_two_runs(op); break;
	case OP_STRIDE: do_stride(op); break;
	case OP_LSEEK: do_lseek(op); break;
	case OP_DUP: do_dup(op); break;
	case OP_EOF_APPEND: do_eof_append(op); break;
	case OP_FCNTL: do_fcntl(op); break;
	case OP_FADVISE: do_fadvise(op); break;
	case OP_FOPEN: do_fopen(op); break;
	case OP_FCLOSE: do_fclose(op); break;
	case OP_FREAD_RUN: do_fread_run(op); break;
	case OP_FGETS_RUN: do_fgets_run(op); break;
	case OP_GETLINE_RUN: do_getline_run(op); break;
	case OP_GETC_RUN: do_getc_run(op); break;
	case OP_FSEEKO: do_fseeko(op); break;
	case OP_FILENO_READ: do_fileno_read(op); break;
	case OP_FORK: do_fork(op); break;
	case OP_APPEND: do_append(op); break;
	case OP_OVERWRITE: do_overwrite(op); break;
	case OP_THREADS: do_threads(op); break;
	default: break;
	}
}

/* Parses "3,7,10-12" into sel[0..n). */
static void parse_only(const char *list, bool *sel, int n)
{
	const char *p = list;
	memset(sel, 0, (size_t)n * sizeof(*sel));
	while (*p) {
		char *end;
		long a = strtol(p, &end, 10), b;
		if (end == p || a < 0)
			die("bad --only list: %s", list);
		b = a;
		if (*end == '-') {
			p = end + 1;
			b = strtol(p, &end, 10);
			if (end == p || b < a)
				die("bad --only list: %s", list);
		}
		for (long i = a; i <= b && i < n; i++)
			sel[i] = true;
		p = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			die("bad --only list: %s", list);
	}
}

static void run_sequence(const struct op *ops, const bool *sel, int n)
{
	char desc[160];
	for (int i = 0; i < NRAW; i++)
		run.raw[i].fd = -1;
	run.buf = xmalloc(BUFSZ);
	for (int i = 0; i < NSTREAM; i++)
		run.vbuf[i] = xmalloc(VBUF_MAX);
	files_create(&run.fs, run.dir);
	for (int i = 0; i < run.fs.n; i++)
		printf("file f%d size=%lld newline-every=%u words\n", i, (long long)run.fs.f[i].size,
		       run.fs.f[i].nl_words);
	for (int i = 0; i < n; i++) {
		if (!sel[i])
			continue;
		describe(&ops[i], desc, sizeof(desc));
		printf("%d %s\n", i, desc);
		snprintf(prefix, sizeof(prefix), "%d", i);
		step = 1;
		execute(&ops[i]);
		/* A crash loses nothing of the operations before. */
		fflush(stdout);
	}
	printf("end\n");
}

/* --- the differential runner ------------------------------------------------------------------ */

struct config {
	const char *lib;
	const char *dir;
	uint64_t seed;
	int nops;
	bool disabled;
	bool rewrite;
	char chunk[16], window[16], threads[16], minseq[16];
	int tries;       /* runs with the library per check while minimising */
	int timeout;     /* seconds per run */
};

struct capture {
	char *data;
	size_t len;
	int status;
};

/* PREFETCH_* settings for the run with the library: small chunks and
 * windows, so that chunk edges, window ends and dropped streams are
 * exercised a lot. Chosen by the seed unless given. */
static void choose_settings(struct config *c)
{
	static const char *const chunks[] = { "4K", "16K", "16K", "16K", "64K" };
	static const char *const windows[] = { "64K", "128K", "128K", "128K", "512K" };
	static const char *const threads[] = { "1", "2", "2", "4" };
	static const char *const minseq[] = { "1", "2", "2", "2", "3" };
	struct rng r = rng_for(c->seed, 0x5e77);
	if (!c->chunk[0])
		snprintf(c->chunk, sizeof(c->chunk), "%s", chunks[below(&r, 5)]);
	if (!c->window[0])
		snprintf(c->window, sizeof(c->window), "%s", windows[below(&r, 5)]);
	if (!c->threads[0])
		snprintf(c->threads, sizeof(c->threads), "%s", threads[below(&r, 4)]);
	if (!c->minseq[0])
		snprintf(c->minseq, sizeof(c->minseq), "%s", minseq[below(&r, 5)]);
}

static void set_child_env(const struct config *c, bool with_lib)
{
	static const char *const vars[] = { "LD_PRELOAD", "PREFETCH_DISABLE", "PREFETCH_WINDOW",
					    "PREFETCH_CHUNK", "PREFETCH_THREADS",
					    "PREFETCH_MIN_SEQUENTIAL", "PREFETCH_SKIP_CACHED",
					    "PREFETCH_MAX_MEMORY" };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	if (!with_lib) {
		unsetenv("PREFETCH_STATS");
		return;
	}
	/* PREFETCH_STATS and PREFETCH_DEBUG pass through from the caller. */
	setenv("LD_PRELOAD", c->lib, 1);
	setenv("PREFETCH_SKIP_CACHED", "0", 1);
	setenv("PREFETCH_CHUNK", c->chunk, 1);
	setenv("PREFETCH_WINDOW", c->window, 1);
	setenv("PREFETCH_THREADS", c->threads, 1);
	setenv("PREFETCH_MIN_SEQUENTIAL", c->minseq, 1);
	if (c->disabled)
		setenv("PREFETCH_DISABLE", "1", 1);
}

static void append_bytes(struct capture *cap, const char *data, size_t n, size_t *cap_size)
{
	if (cap->len + n + 1 > *cap_size) {
		while (cap->len + n + 1 > *cap_size)
			*cap_size *= 2;
		cap->data = realloc(cap->data, *cap_size);
		if (!cap->data)
			die("out of memory");
	}
	memcpy(cap->data + cap->len, data, n);
	cap->len += n;
	cap->data[cap->len] = '\0';
}

/* Runs this program on the sequence (only: NULL for all), with or without
 * the library, and captures its output. stderr goes to DIR/stderr.*. */
static void run_trace(const struct config *c, bool with_lib, const char *only,
		      struct capture *cap)
{
	int pipefd[2];
	char name[] = "difftest", seed[40], ops[40], dir[PATH_MAX + 8], errpath[PATH_MAX];
	size_t onlysize = strlen(only ? only : "") + 8;
	char *onlyarg = xmalloc(onlysize);
	snprintf(seed, sizeof(seed), "--seed=%" PRIu64, c->seed);
	snprintf(ops, sizeof(ops), "--ops=%d", c->nops);
	snprintf(dir, sizeof(dir), "--dir=%s", c->dir);
	snprintf(onlyarg, onlysize, "--only=%s", only ? only : "");
	snprintf(errpath, sizeof(errpath), "%s/stderr.%s", c->dir, with_lib ? "lib" : "plain");
	char rw[] = "--rewrite";
	char *argv[8] = { name, seed, ops, dir };
	int argc = 4;
	if (only)
		argv[argc++] = onlyarg;
	if (c->rewrite)
		argv[argc++] = rw;
	argv[argc] = NULL;

	fflush(stdout);
	if (pipe(pipefd) != 0)
		die("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(pipefd[1], STDOUT_FILENO);
		if (errfd >= 0)
			dup2(errfd, STDERR_FILENO);
		close(pipefd[0]);
		set_child_env(c, with_lib);
		alarm((unsigned)c->timeout); /* a hang shows as SIGALRM */
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(pipefd[1]);
	size_t size = 1 << 16;
	char block[1 << 16];
	ssize_t n;
	cap->data = xmalloc(size);
	cap->len = 0;
	cap->data[0] = '\0';
	while ((n = read(pipefd[0], block, sizeof(block))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read from the trace: %s", strerror(errno));
		}
		append_bytes(cap, block, (size_t)n, &size);
	}
	close(pipefd[0]);
	free(onlyarg);
	while (waitpid(pid, &cap->status, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
}

static void status_text(int status, char *s, size_t size)
{
	if (WIFEXITED(status))
		snprintf(s, size, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(s, size, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(s, size, "status %#x", status);
}

struct difference {
	long line;             /* 1-based; past the end for an exit status difference */
	const char *a, *b;     /* the lines (NULL: output ended) */
	int alen, blen;
	int op;                /* the operation the difference shows in */
};

static int line_op(const char *line)
{
	return line && *line >= '0' && *line <= '9' ? atoi(line) : INT_MAX;
}

/* Compares two captures line by line: true if they differ. */
static bool compare(const struct capture *a, const struct capture *b, struct difference *d)
{
	const char *p = a->data, *q = b->data;
	int last_op = 0;
	d->line = 1;
	for (;;) {
		const char *pe = strchr(p, '\n'), *qe = strchr(q, '\n');
		size_t pl = pe ? (size_t)(pe - p) : strlen(p), ql = qe ? (size_t)(qe - q) : strlen(q);
		bool pend = !*p, qend = !*q;
		if (pend && qend)
			break;
		if (pend || qend || pl != ql || memcmp(p, q, pl) != 0) {
			d->a = pend ? NULL : p;
			d->b = qend ? NULL : q;
			d->alen = (int)pl;
			d->blen = (int)ql;
			d->op = line_op(d->a) < line_op(d->b) ? line_op(d->a) : line_op(d->b);
			if (d->op == INT_MAX)
				d->op = last_op;
			return true;
		}
		if (line_op(p) != INT_MAX)
			last_op = line_op(p);
		p += pl + (pe != NULL);
		q += ql + (qe != NULL);
		d->line++;
	}
	if (a->status != b->status) {
		d->a = d->b = NULL;
		d->alen = d->blen = 0;
		d->op = last_op;
		return true;
	}
	return false;
}

static void print_difference(const struct difference *d, const struct capture *plain,
			     const struct capture *lib)
{
	char sa[80], sb[80];
	status_text(plain->status, sa, sizeof(sa));
	status_text(lib->status, sb, sizeof(sb));
	printf("  first difference: line %ld, in operation %d\n", d->line, d->op);
	printf("  without the library: %.*s%s\n", d->alen, d->a ? d->a : "",
	       d->a ? "" : "(end of output)");
	printf("  with the library:    %.*s%s\n", d->blen, d->b ? d->b : "",
	       d->b ? "" : "(end of output)");
	printf("  exit: without %s, with %s\n", sa, sb);
}

/* A list of operation indices, and its --only form. */
struct oplist {
	int *idx;
	int n;
};

static char *oplist_text(const struct oplist *l)
{
	size_t size = (size_t)l->n * 12 + 1;
	char *s = xmalloc(size), *p = s;
	*s = '\0';
	for (int i = 0; i < l->n;) {
		int j = i;
		while (j + 1 < l->n && l->idx[j + 1] == l->idx[j] + 1)
			j++;
		p += sprintf(p, "%s%d", i ? "," : "", l->idx[i]);
		if (j > i)
			p += sprintf(p, "%s%d", j > i + 1 ? "-" : ",", l->idx[j]);
		i = j + 1;
	}
	return s;
}

static int checks; /* runs of the pair while minimising, for the report */

/* Does the subset still differ? The plain run is deterministic; the run
 * with the library is tried several times, since a race may be involved. */
static bool still_differs(const struct config *c, const struct oplist *l)
{
	char *only = oplist_text(l);
	struct capture plain, lib;
	struct difference d;
	bool differs = false;
	checks++;
	run_trace(c, false, only, &plain);
	for (int t = 0; t < c->tries && !differs; t++) {
		run_trace(c, true, only, &lib);
		differs = compare(&plain, &lib, &d);
		free(lib.data);
	}
	free(plain.data);
	free(only);
	return differs;
}

/* ddmin, removing complements: tries to drop ever smaller slices of the
 * list while the difference stays. */
static void delta_debug(const struct config *c, struct oplist *l, int budget)
{
	int parts = 2;
	int *save = xmalloc((size_t)l->n * sizeof(int));
	while (l->n >= 2 && checks < budget) {
		int slice = (l->n + parts - 1) / parts;
		bool reduced = false;
		for (int start = 0; start < l->n && checks < budget; start += slice) {
			int end = start + slice < l->n ? start + slice : l->n;
			struct oplist cand = { save, 0 };
			for (int i = 0; i < l->n; i++)
				if (i < start || i >= end)
					cand.idx[cand.n++] = l->idx[i];
			if (cand.n == 0 || !still_differs(c, &cand))
				continue;
			memcpy(l->idx, cand.idx, (size_t)cand.n * sizeof(int));
			l->n = cand.n;
			parts = parts > 2 ? parts - 1 : 2;
			reduced = true;
			break;
		}
		if (!reduced) {
			if (parts >= l->n)
				break;
			parts = parts * 2 < l->n ? parts * 2 : l->n;
		}
	}
	free(save);
}

static void print_command(const struct config *c, const char *self, const char *only)
{
	printf("  %s --run-diff --lib=%s --dir=%s --seed=%" PRIu64 " --ops=%d%s%s"
	       " --chunk=%s --window=%s --threads=%s --min-seq=%s%s%s\n",
	       self, c->lib, c->dir, c->seed, c->nops, only ? " --only=" : "", only ? only : "",
	       c->chunk, c->window, c->threads, c->minseq, c->disabled ? " --disabled" : "",
	       c->rewrite ? " --rewrite" : "");
	printf("  trace alone: env LD_PRELOAD=%s PREFETCH_SKIP_CACHED=0 PREFETCH_CHUNK=%s "
	       "PREFETCH_WINDOW=%s PREFETCH_THREADS=%s PREFETCH_MIN_SEQUENTIAL=%s%s "
	       "%s --dir=%s --seed=%" PRIu64 " --ops=%d%s%s%s\n",
	       c->lib, c->chunk, c->window, c->threads, c->minseq,
	       c->disabled ? " PREFETCH_DISABLE=1" : "", self, c->dir, c->seed, c->nops,
	       only ? " --only=" : "", only ? only : "", c->rewrite ? " --rewrite" : "");
}

/* The difference is there: shortest failing prefix first (the operations
 * up to the one where the outputs part), then ddmin. */
static void minimise(const struct config *c, const bool *sel, int first_op, const char *self,
		     const struct op *ops)
{
	struct oplist l = { xmalloc((size_t)c->nops * sizeof(int)), 0 };
	for (int i = 0; i < c->nops && i <= first_op; i++)
		if (sel[i])
			l.idx[l.n++] = i;
	printf("minimising (%d operations up to the first difference)...\n", l.n);
	fflush(stdout);
	if (!still_differs(c, &l)) {
		printf("  the prefix up to operation %d does not reproduce it every time: "
		       "a race; trying the whole sequence\n", first_op);
		l.n = 0;
		for (int i = 0; i < c->nops; i++)
			if (sel[i])
				l.idx[l.n++] = i;
		if (!still_differs(c, &l)) {
			printf("  NOT REPRODUCED in %d more tries: intermittent\n", c->tries);
			free(l.idx);
			return;
		}
	}
	delta_debug(c, &l, 400);
	char *only = oplist_text(&l);
	printf("minimal sequence: %d operations (%d checks):\n", l.n, checks);
	for (int i = 0; i < l.n; i++) {
		char desc[160];
		describe(&ops[l.idx[i]], desc, sizeof(desc));
		printf("  %d %s\n", l.idx[i], desc);
	}
	printf("reproduce:\n");
	print_command(c, self, only);

	struct capture plain, lib;
	struct difference d;
	run_trace(c, false, only, &plain);
	for (int t = 0; t < c->tries; t++) {
		run_trace(c, true, only, &lib);
		if (compare(&plain, &lib, &d)) {
			print_difference(&d, &plain, &lib);
			free(lib.data);
			break;
		}
		free(lib.data);
	}
	free(plain.data);
	free(only);
	free(l.idx);
}

static int run_diff(struct config *c, const char *only, const char *self, const struct op *ops,
		    const bool *sel)
{
	struct capture plain, lib;
	struct difference d;
	choose_settings(c);
	run_trace(c, false, only, &plain);
	if (!WIFEXITED(plain.status) || WEXITSTATUS(plain.status) != 0) {
		char s[80];
		status_text(plain.status, s, sizeof(s));
		fprintf(stderr, "difftest: the run without the library failed (%s); see %s/stderr.plain\n",
			s, c->dir);
		return 2;
	}
	run_trace(c, true, only, &lib);
	bool differs = compare(&plain, &lib, &d);
	if (!differs) {
		long lines = 0;
		for (const char *p = plain.data; *p; p++)
			lines += *p == '\n';
		printf("seed %" PRIu64 ": same (%d operations, %ld lines; chunk=%s window=%s "
		       "threads=%s min-seq=%s%s)\n", c->seed, c->nops, lines, c->chunk, c->window,
		       c->threads, c->minseq, c->disabled ? " disabled" : "");
		free(plain.data);
		free(lib.data);
		return 0;
	}
	printf("DIFFERENCE: seed %" PRIu64 ", %d operations, chunk=%s window=%s threads=%s "
	       "min-seq=%s%s\n", c->seed, c->nops, c->chunk, c->window, c->threads, c->minseq,
	       c->disabled ? " disabled" : "");
	print_difference(&d, &plain, &lib);
	print_command(c, self, only);
	free(plain.data);
	free(lib.data);
	minimise(c, sel, d.op, self, ops);
	return 1;
}

/* --- main ------------------------------------------------------------------------------------- */

static void usage(void)
{
	fputs("usage: difftest --dir=D --seed=S [--ops=N] [--only=LIST]\n"
	      "       difftest --describe --seed=S [--ops=N] [--only=LIST]\n"
	      "       difftest --run-diff --lib=PATH --dir=D --seed=S [--ops=N] [--only=LIST]\n"
	      "                [--disabled] [--rewrite] [--chunk=N] [--window=N] [--threads=N]\n"
	      "                [--min-seq=N]\n"
	      "                [--tries=N] [--timeout=SECONDS]\n", stderr);
	exit(2);
}

static void copy_opt(char *dst, size_t size, const char *v)
{
	snprintf(dst, size, "%s", v);
}

int main(int argc, char **argv)
{
	struct config c = { .nops = 150, .tries = 3, .timeout = 120 };
	const char *only = NULL, *v;
	bool diff = false, desc = false, have_seed = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((v = opt_value(a, "seed"))) {
			c.seed = strtoull(v, NULL, 0);
			have_seed = true;
		} else if ((v = opt_value(a, "ops"))) {
			c.nops = (int)parse_size(v);
		} else if ((v = opt_value(a, "dir"))) {
			c.dir = v;
		} else if ((v = opt_value(a, "only"))) {
			only = v;
		} else if ((v = opt_value(a, "lib"))) {
			c.lib = v;
		} else if ((v = opt_value(a, "chunk"))) {
			copy_opt(c.chunk, sizeof(c.chunk), v);
		} else if ((v = opt_value(a, "window"))) {
			copy_opt(c.window, sizeof(c.window), v);
		} else if ((v = opt_value(a, "threads"))) {
			copy_opt(c.threads, sizeof(c.threads), v);
		} else if ((v = opt_value(a, "min-seq"))) {
			copy_opt(c.minseq, sizeof(c.minseq), v);
		} else if ((v = opt_value(a, "tries"))) {
			c.tries = (int)parse_size(v);
		} else if ((v = opt_value(a, "timeout"))) {
			c.timeout = (int)parse_size(v);
		} else if (strcmp(a, "--run-diff") == 0) {
			diff = true;
		} else if (strcmp(a, "--describe") == 0) {
			desc = true;
		} else if (strcmp(a, "--disabled") == 0) {
			c.disabled = true;
		} else if (strcmp(a, "--rewrite") == 0) {
			c.rewrite = rewrite_mode = true;
		} else {
			usage();
		}
	}
	if (!have_seed || c.nops < 1 || (!desc && !c.dir) || (diff && !c.lib) || c.tries < 1)
		usage();

	files_plan(&run.fs, c.seed);
	struct op *ops = xmalloc((size_t)c.nops * sizeof(*ops));
	bool *sel = xmalloc((size_t)c.nops * sizeof(*sel));
	generate(ops, c.nops, c.seed, run.fs.n);
	if (only)
		parse_only(only, sel, c.nops);
	else
		memset(sel, 1, (size_t)c.nops * sizeof(*sel));

	int status = 0;
	if (diff) {
		status = run_diff(&c, only, argv[0], ops, sel);
	} else if (desc) {
		for (int i = 0; i < c.nops; i++) {
			char d[160];
			describe(&ops[i], d, sizeof(d));
			if (sel[i])
				printf("%d %s\n", i, d);
		}
	} else {
		run.dir = c.dir;
		run_sequence(ops, sel, c.nops);
	}
	/* Freed, so that LeakSanitizer (configure --enable-sanitizers) finds
	 * nothing of ours left at exit. */
	free(sel);
	free(ops);
	return status;
}
