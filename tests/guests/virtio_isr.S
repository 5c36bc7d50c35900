/* SPDX-License-Identifier: MIT */
/*
 * Interrupt and exception entry stubs for the virtio test guests.
 *
 * Each stub leaves the same frame: [vector][error code or 0] above the
 * CPU's RIP/CS/RFLAGS/RSP/SS, saves the caller-saved registers, calls
 * virtio_isr(vector, error, &frame[RIP]) and returns with iretq. Stubs of
 * external interrupts (the LAPIC's vectors) signal EOI to the LAPIC first;
 * the spurious vector must not.  Exceptions do not return (the C handler
 * exits the VM).
 */
#include "virtio_lib.h"

#define LAPIC_EOI 0xfee000b0

	.text
	.code64

/* CPU pushed no error code: push a zero so every frame looks the same. */
.macro STUB_NOERR vec
	.globl virtio_stub_\vec
virtio_stub_\vec:
	pushq $0
	pushq $\vec
	jmp isr_common
.endm

/* CPU pushed an error code. */
.macro STUB_ERR vec
	.globl virtio_stub_\vec
virtio_stub_\vec:
	pushq $\vec
	jmp isr_common
.endm

	STUB_NOERR 0
	STUB_NOERR 1
	STUB_NOERR 2
	STUB_NOERR 3
	STUB_NOERR 4
	STUB_NOERR 5
	STUB_NOERR 6
	STUB_NOERR 7
	STUB_ERR 8
	STUB_NOERR 9
	STUB_ERR 10
	STUB_ERR 11
	STUB_ERR 12
	STUB_ERR 13
	STUB_ERR 14
	STUB_NOERR 15
	STUB_NOERR 16
	STUB_ERR 17
	STUB_NOERR 18
	STUB_NOERR 19
	STUB_NOERR 20
	STUB_ERR 21
	STUB_NOERR 22
	STUB_NOERR 23
	STUB_NOERR 24
	STUB_NOERR 25
	STUB_NOERR 26
	STUB_NOERR 27
	STUB_NOERR 28
	STUB_ERR 29
	STUB_ERR 30
	STUB_NOERR 31

/* External interrupts, named rather than numbered. */
.macro STUB_IRQ name, vec
	.globl virtio_stub_\name
virtio_stub_\name:
	pushq $0
	pushq $\vec
	jmp isr_common
.endm

	STUB_IRQ virtio, VEC_VIRTIO
	STUB_IRQ timer, VEC_TIMER
	STUB_IRQ spurious, VEC_SPURIOUS
	STUB_IRQ pit, VEC_PIT

isr_common:
	/* On entry RSP was 16-byte aligned before the CPU's 5-qword frame;
	 * 2 + 9 qwords more keep it aligned for the call. */
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	cld
	movq 72(%rsp), %rdi		/* vector */
	movq 80(%rsp), %rsi		/* error code */
	leaq 88(%rsp), %rdx		/* RIP, CS, RFLAGS, RSP, SS */
	call virtio_isr
	movq 72(%rsp), %rax
	cmpq $32, %rax
	jb 1f				/* exception: no EOI */
	cmpq $VEC_SPURIOUS, %rax
	je 1f				/* spurious: no EOI */
	movl $LAPIC_EOI, %ecx		/* zero-extended: above 2 GiB */
	movl $0, (%rcx)
1:	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	addq $16, %rsp			/* vector, error code */
	iretq

	/* Stub addresses for the IDT, indexed 0..31, then the four IRQs. */
	.section .rodata
	.balign 8
	.globl virtio_stub_table
virtio_stub_table:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad virtio_stub_\v
	.endr
	.quad virtio_stub_virtio
	.quad virtio_stub_timer
	.quad virtio_stub_spurious
	.quad virtio_stub_pit

	.section .note.GNU-stack, "", @progbits
