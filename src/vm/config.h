/* SPDX-License-Identifier: MIT */
/* The VM configuration behind the opaque struct kiln_config. */
#ifndef KILN_VM_CONFIG_H
#define KILN_VM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"

#define KILN_DEFAULT_BASE_CMDLINE	 "console=ttyS0 reboot=k panic=-1"
#define KILN_VIRTIO_CONSOLE_BASE_CMDLINE "console=hvc0 reboot=k panic=-1"
#define KILN_DEFAULT_MEMORY_MIB		 256u

#define KILN_MAX_DISKS	16
#define KILN_MAX_SHARES 8

/* virtio-fs tag field size (virtio 1.2, 5.11.4) */
#define KILN_MAX_SHARE_TAG 36

struct kiln_share_config {
	char *dir, *tag;
	char *guest_path; /* where a sandbox's agent mounts it; NULL: /mnt/TAG
			   */
	bool read_only;
};

struct kiln_disk_config {
	char *path;
	bool read_only;
};

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
	struct kiln_disk_config disks[KILN_MAX_DISKS];
	unsigned nr_disks;
	struct kiln_share_config shares[KILN_MAX_SHARES];
	unsigned nr_shares;
	char *vsock_uds; /* NULL: no vsock device */
	uint64_t vsock_cid;
};

/* A deep copy of cfg (same log); NULL on ENOMEM. */
struct kiln_config *config_clone(const struct kiln_config *cfg);

/* Builds "base devices extra": kiln's base (per console), what devices
 * need, then the user's arguments; NULL on ENOMEM. */
char *config_build_cmdline(const struct kiln_config *cfg, const char *devices);

#endif
