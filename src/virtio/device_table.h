/* SPDX-License-Identifier: MIT */
/*
 * The device table: every virtio device type a user can ask for by name,
 * and the one option syntax they share.
 *
 *   TYPE,KEY=VALUE,FLAG,...     e.g.  blk,path=disk.img,ro
 *
 * A literal comma inside a value is written twice (",,"), as in QEMU. The
 * keys a type accepts are listed in its ops table (option_keys); its check
 * hook validates values without side effects, its create hook builds the
 * device. The VMM (every --disk, --share, --vsock, --device becomes one
 * entry of the VM's device list), the emulating engine and
 * `kiln vhost-user --device` all build devices through this table only.
 *
 * Adding a device type: one file in src/virtio/ with its ops table (life
 * cycle hooks included) and one line in device_table.c.
 */
#ifndef KILN_VIRTIO_DEVICE_TABLE_H
#define KILN_VIRTIO_DEVICE_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"
#include "virtio/virtio.h"

/* Keys one device's options may hold. */
#define VIRTIO_DEV_MAX_OPTS 8
/* Longest option string accepted (a path plus a few keys). */
#define VIRTIO_DEV_MAX_SPEC 8192

struct virtio_dev_opt {
	char *key;
	char *val; /* NULL for a bare flag such as "ro" */
};

/* One device as asked for: its type and its options (owned copies). */
struct virtio_dev_opts {
	const struct virtio_dev_ops *type;
	struct virtio_dev_opt opt[VIRTIO_DEV_MAX_OPTS];
	unsigned n;
};

/* The device types, NULL-terminated. */
extern const struct virtio_dev_ops *const virtio_dev_types[];

/* The type called name ("blk", "fs", ...), or NULL. */
const struct virtio_dev_ops *virtio_dev_type_find(const char *name);

/* Writes the names of all types, comma-separated, into buf. */
void virtio_dev_type_names(char *buf, size_t len);

/* Parses "TYPE,KEY[=VALUE],..." into out and checks it (known type and
 * keys, no key twice, type's check hook). 0, -EINVAL (logged), -ENOMEM.
 * On failure out is empty. */
int virtio_dev_opts_parse(const char *spec, const struct kiln_log *log,
			  struct virtio_dev_opts *out);

/* Starts empty options for type (no check). */
void virtio_dev_opts_init(struct virtio_dev_opts *o,
			  const struct virtio_dev_ops *type);

/* Adds key (val NULL: bare flag), copied. 0, -E2BIG (too many), -ENOMEM. */
int virtio_dev_opts_add(struct virtio_dev_opts *o, const char *key,
			const char *val);

/* Checks options built with virtio_dev_opts_add: known keys, none twice,
 * the type's check hook. 0 or -EINVAL (logged). */
int virtio_dev_opts_check(const struct virtio_dev_opts *o,
			  const struct kiln_log *log);

/* Deep copy; 0 or -ENOMEM (dst empty then). */
int virtio_dev_opts_copy(struct virtio_dev_opts *dst,
			 const struct virtio_dev_opts *src);

/* Frees the copies; o is empty (no type) afterwards. */
void virtio_dev_opts_free(struct virtio_dev_opts *o);

/* The option called key: true if present, *val its value (NULL for a bare
 * flag). */
bool virtio_dev_opts_find(const struct virtio_dev_opts *o, const char *key,
			  const char **val);

/* Value of key, or NULL if absent or a bare flag. */
const char *virtio_dev_opts_get(const struct virtio_dev_opts *o,
				const char *key);

/* Boolean key: absent false, bare flag true, else on/off, yes/no, true/false,
 * 1/0. 0 or -EINVAL (logged). */
int virtio_dev_opts_bool(const struct virtio_dev_opts *o, const char *key,
			 const struct kiln_log *log, bool *out);

/* Decimal key in min..max. 0, -ENOENT (absent, not logged), -EINVAL
 * (logged). */
int virtio_dev_opts_u64(const struct virtio_dev_opts *o, const char *key,
			uint64_t min, uint64_t max, const struct kiln_log *log,
			uint64_t *out);

/* A required string key with a non-empty value: 0 or -EINVAL (logged,
 * naming what as its meaning, e.g. "path=IMAGE"). */
int virtio_dev_opts_require(const struct virtio_dev_opts *o, const char *key,
			    const char *what, const struct kiln_log *log,
			    const char **val);

/* Builds a device from checked options: sets d->log, calls the type's
 * create. 0 or -errno (logged). */
int virtio_dev_create(struct virtio_dev *d, const struct virtio_dev_opts *o,
		      const struct kiln_log *log);

/* Undoes virtio_dev_create (type's destroy); idempotent, d zeroed. */
void virtio_dev_destroy(struct virtio_dev *d);

#endif
