#include "config.h"

#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "thread.h"

/* Threads created that have not reached their function yet. */
static unsigned starting;

struct start {
	void *(*fn)(void *);
};

/* Where every thread of the library begins: its start (the C library's,
 * a sanitizer runtime's allocations) is over once it gets here. */
static void *trampoline(void *arg)
{
	void *(*fn)(void *) = ((struct start *)arg)->fn;
	free(arg);
	__atomic_sub_fetch(&starting, 1, __ATOMIC_RELEASE);
	return fn(NULL);
}

void pf_thread_wait_started(void)
{
	struct timespec pause = { 0, 100000 };
	for (int i = 0; i < 10000 && __atomic_load_n(&starting, __ATOMIC_ACQUIRE); i++)
		nanosleep(&pause, NULL);
}

bool pf_thread_maybe_in_handler(void)
{
	sigset_t blocked;
	if (pthread_sigmask(SIG_BLOCK, NULL, &blocked) != 0)
		return false;
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;
		if (sig == SIGKILL || sig == SIGSTOP || sigismember(&blocked, sig) != 1 ||
		    sigaction(sig, NULL, &sa) != 0)
			continue;
		if ((sa.sa_flags & SA_SIGINFO) || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN))
			return true;
	}
	return false;
}

void pf_thread_forked_child(void)
{
	starting = 0;
}

int pf_thread_start(void *(*fn)(void *), size_t stack)
{
	struct start *arg = malloc(sizeof(*arg));
	if (!arg)
		return ENOMEM;
	arg->fn = fn;
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t tid;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, stack);
	/* The new thread inherits the mask in force here. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	__atomic_add_fetch(&starting, 1, __ATOMIC_RELAXED);
	int err = pthread_create(&tid, &attr, trampoline, arg);
	if (err) {
		__atomic_sub_fetch(&starting, 1, __ATOMIC_RELAXED);
		free(arg);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return err;
}
