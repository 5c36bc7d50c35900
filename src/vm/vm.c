/* SPDX-License-Identifier: MIT */
/*
 * VM lifecycle: build a VM from a config, run one thread per vCPU plus a
 * console-input thread and a monitor thread, and record how the run ended.
 *
 * Stopping: whoever ends the VM calls vm_finish(), which records the outcome
 * once, sets `stopping` and kicks every vCPU with a signal that is blocked
 * outside KVM_RUN (so a kick can never be lost or delivered elsewhere).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "devices/bus.h"
#include "devices/legacy.h"
#include "devices/serial8250.h"
#include "kvm/kvm.h"
#include "mem/guest_mem.h"
#include "backends/block.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/fs.h"
#include "virtio/mmio.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "vm/config.h"
#include "vm/event_loop.h"

#include "vm/engine.h"
#include "vm/vm_internal.h"

KILN_API const char *kiln_outcome_name(enum kiln_outcome o)
{
	switch (o) {
	case KILN_OUTCOME_NONE: return "none";
	case KILN_OUTCOME_RESET: return "reset";
	case KILN_OUTCOME_HALT: return "halt";
	case KILN_OUTCOME_TRIPLE_FAULT: return "triple-fault";
	case KILN_OUTCOME_INTERNAL_ERROR: return "internal-error";
	case KILN_OUTCOME_DEBUG_EXIT: return "debug-exit";
	case KILN_OUTCOME_TIMEOUT: return "timeout";
	case KILN_OUTCOME_STOPPED: return "stopped";
	case KILN_OUTCOME_VMM_ERROR: return "vmm-error";
	}
	return "unknown";
}

KILN_API const char *kiln_host_limitation(void)
{
	if (kvm_host_is_pvm())
		return "/dev/kvm is PVM (module kvm_pvm; no VMX/SVM in "
		       "/proc/cpuinfo): guest kernel code is emulated one "
		       "instruction at a time, so a stock Linux kernel cannot "
		       "run at usable speed and stops at the first instruction "
		       "the emulator lacks (xrstor, int3, cmpxchg16b). It "
		       "needs "
		       "a PVM-enabled guest kernel (CONFIG_PVM_GUEST) or a "
		       "host "
		       "with hardware virtualization";
	return NULL;
}

/* --- ending the run --- */

static void kick_all(struct kiln_vm *vm)
{
	if (!vm->vcpus)
		return;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].started)
			pthread_kill(vm->vcpus[i].thread, vm->kick_signal);
}

void vm_finish_info(struct kiln_vm *vm, const struct kiln_exit_info *in,
		    const char *detail)
{
	uint64_t one = 1;
	bool first = false;

	pthread_mutex_lock(&vm->lock);
	if (vm->exit.outcome == KILN_OUTCOME_NONE) {
		vm->exit = *in;
		snprintf(vm->exit_detail, sizeof(vm->exit_detail), "%s",
			 detail);
		vm->exit.detail = vm->exit_detail;
		first = true;
	}
	atomic_store(&vm->stopping, true);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (first)
		log_debug(&vm->log, "VM ended: %s", detail);
	if (vm->wake_fd >= 0 && write(vm->wake_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write only fails on overflow: already woken */
	}
	kick_all(vm);
}

void vm_finish(struct kiln_vm *vm, enum kiln_outcome outcome, const char *fmt,
	       ...)
{
	struct kiln_exit_info info = {.outcome = outcome};
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	vm_finish_info(vm, &info, detail);
}

/* --- devices' links to the VM --- */

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

/* Guest console output (UART or virtio-console): capture, then the fd. */
void vm_console_output(void *opaque, const uint8_t *buf, size_t len)
{
	struct kiln_vm *vm = opaque;

	if (vm->capture)
		capture_output(vm, buf, len);

	while (vm->console_out_fd >= 0 && len) {
		ssize_t n = write(vm->console_out_fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* reader gone or non-blocking and full: drop */
		buf += n;
		len -= (size_t)n;
	}
}

static void serial_set_irq(void *opaque, int level)
{
	struct kiln_vm *vm = opaque;

	kvm_vm_irq_line(vm->vm_fd, SERIAL8250_COM1_IRQ, level);
}

static void serial_rx_space(void *opaque)
{
	struct kiln_vm *vm = opaque;

	pthread_mutex_lock(&vm->lock);
	vm->rx_space = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static const struct serial8250_ops serial_ops = {
	.output = vm_console_output,
	.set_irq = serial_set_irq,
	.rx_space = serial_rx_space,
};

static void legacy_request(void *opaque, enum legacy_request req, int code)
{
	struct kiln_vm *vm = opaque;

	if (req == LEGACY_RESET) {
		vm_finish(vm, KILN_OUTCOME_RESET, "guest reset");
	} else {
		struct kiln_exit_info info = {.outcome =
						      KILN_OUTCOME_DEBUG_EXIT,
					      .debug_exit_code = code};
		char detail[64];

		snprintf(detail, sizeof(detail), "guest debug-exit %d", code);
		vm_finish_info(vm, &info, detail);
	}
}

/* --- console input --- */

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
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += 50 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
}

static void *console_thread_main(void *arg)
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
				pthread_mutex_lock(&vm->lock);
				while (!atomic_load(&vm->stopping) &&
				       console_room(vm) == 0)
					wait_console_room(vm);
				pthread_mutex_unlock(&vm->lock);
				if (atomic_load(&vm->stopping))
					return NULL;
			}
		}
	}
	return NULL;
}

/* --- vCPU threads --- */

static int set_kvm_signal_mask(struct kiln_vm *vm, int vcpu_fd)
{
	/* struct kvm_signal_mask ends in a flexible array: room for the
	 * kernel's 8-byte sigset after the header. */
	union {
		struct kvm_signal_mask hdr;
		uint8_t bytes[sizeof(struct kvm_signal_mask) + 8];
	} m;
	sigset_t cur;

	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	sigdelset(&cur, vm->kick_signal);
	m.hdr.len = 8; /* the kernel's sigset size on x86-64 */
	memcpy(m.hdr.sigset, &cur, 8);
	return ioctl(vcpu_fd, KVM_SET_SIGNAL_MASK, &m) < 0 ? -errno : 0;
}

static void consume_kick(struct kiln_vm *vm)
{
	struct timespec zero = {0, 0};
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, vm->kick_signal);
	while (sigtimedwait(&set, NULL, &zero) > 0)
		;
}

/* True when this vCPU can never run again on its own: halted with
 * interrupts off, or an AP that was never started. */
static bool vcpu_is_dead(struct vm_vcpu *v)
{
	struct kvm_mp_state mp;
	struct kvm_regs regs;

	if (ioctl(v->kvm.fd, KVM_GET_MP_STATE, &mp) < 0)
		return false;
	if (mp.mp_state == KVM_MP_STATE_UNINITIALIZED ||
	    mp.mp_state == KVM_MP_STATE_INIT_RECEIVED)
		return true;
	if (mp.mp_state != KVM_MP_STATE_HALTED)
		return false;
	if (ioctl(v->kvm.fd, KVM_GET_REGS, &regs) < 0)
		return false;
	return !(regs.rflags & 0x200);
}

static void answer_probe(struct vm_vcpu *v)
{
	struct kiln_vm *vm = v->vm;
	unsigned req = atomic_load(&v->probe_req);
	bool dead;

	if (req == v->probe_done)
		return;
	dead = vcpu_is_dead(v);
	pthread_mutex_lock(&vm->lock);
	v->probe_done = req;
	v->probe_dead = dead;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static uint64_t vcpu_rip(struct vm_vcpu *v)
{
	struct kvm_regs regs;

	if (ioctl(v->kvm.fd, KVM_GET_REGS, &regs) < 0)
		return 0;
	return regs.rip;
}

static const char *internal_suberror_name(uint32_t s)
{
	switch (s) {
	case KVM_INTERNAL_ERROR_EMULATION: return "emulation failure";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV: return "event delivery failed";
	default: return "unknown";
	}
}

static void handle_internal_error(struct vm_vcpu *v)
{
	struct kiln_vm *vm = v->vm;
	struct kvm_run *run = v->kvm.run;
	struct kiln_exit_info info = {.outcome = KILN_OUTCOME_INTERNAL_ERROR};
	char detail[512];
	int len;
	uint32_t ndata = run->internal.ndata;

	info.internal_suberror = run->internal.suberror;
	info.rip = vcpu_rip(v);
	len = snprintf(detail, sizeof(detail),
		       "KVM internal error on vCPU %u: %s (suberror %u) at "
		       "guest RIP 0x%llx",
		       v->kvm.index,
		       internal_suberror_name(info.internal_suberror),
		       info.internal_suberror, (unsigned long long)info.rip);
	if (ndata > 16)
		ndata = 16;
	for (uint32_t i = 0;
	     i < ndata && len > 0 && (size_t)len < sizeof(detail); i++)
		len += snprintf(detail + len, sizeof(detail) - (size_t)len,
				"%s0x%llx", i ? " " : ", data ",
				(unsigned long long)run->internal.data[i]);
	vm_finish_info(vm, &info, detail);
}

static void handle_io(struct vm_vcpu *v)
{
	struct kvm_run *run = v->kvm.run;
	uint64_t total = (uint64_t)run->io.size * run->io.count;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;

	if (run->io.size == 0 || run->io.size > 4 ||
	    run->io.data_offset > (uint64_t)v->kvm.run_size ||
	    total > (uint64_t)v->kvm.run_size - run->io.data_offset)
		return;
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
		bus_access(&v->vm->pio, run->io.port, data, run->io.size,
			   write);
}

static void handle_mmio(struct vm_vcpu *v)
{
	struct kvm_run *run = v->kvm.run;
	uint32_t len = run->mmio.len;

	if (len == 0 || len > sizeof(run->mmio.data))
		return;
	bus_access(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len,
		   run->mmio.is_write);
}

static void handle_exit(struct vm_vcpu *v)
{
	struct kiln_vm *vm = v->vm;
	struct kvm_run *run = v->kvm.run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO: handle_io(v); break;
	case KVM_EXIT_MMIO: handle_mmio(v); break;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; the monitor decides. */
		break;
	case KVM_EXIT_INTR: break;
	case KVM_EXIT_SHUTDOWN: {
		struct kiln_exit_info info = {.outcome =
						      KILN_OUTCOME_TRIPLE_FAULT,
					      .rip = vcpu_rip(v)};
		char detail[128];

		snprintf(detail, sizeof(detail),
			 "guest triple fault (shutdown) on vCPU %u at RIP "
			 "0x%llx",
			 v->kvm.index, (unsigned long long)info.rip);
		vm_finish_info(vm, &info, detail);
		break;
	}
	case KVM_EXIT_INTERNAL_ERROR: handle_internal_error(v); break;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
			vm_finish(vm, KILN_OUTCOME_RESET, "guest reset");
		else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
			vm_finish(vm, KILN_OUTCOME_HALT, "guest shut down");
		else
			vm_finish(vm, KILN_OUTCOME_INTERNAL_ERROR,
				  "guest system event %u (crash)",
				  run->system_event.type);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		vm_finish(vm, KILN_OUTCOME_VMM_ERROR,
			  "KVM could not enter the guest on vCPU %u (hardware "
			  "reason 0x%llx)",
			  v->kvm.index,
			  (unsigned long long)run->fail_entry
				  .hardware_entry_failure_reason);
		break;
	default:
		vm_finish(vm, KILN_OUTCOME_VMM_ERROR,
			  "unexpected KVM exit %u (%s) on vCPU %u",
			  run->exit_reason,
			  kvm_exit_reason_name(run->exit_reason), v->kvm.index);
		break;
	}
}

static void *vcpu_thread_main(void *arg)
{
	struct vm_vcpu *v = arg;
	struct kiln_vm *vm = v->vm;
	int r;

	r = set_kvm_signal_mask(vm, v->kvm.fd);
	if (r < 0) {
		vm_finish(vm, KILN_OUTCOME_VMM_ERROR, "KVM_SET_SIGNAL_MASK: %s",
			  strerror(-r));
		return NULL;
	}
	while (!atomic_load(&vm->stopping)) {
		if (ioctl(v->kvm.fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				consume_kick(vm);
				answer_probe(v);
				continue;
			}
			vm_finish(vm, KILN_OUTCOME_VMM_ERROR,
				  "KVM_RUN on vCPU %u: %s", v->kvm.index,
				  strerror(errno));
			break;
		}
		handle_exit(v);
	}
	return NULL;
}

/* --- monitor: detects a guest that can never run again --- */

static void deadline_after(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *monitor_thread_main(void *arg)
{
	struct kiln_vm *vm = arg;
	unsigned gen = 0;

	pthread_mutex_lock(&vm->lock);
	while (!atomic_load(&vm->stopping)) {
		struct timespec ts;
		bool all_answered, all_dead;

		deadline_after(&ts, HALT_PROBE_INTERVAL_MS);
		while (!atomic_load(&vm->stopping) &&
		       pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == 0)
			;
		if (atomic_load(&vm->stopping))
			break;
		gen++;
		for (unsigned i = 0; i < vm->ncpus; i++) {
			atomic_store(&vm->vcpus[i].probe_req, gen);
			pthread_kill(vm->vcpus[i].thread, vm->kick_signal);
		}
		deadline_after(&ts, HALT_PROBE_ANSWER_MS);
		do {
			all_answered = all_dead = true;
			for (unsigned i = 0; i < vm->ncpus; i++) {
				if (vm->vcpus[i].probe_done != gen)
					all_answered = false;
				else if (!vm->vcpus[i].probe_dead)
					all_dead = false;
			}
			if (all_answered || !all_dead)
				break;
		} while (!atomic_load(&vm->stopping) &&
			 pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) ==
				 0);
		if (all_answered && all_dead) {
			pthread_mutex_unlock(&vm->lock);
			vm_finish(vm, KILN_OUTCOME_HALT,
				  "guest halted: every vCPU stopped with "
				  "interrupts disabled");
			pthread_mutex_lock(&vm->lock);
			break;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

/* --- creation --- */

struct mapped_file {
	uint8_t *data;
	size_t size;
};

static int map_file(const char *path, const char *what, struct mapped_file *f,
		    const struct kiln_log *log)
{
	struct stat st;
	/* O_NONBLOCK: a FIFO must be refused below, not block open() */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	void *p;

	f->data = NULL;
	f->size = 0;
	if (fd < 0) {
		int err = -errno;

		if (err == -ENOENT)
			return kiln_errorf(log, err,
					   "%s file %s does not exist", what,
					   path);
		return kiln_errorf(log, err, "cannot open %s file %s: %s", what,
				   path, strerror(-err));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return kiln_errorf(log, -EINVAL, "%s %s is not a regular file",
				   what, path);
	}
	if (st.st_size == 0) {
		close(fd);
		return kiln_errorf(log, -EINVAL, "%s file %s is empty", what,
				   path);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return kiln_errorf(log, -errno, "cannot map %s file %s: %s",
				   what, path, strerror(errno));
	f->data = p;
	f->size = (size_t)st.st_size;
	return 0;
}

static void unmap_file(struct mapped_file *f)
{
	if (f->data)
		munmap(f->data, f->size);
	f->data = NULL;
}

static void kick_handler(int sig)
{
	(void)sig;
}

/* The kick signal needs a handler so that it is never ignored (an ignored
 * signal would not interrupt KVM_RUN) nor fatal. Installed only if the
 * application left the default disposition. */
static int kick_signal_setup(void)
{
	int sig = SIGRTMIN + 3;
	struct sigaction old;

	if (sigaction(sig, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
	    old.sa_handler == SIG_DFL) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = kick_handler;
		sigemptyset(&sa.sa_mask);
		sigaction(sig, &sa, NULL);
	}
	return sig;
}

static int setup_devices(struct kiln_vm *vm)
{
	int r;

	serial8250_init(&vm->serial, &serial_ops, vm);
	vm->legacy = (struct legacy_devices){legacy_request, vm};
	r = bus_register(&vm->pio, SERIAL8250_COM1_PORT, 8, serial8250_access,
			 &vm->serial);
	if (r == 0)
		r = bus_register(&vm->pio, I8042_DATA_PORT, 5, i8042_access,
				 &vm->legacy);
	if (r == 0)
		r = bus_register(&vm->pio, RESET_CONTROL_PORT, 1,
				 reset_control_access, &vm->legacy);
	if (r == 0 && vm->debug_exit)
		r = bus_register(&vm->pio, KILN_DEBUG_EXIT_PORT, 1,
				 debug_exit_access, &vm->legacy);
	if (r < 0)
		return kiln_errorf(&vm->log, r, "cannot register devices");
	return 0;
}

/* Disks: a raw-file block backend behind a virtio-blk device. */
static int vm_blk_create(struct kiln_vm *vm,
			 const struct kiln_disk_config *disk, struct vm_vdev *v)
{
	int r = block_raw_open(disk->path, disk->read_only, &vm->log,
			       &v->blk_backend);

	if (r < 0)
		return kiln_errorf(&vm->log, r, "cannot use disk %s",
				   disk->path);
	r = virtio_blk_create(v->blk_backend, disk->read_only, &v->mmio.dev);
	if (r < 0)
		return kiln_errorf(&vm->log, r, "cannot create disk %s",
				   disk->path);
	return 0;
}

static void vm_blk_destroy(struct vm_vdev *v)
{
	if (v->mmio.dev.ops)
		virtio_blk_destroy(&v->mmio.dev);
	block_backend_destroy(v->blk_backend);
	v->blk_backend = NULL;
}

/* Host-side socket events of the vsock device, on the device thread, under
 * the same lock its queue_notify runs with. */
static void vsock_events(void *opaque, int fd, unsigned events)
{
	struct vm_vdev *v = opaque;

	(void)fd;
	(void)events;
	pthread_mutex_lock(&v->mmio.lock);
	virtio_vsock_handle_events(&v->mmio.dev);
	pthread_mutex_unlock(&v->mmio.lock);
}

static void vdev_notify(void *opaque, int fd, unsigned events)
{
	struct vm_vdev_notify *n = opaque;

	(void)fd;
	(void)events;
	virtio_mmio_handle_notify(&n->vdev->mmio, n->queue);
}

int vm_create_vdevs(struct kiln_vm *vm, const struct kiln_config *cfg,
		    bool with_console)
{
	/* order: console, rng, disks, vsock, shares */
	unsigned first = with_console ? 0 : 1;
	unsigned first_share = 2 + cfg->nr_disks + (cfg->vsock_uds ? 1 : 0);
	unsigned n = first_share + cfg->nr_shares - first;
	int r;

	if (n > VM_VIRTIO_MAX_DEVICES)
		return kiln_errorf(&vm->log, -E2BIG,
				   "too many devices: %u disks, %u shares%s "
				   "need %u device slots, kiln has %u",
				   cfg->nr_disks, cfg->nr_shares,
				   cfg->vsock_uds ? " and vsock" : "", n,
				   VM_VIRTIO_MAX_DEVICES);
	vm->vdevs = calloc(n, sizeof(*vm->vdevs));
	if (!vm->vdevs)
		return -ENOMEM;
	for (unsigned slot = first; slot < first + n; slot++) {
		struct vm_vdev *v = &vm->vdevs[slot - first];

		v->mmio.dev.log = &vm->log; /* for the constructors */
		vm->nr_vdevs =
			slot - first + 1; /* so a failure is cleaned up */
		if (slot == 0) {
			v->kind = VDEV_CONSOLE;
			virtio_console_init(&v->console, &v->mmio.dev,
					    vm_console_output, vm);
		} else if (slot == 1) {
			v->kind = VDEV_RNG;
			virtio_rng_init(&v->mmio.dev);
		} else if (slot >= first_share) {
			const struct kiln_share_config *sh =
				&cfg->shares[slot - first_share];

			v->kind = VDEV_FS;
			r = virtio_fs_create(sh->dir, sh->tag, sh->read_only,
					     &vm->log, &v->mmio.dev);
			if (r < 0)
				return kiln_errorf(&vm->log, r,
						   "cannot share %s", sh->dir);
		} else if (slot == 2 + cfg->nr_disks) {
			struct virtio_vsock_config vc = {
				.guest_cid = cfg->vsock_cid,
				.uds_path = cfg->vsock_uds,
			};

			v->kind = VDEV_VSOCK;
			r = virtio_vsock_create(&vc, &v->mmio.dev);
			if (r < 0)
				return kiln_errorf(
					&vm->log, r,
					"cannot create vsock device at %s",
					cfg->vsock_uds);
		} else {
			v->kind = VDEV_BLK;
			r = vm_blk_create(vm, &cfg->disks[slot - 2], v);
			if (r < 0)
				return r;
		}
	}
	if (with_console && cfg->console == KILN_CONSOLE_VIRTIO)
		vm->console_vdev = &vm->vdevs[0];
	return 0;
}

/* KVM engine: gives each device a virtio-mmio transport, its queue
 * notifications and host fds on the device thread, and its share of the
 * kernel command line. */
static int setup_virtio(struct kiln_vm *vm, const struct kiln_config *cfg,
			char **cmdline_part)
{
	size_t len = 0;
	char *part;
	int r;

	*cmdline_part = NULL;
	r = vm_create_vdevs(vm, cfg, true);
	if (r < 0)
		return r;
	part = calloc(vm->nr_vdevs + 1, 64);
	if (!part)
		return -ENOMEM;
	*cmdline_part = part;
	for (unsigned i = 0; i < vm->nr_vdevs; i++) {
		struct vm_vdev *v = &vm->vdevs[i];
		uint64_t base = VM_VIRTIO_MMIO_BASE + i * VM_VIRTIO_MMIO_STRIDE;

		r = virtio_mmio_init(&v->mmio, &vm->mem, &vm->log, base,
				     VM_VIRTIO_FIRST_GSI + i, vm->vm_fd);
		v->transport_up = true;
		if (r < 0)
			return kiln_errorf(&vm->log, r, "cannot set up %s: %s",
					   v->mmio.dev.ops->name, strerror(-r));
		r = bus_register(&vm->mmio, base, VIRTIO_MMIO_SIZE,
				 virtio_mmio_access, &v->mmio);
		for (unsigned q = 0; r == 0 && q < v->mmio.dev.ops->num_queues;
		     q++) {
			v->notify[q] = (struct vm_vdev_notify){v, q};
			r = event_loop_add(&vm->events, v->mmio.notify_fd[q],
					   EPOLLIN, vdev_notify, &v->notify[q]);
		}
		if (r == 0 && v->kind == VDEV_VSOCK)
			r = event_loop_add(&vm->events,
					   virtio_vsock_poll_fd(&v->mmio.dev),
					   EPOLLIN, vsock_events, v);
		if (r < 0)
			return kiln_errorf(&vm->log, r, "cannot wire %s: %s",
					   v->mmio.dev.ops->name, strerror(-r));
		if (len)
			part[len++] = ' ';
		r = virtio_mmio_cmdline(&v->mmio, part + len, 63);
		if (r < 0)
			return r;
		len += (size_t)r;
	}
	return 0;
}

void vm_destroy_vdevs(struct kiln_vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vdevs; i++) {
		struct vm_vdev *v = &vm->vdevs[i];

		if (v->transport_up)
			virtio_mmio_destroy(&v->mmio, vm->vm_fd);
		if (v->kind == VDEV_BLK)
			vm_blk_destroy(v);
		else if (v->kind == VDEV_VSOCK && v->mmio.dev.ops)
			virtio_vsock_destroy(&v->mmio.dev);
		else if (v->kind == VDEV_FS && v->mmio.dev.ops)
			virtio_fs_destroy(&v->mmio.dev);
	}
	free(vm->vdevs);
	vm->vdevs = NULL;
	vm->nr_vdevs = 0;
}

static int setup_memory(struct kiln_vm *vm, uint64_t bytes)
{
	int r = guest_mem_map(&vm->mem, bytes);

	if (r < 0)
		return kiln_errorf(
			&vm->log, r,
			"cannot reserve %llu MiB of guest memory: %s",
			(unsigned long long)(bytes >> 20), strerror(-r));
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct guest_mem_region *g = &vm->mem.regions[i];

		r = kvm_vm_set_memory(vm->vm_fd, i, g->gpa, g->size, g->host,
				      &vm->log);
		if (r < 0)
			return r;
	}
	return 0;
}

static int load_guest(struct kiln_vm *vm, const struct kiln_config *cfg,
		      struct x86_entry *entry)
{
	struct mapped_file kernel, initrd = {0};
	struct x86_kernel k;
	int r;

	if (!cfg->kernel_path)
		return kiln_errorf(&vm->log, -EINVAL, "no kernel given");
	r = map_file(cfg->kernel_path, "kernel", &kernel, &vm->log);
	if (r < 0)
		return r;
	r = x86_parse_kernel(kernel.data, kernel.size, &k, &vm->log);
	if (r < 0) {
		log_error(&vm->log, "%s: not a usable kernel image",
			  cfg->kernel_path);
		goto out;
	}
	if (cfg->initrd_path) {
		r = map_file(cfg->initrd_path, "initrd", &initrd, &vm->log);
		if (r < 0)
			goto out;
	}
	r = x86_setup_boot(&vm->mem, &k, kernel.data, initrd.data, initrd.size,
			   vm->cmdline, vm->ncpus, entry, &vm->log);
out:
	unmap_file(&initrd);
	unmap_file(&kernel);
	return r;
}

int vm_check_guest_files(struct kiln_vm *vm, const struct kiln_config *cfg)
{
	struct mapped_file kernel, initrd = {0};
	struct x86_kernel k;
	int r;

	if (!cfg->kernel_path)
		return kiln_errorf(&vm->log, -EINVAL, "no kernel given");
	r = map_file(cfg->kernel_path, "kernel", &kernel, &vm->log);
	if (r < 0)
		return r;
	r = x86_parse_kernel(kernel.data, kernel.size, &k, &vm->log);
	if (r < 0)
		log_error(&vm->log, "%s: not a usable kernel image",
			  cfg->kernel_path);
	else if (cfg->initrd_path)
		r = map_file(cfg->initrd_path, "initrd", &initrd, &vm->log);
	if (r == 0) {
		uint64_t bytes = cfg->memory_mib << 20;

		/* RAM below the MMIO hole, as either engine lays it out */
		r = x86_check_fit(&k,
				  bytes < GUEST_MMIO_HOLE_START
					  ? bytes
					  : GUEST_MMIO_HOLE_START,
				  initrd.size, &vm->log);
	}
	unmap_file(&initrd);
	unmap_file(&kernel);
	return r;
}

static int setup_vcpus(struct kiln_vm *vm, const struct x86_entry *entry)
{
	struct kvm_cpuid2 *cpuid = kvm_supported_cpuid(&vm->kvm, &vm->log);
	int r = 0;

	if (!cpuid)
		return -EIO;
	for (unsigned i = 0; i < vm->ncpus && r == 0; i++) {
		struct vm_vcpu *v = &vm->vcpus[i];

		v->vm = vm;
		r = kvm_vcpu_create(&vm->kvm, vm->vm_fd, i, &v->kvm, &vm->log);
		if (r == 0)
			r = x86_vcpu_init(v->kvm.fd, cpuid, i, vm->ncpus,
					  &vm->log);
	}
	free(cpuid);
	if (r == 0)
		r = x86_vcpu_set_boot_regs(vm->vcpus[0].kvm.fd, entry,
					   &vm->log);
	return r;
}

/* Picks the engine for cfg (see enum kiln_accel) and says why when AUTO
 * falls back to emulation. */
static int choose_engine(struct kiln_vm *vm, const struct kiln_config *cfg,
			 char *qemu, size_t qemu_size)
{
	struct engine_host host;
	char note[512], why[256];
	int r;

	engine_probe_host(cfg->kvm_path ? cfg->kvm_path : "/dev/kvm", &host,
			  qemu, qemu_size);
	r = engine_select(cfg->accel, &host, note, sizeof(note), why,
			  sizeof(why));
	if (r < 0)
		return kiln_errorf(&vm->log, r, "%s", why);
	vm->accel = (enum kiln_accel)r;
	if (*note)
		log_warn(&vm->log, "%s", note);
	log_info(&vm->log, "engine: %s%s%s", kiln_accel_name(vm->accel),
		 vm->accel == KILN_ACCEL_TCG ? ", QEMU " : "",
		 vm->accel == KILN_ACCEL_TCG ? qemu : "");
	return 0;
}

KILN_API int kiln_vm_create(const struct kiln_config *cfg, struct kiln_vm **out)
{
	struct kiln_vm *vm;
	struct x86_entry entry;
	char *devices_cmdline = NULL;
	char qemu[4096];
	pthread_condattr_t ca;
	int r;

	*out = NULL;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->log = cfg->log;
	vm->ncpus = cfg->cpus;
	vm->console_in_fd = cfg->console_in_fd;
	vm->console_out_fd = cfg->console_out_fd;
	vm->console_escape = cfg->console_escape;
	vm->debug_exit = cfg->debug_exit;
	vm->capture = cfg->console_capture;
	vm->kvm.fd = -1;
	vm->vm_fd = -1;
	vm->wake_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	vm->kick_signal = kick_signal_setup();
	vm->events.epoll_fd = vm->events.stop_fd = -1;
	vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->wake_fd < 0) {
		r = -errno;
		goto fail;
	}
	r = choose_engine(vm, cfg, qemu, sizeof(qemu));
	if (r < 0)
		goto fail;
	if (vm->accel == KILN_ACCEL_TCG) {
		r = tcg_create(vm, cfg, qemu);
		if (r < 0)
			goto fail;
		*out = vm;
		return 0;
	}
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		vm->vcpus[i].kvm.fd = -1;
	r = setup_devices(vm);
	if (r < 0)
		goto fail;
	r = kvm_system_open(
		&vm->kvm, cfg->kvm_path ? cfg->kvm_path : "/dev/kvm", &vm->log);
	if (r < 0)
		goto fail;
	if (kiln_host_limitation())
		log_warn(&vm->log, "%s", kiln_host_limitation());
	r = vm->vm_fd = kvm_vm_create(&vm->kvm, &vm->log);
	if (r < 0)
		goto fail;
	r = setup_memory(vm, cfg->memory_mib << 20);
	if (r < 0)
		goto fail;
	r = event_loop_init(&vm->events);
	if (r < 0)
		goto fail;
	r = setup_virtio(vm, cfg, &devices_cmdline);
	if (r == 0) {
		vm->cmdline = config_build_cmdline(cfg, devices_cmdline);
		if (!vm->cmdline)
			r = -ENOMEM;
	}
	free(devices_cmdline);
	if (r < 0)
		goto fail;
	r = load_guest(vm, cfg, &entry);
	if (r < 0)
		goto fail;
	r = setup_vcpus(vm, &entry);
	if (r < 0)
		goto fail;
	*out = vm;
	return 0;
fail:
	kiln_vm_destroy(vm);
	return r;
}

KILN_API const char *kiln_vm_cmdline(const struct kiln_vm *vm)
{
	return vm->cmdline;
}

KILN_API int kiln_vm_start(struct kiln_vm *vm)
{
	sigset_t all, old;
	int r = 0;

	if (vm->running)
		return -EBUSY;
	/* Threads start with every signal blocked: signals meant for the
	 * application go to its own threads; vCPUs unblock the kick signal
	 * only inside KVM_RUN. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (vm->tcg)
		r = tcg_start(vm);
	for (unsigned i = 0; !vm->tcg && i < vm->ncpus && r == 0; i++) {
		r = -pthread_create(&vm->vcpus[i].thread, NULL,
				    vcpu_thread_main, &vm->vcpus[i]);
		vm->vcpus[i].started = r == 0;
	}
	if (r == 0 && !vm->tcg)
		r = event_loop_start(&vm->events);
	if (r == 0 && vm->console_in_fd >= 0) {
		r = -pthread_create(&vm->console_thread, NULL,
				    console_thread_main, vm);
		vm->console_started = r == 0;
	}
	if (r == 0 && !vm->tcg) {
		r = -pthread_create(&vm->monitor_thread, NULL,
				    monitor_thread_main, vm);
		vm->monitor_started = r == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	vm->running = true;
	if (r < 0) {
		vm_finish(vm, KILN_OUTCOME_VMM_ERROR,
			  "cannot start threads: %s", strerror(-r));
		return kiln_errorf(&vm->log, r, "cannot start VM threads: %s",
				   strerror(-r));
	}
	return 0;
}

KILN_API int kiln_vm_wait(struct kiln_vm *vm, int timeout_ms,
			  struct kiln_exit_info *info)
{
	struct timespec ts;
	bool timed_out = false;

	if (!vm->running)
		return -EINVAL;
	if (timeout_ms >= 0)
		deadline_after(&ts, timeout_ms);
	pthread_mutex_lock(&vm->lock);
	while (vm->exit.outcome == KILN_OUTCOME_NONE) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&vm->cond, &vm->lock);
		} else if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) ==
			   ETIMEDOUT) {
			timed_out = vm->exit.outcome == KILN_OUTCOME_NONE;
			break;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	if (timed_out)
		vm_finish(vm, KILN_OUTCOME_TIMEOUT, "timed out after %d.%03d s",
			  timeout_ms / 1000, timeout_ms % 1000);
	if (info) {
		pthread_mutex_lock(&vm->lock);
		*info = vm->exit;
		pthread_mutex_unlock(&vm->lock);
	}
	return 0;
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
			pthread_mutex_lock(&vm->lock);
			while (!atomic_load(&vm->stopping) &&
			       console_room(vm) == 0)
				wait_console_room(vm);
			pthread_mutex_unlock(&vm->lock);
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

KILN_API void kiln_vm_stop(struct kiln_vm *vm)
{
	vm_finish(vm, KILN_OUTCOME_STOPPED, "stopped by the embedder");
}

KILN_API void kiln_vm_destroy(struct kiln_vm *vm)
{
	if (!vm)
		return;
	if (vm->running) {
		vm_finish(vm, KILN_OUTCOME_STOPPED, "VM destroyed");
		if (vm->tcg)
			tcg_join(vm);
		for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++)
			if (vm->vcpus[i].started)
				pthread_join(vm->vcpus[i].thread, NULL);
		if (vm->console_started)
			pthread_join(vm->console_thread, NULL);
		if (vm->monitor_started)
			pthread_join(vm->monitor_thread, NULL);
	}
	event_loop_destroy(&vm->events);
	if (vm->tcg)
		tcg_destroy(vm); /* its servers go before the devices */
	vm_destroy_vdevs(vm);
	for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++)
		kvm_vcpu_close(&vm->vcpus[i].kvm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	kvm_system_close(&vm->kvm);
	guest_mem_unmap(&vm->mem);
	if (vm->wake_fd >= 0)
		close(vm->wake_fd);
	serial8250_destroy(&vm->serial);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm->vcpus);
	free(vm->cmdline);
	free(vm->cap);
	free(vm);
}

KILN_API enum kiln_outcome kiln_vm_outcome(const struct kiln_vm *vm)
{
	struct kiln_vm *v = (struct kiln_vm *)vm; /* the lock is not state */
	enum kiln_outcome o;

	pthread_mutex_lock(&v->lock);
	o = v->exit.outcome;
	pthread_mutex_unlock(&v->lock);
	return o;
}

KILN_API enum kiln_accel kiln_vm_accel(const struct kiln_vm *vm)
{
	return vm->accel;
}
