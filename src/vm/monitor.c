/* SPDX-License-Identifier: MIT */
/*
 * The halt monitor (KVM engine): after HALT_PROBE_INTERVAL_MS, then at
 * doubling intervals up to HALT_PROBE_MAX_INTERVAL_MS, it asks each
 * vCPU, through its kick signal, whether it can still run; when every one
 * answers that it is halted for good (arch_vcpu_halt_is_final) or was never
 * started, the VM ends with outcome HALT. A guest that powers off this way
 * has no other exit to report it.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "vm/vm_internal.h"

void *vm_monitor_thread(void *arg)
{
	struct kiln_vm *vm = arg;
	long interval = HALT_PROBE_INTERVAL_MS;
	unsigned gen = 0;

	pthread_mutex_lock(&vm->lock);
	while (!atomic_load(&vm->stopping)) {
		struct timespec ts;
		bool all_answered, all_dead;

		deadline_after(&ts, interval);
		/* Each probe kicks every vCPU out of the guest: a VM that keeps
		 * running is probed less and less often. */
		if (interval < HALT_PROBE_MAX_INTERVAL_MS)
			interval *= 2;
		while (!atomic_load(&vm->stopping) &&
		       pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == 0)
			;
		if (atomic_load(&vm->stopping))
			break;
		if (vm->paused || atomic_load(&vm->pause_req))
			continue; /* a paused VM is not halted */
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
