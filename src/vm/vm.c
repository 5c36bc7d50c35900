/* SPDX-License-Identifier: MIT */
/*
 * The VM API (kiln_vm_*) and its life cycle: build a VM from a config on
 * the engine chosen for it, start its threads, record how the run ended.
 * The jobs live in files named for them: vcpu.c (run loop and exits),
 * monitor.c (halt detection), console.c, devices.c (device wiring),
 * guest.c (RAM, kernel and initrd), tcg.c (the emulating engine).
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

#include "arch/arch.h"
#include "kvm/kvm.h"
#include "vm/config.h"
#include "vm/event_loop.h"

#include "vm/engine.h"
#include "virtio/net.h"
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

int vm_new(const struct kiln_config *cfg, struct kiln_vm **out)
{
	struct kiln_vm *vm;
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
	vm_cond_init(&vm->cond);
	vm->kick_signal = vm_kick_signal_setup();
	vm->events.epoll_fd = vm->events.stop_fd = -1;
	*out = vm; /* from here kiln_vm_destroy frees it */
	vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r = vm->wake_fd < 0 ? -errno : 0;
	if (vm_console_out_init(vm) < 0 && r == 0)
		r = -ENOMEM;
	return r;
}

int vm_kvm_open(struct kiln_vm *vm, const struct kiln_config *cfg)
{
	const char *path = cfg->kvm_path ? cfg->kvm_path : "/dev/kvm";
	int r;

	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		vm->vcpus[i].kvm.fd = -1;
		vm->vcpus[i].vm = vm;
	}
	r = vm_setup_legacy_devices(vm);
	if (r < 0)
		return r;
	r = kvm_system_open(&vm->kvm, path, &vm->log);
	if (r < 0)
		return r;
	if (kiln_host_limitation())
		log_warn(&vm->log, "%s", kiln_host_limitation());
	r = arch_check_kvm(&vm->kvm, path, &vm->log);
	if (r < 0)
		return r;
	r = vm->vm_fd = kvm_vm_create(&vm->kvm, &vm->log);
	if (r >= 0)
		r = arch_vm_setup(&vm->kvm, vm->vm_fd, &vm->log);
	if (r < 0)
		return r;
	r = event_loop_init(&vm->events);
	if (r < 0)
		return r;
	/* what a snapshot of this VM records (its devices, to rebuild) */
	vm->config = config_clone(cfg);
	return vm->config ? 0 : -ENOMEM;
}

KILN_API int kiln_vm_create(const struct kiln_config *cfg, struct kiln_vm **out)
{
	struct kiln_vm *vm;
	struct arch_boot boot;
	char *devices_cmdline = NULL;
	char qemu[4096];
	int r;

	*out = NULL;
	r = vm_new(cfg, &vm);
	if (r < 0)
		goto fail;
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
	r = vm_kvm_open(vm, cfg);
	if (r < 0)
		goto fail;
	r = vm_setup_memory(vm, cfg->memory_mib << 20);
	if (r < 0)
		goto fail;
	r = vm_setup_virtio(vm, cfg, &devices_cmdline);
	if (r == 0) {
		vm->cmdline = config_build_cmdline(cfg, devices_cmdline);
		if (!vm->cmdline)
			r = -ENOMEM;
	}
	free(devices_cmdline);
	if (r < 0)
		goto fail;
	r = vm_load_guest(vm, cfg, &boot);
	if (r < 0)
		goto fail;
	r = vm_setup_vcpus(vm, &boot);
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
		r = -pthread_create(&vm->vcpus[i].thread, NULL, vm_vcpu_thread,
				    &vm->vcpus[i]);
		vm->vcpus[i].started = r == 0;
	}
	if (r == 0 && !vm->tcg)
		r = event_loop_start(&vm->events);
	if (r == 0)
		r = vm_console_out_start(vm);
	if (r == 0 && vm->console_in_fd >= 0) {
		r = -pthread_create(&vm->console_thread, NULL,
				    vm_console_thread, vm);
		vm->console_started = r == 0;
	}
	if (r == 0 && !vm->tcg) {
		r = -pthread_create(&vm->monitor_thread, NULL,
				    vm_monitor_thread, vm);
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
	int r = 0;

	if (!vm->running)
		return -EINVAL;
	if (timeout_ms >= 0)
		deadline_after(&ts, timeout_ms);
	pthread_mutex_lock(&vm->lock);
	while (vm->exit.outcome == KILN_OUTCOME_NONE) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&vm->cond, &vm->lock);
		} else if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) ==
				   ETIMEDOUT &&
			   vm->exit.outcome == KILN_OUTCOME_NONE) {
			r = -ETIMEDOUT; /* still running: not ours to stop */
			break;
		}
	}
	if (info)
		*info = vm->exit;
	pthread_mutex_unlock(&vm->lock);
	/* the guest's last words come before the caller's report of its end */
	if (r == 0)
		vm_console_out_drain(vm, 1000);
	return r;
}

KILN_API int kiln_vm_stop_with(struct kiln_vm *vm, enum kiln_outcome outcome,
			       const char *detail)
{
	if (outcome != KILN_OUTCOME_STOPPED && outcome != KILN_OUTCOME_TIMEOUT)
		return -EINVAL;
	vm_finish(vm, outcome, "%s",
		  detail && *detail ? detail
				    : (outcome == KILN_OUTCOME_TIMEOUT
					       ? "timed out"
					       : "stopped by the embedder"));
	return 0;
}

KILN_API int kiln_vm_end_fd(const struct kiln_vm *vm)
{
	return vm->wake_fd;
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
	vm_console_out_stop(vm); /* after every thread that prints */
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
	kiln_config_free(vm->config);
	free(vm);
}

KILN_API int kiln_vm_net_stats(const struct kiln_vm *vm,
			       struct kiln_net_stats *out)
{
	for (unsigned i = 0; vm && out && i < vm->nr_vdevs; i++) {
		const struct virtio_dev *d = &vm->vdevs[i].mmio.dev;
		struct virtio_net_stats st;

		if (d->ops != &virtio_net_ops || !d->priv)
			continue;
		virtio_net_get_stats(d, &st);
		memset(out, 0, sizeof(*out));
		out->tx_frames = st.tx_frames;
		out->tx_denied = st.tx_denied;
		out->tx_errors = st.tx_errors;
		out->rx_frames = st.rx_frames;
		out->rx_dropped = st.rx_dropped;
		out->tx_dropped = st.tx_dropped;
		return 0;
	}
	return -ENOENT;
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

KILN_API int kiln_vm_pause(struct kiln_vm *vm)
{
	int err = 0;

	if (vm->accel != KILN_ACCEL_KVM)
		return kiln_errorf(&vm->log, -ENOTSUP,
				   "pause: the emulating engine (tcg) cannot "
				   "pause a VM; kiln's KVM engine can");
	pthread_mutex_lock(&vm->lock);
	if (!vm->running || vm->exit.outcome != KILN_OUTCOME_NONE) {
		pthread_mutex_unlock(&vm->lock);
		return -EINVAL;
	}
	if (vm->paused) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	atomic_store(&vm->pause_req, true);
	/* out of KVM_RUN: a kick is never lost (blocked outside KVM_RUN,
	 * pending until the next one) */
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].started)
			pthread_kill(vm->vcpus[i].thread, vm->kick_signal);
	while (vm->parked < vm->ncpus && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (atomic_load(&vm->stopping))
		err = -EPIPE; /* it ended meanwhile */
	pthread_mutex_unlock(&vm->lock);
	if (err == 0) {
		/* the device thread finishes what it runs, then waits */
		event_loop_pause(&vm->events);
		pthread_mutex_lock(&vm->lock);
		vm->paused = true;
		pthread_mutex_unlock(&vm->lock);
	}
	return err;
}

KILN_API int kiln_vm_resume(struct kiln_vm *vm)
{
	if (vm->accel != KILN_ACCEL_KVM)
		return -ENOTSUP;
	pthread_mutex_lock(&vm->lock);
	if (!vm->paused) {
		atomic_store(&vm->pause_req, false);
		pthread_cond_broadcast(&vm->cond);
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	vm->paused = false;
	pthread_mutex_unlock(&vm->lock);
	event_loop_resume(&vm->events);
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->pause_req, false);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

KILN_API int kiln_vm_paused(const struct kiln_vm *vm)
{
	struct kiln_vm *v = (struct kiln_vm *)vm; /* the lock is not state */
	int p;

	pthread_mutex_lock(&v->lock);
	p = v->paused;
	pthread_mutex_unlock(&v->lock);
	return p;
}

KILN_API enum kiln_accel kiln_vm_accel(const struct kiln_vm *vm)
{
	return vm->accel;
}
