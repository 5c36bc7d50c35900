/* SPDX-License-Identifier: MIT */
/*
 * Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18): the 32-bit physical
 * address of the PVH entry point.  pvh.ld places .note.Xen in a PT_NOTE
 * segment (and in the loaded image, like Linux's vmlinux does).
 * The descriptor is 4 bytes (a 32-bit address); Linux's own x86-64
 * vmlinux uses an 8-byte descriptor here, loaders take the low 32 bits.
 */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .note.Xen, "a", @note
	.balign 4
	.long 4				/* namesz: "Xen\0" */
	.long 4				/* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.balign 4
	.long pvh_entry

	.section .note.GNU-stack, "", @progbits
