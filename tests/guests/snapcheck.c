/* SPDX-License-Identifier: MIT */
/*
 * snapcheck: a guest to snapshot in the middle of its work. Devices: the
 * virtio console (index 0) and a read-only virtio-blk disk (index 2, the
 * first --disk). At start it takes a nonce from the TSC into RAM; then,
 * every 10 LAPIC timer ticks (100 ms), one round:
 *
 *   SNAP round=<n> nonce=<hex> lapic=<ticks> pit=<ticks> blk=<reads>  (UART)
 *   VSNAP round=<n>                              (virtio-console transmitq)
 *   one 512-byte read of sector n % 8, completed with an interrupt
 *
 * The LAPIC timer and the PIT (100 Hz, IOAPIC pin 0) both interrupt; a
 * round whose counters did not move prints "FAIL ..." and exits 1. A
 * restored copy must go on with the next round, the same nonce, its
 * timers ticking and its devices answering (a transmit or read queued at
 * the snapshot completes without a new notify).
 *
 *   SNAP start nonce=<hex>          once, at boot
 */
#include "virtio_lib.h"

#define VCON_DEV 0
#define VCON_TXQ 1
#define BLK_DEV 2
#define QSIZE 8

static struct vring_mem txring, blkring;
static struct vq txq, blkq;
static struct virtio_blk_req_hdr hdr __attribute__((aligned(16)));
static volatile uint8_t status_byte;
static uint8_t rbuf[512] __attribute__((aligned(512)));
static char line[64];
static volatile uint64_t nonce;

static bool has_used(void *p)
{
	return vq_has_used(p);
}

static void die(const char *what, uint64_t got)
{
	put_fail(what, got);
	finish(false);
}

/* "VSNAP round=<n>\n" through the virtio console, waited for. */
static void vcon_round(uint64_t n)
{
	static const char prefix[] = "VSNAP round=";
	size_t len = 0;
	char digits[24];
	int nd = 0;
	uint32_t id, ulen;

	for (size_t i = 0; prefix[i]; i++)
		line[len++] = prefix[i];
	do {
		digits[nd++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	while (nd)
		line[len++] = digits[--nd];
	line[len++] = '\n';
	struct vbuf b = {(uintptr_t)line, (uint32_t)len, false};
	vq_add(&txq, &b, 1);
	vq_kick(&txq);
	if (!virtio_wait(has_used, &txq, 300))
		die("virtio-console transmit never completed; ticks", timer_ticks);
	vq_get_used(&txq, &id, &ulen);
}

static void blk_read(uint64_t sector)
{
	struct vbuf b[3] = {
		{(uintptr_t)&hdr, sizeof(hdr), false},
		{(uintptr_t)rbuf, sizeof(rbuf), true},
		{(uintptr_t)&status_byte, 1, true},
	};
	uint32_t id, ulen;

	hdr.type = VIRTIO_BLK_T_IN;
	hdr.reserved = 0;
	hdr.sector = sector;
	status_byte = 0xff;
	vq_add(&blkq, b, 3);
	vq_kick(&blkq);
	if (!virtio_wait(has_used, &blkq, 300))
		die("disk read never completed; ticks", timer_ticks);
	vq_get_used(&blkq, &id, &ulen);
	if (status_byte != VIRTIO_BLK_S_OK)
		die("disk read status", status_byte);
}

static bool ticked(void *p)
{
	return timer_ticks >= *(uint32_t *)p;
}

void guest_main(const struct entry_state *es)
{
	uint64_t con = VIRTIO_DEV_BASE(VCON_DEV), blk = VIRTIO_DEV_BASE(BLK_DEV);
	uint32_t lapic_before, pit_before, next;
	uint64_t reads = 0;

	(void)es;
	nonce = rdtsc() | 1;
	uart_puts("SNAP start nonce=");
	uart_puthex(nonce);
	uart_putc('\n');
	if (!virtio_probe(con, VIRTIO_ID_CONSOLE, "SNAP") ||
	    !virtio_probe(blk, VIRTIO_ID_BLOCK, "SNAP"))
		finish(false);
	virtio_irq_init(BLK_DEV);
	virtio_pit_init();
	if (!virtio_timer_check())
		die("LAPIC timer does not tick; ticks", timer_ticks);
	if (!virtio_negotiate(con, 0, NULL, "SNAP") ||
	    !vq_setup(&txq, con, VCON_TXQ, &txring, QSIZE, "SNAP"))
		finish(false);
	virtio_driver_ok(con);
	if (!virtio_negotiate(blk, FEAT(VIRTIO_BLK_F_RO), NULL, "SNAP") ||
	    !vq_setup(&blkq, blk, 0, &blkring, QSIZE, "SNAP"))
		finish(false);
	virtio_driver_ok(blk);
	for (uint64_t round = 1;; round++) {
		lapic_before = timer_ticks;
		pit_before = pit_ticks;
		next = timer_ticks + 10;
		virtio_wait(ticked, &next, 20);
		if (timer_ticks == lapic_before)
			die("the LAPIC timer stopped; round", round);
		if (pit_ticks == pit_before)
			die("the PIT stopped; round", round);
		blk_read(round % 8);
		reads++;
		uart_puts("SNAP round=");
		uart_putdec(round);
		uart_puts(" nonce=");
		uart_puthex(nonce);
		uart_puts(" lapic=");
		uart_putdec(timer_ticks);
		uart_puts(" pit=");
		uart_putdec(pit_ticks);
		uart_puts(" blk=");
		uart_putdec(reads);
		uart_putc('\n');
		vcon_round(round);
	}
}
