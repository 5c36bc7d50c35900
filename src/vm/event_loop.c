/* SPDX-License-Identifier: MIT */
#include "event_loop.h"
#include "util/thread.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

int event_loop_init(struct event_loop *l)
{
	struct epoll_event ev = {.events = EPOLLIN};

	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->pause_lock, NULL);
	pthread_cond_init(&l->pause_cond, NULL);
	l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	l->pause_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epoll_fd < 0 || l->stop_fd < 0 || l->pause_fd < 0)
		return -errno;
	ev.data.u32 = UINT32_MAX; /* marks the stop fd */
	if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->stop_fd, &ev) < 0)
		return -errno;
	ev.data.u32 = UINT32_MAX - 1; /* the pause fd */
	if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->pause_fd, &ev) < 0)
		return -errno;
	return 0;
}

int event_loop_add(struct event_loop *l, int fd, unsigned events, event_fn fn,
		   void *opaque)
{
	struct epoll_event ev = {.events = events};

	if (l->running)
		return -EBUSY;
	if (l->nr == EVENT_LOOP_MAX_HANDLERS)
		return -ENOSPC;
	ev.data.u32 = l->nr;
	if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	l->handlers[l->nr++] = (struct event_handler){fd, fn, opaque};
	return 0;
}

static void *loop_main(void *arg)
{
	struct event_loop *l = arg;

	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(l->epoll_fd, evs, 16, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			uint32_t idx = evs[i].data.u32;

			if (idx == UINT32_MAX)
				return NULL;
			if (idx == UINT32_MAX - 1) {
				uint64_t v;

				(void)!read(l->pause_fd, &v, sizeof(v));
				pthread_mutex_lock(&l->pause_lock);
				if (l->pause_req) {
					l->paused = true;
					pthread_cond_broadcast(&l->pause_cond);
					while (l->pause_req)
						pthread_cond_wait(
							&l->pause_cond,
							&l->pause_lock);
					l->paused = false;
				}
				pthread_mutex_unlock(&l->pause_lock);
				continue;
			}
			if (idx < l->nr)
				l->handlers[idx].fn(l->handlers[idx].opaque,
						    l->handlers[idx].fd,
						    evs[i].events);
		}
	}
}

int event_loop_start(struct event_loop *l)
{
	int r = thread_start_blocked(&l->thread, loop_main, l);

	if (r)
		return -r;
	l->running = true;
	return 0;
}

void event_loop_pause(struct event_loop *l)
{
	uint64_t one = 1;

	pthread_mutex_lock(&l->pause_lock);
	l->pause_req = true;
	if (l->running) {
		(void)!write(l->pause_fd, &one, sizeof(one));
		while (!l->paused)
			pthread_cond_wait(&l->pause_cond, &l->pause_lock);
	}
	pthread_mutex_unlock(&l->pause_lock);
}

void event_loop_resume(struct event_loop *l)
{
	pthread_mutex_lock(&l->pause_lock);
	l->pause_req = false;
	pthread_cond_broadcast(&l->pause_cond);
	pthread_mutex_unlock(&l->pause_lock);
}

void event_loop_destroy(struct event_loop *l)
{
	uint64_t one = 1;

	event_loop_resume(l); /* a paused thread must see the stop */
	if (l->running) {
		if (write(l->stop_fd, &one, sizeof(one)) < 0) {
			/* cannot fail for a fresh eventfd */
		}
		pthread_join(l->thread, NULL);
		l->running = false;
	}
	if (l->epoll_fd > 0)
		close(l->epoll_fd);
	if (l->stop_fd > 0)
		close(l->stop_fd);
	if (l->pause_fd > 0)
		close(l->pause_fd);
	l->epoll_fd = l->stop_fd = l->pause_fd = -1;
}
