/* SPDX-License-Identifier: MIT */
/* Per-vCPU x86 state: CPUID, boot registers, local APIC LINT pins. */
#ifndef KILN_ARCH_X86_CPU_H
#define KILN_ARCH_X86_CPU_H

#include <linux/kvm.h>

#include "arch/x86/boot.h"
#include "util/log.h"

/* Adjusts a copy of KVM's supported CPUID for vCPU `index` of `ncpus`
 * (APIC IDs, topology, hypervisor bit, no PMU). Pure: unit-testable. */
void x86_cpuid_adjust(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus);

/* Applies CPUID (adjusted copy of `supported`) and the LAPIC LINT0/LINT1
 * setup to a vCPU. */
int x86_vcpu_init(int vcpu_fd, const struct kvm_cpuid2 *supported,
		  unsigned index, unsigned ncpus, const struct kiln_log *log);

/* Loads the boot vCPU's registers for the entry described by e. */
int x86_vcpu_set_boot_regs(int vcpu_fd, const struct x86_entry *e,
			   const struct kiln_log *log);

#endif
