/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: a snapshot's state file as kiln reads it at restore
 * (anyone may hand kiln a snapshot directory). The input's CRC is fixed
 * up first so the fuzzer reaches past the checksum: then the records are
 * walked and each payload is fed to the readers that parse it on restore:
 * a virtio device's transport and queue state (a console on fake guest
 * memory, no KVM), the UART's, and the plain number and string readers.
 * No crash, no read outside the buffer, a queue never accepted outside
 * guest RAM.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "devices/serial8250.h"
#include "mem/guest_mem.h"
#include "util/snapshot_io.h"
#include "virtio/console.h"
#include "virtio/mmio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_output(void *opaque, const uint8_t *buf, size_t len)
{
	(void)opaque, (void)buf, (void)len;
}

static void no_irq(void *opaque, int level)
{
	(void)opaque, (void)level;
}

static const struct serial8250_ops uart_ops = {
	.output = no_output,
	.set_irq = no_irq,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t ram[1 << 16];
	struct snapshot_reader body, p;
	struct guest_mem mem;
	const char *why;
	uint32_t tag, flags, crc;
	uint8_t *copy;
	int r;

	if (size > (1u << 20))
		return 0;
	copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	if (size >= SNAPSHOT_HDR_SIZE + 20) {
		crc = (uint32_t)crc32(0L, copy, (uInt)(size - 4));
		for (int i = 0; i < 4; i++)
			copy[size - 4 + i] = (uint8_t)(crc >> (8 * i));
	}
	guest_mem_init(&mem, ram, sizeof(ram));
	if (snapshot_open(copy, size, &body, &why) == 0) {
		while ((r = sr_record(&body, &tag, &flags, &p)) == 1) {
			unsigned kind = tag == SNAP_DEVICE   ? 0
					: tag == SNAP_SERIAL ? 1
							     : tag % 3;

			if (tag == SNAP_DEVICE)
				(void)sr_u32(&p); /* the device's index */
			switch (kind) {
			case 0: {
				struct virtio_mmio t;
				struct virtio_console con;

				memset(&t, 0, sizeof(t));
				virtio_console_init(&con, &t.dev, no_output,
						    NULL);
				if (virtio_mmio_init(&t, &mem, NULL, 0xd0000000,
						     5, -1) == 0) {
					(void)virtio_mmio_restore(&t, &p);
					for (unsigned q = 0; q < 2; q++)
						if (t.dev.vqs[q].ready &&
						    !guest_mem_valid(
							    &mem,
							    t.dev.vqs[q]
								    .desc_gpa,
							    16))
							abort();
				}
				virtio_mmio_destroy(&t, -1);
				break;
			}
			case 1: {
				struct serial8250 s;

				serial8250_init(&s, &uart_ops, NULL);
				(void)serial8250_restore(&s, &p);
				serial8250_destroy(&s);
				break;
			}
			default: {
				char s[64];

				while (!p.bad && p.off < p.len) {
					(void)sr_u64(&p);
					sr_str(&p, s, sizeof(s));
				}
				break;
			}
			}
		}
	}
	free(copy);
	return 0;
}
