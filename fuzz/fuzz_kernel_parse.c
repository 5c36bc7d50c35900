/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: kernel image parsing and loading. A user hands kiln an
 * arbitrary file as --kernel; x86_parse_kernel must reject anything malformed
 * and x86_setup_boot must never write outside guest RAM (ASan watches the
 * fake RAM buffer's bounds).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/boot.h"

#define FAKE_RAM (32u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	struct guest_mem mem;
	struct x86_kernel k;
	struct x86_entry entry;
	static const uint8_t initrd[64];

	if (!ram)
		ram = malloc(FAKE_RAM);
	if (!ram)
		return 0;
	if (x86_parse_kernel(data, size, &k, NULL) < 0)
		return 0;
	guest_mem_init(&mem, ram, FAKE_RAM);
	x86_setup_boot(&mem, &k, data, initrd, sizeof(initrd), "console=ttyS0", 2,
		       &entry, NULL);
	return 0;
}
