/* SPDX-License-Identifier: MIT */
/* The emulating engine's pure parts, for unit tests (the engine itself is
 * declared in vm_internal.h). */
#ifndef KILN_VM_TCG_H
#define KILN_VM_TCG_H

#include <stdbool.h>
#include <stddef.h>

#include <kiln/kiln.h>

/* Maps how QEMU ended (a waitpid status) onto kiln's outcomes: exit 0 is
 * the guest's reset (-no-reboot), an odd status with debug_exit on and no
 * error on stderr is isa-debug-exit's (value << 1) | 1, anything else is a
 * VMM error whose detail quotes `tail` (QEMU's last stderr line). */
void tcg_map_exit(int wstatus, bool debug_exit, bool stderr_error,
		  const char *tail, struct kiln_exit_info *info, char *detail,
		  size_t size);

#endif
