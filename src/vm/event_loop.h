/* SPDX-License-Identifier: MIT */
/*
 * The VM's device thread: one epoll loop that runs device work (queue
 * notifications, backend completions) off the vCPU threads.
 */
#ifndef KILN_VM_EVENT_LOOP_H
#define KILN_VM_EVENT_LOOP_H

#include <pthread.h>
#include <stdbool.h>

#define EVENT_LOOP_MAX_HANDLERS 64

typedef void (*event_fn)(void *opaque, int fd, unsigned events);

struct event_handler {
	int fd;
	event_fn fn;
	void *opaque;
};

struct event_loop {
	int epoll_fd, stop_fd, pause_fd;
	pthread_t thread;
	bool running;
	/* pause: the thread finishes its batch, says so, and waits */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool pause_req, paused;
	struct event_handler handlers[EVENT_LOOP_MAX_HANDLERS];
	unsigned nr;
};

/* Creates the epoll and stop eventfd; 0 or -errno. */
int event_loop_init(struct event_loop *l);
/* Watches fd for `events` (EPOLLIN...); fn runs on the loop thread. Must be
 * called before event_loop_start. */
int event_loop_add(struct event_loop *l, int fd, unsigned events, event_fn fn,
		   void *opaque);
/* Starts the thread (all signals blocked in it). */
int event_loop_start(struct event_loop *l);
/* Makes the thread stop serving after the handlers it is running and wait;
 * returns once it waits (at once if it was never started). */
void event_loop_pause(struct event_loop *l);
/* Lets a paused thread serve again. */
void event_loop_resume(struct event_loop *l);
/* Stops and joins the thread; closes the loop's fds. Safe if never started. */
void event_loop_destroy(struct event_loop *l);

#endif
