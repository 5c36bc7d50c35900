/* SPDX-License-Identifier: MIT */
/*
 * Engine selection: which of kiln's two engines runs a VM. KVM runs the
 * guest on kiln's own vCPU threads; TCG runs it under QEMU's emulator
 * (src/vm/tcg.c) with kiln's devices served over vhost-user. The choice is
 * a pure function of what the host offers, so it is unit-tested.
 */
#ifndef KILN_VM_ENGINE_H
#define KILN_VM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/log.h"

/* What the host offers, as engine_probe_host sees it. */
struct engine_host {
	int kvm_err;	  /* 0: the KVM device opened; else -errno of open */
	bool kvm_pvm;	  /* it is PVM: no VMX/SVM, guest kernels emulated */
	const char *qemu; /* qemu-system-x86_64 to run, NULL: none found */
};

/* Picks the engine for `want` (KILN_ACCEL_*) on host h: KILN_ACCEL_KVM or
 * KILN_ACCEL_TCG, or -ENOENT when TCG is needed and QEMU is missing, with
 * the reason in why. When AUTO falls back to TCG, note says so and why
 * (else note is empty). Never fails for want == KVM. */
int engine_select(enum kiln_accel want, const struct engine_host *h, char *note,
		  size_t note_size, char *why, size_t why_size);

/* Fills h for the KVM device at kvm_path; the QEMU path found
 * ($KILN_QEMU, else qemu-system-x86_64 in PATH) goes to qemu_buf. */
void engine_probe_host(const char *kvm_path, struct engine_host *h,
		       char *qemu_buf, size_t qemu_size);

/* Finds QEMU: $KILN_QEMU if set (must be executable), else
 * qemu-system-x86_64 in $PATH. 0 and the path in buf, or -ENOENT. */
int engine_find_qemu(char *buf, size_t size);

#endif
