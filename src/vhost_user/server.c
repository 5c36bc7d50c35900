/* SPDX-License-Identifier: MIT */
/*
 * vhost-user back-end (see server.h). One epoll loop watches the stop
 * eventfd, the listening socket (only while nobody is connected), the
 * front-end's socket and the kick eventfds of running rings.
 *
 * Ring life cycle: a ring starts once it has a kick fd, addresses and is
 * enabled (rings are enabled from the start when PROTOCOL_FEATURES was not
 * negotiated); its configuration is then copied into the virtq, checked,
 * and frozen until GET_VRING_BASE stops it. The device is activated when
 * the first ring starts and reset when the last one stops.
 */
#include "server.h"
#include "memguard.h"
#include "util/clock.h"
#include "util/unix_socket.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define F_PROTOCOL (1ull << VHOST_USER_F_PROTOCOL_FEATURES)

/* epoll tags; a kick is TAG_KICK + ring index */
enum {
	TAG_STOP = 1,
	TAG_LISTEN,
	TAG_CONN,
	TAG_DEVICE,
	TAG_HANDSHAKE,
	TAG_KICK = 16
};

/* A front-end that connects to the socket must have sent a whole first
 * message within this many I/O timeouts (10 s by default), or it is
 * dropped: it would hold the only slot forever. */
#define HANDSHAKE_IO_TIMEOUTS 2

struct vu_region {
	uint64_t gpa, size, uaddr;
	void *map; /* what to munmap */
	size_t map_len;
	int guard; /* memguard slot, or -1 */
};

struct vu_ring {
	/* front-end config, copied into the virtq when the ring starts */
	uint16_t num, base;
	bool addr_set;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool enabled;
	bool started;
	bool watched; /* kick_fd is in the epoll set */
	int kick_fd, call_fd, err_fd;
};

struct fd_list {
	int fds[VHOST_USER_MAX_FDS];
	unsigned n;
	bool overflow; /* more arrived than fit: the message is refused */
};

struct vu_reply {
	uint32_t size;
	union {
		uint64_t u64;
		struct vhost_user_vring_state state;
		struct vhost_user_config config;
	} body;
};

struct vhost_user_server {
	struct virtio_dev *dev;
	const struct kiln_log *log;
	unsigned nqueues;
	uint16_t max_ring;
	int epoll_fd, stop_fd, listen_fd, conn_fd;
	int handshake_fd;     /* timerfd: the first message's deadline */
	bool handshake_armed; /* no complete message yet */
	/* the lines a front-end can trigger at will */
	struct kiln_ratelimit log_limit;
	char *path; /* the socket we bound, removed on destroy */
	struct unix_socket_id path_id; /* the socket file we made */
	int io_timeout_ms;
	bool stopped;
	bool dev_watched; /* the device's host fd (ops->host_fd) is in epoll */
	/* per-connection state */
	uint64_t features; /* as set, PROTOCOL_FEATURES bit included */
	uint64_t protocol_features;
	bool active; /* ops->activate has run since the last reset */
	struct guest_mem mem;
	struct vu_region regions[VHOST_USER_MAX_REGIONS];
	unsigned nr_regions;
	struct vu_ring rings[VIRTIO_MAX_QUEUES];
	/* call/err fds: a device may complete requests from its own threads */
	pthread_mutex_t irq_lock;
	union {
		uint64_t align;
		uint8_t buf[VHOST_USER_MAX_PAYLOAD];
	} payload;
};

static const char *const request_names[] = {
	[VHOST_USER_GET_FEATURES] = "GET_FEATURES",
	[VHOST_USER_SET_FEATURES] = "SET_FEATURES",
	[VHOST_USER_SET_OWNER] = "SET_OWNER",
	[VHOST_USER_RESET_OWNER] = "RESET_OWNER",
	[VHOST_USER_SET_MEM_TABLE] = "SET_MEM_TABLE",
	[VHOST_USER_SET_LOG_BASE] = "SET_LOG_BASE",
	[VHOST_USER_SET_LOG_FD] = "SET_LOG_FD",
	[VHOST_USER_SET_VRING_NUM] = "SET_VRING_NUM",
	[VHOST_USER_SET_VRING_ADDR] = "SET_VRING_ADDR",
	[VHOST_USER_SET_VRING_BASE] = "SET_VRING_BASE",
	[VHOST_USER_GET_VRING_BASE] = "GET_VRING_BASE",
	[VHOST_USER_SET_VRING_KICK] = "SET_VRING_KICK",
	[VHOST_USER_SET_VRING_CALL] = "SET_VRING_CALL",
	[VHOST_USER_SET_VRING_ERR] = "SET_VRING_ERR",
	[VHOST_USER_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
	[VHOST_USER_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
	[VHOST_USER_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
	[VHOST_USER_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
	[VHOST_USER_SEND_RARP] = "SEND_RARP",
	[VHOST_USER_NET_SET_MTU] = "NET_SET_MTU",
	[VHOST_USER_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD",
	[VHOST_USER_IOTLB_MSG] = "IOTLB_MSG",
	[VHOST_USER_SET_VRING_ENDIAN] = "SET_VRING_ENDIAN",
	[VHOST_USER_GET_CONFIG] = "GET_CONFIG",
	[VHOST_USER_SET_CONFIG] = "SET_CONFIG",
	[VHOST_USER_CREATE_CRYPTO_SESSION] = "CREATE_CRYPTO_SESSION",
	[VHOST_USER_CLOSE_CRYPTO_SESSION] = "CLOSE_CRYPTO_SESSION",
	[VHOST_USER_POSTCOPY_ADVISE] = "POSTCOPY_ADVISE",
	[VHOST_USER_POSTCOPY_LISTEN] = "POSTCOPY_LISTEN",
	[VHOST_USER_POSTCOPY_END] = "POSTCOPY_END",
	[VHOST_USER_GET_INFLIGHT_FD] = "GET_INFLIGHT_FD",
	[VHOST_USER_SET_INFLIGHT_FD] = "SET_INFLIGHT_FD",
	[VHOST_USER_GPU_SET_SOCKET] = "GPU_SET_SOCKET",
	[VHOST_USER_RESET_DEVICE] = "RESET_DEVICE",
	[VHOST_USER_VRING_KICK] = "VRING_KICK",
	[VHOST_USER_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
	[VHOST_USER_ADD_MEM_REG] = "ADD_MEM_REG",
	[VHOST_USER_REM_MEM_REG] = "REM_MEM_REG",
	[VHOST_USER_SET_STATUS] = "SET_STATUS",
	[VHOST_USER_GET_STATUS] = "GET_STATUS",
};

static const char *request_name(uint32_t req)
{
	if (req < sizeof(request_names) / sizeof(request_names[0]) &&
	    request_names[req])
		return request_names[req];
	return "unknown request";
}

/* Requests whose answer is a message of its own, not a REPLY_ACK u64;
 * the front-end waits for it, so even a refusal must be answered. */
static bool has_reply_body(uint32_t req)
{
	switch (req) {
	case VHOST_USER_GET_FEATURES:
	case VHOST_USER_GET_PROTOCOL_FEATURES:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_GET_QUEUE_NUM:
	case VHOST_USER_GET_CONFIG:
	case VHOST_USER_GET_MAX_MEM_SLOTS:
	case VHOST_USER_GET_INFLIGHT_FD:
	case VHOST_USER_GET_STATUS:
	case VHOST_USER_POSTCOPY_ADVISE:
	case VHOST_USER_POSTCOPY_END:
	case VHOST_USER_IOTLB_MSG:
	case VHOST_USER_CREATE_CRYPTO_SESSION: return true;
	default: return false;
	}
}

/* Logs why a front-end request is refused and returns err. Warning level:
 * the peer is at fault, not kiln. */
static int refuse(struct vhost_user_server *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(struct vhost_user_server *s, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kiln_logf_limited(s->log, &s->log_limit, KILN_LOG_WARN,
			  "vhost-user: %s", msg);
	return err;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void signal_fd(int fd)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is saturated: already signalled. */
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
	}
}

/* Only eventfds are accepted for kick/call/err: they never block a
 * non-blocking reader or writer and cannot raise SIGPIPE like a pipe. */
static bool is_eventfd(int fd)
{
	char link[64], target[32];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return !strcmp(target, "anon_inode:[eventfd]");
}

/* --- transport ops seen by the device --- */

static void vu_notify_used(struct virtio_dev *d, unsigned q)
{
	struct vhost_user_server *s = d->transport_priv;

	if (q >= s->nqueues)
		return;
	pthread_mutex_lock(&s->irq_lock);
	signal_fd(s->rings[q].call_fd);
	pthread_mutex_unlock(&s->irq_lock);
}

/* vhost-user has no status register to show NEEDS_RESET in; the err
 * eventfds are how a back-end reports a broken ring. */
static void vu_needs_reset(struct virtio_dev *d)
{
	struct vhost_user_server *s = d->transport_priv;

	pthread_mutex_lock(&s->irq_lock);
	for (unsigned i = 0; i < s->nqueues; i++)
		signal_fd(s->rings[i].err_fd);
	pthread_mutex_unlock(&s->irq_lock);
}

static const struct virtio_transport_ops vu_transport = {
	.notify_used = vu_notify_used,
	.needs_reset = vu_needs_reset,
};

/* --- rings --- */

static bool ring_enabled(const struct vhost_user_server *s,
			 const struct vu_ring *r)
{
	return r->enabled || !(s->features & F_PROTOCOL);
}

static void watch_kick(struct vhost_user_server *s, unsigned i, bool on)
{
	struct vu_ring *r = &s->rings[i];
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_KICK + i};

	if (on == r->watched || r->kick_fd < 0)
		return;
	if (epoll_ctl(s->epoll_fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
		      r->kick_fd, &ev) < 0) {
		log_error(s->log, "vhost-user: ring %u: cannot %s kick fd: %s",
			  i, on ? "watch" : "unwatch", strerror(errno));
		return;
	}
	r->watched = on;
}

/* Lets the device look at ring i if it may work now. */
static void ring_process(struct vhost_user_server *s, unsigned i)
{
	struct virtio_dev *d = s->dev;
	struct vu_ring *r = &s->rings[i];

	if (r->started && ring_enabled(s, r) && s->active &&
	    !(d->status & VIRTIO_STATUS_NEEDS_RESET) && d->vqs[i].ready &&
	    !d->vqs[i].broken && d->ops->queue_notify)
		d->ops->queue_notify(d, i);
}

static int activate(struct vhost_user_server *s)
{
	struct virtio_dev *d = s->dev;

	d->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	if (d->ops->activate && d->ops->activate(d) < 0) {
		virtio_dev_fail(d, "activation failed");
		return -EIO;
	}
	s->active = true;
	log_debug(s->log, "vhost-user: %s activated, features 0x%llx",
		  d->ops->name, (unsigned long long)d->driver_features);
	return 0;
}

static int ring_try_start(struct vhost_user_server *s, unsigned i)
{
	struct virtio_dev *d = s->dev;
	struct vu_ring *r = &s->rings[i];
	struct virtq *vq = &d->vqs[i];
	const void *used_idx;
	uint16_t used;
	int err;

	if (r->started || r->kick_fd < 0 || !r->addr_set || !ring_enabled(s, r))
		return 0;
	virtq_reset(vq);
	vq->size = r->num;
	vq->desc_gpa = r->desc_gpa;
	vq->avail_gpa = r->avail_gpa;
	vq->used_gpa = r->used_gpa;
	d->mem = &s->mem;
	d->driver_features = s->features & ~F_PROTOCOL;
	virtio_dev_apply_features(d);
	if (virtq_check_config(vq, s->max_ring) < 0)
		return refuse(
			s, -EINVAL,
			"ring %u: size %u or ring addresses (desc 0x%llx "
			"avail 0x%llx used 0x%llx) not valid in guest RAM",
			i, r->num, (unsigned long long)r->desc_gpa,
			(unsigned long long)r->avail_gpa,
			(unsigned long long)r->used_gpa);
	/* Continue where the driver's used ring says the last back-end
	 * stopped; the avail side comes from SET_VRING_BASE. */
	used_idx = guest_mem_ptr(&s->mem, r->used_gpa + 2, 2);
	vq->last_avail_idx = r->base;
	used = 0;
	if (used_idx)
		memcpy(&used, used_idx, sizeof(used));
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	vq->used_idx = le16toh(used);
	if (!s->active) {
		err = activate(s);
		if (err < 0)
			return err;
	}
	vq->ready = true;
	r->started = true;
	watch_kick(s, i, true);
	log_debug(s->log, "vhost-user: ring %u started (size %u, base %u)", i,
		  r->num, r->base);
	/* Requests may already wait (a restart after a stop): the spec
	 * says not to count on a kick for them. */
	if (r->call_fd >= 0)
		ring_process(s, i);
	return 0;
}

/* Stops ring i, keeping where it stopped in r->base. */
static void ring_stop(struct vhost_user_server *s, unsigned i)
{
	struct vu_ring *r = &s->rings[i];
	struct virtq *vq = &s->dev->vqs[i];

	watch_kick(s, i, false);
	close_fd(&r->kick_fd);
	if (!r->started)
		return;
	/* requests still running complete first: the base says where the
	 * device stopped, every one before it answered */
	if (s->dev->ops->quiesce)
		s->dev->ops->quiesce(s->dev);
	r->base = vq->last_avail_idx;
	vq->ready = false;
	r->started = false;
	log_debug(s->log, "vhost-user: ring %u stopped at %u", i, r->base);
}

/* With every ring stopped the driver is gone or resetting: the next
 * start is a new activation. */
static void maybe_deactivate(struct vhost_user_server *s)
{
	for (unsigned i = 0; i < s->nqueues; i++)
		if (s->rings[i].started)
			return;
	if (s->active) {
		virtio_dev_reset(s->dev);
		s->active = false;
	}
}

/* Back to the state of a new connection, minus the connection's own
 * settings (memory table, call/err fds, protocol features). */
static void reset_device(struct vhost_user_server *s)
{
	for (unsigned i = 0; i < s->nqueues; i++) {
		struct vu_ring *r = &s->rings[i];

		ring_stop(s, i);
		r->num = r->base = 0;
		r->addr_set = false;
		r->enabled = false;
	}
	virtio_dev_reset(s->dev);
	s->active = false;
	s->features = 0;
}

/* --- memory table --- */

static void unmap_regions(struct vu_region *regions, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (!regions[i].map)
			continue;
		memguard_remove(regions[i].guard);
		regions[i].guard = -1;
		munmap(regions[i].map, regions[i].map_len);
	}
}

static void drop_mem_table(struct vhost_user_server *s)
{
	unmap_regions(s->regions, s->nr_regions);
	memset(s->regions, 0, sizeof(s->regions));
	s->nr_regions = 0;
	memset(&s->mem, 0, sizeof(s->mem));
}

static int map_region(struct vhost_user_server *s, unsigned i,
		      const struct vhost_user_mem_region *m, int fd,
		      struct vu_region *out, uint8_t **host)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t size = m->memory_size, off = m->mmap_offset;
	uint64_t aligned = off & ~(page - 1), delta = off - aligned;
	struct stat st;
	int seals, guard;
	bool sealed;
	void *p;

	if (size == 0)
		return refuse(s, -EINVAL, "memory region %u has size 0", i);
	if (m->guest_phys_addr + size < m->guest_phys_addr ||
	    m->userspace_addr + size < m->userspace_addr || off + size < off ||
	    size > SIZE_MAX - delta)
		return refuse(s, -EINVAL,
			      "memory region %u wraps around (gpa 0x%llx uaddr "
			      "0x%llx offset 0x%llx size 0x%llx)",
			      i, (unsigned long long)m->guest_phys_addr,
			      (unsigned long long)m->userspace_addr,
			      (unsigned long long)off,
			      (unsigned long long)size);
	/* Touching a shared mapping past the end of its file is SIGBUS:
	 * only files that really hold the whole region are mapped. */
	if (fstat(fd, &st) < 0)
		return refuse(s, -errno, "memory region %u: fstat: %s", i,
			      strerror(errno));
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < off + size)
		return refuse(s, -EINVAL,
			      "memory region %u: fd is not a file of at least "
			      "0x%llx bytes",
			      i, (unsigned long long)(off + size));
	/* ...and the file must stay that big: a memfd sealed against
	 * shrinking (QEMU's memory-backend-memfd is, by default: seal=on),
	 * or, for any other file, the SIGBUS guard, which survives a shrink
	 * and drops the front-end. */
	seals = fcntl(fd, F_GET_SEALS);
	sealed = seals >= 0 && (seals & F_SEAL_SHRINK);
	p = mmap(NULL, (size_t)(delta + size), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_NORESERVE, fd, (off_t)aligned);
	if (p == MAP_FAILED)
		return refuse(s, -errno, "memory region %u: mmap: %s", i,
			      strerror(errno));
	guard = memguard_add(p, (size_t)(delta + size));
	if (guard < 0 && !sealed) {
		munmap(p, (size_t)(delta + size));
		return refuse(s, -EPERM,
			      "memory region %u: the front-end's file can "
			      "shrink under the mapping (not a memfd sealed "
			      "with F_SEAL_SHRINK) and %s; refusing it (QEMU: "
			      "-object memory-backend-memfd,...,share=on)",
			      i,
			      guard == -EBUSY
				      ? "this process has a SIGBUS handler of "
					"its own"
				      : "no SIGBUS guard is left");
	}
	madvise(p, (size_t)(delta + size), MADV_DONTDUMP);
	log_debug(s->log, "vhost-user: memory region %u: %s%s", i,
		  sealed ? "sealed against shrinking" : "file may shrink",
		  guard >= 0 ? ", SIGBUS-guarded" : "");
	*out = (struct vu_region){.gpa = m->guest_phys_addr,
				  .size = size,
				  .uaddr = m->userspace_addr,
				  .map = p,
				  .map_len = (size_t)(delta + size),
				  .guard = guard};
	*host = (uint8_t *)p + delta;
	return 0;
}

static int set_mem_table(struct vhost_user_server *s, const void *payload,
			 uint32_t size, int *fds, unsigned nfds)
{
	struct vhost_user_mem_table t;
	struct vu_region regions[VHOST_USER_MAX_REGIONS];
	struct guest_mem mem;
	unsigned n = 0;
	int err = 0;

	memset(&t, 0, sizeof(t));
	if (size < 8)
		return refuse(s, -EINVAL, "SET_MEM_TABLE: %u-byte payload",
			      size);
	memcpy(&t, payload, 8);
	if (t.nregions == 0 || t.nregions > VHOST_USER_MAX_REGIONS)
		return refuse(s, -EINVAL, "SET_MEM_TABLE: %u regions (1..%u)",
			      t.nregions, VHOST_USER_MAX_REGIONS);
	if (size != 8 + t.nregions * sizeof(struct vhost_user_mem_region))
		return refuse(s, -EINVAL,
			      "SET_MEM_TABLE: %u-byte payload for %u regions",
			      size, t.nregions);
	if (nfds != t.nregions)
		return refuse(s, -EINVAL,
			      "SET_MEM_TABLE: %u fds for %u regions", nfds,
			      t.nregions);
	memcpy(&t, payload, size);

	memset(&mem, 0, sizeof(mem));
	memset(regions, 0, sizeof(regions));
	for (n = 0; n < t.nregions; n++) {
		const struct vhost_user_mem_region *m = &t.regions[n];
		uint8_t *host = NULL;

		/* User addresses must be unambiguous: ring addresses are
		 * translated through them. */
		for (unsigned j = 0; j < n; j++) {
			if (m->userspace_addr <
				    regions[j].uaddr + regions[j].size &&
			    regions[j].uaddr <
				    m->userspace_addr + m->memory_size) {
				err = refuse(s, -EINVAL,
					     "memory regions %u and %u overlap "
					     "in user addresses",
					     j, n);
				goto fail;
			}
		}
		err = map_region(s, n, m, fds[n], &regions[n], &host);
		if (err < 0)
			goto fail;
		err = guest_mem_add_region(&mem, m->guest_phys_addr,
					   m->memory_size, host);
		if (err < 0) {
			err = refuse(
				s, err,
				"memory region %u (gpa 0x%llx size 0x%llx) "
				"overlaps another",
				n, (unsigned long long)m->guest_phys_addr,
				(unsigned long long)m->memory_size);
			n++; /* regions[n] is mapped */
			goto fail;
		}
	}
	/* The virtqs and the device point at s->mem, so the new table
	 * replaces the old in place; the rings keep their guest addresses.
	 * No request may still be reading or writing the old mappings. */
	if (s->dev->ops->quiesce)
		s->dev->ops->quiesce(s->dev);
	unmap_regions(s->regions, s->nr_regions);
	/* The mappings keep the memory; the fds are not needed any more. */
	for (unsigned i = 0; i < nfds; i++)
		close_fd(&fds[i]);
	memcpy(s->regions, regions, sizeof(regions));
	s->nr_regions = t.nregions;
	s->mem = mem;
	for (unsigned i = 0; i < t.nregions; i++)
		log_debug(s->log,
			  "vhost-user: region %u: gpa 0x%llx size 0x%llx "
			  "uaddr 0x%llx",
			  i, (unsigned long long)regions[i].gpa,
			  (unsigned long long)regions[i].size,
			  (unsigned long long)regions[i].uaddr);
	return 0;
fail:
	unmap_regions(regions, n);
	return err;
}

/* Front-end virtual address -> guest-physical, or false. */
static bool uaddr_to_gpa(const struct vhost_user_server *s, uint64_t uaddr,
			 uint64_t *gpa)
{
	for (unsigned i = 0; i < s->nr_regions; i++) {
		const struct vu_region *r = &s->regions[i];

		if (uaddr >= r->uaddr && uaddr - r->uaddr < r->size) {
			*gpa = r->gpa + (uaddr - r->uaddr);
			return true;
		}
	}
	return false;
}

/* --- request handlers --- */

static int check_size(struct vhost_user_server *s, uint32_t req, uint32_t size,
		      size_t want)
{
	if (size != want)
		return refuse(s, -EINVAL, "%s: %u-byte payload, expected %zu",
			      request_name(req), size, want);
	return 0;
}

/* Ring index from a request; -EINVAL unless the device has that ring. */
static int check_ring(struct vhost_user_server *s, uint32_t req, uint64_t idx)
{
	if (idx >= s->nqueues)
		return refuse(s, -EINVAL, "%s: ring %llu of %u",
			      request_name(req), (unsigned long long)idx,
			      s->nqueues);
	return 0;
}

static int check_stopped(struct vhost_user_server *s, uint32_t req,
			 unsigned idx)
{
	if (s->rings[idx].started)
		return refuse(s, -EBUSY, "%s: ring %u is running",
			      request_name(req), idx);
	return 0;
}

static uint64_t offered_features(struct vhost_user_server *s)
{
	return virtio_dev_features(s->dev) | F_PROTOCOL;
}

/* CONFIG only for a device that has a config space: QEMU warns about a
 * back-end offering it for a device type (rng) it never asks. */
static uint64_t offered_protocol_features(const struct vhost_user_server *s)
{
	uint64_t pf = VHOST_USER_SERVER_PROTOCOL_FEATURES;

	if (!s->dev->ops->config_size)
		pf &= ~(1ull << VHOST_USER_PROTOCOL_F_CONFIG);
	return pf;
}

static int set_features(struct vhost_user_server *s, uint64_t f)
{
	uint64_t offered = offered_features(s);

	if (f & ~offered)
		return refuse(
			s, -EINVAL,
			"SET_FEATURES: 0x%llx not offered (offered 0x%llx)",
			(unsigned long long)(f & ~offered),
			(unsigned long long)offered);
	if (s->active && f != s->features)
		return refuse(s, -EBUSY,
			      "SET_FEATURES: features change while the device "
			      "runs");
	s->features = f;
	s->dev->driver_features = f & ~F_PROTOCOL;
	virtio_dev_apply_features(s->dev);
	return 0;
}

static int vring_state(struct vhost_user_server *s, uint32_t req,
		       const void *payload, uint32_t size,
		       struct vhost_user_vring_state *st)
{
	int err = check_size(s, req, size, sizeof(*st));

	if (err < 0)
		return err;
	memcpy(st, payload, sizeof(*st));
	return check_ring(s, req, st->index);
}

static int set_vring_num(struct vhost_user_server *s, const void *payload,
			 uint32_t size)
{
	struct vhost_user_vring_state st;
	int err = vring_state(s, VHOST_USER_SET_VRING_NUM, payload, size, &st);

	if (err < 0)
		return err;
	err = check_stopped(s, VHOST_USER_SET_VRING_NUM, st.index);
	if (err < 0)
		return err;
	if (st.num == 0 || st.num > s->max_ring || (st.num & (st.num - 1)))
		return refuse(s, -EINVAL,
			      "SET_VRING_NUM: ring %u size %u (power of two "
			      "up to %u)",
			      st.index, st.num, s->max_ring);
	s->rings[st.index].num = (uint16_t)st.num;
	return ring_try_start(s, st.index);
}

static int set_vring_base(struct vhost_user_server *s, const void *payload,
			  uint32_t size)
{
	struct vhost_user_vring_state st;
	int err = vring_state(s, VHOST_USER_SET_VRING_BASE, payload, size, &st);

	if (err < 0)
		return err;
	err = check_stopped(s, VHOST_USER_SET_VRING_BASE, st.index);
	if (err < 0)
		return err;
	/* Split rings only: bits 16-31 belong to packed rings. */
	if (st.num > 0xffff)
		return refuse(s, -EINVAL, "SET_VRING_BASE: ring %u base 0x%x",
			      st.index, st.num);
	s->rings[st.index].base = (uint16_t)st.num;
	return 0;
}

static int get_vring_base(struct vhost_user_server *s, const void *payload,
			  uint32_t size, struct vu_reply *rep)
{
	struct vhost_user_vring_state st;
	int err = vring_state(s, VHOST_USER_GET_VRING_BASE, payload, size, &st);

	if (err < 0)
		return err;
	ring_stop(s, st.index);
	rep->body.state.index = st.index;
	rep->body.state.num = s->rings[st.index].base;
	rep->size = sizeof(rep->body.state);
	maybe_deactivate(s);
	return 0;
}

static int set_vring_enable(struct vhost_user_server *s, const void *payload,
			    uint32_t size)
{
	struct vhost_user_vring_state st;
	struct vu_ring *r;
	int err =
		vring_state(s, VHOST_USER_SET_VRING_ENABLE, payload, size, &st);

	if (err < 0)
		return err;
	if (st.num > 1)
		return refuse(s, -EINVAL, "SET_VRING_ENABLE: ring %u value %u",
			      st.index, st.num);
	r = &s->rings[st.index];
	r->enabled = st.num;
	if (!r->started)
		return ring_try_start(s, st.index);
	/* A disabled ring's kicks wait in its eventfd until it is enabled. */
	watch_kick(s, st.index, ring_enabled(s, r));
	if (ring_enabled(s, r))
		ring_process(s, st.index);
	return 0;
}

static int set_vring_addr(struct vhost_user_server *s, const void *payload,
			  uint32_t size)
{
	struct vhost_user_vring_addr a;
	struct vu_ring *r;
	uint64_t desc, avail, used;
	int err = check_size(s, VHOST_USER_SET_VRING_ADDR, size, sizeof(a));

	if (err < 0)
		return err;
	memcpy(&a, payload, sizeof(a));
	err = check_ring(s, VHOST_USER_SET_VRING_ADDR, a.index);
	if (err < 0)
		return err;
	err = check_stopped(s, VHOST_USER_SET_VRING_ADDR, a.index);
	if (err < 0)
		return err;
	/* VHOST_VRING_F_LOG needs VHOST_F_LOG_ALL, which is not offered. */
	if (a.flags)
		return refuse(s, -EINVAL, "SET_VRING_ADDR: ring %u flags 0x%x",
			      a.index, a.flags);
	if (!uaddr_to_gpa(s, a.desc_user_addr, &desc) ||
	    !uaddr_to_gpa(s, a.avail_user_addr, &avail) ||
	    !uaddr_to_gpa(s, a.used_user_addr, &used))
		return refuse(
			s, -EINVAL,
			"SET_VRING_ADDR: ring %u addresses (desc 0x%llx "
			"avail 0x%llx used 0x%llx) not in the memory table",
			a.index, (unsigned long long)a.desc_user_addr,
			(unsigned long long)a.avail_user_addr,
			(unsigned long long)a.used_user_addr);
	r = &s->rings[a.index];
	r->desc_gpa = desc;
	r->avail_gpa = avail;
	r->used_gpa = used;
	r->addr_set = true;
	return ring_try_start(s, a.index);
}

static int set_vring_fd(struct vhost_user_server *s, uint32_t req,
			const void *payload, uint32_t size, int *fds,
			unsigned nfds)
{
	struct vu_ring *r;
	uint64_t v = 0;
	unsigned idx;
	int fd = -1, old, err;
	bool nofd;

	err = check_size(s, req, size, sizeof(v));
	if (err < 0)
		return err;
	memcpy(&v, payload, sizeof(v));
	if (v & ~(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK))
		return refuse(s, -EINVAL, "%s: payload 0x%llx",
			      request_name(req), (unsigned long long)v);
	idx = (unsigned)(v & VHOST_USER_VRING_IDX_MASK);
	err = check_ring(s, req, idx);
	if (err < 0)
		return err;
	nofd = v & VHOST_USER_VRING_NOFD_MASK;
	if (nfds != (nofd ? 0u : 1u))
		return refuse(s, -EINVAL, "%s: ring %u: %u fds%s",
			      request_name(req), idx, nfds,
			      nofd ? " with the no-fd flag" : "");
	/* Polling a ring would mean spinning: kiln needs kicks. */
	if (nofd && req == VHOST_USER_SET_VRING_KICK)
		return refuse(s, -ENOTSUP,
			      "SET_VRING_KICK: ring %u: polling "
			      "mode is not supported",
			      idx);
	if (!nofd) {
		if (!is_eventfd(fds[0]))
			return refuse(s, -EINVAL, "%s: ring %u: not an eventfd",
				      request_name(req), idx);
		int fl = fcntl(fds[0], F_GETFL);

		if (fl < 0 || fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) < 0)
			return refuse(s, -errno, "%s: ring %u: fcntl: %s",
				      request_name(req), idx, strerror(errno));
		fd = fds[0];
		fds[0] = -1; /* ours now */
	}
	r = &s->rings[idx];
	switch (req) {
	case VHOST_USER_SET_VRING_KICK:
		watch_kick(s, idx, false);
		close_fd(&r->kick_fd);
		r->kick_fd = fd;
		if (!r->started)
			return ring_try_start(s, idx);
		watch_kick(s, idx, ring_enabled(s, r));
		ring_process(s, idx);
		return 0;
	case VHOST_USER_SET_VRING_CALL:
		pthread_mutex_lock(&s->irq_lock);
		old = r->call_fd;
		r->call_fd = fd;
		pthread_mutex_unlock(&s->irq_lock);
		if (old >= 0)
			close(old);
		/* Completions signalled on the old fd may be lost to the
		 * driver; an extra interrupt is harmless, a lost one not. */
		if (r->started && fd >= 0) {
			signal_fd(fd);
			ring_process(s, idx);
		}
		return 0;
	default:
		pthread_mutex_lock(&s->irq_lock);
		old = r->err_fd;
		r->err_fd = fd;
		pthread_mutex_unlock(&s->irq_lock);
		if (old >= 0)
			close(old);
		return 0;
	}
}

static int get_config(struct vhost_user_server *s, const void *payload,
		      uint32_t size, struct vu_reply *rep)
{
	const struct virtio_dev_ops *ops = s->dev->ops;
	struct vhost_user_config *c = &rep->body.config;

	if (size < VHOST_USER_CONFIG_HDR_SIZE)
		return refuse(s, -EINVAL, "GET_CONFIG: %u-byte payload", size);
	memcpy(c, payload, VHOST_USER_CONFIG_HDR_SIZE);
	if (c->size > VHOST_USER_MAX_CONFIG_SIZE ||
	    size != VHOST_USER_CONFIG_HDR_SIZE + c->size ||
	    c->offset > VHOST_USER_MAX_CONFIG_SIZE ||
	    c->size > VHOST_USER_MAX_CONFIG_SIZE - c->offset)
		return refuse(s, -EINVAL,
			      "GET_CONFIG: offset %u size %u in a %u-byte "
			      "payload",
			      c->offset, c->size, size);
	/* Fields past the device's config read as zero: front-ends ask for
	 * their own idea of the struct, which may be newer than ours. */
	memset(c->region, 0, sizeof(c->region));
	if (c->offset < ops->config_size && ops->config_read) {
		uint32_t n = ops->config_size - c->offset;

		ops->config_read(s->dev, c->offset, c->region,
				 n < c->size ? n : c->size);
	}
	rep->size = VHOST_USER_CONFIG_HDR_SIZE + c->size;
	return 0;
}

static int set_config(struct vhost_user_server *s, const void *payload,
		      uint32_t size)
{
	const struct virtio_dev_ops *ops = s->dev->ops;
	struct vhost_user_config c;

	if (size < VHOST_USER_CONFIG_HDR_SIZE)
		return refuse(s, -EINVAL, "SET_CONFIG: %u-byte payload", size);
	memcpy(&c, payload, VHOST_USER_CONFIG_HDR_SIZE);
	if (c.size > VHOST_USER_MAX_CONFIG_SIZE ||
	    size != VHOST_USER_CONFIG_HDR_SIZE + c.size || c.flags > 1 ||
	    c.offset > ops->config_size || c.size > ops->config_size - c.offset)
		return refuse(s, -EINVAL,
			      "SET_CONFIG: offset %u size %u flags %u (config "
			      "is %u bytes)",
			      c.offset, c.size, c.flags, ops->config_size);
	if (!ops->config_write)
		return refuse(s, -ENOTSUP, "SET_CONFIG: %s config is read-only",
			      ops->name);
	memcpy(c.region, (const uint8_t *)payload + VHOST_USER_CONFIG_HDR_SIZE,
	       c.size);
	ops->config_write(s->dev, c.offset, c.region, c.size);
	return 0;
}

static int set_u64(struct vhost_user_server *s, uint32_t req,
		   const void *payload, uint32_t size, uint64_t *v)
{
	int err = check_size(s, req, size, sizeof(*v));

	if (err == 0)
		memcpy(v, payload, sizeof(*v));
	return err;
}

static void reply_u64(struct vu_reply *rep, uint64_t v)
{
	rep->body.u64 = v;
	rep->size = sizeof(v);
}

static int dispatch(struct vhost_user_server *s,
		    const struct vhost_user_hdr *hdr, const void *payload,
		    int *fds, unsigned nfds, struct vu_reply *rep)
{
	uint32_t req = hdr->request, size = hdr->size;
	uint64_t v = 0;
	int err;

	switch (req) {
	case VHOST_USER_GET_FEATURES:
		reply_u64(rep, offered_features(s));
		return 0;
	case VHOST_USER_SET_FEATURES:
		err = set_u64(s, req, payload, size, &v);
		return err < 0 ? err : set_features(s, v);
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		reply_u64(rep, offered_protocol_features(s));
		return 0;
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		err = set_u64(s, req, payload, size, &v);
		if (err < 0)
			return err;
		v &= ~offered_protocol_features(s);
		if (v)
			return refuse(
				s, -EINVAL,
				"SET_PROTOCOL_FEATURES: 0x%llx not offered",
				(unsigned long long)v);
		memcpy(&v, payload, sizeof(v));
		s->protocol_features = v;
		return 0;
	case VHOST_USER_SET_OWNER: return 0;
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_RESET_DEVICE: reset_device(s); return 0;
	case VHOST_USER_SET_MEM_TABLE:
		return set_mem_table(s, payload, size, fds, nfds);
	case VHOST_USER_SET_VRING_NUM: return set_vring_num(s, payload, size);
	case VHOST_USER_SET_VRING_ADDR: return set_vring_addr(s, payload, size);
	case VHOST_USER_SET_VRING_BASE: return set_vring_base(s, payload, size);
	case VHOST_USER_GET_VRING_BASE:
		return get_vring_base(s, payload, size, rep);
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		return set_vring_fd(s, req, payload, size, fds, nfds);
	case VHOST_USER_SET_VRING_ENABLE:
		return set_vring_enable(s, payload, size);
	case VHOST_USER_GET_QUEUE_NUM: reply_u64(rep, s->nqueues); return 0;
	case VHOST_USER_GET_CONFIG: return get_config(s, payload, size, rep);
	case VHOST_USER_SET_CONFIG: return set_config(s, payload, size);
	case VHOST_USER_GET_MAX_MEM_SLOTS:
		reply_u64(rep, VHOST_USER_MAX_REGIONS);
		return 0;
	default:
		return refuse(s, -ENOSYS, "%s (%u) is not supported",
			      request_name(req), req);
	}
}

/* --- connection i/o --- */

/* Waits for fd to be ready or the deadline to pass. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		struct pollfd p = {.fd = fd, .events = events};
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r > 0)
			return 0; /* errors and hangups show in the next call */
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static void take_fds(struct msghdr *mh, struct fd_list *fl)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (fl->n < VHOST_USER_MAX_FDS) {
				fl->fds[fl->n++] = fd;
			} else {
				close(fd);
				fl->overflow = true;
			}
		}
	}
	/* The kernel dropped descriptors that did not fit. */
	if (mh->msg_flags & MSG_CTRUNC)
		fl->overflow = true;
}

/* Reads exactly len bytes (and any fds sent with them) before deadline.
 * With first set: -EAGAIN if nothing is there yet, -ECONNRESET on an
 * orderly close before the first byte. -EPROTO: closed mid-message;
 * -ETIMEDOUT: the peer stalled. */
static int recv_full(struct vhost_user_server *s, void *buf, size_t len,
		     bool first, struct fd_list *fl, int64_t deadline)
{
	size_t got = 0;

	while (got < len) {
		union {
			char b[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = {(char *)buf + got, len - got};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl.b,
				    .msg_controllen = sizeof(ctl.b)};
		ssize_t n = recvmsg(s->conn_fd, &mh,
				    MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		int err;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			/* A spurious wake-up: no message has begun. */
			if (first && got == 0)
				return -EAGAIN;
			err = wait_fd(s->conn_fd, POLLIN, deadline);
			if (err < 0)
				return err;
			continue;
		}
		take_fds(&mh, fl);
		if (n == 0)
			return first && got == 0 ? -ECONNRESET : -EPROTO;
		got += (size_t)n;
	}
	return 0;
}

static int send_full(struct vhost_user_server *s, struct iovec *iov, int iovcnt)
{
	int64_t deadline = now_ms() + s->io_timeout_ms;

	if (s->conn_fd < 0)
		return 0; /* handle_msg without a connection (fuzzers) */
	while (iovcnt > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = iovcnt};
		ssize_t n =
			sendmsg(s->conn_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		int err;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			err = wait_fd(s->conn_fd, POLLOUT, deadline);
			if (err < 0)
				return err;
			continue;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int send_reply(struct vhost_user_server *s, uint32_t req,
		      const void *body, uint32_t size)
{
	struct vhost_user_hdr hdr = {
		.request = req,
		.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
		.size = size,
	};
	struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {(void *)body, size}};

	return send_full(s, iov, size ? 2 : 1);
}

/* Runs a request (unless pre_err already refuses it), closes the fds it
 * did not keep and answers as the protocol asks. */
static int handle(struct vhost_user_server *s, const struct vhost_user_hdr *hdr,
		  const void *payload, int *fds, unsigned nfds, int pre_err)
{
	struct vu_reply rep;
	unsigned unused = 0;
	int err = pre_err;

	memset(&rep, 0, sizeof(rep));
	log_debug(s->log, "vhost-user: %s (%u), %u bytes, %u fds",
		  request_name(hdr->request), hdr->request, hdr->size, nfds);
	if (!err)
		err = dispatch(s, hdr, payload, fds, nfds, &rep);
	for (unsigned i = 0; i < nfds; i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
			unused++;
		}
		fds[i] = -1;
	}
	if (unused && !err)
		kiln_logf_limited(s->log, &s->log_limit, KILN_LOG_WARN,
				  "vhost-user: %s: closed %u unexpected fds",
				  request_name(hdr->request), unused);
	if (has_reply_body(hdr->request)) {
		/* An empty body is how a refusal is answered here. */
		return send_reply(s, hdr->request, &rep.body,
				  err < 0 ? 0 : rep.size);
	}
	if (hdr->flags & VHOST_USER_NEED_REPLY_MASK) {
		uint64_t ack = err < 0 ? (uint64_t)-err : 0;

		return send_reply(s, hdr->request, &ack, sizeof(ack));
	}
	return 0;
}

int vhost_user_server_handle_msg(struct vhost_user_server *s,
				 const struct vhost_user_hdr *hdr,
				 const void *payload, int *fds, unsigned nfds)
{
	return handle(s, hdr, payload, fds, nfds, 0);
}

static void handshake_arm(struct vhost_user_server *s, bool on);

/* Reads and handles one message. <0: the connection must go. */
static int conn_read_msg(struct vhost_user_server *s)
{
	int64_t deadline = now_ms() + s->io_timeout_ms;
	struct vhost_user_hdr hdr;
	struct fd_list fl = {.n = 0};
	int err;

	err = recv_full(s, &hdr, sizeof(hdr), true, &fl, deadline);
	if (err == -EAGAIN)
		return 0;
	if (err < 0)
		goto out;
	if ((hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION) {
		err = refuse(s, -EPROTO, "message with version %u (flags 0x%x)",
			     hdr.flags & VHOST_USER_VERSION_MASK, hdr.flags);
		goto out;
	}
	if (hdr.size > VHOST_USER_MAX_PAYLOAD) {
		err = refuse(s, -EMSGSIZE, "%s with a %u-byte payload (max %u)",
			     request_name(hdr.request), hdr.size,
			     VHOST_USER_MAX_PAYLOAD);
		goto out;
	}
	err = recv_full(s, s->payload.buf, hdr.size, false, &fl, deadline);
	if (err < 0)
		goto out;
	handshake_arm(s, false);
	if (fl.overflow) {
		/* The stream is intact, so only this request fails. */
		err = refuse(s, -E2BIG, "%s came with more than %u fds",
			     request_name(hdr.request), VHOST_USER_MAX_FDS);
	}
	return handle(s, &hdr, s->payload.buf, fl.fds, fl.n, err);
out:
	for (unsigned i = 0; i < fl.n; i++)
		close(fl.fds[i]);
	return err;
}

/* Arms (or disarms) the first-message deadline of a new connection. */
static void handshake_arm(struct vhost_user_server *s, bool on)
{
	struct itimerspec its;

	if (s->handshake_fd < 0 || on == s->handshake_armed)
		return;
	memset(&its, 0, sizeof(its));
	if (on) {
		int64_t ms = (int64_t)s->io_timeout_ms * HANDSHAKE_IO_TIMEOUTS;

		its.it_value.tv_sec = (time_t)(ms / 1000);
		its.it_value.tv_nsec = (long)(ms % 1000) * 1000000;
	}
	timerfd_settime(s->handshake_fd, 0, &its, NULL);
	s->handshake_armed = on;
}

/* True if a guarded memory region faulted: the front-end shrank its file
 * under the mapping, which is now anonymous memory. */
static bool mem_lost(const struct vhost_user_server *s)
{
	for (unsigned i = 0; i < s->nr_regions; i++)
		if (memguard_hit(s->regions[i].guard))
			return true;
	return false;
}

static void listen_watch(struct vhost_user_server *s, bool on)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};

	if (s->listen_fd >= 0)
		epoll_ctl(s->epoll_fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
			  s->listen_fd, &ev);
}

/* Forgets all the front-end set up: rings, eventfds, memory table. */
static void session_reset(struct vhost_user_server *s)
{
	reset_device(s);
	pthread_mutex_lock(&s->irq_lock);
	for (unsigned i = 0; i < s->nqueues; i++) {
		close_fd(&s->rings[i].call_fd);
		close_fd(&s->rings[i].err_fd);
	}
	pthread_mutex_unlock(&s->irq_lock);
	drop_mem_table(s);
	s->protocol_features = 0;
}

static void conn_drop(struct vhost_user_server *s, int why)
{
	if (s->conn_fd < 0)
		return;
	if (why == -ECONNRESET)
		kiln_logf_limited(s->log, &s->log_limit, KILN_LOG_INFO,
				  "vhost-user: front-end disconnected");
	else
		kiln_logf_limited(
			s->log, &s->log_limit, KILN_LOG_WARN,
			"vhost-user: dropping the front-end: %s",
			why == -EPROTO	       ? "truncated message"
			: why == -ETIMEDOUT    ? "message not completed in time"
			: why == -EMSGSIZE     ? "oversized message"
			: why == -EFAULT       ? "its memory file shrank under "
						 "the mapping (SIGBUS caught)"
			: why == -ECONNREFUSED ? "no message within the "
						 "handshake timeout"
					       : strerror(-why));
	handshake_arm(s, false);
	session_reset(s);
	epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->conn_fd, NULL);
	close_fd(&s->conn_fd);
	listen_watch(s, true);
}

int vhost_user_server_attach(struct vhost_user_server *s, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_CONN};
	int flags;

	if (s->conn_fd >= 0) {
		close(fd);
		return -EBUSY;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		close(fd);
		return kiln_errorf(s->log, err,
				   "vhost-user: cannot serve connection: %s",
				   strerror(-err));
	}
	s->conn_fd = fd;
	listen_watch(s, false);
	kiln_logf_limited(s->log, &s->log_limit, KILN_LOG_INFO,
			  "vhost-user: front-end connected");
	return 0;
}

static int do_accept(struct vhost_user_server *s)
{
	int fd =
		accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0) {
		switch (errno) {
		case EAGAIN:
		case EINTR:
		case ECONNABORTED:
		case EPROTO: return 0;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM: {
			/* The connection stays pending, so the socket stays
			 * readable: back off instead of spinning. */
			struct timespec ts = {0, 100 * 1000 * 1000};

			log_warn(s->log, "vhost-user: accept: %s",
				 strerror(errno));
			nanosleep(&ts, NULL);
			return 0;
		}
		default:
			return kiln_errorf(s->log, -errno,
					   "vhost-user: accept: %s",
					   strerror(errno));
		}
	}
	/* A front-end we cannot serve is not the server's failure. An
	 * attached fd is the embedder's wiring; one from the socket must
	 * speak soon. */
	if (vhost_user_server_attach(s, fd) == 0)
		handshake_arm(s, true);
	return 0;
}

static void on_kick(struct vhost_user_server *s, unsigned i)
{
	struct vu_ring *r = &s->rings[i];
	uint64_t v = 0;

	if (i >= s->nqueues || r->kick_fd < 0)
		return;
	/* Non-blocking: a stale event just reads nothing. */
	if (read(r->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	ring_process(s, i);
}

int vhost_user_server_poll(struct vhost_user_server *s, int timeout_ms)
{
	static _Thread_local bool sigbus_ready;
	struct epoll_event evs[16];
	int n;

	if (s->stopped)
		return 1;
	if (!sigbus_ready) {
		/* this thread touches the front-end's memory */
		memguard_thread_prepare();
		sigbus_ready = true;
	}
	n = epoll_wait(s->epoll_fd, evs, 16, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return s->stopped;
		return kiln_errorf(s->log, -errno, "vhost-user: epoll_wait: %s",
				   strerror(errno));
	}
	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64, v;
		int err;

		switch (tag) {
		case TAG_STOP:
			if (read(s->stop_fd, &v, sizeof(v)) < 0) {
			}
			s->stopped = true;
			break;
		case TAG_LISTEN:
			if (s->conn_fd < 0 && s->listen_fd >= 0) {
				err = do_accept(s);
				if (err < 0)
					return err;
			}
			break;
		case TAG_DEVICE:
			if (s->dev_watched)
				s->dev->ops->host_events(s->dev);
			break;
		case TAG_HANDSHAKE:
			if (read(s->handshake_fd, &v, sizeof(v)) < 0) {
			}
			if (s->conn_fd >= 0 && s->handshake_armed) {
				s->handshake_armed = false;
				conn_drop(s, -ECONNREFUSED);
			}
			break;
		case TAG_CONN:
			if (s->conn_fd < 0)
				break;
			err = evs[i].events & EPOLLIN ? conn_read_msg(s)
						      : -ECONNRESET;
			if (err < 0)
				conn_drop(s, err);
			break;
		default:
			if (tag >= TAG_KICK &&
			    tag < TAG_KICK + VIRTIO_MAX_QUEUES)
				on_kick(s, (unsigned)(tag - TAG_KICK));
			break;
		}
		if (s->conn_fd >= 0 && mem_lost(s))
			conn_drop(s, -EFAULT);
	}
	return s->stopped;
}

int vhost_user_server_run(struct vhost_user_server *s)
{
	for (;;) {
		int r = vhost_user_server_poll(s, -1);

		if (r < 0)
			return r;
		if (r > 0)
			return 0;
	}
}

void vhost_user_server_stop(struct vhost_user_server *s)
{
	uint64_t one = 1;

	if (write(s->stop_fd, &one, sizeof(one)) < 0) {
	}
}

bool vhost_user_server_connected(const struct vhost_user_server *s)
{
	return s->conn_fd >= 0;
}

const struct guest_mem *vhost_user_server_mem(const struct vhost_user_server *s)
{
	return &s->mem;
}

void vhost_user_server_set_io_timeout(struct vhost_user_server *s, int ms)
{
	s->io_timeout_ms = ms > 0 ? ms : 1;
}

int vhost_user_server_listen(struct vhost_user_server *s, const char *path)
{
	int fd;

	if (s->listen_fd >= 0)
		return kiln_errorf(s->log, -EBUSY,
				   "vhost-user: already listening");
	s->path = strdup(path ? path : "");
	if (!s->path)
		return -ENOMEM;
	/* Backlog 1: the next front-end waits while one is served. */
	fd = unix_listen(path, 1, true, "vhost-user", s->log, &s->path_id);
	if (fd < 0) {
		free(s->path);
		s->path = NULL;
		return fd;
	}
	s->listen_fd = fd;
	if (s->conn_fd < 0)
		listen_watch(s, true);
	log_info(s->log, "vhost-user: %s listening on %s", s->dev->ops->name,
		 path);
	return 0;
}

int vhost_user_server_create(struct virtio_dev *dev, const struct kiln_log *log,
			     struct vhost_user_server **out)
{
	struct vhost_user_server *s;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_STOP};
	struct epoll_event hev = {.events = EPOLLIN, .data.u64 = TAG_HANDSHAKE};
	unsigned nq;

	if (!dev || !dev->ops || !out)
		return -EINVAL;
	nq = dev->ops->num_queues;
	if (nq == 0 || nq > VIRTIO_MAX_QUEUES || nq > VHOST_USER_VRING_IDX_MASK)
		return kiln_errorf(log, -EINVAL,
				   "vhost-user: %s has %u queues (1..%u)",
				   dev->ops->name, nq, VIRTIO_MAX_QUEUES);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->dev = dev;
	s->log = log;
	s->nqueues = nq;
	/* The front-end picks ring sizes (QEMU's vhost-user-blk asks for
	 * 1024 by default) and vhost-user has no way to offer a smaller
	 * maximum, so any size the ring code handles is taken. */
	s->max_ring = VIRTQ_MAX_SIZE;
	s->listen_fd = s->conn_fd = -1;
	s->io_timeout_ms = VHOST_USER_IO_TIMEOUT_MS;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		s->rings[i].kick_fd = s->rings[i].call_fd = s->rings[i].err_fd =
			-1;
	pthread_mutex_init(&s->irq_lock, NULL);
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->handshake_fd =
		timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->epoll_fd < 0 || s->stop_fd < 0 || s->handshake_fd < 0 ||
	    epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->stop_fd, &ev) < 0 ||
	    epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->handshake_fd, &hev) < 0) {
		int err = -errno;

		close_fd(&s->epoll_fd);
		close_fd(&s->stop_fd);
		close_fd(&s->handshake_fd);
		pthread_mutex_destroy(&s->irq_lock);
		free(s);
		return kiln_errorf(log, err, "vhost-user: %s", strerror(-err));
	}
	dev->transport = &vu_transport;
	dev->transport_priv = s;
	dev->log = log;
	dev->mem = &s->mem;
	virtio_dev_reset(dev);
	virtio_dev_apply_features(dev);
	/* A device's own host fds (vsock's sockets) are served on this
	 * thread too, like its rings, so they need no lock. */
	if (dev->ops->host_fd) {
		struct epoll_event dev_ev = {.events = EPOLLIN,
					     .data.u64 = TAG_DEVICE};
		int fd = dev->ops->host_fd(dev);

		if (fd < 0 ||
		    epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &dev_ev) < 0) {
			int err = fd < 0 ? -EINVAL : -errno;

			vhost_user_server_destroy(s);
			return kiln_errorf(log, err,
					   "vhost-user: cannot watch %s: %s",
					   dev->ops->name, strerror(-err));
		}
		s->dev_watched = true;
	}
	*out = s;
	return 0;
}

void vhost_user_server_destroy(struct vhost_user_server *s)
{
	if (!s)
		return;
	conn_drop(s, -ECONNRESET);
	session_reset(s); /* handle_msg may have been used unconnected */
	if (s->listen_fd >= 0) {
		close_fd(&s->listen_fd);
		/* Only our own socket: someone may have replaced it. */
		unix_unlink_own(s->path, &s->path_id);
	}
	free(s->path);
	close_fd(&s->epoll_fd);
	close_fd(&s->stop_fd);
	close_fd(&s->handshake_fd);
	virtio_dev_reset(s->dev);
	s->dev->transport = NULL;
	s->dev->transport_priv = NULL;
	s->dev->mem = NULL;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		s->dev->vqs[i].mem = NULL;
	pthread_mutex_destroy(&s->irq_lock);
	free(s);
}
