/* SPDX-License-Identifier: MIT */
/*
 * The few PC legacy ports a Linux guest uses to end itself: the i8042
 * keyboard controller (reset pulse, reboot=k), the 0xCF9 reset control
 * register, and kiln's debug-exit port for test guests.
 */
#ifndef KILN_DEVICES_LEGACY_H
#define KILN_DEVICES_LEGACY_H

#include <stdbool.h>
#include <stdint.h>

#define I8042_DATA_PORT	   0x60
#define I8042_CMD_PORT	   0x64
#define RESET_CONTROL_PORT 0xCF9

enum legacy_request { LEGACY_RESET, LEGACY_DEBUG_EXIT };

struct legacy_devices {
	/* Called on the vCPU thread when the guest asks to end the VM. */
	void (*request)(void *opaque, enum legacy_request req, int code);
	void *opaque;
};

/* Bus handlers; opaque is a struct legacy_devices. */
void i8042_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t size,
		  bool is_write);
void reset_control_access(void *opaque, uint64_t offset, uint8_t *data,
			  uint32_t size, bool is_write);
void debug_exit_access(void *opaque, uint64_t offset, uint8_t *data,
		       uint32_t size, bool is_write);

#endif
