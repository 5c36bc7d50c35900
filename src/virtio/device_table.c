/* SPDX-License-Identifier: MIT */
#include "device_table.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/blk.h"
#include "virtio/fs.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"

/* One line per device type a user can name. */
const struct virtio_dev_ops *const virtio_dev_types[] = {
	&virtio_blk_ops, &virtio_fs_ops,  &virtio_vsock_ops,
	&virtio_rng_ops, &virtio_net_ops, NULL,
};

const struct virtio_dev_ops *virtio_dev_type_find(const char *name)
{
	for (const struct virtio_dev_ops *const *t = virtio_dev_types; *t; t++)
		if (name && !strcmp((*t)->type, name))
			return *t;
	return NULL;
}

void virtio_dev_type_names(char *buf, size_t len)
{
	size_t used = 0;

	if (!len)
		return;
	buf[0] = 0;
	for (const struct virtio_dev_ops *const *t = virtio_dev_types; *t;
	     t++) {
		int r = snprintf(buf + used, len - used, "%s%s",
				 used ? ", " : "", (*t)->type);

		if (r < 0 || (size_t)r >= len - used)
			return;
		used += (size_t)r;
	}
}

void virtio_dev_opts_init(struct virtio_dev_opts *o,
			  const struct virtio_dev_ops *type)
{
	memset(o, 0, sizeof(*o));
	o->type = type;
}

void virtio_dev_opts_free(struct virtio_dev_opts *o)
{
	for (unsigned i = 0; i < o->n; i++) {
		free(o->opt[i].key);
		free(o->opt[i].val);
	}
	memset(o, 0, sizeof(*o));
}

int virtio_dev_opts_add(struct virtio_dev_opts *o, const char *key,
			const char *val)
{
	struct virtio_dev_opt *p;

	if (o->n == VIRTIO_DEV_MAX_OPTS)
		return -E2BIG;
	p = &o->opt[o->n];
	p->key = strdup(key);
	p->val = val ? strdup(val) : NULL;
	if (!p->key || (val && !p->val)) {
		free(p->key);
		free(p->val);
		p->key = p->val = NULL;
		return -ENOMEM;
	}
	o->n++;
	return 0;
}

int virtio_dev_opts_copy(struct virtio_dev_opts *dst,
			 const struct virtio_dev_opts *src)
{
	virtio_dev_opts_init(dst, src->type);
	for (unsigned i = 0; i < src->n; i++)
		if (virtio_dev_opts_add(dst, src->opt[i].key, src->opt[i].val) <
		    0) {
			virtio_dev_opts_free(dst);
			return -ENOMEM;
		}
	return 0;
}

bool virtio_dev_opts_find(const struct virtio_dev_opts *o, const char *key,
			  const char **val)
{
	for (unsigned i = 0; i < o->n; i++)
		if (!strcmp(o->opt[i].key, key)) {
			if (val)
				*val = o->opt[i].val;
			return true;
		}
	return false;
}

const char *virtio_dev_opts_get(const struct virtio_dev_opts *o,
				const char *key)
{
	const char *val = NULL;

	virtio_dev_opts_find(o, key, &val);
	return val;
}

int virtio_dev_opts_bool(const struct virtio_dev_opts *o, const char *key,
			 const struct kiln_log *log, bool *out)
{
	static const char *const yes[] = {"on", "yes", "true", "1"};
	static const char *const no[] = {"off", "no", "false", "0"};
	const char *val;

	*out = false;
	if (!virtio_dev_opts_find(o, key, &val))
		return 0;
	if (!val) {
		*out = true;
		return 0;
	}
	for (unsigned i = 0; i < 4; i++) {
		if (!strcmp(val, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(val, no[i]))
			return 0;
	}
	return kiln_errorf(log, -EINVAL, "%s: %s=%s is not on or off",
			   o->type->type, key, val);
}

int virtio_dev_opts_u64(const struct virtio_dev_opts *o, const char *key,
			uint64_t min, uint64_t max, const struct kiln_log *log,
			uint64_t *out)
{
	const char *val;
	uintmax_t v;
	char *end;

	if (!virtio_dev_opts_find(o, key, &val))
		return -ENOENT;
	if (!val || !*val || *val < '0' || *val > '9')
		goto bad;
	errno = 0;
	v = strtoumax(val, &end, 10);
	if (errno || *end || v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	return kiln_errorf(log, -EINVAL,
			   "%s: %s=%s is not a number in %" PRIu64 "..%" PRIu64,
			   o->type->type, key, val ? val : "", min, max);
}

int virtio_dev_opts_require(const struct virtio_dev_opts *o, const char *key,
			    const char *what, const struct kiln_log *log,
			    const char **val)
{
	*val = virtio_dev_opts_get(o, key);
	if (!*val || !**val)
		return kiln_errorf(log, -EINVAL, "%s: %s is required",
				   o->type->type, what);
	return 0;
}

static bool key_known(const struct virtio_dev_ops *type, const char *key)
{
	for (const char *const *k = type->option_keys; k && *k; k++)
		if (!strcmp(*k, key))
			return true;
	return false;
}

int virtio_dev_opts_check(const struct virtio_dev_opts *o,
			  const struct kiln_log *log)
{
	if (!o->type || !o->type->create)
		return kiln_errorf(log, -EINVAL, "not a device type");
	for (unsigned i = 0; i < o->n; i++) {
		const char *key = o->opt[i].key;

		if (!key_known(o->type, key)) {
			char keys[128] = "";
			size_t used = 0;

			for (const char *const *k = o->type->option_keys;
			     k && *k && used < sizeof(keys); k++) {
				int r = snprintf(keys + used,
						 sizeof(keys) - used, "%s%s",
						 used ? ", " : "", *k);
				if (r > 0)
					used += (size_t)r;
			}
			return kiln_errorf(
				log, -EINVAL, "%s: unknown key '%s' (%s%s)",
				o->type->type, key,
				used ? "keys: " : "it takes none", keys);
		}
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(o->opt[j].key, key))
				return kiln_errorf(log, -EINVAL,
						   "%s: '%s' given twice",
						   o->type->type, key);
	}
	return o->type->check ? o->type->check(o, log) : 0;
}

/* Copies one comma-separated field from *p, turning ",," into ",";
 * advances *p past the field and its separator; *more: a separator ended
 * it, so another field follows (perhaps an empty one). */
static char *next_field(const char **p, bool *more)
{
	const char *s = *p;
	size_t n = 0;
	char *out = malloc(strlen(s) + 1);

	*more = false;
	if (!out)
		return NULL;
	while (*s) {
		if (*s == ',') {
			if (s[1] != ',') {
				s++;
				*more = true;
				break;
			}
			s++; /* ",," is one literal comma */
		}
		out[n++] = *s++;
	}
	out[n] = 0;
	*p = s;
	return out;
}

int virtio_dev_opts_parse(const char *spec, const struct kiln_log *log,
			  struct virtio_dev_opts *out)
{
	const char *p = spec;
	char *field, names[128];
	bool more;
	int err = 0;

	virtio_dev_opts_init(out, NULL);
	if (!spec || !*spec || *spec == ',')
		return kiln_errorf(log, -EINVAL, "missing device type");
	if (strnlen(spec, VIRTIO_DEV_MAX_SPEC + 1) > VIRTIO_DEV_MAX_SPEC)
		return kiln_errorf(log, -EINVAL,
				   "device options longer than %u bytes",
				   VIRTIO_DEV_MAX_SPEC);
	field = next_field(&p, &more);
	if (!field)
		return -ENOMEM;
	out->type = virtio_dev_type_find(field);
	if (!out->type) {
		virtio_dev_type_names(names, sizeof(names));
		err = kiln_errorf(log, -EINVAL,
				  "unknown device type '%s' (supported: %s)",
				  field, names);
		free(field);
		return err;
	}
	free(field);
	while (more) {
		char *eq;

		field = next_field(&p, &more);
		if (!field)
			err = -ENOMEM;
		else if (!*field)
			err = kiln_errorf(log, -EINVAL, "%s: empty option",
					  out->type->type);
		if (err < 0) {
			free(field);
			break;
		}
		eq = strchr(field, '=');
		if (eq)
			*eq = 0;
		err = virtio_dev_opts_add(out, field, eq ? eq + 1 : NULL);
		if (err == -E2BIG)
			err = kiln_errorf(log, -EINVAL,
					  "%s: more than %u options",
					  out->type->type, VIRTIO_DEV_MAX_OPTS);
		free(field);
		if (err < 0)
			break;
	}
	if (err == 0)
		err = virtio_dev_opts_check(out, log);
	if (err < 0)
		virtio_dev_opts_free(out);
	return err;
}

int virtio_dev_create(struct virtio_dev *d, const struct virtio_dev_opts *o,
		      const struct kiln_log *log)
{
	if (!o->type || !o->type->create)
		return kiln_errorf(log, -EINVAL, "not a device type");
	d->log = log;
	return o->type->create(d, o);
}

void virtio_dev_destroy(struct virtio_dev *d)
{
	const struct kiln_log *log = d->log;

	if (d->ops && d->ops->destroy)
		d->ops->destroy(d);
	memset(d, 0, sizeof(*d));
	d->log = log;
}
