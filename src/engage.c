/* Which descriptors get a stream: the files that qualify (read-only regular
 * files on real storage), whether their data is already cached, and the
 * stream attached once a descriptor's reads have looked sequential. */
#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "libc.h"
#include "log.h"
#include "pagecache.h"
#include "stats.h"
#include "storage.h"
#include "stream.h"

/* Chunks and window on storage that bypasses the page cache. */
#define PF_UNCACHED_SCALE 2u

/* Only read-only regular files (the caller checked S_ISREG) on real
 * filesystems are prefetched. */
static bool is_candidate(int fd, dev_t dev)
{
	int flags = pf_libc.fcntl(fd, F_GETFL);
	if (flags < 0 || (flags & O_ACCMODE) != O_RDONLY || (flags & (O_DIRECT | O_PATH)))
		return false;
	return pf_fs_holds_data(fd, dev);
}

/* is_candidate, asked once per descriptor (slot lock held). */
bool pf_file_classified(struct pf_fd *slot, int fd, const struct stat *st)
{
	if (slot->flags & PF_FDF_CLASSIFIED)
		return true;
	if (!is_candidate(fd, st->st_dev))
		return false;
	slot->flags |= PF_FDF_CLASSIFIED;
	return true;
}

/* True when both ends of [from, to) are in the page cache: a read there
 * costs a copy, and a thread hop would only add to it (a second copy of
 * every byte: docs/benchmarks-engine.md). */
bool pf_range_cached(int fd, off64_t from, off64_t to)
{
	return pf_byte_cached(fd, from) == 1 && pf_byte_cached(fd, to - 1) == 1;
}

/* True when the program's reads so far, [from, to), left nothing in the
 * page cache: the file's reads bypass it (a FUSE direct_io file, say). There
 * each request is a round trip whatever its size, so larger requests pay;
 * through the page cache they cost (docs/benchmarks-engine.md). False when
 * the kernel will not tell. */
static bool bypasses_page_cache(int fd, off64_t from, off64_t to)
{
	uint64_t pages;
	return to > from && pf_pages_cached(fd, from, (uint64_t)(to - from), &pages) == 0 &&
	       pages == 0;
}

/* Files whose reads are never prefetched: anything but a regular file, and
 * (unless PREFETCH_BLOCK_DEVICES=1) files on a local block device, where the
 * kernel's own readahead already overlaps the IO with the program and a
 * second copy through our buffers would only cost. Network, FUSE and other
 * device-less filesystems have major 0. */
bool pf_excluded_file(const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		return true;
	if (!pf_settings()->block_devices && major(st->st_dev) != 0) {
		PF_STAT_ADD(block_device_skips, 1);
		return true;
	}
	return false;
}

/* Whether a stream of fd from *pos (-1: the file offset, looked up here)
 * has anything to overlap (slot lock held); fills *st. Marks the slot when
 * it never will, or for a while. */
static bool worth_reading_ahead(struct pf_fd *slot, int fd, const struct pf_settings *cfg,
				struct stat *st, off64_t *pos, bool backward)
{
	if (fstat(fd, st) != 0 || pf_excluded_file(st)) {
		slot->state = PF_FD_IGNORED;
		return false;
	}
	if (*pos < 0)
		*pos = pf_libc.lseek64(fd, 0, SEEK_CUR);
	if (*pos < 0 || (backward ? *pos : st->st_size - *pos) < (off64_t)cfg->chunk) {
		/* What is left fits in one request: nothing to overlap. Look
		 * again only after another run of sequential reads. */
		slot->flags &= (uint8_t)~PF_FDF_SEQ_ADVICE;
		return false;
	}
	return true;
}

/* Whether the first window of a stream at pos would be in the page cache:
 * the window past pos, or below it going backward. */
static bool window_cached(int fd, const struct pf_settings *cfg, const struct stat *st, off64_t pos,
			  bool backward)
{
	off64_t window = (off64_t)cfg->window;
	if (backward)
		return pf_range_cached(fd, pos > window ? pos - window : 0, pos);
	return pf_range_cached(fd, pos, pos + window < st->st_size ? pos + window : st->st_size);
}

/* A client that reads ahead of each handle itself (rclone) already has the
 * data of a program's next read: the read's time is the client's handling
 * of it. Reading ahead of it in order overlaps that with the program's
 * work between reads, and only adds a copy to a program that does little
 * between them (cat, md5sum: docs/benchmarks-storage.md). So the program's
 * reads are timed, per thread, one descriptor at a time: it works enough
 * when it spends 4 us or more per KiB read between its reads (250 MB/s:
 * md5sum runs at 500 here, gzip -dc and a Python reader at 100 or less).
 * The reads' own time is no guide: the first ones wait for the client's
 * stream to start. */
#define PF_PACE_READS 16u
#define PF_PACE_WORK_NS_PER_KIB 4000u

struct pace {
	int fd;
	unsigned reads;    /* timed after the first */
	uint64_t bytes;    /* they returned */
	uint64_t last_end; /* when the last one returned; 0 before the first */
	uint64_t read_ns;  /* in the reads */
	uint64_t gap_ns;   /* between them: the program's own work */
};

static __thread struct pace pace = { .fd = -1 };

void pf_pace_read(int fd, size_t got, uint64_t start, uint64_t end)
{
	if (pace.fd != fd)
		pace = (struct pace){ .fd = fd };
	if (pace.last_end && start >= pace.last_end && end >= start) {
		pace.gap_ns += start - pace.last_end;
		pace.read_ns += end - start;
		pace.bytes += got;
		pace.reads++;
	}
	pace.last_end = end;
}

enum pace_verdict { PACE_TIMING, PACE_CLIENT_KEEPS_UP, PACE_PROGRAM_WORKS };

/* What the timed reads of fd say; starts timing them (slot lock held). */
static enum pace_verdict pace_verdict(struct pf_fd *slot, int fd)
{
	if (!(slot->flags & PF_FDF_PACED)) {
		slot->flags |= PF_FDF_PACED;
		pace = (struct pace){ .fd = fd };
		return PACE_TIMING;
	}
	if (pace.fd != fd || pace.reads < PF_PACE_READS)
		return PACE_TIMING;
	PF_LOG(PF_LOG_INFO, "fd %d: %u reads of %llu KiB took %llu us, the program %llu us between them",
	       fd, pace.reads, (unsigned long long)(pace.bytes >> 10),
	       (unsigned long long)(pace.read_ns / 1000), (unsigned long long)(pace.gap_ns / 1000));
	return pace.gap_ns >= (pace.bytes >> 10) * PF_PACE_WORK_NS_PER_KIB ? PACE_PROGRAM_WORKS
									   : PACE_CLIENT_KEEPS_UP;
}

/* Whether reading ahead of a candidate file would only add a copy (slot
 * lock held): its data is cached, or its client reads ahead itself and the
 * program does little between reads (or that is not known yet). */
static bool nothing_to_gain(struct pf_fd *slot, int fd, const struct pf_settings *cfg,
			    const struct stat *st, off64_t pos, bool backward)
{
	if (cfg->skip_cached && window_cached(fd, cfg, st, pos, backward)) {
		slot->state = PF_FD_CACHED;
		slot->bypass_left = (uint32_t)cfg->window; /* <= PF_WINDOW_MAX */
		PF_STAT_ADD(cached_skips, 1);
		return true;
	}
	if (cfg->parallel != PF_PARALLEL_AUTO ||
	    pf_storage_mode(st->st_dev) != PF_STORAGE_CLIENT_READS_AHEAD)
		return false;
	switch (pace_verdict(slot, fd)) {
	case PACE_TIMING:
		return true;
	case PACE_CLIENT_KEEPS_UP:
		slot->state = PF_FD_IGNORED;
		PF_STAT_ADD(streams_stepped_aside, 1);
		return true;
	case PACE_PROGRAM_WORKS:
		break;
	}
	return false;
}

/* Chunks twice the size where reads bypass the page cache, only where the
 * doubled window fits the memory cap: a small PREFETCH_MAX_MEMORY keeps
 * chunks that it can hold. */
static unsigned chunk_scale(const struct pf_settings *cfg, bool uncached)
{
	if (uncached && cfg->window * PF_UNCACHED_SCALE <= cfg->max_memory &&
	    cfg->chunk * PF_UNCACHED_SCALE <= PF_CHUNK_MAX) {
		PF_STAT_ADD(streams_uncached, 1);
		return PF_UNCACHED_SCALE;
	}
	return 1;
}

/* Whether a descriptor's first stream may start (slot lock held); fills
 * *st and *pos. */
static bool may_engage(struct pf_fd *slot, int fd, const struct pf_settings *cfg,
		       struct stat *st, off64_t *pos, bool backward)
{
	if (!worth_reading_ahead(slot, fd, cfg, st, pos, backward))
		return false;
	if (!pf_file_classified(slot, fd, st)) {
		slot->state = PF_FD_IGNORED;
		PF_LOG(PF_LOG_TRACE, "fd %d: not a read-only regular file; ignored", fd);
		return false;
	}
	if (nothing_to_gain(slot, fd, cfg, st, *pos, backward))
		return false;
	int pool = pool_start(cfg);
	if (pool != 0) {
		if (pool < 0)
			slot->state = PF_FD_IGNORED;
		return false;
	}
	return true;
}

/* Whether a second position of a descriptor that streams is worth a stream
 * of its own: the state is the first stream's, and stays. */
static bool may_engage_second(int fd, const struct pf_settings *cfg, struct stat *st, off64_t pos)
{
	if (fstat(fd, st) != 0 || pos < 0 || st->st_size - pos < (off64_t)cfg->chunk)
		return false;
	return !(cfg->skip_cached && window_cached(fd, cfg, st, pos, false));
}

/* The pattern a new stream starts under (slot lock held). */
static enum stream_pattern run_pattern(const struct pf_fd *slot, bool second)
{
	if (second)
		return PF_PATTERN_SECOND;
	if (slot->run.flags & PF_RUN_BACKWARD)
		return PF_PATTERN_BACKWARD;
	return (slot->run.flags & PF_RUN_SKIPPED) ? PF_PATTERN_SKIPPING : PF_PATTERN_SEQUENTIAL;
}

/* The descriptor's reads have been sequential: attach a stream if the file
 * qualifies and there is something to gain (slot lock held). pos is the
 * offset of the next read, or -1 for "the file offset"; a backward run's
 * stream ends where its last read started. A descriptor that has a stream
 * gets a second, for its second position (forward only). */
struct pf_stream *try_engage(struct pf_fd *slot, int fd, off64_t pos)
{
	const struct pf_settings *cfg = pf_settings();
	bool second = slot->stream != NULL;
	bool backward = slot->run.flags & PF_RUN_BACKWARD;
	struct pf_run run = slot->run;
	off64_t last_start = pf_run_last_start(&run);
	if (backward)
		pos = second ? -1 : last_start;
	slot->run.reads = 0; /* if nothing comes of it, look again after a run of reads */
	struct stat st;
	if (backward && pos < 0)
		return NULL;
	if (second ? !may_engage_second(fd, cfg, &st, pos)
		   : !may_engage(slot, fd, cfg, &st, &pos, backward))
		return NULL;
	bool uncached = backward ? bypasses_page_cache(fd, pos, st.st_size)
				 : bypasses_page_cache(fd, 0, pos);
	struct pf_stream *s = pf_stream_new(fd, pos, &st, cfg, chunk_scale(cfg, uncached));
	if (!s) {
		PF_LOG(PF_LOG_WARN, "fd %d: out of memory for a stream; passing through", fd);
		return NULL;
	}
	s->backward = backward;
	pf_mode_start(s, uncached);
	s->zero_fill_risk = !uncached && pf_fs_kind(fd, st.st_dev) == PF_FS_FUSE;
	s->from_start = !backward && (slot->run.flags & PF_RUN_FROM_START);
	pf_stream_pattern(s, run_pattern(slot, second));
	if (!second && run.alike && last_start >= 0)
		pf_stream_seed_landing(s, last_start, run.next_off,
				       pf_run_last_skip(&run) + (off64_t)run.last_len, run.alike);
	pf_stream_attach(slot, s);
	/* Reads no stream serves make a run of their own: the other
	 * position's, if it was read in turn with this one. */
	slot->run = !second && slot->other.reads ? slot->other : (struct pf_run){ .next_off = -1 };
	slot->other = (struct pf_run){ 0 };
	PF_STAT_ADD(files_prefetched, !second);
	PF_LOG(PF_LOG_INFO, "fd %d: prefetching from offset %lld (size %lld, chunks of %zu)%s", fd,
	       (long long)pos, (long long)st.st_size, s->chunk_size,
	       second ? ", a second position" : backward ? ", backward" : "");
	pthread_mutex_lock(&s->lock);
	pf_stream_fill(s);
	pthread_mutex_unlock(&s->lock);
	return s;
}
