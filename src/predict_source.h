/* What predict.c and predict_listing.c share: a source's order of files,
 * and the lock all guessing runs under, taken before fileahead.c's own. */
#ifndef PF_PREDICT_SOURCE_H
#define PF_PREDICT_SOURCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* Files predicted ahead of the one the program opens. */
#define PF_FILES_AHEAD 8u
/* The source id of the command line; listings count from the next one. */
#define PF_ARGV_SOURCE 0u

extern pthread_mutex_t pf_pred_lock;

/* Where a source stands: the index the program opened last (-1: none yet)
 * and its opens out of order in a row. */
struct order {
	int last;
	unsigned misses;
	bool off;
};

/* The program opened position i of a source's order. True when it
 * followed that order (the next position, or its first open): then the
 * next files are worth predicting. After PF_SOURCE_MISSES opens out of
 * order in a row, the order is given up (off). */
bool pf_order_step(struct order *o, int i);

/* dir/name into buf; false when too long. */
bool pf_path_join(char *buf, size_t size, const char *dir, size_t dirlen, const char *name);

/* --- predict_listing.c (pf_pred_lock held) --- */

/* Some listing may still predict (read without the lock). */
bool pf_listings_live(void);

/* The program opened fd: if its file is in a listing, predict what follows. */
void pf_listing_opened(int fd);

#endif
