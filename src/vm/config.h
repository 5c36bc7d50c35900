/* SPDX-License-Identifier: MIT */
/* The VM configuration behind the opaque struct kiln_config. */
#ifndef KILN_VM_CONFIG_H
#define KILN_VM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"
#include "virtio/device_table.h"

#define KILN_DEFAULT_BASE_CMDLINE	 "console=ttyS0 reboot=k panic=-1"
#define KILN_VIRTIO_CONSOLE_BASE_CMDLINE "console=hvc0 reboot=k panic=-1"
#define KILN_DEFAULT_MEMORY_MIB		 256u

/* virtio devices a config may list: the MMIO slots (VM_VIRTIO_MAX_DEVICES)
 * less the console's and the rng's. */
#define KILN_MAX_DEVICES 17
struct kiln_config {
	struct kiln_log log;
	char *kernel_path;
	char *initrd_path;
	char *kvm_path;
	char *base_cmdline;
	char *extra_cmdline;
	unsigned cpus;
	uint64_t memory_mib;
	int console_in_fd, console_out_fd;
	int console_escape;
	bool debug_exit;
	bool console_capture;
	enum kiln_console console;
	enum kiln_accel accel;
	/* every virtio device the user asked for, in order (--disk, --share,
	 * --vsock, --device): built through the device table */
	struct virtio_dev_opts devices[KILN_MAX_DEVICES];
	unsigned nr_devices;
	/* a sandbox's guest rlimits (kiln_config_set_ulimit), for the agent */
	struct {
		char name[8];
		uint64_t soft, hard;
	} ulimits[KILN_MAX_ULIMITS];
	unsigned nr_ulimits;
	/* the NAT card as the builder (config_net.c) describes it; it lives
	 * in devices[] as a "net" entry, rebuilt on every change */
	struct config_net {
		bool on;
		enum kiln_egress egress;
		char mac[18], subnet[20], dns[64];
		char rules[2048];    /* "allow:X;deny:Y" */
		char forwards[1024]; /* "tcp:127.0.0.1:8080:80;..." */
		char domains[2048];  /* "NAME;*.SUFFIX" */
	} net;
	char hostname[64]; /* "" : kiln's default */
};

/* Adds checked options o (taken over, freed on failure) to the device
 * list, within each type's limit. 0 or -errno (logged). */
int config_add_device(struct kiln_config *cfg, struct virtio_dev_opts *o);

/* Options of type from key/value pairs (NULL-terminated; a NULL value is a
 * bare flag), checked, into o: 0, or -errno (logged) with o empty. */
int config_opts_build(const struct kiln_config *cfg,
		      const struct virtio_dev_ops *type, const char *const *kv,
		      struct virtio_dev_opts *o);
/* config_opts_build, then config_add_device. */
int config_add_typed(struct kiln_config *cfg, const struct virtio_dev_ops *type,
		     const char *const *kv);

/* A deep copy of cfg (same log); NULL on ENOMEM. */
struct kiln_config *config_clone(const struct kiln_config *cfg);

/* The first device of type after index *from (start with -1), or NULL;
 * *from is its index. */
const struct virtio_dev_opts *
config_next_device(const struct kiln_config *cfg,
		   const struct virtio_dev_ops *type, int *from);

/* Builds "base devices extra": kiln's base (per console), what devices
 * need, then the user's arguments; NULL on ENOMEM. */
char *config_build_cmdline(const struct kiln_config *cfg, const char *devices);

#endif
