/* SPDX-License-Identifier: MIT */
/*
 * Entry stub for the bzImage test guests (Linux 64-bit boot protocol).
 *
 * The payload is loaded at 0x100000 (bzimage.ld); a loader using the 64-bit
 * boot protocol enters at load address + 0x200 in long mode with RSI
 * pointing to the zero page.  No stack is provided, so we record RSI, load
 * our own stack, then record flags, segment selectors, CR0/CR3/CR4 and EFER
 * into entry_state before touching anything else, clear .bss and call
 * guest_main(&entry_state).
 */
#include "lib.h"

	.section .head32, "ax"
	.code32
	.globl startup_32
startup_32:
	/* 32-bit entry (code32_start) is not supported: park. */
	cli
1:	hlt
	jmp 1b

	.section .head64, "ax"
	.code64
	.globl startup_64
startup_64:
	movq %rsi, entry_state+ES_BOOTREG(%rip)
	leaq stack_top(%rip), %rsp
	pushfq
	popq entry_state+ES_FLAGS(%rip)
	movq $BOOT_PROTO_BZIMAGE, entry_state+ES_PROTO(%rip)

	xorl %eax, %eax
	movw %cs, %ax
	movq %rax, entry_state+ES_CS(%rip)
	movw %ds, %ax
	movq %rax, entry_state+ES_DS(%rip)
	movw %es, %ax
	movq %rax, entry_state+ES_ES(%rip)
	movw %ss, %ax
	movq %rax, entry_state+ES_SS(%rip)
	movw %fs, %ax
	movq %rax, entry_state+ES_FS(%rip)
	movw %gs, %ax
	movq %rax, entry_state+ES_GS(%rip)

	movq %cr0, %rax
	movq %rax, entry_state+ES_CR0(%rip)
	movq %cr3, %rax
	movq %rax, entry_state+ES_CR3(%rip)
	movq %cr4, %rax
	movq %rax, entry_state+ES_CR4(%rip)
	movl $0xc0000080, %ecx		/* IA32_EFER */
	rdmsr
	movl %eax, entry_state+ES_EFER(%rip)
	movl %edx, entry_state+ES_EFER+4(%rip)

	/* Clear .bss (the stack lives in its own section, after it). */
	cld
	leaq _bss_start(%rip), %rdi
	leaq _bss_end(%rip), %rcx
	subq %rdi, %rcx
	xorl %eax, %eax
	rep stosb

	leaq entry_state(%rip), %rdi
	call guest_main
2:	cli
	hlt
	jmp 2b

	/* In .data, not .bss: it is written before .bss is cleared. */
	.section .data
	.balign 16
	.globl entry_state
entry_state:
	.skip ES_SIZE

	.section .stack, "aw", @nobits
	.balign 16
	.skip 16384
stack_top:

	.section .note.GNU-stack, "", @progbits
