/* The library's one way to start a thread of its own. */
#ifndef PF_THREAD_H
#define PF_THREAD_H

#include <stdbool.h>
#include <stddef.h>

/* Starts a detached thread running fn(NULL) on a stack of `stack` bytes,
 * with every signal blocked: the program's signals go to its own threads,
 * and the library's reads are never interrupted. 0, or pthread_create's
 * error. */
int pf_thread_start(void *(*fn)(void *), size_t stack);

/* For the fork prepare handler, with every lock of the library held (no
 * thread is started without one): waits until every thread started has
 * reached its function. A thread's start allocates (in the C library, in
 * a sanitizer's runtime), and a child forked meanwhile would find the
 * allocator's lock held by a thread it does not have. Bounded (1 s). */
void pf_thread_wait_started(void);

/* Whether this thread may be running a signal handler: it blocks a signal
 * that has one (a handler runs with its signal blocked, unless SA_NODEFER).
 * pthread_create allocates (the new thread's TLS), and a handler may have
 * interrupted malloc on this very thread. A few system calls. */
bool pf_thread_maybe_in_handler(void);

/* In the fork child: none of the parent's threads is starting here. */
void pf_thread_forked_child(void);

#endif
