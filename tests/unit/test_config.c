/* SPDX-License-Identifier: MIT */
/*
 * kiln_config_*: defaults, range checks with their log messages, command
 * line building, and the outcome names.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <kiln/kiln.h>

#include "virtio/net.h"
#include "vm/config.h"

struct log_capture {
	int count;
	enum kiln_log_level last_level;
	char last[1024];
};

static void capture_log(void *opaque, enum kiln_log_level level,
			const char *message)
{
	struct log_capture *c = opaque;

	c->count++;
	c->last_level = level;
	snprintf(c->last, sizeof(c->last), "%s", message);
}

struct fixture {
	struct kiln_config *cfg;
	struct log_capture cap;
};

static int cfg_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->cfg = kiln_config_new();
	if (!f->cfg) {
		free(f);
		return -1;
	}
	kiln_config_set_log(f->cfg, capture_log, &f->cap, KILN_LOG_DEBUG);
	*state = f;
	return 0;
}

static int cfg_teardown(void **state)
{
	struct fixture *f = *state;

	kiln_config_free(f->cfg);
	free(f);
	return 0;
}

/* The cmdline for cfg with no device arguments; caller frees. */
static char *cmdline(const struct kiln_config *cfg)
{
	char *s = config_build_cmdline(cfg, NULL);

	assert_non_null(s);
	return s;
}

#define assert_cmdline(cfg, expect)                                            \
	do {                                                                   \
		char *s_ = cmdline(cfg);                                       \
		assert_string_equal(s_, (expect));                             \
		free(s_);                                                      \
	} while (0)

static void test_version(void **state)
{
	(void)state;
	assert_string_equal(kiln_version(), KILN_VERSION_STRING);
}

static void test_defaults(void **state)
{
	struct fixture *f = *state;
	const struct kiln_config *c = f->cfg;

	assert_int_equal(c->cpus, 1);
	assert_int_equal(c->memory_mib, 256);
	assert_null(c->kernel_path);
	assert_null(c->initrd_path);
	assert_int_equal(c->console_in_fd, -1);
	assert_int_equal(c->console_out_fd, STDOUT_FILENO);
	assert_int_equal(c->console_escape, 0);
	assert_false(c->debug_exit);
	assert_cmdline(c, "console=ttyS0 reboot=k panic=-1");
	assert_int_equal(f->cap.count, 0);
}

static void test_free_null(void **state)
{
	(void)state;
	kiln_config_free(NULL);
}

static void test_cpus(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(kiln_config_set_cpus(f->cfg, 0), -EINVAL);
	assert_int_equal(f->cap.count, 1);
	assert_int_equal(f->cap.last_level, KILN_LOG_ERROR);
	assert_non_null(strstr(f->cap.last, "cpu count 0"));
	assert_int_equal(f->cfg->cpus, 1);

	assert_int_equal(kiln_config_set_cpus(f->cfg, KILN_MAX_CPUS + 1),
			 -EINVAL);
	assert_int_equal(f->cap.count, 2);
	assert_non_null(strstr(f->cap.last, "65"));
	assert_non_null(strstr(f->cap.last, "1..64"));
	assert_int_equal(kiln_config_set_cpus(f->cfg, UINT32_MAX), -EINVAL);
	assert_int_equal(f->cfg->cpus, 1);

	assert_int_equal(kiln_config_set_cpus(f->cfg, 1), 0);
	assert_int_equal(kiln_config_set_cpus(f->cfg, KILN_MAX_CPUS), 0);
	assert_int_equal(f->cfg->cpus, KILN_MAX_CPUS);
	assert_int_equal(f->cap.count, 3);
}

static void test_memory(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(kiln_config_set_memory_mib(f->cfg, 0), -EINVAL);
	assert_int_equal(f->cap.count, 1);
	assert_non_null(strstr(f->cap.last, "memory size 0"));
	assert_int_equal(
		kiln_config_set_memory_mib(f->cfg, KILN_MIN_MEMORY_MIB - 1),
		-EINVAL);
	assert_int_equal(
		kiln_config_set_memory_mib(f->cfg, KILN_MAX_MEMORY_MIB + 1),
		-EINVAL);
	assert_int_equal(kiln_config_set_memory_mib(f->cfg, UINT64_MAX),
			 -EINVAL);
	assert_int_equal(f->cap.count, 4);
	assert_int_equal(f->cfg->memory_mib, 256);

	assert_int_equal(
		kiln_config_set_memory_mib(f->cfg, KILN_MIN_MEMORY_MIB), 0);
	assert_int_equal(f->cfg->memory_mib, KILN_MIN_MEMORY_MIB);
	assert_int_equal(
		kiln_config_set_memory_mib(f->cfg, KILN_MAX_MEMORY_MIB), 0);
	assert_int_equal(f->cfg->memory_mib, KILN_MAX_MEMORY_MIB);
	assert_int_equal(f->cap.count, 4);
}

static void test_log_level_filter(void **state)
{
	struct fixture *f = *state;

	/* Errors pass any level; with no callback nothing is called. */
	kiln_config_set_log(f->cfg, capture_log, &f->cap, KILN_LOG_ERROR);
	assert_int_equal(kiln_config_set_cpus(f->cfg, 0), -EINVAL);
	assert_int_equal(f->cap.count, 1);
	kiln_config_set_log(f->cfg, NULL, NULL, KILN_LOG_DEBUG);
	assert_int_equal(kiln_config_set_cpus(f->cfg, 0), -EINVAL);
	assert_int_equal(f->cap.count, 1);
}

static void test_paths(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(kiln_config_set_kernel(f->cfg, NULL), -EINVAL);
	assert_int_equal(kiln_config_set_kernel(f->cfg, ""), -EINVAL);
	assert_int_equal(f->cap.count, 2);
	assert_int_equal(kiln_config_set_kernel(f->cfg, "/boot/vmlinuz"), 0);
	assert_string_equal(f->cfg->kernel_path, "/boot/vmlinuz");
	assert_int_equal(kiln_config_set_kernel(f->cfg, "bzImage"), 0);
	assert_string_equal(f->cfg->kernel_path, "bzImage");

	assert_int_equal(kiln_config_set_initrd(f->cfg, ""), -EINVAL);
	assert_int_equal(kiln_config_set_initrd(f->cfg, "initrd.img"), 0);
	assert_string_equal(f->cfg->initrd_path, "initrd.img");
	assert_int_equal(kiln_config_set_initrd(f->cfg, NULL), 0);
	assert_null(f->cfg->initrd_path);

	assert_int_equal(kiln_config_set_kvm_path(f->cfg, ""), -EINVAL);
	assert_int_equal(kiln_config_set_kvm_path(f->cfg, NULL), -EINVAL);
	assert_int_equal(kiln_config_set_kvm_path(f->cfg, "/dev/null"), 0);
	assert_string_equal(f->cfg->kvm_path, "/dev/null");
}

static void test_cmdline_append(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(kiln_config_append_cmdline(f->cfg, "quiet"), 0);
	assert_cmdline(f->cfg, "console=ttyS0 reboot=k panic=-1 quiet");
	assert_int_equal(kiln_config_append_cmdline(f->cfg, "init=/bin/sh"), 0);
	assert_cmdline(f->cfg,
		       "console=ttyS0 reboot=k panic=-1 quiet init=/bin/sh");
	/* Empty and NULL appends change nothing. */
	assert_int_equal(kiln_config_append_cmdline(f->cfg, ""), 0);
	assert_int_equal(kiln_config_append_cmdline(f->cfg, NULL), 0);
	assert_cmdline(f->cfg,
		       "console=ttyS0 reboot=k panic=-1 quiet init=/bin/sh");
}

static void test_cmdline_base(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(kiln_config_set_base_cmdline(f->cfg, "console=hvc0"),
			 0);
	assert_cmdline(f->cfg, "console=hvc0");
	assert_int_equal(kiln_config_append_cmdline(f->cfg, "a=1"), 0);
	assert_cmdline(f->cfg, "console=hvc0 a=1");
	/* Empty base: only the user's arguments, no leading space. */
	assert_int_equal(kiln_config_set_base_cmdline(f->cfg, ""), 0);
	assert_cmdline(f->cfg, "a=1");
	/* NULL restores the default. */
	assert_int_equal(kiln_config_set_base_cmdline(f->cfg, NULL), 0);
	assert_cmdline(f->cfg, "console=ttyS0 reboot=k panic=-1 a=1");
}

static void test_cmdline_empty(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(kiln_config_set_base_cmdline(f->cfg, ""), 0);
	assert_cmdline(f->cfg, "");
}

static void test_cmdline_devices(void **state)
{
	struct fixture *f = *state;
	char *s;

	/* Device arguments go between the base and the user's. */
	assert_int_equal(kiln_config_append_cmdline(f->cfg, "quiet"), 0);
	s = config_build_cmdline(f->cfg, "virtio_mmio.device=4K@0xd0000000:5");
	assert_non_null(s);
	assert_string_equal(s, "console=ttyS0 reboot=k panic=-1 "
			       "virtio_mmio.device=4K@0xd0000000:5 quiet");
	free(s);
	s = config_build_cmdline(f->cfg, "");
	assert_non_null(s);
	assert_string_equal(s, "console=ttyS0 reboot=k panic=-1 quiet");
	free(s);
}

static void test_cmdline_long(void **state)
{
	struct fixture *f = *state;
	char arg[1000];
	char *s;
	size_t len = 0;

	/* Many appends: each one separated by exactly one space. */
	memset(arg, 'x', sizeof(arg) - 1);
	arg[sizeof(arg) - 1] = 0;
	for (int i = 0; i < 20; i++)
		assert_int_equal(kiln_config_append_cmdline(f->cfg, arg), 0);
	s = cmdline(f->cfg);
	len = strlen(s);
	assert_int_equal(len, strlen("console=ttyS0 reboot=k panic=-1") +
				      20 * (sizeof(arg) - 1 + 1));
	free(s);
}

static void test_console_escape(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(kiln_config_set_console_escape(f->cfg, -1), -EINVAL);
	assert_int_equal(f->cap.count, 1);
	assert_int_equal(kiln_config_set_console_escape(f->cfg, 0x100),
			 -EINVAL);
	assert_int_equal(f->cap.count, 2);
	assert_int_equal(f->cfg->console_escape, 0);
	assert_int_equal(kiln_config_set_console_escape(f->cfg, 0x01), 0);
	assert_int_equal(f->cfg->console_escape, 0x01);
	assert_int_equal(kiln_config_set_console_escape(f->cfg, 0xFF), 0);
	assert_int_equal(f->cfg->console_escape, 0xFF);
	assert_int_equal(kiln_config_set_console_escape(f->cfg, 0), 0);
	assert_int_equal(f->cfg->console_escape, 0);
}

static void test_console_fds_debug_exit(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(kiln_config_set_console_fds(f->cfg, 5, -1), 0);
	assert_int_equal(f->cfg->console_in_fd, 5);
	assert_int_equal(f->cfg->console_out_fd, -1);
	assert_int_equal(kiln_config_set_debug_exit(f->cfg, 7), 0);
	assert_true(f->cfg->debug_exit);
	assert_int_equal(kiln_config_set_debug_exit(f->cfg, 0), 0);
	assert_false(f->cfg->debug_exit);
}

/* The NAT card's entry as the device table sees it. */
static const struct virtio_dev_opts *nat_entry(const struct kiln_config *cfg)
{
	int at = -1;

	return config_next_device(cfg, &virtio_net_ops, &at);
}

static void test_net_builder(void **state)
{
	struct fixture *f = *state;
	const struct virtio_dev_opts *o;

	/* everything needs the NAT card first */
	assert_int_equal(kiln_config_add_net_rule(f->cfg, 1, "1.2.3.4"),
			 -EINVAL);
	assert_non_null(strstr(f->cap.last, "needs the user-mode NAT"));
	assert_int_equal(kiln_config_set_net_user(f->cfg, 7), -EINVAL);
	assert_int_equal(kiln_config_set_net_user(f->cfg, KILN_EGRESS_NONE), 0);
	assert_int_equal(kiln_config_add_net_rule(f->cfg, 1, "host:8080"), 0);
	assert_int_equal(kiln_config_add_net_rule(f->cfg, 0, "10.0.0.0/8"), 0);
	assert_int_equal(kiln_config_add_port_forward(f->cfg, "9000:80"), 0);
	assert_int_equal(
		kiln_config_add_port_forward(f->cfg, "0.0.0.0:5353:53/udp"), 0);
	assert_int_equal(kiln_config_add_allowed_domain(f->cfg, "*.pypi.org"),
			 0);
	assert_int_equal(kiln_config_set_dns(f->cfg, "127.0.0.1:5353"), 0);
	/* bad values fail their own call and change nothing */
	assert_int_equal(kiln_config_add_net_rule(f->cfg, 1, "1.2.3.0/16"),
			 -EINVAL);
	assert_int_equal(kiln_config_add_port_forward(f->cfg, "80"), -EINVAL);
	assert_int_equal(kiln_config_add_port_forward(f->cfg, "1:2:3:4"),
			 -EINVAL);
	assert_int_equal(kiln_config_add_allowed_domain(f->cfg, "a..b"),
			 -EINVAL);
	assert_int_equal(kiln_config_add_allowed_domain(f->cfg, "a;b"),
			 -EINVAL);
	assert_int_equal(kiln_config_set_dns(f->cfg, "1.2.3"), -EINVAL);
	assert_int_equal(kiln_config_set_net_address(f->cfg,
						     "01:00:00:00:00:"
						     "01",
						     NULL),
			 -EINVAL);
	assert_int_equal(
		kiln_config_set_net_address(f->cfg, NULL, "192.168.5.0/24"), 0);
	o = nat_entry(f->cfg);
	assert_non_null(o);
	assert_string_equal(virtio_dev_opts_get(o, "egress"), "none");
	assert_string_equal(virtio_dev_opts_get(o, "rules"),
			    "allow:host:8080;deny:10.0.0.0/8");
	assert_string_equal(virtio_dev_opts_get(o, "forward"),
			    "tcp:127.0.0.1:9000:80;udp:0.0.0.0:5353:53");
	assert_string_equal(virtio_dev_opts_get(o, "domains"), "*.pypi.org");
	assert_string_equal(virtio_dev_opts_get(o, "dns"), "127.0.0.1:5353");
	assert_string_equal(virtio_dev_opts_get(o, "net"), "192.168.5.0/24");
	/* the posture changes in place: still one card */
	assert_int_equal(kiln_config_set_net_user(f->cfg, KILN_EGRESS_ALL), 0);
	{
		int at = -1, n = 0;

		while (config_next_device(f->cfg, &virtio_net_ops, &at))
			n++;
		assert_int_equal(n, 1);
	}
	assert_string_equal(virtio_dev_opts_get(nat_entry(f->cfg), "egress"),
			    "all");
	/* a second NAT card through the device string is refused */
	assert_int_equal(kiln_config_add_device(f->cfg, "net"), -EEXIST);
}

static void test_hostname_and_networks(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/kiln-cfgnet-XXXXXX";

	assert_int_equal(kiln_config_set_hostname(f->cfg, "web-1"), 0);
	assert_string_equal(f->cfg->hostname, "web-1");
	assert_int_equal(kiln_config_set_hostname(f->cfg, "-x"), -EINVAL);
	assert_int_equal(kiln_config_set_hostname(f->cfg, "a b"), -EINVAL);
	assert_int_equal(kiln_config_set_hostname(f->cfg, NULL), 0);
	assert_string_equal(f->cfg->hostname, "");
	/* networks are looked up in the user's runtime directory */
	assert_non_null(mkdtemp(dir));
	setenv("XDG_RUNTIME_DIR", dir, 1);
	assert_int_equal(kiln_config_add_network(f->cfg, "nosuch"), -ENOENT);
	assert_non_null(strstr(f->cap.last, "no network named 'nosuch'"));
	assert_int_equal(kiln_config_add_network(f->cfg, "../etc"), -EINVAL);
	unsetenv("XDG_RUNTIME_DIR");
	rmdir(dir);
}

static void test_outcome_names(void **state)
{
	static const struct {
		enum kiln_outcome o;
		const char *name;
	} names[] = {
		{KILN_OUTCOME_NONE, "none"},
		{KILN_OUTCOME_RESET, "reset"},
		{KILN_OUTCOME_HALT, "halt"},
		{KILN_OUTCOME_TRIPLE_FAULT, "triple-fault"},
		{KILN_OUTCOME_INTERNAL_ERROR, "internal-error"},
		{KILN_OUTCOME_DEBUG_EXIT, "debug-exit"},
		{KILN_OUTCOME_TIMEOUT, "timeout"},
		{KILN_OUTCOME_STOPPED, "stopped"},
		{KILN_OUTCOME_VMM_ERROR, "vmm-error"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		assert_non_null(kiln_outcome_name(names[i].o));
		assert_string_equal(kiln_outcome_name(names[i].o),
				    names[i].name);
	}
	/* Out of range: a string, never NULL. */
	assert_string_equal(kiln_outcome_name((enum kiln_outcome)99),
			    "unknown");
	assert_string_equal(kiln_outcome_name((enum kiln_outcome) - 1),
			    "unknown");
}

#define CFG_TEST(f) cmocka_unit_test_setup_teardown(f, cfg_setup, cfg_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		CFG_TEST(test_net_builder),
		CFG_TEST(test_hostname_and_networks),
		CFG_TEST(test_defaults),
		cmocka_unit_test(test_free_null),
		CFG_TEST(test_cpus),
		CFG_TEST(test_memory),
		CFG_TEST(test_log_level_filter),
		CFG_TEST(test_paths),
		CFG_TEST(test_cmdline_append),
		CFG_TEST(test_cmdline_base),
		CFG_TEST(test_cmdline_empty),
		CFG_TEST(test_cmdline_devices),
		CFG_TEST(test_cmdline_long),
		CFG_TEST(test_console_escape),
		CFG_TEST(test_console_fds_debug_exit),
		CFG_TEST(test_outcome_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
