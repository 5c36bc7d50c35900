/* SPDX-License-Identifier: MIT */
/*
 * Port-I/O and MMIO dispatch for one VM. Devices register a range and a
 * handler; accesses nobody claims are ignored (reads return all-ones), which
 * is what Linux expects when it probes for absent hardware.
 */
#ifndef KILN_DEVICES_BUS_H
#define KILN_DEVICES_BUS_H

#include <stdbool.h>
#include <stdint.h>

#define BUS_MAX_DEVICES 32

/* Handles one access at `offset` within the device's range; `data` holds
 * `size` (1..8) bytes, to fill on reads. Called on a vCPU thread. */
typedef void (*bus_access_fn)(void *opaque, uint64_t offset, uint8_t *data,
			      uint32_t size, bool is_write);

struct bus_device {
	uint64_t base, len;
	bus_access_fn fn;
	void *opaque;
};

struct bus {
	struct bus_device devs[BUS_MAX_DEVICES];
	unsigned nr;
};

/* Claims [base, base+len); -EEXIST on overlap, -ENOSPC when full. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_access_fn fn,
		 void *opaque);

/* Dispatches an access; returns false (and fills reads with 0xff) when no
 * device claims the whole access. */
bool bus_access(const struct bus *b, uint64_t addr, uint8_t *data,
		uint32_t size, bool is_write);

#endif
