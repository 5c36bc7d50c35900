/* SPDX-License-Identifier: MIT */
/*
 * virtio_console: drive kiln's virtio-console (device 0) far enough to
 * send one line through its transmit queue (queue 1), polling the used
 * ring for completion.
 *
 * Output: "VCON hello over virtio" on the virtio console; on the UART
 * "FAIL ..." lines and "RESULT PASS|FAIL"; exit 0/1 via debug-exit.
 */
#include "virtio_lib.h"

#define VCON_DEV 0
#define VCON_TXQ 1
#define VCON_QSIZE 8

static struct vring_mem txring;
static struct vq txq;
static const char msg[] = "VCON hello over virtio\n";

void guest_main(const struct entry_state *es)
{
	uint64_t base = VIRTIO_DEV_BASE(VCON_DEV);
	struct vbuf b = { (uintptr_t)msg, sizeof(msg) - 1, false };
	uint32_t id = 0xffff, len = 0;
	bool done = false;

	(void)es;
	if (!virtio_probe(base, VIRTIO_ID_CONSOLE, "VCON") ||
	    !virtio_negotiate(base, 0, NULL, "VCON") ||
	    !vq_setup(&txq, base, VCON_TXQ, &txring, VCON_QSIZE, "VCON"))
		finish(false);
	virtio_driver_ok(base);
	if (vmmio_rd(base, VMMIO_STATUS) & VSTAT_NEEDS_RESET) {
		put_fail("device needs reset after DRIVER_OK",
			 vmmio_rd(base, VMMIO_STATUS));
		finish(false);
	}
	uint16_t head = vq_add(&txq, &b, 1);
	vq_kick(&txq);
	for (unsigned i = 0; i < 2000000 && !done; i++) {
		done = vq_get_used(&txq, &id, &len);
		if (!done)
			cpu_relax();
	}
	if (!done) {
		put_fail("transmit buffer never returned",
			 vmmio_rd(base, VMMIO_STATUS));
		finish(false);
	}
	if (id != head) {
		put_fail("used id", id);
		finish(false);
	}
	finish(true);
}
