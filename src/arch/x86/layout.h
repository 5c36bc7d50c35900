/* SPDX-License-Identifier: MIT */
/*
 * Where kiln puts things in guest-physical memory (x86). Low memory holds the
 * boot structures; the kernel goes at 1 MiB (or its preferred address); the
 * initrd goes as high as the kernel allows. See docs/ARCHITECTURE.md.
 */
#ifndef KILN_ARCH_X86_LAYOUT_H
#define KILN_ARCH_X86_LAYOUT_H

#define X86_GDT_ADDR		0x500ull
#define X86_PVH_START_INFO_ADDR 0x1000ull
#define X86_PVH_MODLIST_ADDR	0x1040ull
#define X86_PVH_MEMMAP_ADDR	0x1080ull
#define X86_ZERO_PAGE_ADDR	0x7000ull
#define X86_PML4_ADDR		0x9000ull
#define X86_PDPT_ADDR		0xA000ull
#define X86_PD_ADDR		0xB000ull /* 4 pages: identity map of 4 GiB */
#define X86_CMDLINE_ADDR	0x20000ull
#define X86_CMDLINE_MAX		0x10000ull
#define X86_EBDA_START		0x9FC00ull /* MP table lives here */
#define X86_HIMEM_START		0x100000ull
#define X86_IOAPIC_ADDR		0xFEC00000ull
#define X86_LAPIC_ADDR		0xFEE00000ull

/* GDT selectors (the 64-bit boot protocol wants __BOOT_CS 0x10, DS 0x18). */
#define X86_SEL_CODE32 0x08
#define X86_SEL_CODE64 0x10
#define X86_SEL_DATA   0x18
#define X86_SEL_TSS    0x20

#endif
