/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: virtio-vsock as a hostile guest drives it. A fresh
 * device per input sits on split rings in fake guest RAM, with real Unix
 * sockets in a directory made once: a host service listens on port 1
 * ("<path>_1"), so guest REQUESTs to port 1 connect and the rest get RST.
 * Invariants are checked on every packet the device sends the guest and
 * on its counters; the device is destroyed after each input and must
 * leave no connection and no fd behind.
 *
 * Input: records, each starting with a kind byte k:
 *   k % 4 == 0  a tx packet: u8 split, u16 len, then len bytes (zero
 *               padded) as the chain's readable part; split != 0 cuts it
 *               into two descriptors at split % len
 *   k % 4 == 1  post (k >> 2 & 7) + 1 rx buffers of u16 size (<= 8 KiB)
 *   k % 4 == 2  host side: accept on port 1, write u8 n bytes into every
 *               host socket, close the oldest if k & 4, run the device
 *   k % 4 == 3  a host client: connect to "<path>" and write u8 n bytes
 *               (e.g. "CONNECT 5\n")
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "virtio/vsock.h"

#define GUEST_CID 3
#define RAM_SIZE  (2u << 20)
#define QSZ	  64
#define QBASE(i)  (0x1000u + (i)*0x3000u)
#define RX_AREA	  0x10000u
#define RX_STRIDE 0x2000u
#define TX_AREA	  0x100000u
#define MAX_HOST  16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

struct fz {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtio_dev dev;
	char path[80];
	int listener;
	uint16_t avail_idx[3], used_seen[3];
	uint32_t rx_size[QSZ];
	uint16_t rx_next;
	unsigned rx_out;
	int host[MAX_HOST];
	unsigned nhost;
};

static struct fz fz;

static const struct virtio_transport_ops transport = {0};

static void setup_once(void)
{
	static char dir[] = "/tmp/kiln-fuzz-vsock-XXXXXX";
	struct sockaddr_un a = {.sun_family = AF_UNIX};

	if (fz.ram)
		return;
	fz.ram = calloc(1, RAM_SIZE);
	check(fz.ram != NULL);
	guest_mem_init(&fz.mem, fz.ram, RAM_SIZE);
	check(mkdtemp(dir) != NULL);
	snprintf(fz.path, sizeof(fz.path), "%s/v.sock", dir);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s_1", fz.path);
	fz.listener =
		socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	check(fz.listener >= 0);
	check(bind(fz.listener, (struct sockaddr *)&a, sizeof(a)) == 0);
	check(listen(fz.listener, 64) == 0);
}

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	check(d != NULL);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void set_desc(unsigned q, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = fz.ram + QBASE(q) + 16 * i;

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void publish(unsigned q, uint16_t head)
{
	uint8_t *avail = fz.ram + QBASE(q) + 0x1000;
	uint16_t *ring = (uint16_t *)(avail + 4);

	ring[fz.avail_idx[q] % QSZ] = head;
	fz.avail_idx[q]++;
	__atomic_store_n((uint16_t *)(avail + 2), fz.avail_idx[q],
			 __ATOMIC_RELEASE);
}

static bool take_used(unsigned q, uint32_t *id, uint32_t *len)
{
	uint8_t *used = fz.ram + QBASE(q) + 0x2000;
	uint16_t idx =
		__atomic_load_n((uint16_t *)(used + 2), __ATOMIC_ACQUIRE);
	uint8_t *el;

	if (idx == fz.used_seen[q])
		return false;
	el = used + 4 + 8 * (fz.used_seen[q] % QSZ);
	memcpy(id, el, 4);
	memcpy(len, el + 4, 4);
	fz.used_seen[q]++;
	return true;
}

/* Checks every packet the device returned on the rx ring. */
static void drain_rx(void)
{
	uint32_t id, len;

	while (take_used(0, &id, &len)) {
		const uint8_t *b = fz.ram + RX_AREA + id * RX_STRIDE;
		uint64_t src_cid, dst_cid;
		uint32_t plen;
		uint16_t type, op;

		check(id < QSZ && fz.rx_out > 0);
		fz.rx_out--;
		check(len <= fz.rx_size[id]);
		if (len == 0) {
			check(fz.rx_size[id] < VSOCK_HDR_SIZE);
			continue;
		}
		check(len >= VSOCK_HDR_SIZE);
		memcpy(&src_cid, b, 8);
		memcpy(&dst_cid, b + 8, 8);
		memcpy(&plen, b + 24, 4);
		memcpy(&type, b + 28, 2);
		memcpy(&op, b + 30, 2);
		check(src_cid == VSOCK_HOST_CID && dst_cid == GUEST_CID);
		check(type == VSOCK_TYPE_STREAM);
		check(op >= VSOCK_OP_REQUEST && op <= VSOCK_OP_CREDIT_REQUEST);
		check(len == VSOCK_HDR_SIZE + plen);
		check(plen == 0 || op == VSOCK_OP_RW);
		check(plen <= VSOCK_MAX_PKT);
	}
}

static void run_device(void)
{
	struct pollfd p = {.fd = virtio_vsock_poll_fd(&fz.dev),
			   .events = POLLIN};

	for (unsigned i = 0; i < 64 && poll(&p, 1, 0) == 1; i++)
		virtio_vsock_handle_events(&fz.dev);
	drain_rx();
}

static void check_stats(void)
{
	struct virtio_vsock_stats s;

	virtio_vsock_get_stats(&fz.dev, &s);
	check(s.conns <= 16);
	check(s.queued_bytes <= (uint64_t)s.conns * 4096);
}

static int dev_setup(void)
{
	struct virtio_vsock_config cfg = {
		.guest_cid = GUEST_CID,
		.uds_path = fz.path,
		.max_conns = 16,
		.buf_alloc = 4096, /* small: backpressure comes quickly */
		.connect_ms = 1000,
		.close_ms = 1000,
	};

	memset(&fz.dev, 0, sizeof(fz.dev));
	memset(fz.ram, 0, TX_AREA); /* rings */
	memset(fz.avail_idx, 0, sizeof(fz.avail_idx));
	memset(fz.used_seen, 0, sizeof(fz.used_seen));
	fz.rx_next = 0;
	fz.rx_out = 0;
	fz.nhost = 0;
	if (virtio_vsock_create(&cfg, &fz.dev) < 0)
		return -1;
	fz.dev.mem = &fz.mem;
	fz.dev.transport = &transport;
	fz.dev.driver_features = virtio_dev_features(&fz.dev);
	virtio_dev_apply_features(&fz.dev);
	for (unsigned i = 0; i < 3; i++) {
		struct virtq *q = &fz.dev.vqs[i];

		q->size = QSZ;
		q->desc_gpa = QBASE(i);
		q->avail_gpa = QBASE(i) + 0x1000;
		q->used_gpa = QBASE(i) + 0x2000;
		check(virtq_check_config(q, VSOCK_QUEUE_SIZE) == 0);
		q->ready = true;
	}
	fz.dev.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	return 0;
}

static void host_add(int fd)
{
	if (fz.nhost == MAX_HOST) {
		close(fd);
		return;
	}
	fz.host[fz.nhost++] = fd;
}

static void do_tx(const uint8_t *data, size_t size, size_t *pos)
{
	uint8_t split;
	uint16_t len;
	size_t n;

	if (*pos + 3 > size)
		return;
	split = data[*pos];
	len = (uint16_t)(data[*pos + 1] | data[*pos + 2] << 8);
	*pos += 3;
	n = size - *pos < len ? size - *pos : len;
	memcpy(fz.ram + TX_AREA, data + *pos, n);
	memset(fz.ram + TX_AREA + n, 0, len - n);
	*pos += n;
	if (split && len > 1 && split % len) {
		uint32_t cut = split % len;

		set_desc(1, 0, TX_AREA, cut, VIRTQ_DESC_F_NEXT, 1);
		set_desc(1, 1, TX_AREA + cut, len - cut, 0, 0);
	} else {
		set_desc(1, 0, TX_AREA, len, 0, 0);
	}
	publish(1, 0);
	fz.dev.ops->queue_notify(&fz.dev, VSOCK_QUEUE_TX);
	{
		uint32_t id, used;

		if (fz.dev.status & VIRTIO_STATUS_NEEDS_RESET)
			return;
		check(take_used(1, &id, &used) && id == 0 && used == 0);
	}
	drain_rx();
}

static void do_rx(uint8_t k, const uint8_t *data, size_t size, size_t *pos)
{
	unsigned count = ((k >> 2) & 7) + 1;
	uint32_t bsize;

	if (*pos + 2 > size)
		return;
	bsize = (uint32_t)(data[*pos] | data[*pos + 1] << 8) % (RX_STRIDE + 1);
	*pos += 2;
	for (unsigned i = 0; i < count && fz.rx_out < QSZ; i++) {
		uint16_t d = fz.rx_next++ % QSZ;

		fz.rx_size[d] = bsize;
		set_desc(0, d, RX_AREA + d * RX_STRIDE, bsize,
			 VIRTQ_DESC_F_WRITE, 0);
		publish(0, d);
		fz.rx_out++;
	}
	fz.dev.ops->queue_notify(&fz.dev, VSOCK_QUEUE_RX);
	drain_rx();
}

static void do_host(uint8_t k, const uint8_t *data, size_t size, size_t *pos)
{
	size_t n;
	int fd;

	while ((fd = accept4(fz.listener, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
		host_add(fd);
	if (*pos < size) {
		n = data[(*pos)++];
		n = size - *pos < n ? size - *pos : n;
		for (unsigned i = 0; i < fz.nhost; i++)
			if (send(fz.host[i], data + *pos, n,
				 MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			}
		*pos += n;
	}
	if ((k & 4) && fz.nhost) {
		close(fz.host[0]);
		memmove(fz.host, fz.host + 1, --fz.nhost * sizeof(int));
	}
	run_device();
}

static void do_client(const uint8_t *data, size_t size, size_t *pos)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t n;
	int fd;

	if (*pos >= size)
		return;
	n = data[(*pos)++];
	n = size - *pos < n ? size - *pos : n;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", fz.path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		*pos += n;
		return;
	}
	if (n && send(fd, data + *pos, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
	}
	*pos += n;
	host_add(fd);
	run_device();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned fds_at_start;
	size_t pos = 0;
	struct virtio_vsock_stats s;
	int fd;

	setup_once();
	if (!fds_at_start)
		fds_at_start = count_fds();
	if (dev_setup() < 0)
		return 0;
	while (pos < size) {
		uint8_t k = data[pos++];

		switch (k % 4) {
		case 0: do_tx(data, size, &pos); break;
		case 1: do_rx(k, data, size, &pos); break;
		case 2: do_host(k, data, size, &pos); break;
		default: do_client(data, size, &pos); break;
		}
		check_stats();
	}
	run_device();
	check_stats();

	/* every host end closed: the device notices, and reset closes the
	 * rest */
	for (unsigned i = 0; i < fz.nhost; i++)
		close(fz.host[i]);
	fz.nhost = 0;
	while ((fd = accept4(fz.listener, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(fd);
	virtio_dev_reset(&fz.dev);
	run_device();
	virtio_vsock_get_stats(&fz.dev, &s);
	check(s.conns == 0 && s.queued_bytes == 0);
	virtio_vsock_destroy(&fz.dev);
	check(count_fds() == fds_at_start);
	return 0;
}
