/* SPDX-License-Identifier: MIT */
/*
 * vCPUs (KVM engine): creation, one thread per vCPU running KVM_RUN, and
 * the exits it handles: port and MMIO accesses go to the VM's buses,
 * shutdowns and errors end the VM. The kick signal interrupts KVM_RUN: it
 * is blocked outside KVM_RUN (KVM_SET_SIGNAL_MASK unblocks it inside), so a
 * kick can never be lost or delivered elsewhere.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "arch/arch.h"
#include "vm/vm_internal.h"

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

	if (ioctl(v->kvm.fd, KVM_GET_MP_STATE, &mp) < 0)
		return false;
	if (mp.mp_state == KVM_MP_STATE_UNINITIALIZED ||
	    mp.mp_state == KVM_MP_STATE_INIT_RECEIVED)
		return true;
	return mp.mp_state == KVM_MP_STATE_HALTED &&
	       arch_vcpu_halt_is_final(v->kvm.fd);
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
	return arch_vcpu_pc(v->kvm.fd);
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

/* Parks this vCPU while a pause is asked for: its last exit completed
 * first (KVM_RUN with immediate_exit completes an IN or MMIO read without
 * entering the guest), so state saved now is whole and a resumed guest
 * never repeats an instruction. */
static void park(struct vm_vcpu *v)
{
	struct kiln_vm *vm = v->vm;

	if (v->exit_pending) {
		v->kvm.run->immediate_exit = 1;
		if (ioctl(v->kvm.fd, KVM_RUN, 0) < 0 && errno != EINTR)
			vm_finish(vm, KILN_OUTCOME_VMM_ERROR,
				  "KVM_RUN (completing an exit) on vCPU %u: %s",
				  v->kvm.index, strerror(errno));
		v->kvm.run->immediate_exit = 0;
		v->exit_pending = false;
		consume_kick(vm);
	}
	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->cond);
	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->lock);
}

void *vm_vcpu_thread(void *arg)
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
		if (atomic_load(&vm->pause_req)) {
			park(v);
			continue;
		}
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
		v->exit_pending = v->kvm.run->exit_reason == KVM_EXIT_IO ||
				  v->kvm.run->exit_reason == KVM_EXIT_MMIO;
		handle_exit(v);
	}
	return NULL;
}

static void kick_handler(int sig)
{
	(void)sig;
}

/* The kick signal needs a handler so that it is never ignored (an ignored
 * signal would not interrupt KVM_RUN) nor fatal. Installed only if the
 * application left the default disposition. */
int vm_kick_signal_setup(void)
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

int vm_setup_vcpus(struct kiln_vm *vm, const struct arch_boot *boot)
{
	int r = 0;

	for (unsigned i = 0; i < vm->ncpus && r == 0; i++) {
		struct vm_vcpu *v = &vm->vcpus[i];

		v->vm = vm;
		r = kvm_vcpu_create(&vm->kvm, vm->vm_fd, i, &v->kvm, &vm->log);
		if (r == 0)
			r = arch_vcpu_setup(&vm->kvm, v->kvm.fd, i, vm->ncpus,
					    boot, &vm->log);
	}
	return r;
}
