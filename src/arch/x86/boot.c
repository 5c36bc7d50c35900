/* SPDX-License-Identifier: MIT */
#include "boot.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

#include "layout.h"
#include "util/le.h"

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* --- bzImage (Documentation/arch/x86/boot.rst) --- */

/* Offsets into the boot sector / zero page. */
#define BP_EXT_RAMDISK_IMAGE 0x0C0
#define BP_EXT_RAMDISK_SIZE  0x0C4
#define BP_EXT_CMD_LINE_PTR  0x0C8
#define BP_E820_ENTRIES	     0x1E8
#define BP_SETUP_SECTS	     0x1F1
#define BP_SYSSIZE	     0x1F4
#define BP_BOOT_FLAG	     0x1FE
#define BP_JUMP		     0x200
#define BP_HEADER	     0x202
#define BP_VERSION	     0x206
#define BP_TYPE_OF_LOADER    0x210
#define BP_LOADFLAGS	     0x211
#define BP_CODE32_START	     0x214
#define BP_RAMDISK_IMAGE     0x218
#define BP_RAMDISK_SIZE	     0x21C
#define BP_HEAP_END_PTR	     0x224
#define BP_CMD_LINE_PTR	     0x228
#define BP_INITRD_ADDR_MAX   0x22C
#define BP_KERNEL_ALIGNMENT  0x230
#define BP_RELOCATABLE	     0x234
#define BP_XLOADFLAGS	     0x236
#define BP_CMDLINE_SIZE	     0x238
#define BP_PREF_ADDRESS	     0x258
#define BP_INIT_SIZE	     0x260
#define BP_E820_TABLE	     0x2D0

#define LOADFLAG_LOADED_HIGH	0x01
#define LOADFLAG_KEEP_SEGMENTS	0x40
#define XLF_KERNEL_64		0x01
#define BZ_MIN_VERSION		0x020C /* xloadflags: 64-bit entry is declared */
#define BZ_HEADER_MIN		0x264  /* through init_size */
#define BZ_DEFAULT_INITRD_MAX	0x37FFFFFFu
#define BZ_DEFAULT_CMDLINE_SIZE 255u
#define PVH_CMDLINE_SIZE	2047u

static int parse_bzimage(const uint8_t *img, size_t size, struct x86_kernel *k,
			 const struct kiln_log *log)
{
	unsigned setup_sects;
	uint64_t syssize_bytes, align;

	if (size < BZ_HEADER_MIN)
		return kiln_errorf(
			log, -EINVAL,
			"bzImage truncated: %zu bytes, the setup header "
			"alone needs %u",
			size, BZ_HEADER_MIN);
	k->version = get_le16(img + BP_VERSION);
	if (k->version < BZ_MIN_VERSION)
		return kiln_errorf(
			log, -EINVAL,
			"bzImage boot protocol %u.%02u is too old; kiln "
			"needs 2.12 or newer (64-bit entry)",
			k->version >> 8, k->version & 0xff);
	if (!(img[BP_LOADFLAGS] & LOADFLAG_LOADED_HIGH))
		return kiln_errorf(log, -EINVAL,
				   "image is a zImage (not LOADED_HIGH); only "
				   "bzImage is supported");
	if (!(get_le16(img + BP_XLOADFLAGS) & XLF_KERNEL_64))
		return kiln_errorf(log, -EINVAL,
				   "bzImage has no 64-bit entry point "
				   "(XLF_KERNEL_64 not set)");
	setup_sects = img[BP_SETUP_SECTS] ? img[BP_SETUP_SECTS] : 4;
	k->setup_size = (uint64_t)(setup_sects + 1) * 512;
	if (k->setup_size >= size)
		return kiln_errorf(
			log, -EINVAL,
			"bzImage truncated: %zu bytes, setup alone is "
			"%llu",
			size, (unsigned long long)k->setup_size);
	k->payload_size = size - k->setup_size;
	syssize_bytes = (uint64_t)get_le32(img + BP_SYSSIZE) * 16;
	if (syssize_bytes == 0)
		return kiln_errorf(log, -EINVAL, "bzImage syssize is 0");
	/* syssize is rounded up to 16 bytes; anything shorter is cut off. */
	if (syssize_bytes > k->payload_size + 15)
		return kiln_errorf(
			log, -EINVAL,
			"bzImage truncated: header says %llu bytes of "
			"kernel, file has %llu",
			(unsigned long long)syssize_bytes,
			(unsigned long long)k->payload_size);
	align = get_le32(img + BP_KERNEL_ALIGNMENT);
	if (img[BP_RELOCATABLE] && !is_pow2(align))
		return kiln_errorf(
			log, -EINVAL,
			"bzImage kernel_alignment 0x%llx is not a power "
			"of two",
			(unsigned long long)align);
	k->initrd_addr_max = get_le32(img + BP_INITRD_ADDR_MAX);
	if (!k->initrd_addr_max)
		k->initrd_addr_max = BZ_DEFAULT_INITRD_MAX;
	k->cmdline_size = get_le32(img + BP_CMDLINE_SIZE);
	if (!k->cmdline_size)
		k->cmdline_size = BZ_DEFAULT_CMDLINE_SIZE;
	if (k->cmdline_size > X86_CMDLINE_MAX - 1)
		k->cmdline_size = X86_CMDLINE_MAX - 1;
	k->init_size = get_le32(img + BP_INIT_SIZE);
	if (k->init_size < k->payload_size)
		k->init_size = k->payload_size;
	/* A relocatable kernel runs at its preferred address when it has an
	 * aligned one: it would otherwise move itself there. */
	k->load_addr = X86_HIMEM_START;
	if (img[BP_RELOCATABLE]) {
		uint64_t pref = get_le64(img + BP_PREF_ADDRESS);

		if (pref >= X86_HIMEM_START && pref < GUEST_MMIO_HOLE_START &&
		    (pref & (align - 1)) == 0)
			k->load_addr = pref;
	}
	if (k->init_size > GUEST_MMIO_HOLE_START - k->load_addr)
		return kiln_errorf(log, -EINVAL,
				   "bzImage init_size %llu bytes is absurd",
				   (unsigned long long)k->init_size);
	k->end = k->load_addr + k->init_size;
	k->pvh_entry = 0;
	k->format = X86_KERNEL_BZIMAGE;
	return 0;
}

/* --- ELF with a PVH note (XEN_ELFNOTE_PHYS32_ENTRY) --- */

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Looks for the PVH entry note in [p, p+len); returns 1 and *entry if found,
 * 0 if not, -EINVAL for a malformed note list. */
static int find_pvh_note(const uint8_t *p, uint64_t len, uint64_t *entry)
{
	uint64_t off = 0;

	while (len - off >= 12) {
		uint32_t namesz = get_le32(p + off),
			 descsz = get_le32(p + off + 4);
		uint32_t type = get_le32(p + off + 8);
		uint64_t name_off = off + 12;
		uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ull);
		uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ull);

		if (next > len)
			return -EINVAL;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    memcmp(p + name_off, "Xen", 4) == 0) {
			if (descsz == 4)
				*entry = get_le32(p + desc_off);
			else if (descsz == 8)
				*entry = get_le64(p + desc_off);
			else
				return -EINVAL;
			return 1;
		}
		off = next;
	}
	return 0;
}

static int parse_elf(const uint8_t *img, size_t size, struct x86_kernel *k,
		     const struct kiln_log *log)
{
	int is64 = img[EI_CLASS] == ELFCLASS64;
	uint64_t phoff, phentsize, phnum, need_entsize;
	int found = 0;

	if (img[EI_CLASS] != ELFCLASS32 && !is64)
		return kiln_errorf(log, -EINVAL, "ELF kernel: bad class %u",
				   img[EI_CLASS]);
	if (size < (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr)))
		return kiln_errorf(log, -EINVAL,
				   "ELF kernel truncated: %zu bytes", size);
	if (img[EI_DATA] != ELFDATA2LSB)
		return kiln_errorf(log, -EINVAL,
				   "ELF kernel is not little-endian");
	uint16_t machine = get_le16(img + 18);
	if (machine != EM_X86_64 && machine != EM_386)
		return kiln_errorf(log, -EINVAL,
				   "ELF kernel is for machine %u, not x86",
				   machine);
	if (is64) {
		phoff = get_le64(img + offsetof(Elf64_Ehdr, e_phoff));
		phentsize = get_le16(img + offsetof(Elf64_Ehdr, e_phentsize));
		phnum = get_le16(img + offsetof(Elf64_Ehdr, e_phnum));
		need_entsize = sizeof(Elf64_Phdr);
	} else {
		phoff = get_le32(img + offsetof(Elf32_Ehdr, e_phoff));
		phentsize = get_le16(img + offsetof(Elf32_Ehdr, e_phentsize));
		phnum = get_le16(img + offsetof(Elf32_Ehdr, e_phnum));
		need_entsize = sizeof(Elf32_Phdr);
	}
	if (phentsize != need_entsize || phnum == 0 || phnum > 64)
		return kiln_errorf(
			log, -EINVAL,
			"ELF kernel: bad program headers (%llu of %llu "
			"bytes)",
			(unsigned long long)phnum,
			(unsigned long long)phentsize);
	if (phoff > size || phnum * phentsize > size - phoff)
		return kiln_errorf(
			log, -EINVAL,
			"ELF kernel truncated: program headers past the "
			"end of the file");

	memset(k, 0, sizeof(*k));
	for (uint64_t i = 0; i < phnum; i++) {
		const uint8_t *ph = img + phoff + i * phentsize;
		uint64_t type, off, filesz, paddr, memsz;

		if (is64) {
			type = get_le32(ph + offsetof(Elf64_Phdr, p_type));
			off = get_le64(ph + offsetof(Elf64_Phdr, p_offset));
			paddr = get_le64(ph + offsetof(Elf64_Phdr, p_paddr));
			filesz = get_le64(ph + offsetof(Elf64_Phdr, p_filesz));
			memsz = get_le64(ph + offsetof(Elf64_Phdr, p_memsz));
		} else {
			type = get_le32(ph + offsetof(Elf32_Phdr, p_type));
			off = get_le32(ph + offsetof(Elf32_Phdr, p_offset));
			paddr = get_le32(ph + offsetof(Elf32_Phdr, p_paddr));
			filesz = get_le32(ph + offsetof(Elf32_Phdr, p_filesz));
			memsz = get_le32(ph + offsetof(Elf32_Phdr, p_memsz));
		}
		if (type != PT_LOAD && type != PT_NOTE)
			continue;
		if (off > size || filesz > size - off)
			return kiln_errorf(
				log, -EINVAL,
				"ELF kernel truncated: segment %llu "
				"needs bytes past the end of the file",
				(unsigned long long)i);
		if (type == PT_NOTE) {
			int r = find_pvh_note(img + off, filesz, &k->pvh_entry);

			if (r < 0)
				return kiln_errorf(log, r,
						   "ELF kernel: malformed note "
						   "segment %llu",
						   (unsigned long long)i);
			found |= r;
			continue;
		}
		if (memsz == 0)
			continue;
		if (filesz > memsz)
			return kiln_errorf(
				log, -EINVAL,
				"ELF kernel: segment %llu has file size "
				"> memory size",
				(unsigned long long)i);
		if (paddr < X86_HIMEM_START || paddr >= GUEST_MMIO_HOLE_START ||
		    memsz > GUEST_MMIO_HOLE_START - paddr)
			return kiln_errorf(
				log, -EINVAL,
				"ELF kernel: segment %llu at 0x%llx "
				"(+0x%llx) is outside [1 MiB, 3 GiB)",
				(unsigned long long)i,
				(unsigned long long)paddr,
				(unsigned long long)memsz);
		if (k->nr_segs == X86_MAX_ELF_SEGMENTS)
			return kiln_errorf(log, -EINVAL,
					   "ELF kernel: more than %d loadable "
					   "segments",
					   X86_MAX_ELF_SEGMENTS);
		for (unsigned j = 0; j < k->nr_segs; j++) {
			const struct x86_elf_segment *s = &k->segs[j];

			if (paddr < s->paddr + s->mem_size &&
			    s->paddr < paddr + memsz)
				return kiln_errorf(
					log, -EINVAL,
					"ELF kernel: segments overlap at "
					"0x%llx",
					(unsigned long long)paddr);
		}
		k->segs[k->nr_segs++] =
			(struct x86_elf_segment){off, filesz, paddr, memsz};
		if (paddr + memsz > k->end)
			k->end = paddr + memsz;
	}
	if (!k->nr_segs)
		return kiln_errorf(log, -EINVAL,
				   "ELF kernel has no loadable segment");
	if (!found)
		return kiln_errorf(log, -EINVAL,
				   "ELF kernel has no PVH entry note "
				   "(XEN_ELFNOTE_PHYS32_ENTRY): build it with "
				   "CONFIG_PVH=y or boot the bzImage");
	int inside = 0;
	for (unsigned j = 0; j < k->nr_segs; j++)
		if (k->pvh_entry >= k->segs[j].paddr &&
		    k->pvh_entry - k->segs[j].paddr < k->segs[j].file_size)
			inside = 1;
	if (!inside)
		return kiln_errorf(
			log, -EINVAL,
			"ELF kernel: PVH entry 0x%llx is not inside a "
			"loaded segment",
			(unsigned long long)k->pvh_entry);
	k->cmdline_size = PVH_CMDLINE_SIZE;
	k->initrd_addr_max = 0xFFFFFFFFu;
	k->format = X86_KERNEL_PVH_ELF;
	return 0;
}

int x86_parse_kernel(const uint8_t *img, size_t size, struct x86_kernel *k,
		     const struct kiln_log *log)
{
	memset(k, 0, sizeof(*k));
	if (size >= SELFMAG && memcmp(img, ELFMAG, SELFMAG) == 0) {
		if (size < EI_NIDENT)
			return kiln_errorf(log, -EINVAL,
					   "ELF kernel truncated: %zu bytes",
					   size);
		return parse_elf(img, size, k, log);
	}
	if (size >= BP_HEADER + 4 && get_le16(img + BP_BOOT_FLAG) == 0xAA55 &&
	    memcmp(img + BP_HEADER, "HdrS", 4) == 0)
		return parse_bzimage(img, size, k, log);
	if (size < BP_HEADER + 4)
		return kiln_errorf(
			log, -ENOEXEC,
			"kernel image is %zu bytes: too short to be a "
			"bzImage or ELF kernel",
			size);
	return kiln_errorf(log, -ENOEXEC,
			   "kernel image is neither a bzImage (no HdrS header) "
			   "nor an ELF vmlinux");
}

/* --- boot structures --- */

int x86_build_e820(const struct guest_mem *m, struct e820_entry *out,
		   unsigned max)
{
	uint64_t low = guest_mem_low_end(m);
	unsigned n = 0;

	if (max < 4 || low <= X86_HIMEM_START)
		return -EINVAL;
	out[n++] = (struct e820_entry){0, X86_EBDA_START, E820_RAM};
	out[n++] = (struct e820_entry){X86_EBDA_START,
				       X86_HIMEM_START - X86_EBDA_START,
				       E820_RESERVED};
	out[n++] = (struct e820_entry){X86_HIMEM_START, low - X86_HIMEM_START,
				       E820_RAM};
	if (m->nr_regions > 1)
		out[n++] = (struct e820_entry){m->regions[1].gpa,
					       m->regions[1].size, E820_RAM};
	return (int)n;
}

int x86_build_gdt(const struct guest_mem *m)
{
	static const uint64_t gdt[] = {
		0,		       /* null */
		0x00CF9B000000FFFFull, /* 0x08: code, 32-bit, flat */
		0x00AF9B000000FFFFull, /* 0x10: code, 64-bit */
		0x00CF93000000FFFFull, /* 0x18: data, flat */
		0x00008B0000000067ull, /* 0x20: TSS (busy), base 0 */
		0,		       /* TSS upper half in long mode */
	};
	uint8_t *p = guest_mem_ptr(m, X86_GDT_ADDR, sizeof(gdt));

	if (!p)
		return -EFAULT;
	for (size_t i = 0; i < sizeof(gdt) / sizeof(gdt[0]); i++)
		put_le64(p + i * 8, gdt[i]);
	return 0;
}

int x86_build_page_tables(const struct guest_mem *m)
{
	uint8_t *pml4 = guest_mem_ptr(m, X86_PML4_ADDR, 4096);
	uint8_t *pdpt = guest_mem_ptr(m, X86_PDPT_ADDR, 4096);
	uint8_t *pd = guest_mem_ptr(m, X86_PD_ADDR, 4 * 4096);

	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	/* present | writable */
	put_le64(pml4, X86_PDPT_ADDR | 0x3);
	for (uint64_t i = 0; i < 4; i++)
		put_le64(pdpt + i * 8, (X86_PD_ADDR + i * 4096) | 0x3);
	/* 2048 entries of 2 MiB: present | writable | page size */
	for (uint64_t i = 0; i < 4 * 512; i++)
		put_le64(pd + i * 8, (i << 21) | 0x83);
	return 0;
}

/* MP specification 1.4 structures, laid out by hand (all little-endian). */
#define MPC_HEADER_SIZE 44
#define MPC_CPU_SIZE	20
#define MPC_SHORT_SIZE	8
#define MP_IRQS		16

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)(0 - sum);
}

int x86_build_mptable(const struct guest_mem *m, unsigned ncpus)
{
	const uint64_t fp_addr = X86_EBDA_START, mpc_addr = X86_EBDA_START + 16;
	const unsigned ioapic_id = ncpus;
	size_t len = MPC_HEADER_SIZE + ncpus * MPC_CPU_SIZE +
		     MPC_SHORT_SIZE /* bus */
		     + MPC_SHORT_SIZE /* ioapic */ + MP_IRQS * MPC_SHORT_SIZE +
		     2 * MPC_SHORT_SIZE /* lint */;
	unsigned entries = ncpus + 2 + MP_IRQS + 2;
	uint8_t *fp, *mpc, *e;

	if (ncpus == 0 || ncpus > 254)
		return -EINVAL;
	fp = guest_mem_ptr(m, fp_addr, 16);
	mpc = guest_mem_ptr(m, mpc_addr, len);
	if (!fp || !mpc || mpc_addr + len > X86_HIMEM_START)
		return -EFAULT;
	memset(fp, 0, 16);
	memset(mpc, 0, len);

	memcpy(mpc, "PCMP", 4);
	put_le16(mpc + 4, (uint16_t)len);
	mpc[6] = 4; /* spec 1.4 */
	memcpy(mpc + 8, "KILN    ", 8);
	memcpy(mpc + 16, "MICROVM     ", 12);
	put_le16(mpc + 34, (uint16_t)entries);
	put_le32(mpc + 36, (uint32_t)X86_LAPIC_ADDR);

	e = mpc + MPC_HEADER_SIZE;
	for (unsigned i = 0; i < ncpus; i++, e += MPC_CPU_SIZE) {
		e[0] = 0;	   /* processor */
		e[1] = (uint8_t)i; /* local APIC id */
		e[2] = 0x14;	   /* local APIC version */
		e[3] = (uint8_t)(0x01 | (i == 0 ? 0x02 : 0)); /* enabled, BSP */
		put_le32(e + 4, 0x600); /* family 6 signature */
		put_le32(e + 8, 0x201); /* FPU | APIC */
	}
	e[0] = 1; /* bus 0: ISA */
	e[1] = 0;
	memcpy(e + 2, "ISA   ", 6);
	e += MPC_SHORT_SIZE;
	e[0] = 2; /* IOAPIC */
	e[1] = (uint8_t)ioapic_id;
	e[2] = 0x11;
	e[3] = 1; /* enabled */
	put_le32(e + 4, (uint32_t)X86_IOAPIC_ADDR);
	e += MPC_SHORT_SIZE;
	/* ISA IRQ n is IOAPIC pin n, matching KVM's default GSI routing. */
	for (unsigned irq = 0; irq < MP_IRQS; irq++, e += MPC_SHORT_SIZE) {
		e[0] = 3; /* I/O interrupt */
		e[1] = 0; /* INT */
		e[4] = 0; /* bus */
		e[5] = (uint8_t)irq;
		e[6] = (uint8_t)ioapic_id;
		e[7] = (uint8_t)irq;
	}
	e[0] = 4; /* local interrupt: ExtINT on LINT0 of every CPU */
	e[1] = 3;
	e[6] = 0xFF;
	e[7] = 0;
	e += MPC_SHORT_SIZE;
	e[0] = 4; /* NMI on LINT1 */
	e[1] = 1;
	e[6] = 0xFF;
	e[7] = 1;
	mpc[7] = mp_checksum(mpc, len);

	memcpy(fp, "_MP_", 4);
	put_le32(fp + 4, (uint32_t)mpc_addr);
	fp[8] = 1; /* length in 16-byte units */
	fp[9] = 4;
	fp[10] = mp_checksum(fp, 16);
	return 0;
}

/* Where the initrd goes: as high as allowed, page-aligned, above the kernel
 * and the low boot area; low_end is the end of RAM below the MMIO hole. */
static int place_initrd(uint64_t low_end, const struct x86_kernel *k,
			uint64_t size, uint64_t *addr,
			const struct kiln_log *log)
{
	uint64_t limit = low_end;
	uint64_t floor = (k->end + 4095) & ~4095ull;

	if ((uint64_t)k->initrd_addr_max + 1 < limit)
		limit = (uint64_t)k->initrd_addr_max + 1;
	if (size > limit || ((limit - size) & ~4095ull) < floor)
		return kiln_errorf(
			log, -E2BIG,
			"initrd is too big: %llu bytes, but only %llu "
			"fit between the kernel and the top of guest "
			"RAM; raise --memory",
			(unsigned long long)size,
			limit > floor ? (unsigned long long)(limit - floor)
				      : 0ull);
	*addr = (limit - size) & ~4095ull;
	return 0;
}

int x86_check_fit(const struct x86_kernel *k, uint64_t low_end,
		  uint64_t initrd_size, uint64_t *initrd_addr,
		  const struct kiln_log *log)
{
	uint64_t addr = 0;
	int r;

	if (initrd_addr)
		*initrd_addr = 0;
	if (low_end < 2 * X86_HIMEM_START)
		return kiln_errorf(log, -EINVAL,
				   "guest memory too small to boot");
	if (k->end > low_end)
		return kiln_errorf(
			log, -E2BIG,
			"kernel is too large for the memory size: it "
			"needs RAM up to %llu MiB, the guest has %llu "
			"MiB below 3 GiB; raise --memory",
			(unsigned long long)((k->end + (1 << 20) - 1) >> 20),
			(unsigned long long)(low_end >> 20));
	if (!initrd_size)
		return 0;
	r = place_initrd(low_end, k, initrd_size, &addr, log);
	if (r == 0 && initrd_addr)
		*initrd_addr = addr;
	return r;
}

static int load_kernel(const struct guest_mem *m, const struct x86_kernel *k,
		       const uint8_t *img)
{
	if (k->format == X86_KERNEL_BZIMAGE)
		return guest_mem_write(m, k->load_addr, img + k->setup_size,
				       k->payload_size);
	for (unsigned i = 0; i < k->nr_segs; i++) {
		const struct x86_elf_segment *s = &k->segs[i];
		uint8_t *dst = guest_mem_ptr(m, s->paddr, s->mem_size);

		if (!dst)
			return -EFAULT;
		memcpy(dst, img + s->file_offset, s->file_size);
		memset(dst + s->file_size, 0, s->mem_size - s->file_size);
	}
	return 0;
}

static int setup_zero_page(const struct guest_mem *m, const uint8_t *img,
			   const struct e820_entry *e820, int n_e820,
			   uint64_t initrd_addr, uint64_t initrd_size)
{
	uint8_t *zp = guest_mem_ptr(m, X86_ZERO_PAGE_ADDR, 4096);
	size_t hdr_end = BP_HEADER + img[BP_JUMP + 1];

	if (!zp)
		return -EFAULT;
	memset(zp, 0, 4096);
	/* The setup header is copied from the image, as the protocol says;
	 * its length is given by the jump at 0x200. */
	if (hdr_end > BP_E820_TABLE)
		hdr_end = BP_E820_TABLE;
	if (hdr_end < BZ_HEADER_MIN)
		hdr_end = BZ_HEADER_MIN;
	memcpy(zp + BP_SETUP_SECTS, img + BP_SETUP_SECTS,
	       hdr_end - BP_SETUP_SECTS);
	zp[BP_TYPE_OF_LOADER] = 0xFF;
	zp[BP_LOADFLAGS] = (uint8_t)((zp[BP_LOADFLAGS] | LOADFLAG_LOADED_HIGH) &
				     ~LOADFLAG_KEEP_SEGMENTS);
	put_le32(zp + BP_CMD_LINE_PTR, (uint32_t)X86_CMDLINE_ADDR);
	put_le32(zp + BP_EXT_CMD_LINE_PTR, 0);
	put_le32(zp + BP_RAMDISK_IMAGE, (uint32_t)initrd_addr);
	put_le32(zp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
	put_le32(zp + BP_RAMDISK_SIZE, (uint32_t)initrd_size);
	put_le32(zp + BP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));
	zp[BP_E820_ENTRIES] = (uint8_t)n_e820;
	memcpy(zp + BP_E820_TABLE, e820, (size_t)n_e820 * sizeof(*e820));
	return 0;
}

/* struct hvm_start_info (Xen public arch-x86/hvm/start_info.h), version 1. */
#define PVH_MAGIC 0x336ec578u

static int setup_pvh_start_info(const struct guest_mem *m,
				const struct e820_entry *e820, int n_e820,
				uint64_t initrd_addr, uint64_t initrd_size)
{
	uint8_t *si = guest_mem_ptr(m, X86_PVH_START_INFO_ADDR, 56);
	uint8_t *mod = guest_mem_ptr(m, X86_PVH_MODLIST_ADDR, 32);
	uint8_t *map =
		guest_mem_ptr(m, X86_PVH_MEMMAP_ADDR, (uint64_t)n_e820 * 24);

	if (!si || !mod || !map)
		return -EFAULT;
	memset(si, 0, 56);
	put_le32(si + 0, PVH_MAGIC);
	put_le32(si + 4, 1); /* version */
	put_le32(si + 8, 0); /* flags */
	if (initrd_size) {
		memset(mod, 0, 32);
		put_le64(mod + 0, initrd_addr);
		put_le64(mod + 8, initrd_size);
		put_le32(si + 12, 1); /* nr_modules */
		put_le64(si + 16, X86_PVH_MODLIST_ADDR);
	}
	put_le64(si + 24, X86_CMDLINE_ADDR);
	put_le64(si + 32, 0); /* rsdp_paddr: no ACPI */
	put_le64(si + 40, X86_PVH_MEMMAP_ADDR);
	put_le32(si + 48, (uint32_t)n_e820);
	for (int i = 0; i < n_e820; i++) {
		put_le64(map + i * 24, e820[i].addr);
		put_le64(map + i * 24 + 8, e820[i].size);
		put_le32(map + i * 24 + 16, e820[i].type);
		put_le32(map + i * 24 + 20, 0);
	}
	return 0;
}

int x86_setup_boot(const struct guest_mem *m, const struct x86_kernel *k,
		   const uint8_t *img, const uint8_t *initrd,
		   uint64_t initrd_size, const char *cmdline, unsigned ncpus,
		   struct x86_entry *entry, const struct kiln_log *log)
{
	struct e820_entry e820[E820_MAX_ENTRIES];
	uint64_t initrd_addr = 0, cmdline_len = strlen(cmdline);
	int n, r;

	r = x86_check_fit(k, guest_mem_low_end(m), initrd_size, &initrd_addr,
			  log);
	if (r < 0)
		return r;
	if (cmdline_len > k->cmdline_size)
		return kiln_errorf(log, -E2BIG,
				   "kernel command line is %llu bytes; this "
				   "kernel accepts at most %u",
				   (unsigned long long)cmdline_len,
				   k->cmdline_size);
	r = load_kernel(m, k, img);
	if (r < 0)
		return r;
	if (initrd_size) {
		r = guest_mem_write(m, initrd_addr, initrd, initrd_size);
		if (r < 0)
			return r;
	}
	r = guest_mem_write(m, X86_CMDLINE_ADDR, cmdline, cmdline_len + 1);
	if (r < 0)
		return r;
	n = x86_build_e820(m, e820, E820_MAX_ENTRIES);
	if (n < 0)
		return kiln_errorf(log, n, "cannot build the e820 map");
	r = x86_build_gdt(m);
	if (r == 0)
		r = x86_build_page_tables(m);
	if (r == 0)
		r = x86_build_mptable(m, ncpus);
	if (r < 0)
		return kiln_errorf(log, r, "cannot write boot tables: %s",
				   strerror(-r));

	memset(entry, 0, sizeof(*entry));
	if (k->format == X86_KERNEL_BZIMAGE) {
		r = setup_zero_page(m, img, e820, n, initrd_addr, initrd_size);
		entry->rip = k->load_addr + 0x200;
		entry->rsi = X86_ZERO_PAGE_ADDR;
		entry->long_mode = 1;
	} else {
		r = setup_pvh_start_info(m, e820, n, initrd_addr, initrd_size);
		entry->rip = k->pvh_entry;
		entry->rbx = X86_PVH_START_INFO_ADDR;
		entry->long_mode = 0;
	}
	if (r < 0)
		return kiln_errorf(log, r, "cannot write boot parameters");
	return 0;
}
