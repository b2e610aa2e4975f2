/* What the hooks tell the engine of a descriptor besides its reads: a new
 * file behind its number, a close, a seek, advice, O_DIRECT. Each updates
 * the descriptor's slot, stopping its stream where its reads must reach
 * the kernel. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>

#include "libc.h"
#include "runtime.h"
#include "stats.h"
#include "stream.h"

/* Forgets everything about a slot (slot lock held). */
static void slot_reset(struct pf_fd *slot)
{
	pf_stream_detach(slot, true);
	slot->state = PF_FD_WATCHING;
	slot->flags = 0;
	slot->run = (struct pf_run){ 0 };
	slot->other = (struct pf_run){ 0 };
	slot->bypass_left = 0;
}

/* Runs fn on the slot of fd under its lock, if the slot exists. */
static void with_slot(int fd, void (*fn)(struct pf_fd *slot, off64_t arg), off64_t arg)
{
	struct pf_fd *slot = pf_fd_find(fd);
	if (!slot)
		return;
	struct pf_entry entry = pf_enter();
	pthread_mutex_lock(&slot->lock);
	fn(slot, arg);
	pthread_mutex_unlock(&slot->lock);
	pf_leave(entry);
}

/* Calls fn on the slots of [first, last] inside the library (pf_enter);
 * fn takes the slot lock itself, where there is work to do. */
static void each_slot(unsigned first, unsigned last,
		      void (*fn)(int fd, struct pf_fd *slot, void *arg))
{
	struct pf_entry entry = pf_enter();
	pf_fd_for_each(first, last, fn, NULL);
	pf_leave(entry);
}

/* Forgets the slot; then, given the descriptor of a file just opened for
 * reading (or -1), prefetches it at once. */
static void on_new_file(struct pf_fd *slot, off64_t fd_to_engage)
{
	slot_reset(slot);
	if (fd_to_engage >= 0) {
		slot->run.flags |= PF_RUN_FROM_START; /* a file just opened is at offset 0 */
		struct pf_stream *s = try_engage(slot, (int)fd_to_engage, 0);
		if (s) {
			s->speculative = true;
			PF_STAT_ADD(streams_at_open, 1);
		}
	}
}

void pf_fd_opened(int fd, bool for_reading)
{
	/* Only a process that reads whole files gets a slot made for this. */
	bool engage = for_reading && pf_whole_file_reader() && pf_fd_get(fd);
	with_slot(fd, on_new_file, engage ? fd : -1);
}

void pf_fd_closing(int fd)
{
	with_slot(fd, on_new_file, -1);
}

static void reset_slot_cb(int fd, struct pf_fd *slot, void *arg)
{
	(void)fd;
	(void)arg;
	if (slot->state == PF_FD_WATCHING && !slot->stream && !slot->flags && !slot->run.reads)
		return; /* nothing to forget; skip the lock */
	pthread_mutex_lock(&slot->lock);
	slot_reset(slot);
	pthread_mutex_unlock(&slot->lock);
}

void pf_fd_closing_range(unsigned first, unsigned last)
{
	each_slot(first, last, reset_slot_cb);
}

/* The file offset moved to `to` (slot lock held). A skip forward of at
 * most PF_SKIP_MAX keeps a forward reader (tar over a member's data, dd
 * skip=); a seek back to where the other run left off resumes that one
 * (two positions read in turn); anything else starts a run. A stream's
 * reads tell for themselves where they land. */
static void on_seek(struct pf_fd *slot, off64_t to)
{
	if (slot->state == PF_FD_STREAMING)
		return;
	if (slot->state == PF_FD_CACHED)
		slot->state = PF_FD_WATCHING;
	pf_run_moved(&slot->run, pf_watch_step(slot, to), to);
}

void pf_fd_seeked(int fd, off64_t to)
{
	struct pf_fd *slot = pf_fd_find(fd);
	if (slot && __atomic_load_n(&slot->state, __ATOMIC_RELAXED) == PF_FD_IGNORED)
		return; /* nothing to reset; an advice or a reopen changes the state */
	with_slot(fd, on_seek, to);
}

static void on_advice(struct pf_fd *slot, off64_t advice)
{
	switch (advice) {
	case POSIX_FADV_RANDOM:
	case POSIX_FADV_DONTNEED:
		/* RANDOM: read-ahead is pure waste. DONTNEED: the program
		 * wants cached data gone, and ours with it. Until NORMAL or
		 * SEQUENTIAL, nothing is prefetched for this descriptor. */
		pf_stream_detach(slot, false);
		slot->state = PF_FD_IGNORED;
		slot->flags = (uint8_t)((slot->flags & ~PF_FDF_SEQ_ADVICE) | PF_FDF_RANDOM_ADVICE);
		break;
	case POSIX_FADV_SEQUENTIAL:
	case POSIX_FADV_NORMAL:
		if (slot->flags & PF_FDF_RANDOM_ADVICE) {
			slot->state = PF_FD_WATCHING; /* the program takes RANDOM back */
			slot->flags &= (uint8_t)~PF_FDF_RANDOM_ADVICE;
		}
		if (advice == POSIX_FADV_SEQUENTIAL)
			slot->flags |= PF_FDF_SEQ_ADVICE;
		else
			slot->flags &= (uint8_t)~PF_FDF_SEQ_ADVICE;
		break;
	default:
		break;
	}
}

void pf_fd_advised(int fd, int advice)
{
	/* Advice given before the first read must count too: make the slot. */
	if (advice != POSIX_FADV_NORMAL && advice != POSIX_FADV_WILLNEED &&
	    advice != POSIX_FADV_NOREUSE && !pf_fd_get(fd))
		return;
	with_slot(fd, on_advice, advice);
}

/* Stops prefetching for a descriptor whose open file description now has
 * O_DIRECT: its reads must reach the kernel, which checks alignment. A
 * descriptor whose stream was dropped keeps its classification
 * (pf_file_classified) and would start another without asking again. */
static void stop_if_direct(int fd, struct pf_fd *slot, void *arg)
{
	(void)arg;
	if (slot->state != PF_FD_STREAMING && slot->state != PF_FD_CACHED &&
	    !(slot->flags & PF_FDF_CLASSIFIED))
		return;
	pthread_mutex_lock(&slot->lock);
	int flags = pf_libc.fcntl(fd, F_GETFL);
	if (flags >= 0 && (flags & O_DIRECT)) {
		pf_stream_detach(slot, true);
		slot->state = PF_FD_IGNORED;
		slot->flags &= (uint8_t)~PF_FDF_CLASSIFIED;
	}
	pthread_mutex_unlock(&slot->lock);
}

void pf_fd_flags_changed(int fd, int flags)
{
	(void)fd;
	if (!(flags & O_DIRECT))
		return;
	/* File status flags belong to the open file description, which dup'd
	 * descriptors share: look at every descriptor being prefetched. */
	each_slot(0, PF_FD_MAX - 1, stop_if_direct);
}

static void child_reset_slot(int fd, struct pf_fd *slot, void *arg)
{
	(void)fd;
	(void)arg;
	/* Another thread may have held the lock when the parent forked. */
	pthread_mutex_init(&slot->lock, NULL);
	slot->stream = slot->stream2 = NULL;
	if (slot->state == PF_FD_STREAMING)
		slot->state = PF_FD_WATCHING;
	slot->run.reads = slot->other.reads = 0;
}

/* In a forked child: no slot keeps a stream, a lock or a run of reads. */
void pf_slots_reset_in_child(void)
{
	pf_fd_for_each(0, PF_FD_MAX - 1, child_reset_slot, NULL);
}
