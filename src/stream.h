/* The engine's private interface: what its files (stream.c, pool.c, mode.c,
 * engage.c, serve.c, split.c, readpath.c, fdevents.c) share. Hooks and the
 * rest of the library see only engine.h.
 *
 * Locks: a descriptor's slot lock, then its stream's lock, then pool.lock.
 *
 * try_engage, pool_start and probe_note keep their names without the pf_
 * prefix: PREFETCH_DEBUG messages name the function that logs them, and
 * users and tests (settings.bats) read those names. */
#ifndef PF_STREAM_H
#define PF_STREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "engine.h"
#include "fdtable.h"
#include "settings.h"

/* The longest skip forward that keeps a reader a forward reader (and back,
 * a backward one), and the reads in a row such a reader needs before a
 * stream. */
#define PF_SKIP_MAX ((off64_t)2 * 1024 * 1024)
#define PF_SKIP_RUN 8u

/* A skipping reader that reads at most 1/PF_LAND_SPARSE of each step, with
 * PF_LAND_STEADY steps in a row alike (within an eighth of a span), lands
 * where the next steps predict: its window becomes spans around those
 * landings (PF_LAND_SPAN, or 4 reads, at most a chunk), not the bytes in
 * between. */
#define PF_LAND_SPARSE 8
#define PF_LAND_STEADY 3u
#define PF_LAND_SPAN ((size_t)256 * 1024)
_Static_assert(PF_LAND_STEADY <= PF_RUN_ALIKE_MAX, "a run counts too few alike skips");

enum chunk_state { CHUNK_FREE, CHUNK_QUEUED, CHUNK_READING, CHUNK_DONE };

/* How many reads of a stream may be in flight, and so in what order they
 * reach the storage. */
enum stream_mode {
	MODE_PROBING,  /* one, then two: measuring what the storage rewards */
	MODE_PARALLEL, /* as many as there are workers */
	MODE_ORDERED,  /* one, in file order: a sequential stream per handle */
};

/* The pattern a stream's reader followed, each stream counted under one
 * (streams_sequential...): the last a stream showed in this order, but a
 * descriptor's second stream is counted as such. */
enum stream_pattern {
	PF_PATTERN_NONE,
	PF_PATTERN_SEQUENTIAL,
	PF_PATTERN_SKIPPING, /* skips forward */
	PF_PATTERN_LANDING,  /* skips most of the file at a steady step: fetched around the landings */
	PF_PATTERN_SCANNING, /* preads ahead of the reader now and then (glance_ahead) */
	PF_PATTERN_BACKWARD, /* each read a short way before the last (tac) */
	PF_PATTERN_SECOND,   /* a second position of its descriptor */
};

struct pf_chunk {
	off64_t off;     /* file offset of buf[0] */
	size_t want;     /* bytes to read into it: chunk_size, or less (a split's
			  * last piece, a landing) */
	size_t len;      /* bytes valid once DONE */
	size_t used;     /* bytes of it handed to the program */
	int err;         /* errno that ended the chunk at off+len, 0 if none */
	uint64_t fetch_ns; /* how long its reads took */
	uint8_t state;   /* enum chunk_state */
	bool stale;      /* READING but no longer in the window: free when done */
	char *buf;       /* chunk_size bytes, allocated on first use */
};

struct pf_stream {
	pthread_mutex_t lock;     /* everything below; taken after the slot lock */
	pthread_cond_t changed;   /* a chunk finished reading */
	int fd;
	unsigned refs;            /* the slot, the run queue, a worker in flight */
	bool closing;             /* detached: schedule nothing more */
	bool in_runq;             /* protected by pool.lock */
	struct pf_stream *runq_next;       /* protected by pool.lock */
	struct pf_stream *all_prev, *all_next; /* protected by pool.lock */
	size_t chunk_size;
	unsigned max_depth;       /* PREFETCH_WINDOW in chunks */
	unsigned depth;           /* current window in chunks: grows as it is consumed */
	unsigned nslots;
	unsigned nwin;            /* chunks in the window, in file order */
	unsigned inflight;        /* chunks READING (by workers or the reader) */
	unsigned nbufs;           /* chunk buffers allocated */
	unsigned misses;          /* reads in a row that no stream served */
	unsigned shares;          /* streams of its descriptor: its share of memory */
	uint8_t pattern;          /* enum stream_pattern */
	bool started;             /* the reader went on from pos at least once */
	off64_t glance_end;       /* end of the last pread well ahead of pos (backward: start
				   * of the last read well below it), 0 if none */
	off64_t pos;              /* where the reader is expected next */
	off64_t next_off;         /* where the next chunk to schedule starts */
	off64_t stride;           /* landing: the step between chunks; 0, the window is contiguous */
	off64_t land_at;          /* where the reader's last read started, -1 before */
	off64_t land_gap;         /* the step from the read before to it */
	size_t land_span;         /* landing: bytes fetched around each landing */
	uint8_t land_steady;      /* steps in a row alike, sparse */
	off64_t eof_hint;         /* nothing is scheduled at or past this */
	struct stat version;      /* size and times of the file when fetched */
	uint64_t validated_ns;    /* when the server last confirmed version */
	uint64_t served;          /* bytes handed to the program */
	bool from_start;          /* the reader started at offset 0: a whole-file reader at EOF */
	bool backward;            /* the reader goes down the file: pos is where its last
				   * read started, next_off the end of the next chunk */
	bool speculative;         /* started at open, before any read */
	bool borrowed;            /* a split read: buffers are the program's */
	bool shrunk;              /* a read ahead ended short of version's size */
	bool failed;              /* a read ahead failed: fetch nothing more */
	bool zero_fill_risk;      /* FUSE through the page cache: a short read zero-fills */
	uint8_t mode;             /* enum stream_mode */
	bool rechecking;          /* probing again after reading in order */
	unsigned max_inflight;    /* reads in flight the mode allows */
	unsigned probed;          /* chunks measured while probing */
	uint64_t alone_ns;        /* how long the fastest read alone took */
	unsigned probe_rounds;    /* probes that found no gain */
	unsigned ordered_reads;   /* chunks read in order since the last measure */
	unsigned recheck_after;   /* ordered_reads that call for measuring again */
	uint64_t busy_ns;         /* time with a read in flight, while probing */
	uint64_t busy_since;      /* when inflight last went from 0 to 1 */
	unsigned *win;            /* nwin slot indices, file order */
	struct pf_chunk chunks[]; /* nslots */
};

static inline struct pf_chunk *win_chunk(struct pf_stream *s, unsigned i)
{
	return &s->chunks[s->win[i]];
}

/* --- stream.c: a stream's chunks and window ------------------------------------- */

/* A stream of fd from pos, one reference (the caller's); chunks of
 * PREFETCH_CHUNK times scale. NULL when memory is short. */
struct pf_stream *pf_stream_new(int fd, off64_t pos, const struct stat *version,
				const struct pf_settings *cfg, unsigned scale);
void pf_stream_unref_locked(struct pf_stream *s);
void pf_stream_fill(struct pf_stream *s);
void pf_stream_moved(struct pf_stream *s, off64_t pos, bool at_eof);
void pf_stream_landed(struct pf_stream *s, off64_t start, off64_t end);
/* A new stream whose run's last read was [start, end), after `alike`
 * steady skips, the last `gap` bytes from read start to read start: goes
 * on judging landings from there (before its first fill). */
void pf_stream_seed_landing(struct pf_stream *s, off64_t start, off64_t end, off64_t gap,
			    unsigned alike);
/* Makes s the slot's stream, or its second (slot lock held). */
void pf_stream_attach(struct pf_fd *slot, struct pf_stream *s);
/* Detaches one stream of the slot, or all of them (slot lock held). */
void pf_stream_detach_one(struct pf_fd *slot, struct pf_stream *s, bool wait_inflight);
void pf_stream_detach(struct pf_fd *slot, bool wait_inflight);
void pf_stream_pattern(struct pf_stream *s, enum stream_pattern p);
void pf_chunk_free(struct pf_stream *s, struct pf_chunk *c);
void pf_note_chunk_end(struct pf_stream *s, const struct pf_chunk *c);
struct pf_chunk *pf_chunk_at(struct pf_stream *s, off64_t pos);
struct pf_chunk *pf_first_queued(struct pf_stream *s);
/* This process has read a whole file through a stream: prefetch at open. */
bool pf_whole_file_reader(void);
/* Fork child only: free a stream as is, then forget the count of them. */
void pf_stream_discard(struct pf_stream *s);
void pf_streams_forget(void);

/* --- pool.c: the workers and their run queue ------------------------------------- */

void pf_pool_track(struct pf_stream *s);
void pf_pool_untrack(struct pf_stream *s);
void pf_runq_push(struct pf_stream *s);
/* 0 when the workers run; 1 not from this thread now; -1 never. */
int pool_start(const struct pf_settings *cfg);
/* A queued chunk read by the calling thread: claim it, then read it
 * (s->lock held, dropped during the pread). */
void pf_chunk_claim(struct pf_stream *s, struct pf_chunk *c);
void pf_chunk_read_now(struct pf_stream *s, struct pf_chunk *c);

/* --- mode.c: how many reads in flight the storage rewards ------------------------ */

void pf_mode_set(struct pf_stream *s, enum stream_mode mode);
void pf_mode_start(struct pf_stream *s, bool uncached);
/* A chunk read by a worker or the reader (s->lock held). */
void pf_mode_note(struct pf_stream *s, const struct pf_chunk *c);
void pf_probe_restart(struct pf_stream *s);

/* --- engage.c: which descriptors get a stream ------------------------------------ */

/* Whether fd is a read-only file on real storage, asked once per slot. */
bool pf_file_classified(struct pf_fd *slot, int fd, const struct stat *st);
bool pf_range_cached(int fd, off64_t from, off64_t to);
/* Attaches a stream to a descriptor whose reads looked sequential, if there
 * is anything to gain; pos -1 for the file offset (slot lock held). */
struct pf_stream *try_engage(struct pf_fd *slot, int fd, off64_t pos);
/* A read of a PF_FDF_PACED descriptor by this thread returned got bytes
 * (0 for none or an error), in [start, end). */
void pf_pace_read(int fd, size_t got, uint64_t start, uint64_t end);

/* --- serve.c: reads served from a stream ----------------------------------------- */

/* A read() served by the library moves the file offset before it is
 * served (claim: the start, -1 on failure) and gives back what it did not
 * return (settle); pread()s leave it alone. */
off64_t pf_claim_range(int fd, const struct pf_read_req *req, size_t total);
void pf_settle_range(int fd, const struct pf_read_req *req, off64_t start, size_t total,
		     size_t done);
/* done, or -1 with errno err when nothing was read and err is set. */
ssize_t pf_read_result(size_t done, int err);
ssize_t pf_stream_read(struct pf_fd *slot, int fd, const struct pf_read_req *req, size_t total);

/* --- readpath.c: runs of reads ---------------------------------------------------- */

/* Where a read at `at` lands against a run's end. PF_AT_FILE_OFFSET, a
 * read(), lands where the offset is: a seek before it was judged then. */
enum read_step { STEP_EXACT, STEP_FORWARD, STEP_BACKWARD, STEP_ELSEWHERE };
enum read_step pf_run_step(const struct pf_run *run, off64_t at);
/* Where the run's last read started; -1 when unknown. */
off64_t pf_run_last_start(const struct pf_run *run);
/* The run's last skip forward, rounded to PF_RUN_SKIP_UNIT; 0 when none or too long to keep. */
off64_t pf_run_last_skip(const struct pf_run *run);
void pf_run_start(struct pf_run *run, off64_t at);
/* The run goes on to `to` (a seek), or past n bytes read at `at` (-1 unknown). */
void pf_run_moved(struct pf_run *run, enum read_step step, off64_t to);
void pf_run_count(struct pf_run *run, enum read_step step, off64_t at, size_t n);
bool pf_run_long_enough(const struct pf_run *run, const struct pf_settings *cfg);
/* The step of a watched descriptor's read or seek at `at`, switching
 * between its two runs (slot lock held). */
enum read_step pf_watch_step(struct pf_fd *slot, off64_t at);

/* --- split.c, readpath.c, fdevents.c --------------------------------------------- */

/* A read of 4 MiB or more in parallel pieces; PF_NOT_SPLIT if it is not. */
#define PF_NOT_SPLIT ((ssize_t)-2)
ssize_t pf_split_read(struct pf_fd *slot, int fd, const struct pf_read_req *req, size_t total);
ssize_t pf_pass_through(int fd, const struct pf_read_req *req);
void pf_slots_reset_in_child(void);
/* readpath.c: the count of the program's reads in flight starts at 0. */
void pf_own_reads_reset_in_child(void);

#endif
