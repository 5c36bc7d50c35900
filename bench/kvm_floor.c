/* SPDX-License-Identifier: MIT */
/*
 * The host's own floor for "start a VM, run a guest that exits at once":
 * the same KVM objects kiln creates (VM, in-kernel irqchip and PIT, one
 * memory slot, one vCPU) and a 32-bit guest doing `out %al, $0x501`, with no
 * VMM logic at all. The benchmark runs it beside kiln and QEMU.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	/* mov $0x501,%dx; out %al,%dx; hlt */
	static const unsigned char code[] = { 0x66, 0xba, 0x01, 0x05, 0xee, 0xf4 };
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	int kvm, vm, vcpu;
	size_t mem_size = 16 << 20;
	unsigned char *mem;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return perror("/dev/kvm"), 1;
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0 || ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0 ||
	    ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm, KVM_CREATE_PIT2, &pit) < 0)
		return perror("vm"), 1;
	mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	memcpy(mem + 0x100000, code, sizeof(code));
	region = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = mem_size,
		.userspace_addr = (unsigned long)mem };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return perror("memory"), 1;
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0),
		   PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	ioctl(vcpu, KVM_GET_SREGS, &sregs);
	/* flat 32-bit protected mode, like a PVH entry */
	sregs.cs.base = 0; sregs.cs.limit = 0xffffffff; sregs.cs.db = 1;
	sregs.cs.g = 1; sregs.cs.selector = 8; sregs.cs.type = 11;
	sregs.ds = sregs.es = sregs.ss = sregs.cs;
	sregs.ds.type = sregs.es.type = sregs.ss.type = 3;
	sregs.cr0 |= 1;
	ioctl(vcpu, KVM_SET_SREGS, &sregs);
	memset(&regs, 0, sizeof(regs));
	regs.rip = 0x100000;
	regs.rflags = 2;
	ioctl(vcpu, KVM_SET_REGS, &regs);
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			return perror("KVM_RUN"), 1;
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x501)
			return 0;
		if (run->exit_reason != KVM_EXIT_IO)
			return fprintf(stderr, "exit %u\n", run->exit_reason), 1;
	}
}
