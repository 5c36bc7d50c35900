/* SPDX-License-Identifier: MIT */
/*
 * Real-mode AP trampoline for the smp guest.  The BSP copies the bytes
 * smp_tramp_start..smp_tramp_end to 0x3000 and sends INIT/SIPI/SIPI with
 * vector 0x03, so an AP starts here with CS = 0x0300, IP = 0.  Each AP
 * atomically increments the counter at smp_tramp_count (addressed through
 * CS, so the code is position independent) and parks with cli; hlt.
 */
	.section .rodata
	.code16
	.balign 16
	.globl smp_tramp_start, smp_tramp_count, smp_tramp_end
smp_tramp_start:
	cli
	lock incl %cs:(smp_tramp_count - smp_tramp_start)
1:	cli
	hlt
	jmp 1b
	.balign 4
smp_tramp_count:
	.long 0
smp_tramp_end:
	.code64

	.section .note.GNU-stack, "", @progbits
