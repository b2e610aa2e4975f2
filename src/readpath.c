/* The read path's entry, pf_read_fd(): each read goes by its descriptor's
 * state to a stream (serve.c), straight to the C library, or through
 * while its run of sequential reads is counted, until a stream is worth
 * attaching (engage.c). Also the gate every hook passes, pf_active(). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileahead.h"
#include "libc.h"
#include "log.h"
#include "runtime.h"
#include "stats.h"
#include "stream.h"

__thread int pf_in_library __attribute__((tls_model("initial-exec")));
__thread int pf_program_cancel __attribute__((tls_model("initial-exec")));

/* The kernel never transfers more than this in one read (MAX_RW_COUNT). */
#define PF_MAX_RW ((size_t)0x7ffff000)

int pf_active(void)
{
	static int enabled; /* 0 unknown, 1 on, -1 off */
	if (__builtin_expect(pf_in_library, 0))
		return 0;
	int e = __atomic_load_n(&enabled, __ATOMIC_RELAXED);
	if (__builtin_expect(e == 0, 0)) {
		pf_in_library = 1;
		e = pf_settings()->disabled ? -1 : 1;
		if (pf_libc_bind() == 0)
			pf_stats_init();
		pf_in_library = 0;
		__atomic_store_n(&enabled, e, __ATOMIC_RELAXED);
	}
	return e > 0;
}

ssize_t pf_pass_through(int fd, const struct pf_read_req *req)
{
	if (req->offset == PF_AT_FILE_OFFSET)
		return req->iovcnt == 1 ? pf_libc.read(fd, req->iov[0].iov_base, req->iov[0].iov_len)
					: pf_libc.readv(fd, req->iov, req->iovcnt);
	return req->iovcnt == 1
		       ? pf_libc.pread64(fd, req->iov[0].iov_base, req->iov[0].iov_len, req->offset)
		       : pf_libc.preadv64(fd, req->iov, req->iovcnt, req->offset);
}

/* At a descriptor's first read (slot lock held): true when none of its
 * reads can ever be prefetched: not a regular file, or (by default) a file
 * on a local block device. Its reads then skip the lock from the next one
 * on, which random readers, who never reach try_engage, would otherwise
 * pay on every call. Else starts its run where the reads start. */
static bool first_look(struct pf_fd *slot, int fd, const struct pf_read_req *req)
{
	if (slot->flags & PF_FDF_LOOKED_AT)
		return false;
	slot->flags |= PF_FDF_LOOKED_AT;
	struct stat st;
	if (fstat(fd, &st) != 0 || pf_excluded_file(&st))
		return true;
	off64_t at = req->offset;
	if (at == PF_AT_FILE_OFFSET)
		at = pf_libc.lseek64(fd, 0, SEEK_CUR);
	pf_run_start(&slot->run, at);
	return false;
}

/* --- runs of reads ---------------------------------------------------------------- */

off64_t pf_run_last_start(const struct pf_run *run)
{
	return run->next_off >= 0 && run->reads ? run->next_off - (off64_t)run->last_len : -1;
}

enum read_step pf_run_step(const struct pf_run *run, off64_t at)
{
	off64_t gap = at - run->next_off;
	if (at == PF_AT_FILE_OFFSET || gap == 0)
		return STEP_EXACT;
	if (run->next_off >= 0 && gap > 0 && gap <= PF_SKIP_MAX && !(run->flags & PF_RUN_BACKWARD))
		return STEP_FORWARD;
	/* A short way before where the last read started, in a run that never
	 * skipped forward: a reader going down the file (tac). */
	off64_t last = pf_run_last_start(run);
	if (last > 0 && at < last && last - at <= PF_SKIP_MAX && !(run->flags & PF_RUN_SKIPPED))
		return STEP_BACKWARD;
	return STEP_ELSEWHERE;
}

/* A run that starts at `at`: one from offset 0 may read the whole file. */
void pf_run_start(struct pf_run *run, off64_t at)
{
	run->next_off = at;
	run->reads = 0;
	run->alike = 0;
	run->skip = 0;
	run->flags = at == 0 ? PF_RUN_FROM_START : 0;
}

/* A skip forward of `skip` bytes: counted alike when within a unit of the
 * last one. Steady skips are no random reader's, and predict the next. */
static void run_skipped(struct pf_run *run, off64_t skip)
{
	off64_t units = (skip + PF_RUN_SKIP_UNIT / 2) / PF_RUN_SKIP_UNIT + 1;
	if (units > PF_RUN_SKIP_UNITS_MAX)
		units = 0;
	bool alike = units && run->skip && units - run->skip <= 1 && run->skip - units <= 1;
	if (!alike)
		run->alike = 0;
	else if (run->alike < PF_RUN_ALIKE_MAX)
		run->alike++;
	run->skip = (uint8_t)units;
	run->flags = (uint8_t)((run->flags | PF_RUN_SKIPPED) & ~PF_RUN_FROM_START);
}

/* The skip forward of a run's last step, in bytes, 0 unknown. */
off64_t pf_run_last_skip(const struct pf_run *run)
{
	return run->skip ? (off64_t)(run->skip - 1) * PF_RUN_SKIP_UNIT : 0;
}

/* The run's reader read or seeked to `to`, in a step of kind `step`. */
void pf_run_moved(struct pf_run *run, enum read_step step, off64_t to)
{
	if (step == STEP_FORWARD) {
		run_skipped(run, to - run->next_off);
	} else if (step == STEP_BACKWARD) {
		if (!(run->flags & PF_RUN_BACKWARD))
			run->reads = 1; /* turned: the last read is its first */
		run->flags = PF_RUN_BACKWARD | PF_RUN_TURNED;
	}
	run->next_off = to;
}

void pf_run_count(struct pf_run *run, enum read_step step, off64_t at, size_t n)
{
	/* A backward run's reader went on forward without a seek back: a new
	 * run (a read() after a seek back was judged at the seek). */
	if (step == STEP_EXACT && (run->flags & (PF_RUN_BACKWARD | PF_RUN_TURNED)) == PF_RUN_BACKWARD) {
		run->flags = 0;
		run->reads = 0;
	}
	pf_run_moved(run, step, at);
	run->next_off = at >= 0 ? at + (off64_t)n : -1;
	run->flags &= (uint8_t)~PF_RUN_TURNED;
	run->last_len = n < UINT32_MAX ? (uint32_t)n : UINT32_MAX;
	if (run->reads < PF_RUN_READS_MAX)
		run->reads++;
}

/* Reads in a row before a stream: a run with skips forward, or going
 * backward, needs more of them, so that a random reader, whose next read
 * lands a little ahead or behind now and then, does not look like one; but
 * not a run whose last skips were alike (tar tf, a strided reader). */
bool pf_run_long_enough(const struct pf_run *run, const struct pf_settings *cfg)
{
	unsigned needed = cfg->min_sequential;
	bool steady = run->alike >= PF_LAND_STEADY;
	if ((run->flags & (PF_RUN_SKIPPED | PF_RUN_BACKWARD)) && !steady && needed < PF_SKIP_RUN)
		needed = PF_SKIP_RUN;
	return run->reads >= needed;
}

/* A read or seek at `at` left the current run: the other run becomes
 * current if `at` goes on from it, else a new run starts there in place of
 * the older one. A random reader starts a new run at nearly every read. */
enum read_step pf_watch_step(struct pf_fd *slot, off64_t at)
{
	enum read_step step = pf_run_step(&slot->run, at);
	if (step == STEP_BACKWARD && !(slot->run.flags & PF_RUN_BACKWARD)) {
		/* Turning back: the run it leaves stays, as the other, so that
		 * a glance back (a header re-read) does not end it. */
		slot->other = slot->run;
		pf_run_start(&slot->run, at);
	}
	if (step != STEP_ELSEWHERE)
		return step;
	struct pf_run older = slot->other;
	slot->other = slot->run;
	slot->run = older;
	step = older.reads ? pf_run_step(&slot->run, at) : STEP_ELSEWHERE;
	if (step == STEP_ELSEWHERE) {
		pf_run_start(&slot->run, at);
		step = STEP_EXACT;
	}
	return step;
}

/* The program's own large reads (large_read) of watched or streamed files
 * in the library now, in the kernel or served by a stream, over all its
 * threads. A program that keeps several such in flight by itself (8
 * threads reading 1 MiB each) already keeps the storage busy: reads ahead
 * of it only add copies and threads (1.26-1.52x slower,
 * docs/benchmarks-storage.md). */
static unsigned own_reads;
#define PF_OWN_READS_BUSY 3u
#define PF_OWN_READ_MIN ((size_t)1024 * 1024)

/* A read that counts in own_reads: a chunk or more, and 1 MiB or more (a
 * few 64 KiB reads in flight keep no storage busy, whatever the chunk). */
static bool large_read(size_t total)
{
	return total >= PF_OWN_READ_MIN && total >= pf_settings()->chunk;
}

void pf_own_reads_reset_in_child(void)
{
	own_reads = 0;
}

/* A descriptor read alongside PF_OWN_READS_BUSY or more of the program's
 * own large reads is left to the program, for as long as it is open: the
 * last of its threads to finish would otherwise get a stream that reads
 * ahead past the part it reads, when the others are done (slot lock held). */
static bool program_reads_in_parallel(struct pf_fd *slot, unsigned others)
{
	if (slot->flags & PF_FDF_OWN_PARALLEL)
		return true;
	if (others < PF_OWN_READS_BUSY)
		return false;
	PF_STAT_ADD(parallel_reader_skips, 1);
	slot->flags |= PF_FDF_OWN_PARALLEL;
	return true;
}

/* A thread cancelled in program_read leaves the library (its cleanup
 * handlers' calls are the program's), and its read uncounted. */
static void program_read_cancelled(void *large)
{
	if (*(bool *)large)
		__atomic_sub_fetch(&own_reads, 1, __ATOMIC_RELAXED);
	pf_in_library = 0;
}

/* The program's read of a watched descriptor, passed through inside the
 * library with none of its locks held: a cancellation point again, as it
 * is without the library (a read of a pipe, before it is known to be one,
 * may block for ever). large: counted in own_reads. */
static ssize_t program_read(int fd, const struct pf_read_req *req, bool large)
{
	ssize_t r;
	pthread_cleanup_push(program_read_cancelled, &large);
	pf_cancel_allow();
	r = pf_pass_through(fd, req);
	pf_cancel_forbid();
	pthread_cleanup_pop(0);
	return r;
}

/* A read of a descriptor without a stream: pass it through, and count
 * sequential reads (slot lock held, dropped during the read itself). */
static ssize_t watched_read(struct pf_fd *slot, int fd, const struct pf_read_req *req,
			    size_t total)
{
	const struct pf_settings *cfg = pf_settings();
	/* Counted from the start: the first look at a file may take a while
	 * (the mount table), and the program's read is under way meanwhile. */
	bool large = large_read(total);
	if (large)
		__atomic_add_fetch(&own_reads, 1, __ATOMIC_RELAXED);
	if (slot->state == PF_FD_WATCHING && first_look(slot, fd, req))
		slot->state = PF_FD_IGNORED;
	/* A read that could be split is large; beside the program's others it
	 * is not split: its pieces would queue behind theirs. */
	if (slot->state == PF_FD_WATCHING &&
	    !(large && program_reads_in_parallel(slot, __atomic_load_n(&own_reads, __ATOMIC_RELAXED) - 1))) {
		ssize_t r = pf_split_read(slot, fd, req, total);
		if (r != PF_NOT_SPLIT) {
			if (large)
				__atomic_sub_fetch(&own_reads, 1, __ATOMIC_RELAXED);
			return r;
		}
	}
	enum read_step step = pf_watch_step(slot, req->offset);
	off64_t at = req->offset == PF_AT_FILE_OFFSET ? slot->run.next_off : req->offset;
	bool paced = slot->flags & PF_FDF_PACED;
	pthread_mutex_unlock(&slot->lock);
	uint64_t start = paced ? pf_now_ns() : 0;
	ssize_t r = program_read(fd, req, large);
	int saved = errno;
	if (paced)
		pf_pace_read(fd, r > 0 ? (size_t)r : 0, start, pf_now_ns());
	unsigned others = __atomic_load_n(&own_reads, __ATOMIC_RELAXED);
	if (large)
		others = __atomic_sub_fetch(&own_reads, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&slot->lock);
	if (slot->state == PF_FD_WATCHING && r > 0) {
		pf_run_count(&slot->run, step, at, (size_t)r);
		if ((pf_run_long_enough(&slot->run, cfg) || (slot->flags & PF_FDF_SEQ_ADVICE)) &&
		    !program_reads_in_parallel(slot, others))
			/* read(): where the kernel says, which another descriptor
			 * of the same open file may have moved. */
			try_engage(slot, fd, req->offset == PF_AT_FILE_OFFSET ? -1 : slot->run.next_off);
	}
	errno = saved;
	return r;
}

/* A read of a descriptor with a stream (slot lock held). A large one made
 * while the program keeps others in flight ends its streams: they were
 * engaged before its other threads got going, and the program keeps the
 * storage as busy by itself. */
static ssize_t streamed_read(struct pf_fd *slot, int fd, const struct pf_read_req *req,
			     size_t total)
{
	if (!large_read(total))
		return pf_stream_read(slot, fd, req, total);
	__atomic_add_fetch(&own_reads, 1, __ATOMIC_RELAXED);
	ssize_t r = pf_stream_read(slot, fd, req, total);
	int saved = errno;
	unsigned others = __atomic_sub_fetch(&own_reads, 1, __ATOMIC_RELAXED);
	if (slot->stream && program_reads_in_parallel(slot, others)) {
		PF_LOG(PF_LOG_INFO, "fd %d: the program reads in parallel itself; stream dropped", fd);
		pf_stream_detach(slot, false);
	}
	errno = saved;
	return r;
}

/* A read of data found in the page cache (PF_FD_CACHED), counted before it
 * is made, so that the slot lock is taken once per read, not twice (a
 * short read at the end of the file counts a few bytes too many; measured
 * in docs/benchmarks-engine.md). After a window's worth, the next read
 * looks at the cache again (slot lock held). */
static void cached_read_counted(struct pf_fd *slot, const struct pf_read_req *req, size_t total)
{
	if ((uint64_t)total < slot->bypass_left) {
		slot->bypass_left -= (uint64_t)total;
		return;
	}
	slot->state = PF_FD_WATCHING;
	slot->run.reads = (uint16_t)(pf_settings()->min_sequential - 1);
	slot->run.next_off = req->offset == PF_AT_FILE_OFFSET ? -1 : req->offset + (off64_t)total;
}

static size_t request_size(const struct pf_read_req *req, bool *valid)
{
	size_t total = 0;
	*valid = req->iovcnt > 0;
	for (int i = 0; i < req->iovcnt; i++) {
		if (req->iov[i].iov_len > (size_t)SSIZE_MAX - total) {
			*valid = false; /* the kernel answers EINVAL */
			return 0;
		}
		total += req->iov[i].iov_len;
	}
	return total < PF_MAX_RW ? total : PF_MAX_RW;
}

/* pf_read_fd under the slot lock, with pf_in_library set. Sets *pass for
 * a read the caller passes through once out of the library (cached or
 * ignored: the common case on local files, which needs no cancellation
 * round trip). */
static ssize_t slot_read(struct pf_fd *slot, int fd, const struct pf_read_req *req, size_t total,
			 bool *pass)
{
	pthread_mutex_lock(&slot->lock);
	ssize_t r;
	switch (slot->state) {
	case PF_FD_STREAMING:
		r = streamed_read(slot, fd, req, total);
		break;
	case PF_FD_CACHED:
		cached_read_counted(slot, req, total);
		/* fall through */
	case PF_FD_IGNORED:
		*pass = true;
		r = 0;
		break;
	default:
		r = watched_read(slot, fd, req, total);
		break;
	}
	int saved = errno;
	pthread_mutex_unlock(&slot->lock);
	errno = saved;
	return r;
}

ssize_t pf_read_fd(int fd, const struct pf_read_req *req)
{
	/* A read is a cancellation point: one answered from the library's
	 * buffers acts on a pending cancellation first, as the C library's
	 * does; inside, the library's work is not cancellable (pf_enter). */
	pthread_testcancel();
	/* fileahead.c (issue 15): a file fetched before its open answers its
	 * first reads; one load when there is none. */
	ssize_t ahead;
	if (pf_files_read(fd, req, &ahead))
		return ahead;
	struct pf_fd *slot = pf_fd_find(fd);
	if (slot && __atomic_load_n(&slot->state, __ATOMIC_RELAXED) == PF_FD_IGNORED)
		return pf_pass_through(fd, req);
	bool valid;
	size_t total = request_size(req, &valid);
	if (!valid || total == 0 || (req->offset < 0 && req->offset != PF_AT_FILE_OFFSET))
		return pf_pass_through(fd, req);
	/* From here on, a signal handler's read passes straight through
	 * (pf_active), whatever this thread is in the middle of. */
	struct pf_entry entry = pf_enter();
	bool pass = true;
	ssize_t r = 0;
	if (slot || (slot = pf_fd_get(fd))) {
		pass = false;
		r = slot_read(slot, fd, req, total, &pass);
	}
	entry.program_errno = errno;
	pf_leave(entry);
	return pass ? pf_pass_through(fd, req) : r;
}
