/* SPDX-License-Identifier: MIT */
#include "bus.h"

#include <errno.h>
#include <string.h>

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_access_fn fn,
		 void *opaque)
{
	if (len == 0 || base + len < base)
		return -EINVAL;
	for (unsigned i = 0; i < b->nr; i++) {
		const struct bus_device *d = &b->devs[i];

		if (base < d->base + d->len && d->base < base + len)
			return -EEXIST;
	}
	if (b->nr == BUS_MAX_DEVICES)
		return -ENOSPC;
	b->devs[b->nr++] = (struct bus_device){base, len, fn, opaque};
	return 0;
}

bool bus_access(const struct bus *b, uint64_t addr, uint8_t *data,
		uint32_t size, bool is_write)
{
	for (unsigned i = 0; i < b->nr; i++) {
		const struct bus_device *d = &b->devs[i];

		if (addr >= d->base && addr - d->base < d->len &&
		    size <= d->len - (addr - d->base)) {
			d->fn(d->opaque, addr - d->base, data, size, is_write);
			return true;
		}
	}
	if (!is_write)
		memset(data, 0xff, size);
	return false;
}
