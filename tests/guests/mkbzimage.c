/* SPDX-License-Identifier: MIT */
/*
 * mkbzimage: wrap a flat protected-mode payload into a Linux bzImage file
 * for the 64-bit boot protocol (Documentation/arch/x86/boot.rst).
 *
 *   mkbzimage [--setup-sects N] [--init-size N] [--cmdline-size N]
 *             PAYLOAD.bin OUT.bzimage
 *
 * The payload must be linked to run at 0x100000 with its 64-bit entry point
 * at offset 0x200.  The output is (setup_sects + 1) * 512 bytes of setup
 * (boot sector + setup header + a real-mode stub that just halts), then the
 * payload zero-padded to a multiple of 16 bytes (syssize * 16).
 *
 * Numbers accept C syntax (0x.. hex).  Defaults: setup_sects 4,
 * cmdline_size 2047, init_size = padded payload size rounded up to 4 KiB.
 * init_size must cover everything the payload needs from its load address,
 * .bss included (the guest build passes its linker symbol _init_size).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_ADDR 0x100000u
#define ENTRY64_OFFSET 0x200u
#define KERNEL_ALIGNMENT 0x200000u
#define BOOT_PROTOCOL_VERSION 0x020c /* first with xloadflags/XLF_KERNEL_64 */
#define SETUP_HDR_END 0x268          /* end of the fields we fill (init_size..handover_offset) */
#define STUB16_OFFSET 0x270          /* real-mode stub, after the header */
#define VERSION_STR_OFFSET 0x280

#define LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x0001

static const char *prog = "mkbzimage";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [--setup-sects N] [--init-size N] [--cmdline-size N] "
		"PAYLOAD.bin OUT.bzimage\n",
		prog);
	exit(2);
}

static uint64_t parse_num(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-') {
		fprintf(stderr, "%s: %s: bad number '%s'\n", prog, opt, s);
		exit(2);
	}
	return v;
}

static void put8(uint8_t *b, size_t off, uint8_t v)
{
	b[off] = v;
}
static void put16(uint8_t *b, size_t off, uint16_t v)
{
	b[off] = (uint8_t)v;
	b[off + 1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *b, size_t off, uint32_t v)
{
	put16(b, off, (uint16_t)v);
	put16(b, off + 2, (uint16_t)(v >> 16));
}
static void put64(uint8_t *b, size_t off, uint64_t v)
{
	put32(b, off, (uint32_t)v);
	put32(b, off + 4, (uint32_t)(v >> 32));
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		exit(1);
	}
	size_t cap = 1 << 16, n = 0;
	uint8_t *buf = malloc(cap);
	for (;;) {
		if (!buf) {
			fprintf(stderr, "%s: out of memory\n", prog);
			exit(1);
		}
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap)
			break;
		cap *= 2;
		buf = realloc(buf, cap);
	}
	if (ferror(f)) {
		fprintf(stderr, "%s: %s: read error\n", prog, path);
		exit(1);
	}
	fclose(f);
	*len = n;
	return buf;
}

int main(int argc, char **argv)
{
	uint64_t setup_sects = 4, cmdline_size = 2047, init_size = 0;
	const char *in = NULL, *out = NULL;

	if (argc > 0 && argv[0])
		prog = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--setup-sects") || !strcmp(a, "--init-size") ||
		    !strcmp(a, "--cmdline-size")) {
			if (i + 1 >= argc)
				usage();
			uint64_t v = parse_num(a, argv[++i]);
			if (!strcmp(a, "--setup-sects"))
				setup_sects = v;
			else if (!strcmp(a, "--init-size"))
				init_size = v;
			else
				cmdline_size = v;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage();
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "%s: unknown option %s\n", prog, a);
			usage();
		} else if (!in) {
			in = a;
		} else if (!out) {
			out = a;
		} else {
			usage();
		}
	}
	if (!in || !out)
		usage();

	if (setup_sects < 1 || setup_sects > 255) {
		/* 0 would mean "4" to old loaders; the header needs >= 1 sector. */
		fprintf(stderr, "%s: --setup-sects must be 1..255\n", prog);
		return 2;
	}
	if (cmdline_size == 0 || cmdline_size > UINT32_MAX) {
		fprintf(stderr, "%s: --cmdline-size must be 1..0xffffffff\n", prog);
		return 2;
	}

	size_t plen;
	uint8_t *payload = read_file(in, &plen);
	if (plen <= ENTRY64_OFFSET) {
		fprintf(stderr,
			"%s: %s: payload is %zu bytes, but the 64-bit entry point is at offset 0x%x\n",
			prog, in, plen, ENTRY64_OFFSET);
		return 1;
	}
	uint64_t padded = ((uint64_t)plen + 15) & ~(uint64_t)15;
	if (padded / 16 > UINT32_MAX || padded > UINT32_MAX) {
		fprintf(stderr, "%s: %s: payload too large\n", prog, in);
		return 1;
	}
	if (init_size == 0)
		init_size = (padded + 4095) & ~(uint64_t)4095;
	if (init_size < padded) {
		fprintf(stderr, "%s: --init-size 0x%" PRIx64 " is smaller than the payload (0x%" PRIx64 ")\n",
			prog, init_size, padded);
		return 1;
	}
	if (init_size > UINT32_MAX) {
		fprintf(stderr, "%s: --init-size too large\n", prog);
		return 1;
	}

	size_t setup_len = (size_t)(setup_sects + 1) * 512;
	uint8_t *setup = calloc(1, setup_len);
	if (!setup) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}

	/* Setup header (offsets into the file == offsets into the zero page). */
	put8(setup, 0x1f1, (uint8_t)setup_sects);
	put16(setup, 0x1f2, 0);                      /* root_flags */
	put32(setup, 0x1f4, (uint32_t)(padded / 16)); /* syssize */
	put16(setup, 0x1f8, 0);                      /* ram_size (obsolete) */
	put16(setup, 0x1fa, 0xffff);                 /* vid_mode: normal */
	put16(setup, 0x1fc, 0);                      /* root_dev */
	put16(setup, 0x1fe, 0xaa55);                 /* boot_flag */
	/* 0x200: jump over the header to the real-mode stub. */
	put8(setup, 0x200, 0xeb);
	put8(setup, 0x201, (uint8_t)(STUB16_OFFSET - 0x202));
	memcpy(setup + 0x202, "HdrS", 4);
	put16(setup, 0x206, BOOT_PROTOCOL_VERSION);
	put32(setup, 0x208, 0);                      /* realmode_swtch */
	put16(setup, 0x20c, 0x1000);                 /* start_sys_seg (obsolete) */
	put16(setup, 0x20e, VERSION_STR_OFFSET - 0x200); /* kernel_version */
	put8(setup, 0x210, 0);                       /* type_of_loader: loader fills */
	put8(setup, 0x211, LOADED_HIGH);             /* loadflags */
	put16(setup, 0x212, 0x8000);                 /* setup_move_size */
	put32(setup, 0x214, LOAD_ADDR);              /* code32_start */
	put32(setup, 0x218, 0);                      /* ramdisk_image */
	put32(setup, 0x21c, 0);                      /* ramdisk_size */
	put32(setup, 0x220, 0);                      /* bootsect_kludge */
	put16(setup, 0x224, 0);                      /* heap_end_ptr */
	put8(setup, 0x226, 0);                       /* ext_loader_ver */
	put8(setup, 0x227, 0);                       /* ext_loader_type */
	put32(setup, 0x228, 0);                      /* cmd_line_ptr */
	put32(setup, 0x22c, 0x7fffffff);             /* initrd_addr_max */
	put32(setup, 0x230, KERNEL_ALIGNMENT);       /* kernel_alignment */
	put8(setup, 0x234, 0);                       /* relocatable_kernel */
	put8(setup, 0x235, 21);                      /* min_alignment: 2 MiB */
	put16(setup, 0x236, XLF_KERNEL_64);          /* xloadflags */
	put32(setup, 0x238, (uint32_t)cmdline_size); /* cmdline_size */
	put32(setup, 0x23c, 0);                      /* hardware_subarch: PC */
	put64(setup, 0x240, 0);                      /* hardware_subarch_data */
	put32(setup, 0x248, 0);                      /* payload_offset: not compressed */
	put32(setup, 0x24c, 0);                      /* payload_length */
	put64(setup, 0x250, 0);                      /* setup_data */
	put64(setup, 0x258, LOAD_ADDR);              /* pref_address */
	put32(setup, 0x260, (uint32_t)init_size);    /* init_size */
	put32(setup, 0x264, 0);                      /* handover_offset: no EFI */

	/* Real-mode entry (16-bit boot protocol) is unsupported: cli; hlt; jmp back to the hlt. */
	static const uint8_t stub16[] = { 0xfa, 0xf4, 0xeb, 0xfd };
	memcpy(setup + STUB16_OFFSET, stub16, sizeof(stub16));
	static const char version[] = "kiln test guest";
	memcpy(setup + VERSION_STR_OFFSET, version, sizeof(version));

	FILE *f = fopen(out, "wb");
	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", prog, out, strerror(errno));
		return 1;
	}
	static const uint8_t zeros[16];
	int bad = fwrite(setup, 1, setup_len, f) != setup_len ||
		  fwrite(payload, 1, plen, f) != plen ||
		  fwrite(zeros, 1, (size_t)(padded - plen), f) != padded - plen;
	if (fclose(f) != 0)
		bad = 1;
	if (bad) {
		fprintf(stderr, "%s: %s: write error\n", prog, out);
		remove(out);
		return 1;
	}
	free(setup);
	free(payload);
	return 0;
}
