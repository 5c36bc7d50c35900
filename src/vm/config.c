/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	for (unsigned i = 0; i < cfg->nr_disks; i++)
		free(cfg->disks[i].path);
	free(cfg->vsock_uds);
	for (unsigned i = 0; i < cfg->nr_shares; i++) {
		free(cfg->shares[i].dir);
		free(cfg->shares[i].tag);
		free(cfg->shares[i].guest_path);
	}
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

KILN_API int kiln_config_set_kvm_path(struct kiln_config *cfg, const char *path)
{
	if (!path || !*path)
		return kiln_errorf(&cfg->log, -EINVAL, "empty KVM device path");
	return replace_string(&cfg->kvm_path, path);
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

KILN_API int kiln_config_add_disk(struct kiln_config *cfg, const char *path,
				  int read_only)
{
	char *copy;

	if (!path || !*path)
		return kiln_errorf(&cfg->log, -EINVAL, "empty disk path");
	if (cfg->nr_disks == KILN_MAX_DISKS)
		return kiln_errorf(&cfg->log, -E2BIG, "at most %d disks",
				   KILN_MAX_DISKS);
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	cfg->disks[cfg->nr_disks].path = copy;
	cfg->disks[cfg->nr_disks].read_only = read_only != 0;
	cfg->nr_disks++;
	return 0;
}

/* True if s has no byte that would split a kernel command-line parameter or
 * the agent's TAG:PATH[:ro] mount spec. */
static bool cmdline_safe(const char *s)
{
	for (; *s; s++)
		if (*s <= ' ' || *s == ':' || *s == '"' || *s == 0x7f)
			return false;
	return true;
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
	struct kiln_share_config *sh;

	if (!dir || !*dir || !tag || !*tag)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "a share needs a host directory and a tag");
	if (strlen(tag) > KILN_MAX_SHARE_TAG || !cmdline_safe(tag))
		return kiln_errorf(&cfg->log, -EINVAL,
				   "share tag '%s': at most %d bytes, no "
				   "whitespace, ':' or '\"'",
				   tag, KILN_MAX_SHARE_TAG);
	if (guest_path && (guest_path[0] != '/' || strlen(guest_path) > 255 ||
			   !cmdline_safe(guest_path)))
		return kiln_errorf(
			&cfg->log, -EINVAL,
			"share guest path '%s': must be absolute, at "
			"most 255 bytes, no whitespace, ':' or '\"'",
			guest_path);
	if (cfg->nr_shares == KILN_MAX_SHARES)
		return kiln_errorf(&cfg->log, -E2BIG, "at most %d shares",
				   KILN_MAX_SHARES);
	for (unsigned i = 0; i < cfg->nr_shares; i++)
		if (!strcmp(cfg->shares[i].tag, tag))
			return kiln_errorf(&cfg->log, -EEXIST,
					   "share tag '%s' is used twice", tag);
	sh = &cfg->shares[cfg->nr_shares];
	sh->dir = strdup(dir);
	sh->tag = strdup(tag);
	sh->guest_path = guest_path ? strdup(guest_path) : NULL;
	if (!sh->dir || !sh->tag || (guest_path && !sh->guest_path)) {
		free(sh->dir);
		free(sh->tag);
		free(sh->guest_path);
		sh->dir = sh->tag = sh->guest_path = NULL;
		return -ENOMEM;
	}
	sh->read_only = read_only != 0;
	cfg->nr_shares++;
	return 0;
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
	c->vsock_uds = dup_or_null(cfg->vsock_uds, &failed);
	for (unsigned i = 0; i < cfg->nr_disks; i++)
		c->disks[i].path = dup_or_null(cfg->disks[i].path, &failed);
	for (unsigned i = 0; i < cfg->nr_shares; i++) {
		c->shares[i].dir = dup_or_null(cfg->shares[i].dir, &failed);
		c->shares[i].tag = dup_or_null(cfg->shares[i].tag, &failed);
		c->shares[i].guest_path =
			dup_or_null(cfg->shares[i].guest_path, &failed);
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
	if (uds_path && (cid < 3 || cid >= 0xffffffffull))
		return kiln_errorf(&cfg->log, -EINVAL,
				   "vsock guest CID %llu is out of range "
				   "(3..4294967294)",
				   (unsigned long long)cid);
	if (uds_path && !*uds_path)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "empty vsock socket path");
	cfg->vsock_cid = cid;
	return replace_string(&cfg->vsock_uds, uds_path);
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
