/* SPDX-License-Identifier: MIT */
/*
 * The device table: the option syntax every --disk/--share/--vsock/--device
 * and `kiln vhost-user --device` share, each type's checks, building and
 * destroying devices from options, and the limits a config keeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_log.h"
#include "virtio/blk.h"
#include "virtio/device_table.h"
#include "virtio/fs.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"
#include "vm/config.h"

static void expect_parse_error(const char *spec, const char *msg)
{
	struct virtio_dev_opts o;

	last_log[0] = 0;
	if (virtio_dev_opts_parse(spec, &test_log, &o) != -EINVAL)
		fail_msg("'%.40s' was accepted", spec);
	if (!strstr(last_log, msg))
		fail_msg("'%s': expected '%s' in '%s'", spec, msg, last_log);
	assert_null(o.type);
	assert_int_equal(o.n, 0);
}

static void test_every_type_is_complete(void **state)
{
	(void)state;
	for (const struct virtio_dev_ops *const *t = virtio_dev_types; *t;
	     t++) {
		assert_non_null((*t)->type);
		assert_non_null((*t)->create);
		assert_non_null((*t)->vhost_user_frontend);
		assert_ptr_equal(virtio_dev_type_find((*t)->type), *t);
		/* a host fd needs its handler, and the other way round */
		assert_true(!(*t)->host_fd == !(*t)->host_events);
	}
	assert_null(virtio_dev_type_find("floppy"));
	assert_null(virtio_dev_type_find(NULL));
}

static void test_parse(void **state)
{
	struct virtio_dev_opts o;
	const char *val = "x";

	(void)state;
	assert_int_equal(
		virtio_dev_opts_parse("blk,path=/a/b.img,ro", &test_log, &o),
		0);
	assert_ptr_equal(o.type, &virtio_blk_ops);
	assert_int_equal(o.n, 2);
	assert_string_equal(virtio_dev_opts_get(&o, "path"), "/a/b.img");
	assert_true(virtio_dev_opts_find(&o, "ro", &val));
	assert_null(val);
	assert_false(virtio_dev_opts_find(&o, "nope", NULL));
	virtio_dev_opts_free(&o);

	/* ",," is a comma inside a value; "=" after the first is data */
	assert_int_equal(
		virtio_dev_opts_parse("blk,path=/a,,b=c,ro=off", &test_log, &o),
		0);
	assert_string_equal(virtio_dev_opts_get(&o, "path"), "/a,b=c");
	virtio_dev_opts_free(&o);

	assert_int_equal(virtio_dev_opts_parse("rng", &test_log, &o), 0);
	assert_ptr_equal(o.type, &virtio_rng_ops);
	assert_int_equal(o.n, 0);
	virtio_dev_opts_free(&o);
}

static void test_parse_errors(void **state)
{
	char big[VIRTIO_DEV_MAX_SPEC + 16];

	(void)state;
	expect_parse_error("", "missing device type");
	expect_parse_error(",path=x", "missing device type");
	expect_parse_error("floppy,path=x", "unknown device type 'floppy'");
	expect_parse_error("blk", "path=IMAGE (or fd=N) is required");
	expect_parse_error("blk,path=", "path=IMAGE (or fd=N) is required");
	expect_parse_error("blk,path", "path=IMAGE (or fd=N) is required");
	expect_parse_error("blk,path=x,size=3", "unknown key 'size'");
	expect_parse_error("blk,path=x,path=y", "'path' given twice");
	expect_parse_error("blk,,path=x", "unknown device type");
	expect_parse_error("blk,path=x,", "empty option");
	expect_parse_error("blk,path=x,ro=maybe", "ro=maybe is not on or off");
	expect_parse_error("rng,x", "it takes none");
	expect_parse_error("blk,ro,ro,ro,ro,ro,ro,ro,ro,ro", "more than");
	expect_parse_error("vsock,uds=/tmp/v", "cid=CID is required");
	expect_parse_error("vsock,cid=2,uds=/tmp/v", "cid=2 is not a number");
	expect_parse_error("vsock,cid=-3,uds=/tmp/v", "is not a number");
	expect_parse_error("vsock,cid=4294967295,uds=/tmp/v",
			   "is not a number");
	expect_parse_error("vsock,cid=3", "uds=PATH is required");
	expect_parse_error("fs,dir=/tmp", "tag=TAG is required");
	expect_parse_error("fs,tag=x", "dir=DIR (or dirfd=N) is required");
	expect_parse_error("fs,dir=/tmp,tag=a b", "share tag 'a b'");
	expect_parse_error("fs,dir=/tmp,tag=a:b", "share tag");
	expect_parse_error("fs,dir=/tmp,tag=0123456789012345678901234567890123"
			   "45",
			   "1..35 bytes");
	expect_parse_error("fs,dir=/tmp,tag=t,mount=rel", "share guest path");
	expect_parse_error("fs,dir=/tmp,tag=t,mount", "share guest path");
	expect_parse_error("blk,path=x,fd=3", "exclude each other");
	expect_parse_error("blk,fd=x", "fd=x is not a number");
	expect_parse_error("fs,dir=/tmp,dirfd=3,tag=t", "exclude each other");
	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "blk,path=", 9);
	big[sizeof(big) - 1] = 0;
	expect_parse_error(big, "longer than");
}

static void test_bool_and_number(void **state)
{
	struct virtio_dev_opts o;
	uint64_t v = 0;
	bool b;

	(void)state;
	virtio_dev_opts_init(&o, &virtio_vsock_ops);
	assert_int_equal(virtio_dev_opts_add(&o, "cid", "42"), 0);
	assert_int_equal(virtio_dev_opts_add(&o, "uds", "on"), 0);
	assert_int_equal(virtio_dev_opts_u64(&o, "cid", 3, 100, NULL, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(virtio_dev_opts_u64(&o, "cid", 50, 100, NULL, &v),
			 -EINVAL);
	assert_int_equal(virtio_dev_opts_u64(&o, "nope", 0, 1, NULL, &v),
			 -ENOENT);
	assert_int_equal(virtio_dev_opts_bool(&o, "uds", NULL, &b), 0);
	assert_true(b);
	assert_int_equal(virtio_dev_opts_bool(&o, "nope", NULL, &b), 0);
	assert_false(b);
	assert_int_equal(virtio_dev_opts_bool(&o, "cid", NULL, &b), -EINVAL);
	for (unsigned i = o.n; i < VIRTIO_DEV_MAX_OPTS; i++)
		assert_int_equal(virtio_dev_opts_add(&o, "k", NULL), 0);
	assert_int_equal(virtio_dev_opts_add(&o, "k", NULL), -E2BIG);
	virtio_dev_opts_free(&o);
	assert_null(o.type);
}

/* blk from options opens and owns its image; destroy closes it. */
static void test_create_blk(void **state)
{
	char path[] = "/tmp/kiln-devtab-XXXXXX", spec[128];
	struct virtio_dev_opts o;
	struct virtio_dev d;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
	snprintf(spec, sizeof(spec), "blk,path=%s,ro", path);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), 0);
	assert_ptr_equal(d.ops, &virtio_blk_ops);
	assert_ptr_equal(d.log, &test_log);
	virtio_dev_destroy(&d);
	assert_null(d.ops);
	assert_null(d.priv);
	virtio_dev_destroy(&d); /* idempotent */
	unlink(path);
	/* a missing image is a failure of create, not of the options */
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), -ENOENT);
	assert_non_null(strstr(last_log, "cannot use disk"));
	assert_null(d.priv);
	virtio_dev_opts_free(&o);
}

/* Disks and shares as the caller's open fds. */
static void test_create_from_fds(void **state)
{
	char path[] = "/tmp/kiln-devtab-XXXXXX", dir[] = "/tmp/kiln-dt-XXXXXX";
	char spec[128];
	struct virtio_dev_opts o;
	struct virtio_dev d;
	int fd = mkstemp(path), ro_fd, dfd;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	ro_fd = open(path, O_RDONLY);
	unlink(path);
	memset(&d, 0, sizeof(d));
	snprintf(spec, sizeof(spec), "blk,fd=%d", fd);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), 0);
	close(fd); /* the device holds its own duplicate */
	assert_ptr_equal(d.ops, &virtio_blk_ops);
	virtio_dev_destroy(&d);
	virtio_dev_opts_free(&o);

	/* a read-only fd makes a read-write disk only with ro */
	snprintf(spec, sizeof(spec), "blk,fd=%d", ro_fd);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), -EBADF);
	assert_non_null(strstr(last_log, "cannot use disk fd"));
	virtio_dev_opts_free(&o);
	snprintf(spec, sizeof(spec), "blk,fd=%d,ro", ro_fd);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), 0);
	virtio_dev_destroy(&d);
	virtio_dev_opts_free(&o);
	close(ro_fd);
	/* closed fd */
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), -EBADF);
	virtio_dev_opts_free(&o);

	assert_non_null(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	snprintf(spec, sizeof(spec), "fs,dirfd=%d,tag=d", dfd);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), 0);
	assert_ptr_equal(d.ops, &virtio_fs_ops);
	virtio_dev_destroy(&d);
	virtio_dev_opts_free(&o);
	close(dfd);
	rmdir(dir);
}

/* vsock has a host fd; fs has front-end properties (its tag). */
static void test_create_vsock_fs(void **state)
{
	char dir[] = "/tmp/kiln-devtab-XXXXXX", spec[160], props[64];
	struct virtio_dev_opts o;
	struct virtio_dev d;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(spec, sizeof(spec), "vsock,cid=7,uds=%s/v", dir);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	memset(&d, 0, sizeof(d));
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), 0);
	assert_true(d.ops->host_fd(&d) >= 0);
	virtio_dev_destroy(&d);
	virtio_dev_opts_free(&o);

	snprintf(spec, sizeof(spec), "fs,dir=%s,tag=data,ro,mount=/srv", dir);
	assert_int_equal(virtio_dev_opts_parse(spec, &test_log, &o), 0);
	assert_int_equal(virtio_dev_create(&d, &o, &test_log), 0);
	assert_ptr_equal(d.ops, &virtio_fs_ops);
	assert_int_equal(d.ops->frontend_props(&d, props, sizeof(props)), 8);
	assert_string_equal(props, "tag=data");
	assert_int_equal(d.ops->frontend_props(&d, props, 8), -ENOSPC);
	virtio_dev_destroy(&d);
	virtio_dev_opts_free(&o);
	rmdir(dir);
}

/* The config's device list: limits across devices, set_vsock replacing. */
static void test_config_limits(void **state)
{
	struct kiln_config *cfg = kiln_config_new();
	char spec[64];
	int at = -1;

	(void)state;
	kiln_config_set_log(cfg, capture_log, NULL, KILN_LOG_DEBUG);
	for (unsigned i = 0; i < VIRTIO_FS_MAX_PER_VM; i++) {
		snprintf(spec, sizeof(spec), "t%u", i);
		assert_int_equal(kiln_config_add_share(cfg, "/tmp", spec, 0),
				 0);
	}
	assert_int_equal(kiln_config_add_share(cfg, "/tmp", "t0", 0), -EEXIST);
	assert_non_null(strstr(last_log, "used twice"));
	assert_int_equal(kiln_config_add_share(cfg, "/tmp", "t9", 0), -E2BIG);
	assert_int_equal(kiln_config_set_vsock(cfg, 5, "/tmp/a"), 0);
	assert_int_equal(kiln_config_set_vsock(cfg, 6, "/tmp/b"), 0);
	assert_int_equal(kiln_config_add_device(cfg, "vsock,cid=9,uds=/x"),
			 -E2BIG);
	assert_non_null(strstr(last_log, "at most 1 vsock device"));
	/* a bad replacement keeps the old one */
	assert_int_equal(kiln_config_set_vsock(cfg, 1, "/tmp/c"), -EINVAL);
	assert_non_null(config_next_device(cfg, &virtio_vsock_ops, &at));
	assert_string_equal(virtio_dev_opts_get(&cfg->devices[at], "uds"),
			    "/tmp/b");
	while (cfg->nr_devices < KILN_MAX_DEVICES)
		assert_int_equal(kiln_config_add_disk(cfg, "/dev/null", 1), 0);
	assert_int_equal(kiln_config_add_disk(cfg, "/dev/null", 1), -E2BIG);
	assert_non_null(strstr(last_log, "virtio-mmio slots"));
	assert_int_equal(kiln_config_add_device(cfg, "rng"), -E2BIG);
	/* removing the vsock device frees a slot */
	assert_int_equal(kiln_config_set_vsock(cfg, 0, NULL), 0);
	at = -1;
	assert_null(config_next_device(cfg, &virtio_vsock_ops, &at));
	assert_int_equal(kiln_config_add_device(cfg, "rng"), 0);
	assert_int_equal(kiln_config_add_device(cfg, "blk,path=x,oops"),
			 -EINVAL);
	/* /dev/kvm as an fd: must be open */
	assert_int_equal(kiln_config_set_kvm_fd(cfg, 4000), -EBADF);
	assert_int_equal(kiln_config_set_kvm_fd(cfg, 0), 0);
	assert_string_equal(cfg->kvm_path, "/proc/self/fd/0");
	kiln_config_free(cfg);
}

/* A clone owns copies of every device's options. */
static void test_config_clone(void **state)
{
	struct kiln_config *cfg = kiln_config_new(), *c;

	(void)state;
	assert_int_equal(kiln_config_add_disk(cfg, "/img", 0), 0);
	assert_int_equal(
		kiln_config_add_share_at(cfg, "/tmp", "data", 1, "/srv"), 0);
	c = config_clone(cfg);
	assert_non_null(c);
	kiln_config_free(cfg);
	assert_int_equal(c->nr_devices, 2);
	assert_string_equal(virtio_dev_opts_get(&c->devices[0], "path"),
			    "/img");
	assert_string_equal(virtio_dev_opts_get(&c->devices[1], "mount"),
			    "/srv");
	kiln_config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type_is_complete),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_bool_and_number),
		cmocka_unit_test(test_create_blk),
		cmocka_unit_test(test_create_from_fds),
		cmocka_unit_test(test_create_vsock_fs),
		cmocka_unit_test(test_config_limits),
		cmocka_unit_test(test_config_clone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
