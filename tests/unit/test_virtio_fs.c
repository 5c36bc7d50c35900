/* SPDX-License-Identifier: MIT */
/*
 * virtio-fs: config space (tag, queue count), constructor errors (missing
 * or non-directory share, bad tags, too few fds), and whole FUSE requests
 * through queue_notify on real split rings in fake guest RAM: INIT, LOOKUP
 * of a host file, FORGET on the high-priority queue, a reply split over
 * descriptors, an indirect table, a 1024-entry ring (vhost-user front ends
 * pick that), chains without room for a reply, a read-only share, and a
 * malformed ring that needs a reset, after which the session is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_driver.h"
#include "test_log.h"
#include "virtio/fs.h"

#define RAM_SIZE (1u << 20)
#define REQ_GPA	 0x40000 /* request buffers from here, 0x2000 apart */
#define REP_OFF	 0x1000	 /* reply buffers this far after their request */
#define IND_GPA	 0x80000 /* an indirect descriptor table */

/* ---- helpers ---- */

/* A share with one file, hello.txt, holding "hello, guest\n". */
struct share {
	char dir[64];
	char file[96];
};

static const char hello[] = "hello, guest\n";

static void share_init(struct share *s)
{
	int fd;

	snprintf(s->dir, sizeof(s->dir), "/tmp/kiln-test-vfs-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->file, sizeof(s->file), "%s/hello.txt", s->dir);
	fd = open(s->file, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, hello, strlen(hello)),
			 (ssize_t)strlen(hello));
	close(fd);
}

static void share_fini(struct share *s)
{
	char path[160];

	unlink(s->file);
	snprintf(path, sizeof(path), "%s/newdir", s->dir);
	rmdir(path);
	rmdir(s->dir);
}

/* Ring layout per queue: queue q's rings at 0x10000 * (q + 1). */
static uint64_t desc_gpa(unsigned q)
{
	return 0x10000ull * (q + 1);
}

static uint64_t avail_gpa(unsigned q)
{
	return desc_gpa(q) + 0x4000; /* after 1024 descriptors */
}

static uint64_t used_gpa(unsigned q)
{
	return desc_gpa(q) + 0x5000; /* after a 1024-entry avail ring */
}

struct ring_env {
	uint8_t *ram;
	struct guest_mem mem;
	struct share share;
	struct virtio_dev dev;
	struct fake_vq vq[2]; /* hiprio, request */
	struct fake_transport tr;
	uint64_t unique;
};

/* What a driver does between reset and DRIVER_OK: features, queues. */
static void ring_env_setup_queues(struct ring_env *e)
{
	struct virtio_dev *d = &e->dev;

	memset(e->ram, 0, 0x40000); /* rings only */
	fake_driver_take_features(d);
	for (unsigned q = 0; q < 2; q++) {
		e->vq[q].ram = e->ram;
		e->vq[q].desc_gpa = desc_gpa(q);
		e->vq[q].avail_gpa = avail_gpa(q);
		e->vq[q].used_gpa = used_gpa(q);
		/* vhost-user takes any size up to VIRTQ_MAX_SIZE */
		assert_int_equal(
			fake_vq_attach(&e->vq[q], &d->vqs[q], VIRTQ_MAX_SIZE),
			0);
	}
	fake_driver_ok(d);
}

static struct ring_env *ring_env_new(uint16_t req_qsize, bool read_only)
{
	struct ring_env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->ram = calloc(1, RAM_SIZE);
	assert_non_null(e->ram);
	guest_mem_init(&e->mem, e->ram, RAM_SIZE);
	share_init(&e->share);
	e->dev.log = &test_log;
	assert_int_equal(virtio_fs_create(e->share.dir, "data",
					  read_only ? VIRTIO_FS_READ_ONLY : 0,
					  &test_log, &e->dev),
			 0);
	fake_driver_bind(&e->dev, &e->mem, &e->tr);
	e->vq[0].size = 16;
	e->vq[1].size = req_qsize;
	ring_env_setup_queues(e);
	return e;
}

static void ring_env_free(struct ring_env *e)
{
	virtio_fs_destroy(&e->dev);
	share_fini(&e->share);
	free(e->ram);
	free(e);
}

/* Writes header + arguments at gpa; returns the request length. */
static uint32_t put_req(struct ring_env *e, uint64_t gpa, uint32_t opcode,
			uint64_t nodeid, const void *arg, uint32_t arg_len)
{
	struct fuse_in_header h = {
		.len = (uint32_t)sizeof(h) + arg_len,
		.opcode = opcode,
		.unique = ++e->unique,
		.nodeid = nodeid,
	};

	memcpy(e->ram + gpa, &h, sizeof(h));
	if (arg_len)
		memcpy(e->ram + gpa + sizeof(h), arg, arg_len);
	return h.len;
}

/* Queues a request the way Linux lays one out: the request in one
 * readable descriptor, then a writable one for the reply header and one
 * for the body (body_len 0: none; hdr_len below 16 leaves no room for a
 * reply). Descriptors head, head+1, head+2; the reply goes to gpa+REP_OFF.
 */
static void queue_req(struct ring_env *e, unsigned q, uint16_t head,
		      uint64_t gpa, uint32_t req_len, uint32_t hdr_len,
		      uint32_t body_len)
{
	uint64_t rep = gpa + REP_OFF, dt = desc_gpa(q);

	memset(e->ram + rep, 0xaa, hdr_len + body_len);
	fake_desc(e->ram, dt, head, gpa, req_len,
		  hdr_len ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(head + 1));
	if (hdr_len)
		fake_desc(e->ram, dt, (uint16_t)(head + 1), rep, hdr_len,
			  VIRTQ_DESC_F_WRITE |
				  (body_len ? VIRTQ_DESC_F_NEXT : 0),
			  (uint16_t)(head + 2));
	if (body_len)
		fake_desc(e->ram, dt, (uint16_t)(head + 2), rep + hdr_len,
			  body_len, VIRTQ_DESC_F_WRITE, 0);
	fake_vq_publish(&e->vq[q], head);
}

static struct fuse_out_header reply_hdr(struct ring_env *e, uint64_t gpa)
{
	struct fuse_out_header o;

	memcpy(&o, e->ram + gpa + REP_OFF, sizeof(o));
	return o;
}

/* One request on queue q, served; returns the used length and checks the
 * reply header against it (unique, length). */
static uint32_t call(struct ring_env *e, unsigned q, uint16_t head,
		     uint64_t gpa, uint32_t opcode, uint64_t nodeid,
		     const void *arg, uint32_t arg_len, uint32_t body_len,
		     int32_t *error)
{
	uint32_t len = put_req(e, gpa, opcode, nodeid, arg, arg_len);
	struct fuse_out_header o;
	uint32_t id, used = 0;

	queue_req(e, q, head, gpa, len, sizeof(o), body_len);
	e->dev.ops->queue_notify(&e->dev, q);
	assert_true(fake_vq_take_used(&e->vq[q], &id, &used));
	assert_int_equal(id, head);
	assert_false(fake_vq_take_used(&e->vq[q], &id, &used));
	o = reply_hdr(e, gpa);
	assert_int_equal(o.len, used);
	assert_int_equal(o.unique, e->unique);
	if (error)
		*error = o.error;
	return used;
}

static void do_init(struct ring_env *e, unsigned q, uint16_t head)
{
	struct fuse_init_in in = {
		.major = FUSE_KERNEL_VERSION,
		.minor = 31,
		.max_readahead = 1 << 17,
		.flags = FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES,
	};
	struct fuse_init_out out;
	int32_t error;
	uint32_t used;

	used = call(e, q, head, REQ_GPA, FUSE_INIT, 0, &in, sizeof(in), 256,
		    &error);
	assert_int_equal(error, 0);
	assert_true(used >= sizeof(struct fuse_out_header) + 24);
	memcpy(&out, e->ram + REQ_GPA + REP_OFF + 16, sizeof(out));
	assert_int_equal(out.major, 7);
	assert_int_equal(out.minor, 31);
	assert_true(out.max_write >= 4096);
}

/* LOOKUP of name under the root; returns the reply's error. */
static int32_t do_lookup(struct ring_env *e, unsigned q, uint16_t head,
			 uint64_t gpa, const char *name,
			 struct fuse_entry_out *eo)
{
	int32_t error;
	uint32_t used;

	used = call(e, q, head, gpa, FUSE_LOOKUP, FUSE_ROOT_ID, name,
		    (uint32_t)strlen(name) + 1, sizeof(*eo), &error);
	if (!error) {
		assert_int_equal(used, 16 + sizeof(*eo));
		memcpy(eo, e->ram + gpa + REP_OFF + 16, sizeof(*eo));
	} else {
		assert_int_equal(used, 16);
	}
	return error;
}

/* ---- config space and ops table ---- */

static void test_config_space(void **state)
{
	struct share s;
	struct virtio_dev dev;
	uint8_t cfg[VIRTIO_FS_CONFIG_SIZE], b[4];
	uint32_t nrq;
	uint64_t f;

	(void)state;
	share_init(&s);
	memset(&dev, 0, sizeof(dev));
	assert_int_equal(virtio_fs_create(s.dir, "myshare", 0, &test_log, &dev),
			 0);
	assert_int_equal(dev.ops->device_id, VIRTIO_ID_FS);
	assert_int_equal(dev.ops->device_id, 26);
	assert_int_equal(dev.ops->num_queues, 2); /* hiprio + 1 request */
	assert_int_equal(dev.ops->config_size, 40);
	assert_true(dev.ops->queue_max_size >= 128);

	dev.ops->config_read(&dev, 0, cfg, sizeof(cfg));
	assert_memory_equal(cfg, "myshare", 7);
	for (unsigned i = 7; i < VIRTIO_FS_TAG_SIZE; i++)
		assert_int_equal(cfg[i], 0);
	memcpy(&nrq, cfg + VIRTIO_FS_CFG_NUM_REQ_QUEUES, 4);
	assert_int_equal(nrq, 1);

	/* the transport reads 1, 2 or 4 bytes at a time */
	dev.ops->config_read(&dev, 36, b, 4);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[1] | b[2] | b[3], 0);
	dev.ops->config_read(&dev, 2, b, 2);
	assert_memory_equal(b, "sh", 2);
	/* past the end reads zeros rather than beyond the buffer */
	memset(b, 0xff, sizeof(b));
	dev.ops->config_read(&dev, 38, b, 4);
	assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
	memset(b, 0xff, sizeof(b));
	dev.ops->config_read(&dev, UINT32_MAX, b, 4);
	assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);

	/* read-only config: a write changes nothing */
	memset(b, 'X', sizeof(b));
	dev.ops->config_write(&dev, 0, b, 4);
	dev.ops->config_write(&dev, 36, b, 4);
	dev.ops->config_read(&dev, 0, cfg, sizeof(cfg));
	assert_memory_equal(cfg, "myshare", 8);
	memcpy(&nrq, cfg + 36, 4);
	assert_int_equal(nrq, 1);

	/* no device-specific features (no notification queue, no DAX) */
	f = virtio_dev_features(&dev);
	assert_int_equal(f & ((1ull << 24) - 1), 0);
	assert_true(f & 1ull << VIRTIO_F_VERSION_1);

	virtio_fs_destroy(&dev);
	share_fini(&s);
}

static void test_longest_tag(void **state)
{
	static const char tag35[] = "abcdefghijklmnopqrstuvwxyz012345678";
	struct share s;
	struct virtio_dev dev;
	uint8_t cfg[VIRTIO_FS_CONFIG_SIZE];

	(void)state;
	assert_int_equal(strlen(tag35), 35);
	share_init(&s);
	memset(&dev, 0, sizeof(dev));
	assert_int_equal(virtio_fs_create(s.dir, tag35, VIRTIO_FS_READ_ONLY,
					  &test_log, &dev),
			 0);
	dev.ops->config_read(&dev, 0, cfg, sizeof(cfg));
	assert_memory_equal(cfg, tag35, 35);
	assert_int_equal(cfg[35], 0); /* always NUL-terminated */
	virtio_fs_destroy(&dev);
	share_fini(&s);
}

/* ---- constructor errors ---- */

static void expect_create_error(const char *dir, const char *tag, int err,
				const char *log_part)
{
	struct virtio_dev dev;

	memset(&dev, 0, sizeof(dev));
	last_log[0] = 0;
	assert_int_equal(virtio_fs_create(dir, tag, 0, &test_log, &dev), err);
	assert_null(dev.ops);
	assert_null(dev.priv);
	if (log_part && !strstr(last_log, log_part))
		fail_msg("log '%s' lacks '%s'", last_log, log_part);
}

static void test_create_errors(void **state)
{
	struct share s;
	char missing[128];
	char tag36[37];

	(void)state;
	share_init(&s);
	snprintf(missing, sizeof(missing), "%s/nope", s.dir);
	expect_create_error(missing, "data", -ENOENT, "nope");
	expect_create_error(s.file, "data", -ENOTDIR, "not a directory");
	expect_create_error(NULL, "data", -EINVAL, "no shared directory");
	expect_create_error("", "data", -EINVAL, "no shared directory");

	memset(tag36, 'a', 36);
	tag36[36] = 0;
	expect_create_error(s.dir, tag36, -EINVAL, "longer than 35");
	expect_create_error(s.dir, "", -EINVAL, "empty");
	expect_create_error(s.dir, NULL, -EINVAL, "empty");
	expect_create_error(s.dir, "my share", -EINVAL, "space");
	expect_create_error(s.dir, "tab\there", -EINVAL, "space");
	expect_create_error(s.dir, "nl\n", -EINVAL, "control");
	expect_create_error(s.dir, "del\x7f", -EINVAL, "control");
	assert_int_equal(virtio_fs_create(s.dir, "data", 0, &test_log, NULL),
			 -EINVAL);
	share_fini(&s);
}

static void test_fd_limit(void **state)
{
	struct rlimit old, rl;
	struct virtio_dev dev;
	struct share s;

	(void)state;
	share_init(&s);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 1000) {
		share_fini(&s);
		skip();
	}
	/* a low limit shrinks the share's limits to fit, with a note */
	rl = old;
	rl.rlim_cur = 1000;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	memset(&dev, 0, sizeof(dev));
	last_log[0] = 0;
	assert_int_equal(virtio_fs_create(s.dir, "data", 0, &test_log, &dev),
			 0);
	assert_non_null(strstr(last_log, "RLIMIT_NOFILE 1000"));
	virtio_fs_destroy(&dev);
	/* one too low to leave the embedder any room is refused */
	rl.rlim_cur = 100;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	expect_create_error(s.dir, "data", -EMFILE, "RLIMIT_NOFILE");
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	share_fini(&s);
}

/* ---- whole requests through the rings ---- */

static void test_init_lookup_forget(void **state)
{
	struct ring_env *e = ring_env_new(16, false);
	struct fuse_entry_out eo;
	struct fuse_forget_in fi;
	struct fuse_getattr_in gi = {0};
	struct fuse_attr_out ao;
	struct virtio_fs_stats st;
	int32_t error;
	uint32_t id, used, len;

	(void)state;
	do_init(e, 1, 0);
	assert_int_equal(e->tr.notified, 1);

	assert_int_equal(do_lookup(e, 1, 3, REQ_GPA + 0x2000, "hello.txt", &eo),
			 0);
	assert_true(eo.nodeid != 0 && eo.nodeid != FUSE_ROOT_ID);
	assert_true(S_ISREG(eo.attr.mode));
	assert_int_equal(eo.attr.size, strlen(hello));
	assert_int_equal(do_lookup(e, 1, 6, REQ_GPA + 0x4000, "missing", &eo) ==
				 -ENOENT,
			 1);
	assert_int_equal(do_lookup(e, 1, 9, REQ_GPA + 0x6000, "..", &eo),
			 -EINVAL);

	/* GETATTR of the nodeid LOOKUP handed out */
	assert_int_equal(do_lookup(e, 1, 0, REQ_GPA + 0x2000, "hello.txt", &eo),
			 0);
	used = call(e, 1, 3, REQ_GPA + 0x4000, FUSE_GETATTR, eo.nodeid, &gi,
		    sizeof(gi), sizeof(ao), &error);
	assert_int_equal(error, 0);
	assert_int_equal(used, 16 + sizeof(ao));
	memcpy(&ao, e->ram + REQ_GPA + 0x4000 + REP_OFF + 16, sizeof(ao));
	assert_int_equal(ao.attr.size, strlen(hello));

	/* FORGET on the high-priority queue: no reply, 0 bytes used */
	fi.nlookup = 2;
	len = put_req(e, REQ_GPA + 0x8000, FUSE_FORGET, eo.nodeid, &fi,
		      sizeof(fi));
	fake_desc(e->ram, desc_gpa(0), 5, REQ_GPA + 0x8000, len, 0, 0);
	fake_vq_publish(&e->vq[0], 5);
	e->dev.ops->queue_notify(&e->dev, 0);
	assert_true(fake_vq_take_used(&e->vq[0], &id, &used));
	assert_int_equal(id, 5);
	assert_int_equal(used, 0);
	/* the nodeid is gone now */
	used = call(e, 1, 6, REQ_GPA + 0x4000, FUSE_GETATTR, eo.nodeid, &gi,
		    sizeof(gi), sizeof(ao), &error);
	assert_int_equal(error, -EBADF);

	/* and any request on the high-priority queue is served too */
	assert_int_equal(do_lookup(e, 0, 0, REQ_GPA + 0x2000, "hello.txt", &eo),
			 0);

	virtio_fs_get_stats(&e->dev, &st);
	assert_int_equal(st.requests, 8);
	assert_int_equal(st.no_reply, 1);
	assert_int_equal(st.dropped, 0);
	assert_int_equal(e->tr.resets, 0);
	ring_env_free(e);
}

static void test_reply_split_and_several_per_notify(void **state)
{
	struct ring_env *e = ring_env_new(16, false);
	struct fuse_entry_out eo;
	uint32_t id, used, len;
	uint64_t g1 = REQ_GPA + 0x2000, g2 = REQ_GPA + 0x4000;
	uint64_t rep = g1 + REP_OFF;

	(void)state;
	do_init(e, 1, 0);
	/* a reply header split 7 + 9 bytes, the body over three segments */
	len = put_req(e, g1, FUSE_LOOKUP, FUSE_ROOT_ID, "hello.txt", 10);
	fake_desc(e->ram, desc_gpa(1), 3, g1, len, VIRTQ_DESC_F_NEXT, 4);
	fake_desc(e->ram, desc_gpa(1), 4, rep, 7,
		  VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5);
	fake_desc(e->ram, desc_gpa(1), 5, rep + 7, 9,
		  VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 6);
	fake_desc(e->ram, desc_gpa(1), 6, rep + 16, 50,
		  VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 7);
	fake_desc(e->ram, desc_gpa(1), 7, rep + 66, 1,
		  VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 8);
	fake_desc(e->ram, desc_gpa(1), 8, rep + 67, sizeof(eo) - 51,
		  VIRTQ_DESC_F_WRITE, 0);
	fake_vq_publish(&e->vq[1], 3);
	/* and a second request in the same notification */
	len = put_req(e, g2, FUSE_LOOKUP, FUSE_ROOT_ID, "nothere", 8);
	queue_req(e, 1, 10, g2, len, 16, sizeof(eo));
	e->dev.ops->queue_notify(&e->dev, 1);

	assert_true(fake_vq_take_used(&e->vq[1], &id, &used));
	assert_int_equal(id, 3);
	assert_int_equal(used, 16 + sizeof(eo));
	assert_int_equal(reply_hdr(e, g1).error, 0);
	memcpy(&eo, e->ram + rep + 16, sizeof(eo));
	assert_int_equal(eo.attr.size, strlen(hello));
	assert_true(fake_vq_take_used(&e->vq[1], &id, &used));
	assert_int_equal(id, 10);
	assert_int_equal(used, 16);
	assert_int_equal(reply_hdr(e, g2).error, -ENOENT);
	assert_false(fake_vq_take_used(&e->vq[1], &id, &used));
	ring_env_free(e);
}

static void test_indirect_and_big_ring(void **state)
{
	/* the request queue as a vhost-user front end sizes it: 1024 */
	struct ring_env *e = ring_env_new(1024, false);
	struct fuse_entry_out eo;
	uint64_t g = REQ_GPA + 0x2000;
	uint32_t id, used, len;

	(void)state;
	do_init(e, 1, 1000);
	assert_int_equal(do_lookup(e, 1, 1020, g, "hello.txt", &eo), 0);

	/* an indirect table of three descriptors */
	len = put_req(e, g, FUSE_LOOKUP, FUSE_ROOT_ID, "hello.txt", 10);
	fake_desc(e->ram, IND_GPA, 0, g, len, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(e->ram, IND_GPA, 1, g + REP_OFF, 16,
		  VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	fake_desc(e->ram, IND_GPA, 2, g + REP_OFF + 16, sizeof(eo),
		  VIRTQ_DESC_F_WRITE, 0);
	fake_desc(e->ram, desc_gpa(1), 1023, IND_GPA, 48, VIRTQ_DESC_F_INDIRECT,
		  0);
	fake_vq_publish(&e->vq[1], 1023);
	e->dev.ops->queue_notify(&e->dev, 1);
	assert_true(fake_vq_take_used(&e->vq[1], &id, &used));
	assert_int_equal(id, 1023);
	assert_int_equal(used, 16 + sizeof(eo));
	assert_int_equal(reply_hdr(e, g).error, 0);
	assert_int_equal(e->tr.resets, 0);
	ring_env_free(e);
}

static void test_no_room_for_reply(void **state)
{
	struct ring_env *e = ring_env_new(16, false);
	struct virtio_fs_stats st;
	uint64_t g = REQ_GPA + 0x2000;
	uint32_t id, used, len;

	(void)state;
	do_init(e, 1, 0);
	/* 8 writable bytes: less than a reply header */
	len = put_req(e, g, FUSE_LOOKUP, FUSE_ROOT_ID, "hello.txt", 10);
	queue_req(e, 1, 3, g, len, 8, 0);
	/* no writable part at all */
	queue_req(e, 1, 6, g, len, 0, 0);
	/* fewer readable bytes than a request header */
	queue_req(e, 1, 9, g, 20, 16, 128);
	e->dev.ops->queue_notify(&e->dev, 1);
	for (unsigned i = 0; i < 3; i++) {
		assert_true(fake_vq_take_used(&e->vq[1], &id, &used));
		assert_int_equal(id, 3 + 3 * i);
		assert_int_equal(used, 0);
	}
	/* nothing was written into the guest's buffers */
	assert_int_equal(e->ram[g + REP_OFF], 0xaa);
	virtio_fs_get_stats(&e->dev, &st);
	assert_int_equal(st.dropped, 3);
	assert_int_equal(e->tr.resets, 0);
	ring_env_free(e);
}

static void test_read_only_share(void **state)
{
	struct ring_env *e = ring_env_new(16, true);
	struct fuse_entry_out eo;
	uint8_t arg[64];
	struct fuse_mkdir_in mi = {.mode = 0755};
	struct stat st;
	int32_t error;
	char path[160];

	(void)state;
	do_init(e, 1, 0);
	assert_int_equal(do_lookup(e, 1, 3, REQ_GPA + 0x2000, "hello.txt", &eo),
			 0);
	memcpy(arg, &mi, sizeof(mi));
	memcpy(arg + sizeof(mi), "newdir", 7);
	call(e, 1, 6, REQ_GPA + 0x4000, FUSE_MKDIR, FUSE_ROOT_ID, arg,
	     sizeof(mi) + 7, sizeof(eo), &error);
	assert_int_equal(error, -EROFS);
	snprintf(path, sizeof(path), "%s/newdir", e->share.dir);
	assert_int_equal(stat(path, &st), -1);
	ring_env_free(e);
}

static void test_malformed_ring_then_reset(void **state)
{
	struct ring_env *e = ring_env_new(16, false);
	struct fuse_entry_out eo;
	uint64_t g = REQ_GPA + 0x2000;
	uint32_t id, used, len;

	(void)state;
	do_init(e, 1, 0);
	/* a descriptor reaching past the end of RAM breaks the ring */
	fake_desc(e->ram, desc_gpa(1), 3, RAM_SIZE - 8, 64, 0, 0);
	fake_vq_publish(&e->vq[1], 3);
	e->dev.ops->queue_notify(&e->dev, 1);
	assert_int_equal(e->tr.resets, 1);
	assert_true(e->dev.status & VIRTIO_STATUS_NEEDS_RESET);
	assert_false(fake_vq_take_used(&e->vq[1], &id, &used));

	/* nothing more is served on any queue until the reset */
	len = put_req(e, g, FUSE_LOOKUP, FUSE_ROOT_ID, "hello.txt", 10);
	queue_req(e, 1, 4, g, len, 16, sizeof(eo));
	e->dev.ops->queue_notify(&e->dev, 1);
	assert_false(fake_vq_take_used(&e->vq[1], &id, &used));
	queue_req(e, 0, 0, g, len, 16, sizeof(eo));
	e->dev.ops->queue_notify(&e->dev, 0);
	assert_false(fake_vq_take_used(&e->vq[0], &id, &used));
	assert_int_equal(e->tr.resets, 1); /* told once */

	/* a loop in a chain is malformed too; after the reset the server
	 * has forgotten the session: requests before INIT fail with EIO */
	virtio_dev_reset(&e->dev);
	assert_int_equal(e->dev.status, 0);
	ring_env_setup_queues(e);
	assert_int_equal(do_lookup(e, 1, 0, g, "hello.txt", &eo), -EIO);
	do_init(e, 1, 3);
	assert_int_equal(do_lookup(e, 1, 6, g, "hello.txt", &eo), 0);

	fake_desc(e->ram, desc_gpa(1), 9, g, 16, VIRTQ_DESC_F_NEXT, 10);
	fake_desc(e->ram, desc_gpa(1), 10, g, 16, VIRTQ_DESC_F_NEXT, 9);
	fake_vq_publish(&e->vq[1], 9);
	e->dev.ops->queue_notify(&e->dev, 1);
	assert_int_equal(e->tr.resets, 2);
	assert_false(fake_vq_take_used(&e->vq[1], &id, &used));
	ring_env_free(e);
}

static void test_destroy_idempotent(void **state)
{
	struct share s;
	struct virtio_dev dev;
	struct virtio_fs_stats st;
	uint8_t b[4];

	(void)state;
	share_init(&s);
	memset(&dev, 0, sizeof(dev));
	assert_int_equal(virtio_fs_create(s.dir, "data", 0, &test_log, &dev),
			 0);
	/* a queue index past the device's is ignored */
	dev.ops->queue_notify(&dev, 2);
	dev.ops->queue_notify(&dev, 7);
	virtio_fs_destroy(&dev);
	virtio_fs_destroy(&dev);
	virtio_fs_destroy(NULL);
	/* ops on a destroyed device are harmless */
	dev.ops->queue_notify(&dev, 1);
	dev.ops->reset(&dev);
	dev.ops->config_read(&dev, 0, b, 4);
	assert_int_equal(b[0], 0);
	virtio_fs_get_stats(&dev, &st);
	assert_int_equal(st.requests, 0);
	share_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_space),
		cmocka_unit_test(test_longest_tag),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_fd_limit),
		cmocka_unit_test(test_init_lookup_forget),
		cmocka_unit_test(test_reply_split_and_several_per_notify),
		cmocka_unit_test(test_indirect_and_big_ring),
		cmocka_unit_test(test_no_room_for_reply),
		cmocka_unit_test(test_read_only_share),
		cmocka_unit_test(test_malformed_ring_then_reset),
		cmocka_unit_test(test_destroy_idempotent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
