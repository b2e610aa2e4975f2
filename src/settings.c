#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "settings.h"

static struct pf_settings settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

int pf_parse_size(const char *text, unsigned long long *out)
{
	char *end;
	errno = 0;
	if (!text || !*text || *text == '-')
		return -1;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno || end == text)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end == 'i' && shift)   /* accept "64Ki", "8MiB" */
		end++;
	if ((*end == 'b' || *end == 'B') && shift)
		end++;
	if (*end != '\0' || (shift && value > (~0ULL >> shift)))
		return -1;
	*out = value << shift;
	return 0;
}

/* "8M" for 8388608, "64K", or the number of bytes: messages in the units
 * the user writes. */
static const char *size_text(char *buf, size_t size, unsigned long long bytes)
{
	if (bytes && bytes % PF_GIB == 0)
		snprintf(buf, size, "%lluG", bytes / PF_GIB);
	else if (bytes && bytes % PF_MIB == 0)
		snprintf(buf, size, "%lluM", bytes / PF_MIB);
	else if (bytes && bytes % PF_KIB == 0)
		snprintf(buf, size, "%lluK", bytes / PF_KIB);
	else
		snprintf(buf, size, "%llu", bytes);
	return buf;
}

/* One variable, one parse: the default when unset or empty, the default and
 * one warning when malformed, the nearest bound and one warning when out of
 * range. *given (when not NULL) says whether the value came from the
 * environment. */
static unsigned long long read_number(const char *name, unsigned long long def,
				      unsigned long long min, unsigned long long max,
				      int (*parse)(const char *, unsigned long long *), bool *given)
{
	const char *text = secure_getenv(name);
	unsigned long long value;
	if (given)
		*given = false;
	if (!text || !*text)
		return def;
	if (parse(text, &value) != 0) {
		pf_log_always("%s=\"%s\" is not valid; using the default %llu", name, text, def);
		return def;
	}
	if (given)
		*given = true;
	if (value < min || value > max) {
		unsigned long long clamped = value < min ? min : max;
		pf_log_always("%s=%s is out of range [%llu, %llu]; using %llu", name, text,
			      min, max, clamped);
		return clamped;
	}
	return value;
}

static int parse_count(const char *text, unsigned long long *out)
{
	char *end;
	errno = 0;
	if (!text || !*text || *text == '-')
		return -1;
	*out = strtoull(text, &end, 10);
	return (errno || end == text || *end != '\0') ? -1 : 0;
}

/* ASCII only: the words are English whatever the locale (tr_TR's "I"). */
static bool same_word(const char *text, const char *word)
{
	for (; *word; text++, word++) {
		char c = *text;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != *word)
			return false;
	}
	return *text == '\0';
}

/* 1 for 1/yes/true/on, 0 for 0/no/false/off (any case), -1 for anything else. */
static int parse_bool(const char *text)
{
	static const char *const words[][2] = {
		{ "0", "1" }, { "no", "yes" }, { "false", "true" }, { "off", "on" },
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		for (int v = 0; v < 2; v++)
			if (same_word(text, words[i][v]))
				return v;
	return -1;
}

#define PF_BOOL_WORDS "1/0, yes/no, true/false, on/off"

/* A boolean variable: def when unset or empty; invalid when it is none of the
 * words, with one warning naming what is used instead. */
static bool read_flag(const char *name, bool def, bool invalid, const char *invalid_means)
{
	const char *text = secure_getenv(name);
	if (!text || !*text)
		return def;
	int v = parse_bool(text);
	if (v >= 0)
		return v;
	pf_log_always("%s=\"%s\" is not one of " PF_BOOL_WORDS "; %s", name, text, invalid_means);
	return invalid;
}

/* PREFETCH_PARALLEL: auto (measured per filesystem), or a boolean word: 1
 * reads ahead in parallel, 0 in order, one read at a time. */
static void read_parallel(void)
{
	const char *text = secure_getenv("PREFETCH_PARALLEL");
	settings.parallel = PF_PARALLEL_AUTO;
	if (!text || !*text || same_word(text, "auto"))
		return;
	int v = parse_bool(text);
	if (v < 0)
		pf_log_always("PREFETCH_PARALLEL=\"%s\" is not auto nor one of " PF_BOOL_WORDS
			      "; measuring (auto)", text);
	else
		settings.parallel = v;
}

/* PREFETCH_STATS: a boolean word (1: stderr), else a path. A number other
 * than 0 and 1 is taken for a mistyped boolean, not for a file "./2"; and
 * /dev/stderr, a symbolic link that the file rule would refuse, means stderr. */
static void read_stats(void)
{
	const char *text = secure_getenv("PREFETCH_STATS");
	if (!text || !*text)
		return;
	int v = parse_bool(text);
	if (v >= 0) {
		settings.stats = v;
		return;
	}
	if (text[strspn(text, "0123456789")] == '\0') {
		pf_log_always("PREFETCH_STATS=%s: not a file name (write ./%s for one); "
			      "statistics go to stderr", text, text);
		settings.stats = 1;
		return;
	}
	if (strcmp(text, "/dev/stderr") == 0 || strcmp(text, "/dev/fd/2") == 0 ||
	    strcmp(text, "/proc/self/fd/2") == 0) {
		settings.stats = 1;
		return;
	}
	if (strlen(text) >= sizeof(settings.stats_path)) {
		pf_log_always("PREFETCH_STATS path is too long; statistics go to stderr");
		settings.stats = 1;
		return;
	}
	strcpy(settings.stats_path, text);
	settings.stats = 2;
}

/* Lowers *value to limit; a value the user set, with one warning. */
static void fit_size(size_t *value, size_t limit, bool given, const char *name,
		     const char *limit_name, const char *using)
{
	if (*value <= limit)
		return;
	char a[32], b[32];
	if (given)
		pf_log_always("%s=%s is larger than %s (%s); using %s %s", name,
			      size_text(a, sizeof(a), *value), limit_name,
			      size_text(b, sizeof(b), limit), using, b);
	*value = limit;
}

/* What one stream needs must fit what it may use: chunk <= window <=
 * PREFETCH_MAX_MEMORY, or the workers could not allocate a single chunk.
 * A default gives way silently. */
static void fit_sizes(bool window_given, bool chunk_given)
{
	fit_size(&settings.window, settings.max_memory, window_given, "PREFETCH_WINDOW",
		 "PREFETCH_MAX_MEMORY", "a window of");
	fit_size(&settings.chunk, settings.window, chunk_given, "PREFETCH_CHUNK", "the window",
		 "chunks of");
}

static void read_all(void)
{
	bool window_given, chunk_given;
	settings.debug = (int)read_number("PREFETCH_DEBUG", 0, 0, PF_LOG_TRACE, parse_count, NULL);
	pf_log_level = settings.debug;
	/* Whoever set PREFETCH_DISABLE at all meant the library off. */
	settings.disabled = read_flag("PREFETCH_DISABLE", false, true, "the library stays off");
	settings.window = read_number("PREFETCH_WINDOW", PF_WINDOW_DEFAULT, PF_WINDOW_MIN,
				      PF_WINDOW_MAX, pf_parse_size, &window_given);
	settings.chunk = read_number("PREFETCH_CHUNK", PF_CHUNK_DEFAULT, PF_CHUNK_MIN,
				     PF_CHUNK_MAX, pf_parse_size, &chunk_given);
	settings.threads = (unsigned)read_number("PREFETCH_THREADS", PF_THREADS_DEFAULT,
						 PF_THREADS_MIN, PF_THREADS_MAX, parse_count, NULL);
	settings.max_memory = read_number("PREFETCH_MAX_MEMORY", PF_MAX_MEMORY_DEFAULT,
					  PF_MAX_MEMORY_MIN, PF_MAX_MEMORY_MAX, pf_parse_size, NULL);
	settings.min_sequential = (unsigned)read_number("PREFETCH_MIN_SEQUENTIAL",
							PF_MIN_SEQUENTIAL_DEFAULT,
							PF_MIN_SEQUENTIAL_MIN,
							PF_MIN_SEQUENTIAL_MAX, parse_count, NULL);
	settings.skip_cached = read_flag("PREFETCH_SKIP_CACHED", true, true, "using the default 1");
	settings.block_devices = read_flag("PREFETCH_BLOCK_DEVICES", false, false,
					   "using the default 0");
	settings.mmap = read_flag("PREFETCH_MMAP", PF_MMAP_DEFAULT, PF_MMAP_DEFAULT,
				  PF_MMAP_DEFAULT ? "using the default 1" : "using the default 0");
	settings.files = read_flag("PREFETCH_FILES", true, true, "using the default 1");
	settings.shared_budget = read_flag("PREFETCH_SHARED_BUDGET", PF_SHARED_BUDGET_DEFAULT,
					   PF_SHARED_BUDGET_DEFAULT,
					   PF_SHARED_BUDGET_DEFAULT ? "using the default 1"
								    : "using the default 0");
	read_parallel();
	read_stats();
	fit_sizes(window_given, chunk_given);
}

const struct pf_settings *pf_settings(void)
{
	pthread_once(&settings_once, read_all);
	return &settings;
}
