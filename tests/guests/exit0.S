/* SPDX-License-Identifier: MIT */
/*
 * exit0: minimal PVH guest for boot-time benchmarks.  The very first
 * instruction path writes 0 to the debug-exit port 0x501 (kiln exits with
 * status 0; QEMU's isa-debug-exit exits with (0 << 1) | 1 = 1).
 */
	.section .head32, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	movw $0x501, %dx
	xorl %eax, %eax
	outb %al, %dx
1:	cli
	hlt
	jmp 1b

	.section .note.GNU-stack, "", @progbits
