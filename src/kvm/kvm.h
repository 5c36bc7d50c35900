/* SPDX-License-Identifier: MIT */
/*
 * Thin, checked wrappers around the KVM system, VM and vCPU file
 * descriptors. Every failure is reported through the log with what to do
 * about it; nothing here knows about devices or boot protocols.
 */
#ifndef KILN_KVM_KVM_H
#define KILN_KVM_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

#define KVM_REQUIRED_API_VERSION 12

struct kvm_system {
	int fd;
	int vcpu_mmap_size;
};

struct kvm_vcpu_fd {
	int fd;
	unsigned index;
	struct kvm_run *run; /* shared page(s) mmap'd from the vCPU fd */
	int run_size;
};

/* Opens the KVM device (path, e.g. "/dev/kvm"), checks the API version and
 * every extension kiln needs. Returns 0 or -errno with an actionable log. */
int kvm_system_open(struct kvm_system *sys, const char *path,
		    const struct kiln_log *log);
void kvm_system_close(struct kvm_system *sys);

/* A KVM extension kiln needs, with its name and what it is for. */
struct kvm_cap_need {
	unsigned long cap;
	const char *name;
	const char *why;
};

/* 0 if KVM has every one of caps, else -ENOTSUP naming the first missing
 * one (logged). */
int kvm_require_caps(const struct kvm_system *sys, const char *path,
		     const struct kvm_cap_need *caps, size_t n,
		     const struct kiln_log *log);

/* Returns the KVM_CHECK_EXTENSION value for cap (0 if absent). */
int kvm_check_extension(int fd, unsigned long cap);

/* KVM_CREATE_VM (the architecture's setup follows: arch_vm_setup); fd or
 * -errno (logged). */
int kvm_vm_create(const struct kvm_system *sys, const struct kiln_log *log);

/* Registers host memory as guest-physical memory in `slot`. */
int kvm_vm_set_memory(int vm_fd, uint32_t slot, uint64_t gpa, uint64_t size,
		      void *host, const struct kiln_log *log);

/* Sets an IRQ line level on the in-kernel PIC/IOAPIC. */
int kvm_vm_irq_line(int vm_fd, uint32_t gsi, int level);

/* Creates vCPU `index` and maps its kvm_run area. */
int kvm_vcpu_create(const struct kvm_system *sys, int vm_fd, unsigned index,
		    struct kvm_vcpu_fd *vcpu, const struct kiln_log *log);
void kvm_vcpu_close(struct kvm_vcpu_fd *vcpu);

/* Name of a KVM exit reason, for messages. */
const char *kvm_exit_reason_name(uint32_t reason);

/* True when /dev/kvm is served by PVM (kvm_pvm) on a CPU without VMX/SVM:
 * guest kernel code is then emulated instruction by instruction. */
bool kvm_host_is_pvm(void);

#endif
