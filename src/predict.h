/* Guessing the next files a process opens (see fileahead.h): the file
 * operands of its command line, in order, and the directory listings it
 * read, in listing order. A source whose guesses stop matching the opens
 * is given up. */
#ifndef PF_PREDICT_H
#define PF_PREDICT_H

#include <stdbool.h>
#include <sys/stat.h>

/* True when some source could predict (cheap: decides whether an open is
 * looked at all). */
bool pf_predict_any(void);

/* The program opened path (relative to dirfd) as fd, the regular file st,
 * read-only: predict the files after it. */
void pf_predict_opened(int fd, int dirfd, const char *path, const struct stat *st);

/* Fork handlers (the predictions' lock, then the fetching's), called by
 * the library's one set (hooks.c). */
void pf_predict_atfork_prepare(void);
void pf_predict_atfork_parent(void);
void pf_predict_atfork_child(void);

#endif
