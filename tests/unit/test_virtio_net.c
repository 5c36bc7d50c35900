/* SPDX-License-Identifier: MIT */
/* virtio-net with its NAT on fake guest memory and a fake driver: hostile
 * transmit chains (runts, giants) are dropped and counted, the NAT's frames
 * wait in a bounded queue while no receive buffer is posted (then drops are
 * counted) and flow once buffers come, a denied connection is answered with
 * a RST, and bad options are refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_driver.h"
#include "test_log.h"
#include "virtio/device_table.h"
#include "virtio/net.h"

#define RAM_SIZE (4u << 20)
#define QSIZE	 16
#define BUF_GPA	 0x100000ull /* frames and receive buffers from here */
#define BUF_SIZE 2048

struct env {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtio_dev dev;
	struct fake_vq vq[2]; /* rx, tx */
	struct fake_transport tr;
	uint16_t next_desc[2];
};

static struct env *env_new(const char *spec)
{
	struct env *e = calloc(1, sizeof(*e));
	struct virtio_dev_opts o;

	assert_non_null(e);
	e->ram = calloc(1, RAM_SIZE);
	assert_non_null(e->ram);
	guest_mem_init(&e->mem, e->ram, RAM_SIZE);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	assert_int_equal(virtio_dev_create(&e->dev, &o, &test_log), 0);
	virtio_dev_opts_free(&o);
	fake_driver_bind(&e->dev, &e->mem, &e->tr);
	fake_driver_take_features(&e->dev);
	for (unsigned q = 0; q < 2; q++) {
		e->vq[q].ram = e->ram;
		e->vq[q].size = QSIZE;
		e->vq[q].desc_gpa = 0x1000 + q * 0x2000;
		e->vq[q].avail_gpa = e->vq[q].desc_gpa + 16 * QSIZE;
		e->vq[q].used_gpa = e->vq[q].desc_gpa + 0x1000;
		e->dev.vqs[q].mem = &e->mem;
		assert_int_equal(fake_vq_attach(&e->vq[q], &e->dev.vqs[q], 256),
				 0);
	}
	fake_driver_ok(&e->dev);
	return e;
}

static void env_free(struct env *e)
{
	virtio_dev_destroy(&e->dev);
	free(e->ram);
	free(e);
}

static uint64_t buf_gpa(unsigned q, uint16_t i)
{
	return BUF_GPA + ((uint64_t)q * QSIZE + i) * BUF_SIZE;
}

/* Transmits hdr + frame (len bytes) as one descriptor of out_len bytes
 * (out_len > len: a chain that claims more than it carries). */
static void tx(struct env *e, const uint8_t *frame, size_t len,
	       uint32_t out_len)
{
	uint16_t i = e->next_desc[1]++ % QSIZE;
	uint8_t *p = e->ram + buf_gpa(1, i);

	memset(p, 0, 12);
	memcpy(p + 12, frame, len);
	fake_vq_desc(&e->vq[1], i, buf_gpa(1, i), out_len, 0, 0);
	fake_vq_publish(&e->vq[1], i);
	e->dev.ops->queue_notify(&e->dev, 1);
}

static void post_rx(struct env *e, unsigned n)
{
	for (unsigned k = 0; k < n; k++) {
		uint16_t i = e->next_desc[0]++ % QSIZE;

		fake_vq_desc(&e->vq[0], i, buf_gpa(0, i), BUF_SIZE,
			     VIRTQ_DESC_F_WRITE, 0);
		fake_vq_publish(&e->vq[0], i);
	}
	e->dev.ops->queue_notify(&e->dev, 0);
}

static struct virtio_net_stats stats(struct env *e)
{
	struct virtio_net_stats s;

	virtio_net_get_stats(&e->dev, &s);
	return s;
}

/* An ARP request for the NAT's gateway, which it answers. */
static size_t arp_for_gateway(uint8_t *f)
{
	static const uint8_t hdr[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52,
				      0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
				      0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00,
				      0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
				      10,   0,	  2,	15,   0,    0,	  0,
				      0,    0,	  0,	10,   0,    2,	  2};

	memset(f, 0, 60);
	memcpy(f, hdr, sizeof(hdr));
	return 60;
}

static void test_hostile_tx(void **state)
{
	struct env *e = env_new("net,egress=all");
	uint8_t f[64];
	uint32_t id = 0, len = 0;

	(void)state;
	tx(e, f, 5, 12 + 5);	  /* a runt: not even an Ethernet header */
	tx(e, f, 0, 8);		  /* shorter than the virtio-net header */
	tx(e, f, 60, 12 + 70000); /* a giant: more than a frame may be */
	assert_int_equal(stats(e).tx_errors, 3);
	assert_int_equal(stats(e).tx_frames, 0);
	/* each chain went back to the driver */
	for (int k = 0; k < 3; k++)
		assert_true(fake_vq_take_used(&e->vq[1], &id, &len));
	assert_int_equal(e->tr.resets, 0);
	/* and the device keeps serving */
	tx(e, f, arp_for_gateway(f), 12 + 60);
	assert_int_equal(stats(e).tx_frames, 1);
	env_free(e);
	(void)state;
}

static void test_rx_backpressure(void **state)
{
	struct env *e = env_new("net,egress=all");
	uint8_t f[64];
	uint32_t id = 0, len = 0;
	unsigned got = 0;

	(void)state;
	/* no receive buffers: the answers wait, then are dropped */
	for (int k = 0; k < NET_RX_PENDING + 40; k++)
		tx(e, f, arp_for_gateway(f), 12 + 60);
	assert_int_equal(stats(e).rx_frames, 0);
	assert_int_equal(stats(e).rx_dropped, 40);
	/* buffers come: the waiting answers flow, in their order */
	post_rx(e, QSIZE);
	while (fake_vq_take_used(&e->vq[0], &id, &len)) {
		const uint8_t *p = e->ram + buf_gpa(0, (uint16_t)id);

		assert_true(len >= 12 + 42); /* header + ARP reply (padded) */
		assert_int_equal(p[10], 1);  /* num_buffers */
		assert_int_equal(p[12 + 12], 0x08);
		assert_int_equal(p[12 + 13], 0x06);
		assert_int_equal(p[12 + 21], 2); /* a reply */
		got++;
	}
	assert_int_equal(got, QSIZE);
	assert_int_equal(stats(e).rx_frames, QSIZE);
	assert_true(e->tr.notified > 0);
	env_free(e);
}

static void test_denied_gets_rst(void **state)
{
	struct env *e = env_new("net");
	uint8_t f[64] = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02, /* gateway */
			 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00};
	uint8_t *ip = f + 14, *tcp = ip + 20;
	uint32_t id = 0, len = 0;

	(void)state;
	ip[0] = 0x45, ip[3] = 40, ip[8] = 64, ip[9] = 6;
	ip[12] = 10, ip[14] = 2, ip[15] = 15;
	ip[16] = 192, ip[17] = 168, ip[18] = 1, ip[19] = 1;
	tcp[0] = 0x9c, tcp[1] = 0x40, tcp[3] = 80;
	tcp[12] = 5 << 4, tcp[13] = 0x02; /* SYN */
	post_rx(e, 2);
	tx(e, f, 54, 12 + 54);
	assert_int_equal(stats(e).tx_denied, 1);
	assert_true(fake_vq_take_used(&e->vq[0], &id, &len));
	{
		const uint8_t *p = e->ram + buf_gpa(0, (uint16_t)id) + 12;

		assert_int_equal(len, 12 + 54);
		assert_memory_equal(p, f + 6, 6); /* to the guest */
		assert_int_equal(p + 14 + 12 - p, 26);
		assert_memory_equal(p + 14 + 12, ip + 16, 4); /* from .1.1 */
		assert_int_equal(p[14 + 20 + 13], 0x14);      /* RST ACK */
	}
	env_free(e);
}

static void test_bad_options(void **state)
{
	static const char *const bad[] = {
		"net,egress=open",
		"net,egress",
		"net,mac=01:00:00:00:00:01",
		"net,mac=zz",
		"net,net=10.0.2.0/30",
		"net,net=300.0.0.0/8",
		"net,rules=allow:10.0.0.0/33",
		"net,rules=maybe:1.2.3.4",
		"net,forward=tcp:127.0.0.1:0:80",
		"net,forward=sctp:127.0.0.1:80:80",
		"net,domains=a..b",
		"net,domains=*a.b",
		"net,dns=1.2.3",
		"net,dns=[::1",
		"net,bogus=1",
		/* a cluster network's card has no NAT settings */
		"net,switch=/x,egress=all",
		"net,switch=/x,forward=tcp:127.0.0.1:1:2",
		"net,switch=",
		"net,switch=/x,name=bad/name",
		"net,name=web",
	};
	struct virtio_dev_opts o;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(virtio_dev_opts_parse(bad[i], &test_log, &o),
				 -EINVAL);
	assert_int_equal(
		virtio_dev_opts_parse("net,egress=none,mac=02:00:00:00:00:01,"
				      "net=192.168.77.0/24,"
				      "rules=allow:host:80;deny:8.8.8.8,"
				      "forward=udp:127.0.0.1:5353:53,"
				      "domains=example.com;*.example.org,"
				      "dns=[::1]:5353",
				      &test_log, &o),
		0);
	{
		char cfg[96];

		assert_true(virtio_net_guest_config(&o, cfg, sizeof(cfg)) > 0);
		assert_string_equal(cfg, "02:00:00:00:00:01,192.168.77.15/24,"
					 "192.168.77.2,192.168.77.3");
	}
	virtio_dev_opts_free(&o);
	assert_int_equal(virtio_dev_opts_parse("net,switch=/run/x.sock,name=db,"
					       "mac=06:00:00:00:00:01",
					       &test_log, &o),
			 0);
	{
		char cfg[96];

		/* its address comes from the switch, not from options */
		assert_int_equal(virtio_net_guest_config(&o, cfg, sizeof(cfg)),
				 -EINVAL);
	}
	virtio_dev_opts_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_tx),
		cmocka_unit_test(test_rx_backpressure),
		cmocka_unit_test(test_denied_gets_rst),
		cmocka_unit_test(test_bad_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
