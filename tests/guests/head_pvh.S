/* SPDX-License-Identifier: MIT */
/*
 * Entry stub for the PVH (ELF + Xen PHYS32_ENTRY note) test guests.
 *
 * Entered in 32-bit protected mode with paging off and EBX = physical
 * address of struct hvm_start_info.  We record the entry state (same
 * layout as head64.S), clear .bss, build identity page tables for the
 * first 4 GiB with 2 MiB pages in our own memory, enable PAE + EFER.LME +
 * paging, load our own GDT, far-jump to 64-bit code and call
 * guest_main(&entry_state).
 */
#include "lib.h"

#define CODE64_SEL 0x08
#define DATA_SEL 0x10

	.section .head32, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	movl %ebx, entry_state+ES_BOOTREG
	movl $stack_top, %esp
	pushfl
	popl entry_state+ES_FLAGS
	movl $BOOT_PROTO_PVH, entry_state+ES_PROTO

	xorl %eax, %eax
	movw %cs, %ax
	movl %eax, entry_state+ES_CS
	movw %ds, %ax
	movl %eax, entry_state+ES_DS
	movw %es, %ax
	movl %eax, entry_state+ES_ES
	movw %ss, %ax
	movl %eax, entry_state+ES_SS
	movw %fs, %ax
	movl %eax, entry_state+ES_FS
	movw %gs, %ax
	movl %eax, entry_state+ES_GS

	movl %cr0, %eax
	movl %eax, entry_state+ES_CR0
	movl %cr3, %eax
	movl %eax, entry_state+ES_CR3
	movl %cr4, %eax
	movl %eax, entry_state+ES_CR4
	movl $0xc0000080, %ecx		/* IA32_EFER */
	rdmsr
	movl %eax, entry_state+ES_EFER
	movl %edx, entry_state+ES_EFER+4

	/* Clear .bss (stack and page tables are in their own sections). */
	cld
	movl $_bss_start, %edi
	movl $_bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb

	/* PML4 and PDPT: clear both (contiguous), then link the 4 PDs. */
	movl $pml4, %edi
	movl $2048, %ecx
	xorl %eax, %eax
	rep stosl
	movl $(pdpt + 0x3), pml4
	movl $(pd + 0x0003), pdpt + 0
	movl $(pd + 0x1003), pdpt + 8
	movl $(pd + 0x2003), pdpt + 16
	movl $(pd + 0x3003), pdpt + 24

	/* 2048 PDEs: 2 MiB pages, present|writable|PS, identity 0..4 GiB. */
	movl $pd, %edi
	movl $0x83, %eax
	movl $2048, %ecx
1:	movl %eax, (%edi)
	movl $0, 4(%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 1b

	lgdt gdt_ptr
	movl %cr4, %eax
	orl $0x20, %eax			/* CR4.PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx
	rdmsr
	orl $0x100, %eax		/* EFER.LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* CR0.PG | CR0.PE */
	movl %eax, %cr0
	ljmp $CODE64_SEL, $start64

	.code64
start64:
	movl $DATA_SEL, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movl $stack_top, %esp		/* zero-extends into %rsp */
	movl $entry_state, %edi
	call guest_main
2:	cli
	hlt
	jmp 2b

	.section .rodata
	.balign 16
gdt:
	.quad 0				/* 0x00: null */
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code, DPL0 */
	.quad 0x00cf92000000ffff	/* 0x10: flat data */
gdt_end:
	.balign 4
	.word 0
gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt

	/* In .data, not .bss: it is written before .bss is cleared. */
	.section .data
	.balign 16
	.globl entry_state
entry_state:
	.skip ES_SIZE

	.section .pgtable, "aw", @nobits
	.balign 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4 * 4096

	.section .stack, "aw", @nobits
	.balign 16
	.skip 16384
stack_top:

	.section .note.GNU-stack, "", @progbits
