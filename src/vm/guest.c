/* SPDX-License-Identifier: MIT */
/*
 * The guest's RAM and the files that boot it (KVM engine; the emulating
 * engine only checks the files): RAM mapped into KVM's memory slots, and
 * the kernel and initrd mapped read-only and handed to the architecture's
 * loader (arch/arch.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/arch.h"
#include "vm/vm_internal.h"

struct mapped_file {
	uint8_t *data;
	size_t size;
};

static int map_file(const char *path, const char *what, struct mapped_file *f,
		    const struct kiln_log *log)
{
	struct stat st;
	/* O_NONBLOCK: a FIFO must be refused below, not block open() */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	void *p;

	f->data = NULL;
	f->size = 0;
	if (fd < 0) {
		int err = -errno;

		if (err == -ENOENT)
			return kiln_errorf(log, err,
					   "%s file %s does not exist", what,
					   path);
		return kiln_errorf(log, err, "cannot open %s file %s: %s", what,
				   path, strerror(-err));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return kiln_errorf(log, -EINVAL, "%s %s is not a regular file",
				   what, path);
	}
	if (st.st_size == 0) {
		close(fd);
		return kiln_errorf(log, -EINVAL, "%s file %s is empty", what,
				   path);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return kiln_errorf(log, -errno, "cannot map %s file %s: %s",
				   what, path, strerror(errno));
	f->data = p;
	f->size = (size_t)st.st_size;
	return 0;
}

static void unmap_file(struct mapped_file *f)
{
	if (f->data)
		munmap(f->data, f->size);
	f->data = NULL;
}

int vm_setup_memory(struct kiln_vm *vm, uint64_t bytes)
{
	int r = guest_mem_map(&vm->mem, bytes);

	if (r < 0)
		return kiln_errorf(
			&vm->log, r,
			"cannot reserve %llu MiB of guest memory: %s",
			(unsigned long long)(bytes >> 20), strerror(-r));
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct guest_mem_region *g = &vm->mem.regions[i];

		r = kvm_vm_set_memory(vm->vm_fd, i, g->gpa, g->size, g->host,
				      &vm->log);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Maps the kernel and initrd files and loads them into RAM (boot set) or
 * only checks that they would fit (boot NULL, no RAM needed). */
static int use_guest_files(struct kiln_vm *vm, const struct kiln_config *cfg,
			   struct arch_boot *boot)
{
	struct mapped_file kernel, initrd = {0};
	int r;

	if (!cfg->kernel_path)
		return kiln_errorf(&vm->log, -EINVAL, "no kernel given");
	r = map_file(cfg->kernel_path, "kernel", &kernel, &vm->log);
	if (r == 0 && cfg->initrd_path)
		r = map_file(cfg->initrd_path, "initrd", &initrd, &vm->log);
	if (r == 0 && boot)
		r = arch_load_guest(&vm->mem, kernel.data, kernel.size,
				    initrd.data, initrd.size, vm->cmdline,
				    vm->ncpus, boot, &vm->log);
	else if (r == 0)
		r = arch_check_guest(kernel.data, kernel.size, initrd.size,
				     cfg->memory_mib << 20, &vm->log);
	if (r == -ENOEXEC)
		log_error(&vm->log, "%s: not a usable kernel image",
			  cfg->kernel_path);
	unmap_file(&initrd);
	unmap_file(&kernel);
	return r;
}

int vm_load_guest(struct kiln_vm *vm, const struct kiln_config *cfg,
		  struct arch_boot *boot)
{
	return use_guest_files(vm, cfg, boot);
}

int vm_check_guest_files(struct kiln_vm *vm, const struct kiln_config *cfg)
{
	return use_guest_files(vm, cfg, NULL);
}
