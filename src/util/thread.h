/* SPDX-License-Identifier: MIT */
/* Library threads start with every signal blocked, so the application's
 * signals are delivered to its own threads. */
#ifndef KILN_UTIL_THREAD_H
#define KILN_UTIL_THREAD_H

#include <pthread.h>
#include <signal.h>

/* pthread_create with every signal blocked in the new thread; 0 or the
 * positive error number pthread_create returned. */
static inline int thread_start_blocked(pthread_t *t, void *(*fn)(void *),
				       void *arg)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

#endif
