/* SPDX-License-Identifier: MIT */
/* The architecture hooks (arch/arch.h) for x86-64. */
#include "arch/arch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/cpu.h"

/* x86's KVM extensions, with the reason shown to the user. */
static const struct kvm_cap_need x86_caps[] = {
	{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "in-kernel APIC/IOAPIC/PIC"},
	{KVM_CAP_PIT2, "KVM_CAP_PIT2", "in-kernel timer"},
	{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "x86 TSS area"},
	{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "CPUID setup"},
};

int arch_check_kvm(const struct kvm_system *sys, const char *path,
		   const struct kiln_log *log)
{
	return kvm_require_caps(sys, path, x86_caps,
				sizeof(x86_caps) / sizeof(x86_caps[0]), log);
}

/* Addresses of the two pages KVM on Intel needs for real-mode emulation;
 * just below the IOAPIC/LAPIC/BIOS area, never RAM in kiln's layout. */
#define KVM_TSS_ADDR	      0xfffbd000ull
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

int arch_vm_setup(const struct kvm_system *sys, int vm_fd,
		  const struct kiln_log *log)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;

	if (ioctl(vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)
		return kiln_errorf(log, -errno, "KVM_SET_TSS_ADDR: %s",
				   strerror(errno));
	/* Optional: only Intel's real-mode emulation uses it. */
	if (kvm_check_extension(sys->fd, KVM_CAP_SET_IDENTITY_MAP_ADDR))
		ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	if (ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return kiln_errorf(log, -errno, "KVM_CREATE_IRQCHIP: %s",
				   strerror(errno));
	if (ioctl(vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return kiln_errorf(log, -errno, "KVM_CREATE_PIT2: %s",
				   strerror(errno));
	return 0;
}

int arch_check_guest(const uint8_t *kernel, size_t kernel_size,
		     size_t initrd_size, uint64_t ram_bytes,
		     const struct kiln_log *log)
{
	struct x86_kernel k;

	if (x86_parse_kernel(kernel, kernel_size, &k, log) < 0)
		return -ENOEXEC;
	/* RAM below the MMIO hole, as either engine lays it out */
	return x86_check_fit(&k,
			     ram_bytes < GUEST_MMIO_HOLE_START
				     ? ram_bytes
				     : GUEST_MMIO_HOLE_START,
			     initrd_size, NULL, log);
}

int arch_load_guest(const struct guest_mem *mem, const uint8_t *kernel,
		    size_t kernel_size, const uint8_t *initrd,
		    size_t initrd_size, const char *cmdline, unsigned ncpus,
		    struct arch_boot *boot, const struct kiln_log *log)
{
	struct x86_kernel k;

	if (x86_parse_kernel(kernel, kernel_size, &k, log) < 0)
		return -ENOEXEC;
	return x86_setup_boot(mem, &k, kernel, initrd, initrd_size, cmdline,
			      ncpus, &boot->entry, log);
}

/* KVM_GET_SUPPORTED_CPUID; the caller frees. NULL on failure (logged). */
static struct kvm_cpuid2 *supported_cpuid(const struct kvm_system *sys,
					  const struct kiln_log *log)
{
	/* KVM answers E2BIG until the buffer is large enough. */
	for (unsigned nent = 64; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c =
			calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c) {
			log_error(log, "out of memory for CPUID table");
			return NULL;
		}
		c->nent = nent;
		if (ioctl(sys->fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG) {
			log_error(log, "KVM_GET_SUPPORTED_CPUID: %s",
				  strerror(errno));
			return NULL;
		}
	}
	log_error(log, "KVM_GET_SUPPORTED_CPUID: table too large");
	return NULL;
}

int arch_vcpu_setup(const struct kvm_system *sys, int vcpu_fd, unsigned index,
		    unsigned ncpus, const struct arch_boot *boot,
		    const struct kiln_log *log)
{
	struct kvm_cpuid2 *cpuid = supported_cpuid(sys, log);
	int r;

	if (!cpuid)
		return -EIO;
	r = x86_vcpu_init(vcpu_fd, cpuid, index, ncpus, log);
	free(cpuid);
	if (r == 0 && index == 0)
		r = x86_vcpu_set_boot_regs(vcpu_fd, &boot->entry, log);
	return r;
}

bool arch_vcpu_halt_is_final(int vcpu_fd)
{
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return false;
	return !(regs.rflags & 0x200); /* IF clear: nothing can wake it */
}

uint64_t arch_vcpu_pc(int vcpu_fd)
{
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return 0;
	return regs.rip;
}
