#include "config.h"

#include <errno.h>
#include <pthread.h>
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

/* One variable, one parse: the default when unset, the default and one
 * warning when malformed, the nearest bound and one warning when out of
 * range. */
static unsigned long long read_number(const char *name, unsigned long long def,
				      unsigned long long min, unsigned long long max,
				      int (*parse)(const char *, unsigned long long *))
{
	const char *text = secure_getenv(name);
	unsigned long long value;
	if (!text)
		return def;
	if (parse(text, &value) != 0) {
		pf_log_always("%s=\"%s\" is not valid; using the default %llu", name, text, def);
		return def;
	}
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

static bool read_flag(const char *name, bool def)
{
	return read_number(name, def, 0, 1, parse_count) != 0;
}

static void read_stats(void)
{
	const char *text = secure_getenv("PREFETCH_STATS");
	if (!text || !*text || strcmp(text, "0") == 0)
		return;
	if (strcmp(text, "1") == 0) {
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

static void read_all(void)
{
	settings.debug = (int)read_number("PREFETCH_DEBUG", 0, 0, PF_LOG_TRACE, parse_count);
	pf_log_level = settings.debug;
	settings.disabled = read_flag("PREFETCH_DISABLE", false);
	settings.window = read_number("PREFETCH_WINDOW", PF_WINDOW_DEFAULT, PF_WINDOW_MIN,
				      PF_WINDOW_MAX, pf_parse_size);
	settings.chunk = read_number("PREFETCH_CHUNK", PF_CHUNK_DEFAULT, PF_CHUNK_MIN,
				     PF_CHUNK_MAX, pf_parse_size);
	settings.threads = (unsigned)read_number("PREFETCH_THREADS", PF_THREADS_DEFAULT,
						 PF_THREADS_MIN, PF_THREADS_MAX, parse_count);
	settings.max_memory = read_number("PREFETCH_MAX_MEMORY", PF_MAX_MEMORY_DEFAULT,
					  PF_MAX_MEMORY_MIN, PF_MAX_MEMORY_MAX, pf_parse_size);
	settings.min_sequential = (unsigned)read_number("PREFETCH_MIN_SEQUENTIAL",
							PF_MIN_SEQUENTIAL_DEFAULT,
							PF_MIN_SEQUENTIAL_MIN,
							PF_MIN_SEQUENTIAL_MAX, parse_count);
	settings.skip_cached = read_flag("PREFETCH_SKIP_CACHED", true);
	settings.block_devices = read_flag("PREFETCH_BLOCK_DEVICES", false);
	settings.mmap = read_flag("PREFETCH_MMAP", PF_MMAP_DEFAULT);
	read_stats();
	/* A window smaller than one chunk would never schedule anything. */
	if (settings.window < settings.chunk) {
		pf_log_always("PREFETCH_WINDOW (%zu) is smaller than PREFETCH_CHUNK (%zu); "
			      "using one chunk", settings.window, settings.chunk);
		settings.window = settings.chunk;
	}
}

const struct pf_settings *pf_settings(void)
{
	pthread_once(&settings_once, read_all);
	return &settings;
}
