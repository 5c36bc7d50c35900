/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtio/blk.h"
#include "virtio/fs.h"
#include "virtio/net.h"
#include "virtio/vsock.h"

KILN_API const char *kiln_version(void)
{
	return KILN_VERSION_STRING;
}

KILN_API struct kiln_config *kiln_config_new(void)
{
	struct kiln_config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return NULL;
	cfg->cpus = 1;
	cfg->memory_mib = KILN_DEFAULT_MEMORY_MIB;
	cfg->console_in_fd = -1;
	cfg->console_out_fd = STDOUT_FILENO;
	cfg->log.max_level = KILN_LOG_INFO;
	return cfg;
}

KILN_API void kiln_config_free(struct kiln_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->kernel_path);
	free(cfg->initrd_path);
	free(cfg->kvm_path);
	free(cfg->base_cmdline);
	free(cfg->extra_cmdline);
	for (unsigned i = 0; i < cfg->nr_devices; i++)
		virtio_dev_opts_free(&cfg->devices[i]);
	free(cfg);
}

KILN_API void kiln_config_set_log(struct kiln_config *cfg, kiln_log_fn fn,
				  void *opaque, enum kiln_log_level max_level)
{
	cfg->log = (struct kiln_log){fn, opaque, max_level};
}

static int replace_string(char **slot, const char *value)
{
	char *copy = NULL;

	if (value) {
		copy = strdup(value);
		if (!copy)
			return -ENOMEM;
	}
	free(*slot);
	*slot = copy;
	return 0;
}

KILN_API int kiln_config_set_kernel(struct kiln_config *cfg, const char *path)
{
	if (!path || !*path)
		return kiln_errorf(&cfg->log, -EINVAL, "empty kernel path");
	return replace_string(&cfg->kernel_path, path);
}

KILN_API int kiln_config_set_initrd(struct kiln_config *cfg, const char *path)
{
	if (path && !*path)
		return kiln_errorf(&cfg->log, -EINVAL, "empty initrd path");
	return replace_string(&cfg->initrd_path, path);
}

KILN_API int kiln_config_set_kvm_fd(struct kiln_config *cfg, int fd)
{
	char path[32];

	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return kiln_errorf(&cfg->log, -EBADF, "KVM fd %d is not open",
				   fd);
	/* reopened through its /proc link when the VM is created */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return replace_string(&cfg->kvm_path, path);
}

KILN_API int kiln_config_set_kvm_path(struct kiln_config *cfg, const char *path)
{
	if (!path || !*path)
		return kiln_errorf(&cfg->log, -EINVAL, "empty KVM device path");
	return replace_string(&cfg->kvm_path, path);
}

KILN_API int kiln_config_set_ulimit(struct kiln_config *cfg, const char *name,
				    uint64_t soft, uint64_t hard)
{
	static const char *const names[KILN_MAX_ULIMITS] = {
		"nofile", "nproc", "fsize", "stack", "core", "memlock", "as"};
	unsigned i, known = 0;

	for (i = 0; i < KILN_MAX_ULIMITS; i++)
		known |= name && !strcmp(name, names[i]);
	if (!known)
		return kiln_errorf(
			&cfg->log, -EINVAL,
			"ulimit '%s': expected nofile, nproc, fsize, "
			"stack, core, memlock or as",
			name ? name : "");
	if (soft > hard)
		return kiln_errorf(
			&cfg->log, -EINVAL,
			"ulimit %s: the soft limit is above the hard "
			"one",
			name);
	/* the guest kernel's fs.nr_open: a higher one would fail every exec */
	if (!strcmp(name, "nofile") && hard != KILN_ULIMIT_UNLIMITED &&
	    hard > 1048576)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "ulimit nofile: at most 1048576");
	if (!strcmp(name, "nofile") && hard == KILN_ULIMIT_UNLIMITED)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "ulimit nofile cannot be unlimited (at most "
				   "1048576)");
	for (i = 0; i < cfg->nr_ulimits; i++)
		if (!strcmp(cfg->ulimits[i].name, name))
			break;
	if (i == cfg->nr_ulimits)
		cfg->nr_ulimits++;
	snprintf(cfg->ulimits[i].name, sizeof(cfg->ulimits[i].name), "%s",
		 name);
	cfg->ulimits[i].soft = soft;
	cfg->ulimits[i].hard = hard;
	return 0;
}

KILN_API int kiln_config_set_cpus(struct kiln_config *cfg, unsigned cpus)
{
	if (cpus < 1 || cpus > KILN_MAX_CPUS)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "cpu count %u is out of range (1..%u)", cpus,
				   KILN_MAX_CPUS);
	cfg->cpus = cpus;
	return 0;
}

KILN_API int kiln_config_set_memory_mib(struct kiln_config *cfg, uint64_t mib)
{
	if (mib < KILN_MIN_MEMORY_MIB || mib > KILN_MAX_MEMORY_MIB)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "memory size %llu MiB is out of range "
				   "(%u..%u MiB)",
				   (unsigned long long)mib, KILN_MIN_MEMORY_MIB,
				   KILN_MAX_MEMORY_MIB);
	cfg->memory_mib = mib;
	return 0;
}

KILN_API int kiln_config_append_cmdline(struct kiln_config *cfg,
					const char *args)
{
	char *joined;

	if (!args || !*args)
		return 0;
	if (!cfg->extra_cmdline)
		return replace_string(&cfg->extra_cmdline, args);
	joined = malloc(strlen(cfg->extra_cmdline) + strlen(args) + 2);
	if (!joined)
		return -ENOMEM;
	sprintf(joined, "%s %s", cfg->extra_cmdline, args);
	free(cfg->extra_cmdline);
	cfg->extra_cmdline = joined;
	return 0;
}

KILN_API int kiln_config_set_base_cmdline(struct kiln_config *cfg,
					  const char *base)
{
	return replace_string(&cfg->base_cmdline, base);
}

KILN_API int kiln_config_set_console_fds(struct kiln_config *cfg, int in_fd,
					 int out_fd)
{
	cfg->console_in_fd = in_fd;
	cfg->console_out_fd = out_fd;
	return 0;
}

KILN_API int kiln_config_set_console_escape(struct kiln_config *cfg, int ch)
{
	if (ch < 0 || ch > 0xFF)
		return kiln_errorf(&cfg->log, -EINVAL, "bad escape byte %d",
				   ch);
	cfg->console_escape = ch;
	return 0;
}

KILN_API int kiln_config_set_console(struct kiln_config *cfg,
				     enum kiln_console console)
{
	if (console != KILN_CONSOLE_SERIAL && console != KILN_CONSOLE_VIRTIO)
		return kiln_errorf(&cfg->log, -EINVAL, "unknown console %d",
				   (int)console);
	cfg->console = console;
	return 0;
}

const struct virtio_dev_opts *
config_next_device(const struct kiln_config *cfg,
		   const struct virtio_dev_ops *type, int *from)
{
	for (int i = *from + 1; i < (int)cfg->nr_devices; i++)
		if (cfg->devices[i].type == type) {
			*from = i;
			return &cfg->devices[i];
		}
	return NULL;
}

/* Takes o (checked) into the device list, or frees it: the limits that
 * span devices (slots, per-type counts, unique share tags). */
int config_add_device(struct kiln_config *cfg, struct virtio_dev_opts *o)
{
	const struct virtio_dev_ops *type = o->type;
	const char *tag = virtio_dev_opts_get(o, "tag");
	const char *sw = virtio_dev_opts_get(o, "switch");
	unsigned same = 0;
	int err = 0;

	for (unsigned i = 0; i < cfg->nr_devices && err == 0; i++) {
		const struct virtio_dev_opts *d = &cfg->devices[i];
		const char *dsw;

		if (d->type != type)
			continue;
		same++;
		if (type == &virtio_fs_ops && tag &&
		    !strcmp(tag, virtio_dev_opts_get(d, "tag")))
			err = kiln_errorf(&cfg->log, -EEXIST,
					  "share tag '%s' is used twice", tag);
		if (type != &virtio_net_ops)
			continue;
		/* one NAT card (its published ports, its guest address),
		 * and one card per cluster network */
		dsw = virtio_dev_opts_get(d, "switch");
		if (!sw && !dsw)
			err = kiln_errorf(&cfg->log, -EEXIST,
					  "a VM has one user-mode NAT card "
					  "(net without switch=)");
		else if (sw && dsw && !strcmp(sw, dsw))
			err = kiln_errorf(&cfg->log, -EEXIST,
					  "the VM is on that network already "
					  "(%s)",
					  sw);
	}
	if (err == 0 && type->max_per_vm && same >= type->max_per_vm)
		err = kiln_errorf(&cfg->log, -E2BIG,
				  "at most %u %s device%s per VM",
				  type->max_per_vm, type->type,
				  type->max_per_vm == 1 ? "" : "s");
	if (err == 0 && cfg->nr_devices == KILN_MAX_DEVICES)
		err = kiln_errorf(&cfg->log, -E2BIG,
				  "at most %d devices (disks, shares, vsock "
				  "and others together): kiln has no more "
				  "virtio-mmio slots",
				  KILN_MAX_DEVICES);
	if (err < 0) {
		virtio_dev_opts_free(o);
		return err;
	}
	cfg->devices[cfg->nr_devices++] = *o;
	return 0;
}

/* Builds options for type from key/value pairs (NULL-terminated), checks
 * and adds them. */
int config_opts_build(const struct kiln_config *cfg,
		      const struct virtio_dev_ops *type, const char *const *kv,
		      struct virtio_dev_opts *o)
{
	int err = 0;

	virtio_dev_opts_init(o, type);
	for (; kv[0] && err == 0; kv += 2)
		err = virtio_dev_opts_add(o, kv[0], kv[1]);
	if (err == 0)
		err = virtio_dev_opts_check(o, &cfg->log);
	if (err < 0)
		virtio_dev_opts_free(o);
	return err;
}

int config_add_typed(struct kiln_config *cfg, const struct virtio_dev_ops *type,
		     const char *const *kv)
{
	struct virtio_dev_opts o;
	int err = config_opts_build(cfg, type, kv, &o);

	return err < 0 ? err : config_add_device(cfg, &o);
}

KILN_API int kiln_config_add_device(struct kiln_config *cfg, const char *spec)
{
	struct virtio_dev_opts o;
	int err = virtio_dev_opts_parse(spec, &cfg->log, &o);

	return err < 0 ? err : config_add_device(cfg, &o);
}

KILN_API int kiln_config_add_disk(struct kiln_config *cfg, const char *path,
				  int read_only)
{
	const char *kv[] = {"path", path, read_only ? "ro" : NULL, NULL, NULL};

	if (!path || !*path)
		return kiln_errorf(&cfg->log, -EINVAL, "empty disk path");
	return config_add_typed(cfg, &virtio_blk_ops, kv);
}

KILN_API int kiln_config_add_disk_with(struct kiln_config *cfg,
				       const char *path, unsigned flags,
				       const char *format)
{
	const char *kv[12] = {"path", path};
	unsigned n = 2;

	if (!path || !*path)
		return kiln_errorf(&cfg->log, -EINVAL, "empty disk path");
	if (flags &
	    ~(KILN_DISK_READ_ONLY | KILN_DISK_SNAPSHOT | KILN_DISK_INSECURE))
		return kiln_errorf(&cfg->log, -EINVAL,
				   "disk %s: unknown flags %#x", path, flags);
	if (flags & KILN_DISK_READ_ONLY)
		kv[n++] = "ro", kv[n++] = NULL;
	if (flags & KILN_DISK_SNAPSHOT)
		kv[n++] = "snapshot", kv[n++] = NULL;
	if (flags & KILN_DISK_INSECURE)
		kv[n++] = "insecure", kv[n++] = NULL;
	if (format)
		kv[n++] = "format", kv[n++] = format;
	kv[n] = NULL;
	return config_add_typed(cfg, &virtio_blk_ops, kv);
}

KILN_API int kiln_config_add_share(struct kiln_config *cfg, const char *dir,
				   const char *tag, int read_only)
{
	return kiln_config_add_share_at(cfg, dir, tag, read_only, NULL);
}

KILN_API int kiln_config_add_share_at(struct kiln_config *cfg, const char *dir,
				      const char *tag, int read_only,
				      const char *guest_path)
{
	const char *kv[10] = {"dir", dir, "tag", tag};
	unsigned n = 4;

	if (!dir || !*dir || !tag || !*tag)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "a share needs a host directory and a tag");
	if (read_only) {
		kv[n++] = "ro";
		kv[n++] = NULL;
	}
	if (guest_path) {
		kv[n++] = "mount";
		kv[n++] = guest_path;
	}
	return config_add_typed(cfg, &virtio_fs_ops, kv);
}

static bool regular_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

#ifndef KILN_DATADIR
#define KILN_DATADIR "/usr/local/share/kiln"
#endif

KILN_API int kiln_config_set_guest_dir(struct kiln_config *cfg, const char *dir)
{
	char *kernel = NULL, *initrd = NULL;
	int err = -ENOMEM;

	if (!dir) {
		dir = getenv("KILN_GUEST_DIR");
		if (!dir || !*dir)
			dir = KILN_DATADIR "/guest";
	}
	if (!*dir)
		return kiln_errorf(&cfg->log, -EINVAL, "empty guest directory");
	if (asprintf(&kernel, "%s/vmlinux", dir) < 0) {
		kernel = NULL;
		goto out;
	}
	if (!regular_file(kernel)) {
		free(kernel);
		if (asprintf(&kernel, "%s/bzImage", dir) < 0) {
			kernel = NULL;
			goto out;
		}
	}
	if (asprintf(&initrd, "%s/initramfs.cpio.gz", dir) < 0) {
		initrd = NULL;
		goto out;
	}
	if (!regular_file(kernel) || !regular_file(initrd)) {
		err = kiln_errorf(&cfg->log, -ENOENT,
				  "%s is not a kiln guest directory (needs "
				  "vmlinux or bzImage, and initramfs.cpio.gz; "
				  "run 'make guest')",
				  dir);
		goto out;
	}
	free(cfg->kernel_path);
	free(cfg->initrd_path);
	cfg->kernel_path = kernel;
	cfg->initrd_path = initrd;
	return 0;
out:
	free(kernel);
	free(initrd);
	return err;
}

static char *dup_or_null(const char *s, bool *failed)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		*failed = true;
	return d;
}

struct kiln_config *config_clone(const struct kiln_config *cfg)
{
	struct kiln_config *c = malloc(sizeof(*c));
	bool failed = false;

	if (!c)
		return NULL;
	*c = *cfg;
	c->kernel_path = dup_or_null(cfg->kernel_path, &failed);
	c->initrd_path = dup_or_null(cfg->initrd_path, &failed);
	c->kvm_path = dup_or_null(cfg->kvm_path, &failed);
	c->base_cmdline = dup_or_null(cfg->base_cmdline, &failed);
	c->extra_cmdline = dup_or_null(cfg->extra_cmdline, &failed);
	c->nr_devices = 0;
	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		if (virtio_dev_opts_copy(&c->devices[i], &cfg->devices[i]) < 0)
			failed = true;
		c->nr_devices = i + 1;
	}
	if (failed) {
		kiln_config_free(c);
		return NULL;
	}
	return c;
}

KILN_API int kiln_config_set_vsock(struct kiln_config *cfg, uint64_t cid,
				   const char *uds_path)
{
	char cid_text[24];
	const char *kv[] = {"cid", cid_text, "uds", uds_path, NULL};
	struct virtio_dev_opts old = {0};
	int at = -1, err;

	if (uds_path && !*uds_path)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "empty vsock socket path");
	/* "set" replaces the one there is: take it out, put it back on
	 * failure */
	if (config_next_device(cfg, &virtio_vsock_ops, &at)) {
		old = cfg->devices[at];
		memmove(&cfg->devices[at], &cfg->devices[at + 1],
			(cfg->nr_devices - (unsigned)at - 1) *
				sizeof(cfg->devices[0]));
		cfg->nr_devices--;
	}
	if (!uds_path) {
		virtio_dev_opts_free(&old);
		return 0;
	}
	snprintf(cid_text, sizeof(cid_text), "%llu", (unsigned long long)cid);
	err = config_add_typed(cfg, &virtio_vsock_ops, kv);
	if (err < 0 && old.type)
		cfg->devices[cfg->nr_devices++] = old; /* at the end now */
	else
		virtio_dev_opts_free(&old);
	return err;
}

KILN_API int kiln_config_set_console_capture(struct kiln_config *cfg,
					     int enabled)
{
	cfg->console_capture = enabled != 0;
	return 0;
}

KILN_API int kiln_config_set_accel(struct kiln_config *cfg,
				   enum kiln_accel accel)
{
	if (accel != KILN_ACCEL_AUTO && accel != KILN_ACCEL_KVM &&
	    accel != KILN_ACCEL_TCG)
		return kiln_errorf(&cfg->log, -EINVAL, "unknown accelerator %d",
				   (int)accel);
	cfg->accel = accel;
	return 0;
}

KILN_API const char *kiln_accel_name(enum kiln_accel accel)
{
	switch (accel) {
	case KILN_ACCEL_AUTO: return "auto";
	case KILN_ACCEL_KVM: return "kvm";
	case KILN_ACCEL_TCG: return "tcg";
	}
	return "unknown";
}

KILN_API int kiln_accel_parse(const char *name, enum kiln_accel *out)
{
	static const enum kiln_accel all[] = {KILN_ACCEL_AUTO, KILN_ACCEL_KVM,
					      KILN_ACCEL_TCG};

	for (unsigned i = 0; name && i < 3; i++)
		if (!strcmp(name, kiln_accel_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -EINVAL;
}

KILN_API int kiln_config_set_debug_exit(struct kiln_config *cfg, int enabled)
{
	cfg->debug_exit = enabled != 0;
	return 0;
}

char *config_build_cmdline(const struct kiln_config *cfg, const char *devices)
{
	const char *base = cfg->base_cmdline ? cfg->base_cmdline
			   : cfg->console == KILN_CONSOLE_VIRTIO
				   ? KILN_VIRTIO_CONSOLE_BASE_CMDLINE
				   : KILN_DEFAULT_BASE_CMDLINE;
	const char *parts[3] = {base, devices ? devices : "",
				cfg->extra_cmdline ? cfg->extra_cmdline : ""};
	size_t len = 1;
	char *s;

	for (int i = 0; i < 3; i++)
		len += strlen(parts[i]) + 1;
	s = malloc(len);
	if (!s)
		return NULL;
	s[0] = 0;
	for (int i = 0; i < 3; i++) {
		if (!*parts[i])
			continue;
		if (*s)
			strcat(s, " ");
		strcat(s, parts[i]);
	}
	return s;
}
