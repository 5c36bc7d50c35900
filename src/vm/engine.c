/* SPDX-License-Identifier: MIT */
#include "vm/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm/kvm.h"

#define QEMU_BINARY  "qemu-system-x86_64"
#define QEMU_PACKAGE "qemu-system-x86"

static const char *kvm_problem(const struct engine_host *h)
{
	switch (h->kvm_err) {
	case 0: return h->kvm_pvm ? "/dev/kvm is PVM (no VMX/SVM)" : NULL;
	case -ENOENT:
	case -ENODEV:
	case -ENXIO: return "no /dev/kvm";
	case -EACCES:
	case -EPERM: return "no permission to open /dev/kvm";
	default: return "/dev/kvm cannot be opened";
	}
}

int engine_select(enum kiln_accel want, const struct engine_host *h, char *note,
		  size_t note_size, char *why, size_t why_size)
{
	const char *problem = kvm_problem(h);

	if (note_size)
		note[0] = 0;
	if (why_size)
		why[0] = 0;
	switch (want) {
	case KILN_ACCEL_KVM: return KILN_ACCEL_KVM;
	case KILN_ACCEL_TCG:
		if (h->qemu)
			return KILN_ACCEL_TCG;
		snprintf(why, why_size,
			 "the emulating engine (--accel tcg) needs QEMU: "
			 "install %s or point KILN_QEMU at %s",
			 QEMU_PACKAGE, QEMU_BINARY);
		return -ENOENT;
	case KILN_ACCEL_AUTO: break;
	}
	if (!problem)
		return KILN_ACCEL_KVM;
	if (h->qemu) {
		snprintf(note, note_size,
			 "%s: running the guest on the emulating engine "
			 "(QEMU TCG), much slower than KVM; isolation rests on "
			 "QEMU's emulator, not on hardware (--accel kvm "
			 "refuses this)",
			 problem);
		return KILN_ACCEL_TCG;
	}
	/* Nothing to fall back to: KVM's own error (or PVM's warning) says
	 * more; name the package that would help. */
	snprintf(note, note_size,
		 "%s and QEMU is not installed: install %s for the emulating "
		 "engine",
		 problem, QEMU_PACKAGE);
	return KILN_ACCEL_KVM;
}

int engine_find_qemu(char *buf, size_t size)
{
	const char *env = getenv("KILN_QEMU");
	const char *path = getenv("PATH");

	if (env && *env) {
		if (access(env, X_OK) < 0 ||
		    (size_t)snprintf(buf, size, "%s", env) >= size)
			return -ENOENT;
		return 0;
	}
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		int len = snprintf(buf, size, "%.*s/%s", (int)n, path,
				   QEMU_BINARY);

		if (n && len > 0 && (size_t)len < size &&
		    access(buf, X_OK) == 0)
			return 0;
		path += n;
		if (*path == ':')
			path++;
	}
	if (size)
		buf[0] = 0;
	return -ENOENT;
}

void engine_probe_host(const char *kvm_path, struct engine_host *h,
		       char *qemu_buf, size_t qemu_size)
{
	int fd = open(kvm_path, O_RDWR | O_CLOEXEC);

	h->kvm_err = fd < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	h->kvm_pvm = kvm_host_is_pvm();
	h->qemu = engine_find_qemu(qemu_buf, qemu_size) == 0 ? qemu_buf : NULL;
}
