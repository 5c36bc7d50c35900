/* SPDX-License-Identifier: MIT */
/*
 * Library-level KVM test: four VMs live in one process at once (kiln keeps
 * no global state), each runs a guest that exits through the debug-exit
 * port, and each reports its own outcome.
 */
#include <stdio.h>
#include <stdlib.h>

#include <kiln/kiln.h>

#define NVMS 4

static void log_fn(void *opaque, enum kiln_log_level level, const char *msg)
{
	(void)level;
	fprintf(stderr, "vm%d: %s\n", (int)(long)opaque, msg);
}

int main(int argc, char **argv)
{
	struct kiln_vm *vms[NVMS] = { 0 };
	int failures = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: multi_vm GUEST.elf\n");
		return 2;
	}
	for (long i = 0; i < NVMS; i++) {
		struct kiln_config *cfg = kiln_config_new();

		if (!cfg)
			return 1;
		kiln_config_set_log(cfg, log_fn, (void *)i, KILN_LOG_ERROR);
		kiln_config_set_kernel(cfg, argv[1]);
		kiln_config_set_memory_mib(cfg, 16 + 16 * (uint64_t)i);
		kiln_config_set_debug_exit(cfg, 1);
		/* tier 2: kiln's own vCPUs, never QEMU */
		kiln_config_set_accel(cfg, KILN_ACCEL_KVM);
		kiln_config_set_console_fds(cfg, -1, -1);
		if (kiln_vm_create(cfg, &vms[i]) < 0 || kiln_vm_start(vms[i]) < 0) {
			fprintf(stderr, "vm%ld: cannot start\n", i);
			failures++;
		}
		kiln_config_free(cfg);
	}
	for (int i = 0; i < NVMS; i++) {
		struct kiln_exit_info info;

		if (!vms[i])
			continue;
		if (kiln_vm_wait(vms[i], 20000, &info) < 0 ||
		    info.outcome != KILN_OUTCOME_DEBUG_EXIT ||
		    info.debug_exit_code != 0) {
			fprintf(stderr, "vm%d: outcome %s (%s)\n", i,
				kiln_outcome_name(info.outcome), info.detail);
			failures++;
		} else {
			printf("vm%d: %s\n", i, info.detail);
		}
		kiln_vm_destroy(vms[i]);
	}
	return failures ? 1 : 0;
}
