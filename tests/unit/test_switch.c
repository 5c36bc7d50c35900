/* SPDX-License-Identifier: MIT */
/* The cluster network's switch on socketpairs: hellos and replies, leases,
 * unicast to one port only, broadcast to all others, spoofed frames
 * dropped, its own ARP and DNS answers, and a member that stops reading:
 * its queue stays bounded, one flooding member cannot take all of it, and
 * the others are served. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/dns.h"
#include "net/switch.h"

#define NET 0x0a590000u /* 10.89.0.0/24 */

static const uint8_t MAC_A[6] = {0x06, 0, 0, 0, 0, 0xa};
static const uint8_t MAC_B[6] = {0x06, 0, 0, 0, 0, 0xb};
static const uint8_t MAC_C[6] = {0x06, 0, 0, 0, 0, 0xc};

struct rig {
	struct net_switch sw;
	int ports[3]; /* switch side indices */
	int peer[3];  /* the members' ends */
	uint32_t addr[3];
};

static void plug(struct rig *r, int i, const char *name, const uint8_t *mac)
{
	int sv[2];

	assert_int_equal(
		socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	r->ports[i] = sw_port_add(&r->sw, sv[0], name, mac, 1000, &r->addr[i]);
	assert_true(r->ports[i] >= 0);
	r->peer[i] = sv[1];
}

static struct rig *rig_new(void)
{
	struct rig *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	assert_int_equal(sw_init(&r->sw, NET, 24, NULL), 0);
	plug(r, 0, "a", MAC_A);
	plug(r, 1, "b", MAC_B);
	plug(r, 2, "", MAC_C);
	return r;
}

static void rig_free(struct rig *r)
{
	sw_fini(&r->sw);
	for (int i = 0; i < 3; i++)
		close(r->peer[i]);
	free(r);
}

/* An IPv4/UDP frame from (mac, ip) to (dmac, dip:dport). */
static size_t udp_frame(uint8_t *f, const uint8_t *dmac, const uint8_t *smac,
			uint32_t sip, uint32_t dip, uint16_t dport,
			const uint8_t *payload, size_t len)
{
	size_t ip_len = 20 + 8 + len;

	memset(f, 0, 14 + ip_len);
	memcpy(f, dmac, 6);
	memcpy(f + 6, smac, 6);
	f[12] = 0x08, f[13] = 0x00;
	f[14] = 0x45;
	f[16] = (uint8_t)(ip_len >> 8), f[17] = (uint8_t)ip_len;
	f[22] = 64, f[23] = 17;
	sip = htonl(sip), dip = htonl(dip);
	memcpy(f + 26, &sip, 4);
	memcpy(f + 30, &dip, 4);
	f[34] = 0x30, f[35] = 0x39; /* sport 12345 */
	f[36] = (uint8_t)(dport >> 8), f[37] = (uint8_t)dport;
	f[38] = (uint8_t)((8 + len) >> 8), f[39] = (uint8_t)(8 + len);
	memcpy(f + 42, payload, len);
	return 14 + ip_len;
}

static ssize_t got(int fd, uint8_t *buf, size_t cap)
{
	return recv(fd, buf, cap, MSG_DONTWAIT);
}

static void test_wire_format(void **state)
{
	struct sw_hello h = {.kind = SW_HELLO_PORT}, back;
	struct sw_reply *r = malloc(sizeof(*r));
	uint8_t buf[128];
	size_t n;

	(void)state;
	memcpy(h.mac, MAC_A, 6);
	strcpy(h.name, "web-1");
	n = sw_hello_encode(&h, buf);
	assert_int_equal(sw_hello_decode(buf, n, &back), 0);
	assert_string_equal(back.name, "web-1");
	assert_memory_equal(back.mac, MAC_A, 6);
	/* truncated, long, bad magic, bad kind, a name with '/', multicast */
	assert_int_equal(sw_hello_decode(buf, n - 1, &back), -EINVAL);
	assert_int_equal(sw_hello_decode(buf, n + 1, &back), -EINVAL);
	buf[0] = 'X';
	assert_int_equal(sw_hello_decode(buf, n, &back), -EINVAL);
	buf[0] = 'K', buf[4] = 9;
	assert_int_equal(sw_hello_decode(buf, n, &back), -EINVAL);
	buf[4] = SW_HELLO_PORT, buf[14] = '/';
	assert_int_equal(sw_hello_decode(buf, n, &back), -EINVAL);
	buf[14] = 'b', buf[5] = 0x01;
	assert_int_equal(sw_hello_decode(buf, n, &back), -EINVAL);
	n = sw_reply_encode(17, 0x0a590002, 24, 0x0a590001, "taken", buf,
			    sizeof(buf));
	assert_int_equal(sw_reply_decode(buf, n, r), 0);
	assert_int_equal(r->status, 17);
	assert_int_equal(r->addr, 0x0a590002);
	assert_int_equal(r->prefix, 24);
	assert_string_equal(r->text, "taken");
	assert_int_equal(sw_reply_decode(buf, 13, r), -EINVAL);
	free(r);
}

static void test_leases(void **state)
{
	struct net_switch *sw = malloc(sizeof(*sw));
	uint32_t a1, a2, a3;

	(void)state;
	assert_int_equal(sw_init(sw, NET, 16, NULL), 0);
	assert_int_equal(sw_init(sw, NET, 30, NULL), -EINVAL);
	assert_int_equal(sw_init(sw, NET | 0x17, 29, NULL), 0);
	/* 10.89.0.16/29 (host bits masked): .17 the switch, .18-.22 members */
	assert_int_equal(sw_lease(sw, "a", MAC_A, 0, &a1), 0);
	assert_int_equal(a1, NET + 0x12);
	assert_int_equal(sw_lease(sw, "a", MAC_A, 10, &a2), 0);
	assert_int_equal(a2, a1); /* the same member, the same address */
	assert_int_equal(sw_lease(sw, "A", MAC_B, 10, &a3), -EEXIST);
	assert_int_equal(sw_lease(sw, "b", MAC_B, 10, &a3), 0);
	assert_int_equal(a3, NET + 0x13);
	for (uint8_t i = 0; i < 3; i++) {
		uint8_t mac[6] = {0x06, 1, 0, 0, 0, i};
		uint32_t a;

		assert_int_equal(sw_lease(sw, "", mac, 10, &a), 0);
	}
	{
		uint8_t mac[6] = {0x06, 2, 0, 0, 0, 0};
		uint32_t a;

		assert_int_equal(sw_lease(sw, "", mac, 10, &a), -ENOSPC);
		/* reserved leases no port took expire */
		assert_int_equal(
			sw_lease(sw, "", mac, 10 + SW_LEASE_HOLD_MS, &a), 0);
		assert_int_equal(a, NET + 0x12);
	}
	sw_fini(sw);
	free(sw);
}

static void test_unicast_broadcast(void **state)
{
	struct rig *r = rig_new();
	uint8_t f[256], in[2048];
	const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	size_t n;

	(void)state;
	assert_int_equal(r->addr[0], NET + 2);
	assert_int_equal(r->addr[1], NET + 3);
	n = udp_frame(f, MAC_B, MAC_A, r->addr[0], r->addr[1], 9,
		      (const uint8_t *)"hi", 2);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	assert_int_equal(got(r->peer[1], in, sizeof(in)), (ssize_t)n);
	assert_memory_equal(in, f, n);
	assert_int_equal(got(r->peer[2], in, sizeof(in)), -1); /* not c */
	assert_int_equal(got(r->peer[0], in, sizeof(in)), -1); /* not back */
	n = udp_frame(f, bcast, MAC_A, r->addr[0], NET + 255, 9,
		      (const uint8_t *)"all", 3);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	assert_int_equal(got(r->peer[1], in, sizeof(in)), (ssize_t)n);
	assert_int_equal(got(r->peer[2], in, sizeof(in)), (ssize_t)n);
	assert_int_equal(got(r->peer[0], in, sizeof(in)), -1);
	/* unknown unicast goes nowhere */
	{
		const uint8_t nobody[6] = {0x06, 9, 9, 9, 9, 9};

		n = udp_frame(f, nobody, MAC_A, r->addr[0], NET + 77, 9,
			      (const uint8_t *)"x", 1);
		sw_frame_in(&r->sw, r->ports[0], f, n);
		assert_int_equal(got(r->peer[1], in, sizeof(in)), -1);
		assert_int_equal(got(r->peer[2], in, sizeof(in)), -1);
	}
	rig_free(r);
}

static void test_spoofing_dropped(void **state)
{
	struct rig *r = rig_new();
	uint8_t f[2048], in[2048];
	size_t n;

	(void)state;
	/* a's frame claiming b's MAC, then b's address, then a runt/giant */
	n = udp_frame(f, MAC_C, MAC_B, r->addr[1], NET + 4, 9,
		      (const uint8_t *)"x", 1);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	n = udp_frame(f, MAC_C, MAC_A, r->addr[1], NET + 4, 9,
		      (const uint8_t *)"x", 1);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	sw_frame_in(&r->sw, r->ports[0], f, 13);
	sw_frame_in(&r->sw, r->ports[0], f, SW_MAX_FRAME + 1);
	assert_int_equal(got(r->peer[2], in, sizeof(in)), -1);
	assert_int_equal(r->sw.conns[r->ports[0]].spoofed, 4);
	/* an ARP reply from a claiming b's address */
	memset(f, 0, 42);
	memcpy(f, MAC_C, 6);
	memcpy(f + 6, MAC_A, 6);
	f[12] = 0x08, f[13] = 0x06;
	f[15] = 1, f[16] = 8, f[18] = 6, f[19] = 4, f[21] = 2;
	memcpy(f + 22, MAC_A, 6);
	{
		uint32_t b = htonl(r->addr[1]);

		memcpy(f + 28, &b, 4);
	}
	sw_frame_in(&r->sw, r->ports[0], f, 42);
	assert_int_equal(got(r->peer[2], in, sizeof(in)), -1);
	rig_free(r);
}

static void test_switch_answers_arp_and_dns(void **state)
{
	struct rig *r = rig_new();
	const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t f[512], in[2048], q[64] = {0x12, 0x34, 0x01, 0, 0, 1};
	size_t n, qn = 12;
	uint32_t self = htonl(NET + 1);
	ssize_t k;

	(void)state;
	/* ARP who-has 10.89.0.1 from a */
	memset(f, 0, 42);
	memcpy(f, bcast, 6);
	memcpy(f + 6, MAC_A, 6);
	f[12] = 0x08, f[13] = 0x06;
	f[15] = 1, f[16] = 8, f[18] = 6, f[19] = 4, f[21] = 1;
	memcpy(f + 22, MAC_A, 6);
	{
		uint32_t a = htonl(r->addr[0]);

		memcpy(f + 28, &a, 4);
	}
	memcpy(f + 38, &self, 4);
	sw_frame_in(&r->sw, r->ports[0], f, 42);
	k = got(r->peer[0], in, sizeof(in));
	assert_int_equal(k, 42);
	assert_int_equal(in[21], 2);
	assert_memory_equal(in, MAC_A, 6);
	assert_memory_equal(in + 28, &self, 4);
	/* the broadcast also reached the other members */
	assert_int_equal(got(r->peer[1], in, sizeof(in)), 42);
	/* DNS A for "B" (a member, any case): its address */
	q[qn++] = 1, q[qn++] = 'B', q[qn++] = 0;
	q[qn++] = 0, q[qn++] = 1, q[qn++] = 0, q[qn++] = 1;
	n = udp_frame(f, r->sw.self_mac, MAC_A, r->addr[0], NET + 1, 53, q, qn);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	k = got(r->peer[0], in, sizeof(in));
	assert_true(k > 42 + 12);
	{
		const uint8_t *m = in + 42;
		uint32_t b = htonl(r->addr[1]);

		assert_int_equal(m[0], 0x12);
		assert_int_equal(m[3] & 0x0f, 0); /* NOERROR */
		assert_int_equal(m[7], 1);	  /* one answer */
		assert_memory_equal(in + k - 4, &b, 4);
	}
	/* a name that is no member: REFUSED (the next server is asked) */
	q[13] = 'z';
	n = udp_frame(f, r->sw.self_mac, MAC_A, r->addr[0], NET + 1, 53, q, qn);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	k = got(r->peer[0], in, sizeof(in));
	assert_true(k > 42 + 12);
	assert_int_equal(in[42 + 3] & 0x0f, DNS_RCODE_REFUSED);
	/* a truncated query: no answer, no crash */
	n = udp_frame(f, r->sw.self_mac, MAC_A, r->addr[0], NET + 1, 53, q, 14);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	assert_int_equal(got(r->peer[0], in, sizeof(in)), -1);
	rig_free(r);
}

/* b never reads: its queue fills to the bound, a flooding a cannot take
 * more than its share, c's frames still get a place, and a and c keep
 * talking to each other. */
static void test_stalled_member_and_flood(void **state)
{
	struct rig *r = rig_new();
	uint8_t f[1600], in[2048];
	size_t n;
	unsigned queued_before, delivered = 0;

	(void)state;
	n = udp_frame(f, MAC_B, MAC_A, r->addr[0], r->addr[1], 9, in, 1400);
	for (int i = 0; i < 5000; i++)
		sw_frame_in(&r->sw, r->ports[0], f, n);
	queued_before = r->sw.conns[r->ports[1]].qcount;
	assert_true(queued_before <= SW_QUEUE_PER_SRC);
	assert_true(r->sw.conns[r->ports[1]].dropped > 4000);
	n = udp_frame(f, MAC_B, MAC_C, r->addr[2], r->addr[1], 9, in, 100);
	sw_frame_in(&r->sw, r->ports[2], f, n);
	assert_int_equal(r->sw.conns[r->ports[1]].qcount, queued_before + 1);
	/* a <-> c unaffected */
	n = udp_frame(f, MAC_C, MAC_A, r->addr[0], r->addr[2], 9, in, 10);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	assert_int_equal(got(r->peer[2], in, sizeof(in)), (ssize_t)n);
	/* b reads again: everything queued comes out in order */
	while (got(r->peer[1], in, sizeof(in)) > 0) {
		delivered++;
		sw_flush(&r->sw, r->ports[1]);
	}
	assert_true(delivered > queued_before);
	assert_int_equal(r->sw.conns[r->ports[1]].qcount, 0);
	/* a member whose end closed is marked dead, not a crash */
	close(r->peer[1]);
	r->peer[1] = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	n = udp_frame(f, MAC_B, MAC_A, r->addr[0], r->addr[1], 9, in, 10);
	sw_frame_in(&r->sw, r->ports[0], f, n);
	assert_true(r->sw.conns[r->ports[1]].dead);
	sw_conn_remove(&r->sw, r->ports[1]);
	{
		char list[1024];

		assert_int_equal(sw_list(&r->sw, list, sizeof(list)), 2);
		assert_non_null(strstr(list, "a 10.89.0.2 06:00:00:00:00:0a"));
		assert_null(strstr(list, "10.89.0.3"));
	}
	rig_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire_format),
		cmocka_unit_test(test_leases),
		cmocka_unit_test(test_unicast_broadcast),
		cmocka_unit_test(test_spoofing_dropped),
		cmocka_unit_test(test_switch_answers_arp_and_dns),
		cmocka_unit_test(test_stalled_member_and_flood),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
