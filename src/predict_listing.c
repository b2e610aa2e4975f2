/* Guessing the next files from the directory listings a program read
 * (see predict.h): their regular files, in listing order, or in sorted
 * order once the program keeps to that one. Runs under pf_pred_lock. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "engine.h"
#include "fileahead.h"
#include "predict_source.h"
#include "runtime.h"
#include "settings.h"

/* Listings remembered (the most recently used), and names per listing. */
#define PF_LISTINGS 16u
#define PF_LISTING_MAX 65536u

/* The regular files (or unknown types) of one directory listing, in the
 * order readdir returned them. Names are packed in one arena; the hash of
 * them is built when first needed, so that a program that lists and opens
 * nothing (ls, find -name) pays only the copy. */
struct listing {
	DIR *dirp;          /* being read; NULL once closed */
	bool complete;      /* readdir reached its end */
	unsigned id;        /* source id, never reused */
	char *dir;          /* absolute path of the directory, NULL: unusable */
	size_t dirlen;
	char *arena;
	size_t arena_len, arena_cap;
	uint32_t *offs;     /* name i is arena + offs[i] */
	unsigned n, cap;
	uint32_t *hash;     /* index + 1, 0 for empty; nhash slots */
	unsigned nhash, hashed;
	struct order order; /* the program's opens in listing order */
	/* Sorted order (rsync, ls-like programs): by_rank[r] is the index of
	 * the r-th name by strcmp, rank[i] the rank of name i; built when
	 * first needed, for the ranked first names. */
	uint32_t *by_rank, *rank;
	unsigned ranked;
	struct order sorted;
	bool by_name;       /* predicting in sorted order */
	uint64_t used;      /* for replacing the least recently used */
};

static struct listing lists[PF_LISTINGS];
static unsigned next_id = PF_ARGV_SOURCE + 1;
static uint64_t tick;
static unsigned live_listings;
/* Set once a listing's guess was confirmed: from then on the first files
 * of each new listing are fetched as soon as it is read (grep -r, os.walk). */
static bool listing_reader;


static const char *name_at(const struct listing *l, unsigned i)
{
	return l->arena + l->offs[i];
}

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

static void hash_insert(struct listing *l, unsigned i)
{
	unsigned mask = l->nhash - 1;
	unsigned k = name_hash(name_at(l, i)) & mask;
	while (l->hash[k])
		k = (k + 1) & mask;
	l->hash[k] = i + 1;
}

/* Brings the hash up to the names read so far; false when out of memory. */
static bool hash_update(struct listing *l)
{
	if (l->hashed == l->n)
		return true;
	if (l->nhash < 2 * l->n) {
		unsigned size = 64;
		while (size < 2 * l->n)
			size *= 2;
		uint32_t *h = calloc(size, sizeof(*h));
		if (!h)
			return false;
		free(l->hash);
		l->hash = h;
		l->nhash = size;
		l->hashed = 0;
	}
	for (; l->hashed < l->n; l->hashed++)
		hash_insert(l, l->hashed);
	return true;
}

static int listing_find(struct listing *l, const char *name)
{
	if (!hash_update(l))
		return -1;
	unsigned mask = l->nhash - 1;
	for (unsigned k = name_hash(name) & mask; l->hash[k]; k = (k + 1) & mask)
		if (strcmp(name_at(l, l->hash[k] - 1), name) == 0)
			return (int)l->hash[k] - 1;
	return -1;
}

static bool listing_live(const struct listing *l)
{
	return l->dir && !(l->order.off && l->sorted.off);
}

static void listing_free(struct listing *l)
{
	if (listing_live(l))
		__atomic_sub_fetch(&live_listings, 1, __ATOMIC_RELAXED);
	if (l->id)
		pf_ahead_passed(l->id, UINT_MAX);
	free(l->dir);
	free(l->arena);
	free(l->offs);
	free(l->hash);
	free(l->by_rank);
	free(l->rank);
	memset(l, 0, sizeof(*l));
}

static void listing_give_up(struct listing *l)
{
	if (listing_live(l))
		__atomic_sub_fetch(&live_listings, 1, __ATOMIC_RELAXED);
	l->order.off = l->sorted.off = true;
	pf_ahead_passed(l->id, UINT_MAX);
	/* New listings are no longer read ahead of their first open. */
	listing_reader = false;
}

static const struct listing *sorting; /* for by_name_cmp (pf_pred_lock held) */

static int by_name_cmp(const void *a, const void *b)
{
	return strcmp(name_at(sorting, *(const uint32_t *)a), name_at(sorting, *(const uint32_t *)b));
}

/* The rank of name i in sorted order, -1 when out of memory. */
static int listing_rank(struct listing *l, int i)
{
	if (l->ranked != l->n) {
		uint32_t *by_rank = realloc(l->by_rank, l->n * sizeof(*by_rank));
		if (by_rank)
			l->by_rank = by_rank;
		uint32_t *rank = by_rank ? realloc(l->rank, l->n * sizeof(*rank)) : NULL;
		if (rank)
			l->rank = rank;
		if (!by_rank || !rank)
			return -1;
		for (unsigned k = 0; k < l->n; k++)
			by_rank[k] = k;
		sorting = l;
		qsort(by_rank, l->n, sizeof(*by_rank), by_name_cmp);
		for (unsigned r = 0; r < l->n; r++)
			rank[by_rank[r]] = r;
		l->ranked = l->n;
	}
	return (int)l->rank[i];
}

static struct listing *listing_of(DIR *dirp)
{
	for (unsigned i = 0; i < PF_LISTINGS; i++)
		if (lists[i].dirp == dirp)
			return &lists[i];
	return NULL;
}

/* The absolute path of the directory being read, as the kernel names it. */
static char *dir_path(DIR *dirp)
{
	char buf[PATH_MAX];
	if (!pf_fd_path(dirfd(dirp), buf, sizeof(buf)) || buf[0] != '/')
		return NULL;
	if (buf[1] == '\0')
		buf[0] = '\0'; /* the root: names join as "/name" */
	return strdup(buf);
}

/* A listing for a directory the program starts reading, in place of the
 * least recently used one. */
static struct listing *listing_new(DIR *dirp)
{
	struct listing *l = &lists[0];
	for (unsigned i = 1; i < PF_LISTINGS; i++)
		if (lists[i].used < l->used)
			l = &lists[i];
	listing_free(l);
	l->dirp = dirp;
	l->id = next_id++;
	l->order.last = l->sorted.last = -1;
	l->used = ++tick;
	/* On a local disk nothing is fetched ahead (pf_predict_opened): the
	 * listing is not kept, which costs a directory one fstat. */
	struct stat st;
	if (fstat(dirfd(dirp), &st) != 0 || (major(st.st_dev) != 0 && !pf_settings()->block_devices))
		return l;
	l->dir = dir_path(dirp);
	if (l->dir) {
		l->dirlen = strlen(l->dir);
		__atomic_add_fetch(&live_listings, 1, __ATOMIC_RELAXED);
	}
	return l;
}

static bool grow(void **p, size_t *cap, size_t need, size_t unit)
{
	if (need <= *cap)
		return true;
	size_t size = *cap ? *cap : 64;
	while (size < need)
		size *= 2;
	void *q = realloc(*p, size * unit);
	if (!q)
		return false;
	*p = q;
	*cap = size;
	return true;
}

static void listing_add(struct listing *l, const char *name)
{
	size_t len = strlen(name) + 1;
	size_t cap = l->cap;
	if (l->n >= PF_LISTING_MAX || l->arena_len + len > UINT32_MAX ||
	    !grow((void **)&l->offs, &cap, l->n + 1, sizeof(*l->offs)) ||
	    !grow((void **)&l->arena, &l->arena_cap, l->arena_len + len, 1))
		return;
	l->cap = (unsigned)cap;
	memcpy(l->arena + l->arena_len, name, len);
	l->offs[l->n++] = (uint32_t)l->arena_len;
	l->arena_len += len;
}

/* Asks for the files of l after position pos (none yet: -1) of the order
 * it predicts in. */
static void listing_predict(struct listing *l, int pos)
{
	char path[PATH_MAX];
	unsigned n = l->by_name ? l->ranked : l->n;
	for (unsigned j = (unsigned)(pos + 1); j < n && j <= (unsigned)(pos + (int)PF_FILES_AHEAD); j++) {
		unsigned i = l->by_name ? l->by_rank[j] : j;
		if (!pf_path_join(path, sizeof(path), l->dir, l->dirlen, name_at(l, i)))
			continue;
		if (!pf_ahead_want(l->id, j, path))
			return;
	}
}

/* Entries that may be regular files: symbolic links are followed by the
 * program and by the fetch alike; the fetch itself opens regular files only. */
static bool may_be_file(const char *name, unsigned char type)
{
	if (type != DT_REG && type != DT_UNKNOWN && type != DT_LNK)
		return false;
	return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* A hook's way in (pf_enter, then pf_pred_lock) and out. */
static struct pf_entry listings_enter(void)
{
	struct pf_entry entry = pf_enter();
	pthread_mutex_lock(&pf_pred_lock);
	return entry;
}

static void listings_leave(struct pf_entry entry)
{
	pthread_mutex_unlock(&pf_pred_lock);
	pf_leave(entry);
}

void pf_files_dir_entry(DIR *dirp, const char *name, unsigned char type)
{
	if (!pf_files_enabled())
		return;
	struct pf_entry entry = listings_enter();
	struct listing *l = listing_of(dirp);
	if (!name) {
		if (l && !l->complete && listing_live(l) && listing_reader && l->order.last < 0)
			listing_predict(l, -1);
		if (l)
			l->complete = true;
	} else if (may_be_file(name, type)) {
		if (!l)
			l = listing_new(dirp);
		if (!l->complete && listing_live(l))
			listing_add(l, name);
	}
	listings_leave(entry);
}

void pf_files_dir_closing(DIR *dirp)
{
	if (!pf_files_enabled())
		return;
	struct pf_entry entry = listings_enter();
	struct listing *l = listing_of(dirp);
	if (l) {
		l->dirp = NULL; /* the address may be reused by the next opendir */
		l->complete = true;
	}
	listings_leave(entry);
}

/* The program opened name i of l: follow it in listing order, or in sorted
 * order once that is the one it keeps to. */
static void listing_step(struct listing *l, int i)
{
	int r = listing_rank(l, i);
	/* A guess was right: the next file in one of the orders. */
	bool confirmed = (l->order.last >= 0 && i == l->order.last + 1) ||
			 (r >= 0 && l->sorted.last >= 0 && r == l->sorted.last + 1);
	bool in_list = pf_order_step(&l->order, i);
	bool in_name = r >= 0 && pf_order_step(&l->sorted, r);
	if (r < 0)
		l->sorted.off = true;
	if (l->order.off && l->sorted.off) {
		listing_give_up(l);
		return;
	}
	if (in_name != in_list) {
		bool by_name = in_name;
		if (by_name != l->by_name)
			pf_ahead_passed(l->id, UINT_MAX); /* positions of the other order */
		l->by_name = by_name;
	}
	if (confirmed)
		listing_reader = true;
	int pos = l->by_name ? r : i;
	pf_ahead_passed(l->id, (unsigned)pos);
	if (l->by_name ? in_name : in_list)
		listing_predict(l, pos);
}

bool pf_listings_live(void)
{
	return __atomic_load_n(&live_listings, __ATOMIC_RELAXED) != 0;
}

void pf_listing_opened(int fd)
{
	char real[PATH_MAX];
	if (!pf_fd_path(fd, real, sizeof(real)))
		return;
	char *slash = strrchr(real, '/');
	if (!slash)
		return;
	size_t dirlen = (size_t)(slash - real);
	const char *name = slash + 1;
	for (unsigned k = 0; k < PF_LISTINGS; k++) {
		struct listing *l = &lists[k];
		if (!listing_live(l) || l->dirlen != dirlen || memcmp(l->dir, real, dirlen) != 0)
			continue;
		int i = listing_find(l, name);
		if (i < 0)
			continue;
		l->used = ++tick;
		listing_step(l, i);
		return;
	}
}
