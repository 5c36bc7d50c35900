/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock: the packet checks on hand-made chains, and the device
 * driven like a guest would (split rings in fake guest RAM) against real
 * Unix sockets in a temporary directory: connections both ways, data both
 * ways byte for byte, credit, backpressure both ways, the connection
 * limit, SHUTDOWN/RST clean-up, timeouts, and no fd left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_driver.h"
#include "util/clock.h"
#include "util/snapshot_io.h"
#include "virtio/vsock.h"

#define GUEST_CID 3
#define RAM_SIZE  (8u << 20)
#define QSZ	  64
#define QBASE(i)                                                               \
	(0x10000u + (i)*0x4000u) /* desc; avail +0x1000; used +0x2000 */
#define RX_AREA	  0x100000u
#define RX_STRIDE 0x2000u /* up to 8 KiB per rx buffer */
#define TX_AREA	  0x400000u
#define RXBUF	  (VSOCK_HDR_SIZE + 4096)
#define G_PORT	  5000 /* guest's ephemeral port */
#define H_PORT	  1234 /* host service port */

/* ---- helpers ---- */

static unsigned n_logs;

static void count_log(void *opaque, enum kiln_log_level level, const char *msg)
{
	(void)opaque;
	(void)level;
	(void)msg;
	n_logs++;
}

static const struct kiln_log test_log = {count_log, NULL, KILN_LOG_DEBUG};

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2); /* the test host is little-endian, like x86 */
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

struct hdr_in {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

static void build_hdr(uint8_t *b, const struct hdr_in *h)
{
	put64(b, h->src_cid);
	put64(b + 8, h->dst_cid);
	put32(b + 16, h->src_port);
	put32(b + 20, h->dst_port);
	put32(b + 24, h->len);
	put16(b + 28, h->type);
	put16(b + 30, h->op);
	put32(b + 32, h->flags);
	put32(b + 36, h->buf_alloc);
	put32(b + 40, h->fwd_cnt);
}

static void parse_hdr(const uint8_t *b, struct hdr_in *h)
{
	memcpy(&h->src_cid, b, 8);
	memcpy(&h->dst_cid, b + 8, 8);
	h->src_port = get32(b + 16);
	h->dst_port = get32(b + 20);
	h->len = get32(b + 24);
	memcpy(&h->type, b + 28, 2);
	memcpy(&h->op, b + 30, 2);
	h->flags = get32(b + 32);
	h->buf_alloc = get32(b + 36);
	h->fwd_cnt = get32(b + 40);
}

static struct hdr_in ghdr(uint16_t op, uint32_t src_port, uint32_t dst_port,
			  uint32_t len)
{
	return (struct hdr_in){.src_cid = GUEST_CID,
			       .dst_cid = VSOCK_HOST_CID,
			       .src_port = src_port,
			       .dst_port = dst_port,
			       .len = len,
			       .type = VSOCK_TYPE_STREAM,
			       .op = op,
			       .buf_alloc = 256 * 1024};
}

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a device over fake RAM with a guest driver's view of the rings ---- */

struct env {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtio_dev dev;
	char dir[48], path[80];
	struct fake_vq vq[3]; /* rx, tx, event */
	uint16_t rx_next;     /* next rx descriptor to post */
	unsigned rx_out;      /* rx buffers the device holds */
	struct fake_transport tr;
	int listeners[8];
	uint32_t listen_ports[8];
	unsigned nlisteners;
	/* the guest's view of one connection, for credit */
	uint32_t g_buf_alloc, g_fwd_cnt;
};

static struct env *env_new_cfg(const struct virtio_vsock_config *over)
{
	struct env *e = calloc(1, sizeof(*e));
	struct virtio_vsock_config cfg;

	assert_non_null(e);
	e->ram = calloc(1, RAM_SIZE);
	assert_non_null(e->ram);
	guest_mem_init(&e->mem, e->ram, RAM_SIZE);
	snprintf(e->dir, sizeof(e->dir), "/tmp/kiln-vsock-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/v.sock", e->dir);
	if (over)
		cfg = *over;
	else
		memset(&cfg, 0, sizeof(cfg));
	cfg.guest_cid = GUEST_CID;
	cfg.uds_path = e->path;
	e->dev.log = &test_log;
	assert_int_equal(virtio_vsock_create(&cfg, &e->dev), 0);
	fake_driver_bind(&e->dev, &e->mem, &e->tr);
	fake_driver_take_features(&e->dev);
	for (unsigned i = 0; i < 3; i++) {
		e->vq[i] = (struct fake_vq){.ram = e->ram,
					    .desc_gpa = QBASE(i),
					    .avail_gpa = QBASE(i) + 0x1000,
					    .used_gpa = QBASE(i) + 0x2000,
					    .size = QSZ};
		assert_int_equal(fake_vq_attach(&e->vq[i], &e->dev.vqs[i],
						VSOCK_QUEUE_SIZE),
				 0);
	}
	fake_driver_ok(&e->dev);
	e->g_buf_alloc = 256 * 1024;
	return e;
}

static struct env *env_new(void)
{
	return env_new_cfg(NULL);
}

static void env_free(struct env *e)
{
	char p[200];

	virtio_vsock_destroy(&e->dev);
	/* the device removed its own socket; the listeners' are ours */
	assert_int_equal(access(e->path, F_OK), -1);
	for (unsigned i = 0; i < e->nlisteners; i++) {
		close(e->listeners[i]);
		snprintf(p, sizeof(p), "%s_%u", e->path, e->listen_ports[i]);
		assert_int_equal(unlink(p), 0);
	}
	assert_int_equal(rmdir(e->dir), 0);
	free(e->ram);
	free(e);
}

static struct virtio_vsock_stats stats(struct env *e)
{
	struct virtio_vsock_stats s;

	virtio_vsock_get_stats(&e->dev, &s);
	return s;
}

/* Posts n rx buffers of size bytes (one descriptor each). */
static void post_rx_sized(struct env *e, unsigned n, uint32_t size)
{
	for (unsigned i = 0; i < n; i++) {
		uint16_t d = e->rx_next++ % QSZ;

		assert_true(e->rx_out < QSZ);
		assert_true(size <= RX_STRIDE);
		memset(e->ram + RX_AREA + d * RX_STRIDE, 0xee, size);
		fake_vq_desc(&e->vq[0], d, RX_AREA + d * RX_STRIDE, size,
			     VIRTQ_DESC_F_WRITE, 0);
		fake_vq_publish(&e->vq[0], d);
		e->rx_out++;
	}
	e->dev.ops->queue_notify(&e->dev, VSOCK_QUEUE_RX);
}

static void post_rx(struct env *e, unsigned n)
{
	post_rx_sized(e, n, RXBUF);
}

struct pkt {
	struct hdr_in h;
	uint32_t used;
	uint8_t data[RX_STRIDE];
};

/* Next packet the device sent the guest; false if none. */
static bool recv_pkt(struct env *e, struct pkt *p)
{
	uint32_t id, len;

	if (!fake_vq_take_used(&e->vq[0], &id, &len))
		return false;
	assert_true(id < QSZ);
	e->rx_out--;
	p->used = len;
	assert_true(len >= VSOCK_HDR_SIZE);
	parse_hdr(e->ram + RX_AREA + id * RX_STRIDE, &p->h);
	assert_int_equal(p->h.src_cid, VSOCK_HOST_CID);
	assert_int_equal(p->h.dst_cid, GUEST_CID);
	assert_int_equal(p->h.type, VSOCK_TYPE_STREAM);
	assert_int_equal(len, VSOCK_HDR_SIZE + p->h.len);
	memcpy(p->data, e->ram + RX_AREA + id * RX_STRIDE + VSOCK_HDR_SIZE,
	       p->h.len);
	return true;
}

/* Sends one tx chain: hdr (hdr_len bytes of it) then payload, with the
 * header cut into two descriptors at `split` (0: not cut). */
static void send_raw(struct env *e, const uint8_t *hdr, uint32_t hdr_len,
		     uint32_t split, const void *payload, uint32_t plen)
{
	uint8_t *area = e->ram + TX_AREA;
	uint16_t d = 0;

	memcpy(area, hdr, hdr_len);
	if (plen)
		memcpy(area + 0x1000, payload, plen);
	if (split && split < hdr_len) {
		fake_vq_desc(&e->vq[1], d, TX_AREA, split, VIRTQ_DESC_F_NEXT,
			     d + 1);
		d++;
		fake_vq_desc(&e->vq[1], d, TX_AREA + split, hdr_len - split,
			     plen ? VIRTQ_DESC_F_NEXT : 0, d + 1);
	} else {
		fake_vq_desc(&e->vq[1], d, TX_AREA, hdr_len,
			     plen ? VIRTQ_DESC_F_NEXT : 0, d + 1);
	}
	if (plen)
		fake_vq_desc(&e->vq[1], d + 1, TX_AREA + 0x1000, plen, 0, 0);
	fake_vq_publish(&e->vq[1], 0);
	e->dev.ops->queue_notify(&e->dev, VSOCK_QUEUE_TX);
	{
		uint32_t id, len;

		assert_true(fake_vq_take_used(&e->vq[1], &id, &len));
		assert_int_equal(id, 0);
		assert_int_equal(len, 0);
		assert_false(fake_vq_take_used(&e->vq[1], &id, &len));
	}
}

static void send_hdr(struct env *e, const struct hdr_in *h, const void *payload,
		     uint32_t plen)
{
	uint8_t b[VSOCK_HDR_SIZE];

	build_hdr(b, h);
	send_raw(e, b, sizeof(b), 0, payload, plen);
}

/* A guest packet on (src_port -> dst_port) with the guest's credit. */
static void send_op(struct env *e, uint16_t op, uint32_t src_port,
		    uint32_t dst_port, uint32_t flags)
{
	struct hdr_in h = ghdr(op, src_port, dst_port, 0);

	h.flags = flags;
	h.buf_alloc = e->g_buf_alloc;
	h.fwd_cnt = e->g_fwd_cnt;
	send_hdr(e, &h, NULL, 0);
}

static void send_data(struct env *e, uint32_t src_port, uint32_t dst_port,
		      const void *data, uint32_t len)
{
	struct hdr_in h = ghdr(VSOCK_OP_RW, src_port, dst_port, len);

	h.buf_alloc = e->g_buf_alloc;
	h.fwd_cnt = e->g_fwd_cnt;
	send_hdr(e, &h, data, len);
}

/* Runs the device's host-side events until nothing is ready, waiting up
 * to wait_ms for the first one. */
static void pump_wait(struct env *e, int wait_ms)
{
	struct pollfd p = {.fd = virtio_vsock_poll_fd(&e->dev),
			   .events = POLLIN};

	assert_true(p.fd >= 0);
	for (unsigned i = 0; i < 1000; i++) {
		if (poll(&p, 1, i ? 0 : wait_ms) <= 0)
			return;
		virtio_vsock_handle_events(&e->dev);
	}
	fail_msg("the device's poll fd never went quiet");
}

static void pump(struct env *e)
{
	pump_wait(e, 0);
}

static bool poll_fd_ready(struct env *e)
{
	struct pollfd p = {.fd = virtio_vsock_poll_fd(&e->dev),
			   .events = POLLIN};

	return poll(&p, 1, 0) == 1;
}

static int listen_port(struct env *e, uint32_t port)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_%u", e->path, port);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_true(e->nlisteners < 8);
	e->listen_ports[e->nlisteners] = port;
	e->listeners[e->nlisteners++] = fd;
	return fd;
}

static int accept_nb(int lfd)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};

	if (poll(&p, 1, 1000) != 1)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static int client_connect(struct env *e)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", e->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void write_all(int fd, const void *p, size_t len)
{
	assert_int_equal(send(fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads exactly len bytes within a second. */
static void read_exact(int fd, void *p, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		ssize_t n;

		assert_int_equal(poll(&pf, 1, 1000), 1);
		n = recv(fd, (char *)p + got, len - got, MSG_DONTWAIT);
		assert_true(n > 0);
		got += (size_t)n;
	}
}

/* True once fd reads EOF (or a reset) within wait_ms. */
static bool sees_eof(int fd, int wait_ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	char c;

	if (poll(&pf, 1, wait_ms) != 1)
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

/* Drives the device (its timers included) until the client sees EOF or
 * wait_ms pass: a single pump_wait can return early on a timer armed for
 * an earlier, already closed connection. */
static bool pump_until_eof(struct env *e, int fd, int wait_ms)
{
	int64_t end = now_ms() + wait_ms;

	do {
		pump_wait(e, 20);
		if (sees_eof(fd, 0))
			return true;
	} while (now_ms() < end);
	return false;
}

static bool nothing_to_read(int fd)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};

	return poll(&pf, 1, 0) == 0;
}

/* The guest's next packet, which must be op on (G_PORT-like) ports. */
static void expect_pkt(struct env *e, struct pkt *p, uint16_t op,
		       uint32_t guest_port, uint32_t host_port)
{
	assert_true(recv_pkt(e, p));
	assert_int_equal(p->h.op, op);
	assert_int_equal(p->h.dst_port, guest_port);
	if (host_port)
		assert_int_equal(p->h.src_port, host_port);
}

/* A guest connection to H_PORT through a listener there; returns the
 * host end. */
static int guest_connect(struct env *e, uint32_t gport, int lfd)
{
	struct pkt *p = malloc(sizeof(*p));
	int fd;

	assert_non_null(p);
	send_op(e, VSOCK_OP_REQUEST, gport, H_PORT, 0);
	expect_pkt(e, p, VSOCK_OP_RESPONSE, gport, H_PORT);
	fd = accept_nb(lfd);
	assert_true(fd >= 0);
	free(p);
	return fd;
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + seed + (i >> 8));
}

/* ---- packet checks ---- */

static enum vsock_verdict parse_one(const struct hdr_in *hi, uint32_t hdr_len,
				    uint32_t split, uint32_t payload)
{
	struct virtq_chain *c = fake_chain_new();
	static uint8_t buf[VSOCK_HDR_SIZE + 2 * VSOCK_MAX_PKT];
	struct vsock_hdr h;
	enum vsock_verdict v;

	build_hdr(buf, hi);
	if (split) {
		fake_chain_out(c, buf, split);
		fake_chain_out(c, buf + split, hdr_len - split + payload);
	} else {
		fake_chain_out(c, buf, hdr_len + payload);
	}
	v = vsock_parse_pkt(c, GUEST_CID, &h);
	if (v == VSOCK_PKT_OK) {
		assert_int_equal(h.src_port, hi->src_port);
		assert_int_equal(h.dst_port, hi->dst_port);
		assert_int_equal(h.len, hi->len);
		assert_int_equal(h.op, hi->op);
		assert_int_equal(h.buf_alloc, hi->buf_alloc);
	}
	free(c);
	return v;
}

static void test_parse(void **state)
{
	struct hdr_in h = ghdr(VSOCK_OP_RW, G_PORT, H_PORT, 100);

	(void)state;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 100), VSOCK_PKT_OK);
	/* the header across two segments, cut anywhere */
	for (uint32_t cut = 1; cut < VSOCK_HDR_SIZE; cut += 7)
		assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, cut, 100),
				 VSOCK_PKT_OK);
	/* short header: 43 bytes, even cut in two */
	h.len = 0;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE - 1, 0, 0),
			 VSOCK_PKT_SHORT);
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE - 1, 20, 0),
			 VSOCK_PKT_SHORT);
	/* len past the buffer, past the maximum, payload on a control op */
	h.len = 101;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 100),
			 VSOCK_PKT_BAD_LEN);
	h.len = VSOCK_MAX_PKT + 1;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, VSOCK_MAX_PKT + 1),
			 VSOCK_PKT_BAD_LEN);
	h.len = VSOCK_MAX_PKT;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, VSOCK_MAX_PKT),
			 VSOCK_PKT_OK);
	h = ghdr(VSOCK_OP_REQUEST, G_PORT, H_PORT, 4);
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 4),
			 VSOCK_PKT_BAD_LEN);
	/* type, op, CIDs */
	h = ghdr(VSOCK_OP_REQUEST, G_PORT, H_PORT, 0);
	h.type = 2; /* SEQPACKET, not offered */
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 0),
			 VSOCK_PKT_BAD_TYPE);
	h = ghdr(0, G_PORT, H_PORT, 0);
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 0), VSOCK_PKT_BAD_OP);
	h.op = 8;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 0), VSOCK_PKT_BAD_OP);
	h = ghdr(VSOCK_OP_REQUEST, G_PORT, H_PORT, 0);
	h.src_cid = GUEST_CID + 1;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 0),
			 VSOCK_PKT_BAD_CID);
	h.src_cid = GUEST_CID | 1ull << 32;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 0),
			 VSOCK_PKT_BAD_CID);
	h = ghdr(VSOCK_OP_REQUEST, G_PORT, H_PORT, 0);
	h.dst_cid = 1;
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 0),
			 VSOCK_PKT_BAD_CID);
	h.dst_cid = GUEST_CID; /* guest to itself */
	assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 0),
			 VSOCK_PKT_BAD_CID);
	/* every valid op */
	for (uint16_t op = VSOCK_OP_REQUEST; op <= VSOCK_OP_CREDIT_REQUEST;
	     op++) {
		h = ghdr(op, G_PORT, H_PORT, 0);
		assert_int_equal(parse_one(&h, VSOCK_HDR_SIZE, 0, 0),
				 VSOCK_PKT_OK);
	}
}

/* Malformed packets through the ring: dropped, answered with RST where
 * they can be, and the device keeps serving. */
static void test_bad_packets_on_ring(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	struct hdr_in h;
	uint8_t b[VSOCK_HDR_SIZE];
	int lfd, hfd;

	(void)state;
	post_rx(e, 16);
	/* short header: no reply possible */
	h = ghdr(VSOCK_OP_REQUEST, G_PORT, H_PORT, 0);
	build_hdr(b, &h);
	send_raw(e, b, VSOCK_HDR_SIZE - 1, 0, NULL, 0);
	assert_false(recv_pkt(e, p));
	/* wrong source CID: not answered either */
	h.src_cid = 99;
	send_hdr(e, &h, NULL, 0);
	assert_false(recv_pkt(e, p));
	/* bad op, bad type, len past the buffer: RST */
	h = ghdr(42, G_PORT, H_PORT, 0);
	send_hdr(e, &h, NULL, 0);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	h = ghdr(VSOCK_OP_REQUEST, G_PORT, H_PORT, 0);
	h.type = 2;
	send_hdr(e, &h, NULL, 0);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	h = ghdr(VSOCK_OP_RW, G_PORT, H_PORT, 64);
	send_hdr(e, &h, "short", 5);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	/* a bad RST is not answered with an RST */
	h = ghdr(VSOCK_OP_RST, G_PORT, H_PORT, 3);
	send_hdr(e, &h, NULL, 0);
	assert_false(recv_pkt(e, p));
	assert_int_equal(stats(e).bad_pkts, 6);

	/* a malformed packet on a live connection resets it */
	lfd = listen_port(e, H_PORT);
	hfd = guest_connect(e, G_PORT, lfd);
	h = ghdr(VSOCK_OP_RW, G_PORT, H_PORT, 100);
	send_hdr(e, &h, "x", 1);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	assert_true(sees_eof(hfd, 1000));
	assert_int_equal(stats(e).conns, 0);
	close(hfd);

	/* still serving */
	hfd = guest_connect(e, G_PORT + 1, lfd);
	close(hfd);
	assert_int_equal(e->tr.resets, 0);
	free(p);
	env_free(e);
}

/* ---- connection set-up ---- */

static void test_guest_connect(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	int lfd, hfd;

	(void)state;
	post_rx(e, 8);
	lfd = listen_port(e, H_PORT);
	send_op(e, VSOCK_OP_REQUEST, G_PORT, H_PORT, 0);
	expect_pkt(e, p, VSOCK_OP_RESPONSE, G_PORT, H_PORT);
	assert_int_equal(p->h.buf_alloc, VSOCK_DEFAULT_BUF_ALLOC);
	assert_int_equal(p->h.fwd_cnt, 0);
	assert_int_equal(p->h.len, 0);
	assert_true(e->tr.notified > 0);
	hfd = accept_nb(lfd);
	assert_true(hfd >= 0);
	assert_int_equal(stats(e).conns, 1);
	/* nobody listening on another port: RST */
	send_op(e, VSOCK_OP_REQUEST, G_PORT + 1, H_PORT + 1, 0);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 1, H_PORT + 1);
	assert_int_equal(stats(e).conns, 1);
	/* packets for connections that do not exist: RST */
	send_data(e, G_PORT + 2, H_PORT, "abc", 3);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 2, H_PORT);
	send_op(e, VSOCK_OP_RESPONSE, G_PORT + 3, H_PORT, 0);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 3, H_PORT);
	/* RST for an unknown connection: silence */
	send_op(e, VSOCK_OP_RST, G_PORT + 4, H_PORT, 0);
	assert_false(recv_pkt(e, p));
	close(hfd);
	free(p);
	env_free(e);
}

/* Host client: CONNECT, REQUEST to the guest, RESPONSE, OK <port>. */
static uint32_t host_connect_ok(struct env *e, int cfd, uint32_t gport,
				const char *line)
{
	struct pkt *p = malloc(sizeof(*p));
	char ok[32];
	uint32_t hp;
	int n;

	write_all(cfd, line, strlen(line));
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_REQUEST, gport, 0);
	hp = p->h.src_port;
	assert_true(hp >= 1024);
	assert_int_equal(p->h.buf_alloc, VSOCK_DEFAULT_BUF_ALLOC);
	assert_true(nothing_to_read(cfd));
	send_op(e, VSOCK_OP_RESPONSE, gport, hp, 0);
	n = snprintf(ok, sizeof(ok), "OK %u\n", hp);
	{
		char got[32];

		read_exact(cfd, got, (size_t)n);
		assert_memory_equal(got, ok, (size_t)n);
	}
	free(p);
	return hp;
}

static void test_host_connect(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	uint32_t hp, hp2;
	char buf[16];
	int cfd, cfd2;

	(void)state;
	post_rx(e, 16);
	cfd = client_connect(e);
	pump(e);
	hp = host_connect_ok(e, cfd, 52, "CONNECT 52\n");
	/* a second client, lower case and CRLF, gets another host port */
	cfd2 = client_connect(e);
	pump(e);
	hp2 = host_connect_ok(e, cfd2, 52, "connect 52\r\n");
	assert_int_not_equal(hp, hp2);
	assert_int_equal(stats(e).conns, 2);

	/* data both ways on the first */
	write_all(cfd, "ping", 4);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_RW, 52, hp);
	assert_int_equal(p->h.len, 4);
	assert_memory_equal(p->data, "ping", 4);
	send_data(e, 52, hp, "pong", 4);
	read_exact(cfd, buf, 4);
	assert_memory_equal(buf, "pong", 4);
	close(cfd);
	close(cfd2);
	free(p);
	env_free(e);
}

/* Data right behind the CONNECT line belongs to the guest. */
static void test_host_connect_data_after_line(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	uint32_t hp;
	char ok[32];
	int cfd, n;

	(void)state;
	post_rx(e, 16);
	cfd = client_connect(e);
	write_all(cfd, "CONNECT 7\nhello", 15);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_REQUEST, 7, 0);
	hp = p->h.src_port;
	assert_false(recv_pkt(e, p)); /* no data before the answer */
	send_op(e, VSOCK_OP_RESPONSE, 7, hp, 0);
	n = snprintf(ok, sizeof(ok), "OK %u\n", hp);
	{
		char got[32];

		read_exact(cfd, got, (size_t)n);
		assert_memory_equal(got, ok, (size_t)n);
	}
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_RW, 7, hp);
	assert_int_equal(p->h.len, 5);
	assert_memory_equal(p->data, "hello", 5);
	close(cfd);
	free(p);
	env_free(e);
}

static void test_host_connect_refused(void **state)
{
	struct virtio_vsock_config cfg = {.connect_ms = 100};
	struct env *e = env_new_cfg(&cfg);
	struct pkt *p = malloc(sizeof(*p));
	int cfd;

	(void)state;
	post_rx(e, 16);
	/* the guest answers RST: the client is closed */
	cfd = client_connect(e);
	write_all(cfd, "CONNECT 9\n", 10);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_REQUEST, 9, 0);
	send_op(e, VSOCK_OP_RST, 9, p->h.src_port, 0);
	assert_true(sees_eof(cfd, 1000));
	close(cfd);
	assert_int_equal(stats(e).conns, 0);

	/* the guest does not answer: closed after the timeout, and the
	 * guest is told to forget the request */
	cfd = client_connect(e);
	write_all(cfd, "CONNECT 10\n", 11);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_REQUEST, 10, 0);
	assert_true(pump_until_eof(e, cfd, 2000));
	expect_pkt(e, p, VSOCK_OP_RST, 10, 0);
	close(cfd);
	assert_int_equal(stats(e).conns, 0);

	/* a client that never sends its line is closed too */
	cfd = client_connect(e);
	pump(e);
	assert_int_equal(stats(e).conns, 1);
	assert_true(pump_until_eof(e, cfd, 2000));
	close(cfd);
	assert_int_equal(stats(e).conns, 0);
	assert_false(recv_pkt(e, p));
	free(p);
	env_free(e);
}

static void test_bad_connect_lines(void **state)
{
	static const char *const bad[] = {
		"CONNECT\n",
		"CONNECT \n",
		"CONNECT x\n",
		"CONNECT 12x\n",
		"CONNECT -1\n",
		"CONNECT 4294967296\n",
		"CONNECT 99999999999999999999\n",
		"CONNECTT 1\n",
		"HELLO 1\n",
		"\n",
		"CONNECT 1 2\n",
		"0123456789012345678901234567890123456789", /* no newline */
	};
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));

	(void)state;
	post_rx(e, 16);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int cfd = client_connect(e);

		write_all(cfd, bad[i], strlen(bad[i]));
		pump_wait(e, 100);
		pump(e);
		assert_true(sees_eof(cfd, 1000));
		close(cfd);
		assert_int_equal(stats(e).conns, 0);
	}
	assert_false(recv_pkt(e, p));
	/* the largest port is fine */
	{
		int cfd = client_connect(e);

		write_all(cfd, "CONNECT 4294967295\n", 19);
		pump_wait(e, 100);
		expect_pkt(e, p, VSOCK_OP_REQUEST, 4294967295u, 0);
		close(cfd);
	}
	free(p);
	env_free(e);
}

/* A CONNECT before the driver is up is refused. */
static void test_connect_before_driver(void **state)
{
	struct env *e = env_new();
	int cfd;

	(void)state;
	e->dev.status = 0;
	cfd = client_connect(e);
	write_all(cfd, "CONNECT 1\n", 10);
	pump_wait(e, 100);
	assert_true(sees_eof(cfd, 1000));
	close(cfd);
	assert_int_equal(stats(e).conns, 0);
	env_free(e);
}

/* ---- data ---- */

static void test_rw_guest_to_host(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	size_t total = 300 * 1024, sent = 0;
	uint8_t *data = malloc(total), *got = malloc(total);
	int lfd, hfd;

	(void)state;
	post_rx(e, 32);
	lfd = listen_port(e, H_PORT);
	hfd = guest_connect(e, G_PORT, lfd);
	fill_pattern(data, total, 1);
	/* chunks up to the maximum, the host reading as it goes; the
	 * header cut in two on some */
	while (sent < total) {
		uint32_t n =
			(uint32_t)(total - sent > 50000 ? 50000 : total - sent);
		struct hdr_in h = ghdr(VSOCK_OP_RW, G_PORT, H_PORT, n);
		uint8_t b[VSOCK_HDR_SIZE];

		build_hdr(b, &h);
		send_raw(e, b, VSOCK_HDR_SIZE, sent % 3 ? 13 : 0, data + sent,
			 n);
		read_exact(hfd, got + sent, n);
		sent += n;
	}
	assert_memory_equal(got, data, total);
	assert_int_equal(stats(e).tx_bytes, total);
	assert_int_equal(stats(e).credit_violations, 0);
	/* the device told the guest about the space it freed */
	{
		bool update = false;

		while (recv_pkt(e, p)) {
			assert_int_equal(p->h.op, VSOCK_OP_CREDIT_UPDATE);
			assert_true(p->h.fwd_cnt <= total);
			update = true;
		}
		assert_true(update);
	}
	send_op(e, VSOCK_OP_CREDIT_REQUEST, G_PORT, H_PORT, 0);
	expect_pkt(e, p, VSOCK_OP_CREDIT_UPDATE, G_PORT, H_PORT);
	assert_int_equal(p->h.fwd_cnt, (uint32_t)total);
	assert_int_equal(p->h.buf_alloc, VSOCK_DEFAULT_BUF_ALLOC);
	close(hfd);
	free(data);
	free(got);
	free(p);
	env_free(e);
}

/* Writes as much of data[*fed..total) as the socket takes now. */
static void feed(int fd, const uint8_t *data, size_t total, size_t *fed)
{
	while (*fed < total) {
		ssize_t n = send(fd, data + *fed, total - *fed,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n <= 0) {
			assert_true(n < 0 && errno == EAGAIN);
			return;
		}
		*fed += (size_t)n;
	}
}

/* Host to guest: byte-exact, never beyond the guest's credit, and asks
 * for credit when it runs out. */
static void test_rw_host_to_guest_credit(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	size_t total = 1024 * 1024, got_len = 0, fed = 0;
	uint8_t *data = malloc(total), *got = malloc(total);
	uint32_t credit_reqs = 0, full_windows = 0;
	int lfd, hfd, rounds = 0;

	(void)state;
	e->g_buf_alloc = 60000; /* not a multiple of the rx buffers */
	post_rx(e, 32);
	lfd = listen_port(e, H_PORT);
	hfd = guest_connect(e, G_PORT, lfd);
	fill_pattern(data, total, 7);
	while (got_len < total) {
		bool had_window = fed - got_len >= e->g_buf_alloc;

		assert_true(++rounds < 10000);
		feed(hfd, data, total, &fed);
		had_window = fed - got_len >= e->g_buf_alloc;
		pump_wait(e, 10);
		while (recv_pkt(e, p)) {
			post_rx(e, 1);
			if (p->h.op == VSOCK_OP_CREDIT_REQUEST) {
				credit_reqs++;
				continue;
			}
			assert_int_equal(p->h.op, VSOCK_OP_RW);
			assert_int_equal(p->h.src_port, H_PORT);
			assert_true(p->h.len > 0 && p->h.len <= 4096);
			assert_true(got_len + p->h.len <= total);
			memcpy(got + got_len, p->data, p->h.len);
			got_len += p->h.len;
		}
		/* never more than the guest's buf_alloc in flight, and all
		 * of it when the host had that much */
		assert_true(got_len - e->g_fwd_cnt <= e->g_buf_alloc);
		if (had_window && got_len - e->g_fwd_cnt == e->g_buf_alloc)
			full_windows++;
		/* the guest's reader catches up and says so */
		e->g_fwd_cnt = (uint32_t)got_len;
		send_op(e, VSOCK_OP_CREDIT_UPDATE, G_PORT, H_PORT, 0);
	}
	assert_memory_equal(got, data, total);
	assert_true(full_windows > 0);
	assert_true(credit_reqs >= 1);
	assert_int_equal(stats(e).rx_bytes, total);
	close(hfd);
	free(data);
	free(got);
	free(p);
	env_free(e);
}

/* The host does not read: the device buffers at most buf_alloc, a guest
 * within its credit is never reset, one beyond it is. */
static void test_backpressure_slow_host(void **state)
{
	struct virtio_vsock_config cfg = {.buf_alloc = 64 * 1024};
	struct env *e = env_new_cfg(&cfg);
	struct pkt *p = malloc(sizeof(*p));
	size_t cap = 8u << 20, sent = 0, got_len = 0;
	uint8_t *data = malloc(cap), *got = malloc(cap);
	uint32_t peer_fwd = 0;
	int lfd, hfd, rounds = 0;
	bool rst = false;

	(void)state;
	post_rx(e, 32);
	lfd = listen_port(e, H_PORT);
	hfd = guest_connect(e, G_PORT, lfd);
	fill_pattern(data, cap, 3);
	/* an honest guest: sends while credit lasts */
	for (;;) {
		uint32_t credit = cfg.buf_alloc - (uint32_t)(sent - peer_fwd);
		uint32_t n = credit < 16384 ? credit : 16384;

		if (!n)
			break;
		assert_true(sent + n <= cap);
		send_data(e, G_PORT, H_PORT, data + sent, n);
		sent += n;
		while (recv_pkt(e, p)) {
			assert_int_equal(p->h.op, VSOCK_OP_CREDIT_UPDATE);
			peer_fwd = p->h.fwd_cnt;
			post_rx(e, 1);
		}
		assert_true(stats(e).queued_bytes <= cfg.buf_alloc);
		assert_true(++rounds < 10000);
	}
	/* the socket is full and so is the device's buffer, as far as the
	 * guest knows */
	assert_true(stats(e).queued_bytes > 0);
	assert_true(stats(e).queued_bytes <= sent - peer_fwd);
	assert_int_equal(stats(e).credit_violations, 0);
	pump(e);
	assert_false(recv_pkt(e, p));
	assert_false(poll_fd_ready(e));

	/* the host reads everything: the device drains and advertises */
	for (rounds = 0; got_len < sent; rounds++) {
		struct pollfd pf = {.fd = hfd, .events = POLLIN};
		ssize_t n;

		assert_true(rounds < 10000);
		if (poll(&pf, 1, 0) == 1) {
			n = recv(hfd, got + got_len, sent - got_len,
				 MSG_DONTWAIT);
			assert_true(n > 0);
			got_len += (size_t)n;
		}
		pump_wait(e, 10);
	}
	assert_memory_equal(got, data, sent);
	assert_int_equal(stats(e).queued_bytes, 0);
	while (recv_pkt(e, p)) {
		assert_int_equal(p->h.op, VSOCK_OP_CREDIT_UPDATE);
		peer_fwd = p->h.fwd_cnt;
		post_rx(e, 1);
	}
	assert_int_equal(peer_fwd, (uint32_t)sent);

	/* a guest that ignores credit: reset once the device would need
	 * more than buf_alloc, never holding more */
	for (rounds = 0; rounds < 1000 && !rst; rounds++) {
		send_data(e, G_PORT, H_PORT, data, 60000);
		assert_true(stats(e).queued_bytes <= cfg.buf_alloc);
		while (recv_pkt(e, p)) {
			rst |= p->h.op == VSOCK_OP_RST;
			post_rx(e, 1);
		}
	}
	assert_true(rst);
	assert_int_equal(stats(e).credit_violations, 1);
	assert_int_equal(stats(e).conns, 0);
	assert_int_equal(stats(e).queued_bytes, 0);
	close(hfd);
	free(data);
	free(got);
	free(p);
	env_free(e);
}

/* No rx buffers: the device stops reading the host socket (and does not
 * spin on it) until the guest posts some. */
static void test_backpressure_no_rx_buffers(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	size_t total = 64 * 1024, got_len = 0;
	uint8_t *data = malloc(total), *got = malloc(total);
	int lfd, hfd;

	(void)state;
	post_rx(e, 1);
	lfd = listen_port(e, H_PORT);
	hfd = guest_connect(e, G_PORT, lfd);
	assert_int_equal(e->rx_out, 0);
	fill_pattern(data, total, 9);
	write_all(hfd, data, total);
	pump_wait(e, 100);
	assert_int_equal(stats(e).rx_bytes, 0);
	assert_false(poll_fd_ready(e));
	for (unsigned i = 0; i < 100; i++)
		virtio_vsock_handle_events(&e->dev);
	assert_int_equal(stats(e).rx_bytes, 0);

	/* buffers arrive: only as much as they hold is read */
	post_rx(e, 2);
	assert_int_equal(stats(e).rx_bytes, 8192);
	pump(e);
	assert_int_equal(stats(e).rx_bytes, 8192);
	while (got_len < total) {
		while (recv_pkt(e, p)) {
			assert_int_equal(p->h.op, VSOCK_OP_RW);
			memcpy(got + got_len, p->data, p->h.len);
			got_len += p->h.len;
		}
		if (got_len < total)
			post_rx(e, 4);
		pump_wait(e, 10);
	}
	assert_memory_equal(got, data, total);
	close(hfd);
	free(data);
	free(got);
	free(p);
	env_free(e);
}

/* Queues guest data the host does not read yet; returns bytes sent. */
static size_t fill_host_socket(struct env *e, uint32_t gport,
			       const uint8_t *data, size_t max)
{
	struct pkt *p = malloc(sizeof(*p));
	size_t sent = 0;

	while (sent + 60000 <= max && stats(e).queued_bytes < 100000) {
		send_data(e, gport, H_PORT, data + sent, 60000);
		sent += 60000;
		while (recv_pkt(e, p)) {
			assert_int_equal(p->h.op, VSOCK_OP_CREDIT_UPDATE);
			post_rx(e, 1);
		}
	}
	assert_true(stats(e).queued_bytes >= 100000);
	assert_int_equal(stats(e).credit_violations, 0);
	free(p);
	return sent;
}

/* Reads everything up to EOF, letting the device run in between. */
static size_t read_to_eof(struct env *e, int fd, uint8_t *buf, size_t max)
{
	size_t got = 0;

	for (unsigned i = 0; i < 10000; i++) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&pf, 1, 0) == 1) {
			n = recv(fd, buf + got, max - got, MSG_DONTWAIT);
			if (n == 0)
				return got;
			assert_true(n > 0);
			got += (size_t)n;
		}
		pump_wait(e, 10);
	}
	fail_msg("no EOF");
	return got;
}

/* Guest data queued for a slow host still arrives, in full, before the
 * EOF a SHUTDOWN or close causes; a host that never reads is given up
 * on after close_ms. */
static void test_drain_then_close(void **state)
{
	struct virtio_vsock_config cfg = {.close_ms = 300};
	struct env *e = env_new_cfg(&cfg);
	struct pkt *p = malloc(sizeof(*p));
	size_t cap = 1u << 20, sent, got;
	uint8_t *data = malloc(cap), *buf = malloc(cap);
	int64_t t0;
	int lfd, hfd;

	(void)state;
	post_rx(e, 32);
	lfd = listen_port(e, H_PORT);
	fill_pattern(data, cap, 5);

	/* SHUTDOWN(SEND): EOF only after the queue drained */
	hfd = guest_connect(e, G_PORT, lfd);
	sent = fill_host_socket(e, G_PORT, data, cap);
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT, H_PORT, VSOCK_SHUTDOWN_SEND);
	assert_false(recv_pkt(e, p));
	got = read_to_eof(e, hfd, buf, cap);
	assert_int_equal(got, sent);
	assert_memory_equal(buf, data, sent);
	/* the guest learns the whole buffer is free again */
	{
		uint32_t fwd = 0;

		while (recv_pkt(e, p)) {
			assert_int_equal(p->h.op, VSOCK_OP_CREDIT_UPDATE);
			fwd = p->h.fwd_cnt;
			post_rx(e, 1);
		}
		assert_int_equal(fwd, (uint32_t)sent);
	}
	assert_int_equal(stats(e).conns, 1); /* still open the other way */
	write_all(hfd, "r", 1);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_RW, G_PORT, H_PORT);
	close(hfd);
	send_op(e, VSOCK_OP_RST, G_PORT, H_PORT, 0);
	assert_int_equal(stats(e).conns, 0);

	/* a full close: RST at once, the queue still drains, then EOF */
	hfd = guest_connect(e, G_PORT + 1, lfd);
	sent = fill_host_socket(e, G_PORT + 1, data, cap);
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT + 1, H_PORT,
		VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 1, H_PORT);
	post_rx(e, 1);
	assert_int_equal(stats(e).conns, 1);
	got = read_to_eof(e, hfd, buf, cap);
	assert_int_equal(got, sent);
	assert_memory_equal(buf, data, sent);
	assert_int_equal(stats(e).conns, 0);
	assert_int_equal(stats(e).queued_bytes, 0);
	assert_false(recv_pkt(e, p));
	close(hfd);

	/* the host never reads: dropped after close_ms */
	hfd = guest_connect(e, G_PORT + 2, lfd);
	fill_host_socket(e, G_PORT + 2, data, cap);
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT + 2, H_PORT,
		VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 2, H_PORT);
	t0 = mono_ms();
	while (stats(e).conns && mono_ms() - t0 < 3000)
		pump_wait(e, 50);
	assert_int_equal(stats(e).conns, 0);
	assert_true(mono_ms() - t0 >= 250);
	assert_int_equal(stats(e).queued_bytes, 0);
	close(hfd);
	free(data);
	free(buf);
	free(p);
	env_free(e);
}

/* Packets that do not fit the connection's state reset it. */
static void test_protocol_violations(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	int lfd, hfd, cfd;

	(void)state;
	post_rx(e, 32);
	lfd = listen_port(e, H_PORT);
	/* RESPONSE on a connection the guest opened */
	hfd = guest_connect(e, G_PORT, lfd);
	send_op(e, VSOCK_OP_RESPONSE, G_PORT, H_PORT, 0);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	assert_true(sees_eof(hfd, 1000));
	close(hfd);
	/* data before answering a host CONNECT */
	cfd = client_connect(e);
	write_all(cfd, "CONNECT   77\n", 13); /* extra spaces are fine */
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_REQUEST, 77, 0);
	send_data(e, 77, p->h.src_port, "early", 5);
	expect_pkt(e, p, VSOCK_OP_RST, 77, p->h.src_port);
	assert_true(sees_eof(cfd, 1000));
	close(cfd);
	assert_int_equal(stats(e).conns, 0);
	/* a new REQUEST on a pair the host closed (waiting for the guest's
	 * RST) starts a new connection */
	hfd = guest_connect(e, G_PORT, lfd);
	close(hfd);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_SHUTDOWN, G_PORT, H_PORT);
	send_op(e, VSOCK_OP_CREDIT_REQUEST, G_PORT, H_PORT, 0);
	assert_false(recv_pkt(e, p));
	hfd = guest_connect(e, G_PORT, lfd);
	assert_int_equal(stats(e).conns, 1);
	send_data(e, G_PORT, H_PORT, "new", 3);
	{
		char b[3];

		read_exact(hfd, b, 3);
		assert_memory_equal(b, "new", 3);
	}
	close(hfd);
	free(p);
	env_free(e);
}

/* ---- limits, shutdown, reset ---- */

static void test_conn_limit(void **state)
{
	struct virtio_vsock_config cfg = {.max_conns = 2};
	struct env *e = env_new_cfg(&cfg);
	struct pkt *p = malloc(sizeof(*p));
	int lfd, h1, h2, cfd;

	(void)state;
	post_rx(e, 16);
	lfd = listen_port(e, H_PORT);
	h1 = guest_connect(e, G_PORT, lfd);
	h2 = guest_connect(e, G_PORT + 1, lfd);
	send_op(e, VSOCK_OP_REQUEST, G_PORT + 2, H_PORT, 0);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 2, H_PORT);
	assert_int_equal(stats(e).limit_refused, 1);
	/* a host client over the limit is closed at once */
	cfd = client_connect(e);
	pump_wait(e, 100);
	assert_true(sees_eof(cfd, 1000));
	close(cfd);
	assert_int_equal(stats(e).limit_refused, 2);
	/* one closes: room again */
	send_op(e, VSOCK_OP_RST, G_PORT, H_PORT, 0);
	assert_true(sees_eof(h1, 1000));
	close(h1);
	close(guest_connect(e, G_PORT + 2, lfd));
	close(h2);
	free(p);
	env_free(e);
}

static void test_shutdown_from_guest(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	char buf[8];
	int lfd, hfd;

	(void)state;
	post_rx(e, 16);
	lfd = listen_port(e, H_PORT);
	hfd = guest_connect(e, G_PORT, lfd);
	/* SEND: the host reads the data, then EOF, and can still write */
	send_data(e, G_PORT, H_PORT, "last", 4);
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT, H_PORT, VSOCK_SHUTDOWN_SEND);
	read_exact(hfd, buf, 4);
	assert_memory_equal(buf, "last", 4);
	assert_true(sees_eof(hfd, 1000));
	write_all(hfd, "reply", 5);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_RW, G_PORT, H_PORT);
	assert_memory_equal(p->data, "reply", 5);
	/* data after SHUTDOWN(SEND) is a violation */
	send_data(e, G_PORT, H_PORT, "more", 4);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	assert_int_equal(stats(e).conns, 0);
	close(hfd);

	/* both flags: a full close, answered with RST */
	hfd = guest_connect(e, G_PORT + 1, lfd);
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT + 1, H_PORT,
		VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 1, H_PORT);
	assert_true(sees_eof(hfd, 1000));
	assert_int_equal(stats(e).conns, 0);
	close(hfd);

	/* RCV then SEND in two packets does the same */
	hfd = guest_connect(e, G_PORT + 2, lfd);
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT + 2, H_PORT, VSOCK_SHUTDOWN_RCV);
	assert_false(recv_pkt(e, p));
	/* the host's writes now fail instead of piling up */
	assert_int_equal(send(hfd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT), -1);
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT + 2, H_PORT, VSOCK_SHUTDOWN_SEND);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 2, H_PORT);
	assert_int_equal(stats(e).conns, 0);
	close(hfd);
	free(p);
	env_free(e);
}

static void test_close_from_host(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	char buf[8];
	int lfd, hfd;

	(void)state;
	post_rx(e, 16);
	lfd = listen_port(e, H_PORT);
	/* half close: SHUTDOWN(SEND) after the data, the guest may still
	 * send */
	hfd = guest_connect(e, G_PORT, lfd);
	write_all(hfd, "bye", 3);
	shutdown(hfd, SHUT_WR);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_RW, G_PORT, H_PORT);
	assert_memory_equal(p->data, "bye", 3);
	expect_pkt(e, p, VSOCK_OP_SHUTDOWN, G_PORT, H_PORT);
	assert_int_equal(p->h.flags, VSOCK_SHUTDOWN_SEND);
	send_data(e, G_PORT, H_PORT, "ack", 3);
	read_exact(hfd, buf, 3);
	assert_memory_equal(buf, "ack", 3);
	close(hfd);
	/* the guest writes again: the host is gone, RST */
	send_data(e, G_PORT, H_PORT, "more", 4);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	assert_int_equal(stats(e).conns, 0);

	/* full close: SHUTDOWN(RCV|SEND), the guest's RST ends it */
	hfd = guest_connect(e, G_PORT + 1, lfd);
	close(hfd);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_SHUTDOWN, G_PORT + 1, H_PORT);
	assert_int_equal(p->h.flags, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
	/* the guest's reader may still update credit meanwhile */
	send_op(e, VSOCK_OP_CREDIT_UPDATE, G_PORT + 1, H_PORT, 0);
	assert_false(recv_pkt(e, p));
	assert_int_equal(stats(e).conns, 1);
	send_op(e, VSOCK_OP_RST, G_PORT + 1, H_PORT, 0);
	assert_false(recv_pkt(e, p));
	assert_int_equal(stats(e).conns, 0);

	/* full close answered by the guest's SHUTDOWN: we send the RST */
	hfd = guest_connect(e, G_PORT + 2, lfd);
	close(hfd);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_SHUTDOWN, G_PORT + 2, H_PORT);
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT + 2, H_PORT,
		VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT + 2, H_PORT);
	assert_int_equal(stats(e).conns, 0);
	free(p);
	env_free(e);
}

/* The guest never answers our SHUTDOWN: RST after close_ms. */
static void test_close_timeout(void **state)
{
	struct virtio_vsock_config cfg = {.close_ms = 100};
	struct env *e = env_new_cfg(&cfg);
	struct pkt *p = malloc(sizeof(*p));
	int64_t t0;
	int lfd, hfd;

	(void)state;
	post_rx(e, 16);
	lfd = listen_port(e, H_PORT);
	hfd = guest_connect(e, G_PORT, lfd);
	close(hfd);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_SHUTDOWN, G_PORT, H_PORT);
	t0 = mono_ms();
	while (stats(e).conns && mono_ms() - t0 < 2000)
		pump_wait(e, 50);
	assert_int_equal(stats(e).conns, 0);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	free(p);
	env_free(e);
}

static void test_rst_and_reset_cleanup(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	int lfd, h1, h2, cfd;

	(void)state;
	post_rx(e, 16);
	lfd = listen_port(e, H_PORT);
	h1 = guest_connect(e, G_PORT, lfd);
	send_op(e, VSOCK_OP_RST, G_PORT, H_PORT, 0);
	assert_true(sees_eof(h1, 1000));
	assert_false(recv_pkt(e, p));
	assert_int_equal(stats(e).conns, 0);
	close(h1);

	/* a REQUEST on a pair in use resets it */
	h1 = guest_connect(e, G_PORT, lfd);
	send_op(e, VSOCK_OP_REQUEST, G_PORT, H_PORT, 0);
	expect_pkt(e, p, VSOCK_OP_RST, G_PORT, H_PORT);
	assert_true(sees_eof(h1, 1000));
	close(h1);

	/* a driver reset closes everything, a host client mid-line stays */
	h1 = guest_connect(e, G_PORT, lfd);
	h2 = guest_connect(e, G_PORT + 1, lfd);
	cfd = client_connect(e);
	pump(e);
	assert_int_equal(stats(e).conns, 3);
	virtio_dev_reset(&e->dev);
	assert_true(sees_eof(h1, 1000));
	assert_true(sees_eof(h2, 1000));
	assert_int_equal(stats(e).conns, 1);
	/* its CONNECT comes with no driver: closed */
	write_all(cfd, "CONNECT 1\n", 10);
	pump_wait(e, 100);
	assert_true(sees_eof(cfd, 1000));
	assert_int_equal(stats(e).conns, 0);
	close(h1);
	close(h2);
	close(cfd);
	free(p);
	env_free(e);
}

/* A broken rx ring fails the device; its connections are dropped. */
static void test_broken_ring(void **state)
{
	struct env *e = env_new();
	int lfd, hfd;

	(void)state;
	post_rx(e, 1);
	lfd = listen_port(e, H_PORT);
	hfd = guest_connect(e, G_PORT, lfd);
	fake_vq_desc(&e->vq[0], 5, RAM_SIZE - 8, 4096, VIRTQ_DESC_F_WRITE, 0);
	fake_vq_publish(&e->vq[0], 5);
	write_all(hfd, "data", 4);
	pump_wait(e, 100);
	assert_int_equal(e->tr.resets, 1);
	assert_true(e->dev.status & VIRTIO_STATUS_NEEDS_RESET);
	pump(e);
	assert_int_equal(stats(e).conns, 0);
	assert_true(sees_eof(hfd, 1000));
	close(hfd);
	env_free(e);
}

static void test_small_rx_buffers(void **state)
{
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	int lfd, hfd;

	(void)state;
	lfd = listen_port(e, H_PORT);
	/* too small for a header: handed back empty; header-only: a
	 * packet without data */
	post_rx_sized(e, 1, 10);
	send_op(e, VSOCK_OP_REQUEST, G_PORT, H_PORT, 0);
	{
		uint32_t id, len;

		assert_true(fake_vq_take_used(&e->vq[0], &id, &len));
		assert_int_equal(len, 0);
		e->rx_out--;
	}
	assert_int_equal(stats(e).short_rx_bufs, 1);
	post_rx_sized(e, 1, VSOCK_HDR_SIZE);
	expect_pkt(e, p, VSOCK_OP_RESPONSE, G_PORT, H_PORT);
	hfd = accept_nb(lfd);
	write_all(hfd, "abc", 3);
	post_rx_sized(e, 1, VSOCK_HDR_SIZE);
	pump_wait(e, 100);
	expect_pkt(e, p, VSOCK_OP_CREDIT_UPDATE, G_PORT, H_PORT);
	post_rx_sized(e, 1, VSOCK_HDR_SIZE + 2);
	expect_pkt(e, p, VSOCK_OP_RW, G_PORT, H_PORT);
	assert_int_equal(p->h.len, 2);
	assert_memory_equal(p->data, "ab", 2);
	post_rx(e, 1);
	expect_pkt(e, p, VSOCK_OP_RW, G_PORT, H_PORT);
	assert_int_equal(p->h.len, 1);
	assert_memory_equal(p->data, "c", 1);
	close(hfd);
	free(p);
	env_free(e);
}

/* ---- creation, config, fds ---- */

static void test_create_and_config(void **state)
{
	struct virtio_vsock_config cfg;
	struct virtio_dev dev;
	char dir[] = "/tmp/kiln-vsock-cfg-XXXXXX", path[256], longp[200];
	uint8_t c[8];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/v.sock", dir);
	memset(&cfg, 0, sizeof(cfg));
	memset(&dev, 0, sizeof(dev));
	dev.log = &test_log;
	cfg.uds_path = path;
	cfg.guest_cid = 2;
	assert_int_equal(virtio_vsock_create(&cfg, &dev), -EINVAL);
	cfg.guest_cid = UINT32_MAX;
	assert_int_equal(virtio_vsock_create(&cfg, &dev), -EINVAL);
	cfg.guest_cid = 0x12345678;
	cfg.buf_alloc = 100;
	assert_int_equal(virtio_vsock_create(&cfg, &dev), -EINVAL);
	cfg.buf_alloc = 0;
	cfg.max_conns = VSOCK_MAX_CONNS + 1;
	assert_int_equal(virtio_vsock_create(&cfg, &dev), -EINVAL);
	cfg.max_conns = 0;
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	cfg.uds_path = longp;
	assert_int_equal(virtio_vsock_create(&cfg, &dev), -ENAMETOOLONG);
	cfg.uds_path = "";
	assert_int_equal(virtio_vsock_create(&cfg, &dev), -EINVAL);
	assert_null(dev.ops);

	/* a regular file is never replaced */
	cfg.uds_path = path;
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(virtio_vsock_create(&cfg, &dev), -EEXIST);
	unlink(path);

	assert_int_equal(virtio_vsock_create(&cfg, &dev), 0);
	assert_int_equal(dev.ops->device_id, VIRTIO_ID_VSOCK);
	assert_int_equal(dev.ops->num_queues, 3);
	assert_int_equal(dev.ops->config_size, 8);
	dev.ops->config_read(&dev, 0, c, 8);
	assert_int_equal(c[0], 0x78);
	assert_int_equal(c[3], 0x12);
	assert_int_equal(c[4], 0);
	dev.ops->config_read(&dev, 4, c, 4);
	assert_int_equal(c[0], 0);
	dev.ops->config_read(&dev, 6, c, 4); /* past the end: zeros */
	assert_int_equal(c[0], 0);
	dev.ops->config_write(&dev, 0, c, 8); /* read-only: ignored */
	dev.ops->config_read(&dev, 0, c, 8);
	assert_int_equal(c[0], 0x78);
	/* no SEQPACKET */
	assert_int_equal(virtio_dev_features(&dev) & 0xffffff, 0);
	/* a second device on a live socket is refused... */
	{
		struct virtio_dev d2;

		memset(&d2, 0, sizeof(d2));
		assert_int_equal(virtio_vsock_create(&cfg, &d2), -EADDRINUSE);
	}
	/* ...a stale one (nobody listening) is replaced */
	{
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		struct virtio_dev d2;
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		char stale[80];

		snprintf(stale, sizeof(stale), "%s/stale.sock", dir);
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", stale);
		assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
		close(s);
		memset(&d2, 0, sizeof(d2));
		cfg.uds_path = stale;
		assert_int_equal(virtio_vsock_create(&cfg, &d2), 0);
		virtio_vsock_destroy(&d2);
		assert_int_equal(access(stale, F_OK), -1);
	}
	virtio_vsock_destroy(&dev);
	virtio_vsock_destroy(&dev);
	virtio_vsock_destroy(NULL);
	assert_int_equal(virtio_vsock_poll_fd(&dev), -1);
	virtio_vsock_handle_events(&dev);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(rmdir(dir), 0);
}

/* Connections in every state, then destroy: every fd is closed. */
static void test_no_fd_leaks(void **state)
{
	unsigned before = count_fds();
	struct env *e = env_new();
	struct pkt *p = malloc(sizeof(*p));
	int lfd, h[4], c[3];
	uint8_t big[60000];

	(void)state;
	post_rx(e, 32);
	lfd = listen_port(e, H_PORT);
	for (unsigned i = 0; i < 4; i++)
		h[i] = guest_connect(e, G_PORT + i, lfd);
	/* one with data queued for a host that does not read */
	memset(big, 1, sizeof(big));
	for (unsigned i = 0; i < 6; i++)
		send_data(e, G_PORT, H_PORT, big, sizeof(big));
	assert_true(stats(e).queued_bytes > 0);
	/* one closed by the guest while data is queued (draining) */
	for (unsigned i = 0; i < 6; i++)
		send_data(e, G_PORT + 1, H_PORT, big, sizeof(big));
	send_op(e, VSOCK_OP_SHUTDOWN, G_PORT + 1, H_PORT,
		VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
	/* one closed by the host */
	close(h[2]);
	pump_wait(e, 100);
	/* host clients: mid-line, connecting, connected */
	c[0] = client_connect(e);
	c[1] = client_connect(e);
	c[2] = client_connect(e);
	write_all(c[1], "CONNECT 5\n", 10);
	write_all(c[2], "CONNECT 6\n", 10);
	pump_wait(e, 100);
	while (recv_pkt(e, p)) {
		if (p->h.op == VSOCK_OP_REQUEST && p->h.dst_port == 6)
			send_op(e, VSOCK_OP_RESPONSE, 6, p->h.src_port, 0);
	}
	assert_true(stats(e).conns >= 7);
	free(p);
	env_free(e);
	for (unsigned i = 0; i < 4; i++)
		if (i != 2)
			close(h[i]);
	for (unsigned i = 0; i < 3; i++)
		close(c[i]);
	assert_int_equal(count_fds(), before);
}

/* Snapshots: no connection may be open; a restore delivers
 * TRANSPORT_RESET on the event queue (id 0, 4 bytes). */
static void test_snapshot(void **state)
{
	struct env *e = env_new();
	struct snapshot_writer w;
	struct snapshot_reader r;
	uint32_t id, len, ev;
	int lfd, fd;

	(void)state;
	/* one posted event buffer */
	memset(e->ram + TX_AREA + 0x10000, 0xff, 8);
	fake_vq_desc(&e->vq[2], 0, TX_AREA + 0x10000, 8, VIRTQ_DESC_F_WRITE, 0);
	fake_vq_publish(&e->vq[2], 0);
	e->dev.ops->queue_notify(&e->dev, VSOCK_QUEUE_EVENT);
	assert_false(fake_vq_take_used(&e->vq[2], &id, &len)); /* kept */

	/* an open connection: refused */
	post_rx(e, 4);
	lfd = listen_port(e, H_PORT);
	fd = guest_connect(e, G_PORT, lfd);
	snapshot_writer_init(&w);
	assert_int_equal(e->dev.ops->save(&e->dev, &w), -EBUSY);
	snapshot_writer_free(&w);
	/* closed both ways (the guest's RST): saved */
	close(fd);
	send_op(e, VSOCK_OP_RST, G_PORT, H_PORT, 0);
	pump(e);
	snapshot_writer_init(&w);
	assert_int_equal(e->dev.ops->save(&e->dev, &w), 0);
	r = (struct snapshot_reader){w.buf + SNAPSHOT_HDR_SIZE,
				     w.len - SNAPSHOT_HDR_SIZE, 0, false};
	assert_int_equal(e->dev.ops->restore(&e->dev, &r), 0);
	assert_true(fake_vq_take_used(&e->vq[2], &id, &len));
	assert_int_equal(id, 0);
	assert_int_equal(len, 4);
	memcpy(&ev, e->ram + TX_AREA + 0x10000, 4);
	assert_int_equal(ev, 0); /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
	/* another guest CID: refused */
	w.buf[SNAPSHOT_HDR_SIZE] ^= 1;
	r = (struct snapshot_reader){w.buf + SNAPSHOT_HDR_SIZE,
				     w.len - SNAPSHOT_HDR_SIZE, 0, false};
	assert_int_equal(e->dev.ops->restore(&e->dev, &r), -EINVAL);
	snapshot_writer_free(&w);
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_bad_packets_on_ring),
		cmocka_unit_test(test_guest_connect),
		cmocka_unit_test(test_host_connect),
		cmocka_unit_test(test_host_connect_data_after_line),
		cmocka_unit_test(test_host_connect_refused),
		cmocka_unit_test(test_bad_connect_lines),
		cmocka_unit_test(test_connect_before_driver),
		cmocka_unit_test(test_rw_guest_to_host),
		cmocka_unit_test(test_rw_host_to_guest_credit),
		cmocka_unit_test(test_backpressure_slow_host),
		cmocka_unit_test(test_backpressure_no_rx_buffers),
		cmocka_unit_test(test_drain_then_close),
		cmocka_unit_test(test_protocol_violations),
		cmocka_unit_test(test_conn_limit),
		cmocka_unit_test(test_shutdown_from_guest),
		cmocka_unit_test(test_close_from_host),
		cmocka_unit_test(test_close_timeout),
		cmocka_unit_test(test_rst_and_reset_cleanup),
		cmocka_unit_test(test_broken_ring),
		cmocka_unit_test(test_small_rx_buffers),
		cmocka_unit_test(test_create_and_config),
		cmocka_unit_test(test_no_fd_leaks),
		cmocka_unit_test(test_snapshot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
