/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the device option syntax ("TYPE,KEY=VALUE,...") that
 * --device, --disk, --share, --vsock and `kiln vhost-user --device` reach.
 * Anything must parse into checked options or be refused with -EINVAL,
 * never read past the string or leak; accepted options also go through a
 * config's cross-device limits.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kiln/kiln.h>

#include "virtio/device_table.h"
#include "vm/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtio_dev_opts o, copy;
	struct kiln_config *cfg;
	char *spec = malloc(size + 1);
	int err;

	if (!spec)
		return 0;
	memcpy(spec, data, size);
	spec[size] = 0;
	err = virtio_dev_opts_parse(spec, NULL, &o);
	if (err == 0) {
		if (!o.type || o.n > VIRTIO_DEV_MAX_OPTS)
			abort();
		if (virtio_dev_opts_copy(&copy, &o) == 0) {
			if (virtio_dev_opts_check(&copy, NULL) != 0)
				abort(); /* a copy checks as the original */
			virtio_dev_opts_free(&copy);
		}
		virtio_dev_opts_free(&o);
	} else if (err != -EINVAL && err != -ENOMEM) {
		abort();
	}
	/* twice into one config: per-type limits and duplicate tags */
	cfg = kiln_config_new();
	if (cfg) {
		kiln_config_add_device(cfg, spec);
		kiln_config_add_device(cfg, spec);
		kiln_config_free(cfg);
	}
	free(spec);
	return 0;
}
