/* SPDX-License-Identifier: MIT */
/*
 * x86 boot structures on fake guest RAM: e820, page tables, GDT, MP table,
 * and x86_setup_boot for bzImage (zero page) and PVH ELF (hvm_start_info)
 * kernels, with initrd placement and every size limit.
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

#define MIB	 (1024ull * 1024ull)
#define GIB	 (1024ull * MIB)
#define RAM_SIZE (64 * MIB)

struct fixture {
	struct guest_mem m;
	uint8_t *ram;
	uint64_t ram_size;
	struct log_capture cap;
	struct kiln_log log;
};

static int setup_ram(void **state, uint64_t size)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = calloc(1, size);
	if (!f->ram) {
		free(f);
		return -1;
	}
	f->ram_size = size;
	guest_mem_init(&f->m, f->ram, size);
	f->log = capture_logger(&f->cap);
	*state = f;
	return 0;
}

static int setup_64m(void **state)
{
	return setup_ram(state, RAM_SIZE);
}

static int teardown_ram(void **state)
{
	struct fixture *f = *state;

	free(f->ram);
	free(f);
	return 0;
}

/* --- e820 --- */

static void check_e820(const struct e820_entry *e, uint64_t addr, uint64_t size,
		       uint32_t type)
{
	assert_int_equal(e->addr, addr);
	assert_int_equal(e->size, size);
	assert_int_equal(e->type, type);
}

static void test_e820_64m(void **state)
{
	struct fixture *f = *state;
	struct e820_entry e[E820_MAX_ENTRIES];

	assert_int_equal(sizeof(struct e820_entry), 20);
	assert_int_equal(x86_build_e820(&f->m, e, E820_MAX_ENTRIES), 3);
	check_e820(&e[0], 0, 0x9FC00, E820_RAM);
	check_e820(&e[1], 0x9FC00, 0x100000 - 0x9FC00, E820_RESERVED);
	check_e820(&e[2], 0x100000, RAM_SIZE - 0x100000, E820_RAM);
	/* Exactly 4 slots is enough. */
	assert_int_equal(x86_build_e820(&f->m, e, 4), 3);
}

static void test_e820_above_4g(void **state)
{
	uint8_t buf[16];
	struct guest_mem m;
	struct e820_entry e[4];

	(void)state;
	/* Only the layout is read: a fake 5 GiB guest on a tiny buffer. */
	guest_mem_init(&m, buf, 5 * GIB);
	assert_int_equal(x86_build_e820(&m, e, 4), 4);
	check_e820(&e[0], 0, 0x9FC00, E820_RAM);
	check_e820(&e[1], 0x9FC00, 0x60400, E820_RESERVED);
	check_e820(&e[2], 0x100000, 3 * GIB - 0x100000, E820_RAM);
	check_e820(&e[3], 4 * GIB, 2 * GIB, E820_RAM);
}

static void test_e820_errors(void **state)
{
	uint8_t buf[16];
	struct guest_mem m;
	struct e820_entry e[4];

	(void)state;
	guest_mem_init(&m, buf, 64 * MIB);
	assert_int_equal(x86_build_e820(&m, e, 3), -EINVAL);
	assert_int_equal(x86_build_e820(&m, e, 0), -EINVAL);
	/* No RAM above 1 MiB. */
	guest_mem_init(&m, buf, MIB);
	assert_int_equal(x86_build_e820(&m, e, 4), -EINVAL);
	guest_mem_init(&m, buf, 640 * 1024);
	assert_int_equal(x86_build_e820(&m, e, 4), -EINVAL);
	guest_mem_init(&m, buf, MIB + 4096);
	assert_int_equal(x86_build_e820(&m, e, 4), 3);
	check_e820(&e[2], MIB, 4096, E820_RAM);
}

/* --- page tables --- */

static void test_page_tables(void **state)
{
	struct fixture *f = *state;
	uint8_t *pml4 = f->ram + X86_PML4_ADDR;
	uint8_t *pdpt = f->ram + X86_PDPT_ADDR;
	uint8_t *pd = f->ram + X86_PD_ADDR;

	/* Stale bytes in the tables must be cleared. */
	memset(pml4, 0xEE, 4096);
	memset(pdpt, 0xEE, 4096);
	memset(pd, 0xEE, 4 * 4096);
	assert_int_equal(x86_build_page_tables(&f->m), 0);

	/* PML4[0] -> PDPT, present | writable; nothing else. */
	assert_int_equal(get64(pml4), X86_PDPT_ADDR | 0x3);
	for (unsigned i = 1; i < 512; i++)
		assert_int_equal(get64(pml4 + i * 8), 0);
	/* PDPT[0..3] -> the four PDs, present | writable. */
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(get64(pdpt + i * 8),
				 (X86_PD_ADDR + i * 4096ull) | 0x3);
	for (unsigned i = 4; i < 512; i++)
		assert_int_equal(get64(pdpt + i * 8), 0);
	/* 2048 2 MiB pages identity-mapping [0, 4 GiB): P | RW | PS. */
	for (uint64_t i = 0; i < 2048; i++)
		assert_int_equal(get64(pd + i * 8), (i << 21) | 0x83);
	assert_int_equal(get64(pd + 2047 * 8), 0xFFE00083ull);
	/* The byte after the last PD is untouched. */
	assert_int_equal(pd[4 * 4096], 0);
	/* The tables lie below the cmdline and above the zero page. */
	assert_true(X86_PD_ADDR + 4 * 4096 <= X86_CMDLINE_ADDR);
	assert_true(X86_PML4_ADDR >= X86_ZERO_PAGE_ADDR + 4096);
}

static void test_page_tables_no_room(void **state)
{
	uint8_t *ram = calloc(1, X86_PD_ADDR + 3 * 4096);
	struct guest_mem m;

	(void)state;
	assert_non_null(ram);
	guest_mem_init(&m, ram, X86_PD_ADDR + 3 * 4096);
	assert_int_equal(x86_build_page_tables(&m), -EFAULT);
	free(ram);
}

/* --- GDT --- */

static uint64_t gdt_entry(const struct fixture *f, unsigned sel)
{
	return get64(f->ram + X86_GDT_ADDR + sel);
}

static void test_gdt(void **state)
{
	struct fixture *f = *state;
	uint64_t e;

	memset(f->ram + X86_GDT_ADDR, 0xEE, 64);
	assert_int_equal(x86_build_gdt(&f->m), 0);
	assert_int_equal(gdt_entry(f, 0), 0);

	/* 0x08: flat 32-bit code: P, S, type 0xB, D=1, L=0, G=1. */
	e = gdt_entry(f, X86_SEL_CODE32);
	assert_int_equal(e, 0x00CF9B000000FFFFull);
	assert_int_equal((e >> 40) & 0xFF, 0x9B);
	assert_int_equal((e >> 53) & 1, 0); /* L */
	assert_int_equal((e >> 54) & 1, 1); /* D */
	assert_int_equal((e >> 55) & 1, 1); /* G */

	/* 0x10: 64-bit code (__BOOT_CS): L=1 and D=0. */
	e = gdt_entry(f, X86_SEL_CODE64);
	assert_int_equal(X86_SEL_CODE64, 0x10);
	assert_int_equal(e, 0x00AF9B000000FFFFull);
	assert_int_equal((e >> 53) & 1, 1);
	assert_int_equal((e >> 54) & 1, 0);
	assert_int_equal((e >> 47) & 1, 1); /* present */

	/* 0x18: flat data (__BOOT_DS): type 3, read/write accessed. */
	e = gdt_entry(f, X86_SEL_DATA);
	assert_int_equal(X86_SEL_DATA, 0x18);
	assert_int_equal(e, 0x00CF93000000FFFFull);
	assert_int_equal((e >> 40) & 0xF, 0x3);
	assert_int_equal((e >> 44) & 1, 1); /* S: code/data */

	/* 0x20: busy 64-bit TSS, limit 0x67, system descriptor (S=0), whose
	 * upper half (base 63:32) is 0. */
	e = gdt_entry(f, X86_SEL_TSS);
	assert_int_equal(e, 0x00008B0000000067ull);
	assert_int_equal((e >> 40) & 0xF, 0xB);
	assert_int_equal((e >> 44) & 1, 0);
	assert_int_equal(e & 0xFFFF, 0x67);
	assert_int_equal(gdt_entry(f, X86_SEL_TSS + 8), 0);
	/* Six entries: the seventh slot is not written. */
	assert_int_equal(gdt_entry(f, 0x30), 0xEEEEEEEEEEEEEEEEull);
}

static void test_gdt_no_room(void **state)
{
	uint8_t *ram = calloc(1, X86_GDT_ADDR + 47);
	struct guest_mem m;

	(void)state;
	assert_non_null(ram);
	guest_mem_init(&m, ram, X86_GDT_ADDR + 47);
	assert_int_equal(x86_build_gdt(&m), -EFAULT);
	guest_mem_init(&m, ram, 0);
	assert_int_equal(x86_build_gdt(&m), -EFAULT);
	free(ram);
	/* Six 8-byte entries fit exactly. */
	ram = calloc(1, X86_GDT_ADDR + 48);
	assert_non_null(ram);
	guest_mem_init(&m, ram, X86_GDT_ADDR + 48);
	assert_int_equal(x86_build_gdt(&m), 0);
	free(ram);
}

/* --- MP table --- */

static uint8_t sum8(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

/* Finds the MP floating pointer the way Linux does: on 16-byte boundaries
 * of the last KiB of base memory. */
static const uint8_t *find_mp_fp(const struct fixture *f)
{
	for (uint64_t a = X86_EBDA_START; a < 0xA0000; a += 16)
		if (memcmp(f->ram + a, "_MP_", 4) == 0)
			return f->ram + a;
	return NULL;
}

static void check_mptable(const struct fixture *f, unsigned ncpus)
{
	const uint8_t *fp = find_mp_fp(f), *mpc, *e, *end;
	unsigned cpus = 0, buses = 0, ioapics = 0, irqs = 0, lints = 0;
	unsigned ioapic_id = 0, entries = 0;
	uint32_t mpc_addr;
	uint16_t len;

	assert_non_null(fp);
	assert_int_equal(fp[8], 1); /* 16 bytes */
	assert_int_equal(fp[9], 4); /* spec 1.4 */
	assert_int_equal(sum8(fp, 16), 0);
	assert_int_equal(fp[11], 0); /* no default config: use the table */
	mpc_addr = get32(fp + 4);
	assert_true(mpc_addr >= X86_EBDA_START && mpc_addr < X86_HIMEM_START);

	mpc = f->ram + mpc_addr;
	assert_memory_equal(mpc, "PCMP", 4);
	len = get16(mpc + 4);
	assert_true(mpc_addr + len <= X86_HIMEM_START);
	assert_int_equal(mpc[6], 4);
	assert_int_equal(sum8(mpc, len), 0);
	assert_int_equal(get32(mpc + 36), X86_LAPIC_ADDR);
	assert_int_equal(get16(mpc + 34), ncpus + 1 + 1 + 16 + 2);

	e = mpc + 44;
	end = mpc + len;
	while (e < end) {
		entries++;
		switch (e[0]) {
		case 0:				      /* processor */
			assert_int_equal(e[1], cpus); /* APIC id */
			assert_true(e[3] & 0x01);     /* enabled */
			assert_int_equal(!!(e[3] & 0x02), cpus == 0); /* BSP */
			cpus++;
			e += 20;
			break;
		case 1: /* bus */
			assert_memory_equal(e + 2, "ISA   ", 6);
			buses++;
			e += 8;
			break;
		case 2: /* IOAPIC */
			ioapic_id = e[1];
			assert_true(e[3] & 0x01);
			assert_int_equal(get32(e + 4), X86_IOAPIC_ADDR);
			ioapics++;
			e += 8;
			break;
		case 3: /* I/O interrupt: ISA IRQ n -> IOAPIC pin n */
			assert_int_equal(e[1], 0); /* INT */
			assert_int_equal(e[4], 0); /* bus 0 */
			assert_int_equal(e[5], irqs);
			assert_int_equal(e[6], ioapic_id);
			assert_int_equal(e[7], irqs);
			irqs++;
			e += 8;
			break;
		case 4:				       /* local interrupt */
			assert_int_equal(e[6], 0xFF);  /* all CPUs */
			assert_int_equal(e[7], lints); /* LINT0, LINT1 */
			assert_int_equal(e[1], lints == 0 ? 3 : 1);
			lints++;
			e += 8;
			break;
		default: fail_msg("unknown MP entry type %u", e[0]);
		}
	}
	assert_ptr_equal(e, end);
	assert_int_equal(cpus, ncpus);
	assert_int_equal(buses, 1);
	assert_int_equal(ioapics, 1);
	assert_int_equal(irqs, 16);
	assert_int_equal(lints, 2);
	assert_int_equal(entries, get16(mpc + 34));
	/* IOAPIC id must not clash with a CPU's APIC id. */
	assert_true(ioapic_id >= ncpus);
}

static void test_mptable_1(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(x86_build_mptable(&f->m, 1), 0);
	check_mptable(f, 1);
}

static void test_mptable_2(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(x86_build_mptable(&f->m, 2), 0);
	check_mptable(f, 2);
}

static void test_mptable_64(void **state)
{
	struct fixture *f = *state;

	/* Stale data must not leak into the table. */
	memset(f->ram + X86_EBDA_START, 0x5A, X86_HIMEM_START - X86_EBDA_START);
	assert_int_equal(x86_build_mptable(&f->m, 64), 0);
	check_mptable(f, 64);
}

static void test_mptable_rebuild_smaller(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(x86_build_mptable(&f->m, 64), 0);
	assert_int_equal(x86_build_mptable(&f->m, 3), 0);
	check_mptable(f, 3);
}

static void test_mptable_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t *ram = calloc(1, 0xA0000);
	struct guest_mem m;

	assert_int_equal(x86_build_mptable(&f->m, 0), -EINVAL);
	assert_int_equal(x86_build_mptable(&f->m, 255), -EINVAL);
	assert_int_equal(x86_build_mptable(&f->m, UINT32_MAX), -EINVAL);
	/* Base memory ends before the table does. */
	assert_non_null(ram);
	guest_mem_init(&m, ram, X86_EBDA_START + 8);
	assert_int_equal(x86_build_mptable(&m, 1), -EFAULT);
	guest_mem_init(&m, ram, X86_EBDA_START + 64);
	assert_int_equal(x86_build_mptable(&m, 1), -EFAULT);
	free(ram);
}

/* --- x86_setup_boot: bzImage --- */

#define CMDLINE	    "console=ttyS0 reboot=k panic=-1 quiet"
#define INITRD_SIZE 10000u

static uint8_t *make_initrd(uint64_t size)
{
	uint8_t *p = malloc(size ? size : 1);

	if (p)
		for (uint64_t i = 0; i < size; i++)
			p[i] = (uint8_t)(pattern_byte(i) ^ 0x5A);
	return p;
}

static void check_initrd(const struct fixture *f, uint64_t addr, uint64_t size,
			 uint64_t kernel_end, uint64_t initrd_addr_max)
{
	uint8_t *expect = make_initrd(size);
	uint64_t limit = f->m.regions[0].size;

	assert_non_null(expect);
	if (initrd_addr_max + 1 < limit)
		limit = initrd_addr_max + 1;
	assert_int_equal(addr & 4095, 0);
	assert_true(addr >= kernel_end);
	assert_true(addr + size <= limit);
	/* As high as possible: less than a page left above it. */
	assert_true(limit - (addr + size) < 4096);
	assert_memory_equal(f->ram + addr, expect, size);
	free(expect);
}

struct boot {
	uint8_t *img, *initrd;
	size_t size;
	struct x86_kernel k;
	struct x86_entry entry;
};

/* Parses b->img and sets it up on f's RAM with a pattern initrd. */
static int boot_kernel(struct fixture *f, struct boot *b, uint64_t initrd_size,
		       const char *cmdline, unsigned ncpus)
{
	int r;

	assert_int_equal(x86_parse_kernel(b->img, b->size, &b->k, &f->log), 0);
	b->initrd = make_initrd(initrd_size);
	assert_non_null(b->initrd);
	memset(&b->entry, 0xA5, sizeof(b->entry));
	r = x86_setup_boot(&f->m, &b->k, b->img, b->initrd, initrd_size,
			   cmdline, ncpus, &b->entry, &f->log);
	free(b->initrd);
	b->initrd = NULL;
	return r;
}

static void test_setup_bzimage(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	struct e820_entry e820[E820_MAX_ENTRIES];
	const uint8_t *zp = f->ram + X86_ZERO_PAGE_ADDR;
	uint64_t initrd_addr;
	int n;

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	/* KEEP_SEGMENTS must be cleared for the 64-bit entry. */
	b.img[HDR_LOADFLAGS] |= 0x40;
	b.img[0x1FA] = 0xFF; /* vid_mode: part of the copied header */
	/* Stale bytes: the zero page must be zeroed first. */
	memset(f->ram + X86_ZERO_PAGE_ADDR, 0xEE, 4096);
	assert_int_equal(boot_kernel(f, &b, INITRD_SIZE, CMDLINE, 2), 0);
	assert_int_equal(f->cap.count, 0);

	/* Entry: 64-bit, 0x200 into the protected-mode kernel. */
	assert_int_equal(b.entry.rip, X86_HIMEM_START + 0x200);
	assert_int_equal(b.entry.rsi, X86_ZERO_PAGE_ADDR);
	assert_int_equal(b.entry.rsi, 0x7000);
	assert_int_equal(b.entry.rbx, 0);
	assert_int_equal(b.entry.long_mode, 1);

	/* Protected-mode kernel copied to 1 MiB. */
	assert_memory_equal(f->ram + X86_HIMEM_START, b.img + BZ_SETUP_SIZE,
			    BZ_PAYLOAD);

	/* Loader fields. */
	assert_int_equal(zp[HDR_TYPE_OF_LOADER], 0xFF);
	assert_int_equal(zp[HDR_LOADFLAGS] & 0x01, 0x01);
	assert_int_equal(zp[HDR_LOADFLAGS] & 0x40, 0);
	assert_int_equal(get32(zp + HDR_CMD_LINE_PTR), X86_CMDLINE_ADDR);
	assert_int_equal(get32(zp + ZP_EXT_CMD_LINE_PTR), 0);
	assert_string_equal((const char *)f->ram + X86_CMDLINE_ADDR, CMDLINE);

	/* Initrd. */
	initrd_addr = get32(zp + HDR_RAMDISK_IMAGE) |
		      (uint64_t)get32(zp + ZP_EXT_RAMDISK_IMAGE) << 32;
	assert_int_equal(get32(zp + HDR_RAMDISK_SIZE), INITRD_SIZE);
	assert_int_equal(get32(zp + ZP_EXT_RAMDISK_SIZE), 0);
	check_initrd(f, initrd_addr, INITRD_SIZE,
		     X86_HIMEM_START + BZ_INIT_SIZE, BZ_INITRD_MAX);
	assert_int_equal(initrd_addr, (RAM_SIZE - INITRD_SIZE) & ~4095ull);

	/* e820 copied in. */
	n = x86_build_e820(&f->m, e820, E820_MAX_ENTRIES);
	assert_int_equal(n, 3);
	assert_int_equal(zp[HDR_E820_ENTRIES], n);
	assert_memory_equal(zp + ZP_E820_TABLE, e820, n * sizeof(e820[0]));
	for (size_t i = ZP_E820_TABLE + n * sizeof(e820[0]); i < 4096; i++)
		assert_int_equal(zp[i], 0);

	/* Setup header copied from the image (except what the loader sets). */
	for (size_t i = HDR_SETUP_SECTS; i < HDR_END; i++) {
		if (i == HDR_TYPE_OF_LOADER || i == HDR_LOADFLAGS ||
		    (i >= HDR_RAMDISK_IMAGE && i < HDR_RAMDISK_IMAGE + 8) ||
		    (i >= HDR_CMD_LINE_PTR && i < HDR_CMD_LINE_PTR + 4))
			continue;
		assert_int_equal(zp[i], b.img[i]);
	}
	assert_memory_equal(zp + HDR_HEADER, "HdrS", 4);
	assert_int_equal(get16(zp + HDR_VERSION), 0x020F);
	assert_int_equal(get32(zp + HDR_INIT_SIZE), BZ_INIT_SIZE);
	/* Before the header: all zero except the loader's 64-bit fields. */
	for (size_t i = 0; i < HDR_SETUP_SECTS; i++)
		if (i < ZP_EXT_RAMDISK_IMAGE || i >= ZP_EXT_CMD_LINE_PTR + 4)
			if (i != HDR_E820_ENTRIES)
				assert_int_equal(zp[i], 0);

	/* The other boot structures are there too. */
	assert_int_equal(get64(f->ram + X86_PML4_ADDR), X86_PDPT_ADDR | 3);
	assert_int_equal(get64(f->ram + X86_GDT_ADDR + X86_SEL_CODE64),
			 0x00AF9B000000FFFFull);
	check_mptable(f, 2);
	free(b.img);
}

static void test_setup_bzimage_no_initrd(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	const uint8_t *zp = f->ram + X86_ZERO_PAGE_ADDR;

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	memset(f->ram + X86_ZERO_PAGE_ADDR, 0xEE, 4096);
	assert_int_equal(boot_kernel(f, &b, 0, "", 1), 0);
	assert_int_equal(get32(zp + HDR_RAMDISK_IMAGE), 0);
	assert_int_equal(get32(zp + HDR_RAMDISK_SIZE), 0);
	assert_int_equal(get32(zp + ZP_EXT_RAMDISK_IMAGE), 0);
	assert_int_equal(get32(zp + ZP_EXT_RAMDISK_SIZE), 0);
	assert_int_equal(f->ram[X86_CMDLINE_ADDR], 0);
	check_mptable(f, 1);
	free(b.img);
}

static void test_setup_bzimage_relocated(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	b.img[HDR_RELOCATABLE] = 1;
	assert_int_equal(boot_kernel(f, &b, INITRD_SIZE, CMDLINE, 1), 0);
	assert_int_equal(b.k.load_addr, BZ_PREF);
	assert_int_equal(b.entry.rip, BZ_PREF + 0x200);
	assert_memory_equal(f->ram + BZ_PREF, b.img + BZ_SETUP_SIZE,
			    BZ_PAYLOAD);
	/* Nothing at 1 MiB. */
	assert_int_equal(f->ram[X86_HIMEM_START], 0);
	check_initrd(f, get32(f->ram + X86_ZERO_PAGE_ADDR + HDR_RAMDISK_IMAGE),
		     INITRD_SIZE, BZ_PREF + BZ_INIT_SIZE, BZ_INITRD_MAX);
	free(b.img);
}

static void test_setup_initrd_addr_max(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	uint64_t addr;

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	/* The last byte of the initrd may be at most 32 MiB - 1. */
	put32(b.img + HDR_INITRD_ADDR_MAX, 32 * MIB - 1);
	assert_int_equal(boot_kernel(f, &b, INITRD_SIZE, CMDLINE, 1), 0);
	addr = get32(f->ram + X86_ZERO_PAGE_ADDR + HDR_RAMDISK_IMAGE);
	assert_int_equal(addr, (32 * MIB - INITRD_SIZE) & ~4095ull);
	check_initrd(f, addr, INITRD_SIZE, X86_HIMEM_START + BZ_INIT_SIZE,
		     32 * MIB - 1);
	free(b.img);
}

static void test_setup_initrd_fills_memory(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	uint64_t kend = X86_HIMEM_START + BZ_INIT_SIZE;
	uint64_t size = RAM_SIZE - kend; /* page-aligned: fits exactly */
	uint64_t addr;

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	assert_int_equal(boot_kernel(f, &b, size, CMDLINE, 1), 0);
	addr = get32(f->ram + X86_ZERO_PAGE_ADDR + HDR_RAMDISK_IMAGE);
	assert_int_equal(addr, kend);
	check_initrd(f, addr, size, kend, BZ_INITRD_MAX);
	/* The kernel was not overwritten. */
	assert_memory_equal(f->ram + X86_HIMEM_START, b.img + BZ_SETUP_SIZE,
			    BZ_PAYLOAD);
	free(b.img);
}

static void test_setup_initrd_too_big(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	uint64_t kend = X86_HIMEM_START + BZ_INIT_SIZE;

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	assert_int_equal(boot_kernel(f, &b, RAM_SIZE - kend + 1, CMDLINE, 1),
			 -E2BIG);
	assert_int_equal(f->cap.count, 1);
	assert_non_null(strstr(f->cap.last, "initrd"));
	assert_int_equal(boot_kernel(f, &b, RAM_SIZE, CMDLINE, 1), -E2BIG);
	assert_int_equal(boot_kernel(f, &b, RAM_SIZE + 1, CMDLINE, 1), -E2BIG);
	free(b.img);
}

static void test_setup_initrd_max_below_kernel(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	/* initrd_addr_max inside the kernel: nowhere to put the initrd. */
	put32(b.img + HDR_INITRD_ADDR_MAX, X86_HIMEM_START + 0x1000);
	assert_int_equal(boot_kernel(f, &b, 4096, CMDLINE, 1), -E2BIG);
	free(b.img);
}

static void test_setup_kernel_too_large(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	/* Needs 100 MiB from 1 MiB: valid image, too little RAM. */
	put32(b.img + HDR_INIT_SIZE, 100 * MIB);
	assert_int_equal(boot_kernel(f, &b, 0, CMDLINE, 1), -E2BIG);
	assert_non_null(strstr(f->cap.last, "too large"));
	/* Exactly filling RAM is fine. */
	put32(b.img + HDR_INIT_SIZE, RAM_SIZE - X86_HIMEM_START);
	assert_int_equal(boot_kernel(f, &b, 0, CMDLINE, 1), 0);
	/* ... but then there is no room for an initrd. */
	assert_int_equal(boot_kernel(f, &b, 1, CMDLINE, 1), -E2BIG);
	free(b.img);
}

static void test_setup_cmdline_too_long(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	char cmdline[64];

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	put32(b.img + HDR_CMDLINE_SIZE, 16);
	memset(cmdline, 'a', sizeof(cmdline));
	cmdline[17] = 0;
	assert_int_equal(boot_kernel(f, &b, 0, cmdline, 1), -E2BIG);
	assert_non_null(strstr(f->cap.last, "command line"));
	cmdline[16] = 0;
	assert_int_equal(boot_kernel(f, &b, 0, cmdline, 1), 0);
	assert_string_equal((const char *)f->ram + X86_CMDLINE_ADDR, cmdline);
	free(b.img);
}

static void test_setup_cmdline_default_size(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	char cmdline[300];

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	put32(b.img + HDR_CMDLINE_SIZE, 0); /* 255 */
	memset(cmdline, 'b', sizeof(cmdline));
	cmdline[256] = 0;
	assert_int_equal(boot_kernel(f, &b, 0, cmdline, 1), -E2BIG);
	cmdline[255] = 0;
	assert_int_equal(boot_kernel(f, &b, 0, cmdline, 1), 0);
	free(b.img);
}

static void test_setup_cmdline_max(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	char *cmdline = malloc(X86_CMDLINE_MAX + 1);

	assert_non_null(cmdline);
	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	put32(b.img + HDR_CMDLINE_SIZE, 0xFFFFFFFF);
	/* The longest possible cmdline ends right below the next region. */
	memset(cmdline, 'c', X86_CMDLINE_MAX);
	cmdline[X86_CMDLINE_MAX] = 0;
	assert_int_equal(boot_kernel(f, &b, 0, cmdline, 1), -E2BIG);
	cmdline[X86_CMDLINE_MAX - 1] = 0;
	assert_int_equal(boot_kernel(f, &b, 0, cmdline, 1), 0);
	assert_int_equal(f->ram[X86_CMDLINE_ADDR + X86_CMDLINE_MAX - 1], 0);
	assert_int_equal(f->ram[X86_CMDLINE_ADDR + X86_CMDLINE_MAX - 2], 'c');
	free(cmdline);
	free(b.img);
}

static int setup_tiny(void **state)
{
	return setup_ram(state, 2 * MIB - 4096);
}

static void test_setup_memory_too_small(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	assert_int_equal(boot_kernel(f, &b, 0, CMDLINE, 1), -EINVAL);
	assert_int_equal(f->cap.count, 1);
	free(b.img);
}

static void test_setup_bad_ncpus(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};

	b.img = make_bzimage(BZ_PAYLOAD, &b.size);
	assert_non_null(b.img);
	assert_int_equal(boot_kernel(f, &b, 0, CMDLINE, 0), -EINVAL);
	assert_int_equal(f->cap.count, 1);
	free(b.img);
}

/* --- x86_setup_boot: PVH ELF --- */

static void check_pvh(struct fixture *f, int is64, int with_initrd)
{
	struct boot b = {0};
	struct e820_entry e820[E820_MAX_ENTRIES];
	const uint8_t *si = f->ram + X86_PVH_START_INFO_ADDR;
	const uint8_t *map = f->ram + X86_PVH_MEMMAP_ADDR;
	uint64_t initrd_size = with_initrd ? INITRD_SIZE : 0;
	int n;

	b.img = make_pvh_elf(is64, 0, &b.size);
	assert_non_null(b.img);
	/* Stale bytes where the bss goes: it must be zeroed. */
	memset(f->ram + X86_HIMEM_START, 0xCC, 4 * MIB);
	memset(f->ram + X86_PVH_START_INFO_ADDR, 0xEE, 0x400);
	assert_int_equal(boot_kernel(f, &b, initrd_size, CMDLINE, 4), 0);
	assert_int_equal(f->cap.count, 0);

	/* Entry: 32-bit protected mode at the note's address, rbx -> info. */
	assert_int_equal(b.entry.rip, ELF_ENTRY);
	assert_int_equal(b.entry.rbx, X86_PVH_START_INFO_ADDR);
	assert_int_equal(b.entry.rsi, 0);
	assert_int_equal(b.entry.long_mode, 0);

	/* Segments: file bytes copied, bss zeroed, nothing beyond. */
	assert_memory_equal(f->ram + ELF_TEXT_PADDR, b.img + ELF_TEXT_OFF,
			    ELF_TEXT_SIZE);
	assert_memory_equal(f->ram + ELF_DATA_PADDR, b.img + ELF_DATA_OFF,
			    ELF_DATA_FILESZ);
	for (uint64_t a = ELF_DATA_PADDR + ELF_DATA_FILESZ; a < ELF_END; a++)
		assert_int_equal(f->ram[a], 0);
	assert_int_equal(f->ram[ELF_END], 0xCC);
	assert_int_equal(f->ram[ELF_TEXT_PADDR + ELF_TEXT_SIZE], 0xCC);

	/* struct hvm_start_info. */
	assert_int_equal(get32(si + 0), 0x336ec578);
	assert_int_equal(get32(si + 4), 1);
	assert_int_equal(get32(si + 8), 0);
	if (with_initrd) {
		const uint8_t *mod = f->ram + X86_PVH_MODLIST_ADDR;
		uint64_t addr = get64(mod);

		assert_int_equal(get32(si + 12), 1);
		assert_int_equal(get64(si + 16), X86_PVH_MODLIST_ADDR);
		assert_int_equal(get64(mod + 8), INITRD_SIZE);
		assert_int_equal(get64(mod + 16), 0); /* no module cmdline */
		assert_int_equal(get64(mod + 24), 0);
		check_initrd(f, addr, INITRD_SIZE, ELF_END, 0xFFFFFFFF);
		assert_int_equal(addr, (RAM_SIZE - INITRD_SIZE) & ~4095ull);
	} else {
		assert_int_equal(get32(si + 12), 0);
		assert_int_equal(get64(si + 16), 0);
	}
	assert_int_equal(get64(si + 24), X86_CMDLINE_ADDR);
	assert_string_equal((const char *)f->ram + X86_CMDLINE_ADDR, CMDLINE);
	assert_int_equal(get64(si + 32), 0); /* rsdp */
	assert_int_equal(get64(si + 40), X86_PVH_MEMMAP_ADDR);
	n = x86_build_e820(&f->m, e820, E820_MAX_ENTRIES);
	assert_int_equal(get32(si + 48), n);
	assert_int_equal(get32(si + 52), 0);
	for (int i = 0; i < n; i++) {
		assert_int_equal(get64(map + i * 24), e820[i].addr);
		assert_int_equal(get64(map + i * 24 + 8), e820[i].size);
		assert_int_equal(get32(map + i * 24 + 16), e820[i].type);
		assert_int_equal(get32(map + i * 24 + 20), 0);
	}
	/* The structures do not overlap each other. */
	assert_true(X86_PVH_START_INFO_ADDR + 56 <= X86_PVH_MODLIST_ADDR);
	assert_true(X86_PVH_MODLIST_ADDR + 32 <= X86_PVH_MEMMAP_ADDR);
	assert_true(X86_PVH_MEMMAP_ADDR + n * 24 <= X86_ZERO_PAGE_ADDR);
	check_mptable(f, 4);
	free(b.img);
}

static void test_setup_pvh64(void **state)
{
	check_pvh(*state, 1, 1);
}

static void test_setup_pvh32(void **state)
{
	check_pvh(*state, 0, 1);
}

static void test_setup_pvh_no_initrd(void **state)
{
	check_pvh(*state, 1, 0);
}

static void test_setup_pvh_cmdline_size(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};
	char cmdline[2049];

	b.img = make_pvh_elf(1, 0, &b.size);
	assert_non_null(b.img);
	memset(cmdline, 'p', sizeof(cmdline));
	cmdline[2048] = 0;
	assert_int_equal(boot_kernel(f, &b, 0, cmdline, 1), -E2BIG);
	cmdline[2047] = 0;
	assert_int_equal(boot_kernel(f, &b, 0, cmdline, 1), 0);
	free(b.img);
}

static void test_setup_pvh_kernel_too_large(void **state)
{
	struct fixture *f = *state;
	struct boot b = {0};

	b.img = make_pvh_elf(1, 0, &b.size);
	assert_non_null(b.img);
	/* The data segment's bss reaches past the end of RAM. */
	elf_set_phdr(b.img, 1, PT_LOAD, ELF_DATA_OFF, ELF_DATA_PADDR,
		     ELF_DATA_FILESZ, RAM_SIZE);
	assert_int_equal(boot_kernel(f, &b, 0, CMDLINE, 1), -E2BIG);
	free(b.img);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_64m, teardown_ram)
	const struct CMUnitTest tests[] = {
		T(test_e820_64m),
		cmocka_unit_test(test_e820_above_4g),
		cmocka_unit_test(test_e820_errors),
		T(test_page_tables),
		cmocka_unit_test(test_page_tables_no_room),
		T(test_gdt),
		cmocka_unit_test(test_gdt_no_room),
		T(test_mptable_1),
		T(test_mptable_2),
		T(test_mptable_64),
		T(test_mptable_rebuild_smaller),
		T(test_mptable_errors),
		T(test_setup_bzimage),
		T(test_setup_bzimage_no_initrd),
		T(test_setup_bzimage_relocated),
		T(test_setup_initrd_addr_max),
		T(test_setup_initrd_fills_memory),
		T(test_setup_initrd_too_big),
		T(test_setup_initrd_max_below_kernel),
		T(test_setup_kernel_too_large),
		T(test_setup_cmdline_too_long),
		T(test_setup_cmdline_default_size),
		T(test_setup_cmdline_max),
		cmocka_unit_test_setup_teardown(test_setup_memory_too_small,
						setup_tiny, teardown_ram),
		T(test_setup_bad_ncpus),
		T(test_setup_pvh64),
		T(test_setup_pvh32),
		T(test_setup_pvh_no_initrd),
		T(test_setup_pvh_cmdline_size),
		T(test_setup_pvh_kernel_too_large),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
