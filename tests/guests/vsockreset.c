/* SPDX-License-Identifier: MIT */
/*
 * vsockreset: a virtio-vsock driver just far enough to see what a restored
 * clone's vsock device owes it. Device index 2 (the first configured
 * device); queues rx, tx and event set up, one 8-byte buffer posted on the
 * event queue. Then it prints "VSOCK ready" and polls the event queue:
 * an event there prints "VSOCK event id=<n>" and exits 0 (id 0 is
 * TRANSPORT_RESET, which only a restore sends).
 */
#include "virtio_lib.h"

#define VSOCK_DEV 2
#define ID_VSOCK 19
#define QSIZE 8

static struct vring_mem rings[3];
static struct vq qs[3];
static volatile uint32_t event[2] __attribute__((aligned(8)));

void guest_main(const struct entry_state *es)
{
	uint64_t base = VIRTIO_DEV_BASE(VSOCK_DEV);
	struct vbuf b = {(uintptr_t)event, sizeof(event), true};
	uint32_t id, len;

	(void)es;
	event[0] = event[1] = 0xffffffffu;
	if (!virtio_probe(base, ID_VSOCK, "VSOCK") ||
	    !virtio_negotiate(base, 0, NULL, "VSOCK"))
		finish(false);
	for (unsigned q = 0; q < 3; q++)
		if (!vq_setup(&qs[q], base, q, &rings[q], QSIZE, "VSOCK"))
			finish(false);
	virtio_driver_ok(base);
	vq_add(&qs[2], &b, 1);
	vq_kick(&qs[2]);
	uart_puts("VSOCK ready\n");
	for (;;) {
		if (vq_get_used(&qs[2], &id, &len)) {
			uart_puts("VSOCK event id=");
			uart_putdec(event[0]);
			uart_puts(" len=");
			uart_putdec(len);
			uart_putc('\n');
			finish(event[0] == 0 && len == 4);
		}
		cpu_relax();
	}
}
