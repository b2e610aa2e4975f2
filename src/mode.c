/* How many reads of a stream may be in flight: as many as the workers (the
 * storage serves reads at once), or one in file order (it serves a handle
 * as one sequential stream), set, known from storage.c, or measured. */
#include "config.h"

#include <limits.h>

#include "log.h"
#include "nodebudget.h"
#include "stats.h"
#include "storage.h"
#include "stream.h"

/* A new stream reads its first PF_PROBE_ALONE chunks one at a time, then
 * PF_PROBE_PAIRED two at a time: enough to see whether the storage serves
 * two at once (then it goes wide) or one after the other, as object-store
 * clients that serve a handle as one sequential stream do (then it reads in
 * order, one at a time: each out-of-order read there costs a wait and a new
 * request). */
#define PF_PROBE_ALONE 2u
#define PF_PROBE_PAIRED 4u
/* Two reads in flight must deliver this much more than one to go wide:
 * storage that serves them at once gives near 2 (slowfs 1.8-2.0). */
#define PF_PROBE_GAIN 1.5
/* A stream reading in order measures again after PF_RECHECK_FIRST chunks,
 * then after twice as many each time it finds no gain: a probe misled by a
 * busy CPU (a parallel slowfs under md5sum measured 1.0 one time in about
 * twenty), or recalled from another process, then costs a stretch of the
 * file, not the whole stream, nor the next minute's processes. On storage
 * that serves one stream per handle, each recheck costs four reads paired. */
#define PF_RECHECK_FIRST 16u
#define PF_RECHECK_MAX (1u << 24)

void pf_mode_set(struct pf_stream *s, enum stream_mode mode)
{
	s->mode = (uint8_t)mode;
	s->max_inflight = mode == MODE_PARALLEL ? UINT_MAX : 1;
}

/* What another process of the node measured of the stream's mount lately
 * (nodebudget.h), so that a script's every process does not probe again: a
 * probe reads its first six chunks one and two at a time. */
static enum pf_storage_mode recall(struct pf_stream *s)
{
	unsigned v = pf_node_recall(pf_storage_mount_id(s->fd, s->version.st_dev));
	if (v != PF_STORAGE_PARALLEL + 1 && v != PF_STORAGE_ORDERED + 1)
		return PF_STORAGE_UNKNOWN;
	enum pf_storage_mode mode = (enum pf_storage_mode)(v - 1);
	pf_storage_learn(s->version.st_dev, mode);
	PF_STAT_ADD(storage_recalled, 1);
	PF_LOG(PF_LOG_INFO, "fd %d: another process measured this storage lately: %s", s->fd,
	       mode == PF_STORAGE_ORDERED ? "reading in order, one at a time" : "reading in parallel");
	return mode;
}

/* A new stream starts in the mode set by PREFETCH_PARALLEL, or that its
 * filesystem was found to reward, or probes. Only where its reads bypass
 * the page cache: through it, the kernel's readahead on the same open file
 * reads ahead of the probe's reads and blurs what they take (there the
 * mount table names the clients that serve a handle as one stream). */
void pf_mode_start(struct pf_stream *s, bool uncached)
{
	int parallel = pf_settings()->parallel;
	enum pf_storage_mode known = parallel == PF_PARALLEL_AUTO ? pf_storage_mode(s->version.st_dev)
				     : parallel ? PF_STORAGE_PARALLEL : PF_STORAGE_ORDERED;
	/* A client that reads ahead of each handle itself: in order, on the
	 * program's handle, never two at once (engage.c engaged it for that). */
	bool client_ahead = known == PF_STORAGE_CLIENT_READS_AHEAD;
	if (client_ahead)
		known = PF_STORAGE_ORDERED;
	else if (known == PF_STORAGE_UNKNOWN && !uncached)
		known = PF_STORAGE_PARALLEL;
	else if (known == PF_STORAGE_UNKNOWN)
		known = recall(s);
	pf_mode_set(s, known == PF_STORAGE_PARALLEL  ? MODE_PARALLEL
		       : known == PF_STORAGE_ORDERED ? MODE_ORDERED : MODE_PROBING);
	if (s->mode == MODE_ORDERED)
		PF_STAT_ADD(streams_ordered, 1);
	/* What the user set stays; what was measured is measured again. */
	s->recheck_after = parallel == PF_PARALLEL_AUTO && !client_ahead ? PF_RECHECK_FIRST : 0;
}

/* A chunk read while probing (s->lock held). After the paired chunks, the
 * gain of two reads in flight over one: the paired chunks over the time a
 * read was in flight, against one chunk per read alone. Near 1 when the
 * storage served them one after the other, near 2 when at once. A busy CPU
 * delays reads too: a read alone counts at its fastest (a delayed one
 * would make two look better, and going wide on storage that serves one
 * stream per handle is the costly mistake), a verdict of no gain is
 * measured twice. */
static void probe_note(struct pf_stream *s, const struct pf_chunk *c)
{
	if (c->len != c->want || c->err)
		return; /* the end of the file is no measure */
	uint64_t now = pf_now_ns();
	if (++s->probed <= PF_PROBE_ALONE) {
		if (!s->alone_ns || c->fetch_ns < s->alone_ns)
			s->alone_ns = c->fetch_ns;
		if (s->probed == PF_PROBE_ALONE) {
			s->max_inflight = 2;
			s->busy_ns = 0;
			s->busy_since = now;
		}
		return;
	}
	if (s->probed < PF_PROBE_ALONE + PF_PROBE_PAIRED)
		return;
	uint64_t busy = s->busy_ns + (s->inflight ? now - s->busy_since : 0);
	double gain = (double)PF_PROBE_PAIRED * (double)s->alone_ns / (double)(busy ? busy : 1);
	if (gain < PF_PROBE_GAIN && ++s->probe_rounds < 2) {
		s->probed = 0; /* once more, from reads alone */
		s->max_inflight = 1;
		return;
	}
	enum stream_mode mode = gain >= PF_PROBE_GAIN ? MODE_PARALLEL : MODE_ORDERED;
	pf_mode_set(s, mode);
	if (mode == MODE_ORDERED && !s->rechecking)
		PF_STAT_ADD(streams_ordered, 1);
	else if (mode == MODE_PARALLEL && s->rechecking)
		PF_STAT_ADD(streams_widened, 1);
	s->rechecking = false;
	PF_LOG(PF_LOG_INFO, "fd %d: two reads in flight gave %.2fx one (%u us alone, %u in %llu us): %s",
	       s->fd, gain, (unsigned)(s->alone_ns / 1000), PF_PROBE_PAIRED,
	       (unsigned long long)busy / 1000,
	       mode == MODE_ORDERED ? "reading in order, one at a time" : "reading in parallel");
	enum pf_storage_mode learned = mode == MODE_ORDERED ? PF_STORAGE_ORDERED : PF_STORAGE_PARALLEL;
	pf_storage_learn(s->version.st_dev, learned);
	pf_node_remember(pf_storage_mount_id(s->fd, s->version.st_dev), (unsigned)learned + 1);
}

/* A probe compares reads of one size: a stream whose reads change size
 * while it probes (a landing window's spans) measures again, from reads
 * alone. */
void pf_probe_restart(struct pf_stream *s)
{
	if (s->mode != MODE_PROBING)
		return;
	s->probed = 0;
	s->alone_ns = 0;
	s->max_inflight = 1;
}

/* Measures again, from reads alone, a stream that read in order (s->lock
 * held, no read in flight beyond the one just finished). One round decides:
 * the stream read in order already, and the next recheck waits longer. */
static void recheck(struct pf_stream *s)
{
	s->ordered_reads = 0;
	if (s->recheck_after < PF_RECHECK_MAX)
		s->recheck_after *= 2;
	s->rechecking = true;
	s->probe_rounds = 1;
	pf_mode_set(s, MODE_PROBING);
	pf_probe_restart(s);
}

void pf_mode_note(struct pf_stream *s, const struct pf_chunk *c)
{
	if (s->mode == MODE_PROBING)
		probe_note(s, c);
	else if (s->mode == MODE_ORDERED && s->recheck_after && ++s->ordered_reads >= s->recheck_after)
		recheck(s);
}
