/* SPDX-License-Identifier: MIT */
#include "cpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/layout.h"

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT	       (1u << 28)

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;

	while ((1u << b) < n)
		b++;
	return b;
}

void x86_cpuid_adjust(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus)
{
	for (unsigned i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			/* initial APIC id and logical processor count */
			e->ebx = (e->ebx & 0x0000FFFFu) | (index << 24) |
				 ((ncpus & 0xFF) << 16);
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			if (ncpus > 1)
				e->edx |= CPUID_1_EDX_HTT;
			else
				e->edx &= ~CPUID_1_EDX_HTT;
			break;
		case 4:
			/* cores per package - 1, one thread per core */
			e->eax = (e->eax & 0x03FFFFFFu) | ((ncpus - 1) << 26);
			e->eax &= ~(0xFFFu << 14);
			break;
		case 0xA:
			/* no virtual PMU: guests must not program counters */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xB:
		case 0x1F:
			/* x2APIC topology: level 0 SMT (1 thread), level 1
			 * core (ncpus); EDX is the x2APIC id */
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = 1u << 8;
			} else if (e->index == 1) {
				e->eax = bits_for(ncpus);
				e->ebx = ncpus;
				e->ecx = 1 | (2u << 8);
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			e->edx = index;
			break;
		default: break;
		}
	}
}

/* LAPIC register offsets within struct kvm_lapic_state. */
#define APIC_LVT0	 0x350
#define APIC_LVT1	 0x360
#define APIC_MODE_NMI	 0x4
#define APIC_MODE_EXTINT 0x7

static void set_lvt_mode(struct kvm_lapic_state *l, int reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, l->regs + reg, 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(l->regs + reg, &v, 4);
}

int x86_vcpu_init(int vcpu_fd, const struct kvm_cpuid2 *supported,
		  unsigned index, unsigned ncpus, const struct kiln_log *log)
{
	size_t sz = sizeof(*supported) +
		    supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	struct kvm_lapic_state lapic;
	struct kvm_fpu fpu;
	int r;

	if (!c)
		return -ENOMEM;
	memcpy(c, supported, sz);
	x86_cpuid_adjust(c, index, ncpus);
	r = ioctl(vcpu_fd, KVM_SET_CPUID2, c);
	free(c);
	if (r < 0)
		return kiln_errorf(log, -errno, "KVM_SET_CPUID2 on vCPU %u: %s",
				   index, strerror(errno));
	/* Linux expects the BIOS to have wired LINT0 as ExtINT and LINT1 as
	 * NMI (virtual wire mode), as the MP table also says. */
	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0)
		return kiln_errorf(log, -errno, "KVM_GET_LAPIC: %s",
				   strerror(errno));
	set_lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
	set_lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &lapic) < 0)
		return kiln_errorf(log, -errno, "KVM_SET_LAPIC: %s",
				   strerror(errno));
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return kiln_errorf(log, -errno, "KVM_SET_FPU: %s",
				   strerror(errno));
	return 0;
}

static struct kvm_segment flat_segment(uint16_t sel, uint8_t type, int code64,
				       int s)
{
	return (struct kvm_segment){
		.base = 0,
		.limit = 0xFFFFFFFFu,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code64 ? 0 : 1,
		.s = (uint8_t)s,
		.l = (uint8_t)code64,
		.g = 1,
	};
}

#define CR0_PE	 0x1ull
#define CR0_ET	 0x10ull
#define CR0_PG	 0x80000000ull
#define CR4_PAE	 0x20ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

int x86_vcpu_set_boot_regs(int vcpu_fd, const struct x86_entry *e,
			   const struct kiln_log *log)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_segment data = flat_segment(X86_SEL_DATA, 3, 0, 1);

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return kiln_errorf(log, -errno, "KVM_GET_SREGS: %s",
				   strerror(errno));
	sregs.cs = e->long_mode ? flat_segment(X86_SEL_CODE64, 11, 1, 1)
				: flat_segment(X86_SEL_CODE32, 11, 0, 1);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = (struct kvm_segment){.selector = X86_SEL_TSS,
					.limit = 0x67,
					.type = 11,
					.present = 1};
	sregs.ldt =
		(struct kvm_segment){.type = 2, .present = 1, .limit = 0xFFFF};
	sregs.gdt.base = X86_GDT_ADDR;
	sregs.gdt.limit = 6 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	if (e->long_mode) {
		sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
		sregs.cr3 = X86_PML4_ADDR;
		sregs.cr4 = CR4_PAE;
		sregs.efer = EFER_LME | EFER_LMA;
	} else {
		/* PVH: 32-bit protected mode, paging off */
		sregs.cr0 = CR0_PE | CR0_ET;
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return kiln_errorf(log, -errno, "KVM_SET_SREGS: %s",
				   strerror(errno));
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2; /* reserved bit; IF clear */
	regs.rip = e->rip;
	regs.rsi = e->rsi;
	regs.rbx = e->rbx;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return kiln_errorf(log, -errno, "KVM_SET_REGS: %s",
				   strerror(errno));
	return 0;
}
