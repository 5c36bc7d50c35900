/* SPDX-License-Identifier: MIT */
/*
 * virtio_hostile: a misbehaving driver for the virtio-blk disk at virtio
 * device index 2 (kiln's first --disk). The VMM must survive each step and
 * the device must behave as virtio 1.2 allows:
 *
 *  (a) a read whose data descriptor lies outside guest RAM (0x7fff0000000)
 *      -> device sets DEVICE_NEEDS_RESET (status bit 64) and raises a
 *      configuration-change interrupt                 "HOSTILE needs-reset ok"
 *  (b) reset, re-initialise, complete one read, then write QueueNum (4) and
 *      QueueDesc (a decoy table) after DRIVER_OK: 8 further reads must all
 *      complete through the ORIGINAL ring (size 8, original descriptors;
 *      decoy status bytes untouched)                  "HOSTILE frozen ok"
 *  (c) a descriptor whose NEXT points to itself -> NEEDS_RESET + config
 *      interrupt again                                "HOSTILE loop ok"
 *  (d) reset, re-initialise, a normal read of sector 0 succeeds and matches
 *      the one from (b)                               "HOSTILE recovered ok"
 *
 * Then "RESULT PASS" and exit 0 (FAIL lines, "RESULT FAIL", exit 1 on any
 * failed check). Waits are interrupt driven and bounded (3 s each).
 */
#include "virtio_lib.h"

#define BLK_DEV 2
#define QSIZE 8
#define WAIT_TICKS 300
#define OUTSIDE_RAM 0x7fff0000000ull

static struct vring_mem ring, decoy;
static struct vq q;
static struct virtio_blk_req_hdr hdr __attribute__((aligned(16)));
static volatile uint8_t status_byte;
static volatile uint8_t decoy_status[VQ_MAX];
static uint8_t buf[512] __attribute__((aligned(512)));
static uint8_t sector0[16];
static uint64_t base = VIRTIO_DEV_BASE(BLK_DEV);

static __attribute__((noreturn)) void die(const char *what, uint64_t got)
{
	put_fail(what, got);
	finish(false);
}

static void setup(const char *when)
{
	uint32_t st;

	if (!virtio_negotiate(base, 0, NULL, "HOSTILE") ||
	    !vq_setup(&q, base, 0, &ring, QSIZE, "HOSTILE")) {
		uart_puts("FAIL device setup ");
		uart_puts(when);
		uart_putc('\n');
		finish(false);
	}
	virtio_driver_ok(base);
	st = vmmio_rd(base, VMMIO_STATUS);
	if (st != (VSTAT_ACKNOWLEDGE | VSTAT_DRIVER | VSTAT_FEATURES_OK |
		   VSTAT_DRIVER_OK))
		die("status after DRIVER_OK", st);
}

struct wait_arg {
	struct vq *q;
	uint32_t before;
};

static bool completed_with_irq(void *p)
{
	struct wait_arg *a = p;

	return vq_has_used(a->q) && virq_used != a->before;
}

static bool needs_reset_with_irq(void *p)
{
	struct wait_arg *a = p;

	return virq_config != a->before &&
	       (vmmio_rd(base, VMMIO_STATUS) & VSTAT_NEEDS_RESET);
}

/* Reads sector 0 into buf through the normal path; dies on any problem. */
static void good_read(const char *what)
{
	struct vbuf b[3] = {
		{ (uintptr_t)&hdr, sizeof(hdr), false },
		{ (uintptr_t)buf, sizeof(buf), true },
		{ (uintptr_t)&status_byte, 1, true },
	};
	struct wait_arg a = { &q, virq_used };
	uint32_t id, len;
	uint16_t head;

	hdr = (struct virtio_blk_req_hdr){ VIRTIO_BLK_T_IN, 0, 0 };
	status_byte = 0xff;
	memset(buf, 0xee, sizeof(buf));
	head = vq_add(&q, b, 3);
	vq_kick(&q);
	if (!virtio_wait(completed_with_irq, &a, WAIT_TICKS)) {
		uart_puts("FAIL ");
		uart_puts(what);
		uart_puts(vq_has_used(&q) ? ": completed without an interrupt"
					  : ": no completion within 3 s");
		uart_puts(" (status register ");
		uart_puthex(vmmio_rd(base, VMMIO_STATUS));
		uart_puts(")\n");
		finish(false);
	}
	vq_get_used(&q, &id, &len);
	if (id != head || len != sizeof(buf) + 1 || status_byte != 0) {
		uart_puts("FAIL ");
		uart_puts(what);
		uart_puts(": used id ");
		uart_puthex(id);
		uart_puts(" (head ");
		uart_puthex(head);
		uart_puts(") len ");
		uart_puthex(len);
		uart_puts(" status byte ");
		uart_puthex(status_byte);
		uart_putc('\n');
		finish(false);
	}
}

static void expect_needs_reset(const char *what)
{
	struct wait_arg a = { &q, virq_config };

	if (!virtio_wait(needs_reset_with_irq, &a, WAIT_TICKS)) {
		uart_puts("FAIL ");
		uart_puts(what);
		uart_puts(": no NEEDS_RESET with a config interrupt within 3 s (config irqs ");
		uart_putdec(virq_config - a.before);
		uart_puts(", status register ");
		uart_puthex(vmmio_rd(base, VMMIO_STATUS));
		uart_puts(")\n");
		finish(false);
	}
}

static void reset_device(const char *what)
{
	uint32_t v;

	if (!virtio_reset(base)) {
		put_fail2(what, "status does not read 0 after reset",
			 vmmio_rd(base, VMMIO_STATUS));
		finish(false);
	}
	if ((v = vmmio_rd(base, VMMIO_INTERRUPT_STATUS)) != 0) {
		put_fail2(what, "InterruptStatus not 0 after reset", v);
		finish(false);
	}
}

void guest_main(const struct entry_state *es)
{
	(void)es;
	if (!virtio_probe(base, VIRTIO_ID_BLOCK, "HOSTILE"))
		finish(false);
	virtio_irq_init(BLK_DEV);
	if (!virtio_timer_check()) {
		put_fail("LAPIC timer does not tick (waits would be unbounded); ticks",
			 timer_ticks);
		finish(false);
	}

	/* (a) data buffer outside guest RAM */
	setup("(a)");
	{
		struct vbuf b[3] = {
			{ (uintptr_t)&hdr, sizeof(hdr), false },
			{ OUTSIDE_RAM, 512, true },
			{ (uintptr_t)&status_byte, 1, true },
		};

		hdr = (struct virtio_blk_req_hdr){ VIRTIO_BLK_T_IN, 0, 0 };
		status_byte = 0xff;
		vq_add(&q, b, 3);
		vq_kick(&q);
		expect_needs_reset("(a) descriptor outside RAM");
		if (status_byte != 0xff)
			die("(a) status byte written for a rejected chain",
			    status_byte);
		uart_puts("HOSTILE needs-reset ok\n");
	}

	/* (b) queue registers are frozen after DRIVER_OK */
	reset_device("(b)");
	setup("(b)");
	good_read("(b) first read");
	memcpy(sector0, buf, sizeof(sector0));
	{
		memset(&decoy, 0, sizeof(decoy));
		for (unsigned i = 0; i < VQ_MAX; i++) {
			decoy_status[i] = 0xff;
			decoy.desc[i] = (struct vring_desc){
				(uintptr_t)&decoy_status[i], 1, VRING_DESC_F_WRITE, 0
			};
		}
		/* a driver may not clear status bits (virtio 1.2, 2.1.1):
		 * dropping DRIVER_OK without a reset must not unfreeze */
		vmmio_wr(base, VMMIO_STATUS,
			 VSTAT_ACKNOWLEDGE | VSTAT_DRIVER | VSTAT_FEATURES_OK);
		if (!(vmmio_rd(base, VMMIO_STATUS) & VSTAT_DRIVER_OK))
			die("(b) DRIVER_OK cleared without a reset, status",
			    vmmio_rd(base, VMMIO_STATUS));
		vmmio_wr(base, VMMIO_QUEUE_SEL, 0);
		vmmio_wr(base, VMMIO_QUEUE_READY, 0);
		vmmio_wr(base, VMMIO_QUEUE_NUM, 4);
		vmmio_wr(base, VMMIO_QUEUE_DESC_LOW, (uint32_t)(uintptr_t)decoy.desc);
		vmmio_wr(base, VMMIO_QUEUE_DESC_HIGH, 0);
		if (vmmio_rd(base, VMMIO_QUEUE_READY) != 1)
			die("(b) QueueReady after the writes",
			    vmmio_rd(base, VMMIO_QUEUE_READY));
		/* avail idx 1..8: slots 4..7 differ between sizes 8 and 4 */
		for (unsigned i = 0; i < 8; i++) {
			good_read("(b) read after QueueNum/QueueDesc writes");
			if (!mem_eq(buf, sector0, sizeof(sector0)))
				die("(b) sector 0 changed between reads", i);
		}
		for (unsigned i = 0; i < VQ_MAX; i++)
			if (decoy_status[i] != 0xff)
				die("(b) device used the decoy descriptor table, entry",
				    i);
		uart_puts("HOSTILE frozen ok\n");
	}

	/* (c) a descriptor chain that loops onto itself */
	{
		uint16_t d = q.next_desc;

		q.r->desc[d] = (struct vring_desc){
			(uintptr_t)&hdr, sizeof(hdr), VRING_DESC_F_NEXT, d
		};
		hdr = (struct virtio_blk_req_hdr){ VIRTIO_BLK_T_IN, 0, 0 };
		status_byte = 0xff;
		vq_publish(&q, d);
		vq_kick(&q);
		expect_needs_reset("(c) descriptor loop");
		uart_puts("HOSTILE loop ok\n");
	}

	/* (d) the device works again after a reset */
	reset_device("(d)");
	setup("(d)");
	good_read("(d) read after reset");
	if (!mem_eq(buf, sector0, sizeof(sector0)))
		die("(d) sector 0 differs from the earlier read", 0);
	uart_puts("HOSTILE recovered ok\n");
	finish(true);
}
