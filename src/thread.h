/* The library's one way to start a thread of its own. */
#ifndef PF_THREAD_H
#define PF_THREAD_H

#include <stddef.h>

/* Starts a detached thread running fn(NULL) on a stack of `stack` bytes,
 * with every signal blocked: the program's signals go to its own threads,
 * and the library's reads are never interrupted. 0, or pthread_create's
 * error. */
int pf_thread_start(void *(*fn)(void *), size_t stack);

#endif
