#include "config.h"

#include <pthread.h>
#include <signal.h>

#include "thread.h"

int pf_thread_start(void *(*fn)(void *), size_t stack)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t tid;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, stack);
	/* The new thread inherits the mask in force here. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&tid, &attr, fn, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return err;
}
