/* SPDX-License-Identifier: MIT */
/*
 * The console, on both engines: guest output (UART or virtio-console) into
 * the capture buffer and the output fd; the console-input thread, which
 * reads the input fd only as fast as the guest's console takes it and
 * watches for the escape sequence; and the console API (write, wait_for,
 * exec) over the capture buffer.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/fdio.h"
#include "virtio/console.h"
#include "vm/vm_internal.h"

/* Appends guest console output to the capture buffer. */
static void capture_output(struct kiln_vm *vm, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&vm->lock);
	if (len > CONSOLE_CAPTURE_MAX) {
		buf += len - CONSOLE_CAPTURE_MAX;
		len = CONSOLE_CAPTURE_MAX;
	}
	if (vm->cap_len + len > CONSOLE_CAPTURE_MAX) {
		size_t drop = vm->cap_len + len - CONSOLE_CAPTURE_MAX;

		memmove(vm->cap, vm->cap + drop, vm->cap_len - drop);
		vm->cap_len -= drop;
	}
	if (vm->cap_len + len + 1 > vm->cap_size) {
		size_t want = vm->cap_size ? vm->cap_size : 4096;
		char *p;

		while (want < vm->cap_len + len + 1)
			want *= 2;
		p = realloc(vm->cap, want);
		if (!p) {
			pthread_mutex_unlock(&vm->lock);
			return;
		}
		vm->cap = p;
		vm->cap_size = want;
	}
	memcpy(vm->cap + vm->cap_len, buf, len);
	vm->cap_len += len;
	vm->cap[vm->cap_len] = 0;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/* Guest console output (UART or virtio-console; any thread): capture, then
 * the output ring. Never blocks on the output fd. */
void vm_console_output(void *opaque, const uint8_t *buf, size_t len)
{
	struct kiln_vm *vm = opaque;
	struct console_out *o = &vm->out;
	size_t room, take;

	if (vm->capture)
		capture_output(vm, buf, len);
	if (!o->ring)
		return;
	pthread_mutex_lock(&o->lock);
	room = o->dead ? 0 : CONSOLE_OUT_RING - o->len;
	take = len < room ? len : room;
	o->dropped += len - take;
	for (size_t done = 0; done < take;) {
		size_t at = (o->head + o->len) % CONSOLE_OUT_RING;
		size_t n = CONSOLE_OUT_RING - at;

		if (n > take - done)
			n = take - done;
		memcpy(o->ring + at, buf + done, n);
		o->len += n;
		done += n;
	}
	if (take)
		pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

/* Writes the ring to the output fd, blocking only itself. A kick signal
 * (sent by vm_console_out_stop once the drain time is over) interrupts a
 * write to a reader that never reads. */
static void *console_out_thread(void *arg)
{
	struct kiln_vm *vm = arg;
	struct console_out *o = &vm->out;
	sigset_t kick;

	sigemptyset(&kick);
	sigaddset(&kick, vm->kick_signal);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	pthread_mutex_lock(&o->lock);
	for (;;) {
		size_t n;
		ssize_t w;
		int werr;

		while (!o->len && !o->stop)
			pthread_cond_wait(&o->cond, &o->lock);
		if (!o->len || o->dead)
			break;
		n = CONSOLE_OUT_RING - o->head;
		if (n > o->len)
			n = o->len;
		pthread_mutex_unlock(&o->lock);
		w = write_nosigpipe(vm->console_out_fd, o->ring + o->head, n);
		werr = w < 0 ? errno : 0;
		if (werr == EAGAIN) {
			struct pollfd p = {.fd = vm->console_out_fd,
					   .events = POLLOUT};

			poll(&p, 1, 100); /* a non-blocking fd that is full */
		}
		pthread_mutex_lock(&o->lock);
		if (w > 0) {
			o->head = (o->head + (size_t)w) % CONSOLE_OUT_RING;
			o->len -= (size_t)w;
		} else if (w == 0 || (werr != EAGAIN && werr != EINTR) ||
			   o->stop) {
			/* reader gone, or stopping (after the drain time) and
			 * it still takes nothing */
			o->dead = true;
			o->dropped += o->len;
			o->len = 0;
		}
		pthread_cond_broadcast(&o->cond);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

int vm_console_out_init(struct kiln_vm *vm)
{
	struct console_out *o = &vm->out;

	pthread_mutex_init(&o->lock, NULL);
	vm_cond_init(&o->cond);
	if (vm->console_out_fd < 0)
		return 0;
	o->ring = malloc(CONSOLE_OUT_RING);
	return o->ring ? 0 : -ENOMEM;
}

int vm_console_out_start(struct kiln_vm *vm)
{
	struct console_out *o = &vm->out;
	int r;

	if (!o->ring)
		return 0;
	r = -pthread_create(&o->thread, NULL, console_out_thread, vm);
	o->started = r == 0;
	return r;
}

void vm_console_out_drain(struct kiln_vm *vm, int ms)
{
	struct console_out *o = &vm->out;
	struct timespec ts;

	if (!o->started)
		return;
	deadline_after(&ts, ms);
	pthread_mutex_lock(&o->lock);
	while (o->len && !o->dead &&
	       pthread_cond_timedwait(&o->cond, &o->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&o->lock);
}

void vm_console_out_stop(struct kiln_vm *vm)
{
	struct console_out *o = &vm->out;

	if (o->started) {
		/* what the guest printed is written, if the reader takes it
		 * within a second */
		vm_console_out_drain(vm, 1000);
		pthread_mutex_lock(&o->lock);
		o->stop = true;
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->lock);
		for (;;) {
			struct timespec ts;

			deadline_on(CLOCK_REALTIME, &ts, 100);
			if (pthread_timedjoin_np(o->thread, NULL, &ts) == 0)
				break;
			/* stuck in a write nobody reads: interrupt it */
			pthread_kill(o->thread, vm->kick_signal);
		}
		o->started = false;
	}
	if (o->dropped)
		log_warn(&vm->log,
			 "console: %llu bytes of guest output were dropped "
			 "(the output fd did not take them)",
			 (unsigned long long)o->dropped);
	free(o->ring);
	o->ring = NULL;
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->lock);
}

static size_t console_room(struct kiln_vm *vm)
{
	if (vm->tcg)
		return tcg_console_room(vm);
	if (vm->console_vdev)
		return virtio_console_rx_room(&vm->console_vdev->mmio.dev);
	return serial8250_rx_room(&vm->serial);
}

static size_t console_push(struct kiln_vm *vm, const uint8_t *buf, size_t len)
{
	struct virtio_mmio *t;
	size_t n;

	if (vm->tcg)
		return tcg_console_push(vm, buf, len);
	if (!vm->console_vdev)
		return serial8250_push_input(&vm->serial, buf, len);
	t = &vm->console_vdev->mmio;
	pthread_mutex_lock(&t->lock); /* the receive queue is device state */
	n = virtio_console_push_input(&t->dev, buf, len);
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* Called with vm->lock held, when the console has no room. The UART says
 * when it drains (rx_space); virtio-console drains when the driver posts
 * buffers, which is checked again every 50 ms. */
static void wait_console_room(struct kiln_vm *vm)
{
	struct timespec ts;

	if (vm->tcg) {
		tcg_wait_console_room(vm);
		return;
	}
	vm->rx_space = false;
	if (!vm->console_vdev) {
		while (!vm->rx_space && !atomic_load(&vm->stopping))
			pthread_cond_wait(&vm->cond, &vm->lock);
		return;
	}
	deadline_after(&ts, 50);
	pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
}

/* Sleeps until the console takes input again or the VM stops. */
static void wait_until_room(struct kiln_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (!atomic_load(&vm->stopping) && console_room(vm) == 0)
		wait_console_room(vm);
	pthread_mutex_unlock(&vm->lock);
}

void *vm_console_thread(void *arg)
{
	struct kiln_vm *vm = arg;
	bool escaped = false;

	while (!atomic_load(&vm->stopping)) {
		struct pollfd fds[2] = {
			{.fd = vm->console_in_fd, .events = POLLIN},
			{.fd = vm->wake_fd, .events = POLLIN},
		};
		uint8_t buf[SERIAL8250_FIFO_SIZE],
			out[SERIAL8250_FIFO_SIZE + 1];
		size_t room = 0, nout = 0;
		ssize_t n;

		/* Backpressure: read from the host only what the guest's
		 * console takes. */
		pthread_mutex_lock(&vm->lock);
		while (!atomic_load(&vm->stopping) &&
		       atomic_load(&vm->pause_req))
			pthread_cond_wait(&vm->cond, &vm->lock);
		while (!atomic_load(&vm->stopping) &&
		       (room = console_room(vm)) == 0)
			wait_console_room(vm);
		pthread_mutex_unlock(&vm->lock);
		if (atomic_load(&vm->stopping))
			break;
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[1].revents)
			break;
		if (atomic_load(&vm->pause_req))
			continue; /* paused meanwhile: the input waits */
		n = read(vm->console_in_fd, buf, room);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break; /* EOF or error: the guest just gets no input */
		for (ssize_t i = 0; i < n; i++) {
			if (escaped) {
				escaped = false;
				if (buf[i] == 'x' || buf[i] == 'X') {
					vm_finish(vm, KILN_OUTCOME_STOPPED,
						  "stopped from the console");
					return NULL;
				}
				if (buf[i] != vm->console_escape)
					out[nout++] =
						(uint8_t)vm->console_escape;
			} else if (vm->console_escape &&
				   buf[i] == vm->console_escape) {
				escaped = true;
				continue;
			}
			out[nout++] = buf[i];
		}
		for (size_t done = 0; done < nout;) {
			size_t k = console_push(vm, out + done, nout - done);

			done += k;
			if (!k) {
				/* filled meanwhile: wait for room */
				wait_until_room(vm);
				if (atomic_load(&vm->stopping))
					return NULL;
			}
		}
	}
	return NULL;
}

KILN_API long kiln_vm_console_write(struct kiln_vm *vm, const void *buf,
				    size_t len)
{
	const uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		size_t n;

		if (atomic_load(&vm->stopping))
			return done ? (long)done : -EPIPE;
		n = console_push(vm, p + done, len - done);
		done += n;
		if (!n) {
			wait_until_room(vm);
		}
	}
	return (long)done;
}

KILN_API int kiln_vm_console_wait_for(struct kiln_vm *vm, const char *pattern,
				      int timeout_ms, char **output)
{
	struct timespec ts;
	size_t plen = strlen(pattern);
	int r = 0;

	if (output)
		*output = NULL;
	if (!vm->capture || !plen)
		return -EINVAL;
	deadline_after(&ts, timeout_ms < 0 ? 0 : timeout_ms);
	pthread_mutex_lock(&vm->lock);
	for (;;) {
		char *hit = vm->cap_len ? strstr(vm->cap, pattern) : NULL;

		if (hit) {
			size_t take = (size_t)(hit - vm->cap) + plen;

			if (output) {
				*output = strndup(vm->cap, take);
				if (!*output)
					r = -ENOMEM;
			}
			memmove(vm->cap, vm->cap + take,
				vm->cap_len - take + 1);
			vm->cap_len -= take;
			break;
		}
		if (vm->exit.outcome != KILN_OUTCOME_NONE) {
			r = -EPIPE;
			break;
		}
		if (timeout_ms < 0)
			pthread_cond_wait(&vm->cond, &vm->lock);
		else if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) ==
			 ETIMEDOUT) {
			r = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

KILN_API int kiln_vm_console_exec(struct kiln_vm *vm, const char *line,
				  const char *prompt, int timeout_ms,
				  char **output)
{
	size_t len = strlen(line);
	char *raw = NULL, *start;
	long w;
	int r;

	if (output)
		*output = NULL;
	if (!vm->capture || !prompt || !*prompt)
		return -EINVAL;
	w = kiln_vm_console_write(vm, line, len);
	if (w >= 0)
		w = kiln_vm_console_write(vm, "\n", 1);
	if (w < 0)
		return (int)w;
	r = kiln_vm_console_wait_for(vm, prompt, timeout_ms, &raw);
	if (r < 0)
		return r;
	/* Drop the guest's echo of the line (up to its newline) and the
	 * prompt itself. */
	start = raw;
	if (strncmp(start, line, len) == 0) {
		start += len;
		start += strspn(start, "\r");
		if (*start == '\n')
			start++;
	}
	raw[strlen(raw) - strlen(prompt)] = 0;
	if (output) {
		*output = strdup(start);
		r = *output ? 0 : -ENOMEM;
	}
	free(raw);
	return r;
}
