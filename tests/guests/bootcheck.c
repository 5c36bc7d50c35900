/* SPDX-License-Identifier: MIT */
/*
 * bootcheck: report what the loader handed us and check it against kiln's
 * boot contract.  The same program is built as a bzImage (64-bit boot
 * protocol, head64.S) and as a PVH ELF (head_pvh.S).
 *
 * Output (every number in lowercase hex with a 0x prefix):
 *   BOOT proto=bzimage|pvh
 *   CMDLINE <command line verbatim>
 *   E820 <addr> <size> <type>          one per entry, in the order given
 *   INITRD <addr> <size> <fnv1a32>     or: INITRD none
 *   FAIL <what>                        one per failed check
 *   RESULT PASS|FAIL                   then exit 0|1 via port 0x501
 */
#include "lib.h"

#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)
#define MAPPED_LIMIT (4 * GiB) /* what the identity map covers */
#define MAX_E820 128
#define MAX_CMDLINE 4096 /* print/scan bound when no size is given */

#define E820_RAM 1

/* Zero page (struct boot_params) offsets. */
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE 0x0c4
#define ZP_EXT_CMD_LINE_PTR 0x0c8
#define ZP_E820_ENTRIES 0x1e8
#define ZP_HDR_SETUP_SECTS 0x1f1
#define ZP_HDR_BOOT_FLAG 0x1fe
#define ZP_HDR_HEADER 0x202
#define ZP_HDR_VERSION 0x206
#define ZP_HDR_TYPE_OF_LOADER 0x210
#define ZP_HDR_LOADFLAGS 0x211
#define ZP_HDR_RAMDISK_IMAGE 0x218
#define ZP_HDR_RAMDISK_SIZE 0x21c
#define ZP_HDR_CMD_LINE_PTR 0x228
#define ZP_HDR_INITRD_ADDR_MAX 0x22c
#define ZP_HDR_XLOADFLAGS 0x236
#define ZP_HDR_CMDLINE_SIZE 0x238
#define ZP_E820_TABLE 0x2d0
#define ZP_SIZE 4096
#define E820_ENTRY_SIZE 20

/* struct hvm_start_info offsets. */
#define SI_MAGIC 0
#define SI_VERSION 4
#define SI_FLAGS 8
#define SI_NR_MODULES 12
#define SI_MODLIST_PADDR 16
#define SI_CMDLINE_PADDR 24
#define SI_RSDP_PADDR 32
#define SI_MEMMAP_PADDR 40
#define SI_MEMMAP_ENTRIES 48
#define SI_SIZE 56
#define HVM_START_MAGIC 0x336ec578u
#define HVM_MEMMAP_ENTRY_SIZE 24
#define HVM_MODLIST_ENTRY_SIZE 32

#define CR0_PE (1ull << 0)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define RFLAGS_IF (1ull << 9)

struct range {
	uint64_t start, len;
};

struct bootinfo {
	bool bootreg_ok;      /* boot structure pointer usable */
	bool have_cmdline;    /* cmdline pointer nonzero and readable */
	uint64_t cmdline;     /* physical address */
	uint64_t cmdline_len; /* excluding the NUL */
	uint64_t cmdline_max; /* bound used for scanning */
	uint64_t e820;        /* physical address of the first entry */
	uint64_t e820_n;      /* entries as reported */
	uint64_t e820_stride;
	bool have_initrd;
	uint64_t initrd, initrd_size;
	struct range boot_struct[3]; /* zero page / start_info + its arrays */
	int n_boot_struct;
};

static bool all_ok = true;

static void fail(const char *what)
{
	all_ok = false;
	uart_puts("FAIL ");
	uart_puts(what);
	uart_putc('\n');
}

static void fail_val(const char *what, uint64_t got)
{
	all_ok = false;
	uart_puts("FAIL ");
	uart_puts(what);
	uart_puts(" (got ");
	uart_puthex(got);
	uart_puts(")\n");
}

static void check_eq(const char *what, uint64_t got, uint64_t want)
{
	if (got != want)
		fail_val(what, got);
}

static bool readable(uint64_t addr, uint64_t len)
{
	return addr < MAPPED_LIMIT && len <= MAPPED_LIMIT - addr;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

static uint64_t e820_addr(const struct bootinfo *bi, uint64_t i)
{
	return phys_rd64(bi->e820 + i * bi->e820_stride);
}
static uint64_t e820_size(const struct bootinfo *bi, uint64_t i)
{
	return phys_rd64(bi->e820 + i * bi->e820_stride + 8);
}
static uint32_t e820_type(const struct bootinfo *bi, uint64_t i)
{
	return phys_rd32(bi->e820 + i * bi->e820_stride + 16);
}

/* Number of map entries we may safely read. */
static uint64_t e820_usable_n(const struct bootinfo *bi)
{
	uint64_t n = bi->e820_n > MAX_E820 ? MAX_E820 : bi->e820_n;
	if (!bi->e820 || !readable(bi->e820, n * bi->e820_stride))
		return 0;
	return n;
}

/* [addr, addr+len) entirely inside one RAM entry of the map. */
static bool in_ram(const struct bootinfo *bi, uint64_t addr, uint64_t len)
{
	uint64_t n = e820_usable_n(bi);

	for (uint64_t i = 0; i < n; i++) {
		uint64_t a = e820_addr(bi, i), s = e820_size(bi, i);
		if (e820_type(bi, i) != E820_RAM)
			continue;
		if (addr >= a && len <= s && addr - a <= s - len)
			return true;
	}
	return false;
}

static void gather_bzimage(const struct entry_state *es, struct bootinfo *bi)
{
	uint64_t zp = es->bootreg;

	/* Don't parse garbage: check_bzimage() reports a bad RSI. */
	bi->bootreg_ok = zp != 0 && zp < 1 * MiB;
	if (!bi->bootreg_ok)
		return;
	bi->boot_struct[bi->n_boot_struct++] = (struct range){ zp, ZP_SIZE };

	bi->cmdline = phys_rd32(zp + ZP_HDR_CMD_LINE_PTR) |
		      (uint64_t)phys_rd32(zp + ZP_EXT_CMD_LINE_PTR) << 32;
	bi->cmdline_max = phys_rd32(zp + ZP_HDR_CMDLINE_SIZE);
	if (bi->cmdline_max == 0 || bi->cmdline_max > MAX_CMDLINE)
		bi->cmdline_max = MAX_CMDLINE;

	bi->e820 = zp + ZP_E820_TABLE;
	bi->e820_n = phys_rd8(zp + ZP_E820_ENTRIES);
	bi->e820_stride = E820_ENTRY_SIZE;

	bi->initrd = phys_rd32(zp + ZP_HDR_RAMDISK_IMAGE) |
		     (uint64_t)phys_rd32(zp + ZP_EXT_RAMDISK_IMAGE) << 32;
	bi->initrd_size = phys_rd32(zp + ZP_HDR_RAMDISK_SIZE) |
			  (uint64_t)phys_rd32(zp + ZP_EXT_RAMDISK_SIZE) << 32;
	bi->have_initrd = bi->initrd != 0 || bi->initrd_size != 0;
}

static void gather_pvh(const struct entry_state *es, struct bootinfo *bi)
{
	uint64_t si = es->bootreg;

	bi->bootreg_ok = si != 0 && readable(si, SI_SIZE) &&
			 phys_rd32(si + SI_MAGIC) == HVM_START_MAGIC;
	if (!bi->bootreg_ok)
		return;
	bi->boot_struct[bi->n_boot_struct++] = (struct range){ si, SI_SIZE };

	bi->cmdline = phys_rd64(si + SI_CMDLINE_PADDR);
	bi->cmdline_max = MAX_CMDLINE;

	if (phys_rd32(si + SI_VERSION) >= 1) {
		bi->e820 = phys_rd64(si + SI_MEMMAP_PADDR);
		bi->e820_n = phys_rd32(si + SI_MEMMAP_ENTRIES);
	}
	bi->e820_stride = HVM_MEMMAP_ENTRY_SIZE;
	if (bi->e820)
		bi->boot_struct[bi->n_boot_struct++] =
			(struct range){ bi->e820, bi->e820_n * HVM_MEMMAP_ENTRY_SIZE };

	uint32_t nmod = phys_rd32(si + SI_NR_MODULES);
	uint64_t modlist = phys_rd64(si + SI_MODLIST_PADDR);
	if (nmod && modlist && readable(modlist, HVM_MODLIST_ENTRY_SIZE)) {
		bi->have_initrd = true;
		bi->initrd = phys_rd64(modlist + 0);
		bi->initrd_size = phys_rd64(modlist + 8);
		bi->boot_struct[bi->n_boot_struct++] =
			(struct range){ modlist, (uint64_t)nmod * HVM_MODLIST_ENTRY_SIZE };
	}
}

static void print_info(struct bootinfo *bi)
{
	uart_puts("CMDLINE ");
	if (bi->cmdline && readable(bi->cmdline, 1)) {
		uint64_t max = bi->cmdline_max + 1;
		if (max > MAPPED_LIMIT - bi->cmdline)
			max = MAPPED_LIMIT - bi->cmdline;
		bi->have_cmdline = true;
		bi->cmdline_len = str_nlen((const char *)(uintptr_t)bi->cmdline, max);
		uart_putn((const char *)(uintptr_t)bi->cmdline, bi->cmdline_len);
	}
	uart_putc('\n');

	uint64_t n = e820_usable_n(bi);
	for (uint64_t i = 0; i < n; i++) {
		uart_puts("E820 ");
		uart_puthex(e820_addr(bi, i));
		uart_putc(' ');
		uart_puthex(e820_size(bi, i));
		uart_putc(' ');
		uart_puthex(e820_type(bi, i));
		uart_putc('\n');
	}

	if (!bi->have_initrd) {
		uart_puts("INITRD none\n");
		return;
	}
	uart_puts("INITRD ");
	uart_puthex(bi->initrd);
	uart_putc(' ');
	uart_puthex(bi->initrd_size);
	uart_putc(' ');
	if (bi->initrd && readable(bi->initrd, bi->initrd_size) && in_ram(bi, bi->initrd, bi->initrd_size))
		uart_puthex(fnv1a32(bi->initrd, bi->initrd_size));
	else
		uart_puts("unreadable");
	uart_putc('\n');
}

static void check_bzimage(const struct entry_state *es, const struct bootinfo *bi)
{
	check_eq("entry CS != 0x10", es->cs, 0x10);
	check_eq("entry DS != 0x18", es->ds, 0x18);
	check_eq("entry ES != 0x18", es->es, 0x18);
	check_eq("entry SS != 0x18", es->ss, 0x18);
	check_eq("entry FS != 0x18", es->fs, 0x18);
	check_eq("entry GS != 0x18", es->gs, 0x18);
	if (es->flags & RFLAGS_IF)
		fail_val("entry RFLAGS.IF set", es->flags);
	if (!(es->cr0 & CR0_PE) || !(es->cr0 & CR0_PG))
		fail_val("entry CR0.PE/PG not set", es->cr0);
	if (!(es->cr4 & CR4_PAE))
		fail_val("entry CR4.PAE not set", es->cr4);
	if (!(es->efer & EFER_LME) || !(es->efer & EFER_LMA))
		fail_val("entry EFER.LME/LMA not set", es->efer);
	if (es->bootreg == 0 || es->bootreg >= 1 * MiB) {
		fail_val("entry RSI (zero page) not in (0, 1 MiB)", es->bootreg);
		return;
	}

	uint64_t zp = es->bootreg;
	check_eq("zero page boot_flag != 0xaa55", phys_rd16(zp + ZP_HDR_BOOT_FLAG), 0xaa55);
	check_eq("zero page header magic != HdrS", phys_rd32(zp + ZP_HDR_HEADER), 0x53726448);
	if (phys_rd16(zp + ZP_HDR_VERSION) < 0x020c)
		fail_val("zero page header version < 0x020c", phys_rd16(zp + ZP_HDR_VERSION));
	if (!(phys_rd16(zp + ZP_HDR_XLOADFLAGS) & 1))
		fail_val("zero page xloadflags lacks XLF_KERNEL_64", phys_rd16(zp + ZP_HDR_XLOADFLAGS));
	if (phys_rd8(zp + ZP_HDR_TYPE_OF_LOADER) == 0)
		fail("zero page type_of_loader == 0");
	if (!(phys_rd8(zp + ZP_HDR_LOADFLAGS) & 1))
		fail_val("zero page loadflags lacks LOADED_HIGH", phys_rd8(zp + ZP_HDR_LOADFLAGS));

	if (bi->have_initrd) {
		if (bi->initrd == 0 || bi->initrd_size == 0)
			fail("ramdisk_image/ramdisk_size: only one is zero");
		uint64_t max = phys_rd32(zp + ZP_HDR_INITRD_ADDR_MAX);
		if (bi->initrd + bi->initrd_size - 1 > max)
			fail_val("initrd ends above initrd_addr_max", bi->initrd + bi->initrd_size - 1);
	}
}

static void check_pvh(const struct entry_state *es, const struct bootinfo *bi)
{
	check_eq("entry CS != 0x08", es->cs, 0x08);
	check_eq("entry DS != 0x18", es->ds, 0x18);
	check_eq("entry ES != 0x18", es->es, 0x18);
	check_eq("entry SS != 0x18", es->ss, 0x18);
	check_eq("entry FS != 0x18", es->fs, 0x18);
	check_eq("entry GS != 0x18", es->gs, 0x18);
	if (es->flags & RFLAGS_IF)
		fail_val("entry EFLAGS.IF set", es->flags);
	if (!(es->cr0 & CR0_PE) || (es->cr0 & CR0_PG))
		fail_val("entry CR0 not PE=1 PG=0", es->cr0);
	check_eq("entry CR4 != 0", es->cr4, 0);

	uint64_t si = es->bootreg;
	if (si == 0 || !readable(si, SI_SIZE)) {
		fail_val("entry EBX (start_info) unusable", si);
		return;
	}
	check_eq("start_info magic != 0x336ec578", phys_rd32(si + SI_MAGIC), HVM_START_MAGIC);
	if (phys_rd32(si + SI_VERSION) < 1)
		fail_val("start_info version < 1", phys_rd32(si + SI_VERSION));
	if (!bi->bootreg_ok)
		return;
	if (!in_ram(bi, si, SI_SIZE))
		fail_val("start_info not inside RAM", si);
	uint32_t nmod = phys_rd32(si + SI_NR_MODULES);
	if (nmod > 1)
		fail_val("start_info nr_modules > 1", nmod);
	if (nmod && phys_rd64(si + SI_MODLIST_PADDR) == 0)
		fail("start_info nr_modules != 0 but modlist_paddr == 0");
	if (bi->have_initrd && bi->initrd_size == 0)
		fail("initrd module has size 0");
}

static void check_common(const struct bootinfo *bi)
{
	if (!bi->bootreg_ok)
		return; /* already reported by the protocol checks */

	/* Memory map. */
	uint64_t n = e820_usable_n(bi);
	if (n == 0) {
		fail_val("memory map empty or unreadable", bi->e820_n);
	} else {
		if (bi->e820_n > MAX_E820)
			fail_val("memory map has more than 128 entries", bi->e820_n);
		if (e820_addr(bi, 0) != 0)
			fail_val("memory map does not start at 0", e820_addr(bi, 0));
		/* Report only the first problem of each kind. */
		bool empty = false, unsorted = false, overlap = false;
		for (uint64_t i = 0; i < n; i++) {
			if (e820_size(bi, i) == 0 && !empty) {
				empty = true;
				fail_val("memory map entry with size 0 at index", i);
			}
			if (i == 0)
				continue;
			uint64_t pa = e820_addr(bi, i - 1), ps = e820_size(bi, i - 1);
			uint64_t a = e820_addr(bi, i);
			if (a < pa) {
				if (!unsorted)
					fail_val("memory map not sorted at index", i);
				unsorted = true;
			} else if (a - pa < ps) {
				if (!overlap)
					fail_val("memory map entries overlap at index", i);
				overlap = true;
			}
		}
	}

	/* Our own image must be in RAM (else the loader put it in a hole). */
	uint64_t img = (uintptr_t)_image_start;
	uint64_t img_len = (uintptr_t)_image_end - img;
	if (!in_ram(bi, img, img_len))
		fail_val("guest image not inside a RAM entry", img);

	/* Command line. */
	if (bi->cmdline == 0)
		fail("command line pointer is 0");
	else if (!bi->have_cmdline || !in_ram(bi, bi->cmdline, bi->cmdline_len + 1))
		fail_val("command line not inside RAM", bi->cmdline);
	else if (bi->cmdline_len > bi->cmdline_max)
		fail_val("command line has no NUL within cmdline_size (bzImage) or 4096 bytes at",
			 bi->cmdline);

	/* Initrd. */
	if (bi->have_initrd) {
		if (!in_ram(bi, bi->initrd, bi->initrd_size))
			fail_val("initrd not inside a RAM entry", bi->initrd);
		if (overlaps(bi->initrd, bi->initrd_size, img, img_len))
			fail_val("initrd overlaps the guest image", bi->initrd);
		for (int i = 0; i < bi->n_boot_struct; i++) {
			if (overlaps(bi->initrd, bi->initrd_size, bi->boot_struct[i].start,
				     bi->boot_struct[i].len))
				fail_val("initrd overlaps boot structure at", bi->boot_struct[i].start);
		}
		if (bi->have_cmdline &&
		    overlaps(bi->initrd, bi->initrd_size, bi->cmdline, bi->cmdline_len + 1))
			fail_val("initrd overlaps the command line", bi->cmdline);
	}
}

void guest_main(const struct entry_state *es)
{
	struct bootinfo bi = { 0 };
	bool bz = es->proto == BOOT_PROTO_BZIMAGE;

	uart_puts(bz ? "BOOT proto=bzimage\n" : "BOOT proto=pvh\n");
	if (bz)
		gather_bzimage(es, &bi);
	else
		gather_pvh(es, &bi);

	print_info(&bi);

	if (bz)
		check_bzimage(es, &bi);
	else
		check_pvh(es, &bi);
	check_common(&bi);

	finish(all_ok);
}
