/* SPDX-License-Identifier: MIT */
/*
 * What the VM core (src/vm/) asks of the guest architecture, so that it and
 * the KVM wrappers (src/kvm/) stay architecture-neutral. One implementation
 * per architecture under src/arch/<arch>/; x86-64 is the only one today
 * (src/arch/x86/arch.c).
 */
#ifndef KILN_ARCH_ARCH_H
#define KILN_ARCH_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm/kvm.h"
#include "mem/guest_mem.h"
#include "util/log.h"

#if defined(__x86_64__)
#include "arch/x86/boot.h"
/* Where the loaded kernel starts and what its boot vCPU needs. */
struct arch_boot {
	struct x86_entry entry;
};
#else
#error "kiln supports x86-64 hosts only"
#endif

/* KVM extensions this architecture needs beyond the generic ones: 0, or
 * -ENOTSUP with a message naming the first one missing. */
int arch_check_kvm(const struct kvm_system *sys, const char *path,
		   const struct kiln_log *log);

/* Per-VM setup right after KVM_CREATE_VM (x86: TSS, identity map, in-kernel
 * irqchip and PIT). 0 or -errno (logged). */
int arch_vm_setup(const struct kvm_system *sys, int vm_fd,
		  const struct kiln_log *log);

/* Checks that a kernel image (and initrd of initrd_size bytes) would load
 * into ram_bytes of guest RAM, as arch_load_guest does. 0, -ENOEXEC (not a
 * kernel this architecture boots) or another -errno; logged. */
int arch_check_guest(const uint8_t *kernel, size_t kernel_size,
		     size_t initrd_size, uint64_t ram_bytes,
		     const struct kiln_log *log);

/* Parses and loads kernel, initrd and command line into guest RAM with
 * everything the kernel expects at boot (x86: boot params, e820, GDT, page
 * tables, MP table). 0 or -errno as arch_check_guest. */
int arch_load_guest(const struct guest_mem *mem, const uint8_t *kernel,
		    size_t kernel_size, const uint8_t *initrd,
		    size_t initrd_size, const char *cmdline, unsigned ncpus,
		    struct arch_boot *boot, const struct kiln_log *log);

/* Sets up vCPU `index` of `ncpus` (x86: CPUID, LAPIC); the boot vCPU (0)
 * also gets its entry registers. 0 or -errno (logged). */
int arch_vcpu_setup(const struct kvm_system *sys, int vcpu_fd, unsigned index,
		    unsigned ncpus, const struct arch_boot *boot,
		    const struct kiln_log *log);

/* True when a halted vCPU can never run again on its own (x86: interrupts
 * disabled). */
bool arch_vcpu_halt_is_final(int vcpu_fd);

/* The vCPU's program counter for reports; 0 if unreadable. */
uint64_t arch_vcpu_pc(int vcpu_fd);

/* ---- snapshots (arch/x86/state.c) ---- */
struct snapshot_writer;
struct snapshot_reader;

/* What a snapshot may only be restored on: the same CPU and kernel. */
struct arch_fingerprint {
	char vendor[16];
	uint32_t family, model;
	uint64_t cpuid_hash; /* of KVM_GET_SUPPORTED_CPUID */
	char kernel[65];     /* uname -r */
};
void arch_host_fingerprint(const struct kvm_system *sys,
			   struct arch_fingerprint *fp);
/* The VM's state outside RAM and vCPUs (x86: PIT, PICs, IOAPIC, clock),
 * out and back in (after the irqchip and PIT exist). 0 or -errno (logged). */
int arch_vm_save(int vm_fd, struct snapshot_writer *w,
		 const struct kiln_log *log);
int arch_vm_restore(int vm_fd, struct snapshot_reader *r,
		    const struct kiln_log *log);
/* One vCPU's state (x86: CPUID, MP state, registers, xsave, xcrs, debug
 * registers, LAPIC, MSRs, pending events), out, and back in the order the
 * KVM API needs. 0 or -errno (logged). */
int arch_vcpu_save(const struct kvm_system *sys, int vcpu_fd,
		   struct snapshot_writer *w, const struct kiln_log *log);
int arch_vcpu_restore(int vcpu_fd, struct snapshot_reader *r,
		      const struct kiln_log *log);

#endif
