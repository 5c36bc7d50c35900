/* SPDX-License-Identifier: MIT */
#include "kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Extensions kiln cannot run without on any architecture, with the reason
 * shown to the user (the architecture's own: arch_check_kvm). */
static const struct kvm_cap_need required_caps[] = {
	{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM"},
	{KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", "halt detection"},
	{KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING", "interrupt routing"},
	{KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", "device notifications"},
	{KVM_CAP_IRQFD, "KVM_CAP_IRQFD", "device interrupts"},
};

int kvm_require_caps(const struct kvm_system *sys, const char *path,
		     const struct kvm_cap_need *caps, size_t n,
		     const struct kiln_log *log)
{
	for (size_t i = 0; i < n; i++)
		if (!kvm_check_extension(sys->fd, caps[i].cap))
			return kiln_errorf(
				log, -ENOTSUP,
				"KVM at %s lacks the required extension "
				"%s (needed for %s); a newer host kernel "
				"is needed",
				path, caps[i].name, caps[i].why);
	return 0;
}

int kvm_check_extension(int fd, unsigned long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

int kvm_system_open(struct kvm_system *sys, const char *path,
		    const struct kiln_log *log)
{
	int fd, version;

	sys->fd = -1;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;

		if (err == ENOENT)
			return kiln_errorf(
				log, -err,
				"%s does not exist: KVM is not loaded. Enable "
				"virtualization in the firmware and load the "
				"module (modprobe kvm_intel or modprobe "
				"kvm_amd)",
				path);
		if (err == EACCES || err == EPERM)
			return kiln_errorf(
				log, -err,
				"cannot open %s: permission denied. Add your "
				"user to the kvm group (usermod -aG kvm $USER, "
				"then log in again) or run as root",
				path);
		return kiln_errorf(log, -err, "cannot open %s: %s", path,
				   strerror(err));
	}
	version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_REQUIRED_API_VERSION) {
		close(fd);
		return kiln_errorf(log, -ENOTSUP,
				   "%s speaks KVM API version %d; kiln needs "
				   "version %d",
				   path, version, KVM_REQUIRED_API_VERSION);
	}
	sys->fd = fd;
	if (kvm_require_caps(sys, path, required_caps,
			     sizeof(required_caps) / sizeof(required_caps[0]),
			     log) < 0) {
		close(fd);
		sys->fd = -1;
		return -ENOTSUP;
	}
	sys->vcpu_mmap_size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sys->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		close(fd);
		sys->fd = -1;
		return kiln_errorf(log, -EINVAL,
				   "KVM_GET_VCPU_MMAP_SIZE returned %d",
				   sys->vcpu_mmap_size);
	}
	return 0;
}

void kvm_system_close(struct kvm_system *sys)
{
	if (sys->fd >= 0)
		close(sys->fd);
	sys->fd = -1;
}

int kvm_vm_create(const struct kvm_system *sys, const struct kiln_log *log)
{
	int fd = ioctl(sys->fd, KVM_CREATE_VM, 0);

	if (fd < 0)
		return kiln_errorf(log, -errno, "KVM_CREATE_VM: %s",
				   strerror(errno));
	return fd;
}

int kvm_vm_set_memory(int vm_fd, uint32_t slot, uint64_t gpa, uint64_t size,
		      void *host, const struct kiln_log *log)
{
	struct kvm_userspace_memory_region region = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)host,
	};

	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return kiln_errorf(log, -errno,
				   "KVM_SET_USER_MEMORY_REGION slot %u "
				   "(0x%llx, %llu MiB): %s",
				   slot, (unsigned long long)gpa,
				   (unsigned long long)(size >> 20),
				   strerror(errno));
	return 0;
}

int kvm_vm_irq_line(int vm_fd, uint32_t gsi, int level)
{
	struct kvm_irq_level irq = {.irq = gsi, .level = (uint32_t)level};

	return ioctl(vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

int kvm_vcpu_create(const struct kvm_system *sys, int vm_fd, unsigned index,
		    struct kvm_vcpu_fd *vcpu, const struct kiln_log *log)
{
	void *run;
	int fd;

	vcpu->fd = -1;
	vcpu->run = NULL;
	fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (fd < 0)
		return kiln_errorf(log, -errno, "KVM_CREATE_VCPU %u: %s", index,
				   strerror(errno));
	run = mmap(NULL, (size_t)sys->vcpu_mmap_size, PROT_READ | PROT_WRITE,
		   MAP_SHARED, fd, 0);
	if (run == MAP_FAILED) {
		int err = -errno;

		close(fd);
		return kiln_errorf(log, err, "mmap of vCPU %u run area: %s",
				   index, strerror(-err));
	}
	vcpu->fd = fd;
	vcpu->index = index;
	vcpu->run = run;
	vcpu->run_size = sys->vcpu_mmap_size;
	return 0;
}

void kvm_vcpu_close(struct kvm_vcpu_fd *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, (size_t)vcpu->run_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

const char *kvm_exit_reason_name(uint32_t reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "unknown",
		[KVM_EXIT_EXCEPTION] = "exception",
		[KVM_EXIT_IO] = "io",
		[KVM_EXIT_HYPERCALL] = "hypercall",
		[KVM_EXIT_DEBUG] = "debug",
		[KVM_EXIT_HLT] = "hlt",
		[KVM_EXIT_MMIO] = "mmio",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "irq-window-open",
		[KVM_EXIT_SHUTDOWN] = "shutdown",
		[KVM_EXIT_FAIL_ENTRY] = "fail-entry",
		[KVM_EXIT_INTR] = "intr",
		[KVM_EXIT_SET_TPR] = "set-tpr",
		[KVM_EXIT_TPR_ACCESS] = "tpr-access",
		[KVM_EXIT_NMI] = "nmi",
		[KVM_EXIT_INTERNAL_ERROR] = "internal-error",
		[KVM_EXIT_SYSTEM_EVENT] = "system-event",
	};

	if (reason < sizeof(names) / sizeof(names[0]) && names[reason])
		return names[reason];
	return "other";
}

static bool cpu_has_hw_virt(void)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (!f)
		return true; /* cannot tell: assume the ordinary case */
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		found = strstr(line, " vmx") || strstr(line, " svm");
		break;
	}
	fclose(f);
	return found;
}

bool kvm_host_is_pvm(void)
{
	struct stat st;

	return stat("/sys/module/kvm_pvm", &st) == 0 && !cpu_has_hw_virt();
}
