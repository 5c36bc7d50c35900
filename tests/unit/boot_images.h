/* SPDX-License-Identifier: MIT */
/*
 * Synthetic kernel images for the boot unit tests: a bzImage whose setup
 * header follows Documentation/arch/x86/boot.rst, and ELF32/ELF64 vmlinux
 * images with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY). Every image is
 * malloc'd (exact size, so ASan sees reads past its end) and valid; tests
 * corrupt single fields to check the parser's answer.
 */
#ifndef KILN_TESTS_UNIT_BOOT_IMAGES_H
#define KILN_TESTS_UNIT_BOOT_IMAGES_H

#include <elf.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* --- little-endian field access --- */

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16;
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Byte i of every test payload: recognisable, never all zero. */
static inline uint8_t pattern_byte(uint64_t i)
{
	return (uint8_t)(i * 7 + 3);
}

/* --- log capture --- */

struct log_capture {
	int count;
	enum kiln_log_level last_level;
	char last[1024];
};

static inline void capture_log(void *opaque, enum kiln_log_level level,
			       const char *message)
{
	struct log_capture *c = opaque;

	c->count++;
	c->last_level = level;
	snprintf(c->last, sizeof(c->last), "%s", message);
}

static inline struct kiln_log capture_logger(struct log_capture *c)
{
	memset(c, 0, sizeof(*c));
	return (struct kiln_log){ capture_log, c, KILN_LOG_DEBUG };
}

/* --- bzImage --- */

/* Setup header offsets (boot.rst, "The Real-Mode Kernel Header"). */
#define HDR_E820_ENTRIES 0x1E8
#define HDR_SETUP_SECTS 0x1F1
#define HDR_SYSSIZE 0x1F4
#define HDR_BOOT_FLAG 0x1FE
#define HDR_JUMP 0x200
#define HDR_HEADER 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21C
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22C
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define HDR_END 0x268 /* 0x202 + the jump's displacement 0x66 */
#define ZP_EXT_RAMDISK_IMAGE 0x0C0
#define ZP_EXT_RAMDISK_SIZE 0x0C4
#define ZP_EXT_CMD_LINE_PTR 0x0C8
#define ZP_E820_TABLE 0x2D0

#define BZ_SETUP_SECTS 4
#define BZ_SETUP_SIZE ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_PAYLOAD 8192
#define BZ_INIT_SIZE 0x40000u
#define BZ_ALIGN 0x200000u
#define BZ_PREF 0x1000000ull
#define BZ_INITRD_MAX 0x7FFFFFFFu
#define BZ_CMDLINE_SIZE 2047u

/* A non-relocatable bzImage, protocol 2.15, with a payload of `payload`
 * pattern bytes after BZ_SETUP_SIZE bytes of setup. */
static inline uint8_t *make_bzimage(size_t payload, size_t *size)
{
	size_t n = BZ_SETUP_SIZE + payload;
	uint8_t *img = calloc(1, n);

	if (!img)
		return NULL;
	img[HDR_SETUP_SECTS] = BZ_SETUP_SECTS;
	put32(img + HDR_SYSSIZE, (uint32_t)((payload + 15) / 16));
	put16(img + HDR_BOOT_FLAG, 0xAA55);
	img[HDR_JUMP] = 0xEB;
	img[HDR_JUMP + 1] = HDR_END - HDR_HEADER;
	memcpy(img + HDR_HEADER, "HdrS", 4);
	put16(img + HDR_VERSION, 0x020F);
	img[HDR_LOADFLAGS] = 0x01; /* LOADED_HIGH */
	put32(img + HDR_INITRD_ADDR_MAX, BZ_INITRD_MAX);
	put32(img + HDR_KERNEL_ALIGNMENT, BZ_ALIGN);
	img[HDR_RELOCATABLE] = 0;
	put16(img + HDR_XLOADFLAGS, 0x0003); /* KERNEL_64 | LOAD_ABOVE_4G */
	put32(img + HDR_CMDLINE_SIZE, BZ_CMDLINE_SIZE);
	put64(img + HDR_PREF_ADDRESS, BZ_PREF);
	put32(img + HDR_INIT_SIZE, BZ_INIT_SIZE);
	for (size_t i = 0; i < payload; i++)
		img[BZ_SETUP_SIZE + i] = pattern_byte(i);
	*size = n;
	return img;
}

/* --- ELF vmlinux with a PVH note --- */

#define XEN_NOTE_PHYS32_ENTRY 18
#define ELF_PHOFF 64
#define ELF_NR_PHDRS 4 /* text, data, note, GNU_STACK (ignored) */
#define ELF_NOTE_OFF 0x400
#define ELF_TEXT_OFF 0x1000
#define ELF_TEXT_SIZE 0x1000
#define ELF_TEXT_PADDR 0x100000ull
#define ELF_DATA_OFF 0x2000
#define ELF_DATA_FILESZ 0x800
#define ELF_DATA_MEMSZ 0x3000
#define ELF_DATA_PADDR 0x200000ull
#define ELF_FILE_SIZE (ELF_DATA_OFF + ELF_DATA_FILESZ)
#define ELF_ENTRY 0x100100ull
#define ELF_END (ELF_DATA_PADDR + ELF_DATA_MEMSZ)

/* Where the Xen note's fields are in the image (after a GNU build-id note
 * and a Xen note of another type, both of which the parser must skip). */
#define ELF_XEN_NOTE_OFF (ELF_NOTE_OFF + 12 + 4 + 20 + 12 + 4 + 4)
#define ELF_XEN_NAMESZ_OFF ELF_XEN_NOTE_OFF
#define ELF_XEN_DESCSZ_OFF (ELF_XEN_NOTE_OFF + 4)
#define ELF_XEN_TYPE_OFF (ELF_XEN_NOTE_OFF + 8)
#define ELF_XEN_DESC_OFF (ELF_XEN_NOTE_OFF + 16)

static inline size_t put_note(uint8_t *p, const char *name, uint32_t type,
			      const uint8_t *desc, uint32_t descsz)
{
	uint32_t namesz = (uint32_t)strlen(name) + 1;
	size_t off = 12;

	put32(p, namesz);
	put32(p + 4, descsz);
	put32(p + 8, type);
	memcpy(p + off, name, namesz);
	off += (namesz + 3) & ~3u;
	memcpy(p + off, desc, descsz);
	off += (descsz + 3) & ~3u;
	return off;
}

/* Writes program header i of a table at phoff, in the image's class. */
static inline void elf_set_phdr_at(uint8_t *img, size_t phoff, unsigned i,
				   uint32_t type, uint64_t off, uint64_t paddr,
				   uint64_t filesz, uint64_t memsz)
{
	if (img[EI_CLASS] == ELFCLASS64) {
		uint8_t *ph = img + phoff + i * sizeof(Elf64_Phdr);

		put32(ph + offsetof(Elf64_Phdr, p_type), type);
		put32(ph + offsetof(Elf64_Phdr, p_flags), PF_R | PF_X);
		put64(ph + offsetof(Elf64_Phdr, p_offset), off);
		put64(ph + offsetof(Elf64_Phdr, p_vaddr),
		      paddr + 0xffffffff80000000ull);
		put64(ph + offsetof(Elf64_Phdr, p_paddr), paddr);
		put64(ph + offsetof(Elf64_Phdr, p_filesz), filesz);
		put64(ph + offsetof(Elf64_Phdr, p_memsz), memsz);
		put64(ph + offsetof(Elf64_Phdr, p_align), 0x1000);
	} else {
		uint8_t *ph = img + phoff + i * sizeof(Elf32_Phdr);

		put32(ph + offsetof(Elf32_Phdr, p_type), type);
		put32(ph + offsetof(Elf32_Phdr, p_offset), (uint32_t)off);
		put32(ph + offsetof(Elf32_Phdr, p_vaddr), (uint32_t)paddr);
		put32(ph + offsetof(Elf32_Phdr, p_paddr), (uint32_t)paddr);
		put32(ph + offsetof(Elf32_Phdr, p_filesz), (uint32_t)filesz);
		put32(ph + offsetof(Elf32_Phdr, p_memsz), (uint32_t)memsz);
		put32(ph + offsetof(Elf32_Phdr, p_flags), PF_R | PF_X);
		put32(ph + offsetof(Elf32_Phdr, p_align), 0x1000);
	}
}

/* Writes program header i of the image's table (at ELF_PHOFF). */
static inline void elf_set_phdr(uint8_t *img, unsigned i, uint32_t type,
				uint64_t off, uint64_t paddr, uint64_t filesz,
				uint64_t memsz)
{
	elf_set_phdr_at(img, ELF_PHOFF, i, type, off, paddr, filesz, memsz);
}

/* A valid PVH vmlinux: text [1 MiB, +4 KiB) from the file, data at 2 MiB
 * with 0x800 bytes from the file and bss up to 0x3000, the entry note with
 * a 4- or 8-byte descriptor. */
static inline uint8_t *make_pvh_elf(int is64, int desc8, size_t *size)
{
	uint8_t *img = calloc(1, ELF_FILE_SIZE);
	uint8_t desc[20], *notes;
	size_t noff = 0;

	if (!img)
		return NULL;
	memcpy(img, ELFMAG, SELFMAG);
	img[EI_CLASS] = is64 ? ELFCLASS64 : ELFCLASS32;
	img[EI_DATA] = ELFDATA2LSB;
	img[EI_VERSION] = EV_CURRENT;
	if (is64) {
		put16(img + offsetof(Elf64_Ehdr, e_type), ET_EXEC);
		put16(img + offsetof(Elf64_Ehdr, e_machine), EM_X86_64);
		put32(img + offsetof(Elf64_Ehdr, e_version), EV_CURRENT);
		put64(img + offsetof(Elf64_Ehdr, e_entry), 0xffffffff81000000ull);
		put64(img + offsetof(Elf64_Ehdr, e_phoff), ELF_PHOFF);
		put16(img + offsetof(Elf64_Ehdr, e_ehsize), sizeof(Elf64_Ehdr));
		put16(img + offsetof(Elf64_Ehdr, e_phentsize),
		      sizeof(Elf64_Phdr));
		put16(img + offsetof(Elf64_Ehdr, e_phnum), ELF_NR_PHDRS);
	} else {
		put16(img + offsetof(Elf32_Ehdr, e_type), ET_EXEC);
		put16(img + offsetof(Elf32_Ehdr, e_machine), EM_386);
		put32(img + offsetof(Elf32_Ehdr, e_version), EV_CURRENT);
		put32(img + offsetof(Elf32_Ehdr, e_entry), 0x1000000);
		put32(img + offsetof(Elf32_Ehdr, e_phoff), ELF_PHOFF);
		put16(img + offsetof(Elf32_Ehdr, e_ehsize), sizeof(Elf32_Ehdr));
		put16(img + offsetof(Elf32_Ehdr, e_phentsize),
		      sizeof(Elf32_Phdr));
		put16(img + offsetof(Elf32_Ehdr, e_phnum), ELF_NR_PHDRS);
	}

	/* Notes: GNU build-id, Xen note of another type, the PVH entry. */
	notes = img + ELF_NOTE_OFF;
	for (unsigned i = 0; i < sizeof(desc); i++)
		desc[i] = (uint8_t)(0xB0 + i);
	noff += put_note(notes + noff, "GNU", NT_GNU_BUILD_ID, desc, 20);
	put32(desc, 0x12345678);
	noff += put_note(notes + noff, "Xen", 1 /* XEN_ELFNOTE_ENTRY */, desc,
			 4);
	put64(desc, ELF_ENTRY);
	noff += put_note(notes + noff, "Xen", XEN_NOTE_PHYS32_ENTRY, desc,
			 desc8 ? 8 : 4);

	elf_set_phdr(img, 0, PT_LOAD, ELF_TEXT_OFF, ELF_TEXT_PADDR,
		     ELF_TEXT_SIZE, ELF_TEXT_SIZE);
	elf_set_phdr(img, 1, PT_LOAD, ELF_DATA_OFF, ELF_DATA_PADDR,
		     ELF_DATA_FILESZ, ELF_DATA_MEMSZ);
	elf_set_phdr(img, 2, PT_NOTE, ELF_NOTE_OFF, 0, noff, noff);
	/* Not loadable: its bogus offset and size must be ignored. */
	elf_set_phdr(img, 3, PT_GNU_STACK, 0xFFFFFFF0u, 0, 0xFFFFFFF0u,
		     0xFFFFFFF0u);
	for (size_t i = 0; i < ELF_TEXT_SIZE + ELF_DATA_FILESZ; i++)
		img[ELF_TEXT_OFF + i] = pattern_byte(i);
	*size = ELF_FILE_SIZE;
	return img;
}

#endif
