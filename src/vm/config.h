/* SPDX-License-Identifier: MIT */
/* The VM configuration behind the opaque struct kiln_config. */
#ifndef KILN_VM_CONFIG_H
#define KILN_VM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"

#define KILN_DEFAULT_BASE_CMDLINE "console=ttyS0 reboot=k panic=-1"
#define KILN_DEFAULT_MEMORY_MIB 256u

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
};

/* Builds "base extra" (extra may be empty); NULL on ENOMEM. */
char *config_build_cmdline(const struct kiln_config *cfg);

#endif
