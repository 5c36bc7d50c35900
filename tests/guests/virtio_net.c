/* SPDX-License-Identifier: MIT */
/*
 * virtio_net: a small interrupt-driven driver for kiln's virtio-net card
 * (--net user: virtio device index 2, behind kiln's NAT and egress policy).
 *
 * Negotiates VERSION_1 + MAC + STATUS + MTU + MRG_RXBUF, checks the config
 * (a unicast MAC, link up, MTU 1500), posts 8 receive buffers, then:
 *   an ARP request for the gateway 10.0.2.2 must be answered (an ARP reply
 *   from 10.0.2.2, num_buffers 1);
 *   a TCP SYN to 192.168.1.1:80 must be refused by the public posture with
 *   a RST+ACK from 192.168.1.1 acknowledging the SYN.
 * Every receive must arrive with an interrupt (waits bounded to 3 s by a
 * 10 ms LAPIC timer).
 *
 * Output: VNET mac=<hex> mtu=<n>, VNET arp-reply, VNET rst, VNET ok or
 * FAIL lines, then RESULT PASS | RESULT FAIL (exit 0 / 1).
 */
#include "virtio_lib.h"

#define NET_DEV	   2
#define QSIZE	   8
#define BUF	   2048
#define HDR	   12
#define WAIT_TICKS 300

#define VIRTIO_ID_NET	       1
#define VIRTIO_NET_F_MTU       3
#define VIRTIO_NET_F_MAC       5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS    16

static struct vring_mem rx_ring, tx_ring;
static struct vq rxq, txq;
static uint8_t rx_buf[QSIZE][BUF] __attribute__((aligned(64)));
static uint8_t tx_buf[BUF] __attribute__((aligned(64)));
static uint8_t mac[6];
static bool all_ok = true;

static void fail(const char *what, uint64_t got)
{
	all_ok = false;
	put_fail(what, got);
}

static void post_rx(unsigned i)
{
	struct vbuf b = {(uintptr_t)rx_buf[i], BUF, true};

	vq_add(&rxq, &b, 1);
}

struct wait_arg {
	struct vq *q;
	uint32_t irqs_before;
};

static bool rx_with_irq(void *p)
{
	struct wait_arg *a = p;

	return vq_has_used(a->q) && virq_used != a->irqs_before;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Sends hdr + frame; waits for the transmit buffer to come back. */
static void send(const uint8_t *frame, unsigned len, const char *what)
{
	struct vbuf b = {(uintptr_t)tx_buf, HDR + len, false};
	struct wait_arg a = {&txq, virq_used};
	uint32_t id, ulen;

	memset(tx_buf, 0, HDR);
	memcpy(tx_buf + HDR, frame, len);
	vq_add(&txq, &b, 1);
	vq_kick(&txq);
	if (!virtio_wait(rx_with_irq, &a, WAIT_TICKS))
		fail(what, 0);
	while (vq_get_used(&txq, &id, &ulen))
		;
}

/* The next received frame (its buffer reposted after the caller looked);
 * NULL after 3 s. */
static const uint8_t *receive(uint32_t *len, unsigned *slot)
{
	struct wait_arg a = {&rxq, virq_used};
	uint32_t id;

	if (!vq_has_used(&rxq) && !virtio_wait(rx_with_irq, &a, WAIT_TICKS))
		return NULL;
	if (!vq_get_used(&rxq, &id, len) || id >= QSIZE)
		return NULL;
	*slot = id;
	return rx_buf[id];
}

void guest_main(const struct entry_state *es)
{
	uint64_t base = VIRTIO_DEV_BASE(NET_DEV), offered = 0;
	uint8_t f[64];
	const uint8_t *r;
	uint32_t len = 0;
	unsigned slot = 0, mtu, status;

	(void)es;
	if (!virtio_probe(base, VIRTIO_ID_NET, "VNET"))
		finish(false);
	virtio_irq_init(NET_DEV);
	if (!virtio_timer_check()) {
		put_fail("LAPIC timer does not tick; ticks", timer_ticks);
		finish(false);
	}
	if (!virtio_negotiate(base,
			      FEAT(VIRTIO_NET_F_MAC) | FEAT(VIRTIO_NET_F_STATUS) |
				      FEAT(VIRTIO_NET_F_MTU) |
				      FEAT(VIRTIO_NET_F_MRG_RXBUF),
			      &offered, "VNET"))
		finish(false);
	for (unsigned i = 0; i < 6; i++)
		mac[i] = *(volatile uint8_t *)(uintptr_t)(base + VMMIO_CONFIG + i);
	status = vmmio_rd(base, VMMIO_CONFIG + 4) >> 16 & 0xffff;
	mtu = vmmio_rd(base, VMMIO_CONFIG + 8) >> 16 & 0xffff;
	if (mac[0] & 1)
		fail("multicast MAC, first byte", mac[0]);
	if (!(status & 1))
		fail("link down, status", status);
	if (mtu != 1500)
		fail("MTU", mtu);
	if (!vq_setup(&rxq, base, 0, &rx_ring, QSIZE, "VNET") ||
	    !vq_setup(&txq, base, 1, &tx_ring, QSIZE, "VNET"))
		finish(false);
	virtio_driver_ok(base);
	for (unsigned i = 0; i < QSIZE; i++)
		post_rx(i);
	vq_kick(&rxq);
	uart_puts("VNET mac=");
	put_hex_bytes(mac, 6);
	uart_puts(" mtu=");
	uart_putdec(mtu);
	uart_putc('\n');

	/* ARP: who has 10.0.2.2? tell 10.0.2.15 */
	memset(f, 0, sizeof(f));
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	put16(f + 12, 0x0806);
	put16(f + 14, 1);
	put16(f + 16, 0x0800);
	f[18] = 6, f[19] = 4;
	put16(f + 20, 1);
	memcpy(f + 22, mac, 6);
	f[28] = 10, f[29] = 0, f[30] = 2, f[31] = 15;
	f[38] = 10, f[39] = 0, f[40] = 2, f[41] = 2;
	send(f, 60, "ARP request not taken back");
	r = receive(&len, &slot);
	if (!r)
		fail("no ARP reply within 3 s; interrupts", virq_used);
	else if (len < HDR + 42 || r[10] != 1 || r[HDR + 12] != 0x08 ||
		 r[HDR + 13] != 0x06 || r[HDR + 21] != 2 ||
		 r[HDR + 28] != 10 || r[HDR + 31] != 2)
		fail("not an ARP reply from 10.0.2.2, length", len);
	else
		uart_puts("VNET arp-reply\n");
	if (r) {
		uint8_t gw[6];

		memcpy(gw, r + HDR + 22, 6);
		post_rx(slot);
		vq_kick(&rxq);

		/* TCP SYN 10.0.2.15:40000 -> 192.168.1.1:80, seq 0x1000 */
		memset(f, 0, sizeof(f));
		memcpy(f, gw, 6);
		memcpy(f + 6, mac, 6);
		put16(f + 12, 0x0800);
		f[14] = 0x45;
		put16(f + 16, 40);
		f[22] = 64;
		f[23] = 6;
		f[26] = 10, f[27] = 0, f[28] = 2, f[29] = 15;
		f[30] = 192, f[31] = 168, f[32] = 1, f[33] = 1;
		{
			uint32_t sum = 0;

			for (unsigned i = 14; i < 34; i += 2)
				sum += (uint32_t)(f[i] << 8 | f[i + 1]);
			while (sum >> 16)
				sum = (sum & 0xffff) + (sum >> 16);
			put16(f + 24, (uint16_t)~sum);
		}
		put16(f + 34, 40000);
		put16(f + 36, 80);
		f[40] = 0x10; /* seq 0x1000 */
		f[46] = 5 << 4;
		f[47] = 0x02; /* SYN */
		send(f, 54, "SYN not taken back");
		r = receive(&len, &slot);
		if (!r)
			fail("no RST within 3 s; interrupts", virq_used);
		else if (r[HDR + 23] != 6 || r[HDR + 26] != 192 ||
			 r[HDR + 29] != 1 || r[HDR + 47] != 0x14 ||
			 r[HDR + 44] != 0x10 || r[HDR + 45] != 0x01)
			fail("not a RST+ACK of the SYN from 192.168.1.1, flags",
			     r[HDR + 47]);
		else
			uart_puts("VNET rst\n");
	}
	if (vmmio_rd(base, VMMIO_STATUS) & VSTAT_NEEDS_RESET)
		fail("device needs reset", vmmio_rd(base, VMMIO_STATUS));
	if (all_ok)
		uart_puts("VNET ok\n");
	finish(all_ok);
}
