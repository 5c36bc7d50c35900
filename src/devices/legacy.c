/* SPDX-License-Identifier: MIT */
#include "legacy.h"

#include <string.h>

#define I8042_CMD_RESET 0xFE

void i8042_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t size,
		  bool is_write)
{
	struct legacy_devices *l = opaque;

	/* offset 0 is port 0x60 (data), offset 4 is 0x64 (status/command) */
	if (!is_write) {
		/* No keyboard: output buffer empty, input buffer empty, so
		 * Linux's reboot=k never waits. */
		memset(data, 0, size);
		return;
	}
	if (offset == 4 && data[0] == I8042_CMD_RESET)
		l->request(l->opaque, LEGACY_RESET, 0);
}

void reset_control_access(void *opaque, uint64_t offset, uint8_t *data,
			  uint32_t size, bool is_write)
{
	struct legacy_devices *l = opaque;

	(void)offset;
	if (!is_write) {
		memset(data, 0, size);
		return;
	}
	/* bit 2: perform the reset selected by bits 1 and 3 */
	if (data[0] & 0x04)
		l->request(l->opaque, LEGACY_RESET, 0);
}

void debug_exit_access(void *opaque, uint64_t offset, uint8_t *data,
		       uint32_t size, bool is_write)
{
	struct legacy_devices *l = opaque;

	(void)offset;
	if (!is_write) {
		memset(data, 0xff, size);
		return;
	}
	l->request(l->opaque, LEGACY_DEBUG_EXIT, data[0]);
}
