/* SPDX-License-Identifier: MIT */
/*
 * x86 boot: parse a kernel image (bzImage or PVH ELF), place it, the initrd
 * and the boot structures (zero page or PVH start_info, e820, cmdline, GDT,
 * page tables, MP table) in guest memory, and describe the entry state.
 * Pure functions over guest memory: no KVM, so unit tests drive them on
 * fake memory.
 */
#ifndef KILN_ARCH_X86_BOOT_H
#define KILN_ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "mem/guest_mem.h"
#include "util/log.h"

#define E820_RAM	     1
#define E820_RESERVED	     2
#define E820_MAX_ENTRIES     128
#define X86_MAX_ELF_SEGMENTS 16

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

enum x86_kernel_format { X86_KERNEL_BZIMAGE = 1, X86_KERNEL_PVH_ELF };

struct x86_elf_segment {
	uint64_t file_offset, file_size, paddr, mem_size;
};

/* A validated kernel image; points into the caller's image bytes. */
struct x86_kernel {
	enum x86_kernel_format format;
	/* bzImage */
	uint64_t setup_size;   /* bytes of real-mode setup before payload */
	uint64_t payload_size; /* protected-mode part */
	uint64_t load_addr;    /* where the payload goes */
	uint64_t init_size;    /* memory needed from load_addr */
	uint16_t version;
	uint32_t initrd_addr_max;
	uint32_t cmdline_size; /* max cmdline length (without NUL) */
	/* PVH ELF */
	uint64_t pvh_entry;
	struct x86_elf_segment segs[X86_MAX_ELF_SEGMENTS];
	unsigned nr_segs;
	/* both */
	uint64_t end; /* first byte after the loaded kernel */
};

/* Entry state for the boot vCPU. */
struct x86_entry {
	uint64_t rip;
	uint64_t rsi;  /* bzImage: zero page */
	uint64_t rbx;  /* PVH: start_info */
	int long_mode; /* 1: 64-bit protocol; 0: 32-bit protected (PVH) */
};

/* Validates image bytes as a bzImage or PVH ELF; fills k. -ENOEXEC for an
 * unknown format, -EINVAL for a corrupt one, with a message. */
int x86_parse_kernel(const uint8_t *img, size_t size, struct x86_kernel *k,
		     const struct kiln_log *log);

/* Checks that kernel k, and an initrd of initrd_size bytes (0: none), fit in
 * guest RAM that ends at low_end below the MMIO hole, and where the initrd
 * goes (*initrd_addr if non-NULL; 0 without one); 0, or -EINVAL / -E2BIG
 * with a message naming --memory. */
int x86_check_fit(const struct x86_kernel *k, uint64_t low_end,
		  uint64_t initrd_size, uint64_t *initrd_addr,
		  const struct kiln_log *log);

/* Builds the e820 map for m; returns the entry count (<= max) or -errno. */
int x86_build_e820(const struct guest_mem *m, struct e820_entry *out,
		   unsigned max);

/* Writes the GDT (null, code32, code64, data, tss) at X86_GDT_ADDR. */
int x86_build_gdt(const struct guest_mem *m);

/* Identity-maps the first 4 GiB with 2 MiB pages at X86_PML4_ADDR. */
int x86_build_page_tables(const struct guest_mem *m);

/* Writes an MP 1.4 table for ncpus CPUs (APIC IDs 0..n-1) and one IOAPIC. */
int x86_build_mptable(const struct guest_mem *m, unsigned ncpus);

/* Loads the kernel, initrd (may be NULL/0) and cmdline, and builds every
 * boot structure; fills *entry. Errors are logged and returned as -errno. */
int x86_setup_boot(const struct guest_mem *m, const struct x86_kernel *k,
		   const uint8_t *img, const uint8_t *initrd,
		   uint64_t initrd_size, const char *cmdline, unsigned ncpus,
		   struct x86_entry *entry, const struct kiln_log *log);

#endif
