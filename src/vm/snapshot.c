/* SPDX-License-Identifier: MIT */
/*
 * Snapshots of a KVM-engine VM (kiln_vm_snapshot) and VMs restored from
 * them (kiln_vm_restore). A snapshot is a directory:
 *
 *   state   tagged records (util/snapshot_io.h): HOST (kiln version, host
 *           fingerprint), CONFIG (cpus, memory, cmdline, devices with the
 *           identity of their files), VM (PIT, interrupt controllers,
 *           clock), VCPU per vCPU, SERIAL, DEVICE per virtio device
 *   memory  guest RAM as guest_mem lays it out, zero pages left as holes
 *
 * Both are written under a temporary name and renamed, memory first (an
 * older state file in dir removed before), so a state file never goes with
 * a memory file that is not whole or not its own. The VM is paused
 * for the copy (its last exits completed, devices quiesced) and resumed
 * after unless it was paused already.
 *
 * A restore maps the memory file MAP_PRIVATE (the file is never written;
 * pages no clone writes stay shared in the page cache, so N restores are N
 * independent clones), rebuilds the devices from CONFIG, puts every
 * piece of state back, and kicks each ready queue once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/arch.h"
#include "backends/block.h"
#include "util/snapshot_io.h"
#include "virtio/blk.h"
#include "virtio/device_table.h"
#include "virtio/vsock.h"
#include "vm/vm_internal.h"

#define PAGE 4096u

/* ---- writing ---- */

static void put_host(struct kiln_vm *vm, struct snapshot_writer *w)
{
	struct arch_fingerprint fp;
	uint32_t khz = 0;
	int r = ioctl(vm->vcpus[0].kvm.fd, KVM_GET_TSC_KHZ, 0);

	if (r > 0)
		khz = (uint32_t)r;
	arch_host_fingerprint(&vm->kvm, &fp);
	sw_record(w, SNAP_HOST, SNAPSHOT_MANDATORY);
	sw_str(w, KILN_VERSION_STRING);
	sw_str(w, fp.vendor);
	sw_u32(w, fp.family);
	sw_u32(w, fp.model);
	sw_u64(w, fp.cpuid_hash);
	sw_u32(w, khz);
	sw_str(w, fp.kernel);
}

/* The config's devices, each with the identity of its file (blk). */
static int put_config(struct kiln_vm *vm, struct snapshot_writer *w)
{
	const struct kiln_config *c = vm->config;

	sw_record(w, SNAP_CONFIG, SNAPSHOT_MANDATORY);
	sw_u32(w, vm->ncpus);
	sw_u64(w, vm->mem.size);
	sw_u32(w, (uint32_t)c->console);
	sw_str(w, vm->cmdline);
	sw_u32(w, c->nr_devices);
	for (unsigned i = 0; i < c->nr_devices; i++) {
		const struct virtio_dev_opts *o = &c->devices[i];
		const char *path = virtio_dev_opts_get(o, "path");
		struct stat st;

		sw_str(w, o->type->type);
		sw_u32(w, o->n);
		for (unsigned k = 0; k < o->n; k++) {
			sw_str(w, o->opt[k].key);
			sw_u8(w, o->opt[k].val != NULL);
			sw_str(w, o->opt[k].val);
		}
		if (o->type == &virtio_blk_ops && virtio_dev_opts_get(o, "fd"))
			return kiln_errorf(&vm->log, -ENOTSUP,
					   "snapshot: a disk given as a file "
					   "descriptor cannot be opened again "
					   "at restore");
		if (o->type == &virtio_blk_ops && path && !block_is_url(path) &&
		    stat(path, &st) == 0) {
			sw_u8(w, 1);
			sw_u64(w, (uint64_t)st.st_dev);
			sw_u64(w, (uint64_t)st.st_ino);
			sw_u64(w, (uint64_t)st.st_size);
			sw_u64(w, (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
					  (uint64_t)st.st_mtim.tv_nsec);
		} else {
			sw_u8(w, 0);
		}
	}
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;

	for (unsigned i = 0; i < PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

/* Whether page i of the RAM mapping may hold data: anonymous RAM the
 * guest never touched is not resident (mincore) and reads as zeros, so it
 * is skipped without faulting it in; a file-backed mapping's pages hold
 * the file's data whether resident or not. */
static bool may_hold_data(const uint8_t *resident, uint64_t i)
{
	return !resident || (resident[i] & 1);
}

static bool has_data(const uint8_t *ram, const uint8_t *resident, uint64_t at)
{
	return may_hold_data(resident, at / PAGE) && !page_is_zero(ram + at);
}

/* Guest RAM into path (made anew), zero pages as holes, synced. */
static int write_memory(struct kiln_vm *vm, const char *path)
{
	uint8_t *ram = vm->mem.mapping;
	uint64_t size = vm->mem.size;
	uint8_t *resident = NULL;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (!vm->mem.file_backed) {
		resident = malloc(size / PAGE);
		if (resident && mincore(ram, (size_t)size, resident) < 0) {
			free(resident);
			resident = NULL; /* then every page is looked at */
		}
	}
	if (ftruncate(fd, (off_t)size) < 0)
		err = -errno;
	for (uint64_t at = 0; err == 0 && at < size;) {
		uint64_t end;

		if (!has_data(ram, resident, at)) {
			at += PAGE;
			continue;
		}
		/* a run of non-zero pages, up to 8 MiB, in one write */
		for (end = at + PAGE; end < size && end - at < (8u << 20) &&
				      has_data(ram, resident, end);
		     end += PAGE)
			;
		err = block_pwrite_full(fd, ram + at, (size_t)(end - at), at);
		at = end;
	}
	if (err == 0 && fsync(fd) < 0)
		err = -errno;
	close(fd);
	free(resident);
	return err;
}

static int write_file(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int err;

	if (fd < 0)
		return -errno;
	err = block_pwrite_full(fd, buf, len, 0);
	if (err == 0 && fsync(fd) < 0)
		err = -errno;
	close(fd);
	return err;
}

/* The state, with the VM paused and its devices idle. */
static int build_state(struct kiln_vm *vm, struct snapshot_writer *w)
{
	int err;

	put_host(vm, w);
	err = put_config(vm, w);
	if (err < 0)
		return err;
	sw_record(w, SNAP_VM, SNAPSHOT_MANDATORY);
	err = arch_vm_save(vm->vm_fd, w, &vm->log);
	for (unsigned i = 0; err == 0 && i < vm->ncpus; i++) {
		sw_record(w, SNAP_VCPU, SNAPSHOT_MANDATORY);
		sw_u32(w, i);
		err = arch_vcpu_save(&vm->kvm, vm->vcpus[i].kvm.fd, w,
				     &vm->log);
	}
	if (err < 0)
		return err;
	sw_record(w, SNAP_SERIAL, SNAPSHOT_MANDATORY);
	serial8250_save(&vm->serial, w);
	for (unsigned i = 0; err == 0 && i < vm->nr_vdevs; i++) {
		sw_record(w, SNAP_DEVICE, SNAPSHOT_MANDATORY);
		sw_u32(w, i);
		err = virtio_mmio_save(&vm->vdevs[i].mmio, w);
	}
	if (err == 0)
		err = snapshot_finish(w);
	return err;
}

KILN_API int kiln_vm_snapshot(struct kiln_vm *vm, const char *dir)
{
	struct snapshot_writer w;
	char tmp[PATH_MAX], path[PATH_MAX];
	bool was_paused;
	int err;

	if (vm->accel != KILN_ACCEL_KVM)
		return kiln_errorf(&vm->log, -ENOTSUP,
				   "snapshot: the emulating engine (tcg) "
				   "cannot snapshot a VM; kiln's KVM engine "
				   "can");
	if (!vm->running || kiln_vm_outcome(vm) != KILN_OUTCOME_NONE)
		return kiln_errorf(&vm->log, -EINVAL,
				   "snapshot: the VM is not running");
	if (strlen(dir) > PATH_MAX - 16)
		return -ENAMETOOLONG;
	for (unsigned i = 0; i < vm->nr_vdevs; i++) {
		const struct virtio_dev_ops *ops = vm->vdevs[i].mmio.dev.ops;

		if (!ops->save)
			return kiln_errorf(&vm->log, -ENOTSUP,
					   "snapshot: the VM has a %s device, "
					   "which kiln cannot snapshot (%s)",
					   ops->name,
					   ops->device_id == VIRTIO_ID_FS
						   ? "an active share's open "
						     "files live in the host"
						   : "its host-side state "
						     "is not saved yet");
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return kiln_errorf(&vm->log, -errno, "snapshot: %s: %s", dir,
				   strerror(errno));
	was_paused = kiln_vm_paused(vm);
	err = was_paused ? 0 : kiln_vm_pause(vm);
	if (err < 0)
		return kiln_errorf(&vm->log, err, "snapshot: cannot pause: %s",
				   strerror(-err));
	/* requests a device runs on its own threads end in their rings */
	for (unsigned i = 0; i < vm->nr_vdevs; i++) {
		struct virtio_dev *d = &vm->vdevs[i].mmio.dev;

		if (d->ops->quiesce) {
			pthread_mutex_lock(&vm->vdevs[i].mmio.lock);
			d->ops->quiesce(d);
			pthread_mutex_unlock(&vm->vdevs[i].mmio.lock);
		}
	}
	snapshot_writer_init(&w);
	err = build_state(vm, &w);
	snprintf(tmp, sizeof(tmp), "%s/memory.tmp", dir);
	snprintf(path, sizeof(path), "%s/memory", dir);
	if (err == 0) {
		char old_state[PATH_MAX];

		err = write_memory(vm, tmp);
		/* a state file left by an earlier snapshot in dir must not
		 * outlive its memory: gone before the new memory is in */
		snprintf(old_state, sizeof(old_state), "%s/state", dir);
		if (err == 0 && unlink(old_state) < 0 && errno != ENOENT)
			err = -errno;
		if (err == 0 && rename(tmp, path) < 0)
			err = -errno;
		if (err < 0) {
			unlink(tmp);
			kiln_errorf(&vm->log, err, "snapshot: writing %s: %s",
				    path, strerror(-err));
		}
	}
	if (!was_paused)
		kiln_vm_resume(vm);
	if (err == 0) {
		snprintf(tmp, sizeof(tmp), "%s/state.tmp", dir);
		snprintf(path, sizeof(path), "%s/state", dir);
		err = write_file(tmp, w.buf, w.len);
		if (err == 0 && rename(tmp, path) < 0)
			err = -errno;
		if (err < 0) {
			unlink(tmp);
			kiln_errorf(&vm->log, err, "snapshot: writing %s: %s",
				    path, strerror(-err));
		}
	}
	if (err == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd); /* the renames */
			close(dfd);
		}
	}
	snapshot_writer_free(&w);
	return err;
}

/* ---- restoring ---- */

/* The records of a state file, by tag. */
struct records {
	struct snapshot_reader host, config, vm, serial;
	struct snapshot_reader vcpu[KILN_MAX_CPUS];
	struct snapshot_reader dev[VM_VIRTIO_MAX_DEVICES];
	bool have_host, have_config, have_vm, have_serial;
	unsigned nvcpu, ndev;
};

static int read_state(const char *path, uint8_t **buf, size_t *len,
		      const struct kiln_log *log)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	int err;

	*buf = NULL;
	if (fd < 0)
		return kiln_errorf(log, -errno, "restore: %s: %s", path,
				   strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > SNAPSHOT_MAX_STATE) {
		close(fd);
		return kiln_errorf(log, -EINVAL,
				   "restore: %s is not a state file", path);
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	err = *buf ? block_pread_full(fd, *buf, *len, 0) : -ENOMEM;
	close(fd);
	if (err < 0) {
		free(*buf);
		*buf = NULL;
		return kiln_errorf(log, err, "restore: reading %s: %s", path,
				   strerror(-err));
	}
	return 0;
}

static int sort_records(struct snapshot_reader *body, struct records *rec,
			const struct kiln_log *log)
{
	uint32_t tag, flags;
	struct snapshot_reader p;
	int r;

	memset(rec, 0, sizeof(*rec));
	while ((r = sr_record(body, &tag, &flags, &p)) == 1) {
		switch (tag) {
		case SNAP_HOST:
			rec->host = p;
			rec->have_host = true;
			break;
		case SNAP_CONFIG:
			rec->config = p;
			rec->have_config = true;
			break;
		case SNAP_VM:
			rec->vm = p;
			rec->have_vm = true;
			break;
		case SNAP_SERIAL:
			rec->serial = p;
			rec->have_serial = true;
			break;
		case SNAP_VCPU:
			if (rec->nvcpu == KILN_MAX_CPUS ||
			    sr_u32(&p) != rec->nvcpu)
				return kiln_errorf(log, -EINVAL,
						   "restore: vCPU records out "
						   "of order");
			rec->vcpu[rec->nvcpu++] = p;
			break;
		case SNAP_DEVICE:
			if (rec->ndev == VM_VIRTIO_MAX_DEVICES ||
			    sr_u32(&p) != rec->ndev)
				return kiln_errorf(log, -EINVAL,
						   "restore: device records "
						   "out of order");
			rec->dev[rec->ndev++] = p;
			break;
		default:
			if (flags & SNAPSHOT_MANDATORY)
				return kiln_errorf(
					log, -EPROTONOSUPPORT,
					"restore: the snapshot has a record "
					"(tag %u) this kiln does not know and "
					"must not ignore",
					tag);
			break; /* optional: skipped */
		}
	}
	if (r < 0 || !rec->have_host || !rec->have_config || !rec->have_vm ||
	    !rec->have_serial || rec->nvcpu == 0)
		return kiln_errorf(log, -EINVAL,
				   "restore: the state file is incomplete");
	return 0;
}

/* The snapshot's host against this one. */
static int check_host(struct kiln_vm *vm, struct snapshot_reader *r)
{
	struct arch_fingerprint here, there;
	char version[32];
	uint32_t khz;
	int cur;

	sr_str(r, version, sizeof(version));
	memset(&there, 0, sizeof(there));
	sr_str(r, there.vendor, sizeof(there.vendor));
	there.family = sr_u32(r);
	there.model = sr_u32(r);
	there.cpuid_hash = sr_u64(r);
	khz = sr_u32(r);
	sr_str(r, there.kernel, sizeof(there.kernel));
	if (r->bad)
		return kiln_errorf(&vm->log, -EINVAL,
				   "restore: the host record is malformed");
	arch_host_fingerprint(&vm->kvm, &here);
	cur = ioctl(vm->vcpus[0].kvm.fd, KVM_GET_TSC_KHZ, 0);
	if (strcmp(here.vendor, there.vendor) || here.family != there.family ||
	    here.model != there.model || here.cpuid_hash != there.cpuid_hash ||
	    strcmp(here.kernel, there.kernel) ||
	    (khz && cur > 0 && (uint32_t)cur != khz))
		return kiln_errorf(
			&vm->log, -EXDEV,
			"restore: the snapshot was made on another host (%s "
			"family %u model %u, kernel %s, TSC %u kHz; here: %s "
			"family %u model %u, kernel %s, TSC %d kHz%s): a "
			"snapshot only restores where it was made",
			there.vendor, there.family, there.model, there.kernel,
			khz, here.vendor, here.family, here.model, here.kernel,
			cur,
			here.cpuid_hash != there.cpuid_hash
				? ", and KVM offers other CPUID leaves"
				: "");
	return 0;
}

/* A config for the snapshot's VM: the caller's (log, console, KVM device)
 * with the snapshot's CPUs, memory and devices, their files unchanged. */
static int config_from(const struct kiln_config *cfg, struct snapshot_reader *r,
		       struct kiln_config **out, char **cmdline,
		       uint64_t *mem_bytes)
{
	struct kiln_config *c = config_clone(cfg);
	char buf[VIRTIO_DEV_MAX_SPEC], key[64];
	const struct virtio_dev_opts *own_vsock;
	const char *own_uds = NULL;
	uint32_t ndev;
	int err = 0, at = -1;

	/* a vsock socket of the caller's replaces the snapshot's (which
	 * belongs to the VM the snapshot was taken of) */
	own_vsock = config_next_device(cfg, &virtio_vsock_ops, &at);
	if (own_vsock)
		own_uds = virtio_dev_opts_get(own_vsock, "uds");

	*out = NULL;
	*cmdline = NULL;
	if (!c)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nr_devices; i++)
		virtio_dev_opts_free(&c->devices[i]);
	c->nr_devices = 0;
	c->cpus = sr_u32(r);
	*mem_bytes = sr_u64(r);
	c->memory_mib = *mem_bytes >> 20;
	c->console = (enum kiln_console)sr_u32(r);
	sr_str(r, buf, sizeof(buf));
	*cmdline = strdup(buf);
	ndev = sr_u32(r);
	if (!*cmdline)
		err = -ENOMEM;
	if (r->bad || c->cpus == 0 || c->cpus > KILN_MAX_CPUS ||
	    ndev > KILN_MAX_DEVICES || *mem_bytes == 0 || *mem_bytes % PAGE)
		err = kiln_errorf(&cfg->log, -EINVAL,
				  "restore: the config record is malformed");
	for (uint32_t i = 0; err == 0 && i < ndev; i++) {
		struct virtio_dev_opts o;
		const struct virtio_dev_ops *type;
		uint32_t nopt;

		sr_str(r, key, sizeof(key));
		type = virtio_dev_type_find(key);
		nopt = sr_u32(r);
		if (r->bad || !type || nopt > VIRTIO_DEV_MAX_OPTS) {
			err = kiln_errorf(&cfg->log, -EINVAL,
					  "restore: a device in the config "
					  "record is malformed");
			break;
		}
		virtio_dev_opts_init(&o, type);
		for (uint32_t k = 0; err == 0 && k < nopt; k++) {
			bool has_val;

			sr_str(r, key, sizeof(key));
			has_val = sr_u8(r);
			sr_str(r, buf, sizeof(buf));
			if (r->bad)
				err = -EINVAL;
			else if (type == &virtio_vsock_ops && own_uds &&
				 !strcmp(key, "uds"))
				err = virtio_dev_opts_add(&o, key, own_uds);
			else
				err = virtio_dev_opts_add(&o, key,
							  has_val ? buf : NULL);
		}
		if (sr_u8(r) && err == 0) {
			uint64_t dev = sr_u64(r), ino = sr_u64(r),
				 size = sr_u64(r), mtime = sr_u64(r);
			const char *path = virtio_dev_opts_get(&o, "path");
			struct stat st;

			if (!path || stat(path, &st) < 0 ||
			    (uint64_t)st.st_dev != dev ||
			    (uint64_t)st.st_ino != ino ||
			    (uint64_t)st.st_size != size ||
			    (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
					    (uint64_t)st.st_mtim.tv_nsec !=
				    mtime)
				err = kiln_errorf(&cfg->log, -ESTALE,
						  "restore: disk %s is not the "
						  "file the snapshot was made "
						  "with (moved, replaced or "
						  "changed since)",
						  path ? path : "?");
		}
		if (err == 0 && r->bad)
			err = -EINVAL;
		if (err == 0)
			err = virtio_dev_opts_check(&o, &cfg->log);
		if (err == 0)
			err = config_add_device(c, &o); /* takes o */
		else
			virtio_dev_opts_free(&o);
	}
	if (err < 0) {
		kiln_config_free(c);
		free(*cmdline);
		*cmdline = NULL;
		return err;
	}
	*out = c;
	return 0;
}

static int map_memory(struct kiln_vm *vm, const char *path, uint64_t size,
		      bool copy)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	int err;

	if (fd < 0)
		return kiln_errorf(&vm->log, -errno, "restore: %s: %s", path,
				   strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != size) {
		close(fd);
		return kiln_errorf(&vm->log, -EINVAL,
				   "restore: %s is not the snapshot's memory "
				   "(%llu bytes, the state says %llu): "
				   "truncated or replaced",
				   path, (unsigned long long)st.st_size,
				   (unsigned long long)size);
	}
	err = guest_mem_map_file(&vm->mem, fd, size, copy);
	close(fd);
	if (err < 0)
		return kiln_errorf(&vm->log, err, "restore: mapping %s: %s",
				   path, strerror(-err));
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct guest_mem_region *g = &vm->mem.regions[i];

		err = kvm_vm_set_memory(vm->vm_fd, i, g->gpa, g->size, g->host,
					&vm->log);
		if (err < 0)
			return err;
	}
	return 0;
}

static int restore_vm(struct kiln_vm *vm, const struct kiln_config *cfg,
		      const char *dir, unsigned flags, struct records *rec,
		      uint64_t mem_bytes)
{
	char path[PATH_MAX], *part = NULL;
	int err;

	if (rec->nvcpu != cfg->cpus)
		return kiln_errorf(&vm->log, -EINVAL,
				   "restore: %u vCPU records for %u vCPUs",
				   rec->nvcpu, cfg->cpus);
	err = vm_kvm_open(vm, cfg);
	if (err < 0)
		return err;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		err = kvm_vcpu_create(&vm->kvm, vm->vm_fd, i, &vm->vcpus[i].kvm,
				      &vm->log);
		if (err < 0)
			return err;
	}
	err = check_host(vm, &rec->host);
	if (err < 0)
		return err;
	snprintf(path, sizeof(path), "%s/memory", dir);
	err = map_memory(vm, path, mem_bytes, flags & KILN_RESTORE_EAGER);
	if (err < 0)
		return err;
	err = vm_setup_virtio(vm, cfg, &part);
	free(part);
	if (err < 0)
		return err;
	if (rec->ndev != vm->nr_vdevs)
		return kiln_errorf(&vm->log, -EINVAL,
				   "restore: %u device records for %u devices",
				   rec->ndev, vm->nr_vdevs);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		err = arch_vcpu_restore(vm->vcpus[i].kvm.fd, &rec->vcpu[i],
					&vm->log);
		if (err < 0)
			return err;
	}
	err = arch_vm_restore(vm->vm_fd, &rec->vm, &vm->log);
	if (err < 0)
		return err;
	if (serial8250_restore(&vm->serial, &rec->serial) < 0)
		return kiln_errorf(&vm->log, -EINVAL,
				   "restore: the UART state is malformed");
	for (unsigned i = 0; i < vm->nr_vdevs; i++) {
		err = virtio_mmio_restore(&vm->vdevs[i].mmio, &rec->dev[i]);
		if (err < 0)
			return err;
	}
	return 0;
}

KILN_API int kiln_vm_restore(const struct kiln_config *cfg, const char *dir,
			     unsigned flags, struct kiln_vm **out)
{
	struct kiln_config *c = NULL;
	struct snapshot_reader body;
	struct records *rec = NULL;
	struct kiln_vm *vm = NULL;
	char path[PATH_MAX], *cmdline = NULL;
	const char *why = NULL;
	uint64_t mem_bytes = 0;
	uint8_t *buf = NULL;
	size_t len = 0;
	int err;

	*out = NULL;
	if (flags & ~KILN_RESTORE_EAGER)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "restore: unknown flags 0x%x", flags);
	if (cfg->accel == KILN_ACCEL_TCG)
		return kiln_errorf(&cfg->log, -ENOTSUP,
				   "restore: snapshots run on kiln's KVM "
				   "engine, not the emulating one");
	if (strlen(dir) > PATH_MAX - 16)
		return -ENAMETOOLONG;
	snprintf(path, sizeof(path), "%s/state", dir);
	err = read_state(path, &buf, &len, &cfg->log);
	if (err < 0)
		return err;
	err = snapshot_open(buf, len, &body, &why);
	if (err < 0) {
		kiln_errorf(&cfg->log, err, "restore: %s: %s", path, why);
		goto out;
	}
	rec = calloc(1, sizeof(*rec));
	err = rec ? sort_records(&body, rec, &cfg->log) : -ENOMEM;
	if (err == 0)
		err = config_from(cfg, &rec->config, &c, &cmdline, &mem_bytes);
	if (err == 0)
		err = vm_new(c, &vm);
	if (err == 0) {
		vm->accel = KILN_ACCEL_KVM;
		vm->cmdline = cmdline;
		cmdline = NULL;
		err = restore_vm(vm, c, dir, flags, rec, mem_bytes);
	}
	if (err < 0) {
		kiln_vm_destroy(vm);
		goto out;
	}
	*out = vm;
out:
	free(cmdline);
	kiln_config_free(c);
	free(rec);
	free(buf);
	return err;
}
