/* SPDX-License-Identifier: MIT */
/*
 * x86_parse_kernel on synthetic bzImages and PVH ELF images: valid ones are
 * described correctly, every kind of corruption is refused with -EINVAL (or
 * -ENOEXEC for an unknown format) and a logged message, and no input makes
 * the parser read outside the image (the sanitizer build checks that).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "boot_images.h"

#define MIB (1024ull * 1024ull)
#define GIB (1024ull * MIB)

/* The message logged by the last failed parse(). */
static char last_msg[1024];

#define assert_msg(substr) assert_non_null(strstr(last_msg, (substr)))

/* Parses a copy of img[0..size) in an exactly-sized buffer, so that any read
 * past the end is caught by ASan; checks the logging contract. */
static int parse(const uint8_t *img, size_t size, struct x86_kernel *k)
{
	struct log_capture cap;
	struct kiln_log log = capture_logger(&cap);
	uint8_t *copy = malloc(size ? size : 1);
	int r;

	assert_non_null(copy);
	memcpy(copy, img, size);
	memset(k, 0xA5, sizeof(*k));
	r = x86_parse_kernel(copy, size, k, &log);
	free(copy);
	snprintf(last_msg, sizeof(last_msg), "%s", cap.last);
	if (r < 0) {
		/* Every refusal says why. */
		assert_int_equal(cap.count, 1);
		assert_int_equal(cap.last_level, KILN_LOG_ERROR);
		assert_true(strlen(cap.last) > 0);
	} else {
		assert_int_equal(r, 0);
		assert_int_equal(cap.count, 0);
	}
	return r;
}

/* --- bzImage --- */

struct bz {
	uint8_t *img;
	size_t size;
};

static int bz_setup(void **state)
{
	struct bz *b = calloc(1, sizeof(*b));

	if (!b)
		return -1;
	b->img = make_bzimage(BZ_PAYLOAD, &b->size);
	if (!b->img) {
		free(b);
		return -1;
	}
	*state = b;
	return 0;
}

static int bz_teardown(void **state)
{
	struct bz *b = *state;

	free(b->img);
	free(b);
	return 0;
}

static void test_bz_valid(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	assert_int_equal(parse(b->img, b->size, &k), 0);
	assert_int_equal(k.format, X86_KERNEL_BZIMAGE);
	assert_int_equal(k.setup_size, BZ_SETUP_SIZE);
	assert_int_equal(k.payload_size, BZ_PAYLOAD);
	assert_int_equal(k.load_addr, X86_HIMEM_START);
	assert_int_equal(k.init_size, BZ_INIT_SIZE);
	assert_int_equal(k.version, 0x020F);
	assert_int_equal(k.initrd_addr_max, BZ_INITRD_MAX);
	assert_int_equal(k.cmdline_size, BZ_CMDLINE_SIZE);
	assert_int_equal(k.end, X86_HIMEM_START + BZ_INIT_SIZE);
	assert_int_equal(k.pvh_entry, 0);
	assert_int_equal(k.nr_segs, 0);
}

static void test_bz_minimum_version(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	put16(b->img + HDR_VERSION, 0x020C);
	assert_int_equal(parse(b->img, b->size, &k), 0);
	assert_int_equal(k.version, 0x020C);
}

static void test_bz_setup_sects_zero_means_four(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	/* The image has 4 setup sectors already; 0 must mean the same. */
	b->img[HDR_SETUP_SECTS] = 0;
	assert_int_equal(parse(b->img, b->size, &k), 0);
	assert_int_equal(k.setup_size, 5 * 512);
	assert_int_equal(k.payload_size, BZ_PAYLOAD);
}

static void test_bz_defaults(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	/* initrd_addr_max and cmdline_size of 0 mean the protocol defaults;
	 * init_size below the payload is raised to the payload. */
	put32(b->img + HDR_INITRD_ADDR_MAX, 0);
	put32(b->img + HDR_CMDLINE_SIZE, 0);
	put32(b->img + HDR_INIT_SIZE, 16);
	assert_int_equal(parse(b->img, b->size, &k), 0);
	assert_int_equal(k.initrd_addr_max, 0x37FFFFFF);
	assert_int_equal(k.cmdline_size, 255);
	assert_int_equal(k.init_size, BZ_PAYLOAD);
	assert_int_equal(k.end, X86_HIMEM_START + BZ_PAYLOAD);
}

static void test_bz_cmdline_size_capped(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	put32(b->img + HDR_CMDLINE_SIZE, 0xFFFFFFFF);
	assert_int_equal(parse(b->img, b->size, &k), 0);
	assert_int_equal(k.cmdline_size, X86_CMDLINE_MAX - 1);
}

static void test_bz_relocatable_pref(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	b->img[HDR_RELOCATABLE] = 1;
	assert_int_equal(parse(b->img, b->size, &k), 0);
	assert_int_equal(k.load_addr, BZ_PREF);
	assert_int_equal(k.end, BZ_PREF + BZ_INIT_SIZE);
}

static void test_bz_relocatable_bad_pref(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;
	static const uint64_t bad[] = {
		BZ_PREF + 0x1000, /* not aligned to kernel_alignment */
		0x80000,	  /* below 1 MiB */
		0,
		GUEST_MMIO_HOLE_START, /* in the MMIO hole */
		0x100000000ull,	       /* above 4 GiB */
		UINT64_MAX & ~(uint64_t)(BZ_ALIGN - 1),
	};

	b->img[HDR_RELOCATABLE] = 1;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put64(b->img + HDR_PREF_ADDRESS, bad[i]);
		assert_int_equal(parse(b->img, b->size, &k), 0);
		assert_int_equal(k.load_addr, X86_HIMEM_START);
	}
}

static void test_bz_not_relocatable_ignores_pref(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	/* Not relocatable: kernel_alignment is irrelevant too. */
	put32(b->img + HDR_KERNEL_ALIGNMENT, 0x300000);
	assert_int_equal(parse(b->img, b->size, &k), 0);
	assert_int_equal(k.load_addr, X86_HIMEM_START);
}

static void test_bz_truncated_header(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	/* Long enough to be recognised (HdrS present) but shorter than the
	 * setup header through init_size. */
	assert_int_equal(parse(b->img, 0x263, &k), -EINVAL);
	assert_msg("truncated");
	assert_int_equal(parse(b->img, HDR_HEADER + 4, &k), -EINVAL);
}

static void test_bz_setup_beyond_file(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	b->img[HDR_SETUP_SECTS] = 200;
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	assert_msg("setup alone");
	b->img[HDR_SETUP_SECTS] = 255;
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	/* Setup that fills the whole file leaves no kernel. */
	b->img[HDR_SETUP_SECTS] = BZ_SETUP_SECTS;
	assert_int_equal(parse(b->img, BZ_SETUP_SIZE, &k), -EINVAL);
	assert_int_equal(parse(b->img, BZ_SETUP_SIZE - 1, &k), -EINVAL);
}

static void test_bz_syssize(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	/* syssize counts 16-byte units and may round the payload up. */
	put32(b->img + HDR_SYSSIZE, BZ_PAYLOAD / 16);
	assert_int_equal(parse(b->img, b->size - 15, &k), 0);
	assert_int_equal(k.payload_size, BZ_PAYLOAD - 15);
	assert_int_equal(parse(b->img, b->size - 16, &k), -EINVAL);
	/* Header claims more than the file has. */
	put32(b->img + HDR_SYSSIZE, BZ_PAYLOAD / 16 + 1);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	assert_msg("truncated");
	put32(b->img + HDR_SYSSIZE, 0xFFFFFFFF);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	put32(b->img + HDR_SYSSIZE, 0);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
}

static void test_bz_bad_magic(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	put16(b->img + HDR_BOOT_FLAG, 0x55AA);
	assert_int_equal(parse(b->img, b->size, &k), -ENOEXEC);
	assert_msg("neither");
	put16(b->img + HDR_BOOT_FLAG, 0xAA55);
	memcpy(b->img + HDR_HEADER, "HdrX", 4);
	assert_int_equal(parse(b->img, b->size, &k), -ENOEXEC);
}

static void test_unknown_format(void **state)
{
	static const uint8_t zeros[4096];
	uint8_t junk[4096];
	struct x86_kernel k;

	(void)state;
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = pattern_byte(i);
	assert_int_equal(parse(zeros, sizeof(zeros), &k), -ENOEXEC);
	assert_int_equal(parse(junk, sizeof(junk), &k), -ENOEXEC);
	/* Too short to hold either magic. */
	assert_int_equal(parse(junk, 0, &k), -ENOEXEC);
	assert_int_equal(parse(junk, 3, &k), -ENOEXEC);
	assert_int_equal(parse(junk, HDR_HEADER + 3, &k), -ENOEXEC);
	/* Not quite the ELF magic. */
	assert_int_equal(parse((const uint8_t *)"\177ELG....", 8, &k),
			 -ENOEXEC);
}

static void test_bz_too_old(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	put16(b->img + HDR_VERSION, 0x020B);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	assert_msg("too old");
	put16(b->img + HDR_VERSION, 0x0200);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
}

static void test_bz_not_loaded_high(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	b->img[HDR_LOADFLAGS] = 0;
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	assert_msg("LOADED_HIGH");
}

static void test_bz_no_kernel_64(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	put16(b->img + HDR_XLOADFLAGS, 0x0002);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	assert_msg("XLF_KERNEL_64");
}

static void test_bz_bad_alignment(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	b->img[HDR_RELOCATABLE] = 1;
	put32(b->img + HDR_KERNEL_ALIGNMENT, 0x300000);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	assert_msg("power of two");
	put32(b->img + HDR_KERNEL_ALIGNMENT, 0);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	put32(b->img + HDR_KERNEL_ALIGNMENT, 0x80000000u);
	assert_int_equal(parse(b->img, b->size, &k), 0);
	/* pref (16 MiB) is not 2 GiB-aligned: back to 1 MiB. */
	assert_int_equal(k.load_addr, X86_HIMEM_START);
}

static void test_bz_absurd_init_size(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	put32(b->img + HDR_INIT_SIZE, 0xFFFFFFFF);
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	assert_msg("init_size");
	/* Exactly up to the MMIO hole is the most that fits. */
	put32(b->img + HDR_INIT_SIZE,
	      (uint32_t)(GUEST_MMIO_HOLE_START - X86_HIMEM_START));
	assert_int_equal(parse(b->img, b->size, &k), 0);
	assert_int_equal(k.end, GUEST_MMIO_HOLE_START);
	put32(b->img + HDR_INIT_SIZE,
	      (uint32_t)(GUEST_MMIO_HOLE_START - X86_HIMEM_START + 1));
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
	/* Relocated to 16 MiB, the same size no longer fits. */
	b->img[HDR_RELOCATABLE] = 1;
	put32(b->img + HDR_INIT_SIZE,
	      (uint32_t)(GUEST_MMIO_HOLE_START - X86_HIMEM_START));
	assert_int_equal(parse(b->img, b->size, &k), -EINVAL);
}

/* --- ELF --- */

struct elf {
	uint8_t *img;
	size_t size;
	int is64;
};

static int elf_setup(void **state, int is64, int desc8)
{
	struct elf *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	e->is64 = is64;
	e->img = make_pvh_elf(is64, desc8, &e->size);
	if (!e->img) {
		free(e);
		return -1;
	}
	*state = e;
	return 0;
}

static int elf64_setup(void **state)
{
	return elf_setup(state, 1, 0);
}

static int elf64_desc8_setup(void **state)
{
	return elf_setup(state, 1, 1);
}

static int elf32_setup(void **state)
{
	return elf_setup(state, 0, 0);
}

static int elf_teardown(void **state)
{
	struct elf *e = *state;

	free(e->img);
	free(e);
	return 0;
}

static void check_valid_elf(const struct x86_kernel *k)
{
	assert_int_equal(k->format, X86_KERNEL_PVH_ELF);
	assert_int_equal(k->pvh_entry, ELF_ENTRY);
	assert_int_equal(k->nr_segs, 2);
	assert_int_equal(k->segs[0].file_offset, ELF_TEXT_OFF);
	assert_int_equal(k->segs[0].file_size, ELF_TEXT_SIZE);
	assert_int_equal(k->segs[0].paddr, ELF_TEXT_PADDR);
	assert_int_equal(k->segs[0].mem_size, ELF_TEXT_SIZE);
	assert_int_equal(k->segs[1].file_offset, ELF_DATA_OFF);
	assert_int_equal(k->segs[1].file_size, ELF_DATA_FILESZ);
	assert_int_equal(k->segs[1].paddr, ELF_DATA_PADDR);
	assert_int_equal(k->segs[1].mem_size, ELF_DATA_MEMSZ);
	assert_int_equal(k->end, ELF_END);
	assert_int_equal(k->cmdline_size, 2047);
	assert_int_equal(k->initrd_addr_max, 0xFFFFFFFFu);
}

static void test_elf_valid(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	assert_int_equal(parse(e->img, e->size, &k), 0);
	check_valid_elf(&k);
}

/* Rewrites program header i's fields, in the image's class. */
static void set_ph(struct elf *e, unsigned i, uint32_t type, uint64_t off,
		   uint64_t paddr, uint64_t filesz, uint64_t memsz)
{
	elf_set_phdr(e->img, i, type, off, paddr, filesz, memsz);
}

static void test_elf_bad_class(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	e->img[EI_CLASS] = ELFCLASSNONE;
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	e->img[EI_CLASS] = 3;
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("class");
}

static void test_elf_big_endian(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	e->img[EI_DATA] = ELFDATA2MSB;
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("little-endian");
}

static void test_elf_wrong_machine(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	put16(e->img + 18, EM_AARCH64);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("machine");
	put16(e->img + 18, EM_NONE);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
}

static void test_elf_truncated_header(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;
	size_t ehdr = e->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);

	assert_int_equal(parse(e->img, ehdr - 1, &k), -EINVAL);
	assert_msg("truncated");
	assert_int_equal(parse(e->img, 6, &k), -EINVAL);
	assert_int_equal(parse(e->img, 5, &k), -EINVAL);
}

/* Only the 4 magic bytes: the class byte (offset 4) is past the end. */
static void test_elf_magic_only(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	assert_int_equal(parse(e->img, 4, &k), -EINVAL);
}

static void test_elf_bad_phdrs(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;
	size_t phnum = e->is64 ? offsetof(Elf64_Ehdr, e_phnum)
			       : offsetof(Elf32_Ehdr, e_phnum);
	size_t phentsize = e->is64 ? offsetof(Elf64_Ehdr, e_phentsize)
				   : offsetof(Elf32_Ehdr, e_phentsize);
	uint16_t entsize = get16(e->img + phentsize);

	put16(e->img + phnum, 0);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	put16(e->img + phnum, 65);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("program headers");
	put16(e->img + phnum, 0xFFFF);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	put16(e->img + phnum, ELF_NR_PHDRS);
	put16(e->img + phentsize, (uint16_t)(entsize - 1));
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	put16(e->img + phentsize, (uint16_t)(entsize + 8));
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
}

static void test_elf_phdrs_past_eof(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;
	size_t entsize = e->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);

	/* The image ends in the middle of the program header table. */
	assert_int_equal(parse(e->img, ELF_PHOFF + 2 * entsize, &k), -EINVAL);
	assert_msg("program headers past");
	assert_int_equal(
		parse(e->img, ELF_PHOFF + ELF_NR_PHDRS * entsize - 1, &k),
		-EINVAL);
	if (e->is64) {
		size_t phoff = offsetof(Elf64_Ehdr, e_phoff);

		put64(e->img + phoff, e->size - entsize);
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
		put64(e->img + phoff, e->size + 1);
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
		put64(e->img + phoff, UINT64_MAX);
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
		put64(e->img + phoff, UINT64_MAX - 8);
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	} else {
		size_t phoff = offsetof(Elf32_Ehdr, e_phoff);

		put32(e->img + phoff, (uint32_t)(e->size - entsize));
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
		put32(e->img + phoff, UINT32_MAX);
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	}
}

static void test_elf_segment_past_eof(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	/* File bytes extend one past the end. */
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, ELF_DATA_PADDR, ELF_DATA_FILESZ + 1,
	       ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("past the end");
	/* Offset past the end. */
	set_ph(e, 1, PT_LOAD, e->size + 1, ELF_DATA_PADDR, 0, ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	/* Offset + size wrap around. */
	set_ph(e, 1, PT_LOAD, e->is64 ? UINT64_MAX : UINT32_MAX, ELF_DATA_PADDR,
	       2, ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	set_ph(e, 1, PT_LOAD, 16, ELF_DATA_PADDR,
	       e->is64 ? UINT64_MAX - 8 : UINT32_MAX - 8,
	       e->is64 ? UINT64_MAX - 8 : UINT32_MAX - 8);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	/* A note segment past the end, too. */
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, ELF_DATA_PADDR, ELF_DATA_FILESZ,
	       ELF_DATA_MEMSZ);
	set_ph(e, 2, PT_NOTE, ELF_NOTE_OFF, 0, e->size, e->size);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
}

static void test_elf_segment_ends_at_eof(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	/* The data segment's file bytes end exactly at EOF: fine. */
	assert_int_equal(parse(e->img, e->size, &k), 0);
	/* And one byte fewer of file is not. */
	assert_int_equal(parse(e->img, e->size - 1, &k), -EINVAL);
}

static void test_elf_filesz_gt_memsz(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, ELF_DATA_PADDR, ELF_DATA_FILESZ,
	       ELF_DATA_FILESZ - 1);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("file size");
}

static void test_elf_segment_below_1mib(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, 0x9F000, ELF_DATA_FILESZ,
	       ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("outside [1 MiB, 3 GiB)");
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, X86_HIMEM_START - 1, 1, 1);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, 0, 1, 1);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
}

static void test_elf_segment_crosses_3gib(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, GUEST_MMIO_HOLE_START - 0x800,
	       ELF_DATA_FILESZ, 0x801);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("outside [1 MiB, 3 GiB)");
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, GUEST_MMIO_HOLE_START,
	       ELF_DATA_FILESZ, ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, 0xFFFFF000u, ELF_DATA_FILESZ,
	       ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	/* Ending exactly at 3 GiB is fine. */
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, GUEST_MMIO_HOLE_START - 0x800,
	       ELF_DATA_FILESZ, 0x800);
	assert_int_equal(parse(e->img, e->size, &k), 0);
	assert_int_equal(k.end, GUEST_MMIO_HOLE_START);
}

static void test_elf_absurd_memsz(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, ELF_DATA_PADDR, ELF_DATA_FILESZ,
	       e->is64 ? UINT64_MAX : UINT32_MAX);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("outside [1 MiB, 3 GiB)");
	/* paddr + memsz wraps to a small number. */
	if (e->is64) {
		set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, ELF_DATA_PADDR,
		       ELF_DATA_FILESZ, UINT64_MAX - ELF_DATA_PADDR + 2);
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
		set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, UINT64_MAX - 0xFFF,
		       ELF_DATA_FILESZ, 0x1000);
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	}
}

static void test_elf_overlap(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	/* Data starts inside text. */
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, ELF_TEXT_PADDR + 0x800,
	       ELF_DATA_FILESZ, ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("overlap");
	/* Data's bss runs one byte into text (moved up a page). */
	set_ph(e, 0, PT_LOAD, ELF_TEXT_OFF, ELF_TEXT_PADDR + 0x1000,
	       ELF_TEXT_SIZE, ELF_TEXT_SIZE);
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, ELF_TEXT_PADDR, ELF_DATA_FILESZ,
	       0x1001);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("overlap");
	set_ph(e, 0, PT_LOAD, ELF_TEXT_OFF, ELF_TEXT_PADDR, ELF_TEXT_SIZE,
	       ELF_TEXT_SIZE);
	/* Data covers text completely. */
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, X86_HIMEM_START, ELF_DATA_FILESZ,
	       0x10000);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("overlap");
	/* Adjacent is fine. */
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, ELF_TEXT_PADDR + ELF_TEXT_SIZE,
	       ELF_DATA_FILESZ, ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), 0);
	assert_int_equal(k.end,
			 ELF_TEXT_PADDR + ELF_TEXT_SIZE + ELF_DATA_MEMSZ);
}

static void test_elf_empty_segment_ignored(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	/* memsz 0: skipped even if below 1 MiB. */
	set_ph(e, 1, PT_LOAD, ELF_DATA_OFF, 0, 0, 0);
	assert_int_equal(parse(e->img, e->size, &k), 0);
	assert_int_equal(k.nr_segs, 1);
	assert_int_equal(k.end, ELF_TEXT_PADDR + ELF_TEXT_SIZE);
}

static void test_elf_no_loadable(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	set_ph(e, 0, PT_LOAD, ELF_TEXT_OFF, ELF_TEXT_PADDR, 0, 0);
	set_ph(e, 1, PT_DYNAMIC, ELF_DATA_OFF, ELF_DATA_PADDR, ELF_DATA_FILESZ,
	       ELF_DATA_MEMSZ);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("no loadable segment");
}

static void test_elf_too_many_segments(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;
	size_t entsize = e->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	size_t phnum = e->is64 ? offsetof(Elf64_Ehdr, e_phnum)
			       : offsetof(Elf32_Ehdr, e_phnum);
	const unsigned n = X86_MAX_ELF_SEGMENTS + 2; /* note + 17 loads */
	size_t phoff = e->size, size = e->size + n * entsize;
	uint8_t *img = realloc(e->img, size);

	/* A new program header table at the end of the file: the note,
	 * then one-page segments one after the other from 1 MiB. */
	assert_non_null(img);
	e->img = img;
	if (e->is64)
		put64(img + offsetof(Elf64_Ehdr, e_phoff), phoff);
	else
		put32(img + offsetof(Elf32_Ehdr, e_phoff), (uint32_t)phoff);
	elf_set_phdr_at(img, phoff, 0, PT_NOTE, ELF_NOTE_OFF, 0, 56 + 20,
			56 + 20);
	for (unsigned i = 1; i < n; i++)
		elf_set_phdr_at(img, phoff, i, PT_LOAD, ELF_TEXT_OFF,
				ELF_TEXT_PADDR + (uint64_t)(i - 1) * 0x1000,
				0x1000, 0x1000);
	put16(img + phnum, (uint16_t)(n - 1));
	assert_int_equal(parse(img, size, &k), 0);
	assert_int_equal(k.nr_segs, X86_MAX_ELF_SEGMENTS);
	assert_int_equal(k.end,
			 ELF_TEXT_PADDR + X86_MAX_ELF_SEGMENTS * 0x1000ull);
	put16(img + phnum, (uint16_t)n);
	assert_int_equal(parse(img, size, &k), -EINVAL);
	assert_msg("more than");
}

static void test_elf_no_pvh_note(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	/* The note is there but of another type ... */
	put32(e->img + ELF_XEN_TYPE_OFF, 17);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("no PVH entry note");
	/* ... or the right type under another name ... */
	put32(e->img + ELF_XEN_TYPE_OFF, XEN_NOTE_PHYS32_ENTRY);
	memcpy(e->img + ELF_XEN_NOTE_OFF + 12, "Xem", 4);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	/* ... or there is no note segment at all. */
	memcpy(e->img + ELF_XEN_NOTE_OFF + 12, "Xen", 4);
	assert_int_equal(parse(e->img, e->size, &k), 0);
	set_ph(e, 2, PT_NULL, 0, 0, 0, 0);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
}

static void test_elf_malformed_note(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	put32(e->img + ELF_XEN_NAMESZ_OFF, 0xFFFFFFFF);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("malformed note");
	put32(e->img + ELF_XEN_NAMESZ_OFF, 4);
	put32(e->img + ELF_XEN_DESCSZ_OFF, 0xFFFFFFFF);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	/* A descriptor that is neither 4 nor 8 bytes. */
	put32(e->img + ELF_XEN_DESCSZ_OFF, 2);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	assert_msg("malformed note");
	/* An earlier note claiming more than the segment holds. */
	put32(e->img + ELF_XEN_DESCSZ_OFF, 4);
	assert_int_equal(parse(e->img, e->size, &k), 0);
	put32(e->img + ELF_NOTE_OFF + 4, 0x7FFFFFF0);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
}

static void test_elf_note_segment_truncated(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	/* The note segment ends in the middle of the PVH note. */
	set_ph(e, 2, PT_NOTE, ELF_NOTE_OFF, 0, 56 + 18, 56 + 18);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
	/* Bytes after the entry note do not matter. */
	set_ph(e, 2, PT_NOTE, ELF_NOTE_OFF, 0, 56 + 20 + 11, 56 + 20 + 11);
	assert_int_equal(parse(e->img, e->size, &k), 0);
}

static void test_elf_entry_outside(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;
	static const uint64_t bad[] = {
		0,
		ELF_TEXT_PADDR - 1,
		ELF_TEXT_PADDR + ELF_TEXT_SIZE,
		ELF_DATA_PADDR + ELF_DATA_FILESZ, /* in bss: not file-backed */
		ELF_END,
		0xFFFFFFFF,
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put32(e->img + ELF_XEN_DESC_OFF, (uint32_t)bad[i]);
		assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
		assert_msg("not inside a loaded segment");
	}
	put32(e->img + ELF_XEN_DESC_OFF, (uint32_t)ELF_TEXT_PADDR);
	assert_int_equal(parse(e->img, e->size, &k), 0);
	assert_int_equal(k.pvh_entry, ELF_TEXT_PADDR);
	put32(e->img + ELF_XEN_DESC_OFF, (uint32_t)(ELF_DATA_PADDR + 0x7FF));
	assert_int_equal(parse(e->img, e->size, &k), 0);
	assert_int_equal(k.pvh_entry, ELF_DATA_PADDR + 0x7FF);
}

static void test_elf_desc8_entry(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	assert_int_equal(get32(e->img + ELF_XEN_DESCSZ_OFF), 8);
	assert_int_equal(parse(e->img, e->size, &k), 0);
	check_valid_elf(&k);
	/* The upper half counts: an entry above 4 GiB is outside. */
	put32(e->img + ELF_XEN_DESC_OFF + 4, 1);
	assert_int_equal(parse(e->img, e->size, &k), -EINVAL);
}

static void test_elf_is_not_bz(void **state)
{
	struct elf *e = *state;
	struct x86_kernel k;

	/* An ELF image that also carries bzImage magic is parsed as ELF. */
	uint8_t *img = realloc(e->img, 0x4000);

	assert_non_null(img);
	e->img = img;
	memset(img + e->size, 0, 0x4000 - e->size);
	put16(img + HDR_BOOT_FLAG, 0xAA55);
	memcpy(img + HDR_HEADER, "HdrS", 4);
	assert_int_equal(parse(img, 0x4000, &k), 0);
	assert_int_equal(k.format, X86_KERNEL_PVH_ELF);
}

static void test_parse_without_log(void **state)
{
	struct bz *b = *state;
	struct x86_kernel k;

	/* A NULL log is allowed: errors are still returned. */
	b->img[HDR_LOADFLAGS] = 0;
	assert_int_equal(x86_parse_kernel(b->img, b->size, &k, NULL), -EINVAL);
	assert_int_equal(x86_parse_kernel(b->img, 16, &k, NULL), -ENOEXEC);
}

#define BZ_TEST(f) cmocka_unit_test_setup_teardown(f, bz_setup, bz_teardown)
#define ELF64_TEST(f)                                                          \
	cmocka_unit_test_setup_teardown(f, elf64_setup, elf_teardown)
#define ELF32_TEST(f)                                                          \
	cmocka_unit_test_setup_teardown(f, elf32_setup, elf_teardown)
#define ELF_TESTS(f) ELF64_TEST(f), ELF32_TEST(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BZ_TEST(test_bz_valid),
		BZ_TEST(test_bz_minimum_version),
		BZ_TEST(test_bz_setup_sects_zero_means_four),
		BZ_TEST(test_bz_defaults),
		BZ_TEST(test_bz_cmdline_size_capped),
		BZ_TEST(test_bz_relocatable_pref),
		BZ_TEST(test_bz_relocatable_bad_pref),
		BZ_TEST(test_bz_not_relocatable_ignores_pref),
		BZ_TEST(test_bz_truncated_header),
		BZ_TEST(test_bz_setup_beyond_file),
		BZ_TEST(test_bz_syssize),
		BZ_TEST(test_bz_bad_magic),
		cmocka_unit_test(test_unknown_format),
		BZ_TEST(test_bz_too_old),
		BZ_TEST(test_bz_not_loaded_high),
		BZ_TEST(test_bz_no_kernel_64),
		BZ_TEST(test_bz_bad_alignment),
		BZ_TEST(test_bz_absurd_init_size),
		BZ_TEST(test_parse_without_log),
		ELF_TESTS(test_elf_valid),
		ELF_TESTS(test_elf_bad_class),
		ELF_TESTS(test_elf_big_endian),
		ELF_TESTS(test_elf_wrong_machine),
		ELF_TESTS(test_elf_truncated_header),
		ELF64_TEST(test_elf_magic_only),
		ELF_TESTS(test_elf_bad_phdrs),
		ELF_TESTS(test_elf_phdrs_past_eof),
		ELF_TESTS(test_elf_segment_past_eof),
		ELF_TESTS(test_elf_segment_ends_at_eof),
		ELF_TESTS(test_elf_filesz_gt_memsz),
		ELF_TESTS(test_elf_segment_below_1mib),
		ELF_TESTS(test_elf_segment_crosses_3gib),
		ELF_TESTS(test_elf_absurd_memsz),
		ELF_TESTS(test_elf_overlap),
		ELF_TESTS(test_elf_empty_segment_ignored),
		ELF_TESTS(test_elf_no_loadable),
		ELF_TESTS(test_elf_too_many_segments),
		ELF_TESTS(test_elf_no_pvh_note),
		ELF_TESTS(test_elf_malformed_note),
		ELF_TESTS(test_elf_note_segment_truncated),
		ELF_TESTS(test_elf_entry_outside),
		cmocka_unit_test_setup_teardown(
			test_elf_desc8_entry, elf64_desc8_setup, elf_teardown),
		ELF64_TEST(test_elf_is_not_bz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
