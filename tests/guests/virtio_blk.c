/* SPDX-License-Identifier: MIT */
/*
 * virtio_blk: a small interrupt-driven driver for the virtio-blk disk at
 * virtio device index 2 (kiln's first --disk).
 *
 * Negotiates VERSION_1 (+ FLUSH, + RO when offered), sets up queue 0 with
 * 8 entries, then:
 *   writable disk:  OUT sector 1 <- pattern, FLUSH, IN sectors 0..1,
 *                   sector 1 must read back as the pattern;
 *   read-only disk: OUT sector 1 must complete with VIRTIO_BLK_S_IOERR,
 *                   then FLUSH and IN sectors 0..1 must succeed.
 * Every completion must arrive with an interrupt (the CPU waits in
 * `sti; hlt`; a 10 ms LAPIC timer bounds each wait to 3 s).
 *
 * Sector 1 pattern: byte i = (i * 7 + 0x5a) & 0xff, i = 0..511.
 *
 * Output:
 *   VBLK sector0 <first 16 bytes of sector 0, lowercase hex, no spaces>
 *   VBLK ro-refused                   (read-only disk only)
 *   VBLK capacity=<sectors> irqs=<used-buffer interrupts>   (decimal)
 *   VBLK ok | FAIL ... lines
 *   RESULT PASS | RESULT FAIL         exit 0 / 1
 */
#include "virtio_lib.h"

#define BLK_DEV 2
#define QSIZE 8
#define WAIT_TICKS 300

static struct vring_mem ring;
static struct vq q;
static struct virtio_blk_req_hdr hdr __attribute__((aligned(16)));
static volatile uint8_t status_byte;
static uint8_t wbuf[512] __attribute__((aligned(512)));
static uint8_t rbuf[1024] __attribute__((aligned(512)));
static bool all_ok = true;

static void fail(const char *what, uint64_t got)
{
	all_ok = false;
	put_fail(what, got);
}

struct wait_arg {
	struct vq *q;
	uint32_t irqs_before;
};

static bool completed_with_irq(void *p)
{
	struct wait_arg *a = p;

	return vq_has_used(a->q) && virq_used != a->irqs_before;
}

/* Runs one request and waits for it; returns the status byte, or -1 if it
 * did not complete properly (FAIL already printed). */
static int blk_request(uint32_t type, uint64_t sector, void *data,
		       uint32_t len, uint32_t *used_len, const char *what)
{
	struct vbuf b[3];
	unsigned n = 0;
	struct wait_arg a = { &q, virq_used };
	uint32_t id, ulen;
	uint16_t head;

	hdr.type = type;
	hdr.reserved = 0;
	hdr.sector = sector;
	status_byte = 0xff;
	b[n++] = (struct vbuf){ (uintptr_t)&hdr, sizeof(hdr), false };
	if (len)
		b[n++] = (struct vbuf){ (uintptr_t)data, len,
					type == VIRTIO_BLK_T_IN };
	b[n++] = (struct vbuf){ (uintptr_t)&status_byte, 1, true };
	head = vq_add(&q, b, n);
	vq_kick(&q);
	if (!virtio_wait(completed_with_irq, &a, WAIT_TICKS)) {
		uart_puts("FAIL ");
		uart_puts(what);
		if (vq_has_used(&q))
			uart_puts(": completed without an interrupt");
		else
			uart_puts(": no completion within 3 s");
		uart_puts(" (status register ");
		uart_puthex(vmmio_rd(q.base, VMMIO_STATUS));
		uart_puts(", timer ticks ");
		uart_putdec(timer_ticks);
		uart_puts(")\n");
		all_ok = false;
		return -1;
	}
	vq_get_used(&q, &id, &ulen);
	if (id != head) {
		put_fail2(what, "used id", id);
		all_ok = false;
		return -1;
	}
	if (used_len)
		*used_len = ulen;
	return status_byte;
}

static uint8_t pattern(unsigned i)
{
	return (uint8_t)(i * 7 + 0x5a);
}

static uint64_t read_capacity(uint64_t base)
{
	uint32_t gen, lo, hi;
	unsigned tries = 0;

	do {
		gen = vmmio_rd(base, VMMIO_CONFIG_GENERATION);
		lo = vmmio_rd(base, VMMIO_CONFIG + 0);
		hi = vmmio_rd(base, VMMIO_CONFIG + 4);
	} while (gen != vmmio_rd(base, VMMIO_CONFIG_GENERATION) && ++tries < 10);
	return (uint64_t)hi << 32 | lo;
}

void guest_main(const struct entry_state *es)
{
	uint64_t base = VIRTIO_DEV_BASE(BLK_DEV), offered = 0, capacity;
	uint32_t ulen = 0;
	bool ro;
	int st;

	(void)es;
	if (!virtio_probe(base, VIRTIO_ID_BLOCK, "VBLK"))
		finish(false);
	virtio_irq_init(BLK_DEV);
	if (!virtio_timer_check()) {
		put_fail("LAPIC timer does not tick (waits would be unbounded); ticks",
			 timer_ticks);
		finish(false);
	}
	if (!virtio_negotiate(base, FEAT(VIRTIO_BLK_F_FLUSH) | FEAT(VIRTIO_BLK_F_RO),
			      &offered, "VBLK"))
		finish(false);
	ro = offered & FEAT(VIRTIO_BLK_F_RO);
	if (!(offered & FEAT(VIRTIO_BLK_F_FLUSH)))
		fail("FLUSH not offered", offered);
	capacity = read_capacity(base);
	if (capacity < 2)
		fail("capacity below 2 sectors", capacity);
	if (!vq_setup(&q, base, 0, &ring, QSIZE, "VBLK"))
		finish(false);
	virtio_driver_ok(base);
	if (vmmio_rd(base, VMMIO_STATUS) != (VSTAT_ACKNOWLEDGE | VSTAT_DRIVER |
					      VSTAT_FEATURES_OK | VSTAT_DRIVER_OK)) {
		put_fail("status after DRIVER_OK", vmmio_rd(base, VMMIO_STATUS));
		finish(false);
	}

	/* OUT sector 1 */
	for (unsigned i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = pattern(i);
	st = blk_request(VIRTIO_BLK_T_OUT, 1, wbuf, sizeof(wbuf), &ulen, "write");
	if (ro) {
		if (st == VIRTIO_BLK_S_IOERR)
			uart_puts("VBLK ro-refused\n");
		else if (st >= 0)
			fail("write to read-only disk: status", (uint64_t)st);
	} else if (st != VIRTIO_BLK_S_OK && st >= 0) {
		fail("write: status", (uint64_t)st);
	}
	if (st >= 0 && ulen != 1)
		fail("write: used length", ulen);

	/* FLUSH */
	st = blk_request(VIRTIO_BLK_T_FLUSH, 0, NULL, 0, &ulen, "flush");
	if (st >= 0 && st != VIRTIO_BLK_S_OK)
		fail("flush: status", (uint64_t)st);

	/* IN sectors 0..1 */
	memset(rbuf, 0xee, sizeof(rbuf));
	st = blk_request(VIRTIO_BLK_T_IN, 0, rbuf, sizeof(rbuf), &ulen, "read");
	if (st >= 0 && st != VIRTIO_BLK_S_OK)
		fail("read: status", (uint64_t)st);
	if (st == VIRTIO_BLK_S_OK) {
		if (ulen != sizeof(rbuf) + 1)
			fail("read: used length", ulen);
		uart_puts("VBLK sector0 ");
		put_hex_bytes(rbuf, 16);
		uart_putc('\n');
		if (!ro) {
			for (unsigned i = 0; i < 512; i++) {
				if (rbuf[512 + i] != pattern(i)) {
					fail("sector 1 differs from what was written at byte",
					     i);
					break;
				}
			}
		}
	}
	if (vmmio_rd(base, VMMIO_STATUS) & VSTAT_NEEDS_RESET)
		fail("device needs reset", vmmio_rd(base, VMMIO_STATUS));
	if (virq_config)
		fail("config-change interrupts", virq_config);

	uart_puts("VBLK capacity=");
	uart_putdec(capacity);
	uart_puts(" irqs=");
	uart_putdec(virq_used);
	uart_putc('\n');
	if (virq_used < 3)
		fail("fewer used-buffer interrupts than requests", virq_used);
	if (all_ok)
		uart_puts("VBLK ok\n");
	finish(all_ok);
}
