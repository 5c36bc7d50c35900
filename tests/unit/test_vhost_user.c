/* SPDX-License-Identifier: MIT */
/*
 * vhost-user server: a hostile front-end's messages, sent over a socketpair
 * the server serves as its connection, against a fake device that counts
 * what the transport asks of it. Broken streams must end the connection,
 * bad requests must be refused (with an ack when asked for) and the server
 * must keep serving; no fd may leak.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_driver.h"
#include "vhost_user/server.h"

#define F_PROTO	     (1ull << VHOST_USER_F_PROTOCOL_FEATURES)
#define F_V1	     (1ull << VIRTIO_F_VERSION_1)
#define FAKE_FEATURE (1ull << 5)
#define CFG_SIZE     16
#define QSIZE	     256

/* Guest RAM for ring tests: one memfd region. */
#define RAM_GPA	  0x100000ull
#define RAM_SIZE  0x100000ull
#define RAM_UADDR 0x7f0000000000ull
#define DESC_OFF  0x0
#define AVAIL_OFF 0x1000
#define USED_OFF  0x2000
#define DATA_OFF  0x10000

struct fake {
	uint8_t config[CFG_SIZE];
	unsigned activations, resets, notifies, completed;
	bool fail_activate;
};

struct t {
	struct virtio_dev dev;
	struct fake fake;
	struct vhost_user_server *s;
	struct kiln_log log;
	unsigned warnings;
	int peer;
	int memfd;
	uint8_t *ram; /* the test's view of the memfd */
	int kick, call, err;
};

static struct virtq_chain chain; /* too big for the stack */

static uint64_t fake_features(struct virtio_dev *d)
{
	(void)d;
	return FAKE_FEATURE;
}

static void fake_config_read(struct virtio_dev *d, uint32_t off, uint8_t *buf,
			     uint32_t len)
{
	struct fake *f = d->priv;

	assert_true(off <= CFG_SIZE && len <= CFG_SIZE - off);
	memcpy(buf, f->config + off, len);
}

static void fake_config_write(struct virtio_dev *d, uint32_t off,
			      const uint8_t *buf, uint32_t len)
{
	struct fake *f = d->priv;

	assert_true(off <= CFG_SIZE && len <= CFG_SIZE - off);
	memcpy(f->config + off, buf, len);
}

static int fake_activate(struct virtio_dev *d)
{
	struct fake *f = d->priv;

	f->activations++;
	return f->fail_activate ? -EIO : 0;
}

static void fake_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct fake *f = d->priv;

	int r;

	f->notifies++;
	while ((r = virtq_pop(&d->vqs[q], &chain)) == 1) {
		virtio_dev_complete(d, q, chain.head, 0);
		f->completed++;
	}
	if (r < 0)
		virtio_dev_fail(d, "malformed ring");
}

static void fake_reset(struct virtio_dev *d)
{
	struct fake *f = d->priv;

	f->resets++;
}

static const struct virtio_dev_ops fake_ops = {
	.name = "fake",
	.device_id = 99,
	.num_queues = 2,
	.queue_max_size = QSIZE,
	.features = fake_features,
	.config_size = CFG_SIZE,
	.config_read = fake_config_read,
	.config_write = fake_config_write,
	.activate = fake_activate,
	.queue_notify = fake_queue_notify,
	.reset = fake_reset,
};

static void count_warnings(void *opaque, enum kiln_log_level level,
			   const char *msg)
{
	struct t *t = opaque;

	(void)msg;
	if (level <= KILN_LOG_WARN)
		t->warnings++;
	if (getenv("VU_TEST_LOG"))
		fprintf(stderr, "log: %s\n", msg);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	int sv[2];

	assert_non_null(t);
	t->dev.ops = &fake_ops;
	t->dev.priv = &t->fake;
	for (int i = 0; i < CFG_SIZE; i++)
		t->fake.config[i] = (uint8_t)(0xa0 + i);
	t->log = (struct kiln_log){count_warnings, t, KILN_LOG_DEBUG};
	assert_int_equal(vhost_user_server_create(&t->dev, &t->log, &t->s), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	t->peer = sv[0];
	assert_int_equal(vhost_user_server_attach(t->s, sv[1]), 0);
	/* sealed against resizing, as QEMU's memory-backend-memfd is */
	t->memfd = memfd_create("guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(t->memfd >= 0);
	assert_int_equal(ftruncate(t->memfd, RAM_SIZE), 0);
	assert_int_equal(
		fcntl(t->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	t->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		      t->memfd, 0);
	assert_true(t->ram != MAP_FAILED);
	t->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(t->kick >= 0 && t->call >= 0 && t->err >= 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	vhost_user_server_destroy(t->s);
	if (t->peer >= 0)
		close(t->peer);
	munmap(t->ram, RAM_SIZE);
	close(t->memfd);
	close(t->kick);
	close(t->call);
	close(t->err);
	free(t);
	return 0;
}

/* --- the front-end's side of the wire --- */

static void send_raw(int fd, const void *buf, size_t len, const int *fds,
		     unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {(void *)buf, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (nfds) {
		struct cmsghdr *c;

		assert_true(nfds <= 16);
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	assert_int_equal(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

static void send_msg(struct t *t, uint32_t req, uint32_t flags,
		     const void *payload, uint32_t size, const int *fds,
		     unsigned nfds)
{
	uint8_t buf[VHOST_USER_HDR_SIZE + 1024];
	struct vhost_user_hdr h = {req, flags, size};

	assert_true(size <= 1024);
	memcpy(buf, &h, sizeof(h));
	if (size)
		memcpy(buf + sizeof(h), payload, size);
	send_raw(t->peer, buf, sizeof(h) + size, fds, nfds);
}

static void pump(struct t *t)
{
	assert_true(vhost_user_server_poll(t->s, 200) >= 0);
}

static bool reply_waiting(struct t *t, int ms)
{
	struct pollfd p = {.fd = t->peer, .events = POLLIN};

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Reads one reply; returns its payload size. */
static uint32_t recv_reply(struct t *t, uint32_t req, void *body, size_t max)
{
	struct vhost_user_hdr h;

	assert_true(reply_waiting(t, 1000));
	assert_int_equal(recv(t->peer, &h, sizeof(h), MSG_WAITALL), sizeof(h));
	assert_int_equal(h.request, req);
	assert_int_equal(h.flags, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
	assert_true(h.size <= max);
	if (h.size)
		assert_int_equal(recv(t->peer, body, h.size, MSG_WAITALL),
				 h.size);
	return h.size;
}

/* Sends req with NEED_REPLY and returns the ack (0 = success). */
static uint64_t ack(struct t *t, uint32_t req, const void *payload,
		    uint32_t size, const int *fds, unsigned nfds)
{
	uint64_t v = ~0ull;

	send_msg(t, req, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK,
		 payload, size, fds, nfds);
	pump(t);
	assert_int_equal(recv_reply(t, req, &v, sizeof(v)), sizeof(v));
	return v;
}

static uint64_t ack_u64(struct t *t, uint32_t req, uint64_t v, int fd)
{
	return ack(t, req, &v, sizeof(v), &fd, fd >= 0 ? 1 : 0);
}

static uint64_t ack_state(struct t *t, uint32_t req, uint32_t idx, uint32_t num)
{
	struct vhost_user_vring_state st = {idx, num};

	return ack(t, req, &st, sizeof(st), NULL, 0);
}

/* Sends a request that has a reply body; returns the body size. */
static uint32_t get(struct t *t, uint32_t req, const void *payload,
		    uint32_t size, void *body, size_t max)
{
	send_msg(t, req, VHOST_USER_VERSION, payload, size, NULL, 0);
	pump(t);
	return recv_reply(t, req, body, max);
}

static void assert_dropped(struct t *t)
{
	pump(t);
	assert_false(vhost_user_server_connected(t->s));
	/* and the front-end sees the close */
	char c;
	assert_int_equal(recv(t->peer, &c, 1, 0), 0);
}

static struct vhost_user_mem_table one_region(void)
{
	struct vhost_user_mem_table m;

	memset(&m, 0, sizeof(m));
	m.nregions = 1;
	m.regions[0] =
		(struct vhost_user_mem_region){RAM_GPA, RAM_SIZE, RAM_UADDR, 0};
	return m;
}

static uint32_t table_size(unsigned n)
{
	return 8 + n * (uint32_t)sizeof(struct vhost_user_mem_region);
}

static uint64_t send_table(struct t *t, const struct vhost_user_mem_table *m,
			   const int *fds, unsigned nfds)
{
	return ack(t, VHOST_USER_SET_MEM_TABLE, m, table_size(m->nregions), fds,
		   nfds);
}

static void set_table(struct t *t)
{
	struct vhost_user_mem_table m = one_region();

	assert_int_equal(send_table(t, &m, &t->memfd, 1), 0);
}

static struct vhost_user_vring_addr ring_addr(uint32_t idx)
{
	return (struct vhost_user_vring_addr){
		.index = idx,
		.desc_user_addr = RAM_UADDR + DESC_OFF,
		.avail_user_addr = RAM_UADDR + AVAIL_OFF,
		.used_user_addr = RAM_UADDR + USED_OFF,
	};
}

static uint16_t used_idx(struct t *t);

/* Features, table and ring 0 configured with kick and call; with
 * PROTOCOL_FEATURES the ring still waits for SET_VRING_ENABLE. */
static void configure_ring0(struct t *t, bool proto)
{
	struct vhost_user_vring_addr a = ring_addr(0);

	assert_int_equal(ack_u64(t, VHOST_USER_SET_FEATURES,
				 F_V1 | (proto ? F_PROTO : 0), -1),
			 0);
	set_table(t);
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 0, QSIZE), 0);
	/* where the used ring says the last back-end stopped, as QEMU does */
	assert_int_equal(
		ack_state(t, VHOST_USER_SET_VRING_BASE, 0, used_idx(t)), 0);
	assert_int_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	assert_int_equal(ack_u64(t, VHOST_USER_SET_VRING_CALL, 0, t->call), 0);
	assert_int_equal(ack_u64(t, VHOST_USER_SET_VRING_ERR, 0, t->err), 0);
	assert_int_equal(ack_u64(t, VHOST_USER_SET_VRING_KICK, 0, t->kick), 0);
}

/* Puts a one-descriptor chain (head 0) on ring 0 as the driver would,
 * making the avail index avail_idx. */
static void driver_add_buffer(struct t *t, uint16_t avail_idx)
{
	struct fake_vq v = {.ram = t->ram,
			    .desc_gpa = DESC_OFF,
			    .avail_gpa = AVAIL_OFF,
			    .used_gpa = USED_OFF,
			    .size = QSIZE,
			    .avail_idx = (uint16_t)(avail_idx - 1)};

	fake_vq_desc(&v, 0, RAM_GPA + DATA_OFF, 64, 0, 0);
	fake_vq_publish(&v, 0);
}

static uint16_t used_idx(struct t *t)
{
	uint16_t v;

	memcpy(&v, t->ram + USED_OFF + 2, 2);
	return v;
}

static void renew_eventfds(struct t *t)
{
	close(t->kick);
	close(t->call);
	close(t->err);
	t->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(t->kick >= 0 && t->call >= 0 && t->err >= 0);
}

static void kick(struct t *t)
{
	uint64_t one = 1;

	assert_int_equal(write(t->kick, &one, 8), 8);
	pump(t);
}

static uint64_t read_event(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, 8) != 8)
		return 0;
	return v;
}

/* --- features and acks --- */

static void test_get_features(void **state)
{
	struct t *t = *state;
	uint64_t f = 0;

	assert_int_equal(get(t, VHOST_USER_GET_FEATURES, NULL, 0, &f, 8), 8);
	assert_true(f & F_PROTO);
	assert_true(f & F_V1);
	assert_true(f & FAKE_FEATURE);
	assert_int_equal(f, virtio_dev_features(&t->dev) | F_PROTO);
}

/* A device without config space is not offered CONFIG, and a front-end
 * that sets it anyway is refused. */
static void test_protocol_features_no_config(void **state)
{
	struct t *t = *state;
	uint64_t pf = 0, cfg = 1ull << VHOST_USER_PROTOCOL_F_CONFIG;
	/* fake_ops without a config space, as virtio-rng has none */
	struct virtio_dev_ops no_config_ops = fake_ops;

	no_config_ops.config_size = 0;
	no_config_ops.config_read = NULL;
	no_config_ops.config_write = NULL;
	t->dev.ops = &no_config_ops;
	assert_int_equal(
		get(t, VHOST_USER_GET_PROTOCOL_FEATURES, NULL, 0, &pf, 8), 8);
	assert_int_equal(pf, VHOST_USER_SERVER_PROTOCOL_FEATURES & ~cfg);
	assert_true(ack_u64(t, VHOST_USER_SET_PROTOCOL_FEATURES, pf | cfg,
			    -1) != 0);
	t->dev.ops = &fake_ops;
}

static void test_protocol_features(void **state)
{
	struct t *t = *state;
	uint64_t pf = 0, q = 0, slots = 0;

	assert_int_equal(
		get(t, VHOST_USER_GET_PROTOCOL_FEATURES, NULL, 0, &pf, 8), 8);
	assert_int_equal(pf, VHOST_USER_SERVER_PROTOCOL_FEATURES);
	assert_true(pf & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK));
	assert_true(pf & (1ull << VHOST_USER_PROTOCOL_F_CONFIG));
	assert_false(pf & (1ull << VHOST_USER_PROTOCOL_F_MQ));
	assert_int_equal(ack_u64(t, VHOST_USER_SET_PROTOCOL_FEATURES, pf, -1),
			 0);
	/* a bit never offered */
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_PROTOCOL_FEATURES,
				     pf | 1ull << VHOST_USER_PROTOCOL_F_MQ, -1),
			     0);
	assert_int_equal(get(t, VHOST_USER_GET_QUEUE_NUM, NULL, 0, &q, 8), 8);
	assert_int_equal(q, 2);
	assert_int_equal(
		get(t, VHOST_USER_GET_MAX_MEM_SLOTS, NULL, 0, &slots, 8), 8);
	assert_int_equal(slots, VHOST_USER_MAX_REGIONS);
}

static void test_set_features(void **state)
{
	struct t *t = *state;

	assert_int_equal(ack_u64(t, VHOST_USER_SET_FEATURES,
				 F_V1 | F_PROTO | FAKE_FEATURE, -1),
			 0);
	assert_int_equal(t->dev.driver_features, F_V1 | FAKE_FEATURE);
	/* not offered */
	assert_int_not_equal(
		ack_u64(t, VHOST_USER_SET_FEATURES, 1ull << 63, -1), 0);
	/* wrong payload size */
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_FEATURES, "abcd", 4, NULL, 0), 0);
	assert_true(vhost_user_server_connected(t->s));
}

static void test_need_reply(void **state)
{
	struct t *t = *state;

	assert_int_equal(ack(t, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), 0);
	/* without NEED_REPLY nothing comes back */
	send_msg(t, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0, NULL, 0);
	pump(t);
	assert_false(reply_waiting(t, 50));
	assert_true(vhost_user_server_connected(t->s));
}

static void test_unknown_request(void **state)
{
	struct t *t = *state;
	uint64_t f = 0;

	/* ignored (logged) without NEED_REPLY, refused with it */
	send_msg(t, 999, VHOST_USER_VERSION, "xyz", 3, NULL, 0);
	pump(t);
	assert_false(reply_waiting(t, 50));
	assert_int_not_equal(ack(t, 999, NULL, 0, NULL, 0), 0);
	assert_int_not_equal(ack(t, VHOST_USER_SET_LOG_BASE, NULL, 0, NULL, 0),
			     0);
	/* a request kiln does not do but which has a reply: empty reply */
	assert_int_equal(get(t, VHOST_USER_GET_INFLIGHT_FD, NULL, 0, &f, 8), 0);
	assert_int_equal(get(t, VHOST_USER_GET_FEATURES, NULL, 0, &f, 8), 8);
}

/* --- broken streams --- */

static void test_truncated_header(void **state)
{
	struct t *t = *state;
	uint8_t part[5] = {VHOST_USER_GET_FEATURES, 0, 0, 0, 1};

	send_raw(t->peer, part, sizeof(part), NULL, 0);
	shutdown(t->peer, SHUT_WR);
	assert_dropped(t);
}

static void test_truncated_payload(void **state)
{
	struct t *t = *state;
	uint8_t buf[VHOST_USER_HDR_SIZE + 4];
	struct vhost_user_hdr h = {VHOST_USER_SET_FEATURES, VHOST_USER_VERSION,
				   8};

	memcpy(buf, &h, sizeof(h));
	memset(buf + sizeof(h), 0, 4);
	send_raw(t->peer, buf, sizeof(buf), NULL, 0);
	shutdown(t->peer, SHUT_WR);
	assert_dropped(t);
}

static void test_stalled_message(void **state)
{
	struct t *t = *state;
	uint8_t part[6] = {VHOST_USER_GET_FEATURES};

	vhost_user_server_set_io_timeout(t->s, 50);
	send_raw(t->peer, part, sizeof(part), NULL, 0);
	assert_dropped(t);
}

static void test_oversized(void **state)
{
	struct t *t = *state;

	send_msg(t, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL,
		 0);
	pump(t); /* fine so far */
	struct vhost_user_hdr h = {VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION,
				   0x100000};
	send_raw(t->peer, &h, sizeof(h), NULL, 0);
	assert_dropped(t);
}

static void test_bad_version(void **state)
{
	struct t *t = *state;

	send_msg(t, VHOST_USER_GET_FEATURES, 0x2, NULL, 0, NULL, 0);
	assert_dropped(t);
}

static void test_dropped_fds_closed(void **state)
{
	struct t *t = *state;
	int before, fds[2];
	struct vhost_user_hdr h = {VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION,
				   200};

	before = count_fds();
	fds[0] = eventfd(0, EFD_CLOEXEC);
	fds[1] = eventfd(0, EFD_CLOEXEC);
	send_raw(t->peer, &h, sizeof(h), fds, 2);
	close(fds[0]);
	close(fds[1]);
	shutdown(t->peer, SHUT_WR);
	assert_dropped(t);
	/* the server's connection fd is gone too */
	assert_int_equal(count_fds(), before - 1);
}

/* --- file descriptors --- */

static void test_too_many_fds(void **state)
{
	struct t *t = *state;
	int fds[VHOST_USER_MAX_FDS + 1], before = count_fds();
	uint64_t v = 0;

	for (unsigned i = 0; i < VHOST_USER_MAX_FDS + 1; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	assert_int_not_equal(ack(t, VHOST_USER_SET_VRING_CALL, &v, 8, fds,
				 VHOST_USER_MAX_FDS + 1),
			     0);
	for (unsigned i = 0; i < VHOST_USER_MAX_FDS + 1; i++)
		close(fds[i]);
	assert_int_equal(count_fds(), before);
	assert_true(vhost_user_server_connected(t->s));
	/* the request was not carried out */
	assert_int_equal(get(t, VHOST_USER_GET_FEATURES, NULL, 0, &v, 8), 8);
}

static void test_unexpected_fds_closed(void **state)
{
	struct t *t = *state;
	int fds[3], before = count_fds();

	for (int i = 0; i < 3; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(ack(t, VHOST_USER_SET_OWNER, NULL, 0, fds, 3), 0);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	assert_int_equal(count_fds(), before);
}

static void test_vring_fd_checks(void **state)
{
	struct t *t = *state;
	int p[2], before;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	before = count_fds();
	/* polling mode is not offered */
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_VRING_KICK,
				     VHOST_USER_VRING_NOFD_MASK, -1),
			     0);
	/* no-fd flag but an fd; fd missing without the flag */
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_VRING_CALL,
				     VHOST_USER_VRING_NOFD_MASK, t->call),
			     0);
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_VRING_CALL, 0, -1), 0);
	/* only eventfds: a pipe could block or raise SIGPIPE */
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_VRING_CALL, 0, p[1]), 0);
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_VRING_KICK, 0, p[0]), 0);
	/* ring index out of range, reserved bits */
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_VRING_CALL, 2, t->call),
			     0);
	assert_int_not_equal(
		ack_u64(t, VHOST_USER_SET_VRING_CALL, 1ull << 9, t->call), 0);
	/* fine: an eventfd, and "no call fd" */
	assert_int_equal(ack_u64(t, VHOST_USER_SET_VRING_CALL, 1, t->call), 0);
	assert_int_equal(ack_u64(t, VHOST_USER_SET_VRING_CALL,
				 1 | VHOST_USER_VRING_NOFD_MASK, -1),
			 0);
	assert_int_equal(count_fds(), before);
	close(p[0]);
	close(p[1]);
}

/* --- memory table --- */

static void test_mem_table_valid(void **state)
{
	struct t *t = *state;
	struct vhost_user_mem_table m = one_region();
	const struct guest_mem *mem;
	int before = count_fds();
	uint8_t *p;

	memcpy(t->ram + 0x1234, "kiln", 4);
	assert_int_equal(send_table(t, &m, &t->memfd, 1), 0);
	mem = vhost_user_server_mem(t->s);
	assert_int_equal(mem->nr_regions, 1);
	p = guest_mem_ptr(mem, RAM_GPA + 0x1234, 4);
	assert_non_null(p);
	assert_memory_equal(p, "kiln", 4);
	/* shared: the server's writes show in the front-end's memory */
	memcpy(p, "KILN", 4);
	assert_memory_equal(t->ram + 0x1234, "KILN", 4);
	assert_null(guest_mem_ptr(mem, RAM_GPA - 1, 1));
	assert_null(guest_mem_ptr(mem, RAM_GPA + RAM_SIZE - 1, 2));
	/* the server keeps the mapping, not the fd */
	assert_int_equal(count_fds(), before);

	/* an mmap offset: region starts 0x3000 into the file */
	m.regions[0] =
		(struct vhost_user_mem_region){0, 0x2000, RAM_UADDR, 0x3000};
	memcpy(t->ram + 0x3010, "offs", 4);
	assert_int_equal(send_table(t, &m, &t->memfd, 1), 0);
	p = guest_mem_ptr(vhost_user_server_mem(t->s), 0x10, 4);
	assert_non_null(p);
	assert_memory_equal(p, "offs", 4);
	assert_null(guest_mem_ptr(vhost_user_server_mem(t->s), RAM_GPA, 1));
}

static void test_mem_table_two_regions(void **state)
{
	struct t *t = *state;
	struct vhost_user_mem_table m;
	int fds[2] = {t->memfd, t->memfd};

	memset(&m, 0, sizeof(m));
	m.nregions = 2;
	m.regions[0] = (struct vhost_user_mem_region){0, 0x80000, RAM_UADDR, 0};
	m.regions[1] = (struct vhost_user_mem_region){
		0x100000000ull, 0x80000, RAM_UADDR + 0x80000, 0x80000};
	memcpy(t->ram + 0x80008, "high", 4);
	assert_int_equal(send_table(t, &m, fds, 2), 0);
	assert_memory_equal(
		guest_mem_ptr(vhost_user_server_mem(t->s), 0x100000008ull, 4),
		"high", 4);
}

static void expect_table_refused(struct t *t,
				 const struct vhost_user_mem_table *m,
				 const int *fds, unsigned nfds)
{
	int before = count_fds();

	assert_int_not_equal(send_table(t, m, fds, nfds), 0);
	assert_int_equal(count_fds(), before);
	assert_true(vhost_user_server_connected(t->s));
}

static void test_mem_table_overlap(void **state)
{
	struct t *t = *state;
	struct vhost_user_mem_table m;
	int fds[2] = {t->memfd, t->memfd};

	memset(&m, 0, sizeof(m));
	m.nregions = 2;
	/* guest ranges overlap by one page */
	m.regions[0] = (struct vhost_user_mem_region){0, 0x10000, RAM_UADDR, 0};
	m.regions[1] = (struct vhost_user_mem_region){
		0xf000, 0x10000, RAM_UADDR + 0x20000, 0x20000};
	expect_table_refused(t, &m, fds, 2);
	/* user ranges overlap: translation would be ambiguous */
	m.regions[1] = (struct vhost_user_mem_region){
		0x100000, 0x10000, RAM_UADDR + 0x8000, 0x20000};
	expect_table_refused(t, &m, fds, 2);
	/* a failed table leaves the old one alone */
	set_table(t);
	expect_table_refused(t, &m, fds, 2);
	assert_non_null(guest_mem_ptr(vhost_user_server_mem(t->s), RAM_GPA, 1));
}

static void test_mem_table_bad_regions(void **state)
{
	struct t *t = *state;
	struct vhost_user_mem_table m = one_region();
	int ev = eventfd(0, EFD_CLOEXEC);

	m.regions[0].memory_size = 0;
	expect_table_refused(t, &m, &t->memfd, 1);
	/* beyond the end of the file: would SIGBUS on access */
	m = one_region();
	m.regions[0].mmap_offset = 0x1000;
	expect_table_refused(t, &m, &t->memfd, 1);
	m = one_region();
	m.regions[0].memory_size = RAM_SIZE + 0x1000;
	expect_table_refused(t, &m, &t->memfd, 1);
	/* sums that wrap */
	m = one_region();
	m.regions[0].mmap_offset = ~0ull - 0x10;
	expect_table_refused(t, &m, &t->memfd, 1);
	m = one_region();
	m.regions[0].guest_phys_addr = ~0ull - 0x1000;
	expect_table_refused(t, &m, &t->memfd, 1);
	m = one_region();
	m.regions[0].userspace_addr = ~0ull - 0x1000;
	expect_table_refused(t, &m, &t->memfd, 1);
	/* not a file */
	m = one_region();
	expect_table_refused(t, &m, &ev, 1);
	close(ev);
	assert_int_equal(vhost_user_server_mem(t->s)->nr_regions, 0);
}

static void test_mem_table_bad_shape(void **state)
{
	struct t *t = *state;
	struct vhost_user_mem_table m = one_region();
	int fds[2] = {t->memfd, t->memfd};
	uint8_t big[8 + (VHOST_USER_MAX_REGIONS + 1) * 32];

	/* fd count does not match */
	expect_table_refused(t, &m, NULL, 0);
	expect_table_refused(t, &m, fds, 2);
	/* payload size does not match the count */
	assert_int_not_equal(ack(t, VHOST_USER_SET_MEM_TABLE, &m,
				 table_size(1) + 8, &t->memfd, 1),
			     0);
	assert_int_not_equal(ack(t, VHOST_USER_SET_MEM_TABLE, &m, 4, NULL, 0),
			     0);
	/* zero and too many regions */
	m.nregions = 0;
	assert_int_not_equal(ack(t, VHOST_USER_SET_MEM_TABLE, &m, 8, NULL, 0),
			     0);
	memset(big, 0, sizeof(big));
	big[0] = VHOST_USER_MAX_REGIONS + 1;
	assert_int_not_equal(ack(t, VHOST_USER_SET_MEM_TABLE, big,
				 8 + (VHOST_USER_MAX_REGIONS + 1) * 32, NULL,
				 0),
			     0);
	assert_true(vhost_user_server_connected(t->s));
}

/* --- rings --- */

static void test_vring_addr(void **state)
{
	struct t *t = *state;
	struct vhost_user_vring_addr a = ring_addr(0);

	/* no memory table yet: nothing translates */
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	set_table(t);
	assert_int_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	/* each address must be known */
	a = ring_addr(0);
	a.used_user_addr = RAM_UADDR + RAM_SIZE;
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	a = ring_addr(0);
	a.desc_user_addr = RAM_GPA; /* a guest address is not a user one */
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	a = ring_addr(0);
	a.avail_user_addr = RAM_UADDR - 2;
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	/* logging flag (not offered), bad index, short payload */
	a = ring_addr(0);
	a.flags = 1u << VHOST_VRING_F_LOG;
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	a = ring_addr(2);
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	a = ring_addr(0);
	assert_int_not_equal(ack(t, VHOST_USER_SET_VRING_ADDR, &a, 32, NULL, 0),
			     0);
}

static void test_vring_num_base(void **state)
{
	struct t *t = *state;

	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 1, 128), 0);
	assert_int_equal(
		ack_state(t, VHOST_USER_SET_VRING_NUM, 0, VIRTQ_MAX_SIZE), 0);
	assert_int_not_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 0, 0), 0);
	assert_int_not_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 0, 3), 0);
	assert_int_not_equal(
		ack_state(t, VHOST_USER_SET_VRING_NUM, 0, 2 * VIRTQ_MAX_SIZE),
		0);
	assert_int_not_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 2, 128), 0);
	assert_int_not_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, ~0u, 128),
			     0);
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_BASE, 0, 0xffff), 0);
	assert_int_not_equal(
		ack_state(t, VHOST_USER_SET_VRING_BASE, 0, 0x10000), 0);
	assert_int_not_equal(ack_state(t, VHOST_USER_SET_VRING_ENABLE, 0, 2),
			     0);
}

static void test_ring_flow(void **state)
{
	struct t *t = *state;
	struct vhost_user_vring_state st = {0, 0}, got;
	unsigned resets = t->fake.resets;

	configure_ring0(t, true);
	/* PROTOCOL_FEATURES: disabled until SET_VRING_ENABLE */
	assert_int_equal(t->fake.activations, 0);
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	assert_int_equal(t->fake.activations, 1);

	driver_add_buffer(t, 1);
	kick(t);
	assert_int_equal(t->fake.completed, 1);
	assert_int_equal(used_idx(t), 1);
	assert_true(read_event(t->call) >= 1);

	driver_add_buffer(t, 2);
	kick(t);
	assert_int_equal(t->fake.completed, 2);
	assert_int_equal(used_idx(t), 2);

	/* GET_VRING_BASE stops the ring and says where it stopped */
	assert_int_equal(get(t, VHOST_USER_GET_VRING_BASE, &st, sizeof(st),
			     &got, sizeof(got)),
			 sizeof(got));
	assert_int_equal(got.index, 0);
	assert_int_equal(got.num, 2);
	/* last ring stopped: the device was reset */
	assert_int_equal(t->fake.resets, resets + 1);
	/* a stopped ring does nothing on a kick (its kick fd is closed) */
	driver_add_buffer(t, 3);
	kick(t);
	assert_int_equal(t->fake.completed, 2);

	/* restart from base 2: the waiting buffer is done without a kick */
	renew_eventfds(t);
	assert_int_equal(ack_u64(t, VHOST_USER_SET_VRING_CALL, 0, t->call), 0);
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_BASE, 0, 2), 0);
	assert_int_equal(ack_u64(t, VHOST_USER_SET_VRING_KICK, 0, t->kick), 0);
	assert_int_equal(t->fake.activations, 2);
	assert_int_equal(t->fake.completed, 3);
	assert_int_equal(used_idx(t), 3);
}

static void test_ring_frozen(void **state)
{
	struct t *t = *state;
	struct vhost_user_vring_addr a = ring_addr(0);

	configure_ring0(t, false);
	/* without PROTOCOL_FEATURES the ring runs from SET_VRING_KICK */
	assert_int_equal(t->fake.activations, 1);
	assert_int_not_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 0, 128), 0);
	assert_int_not_equal(ack_state(t, VHOST_USER_SET_VRING_BASE, 0, 5), 0);
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	/* features cannot change under a running device */
	assert_int_not_equal(
		ack_u64(t, VHOST_USER_SET_FEATURES, F_V1 | FAKE_FEATURE, -1),
		0);
	/* the other ring is still configurable */
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 1, 128), 0);
	/* and the running one still works */
	driver_add_buffer(t, 1);
	kick(t);
	assert_int_equal(t->fake.completed, 1);
}

static void test_ring_disabled(void **state)
{
	struct t *t = *state;

	configure_ring0(t, true);
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_ENABLE, 0, 0), 0);
	driver_add_buffer(t, 1);
	kick(t);
	assert_int_equal(t->fake.completed, 0);
	/* re-enabled: the pending kick is served */
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_ENABLE, 0, 1), 0);
	pump(t);
	assert_int_equal(t->fake.completed, 1);
}

static void test_ring_outside_ram(void **state)
{
	struct t *t = *state;
	struct vhost_user_vring_addr a = ring_addr(0);

	assert_int_equal(ack_u64(t, VHOST_USER_SET_FEATURES, F_V1, -1), 0);
	set_table(t);
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 0, QSIZE), 0);
	/* the used ring starts in RAM but runs past its end */
	a.used_user_addr = RAM_UADDR + RAM_SIZE - 64;
	assert_int_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_VRING_KICK, 0, t->kick),
			     0);
	assert_int_equal(t->fake.activations, 0);
	/* misaligned descriptor table; with the kick fd there this tries to
	 * start the ring, which fails */
	a = ring_addr(0);
	a.desc_user_addr += 8;
	assert_int_not_equal(
		ack(t, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	assert_int_equal(t->fake.activations, 0);
	assert_false(t->dev.vqs[0].ready);
}

static void test_broken_ring_signals_err(void **state)
{
	struct t *t = *state;
	uint16_t bad_idx = 1000; /* far ahead of the ring: malformed */

	unsigned n;

	configure_ring0(t, false);
	memcpy(t->ram + AVAIL_OFF + 2, &bad_idx, 2);
	kick(t);
	assert_true(read_event(t->err) >= 1);
	assert_true(t->dev.status & VIRTIO_STATUS_NEEDS_RESET);
	/* no more work for the device until it is reset */
	n = t->fake.notifies;
	kick(t);
	assert_int_equal(t->fake.notifies, n);
	assert_true(vhost_user_server_connected(t->s));
}

static void test_activation_failure(void **state)
{
	struct t *t = *state;

	t->fake.fail_activate = true;
	assert_int_equal(ack_u64(t, VHOST_USER_SET_FEATURES, F_V1, -1), 0);
	set_table(t);
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 0, QSIZE), 0);
	{
		struct vhost_user_vring_addr a = ring_addr(0);

		assert_int_equal(ack(t, VHOST_USER_SET_VRING_ADDR, &a,
				     sizeof(a), NULL, 0),
				 0);
	}
	assert_int_equal(ack_u64(t, VHOST_USER_SET_VRING_ERR, 0, t->err), 0);
	assert_int_not_equal(ack_u64(t, VHOST_USER_SET_VRING_KICK, 0, t->kick),
			     0);
	assert_int_equal(t->fake.activations, 1);
	assert_true(read_event(t->err) >= 1);
	assert_false(t->dev.vqs[0].ready);
}

static void test_reset_device(void **state)
{
	struct t *t = *state;

	configure_ring0(t, false);
	assert_int_equal(t->fake.activations, 1);
	assert_int_equal(ack(t, VHOST_USER_RESET_DEVICE, NULL, 0, NULL, 0), 0);
	assert_true(t->fake.resets >= 1);
	assert_false(t->dev.vqs[0].ready);
	/* rings can be set up again */
	assert_int_equal(ack_state(t, VHOST_USER_SET_VRING_NUM, 0, QSIZE), 0);
	driver_add_buffer(t, 1);
	kick(t);
	assert_int_equal(t->fake.completed, 0);
}

/* --- config space --- */

static void test_get_config(void **state)
{
	struct t *t = *state;
	struct vhost_user_config c, r;
	uint8_t zero[8] = {0};

	memset(&c, 0, sizeof(c));
	c.offset = 4;
	c.size = 8;
	assert_int_equal(
		get(t, VHOST_USER_GET_CONFIG, &c, 12 + 8, &r, sizeof(r)),
		12 + 8);
	assert_int_equal(r.offset, 4);
	assert_int_equal(r.size, 8);
	assert_memory_equal(r.region, t->fake.config + 4, 8);
	/* past the device's config: zeros (front-ends ask for their own
	 * struct size) */
	c.offset = 8;
	c.size = 16;
	assert_int_equal(
		get(t, VHOST_USER_GET_CONFIG, &c, 12 + 16, &r, sizeof(r)),
		12 + 16);
	assert_memory_equal(r.region, t->fake.config + 8, 8);
	assert_memory_equal(r.region + 8, zero, 8);
	/* refusals are empty replies */
	c.offset = 0xfffffff0u;
	c.size = 0x20;
	assert_int_equal(
		get(t, VHOST_USER_GET_CONFIG, &c, 12 + 0x20, &r, sizeof(r)), 0);
	c.offset = 0;
	c.size = 300;
	assert_int_equal(get(t, VHOST_USER_GET_CONFIG, &c, 12, &r, sizeof(r)),
			 0);
	c.size = 8;
	assert_int_equal(
		get(t, VHOST_USER_GET_CONFIG, &c, 12 + 4, &r, sizeof(r)), 0);
	assert_int_equal(get(t, VHOST_USER_GET_CONFIG, &c, 8, &r, sizeof(r)),
			 0);
	assert_true(vhost_user_server_connected(t->s));
}

static void test_set_config(void **state)
{
	struct t *t = *state;
	struct vhost_user_config c;

	memset(&c, 0, sizeof(c));
	c.offset = 2;
	c.size = 2;
	c.region[0] = 0x11;
	c.region[1] = 0x22;
	assert_int_equal(ack(t, VHOST_USER_SET_CONFIG, &c, 12 + 2, NULL, 0), 0);
	assert_int_equal(t->fake.config[2], 0x11);
	assert_int_equal(t->fake.config[3], 0x22);
	c.offset = CFG_SIZE - 1;
	assert_int_not_equal(ack(t, VHOST_USER_SET_CONFIG, &c, 12 + 2, NULL, 0),
			     0);
	c.offset = 0xffffffffu;
	assert_int_not_equal(ack(t, VHOST_USER_SET_CONFIG, &c, 12 + 2, NULL, 0),
			     0);
	c.offset = 0;
	c.flags = 7;
	assert_int_not_equal(ack(t, VHOST_USER_SET_CONFIG, &c, 12 + 2, NULL, 0),
			     0);
	c.flags = 0;
	assert_int_not_equal(ack(t, VHOST_USER_SET_CONFIG, &c, 12 + 3, NULL, 0),
			     0);
	assert_int_equal(t->fake.config[0], 0xa0);
}

/* --- connections --- */

static void test_disconnect_and_reattach(void **state)
{
	struct t *t = *state;
	int sv[2], before;
	uint64_t f;

	configure_ring0(t, false);
	assert_int_equal(t->fake.activations, 1);
	before = count_fds();
	close(t->peer);
	t->peer = -1;
	pump(t);
	assert_false(vhost_user_server_connected(t->s));
	assert_true(t->fake.resets >= 1);
	assert_int_equal(vhost_user_server_mem(t->s)->nr_regions, 0);
	assert_false(t->dev.vqs[0].ready);
	/* connection, kick, call, err fds closed; the test's peer too */
	assert_int_equal(count_fds(), before - 5);

	for (int round = 0; round < 3; round++) {
		assert_int_equal(
			socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			0);
		assert_int_equal(vhost_user_server_attach(t->s, sv[1]), 0);
		/* one front-end at a time */
		assert_int_equal(vhost_user_server_attach(t->s, dup(sv[1])),
				 -EBUSY);
		t->peer = sv[0];
		assert_int_equal(
			get(t, VHOST_USER_GET_FEATURES, NULL, 0, &f, 8), 8);
		renew_eventfds(t);
		configure_ring0(t, false);
		driver_add_buffer(t, (uint16_t)(used_idx(t) + 1));
		kick(t);
		close(t->peer);
		t->peer = -1;
		pump(t);
		assert_false(vhost_user_server_connected(t->s));
	}
	assert_int_equal(t->fake.completed, 3);
}

/* A memfd the front-end can still shrink (no F_SEAL_SHRINK) in place of
 * the test's sealed one; the test's own view of it stays mapped. */
static void use_unsealed_memfd(struct t *t)
{
	munmap(t->ram, RAM_SIZE);
	close(t->memfd);
	t->memfd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(t->memfd >= 0);
	assert_int_equal(ftruncate(t->memfd, RAM_SIZE), 0);
	t->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		      t->memfd, 0);
	assert_true(t->ram != MAP_FAILED);
}

static void other_sigbus_handler(int sig)
{
	(void)sig;
	abort();
}

/* issue 18: a front-end that shrinks its memfd after SET_MEM_TABLE and
 * kicks must not kill the back-end with SIGBUS; the back-end survives the
 * fault and drops it, and serves the next front-end. */
static void test_mem_shrunk_under_mapping(void **state)
{
	struct t *t = *state;
	struct sigaction dfl, saved;
	int sv[2];
	uint64_t f;

	/* cmocka catches SIGBUS itself; the guard only takes the default */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGBUS, &dfl, &saved);
	use_unsealed_memfd(t);
	configure_ring0(t, false);
	driver_add_buffer(t, (uint16_t)(used_idx(t) + 1));
	kick(t);
	assert_int_equal(t->fake.completed, 1);
	/* the front-end's own view would fault too: drop it first */
	munmap(t->ram, RAM_SIZE);
	t->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(t->ram != MAP_FAILED);
	assert_int_equal(ftruncate(t->memfd, 0), 0);
	kick(t); /* the device reads the avail ring: SIGBUS, caught */
	pump(t);
	assert_false(vhost_user_server_connected(t->s));
	assert_int_equal(vhost_user_server_mem(t->s)->nr_regions, 0);
	assert_true(t->warnings >= 1);

	/* the server goes on: a new front-end with proper memory */
	close(t->peer);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	assert_int_equal(vhost_user_server_attach(t->s, sv[1]), 0);
	t->peer = sv[0];
	assert_int_equal(get(t, VHOST_USER_GET_FEATURES, NULL, 0, &f, 8), 8);
	sigaction(SIGBUS, &saved, NULL);
}

/* Without the guard (the application has a SIGBUS handler of its own)
 * only memfds sealed against shrinking are mapped. */
static void test_mem_unsealed_refused_without_guard(void **state)
{
	struct t *t = *state;
	struct vhost_user_mem_table m = one_region();
	struct sigaction sa, saved;
	int sealed;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = other_sigbus_handler;
	sigaction(SIGBUS, &sa, &saved);
	/* the setup's memfd is sealed: fine */
	assert_int_equal(send_table(t, &m, &t->memfd, 1), 0);
	sealed = t->memfd;
	t->memfd = memfd_create("guest", MFD_CLOEXEC);
	assert_true(t->memfd >= 0);
	assert_int_equal(ftruncate(t->memfd, RAM_SIZE), 0);
	expect_table_refused(t, &m, &t->memfd, 1);
	/* the earlier table stays */
	assert_int_equal(vhost_user_server_mem(t->s)->nr_regions, 1);
	close(t->memfd);
	t->memfd = sealed;
	sigaction(SIGBUS, &saved, NULL);
}

static void test_handle_msg_without_connection(void **state)
{
	struct t *t = *state;
	struct vhost_user_server *s;
	struct virtio_dev dev = {.ops = &fake_ops, .priv = &t->fake};
	struct vhost_user_hdr h = {
		VHOST_USER_GET_FEATURES,
		VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, 0};
	int fd = eventfd(0, EFD_CLOEXEC), before;
	uint64_t v = 0;

	assert_int_equal(vhost_user_server_create(&dev, &t->log, &s), 0);
	before = count_fds();
	assert_int_equal(vhost_user_server_handle_msg(s, &h, NULL, NULL, 0), 0);
	h.request = VHOST_USER_SET_VRING_CALL;
	h.size = 8;
	assert_int_equal(vhost_user_server_handle_msg(s, &h, &v, &fd, 1), 0);
	assert_int_equal(count_fds(), before); /* kept as the call fd */
	h.request = VHOST_USER_SET_OWNER;
	h.size = 0;
	fd = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(vhost_user_server_handle_msg(s, &h, NULL, &fd, 1), 0);
	assert_int_equal(fd, -1);
	assert_int_equal(count_fds(), before);
	vhost_user_server_destroy(s);
	assert_null(dev.transport);
}

struct runner {
	struct vhost_user_server *s;
	int rc;
};

static void *run_thread(void *arg)
{
	struct runner *r = arg;

	r->rc = vhost_user_server_run(r->s);
	return NULL;
}

static int connect_to(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void test_listen_and_reconnect(void **state)
{
	struct t *t = *state;
	struct vhost_user_server *s;
	struct virtio_dev dev = {.ops = &fake_ops, .priv = &t->fake};
	char dir[] = "/tmp/kiln-vu-test.XXXXXX", path[64], file[80];
	struct runner r = {0};
	pthread_t th;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sock", dir);
	assert_int_equal(vhost_user_server_create(&dev, &t->log, &s), 0);
	assert_int_equal(vhost_user_server_listen(s, path), 0);
	r.s = s;
	assert_int_equal(pthread_create(&th, NULL, run_thread, &r), 0);
	for (int i = 0; i < 4; i++) {
		struct t c = {.peer = connect_to(path)};
		uint64_t f = 0;

		send_msg(&c, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL,
			 0, NULL, 0);
		assert_int_equal(recv_reply(&c, VHOST_USER_GET_FEATURES, &f, 8),
				 8);
		assert_true(f & F_PROTO);
		close(c.peer);
	}
	vhost_user_server_stop(s);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(r.rc, 0);

	/* a second server on the same live path is refused */
	{
		struct vhost_user_server *s2;
		struct virtio_dev dev2 = {.ops = &fake_ops, .priv = &t->fake};

		assert_int_equal(vhost_user_server_create(&dev2, &t->log, &s2),
				 0);
		assert_int_equal(vhost_user_server_listen(s2, path),
				 -EADDRINUSE);
		vhost_user_server_destroy(s2);
	}
	vhost_user_server_destroy(s);
	assert_int_not_equal(stat(path, &st), 0); /* socket removed */

	/* a stale socket is replaced, a regular file is not */
	{
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un a = {.sun_family = AF_UNIX};

		snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
		assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		close(fd); /* bound, never listened: stale */
	}
	assert_int_equal(vhost_user_server_create(&dev, &t->log, &s), 0);
	assert_int_equal(vhost_user_server_listen(s, path), 0);
	vhost_user_server_destroy(s);
	snprintf(file, sizeof(file), "%s/file", dir);
	close(open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	assert_int_equal(vhost_user_server_create(&dev, &t->log, &s), 0);
	assert_int_equal(vhost_user_server_listen(s, file), -EEXIST);
	assert_int_equal(stat(file, &st), 0);
	assert_true(vhost_user_server_listen(s, "") < 0);
	vhost_user_server_destroy(s);
	unlink(file);
	rmdir(dir);
}

/* issue 18: a front-end that connects and says nothing does not hold the
 * only slot forever. */
static void test_handshake_timeout(void **state)
{
	struct t *t = *state;
	struct vhost_user_server *s;
	struct virtio_dev dev = {.ops = &fake_ops, .priv = &t->fake};
	char dir[] = "/tmp/kiln-vu-test.XXXXXX", path[64];
	struct t c = {0};
	uint64_t f = 0;
	char ch;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sock", dir);
	assert_int_equal(vhost_user_server_create(&dev, &t->log, &s), 0);
	vhost_user_server_set_io_timeout(s, 50); /* handshake: 100 ms */
	assert_int_equal(vhost_user_server_listen(s, path), 0);
	c.peer = connect_to(path);
	for (int i = 0; i < 20 && !vhost_user_server_connected(s); i++)
		assert_true(vhost_user_server_poll(s, 50) >= 0);
	assert_true(vhost_user_server_connected(s));
	for (int i = 0; i < 40 && vhost_user_server_connected(s); i++)
		assert_true(vhost_user_server_poll(s, 50) >= 0);
	assert_false(vhost_user_server_connected(s));
	assert_int_equal(recv(c.peer, &ch, 1, 0), 0);
	close(c.peer);

	/* one that speaks in time is served, and may then be idle */
	c.peer = connect_to(path);
	send_msg(&c, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL,
		 0);
	for (int i = 0; i < 20 && !reply_waiting(&c, 0); i++)
		assert_true(vhost_user_server_poll(s, 50) >= 0);
	assert_int_equal(recv_reply(&c, VHOST_USER_GET_FEATURES, &f, 8), 8);
	for (int i = 0; i < 6; i++)
		assert_true(vhost_user_server_poll(s, 50) >= 0);
	assert_true(vhost_user_server_connected(s));
	close(c.peer);
	vhost_user_server_destroy(s);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_get_features),
		T(test_protocol_features),
		T(test_protocol_features_no_config),
		T(test_set_features),
		T(test_need_reply),
		T(test_unknown_request),
		T(test_truncated_header),
		T(test_truncated_payload),
		T(test_stalled_message),
		T(test_oversized),
		T(test_bad_version),
		T(test_dropped_fds_closed),
		T(test_too_many_fds),
		T(test_unexpected_fds_closed),
		T(test_vring_fd_checks),
		T(test_mem_table_valid),
		T(test_mem_table_two_regions),
		T(test_mem_table_overlap),
		T(test_mem_table_bad_regions),
		T(test_mem_table_bad_shape),
		T(test_mem_shrunk_under_mapping),
		T(test_mem_unsealed_refused_without_guard),
		T(test_vring_addr),
		T(test_vring_num_base),
		T(test_ring_flow),
		T(test_ring_frozen),
		T(test_ring_disabled),
		T(test_ring_outside_ram),
		T(test_broken_ring_signals_err),
		T(test_activation_failure),
		T(test_reset_device),
		T(test_get_config),
		T(test_set_config),
		T(test_disconnect_and_reattach),
		T(test_handle_msg_without_connection),
		T(test_listen_and_reconnect),
		T(test_handshake_timeout),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
