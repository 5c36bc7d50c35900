/* SPDX-License-Identifier: MIT */
/*
 * x86 VM and vCPU state for snapshots (arch/arch.h): what KVM holds that
 * guest RAM does not, out through the KVM_GET_* ioctls and back through
 * KVM_SET_* in the order the KVM API needs. Each blob is written with its
 * size, so a kernel whose struct differs is refused, not misread.
 */
#include <cpuid.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>

#include "arch/arch.h"
#include "util/snapshot_io.h"

#define MSR_IA32_TSC	      0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MAX_MSRS	      1024

/* A struct as u32 size + bytes. */
static void put_blob(struct snapshot_writer *w, const void *p, size_t n)
{
	sw_u32(w, (uint32_t)n);
	sw_bytes(w, p, n);
}

/* Reads a blob of exactly n bytes into p: 1, 0 if it was saved empty (not
 * available on the snapshot's host), or -1 (wrong size: `bad`). */
static int get_blob(struct snapshot_reader *r, void *p, size_t n)
{
	uint32_t got = sr_u32(r);

	if (got == 0 && !r->bad)
		return 0;
	if (got != n) {
		r->bad = true;
		return -1;
	}
	sr_bytes(r, p, n);
	return r->bad ? -1 : 1;
}

/* ---- the host fingerprint ---- */

static uint64_t fnv64(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

void arch_host_fingerprint(const struct kvm_system *sys,
			   struct arch_fingerprint *fp)
{
	unsigned a = 0, b = 0, c = 0, d = 0;
	struct utsname u;

	memset(fp, 0, sizeof(*fp));
	__get_cpuid(0, &a, &b, &c, &d);
	memcpy(fp->vendor, &b, 4);
	memcpy(fp->vendor + 4, &d, 4);
	memcpy(fp->vendor + 8, &c, 4);
	__get_cpuid(1, &a, &b, &c, &d);
	fp->family = ((a >> 8) & 0xf) +
		     (((a >> 8) & 0xf) == 0xf ? ((a >> 20) & 0xff) : 0);
	fp->model = ((a >> 4) & 0xf) | (((a >> 16) & 0xf) << 4);
	fp->cpuid_hash = 0xcbf29ce484222325ull;
	for (unsigned nent = 64; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *cp =
			calloc(1, sizeof(*cp) + nent * sizeof(cp->entries[0]));

		if (!cp)
			break;
		cp->nent = nent;
		if (ioctl(sys->fd, KVM_GET_SUPPORTED_CPUID, cp) == 0) {
			/* without the fields that name the host CPU this
			 * thread happens to run on (APIC ids, core and node
			 * ids): they differ from call to call */
			for (unsigned i = 0; i < cp->nent; i++) {
				struct kvm_cpuid_entry2 *e = &cp->entries[i];

				if (e->function == 1)
					e->ebx &= 0x00ffffffu;
				else if (e->function == 0xb ||
					 e->function == 0x1f)
					e->edx = 0;
				else if (e->function == 0x8000001e)
					e->eax = e->ebx = e->ecx = 0;
			}
			fp->cpuid_hash =
				fnv64(fp->cpuid_hash, cp->entries,
				      cp->nent * sizeof(cp->entries[0]));
			free(cp);
			break;
		}
		free(cp);
		if (errno != E2BIG)
			break;
	}
	if (uname(&u) == 0)
		snprintf(fp->kernel, sizeof(fp->kernel), "%s", u.release);
}

/* ---- the VM: PIT, interrupt controllers, clock ---- */

int arch_vm_save(int vm_fd, struct snapshot_writer *w,
		 const struct kiln_log *log)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;

	memset(&pit, 0, sizeof(pit));
	if (ioctl(vm_fd, KVM_GET_PIT2, &pit) < 0)
		return kiln_errorf(log, -errno, "snapshot: KVM_GET_PIT2: %s",
				   strerror(errno));
	put_blob(w, &pit, sizeof(pit));
	for (uint32_t id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_IOAPIC;
	     id++) {
		struct kvm_irqchip chip;

		memset(&chip, 0, sizeof(chip));
		chip.chip_id = id;
		if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return kiln_errorf(log, -errno,
					   "snapshot: KVM_GET_IRQCHIP %u: %s",
					   id, strerror(errno));
		put_blob(w, &chip, sizeof(chip));
	}
	memset(&clock, 0, sizeof(clock));
	if (ioctl(vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return kiln_errorf(log, -errno, "snapshot: KVM_GET_CLOCK: %s",
				   strerror(errno));
	put_blob(w, &clock, sizeof(clock));
	return 0;
}

int arch_vm_restore(int vm_fd, struct snapshot_reader *r,
		    const struct kiln_log *log)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;

	if (get_blob(r, &pit, sizeof(pit)) != 1)
		return kiln_errorf(log, -EINVAL,
				   "restore: the PIT state is malformed");
	if (ioctl(vm_fd, KVM_SET_PIT2, &pit) < 0)
		return kiln_errorf(log, -errno, "restore: KVM_SET_PIT2: %s",
				   strerror(errno));
	for (uint32_t id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_IOAPIC;
	     id++) {
		struct kvm_irqchip chip;

		if (get_blob(r, &chip, sizeof(chip)) != 1 || chip.chip_id != id)
			return kiln_errorf(log, -EINVAL,
					   "restore: the interrupt controller "
					   "state is malformed");
		if (ioctl(vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return kiln_errorf(log, -errno,
					   "restore: KVM_SET_IRQCHIP %u: %s",
					   id, strerror(errno));
	}
	if (get_blob(r, &clock, sizeof(clock)) != 1)
		return kiln_errorf(log, -EINVAL,
				   "restore: the clock state is malformed");
	/* the guest's clock goes on from where it was */
	clock.flags = 0;
	if (ioctl(vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return kiln_errorf(log, -errno, "restore: KVM_SET_CLOCK: %s",
				   strerror(errno));
	return 0;
}

/* ---- a vCPU ---- */

static struct kvm_cpuid2 *vcpu_cpuid(int vcpu_fd)
{
	for (unsigned nent = 64; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c =
			calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c)
			return NULL;
		c->nent = nent;
		if (ioctl(vcpu_fd, KVM_GET_CPUID2, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG)
			return NULL;
	}
	return NULL;
}

/* The MSRs KVM lists (KVM_GET_MSR_INDEX_LIST) with TSC_DEADLINE moved
 * after TSC, so a restored deadline is relative to the restored TSC. */
static int msr_list(const struct kvm_system *sys, uint32_t *idx, unsigned *n)
{
	struct kvm_msr_list *l =
		calloc(1, sizeof(*l) + MAX_MSRS * sizeof(uint32_t));
	unsigned k = 0;
	bool deadline = false;

	if (!l)
		return -ENOMEM;
	l->nmsrs = MAX_MSRS;
	if (ioctl(sys->fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int err = -errno;

		free(l);
		return err;
	}
	for (unsigned i = 0; i < l->nmsrs && i < MAX_MSRS; i++) {
		if (l->indices[i] == MSR_IA32_TSC_DEADLINE)
			deadline = true;
		else
			idx[k++] = l->indices[i];
	}
	if (deadline)
		idx[k++] = MSR_IA32_TSC_DEADLINE;
	*n = k;
	free(l);
	return 0;
}

int arch_vcpu_save(const struct kvm_system *sys, int vcpu_fd,
		   struct snapshot_writer *w, const struct kiln_log *log)
{
	struct kvm_cpuid2 *cpuid = vcpu_cpuid(vcpu_fd);
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_msrs *msrs = NULL, *batch = NULL;
	uint32_t *idx = NULL;
	unsigned nidx = 0, nsaved = 0;
	int err = 0;

	if (!cpuid)
		return kiln_errorf(log, -EIO, "snapshot: KVM_GET_CPUID2: %s",
				   strerror(errno));
	sw_u32(w, cpuid->nent);
	sw_bytes(w, cpuid->entries, cpuid->nent * sizeof(cpuid->entries[0]));
	free(cpuid);
#define GET(req, var, what)                                                    \
	do {                                                                   \
		memset(&var, 0, sizeof(var));                                  \
		if (ioctl(vcpu_fd, req, &var) < 0)                             \
			return kiln_errorf(log, -errno, "snapshot: %s: %s",    \
					   what, strerror(errno));             \
		put_blob(w, &var, sizeof(var));                                \
	} while (0)
	GET(KVM_GET_MP_STATE, mp, "KVM_GET_MP_STATE");
	GET(KVM_GET_REGS, regs, "KVM_GET_REGS");
	GET(KVM_GET_SREGS, sregs, "KVM_GET_SREGS");
	if (kvm_check_extension(sys->fd, KVM_CAP_XSAVE)) {
		struct kvm_xsave *xs = calloc(1, sizeof(*xs));

		if (!xs || ioctl(vcpu_fd, KVM_GET_XSAVE, xs) < 0) {
			err = xs ? -errno : -ENOMEM;
			free(xs);
			return kiln_errorf(log, err,
					   "snapshot: KVM_GET_XSAVE: %s",
					   strerror(-err));
		}
		put_blob(w, xs, sizeof(*xs));
		free(xs);
	} else {
		sw_u32(w, 0);
	}
	if (kvm_check_extension(sys->fd, KVM_CAP_XCRS)) {
		struct kvm_xcrs xcrs;

		GET(KVM_GET_XCRS, xcrs, "KVM_GET_XCRS");
	} else {
		sw_u32(w, 0);
	}
	if (kvm_check_extension(sys->fd, KVM_CAP_DEBUGREGS)) {
		struct kvm_debugregs dr;

		GET(KVM_GET_DEBUGREGS, dr, "KVM_GET_DEBUGREGS");
	} else {
		sw_u32(w, 0);
	}
	GET(KVM_GET_LAPIC, lapic, "KVM_GET_LAPIC");
	/* MSRs: every one KVM lists that reads back (a batch stops at the
	 * first it cannot read: that one is skipped) */
	idx = calloc(MAX_MSRS, sizeof(*idx));
	msrs = calloc(1, sizeof(*msrs) + MAX_MSRS * sizeof(msrs->entries[0]));
	batch = calloc(1,
		       sizeof(*batch) + MAX_MSRS * sizeof(batch->entries[0]));
	if (!idx || !msrs || !batch) {
		err = -ENOMEM;
		goto out;
	}
	err = msr_list(sys, idx, &nidx);
	if (err < 0) {
		kiln_errorf(log, err, "snapshot: KVM_GET_MSR_INDEX_LIST: %s",
			    strerror(-err));
		goto out;
	}
	for (unsigned from = 0; from < nidx;) {
		unsigned k = nidx - from;
		int got;

		batch->nmsrs = k;
		for (unsigned i = 0; i < k; i++)
			batch->entries[i] =
				(struct kvm_msr_entry){.index = idx[from + i]};
		got = ioctl(vcpu_fd, KVM_GET_MSRS, batch);
		if (got < 0) {
			err = kiln_errorf(log, -errno,
					  "snapshot: KVM_GET_MSRS: %s",
					  strerror(errno));
			goto out;
		}
		memcpy(&msrs->entries[nsaved], batch->entries,
		       (size_t)got * sizeof(batch->entries[0]));
		nsaved += (unsigned)got;
		from += (unsigned)got + 1; /* past the one it could not read */
	}
	sw_u32(w, nsaved);
	for (unsigned i = 0; i < nsaved; i++) {
		sw_u32(w, msrs->entries[i].index);
		sw_u64(w, msrs->entries[i].data);
	}
	if (kvm_check_extension(sys->fd, KVM_CAP_VCPU_EVENTS)) {
		struct kvm_vcpu_events ev;

		memset(&ev, 0, sizeof(ev));
		if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &ev) < 0) {
			err = kiln_errorf(log, -errno,
					  "snapshot: KVM_GET_VCPU_EVENTS: %s",
					  strerror(errno));
			goto out;
		}
		put_blob(w, &ev, sizeof(ev));
	} else {
		sw_u32(w, 0);
	}
#undef GET
out:
	free(idx);
	free(msrs);
	free(batch);
	return err;
}

int arch_vcpu_restore(int vcpu_fd, struct snapshot_reader *r,
		      const struct kiln_log *log)
{
	uint32_t nent = sr_u32(r), nmsrs;
	struct kvm_cpuid2 *cpuid;
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave *xs = NULL;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dr;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_msrs *msrs = NULL, *batch = NULL;
	int err = 0, have_xs = 0, have_xcrs = 0, have_dr = 0, have_ev;

	if (r->bad || nent == 0 || nent > 4096)
		return kiln_errorf(log, -EINVAL,
				   "restore: the CPUID table is malformed");
	cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
	xs = calloc(1, sizeof(*xs));
	if (!cpuid || !xs) {
		err = -ENOMEM;
		goto out;
	}
	cpuid->nent = nent;
	sr_bytes(r, cpuid->entries, nent * sizeof(cpuid->entries[0]));
	if (get_blob(r, &mp, sizeof(mp)) != 1 ||
	    get_blob(r, &regs, sizeof(regs)) != 1 ||
	    get_blob(r, &sregs, sizeof(sregs)) != 1 ||
	    (have_xs = get_blob(r, xs, sizeof(*xs))) < 0 ||
	    (have_xcrs = get_blob(r, &xcrs, sizeof(xcrs))) < 0 ||
	    (have_dr = get_blob(r, &dr, sizeof(dr))) < 0 ||
	    get_blob(r, &lapic, sizeof(lapic)) != 1) {
		err = kiln_errorf(log, -EINVAL,
				  "restore: a vCPU's state is malformed");
		goto out;
	}
	nmsrs = sr_u32(r);
	if (r->bad || nmsrs > MAX_MSRS) {
		err = kiln_errorf(log, -EINVAL,
				  "restore: a vCPU's MSR list is malformed");
		goto out;
	}
	msrs = calloc(1,
		      sizeof(*msrs) + (nmsrs + 1) * sizeof(msrs->entries[0]));
	batch = calloc(1, sizeof(*batch) +
				  (nmsrs + 1) * sizeof(batch->entries[0]));
	if (!msrs || !batch) {
		err = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < nmsrs; i++) {
		msrs->entries[i].index = sr_u32(r);
		msrs->entries[i].data = sr_u64(r);
	}
	have_ev = get_blob(r, &ev, sizeof(ev));
	if (r->bad || have_ev < 0) {
		err = kiln_errorf(log, -EINVAL,
				  "restore: a vCPU's state is malformed");
		goto out;
	}
#define SET(req, arg, what)                                                    \
	do {                                                                   \
		if (ioctl(vcpu_fd, req, arg) < 0) {                            \
			err = kiln_errorf(log, -errno, "restore: %s: %s",      \
					  what, strerror(errno));              \
			goto out;                                              \
		}                                                              \
	} while (0)
	SET(KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2");
	SET(KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE");
	SET(KVM_SET_REGS, &regs, "KVM_SET_REGS");
	SET(KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	if (have_xs == 1)
		SET(KVM_SET_XSAVE, xs, "KVM_SET_XSAVE");
	if (have_xcrs == 1)
		SET(KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
	if (have_dr == 1)
		SET(KVM_SET_DEBUGREGS, &dr, "KVM_SET_DEBUGREGS");
	SET(KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
	/* in order (TSC before its deadline); one KVM refuses is skipped,
	 * as it was never readable state the guest could rely on */
	for (uint32_t from = 0; from < nmsrs;) {
		int set;

		batch->nmsrs = nmsrs - from;
		memcpy(batch->entries, &msrs->entries[from],
		       batch->nmsrs * sizeof(batch->entries[0]));
		set = ioctl(vcpu_fd, KVM_SET_MSRS, batch);
		if (set < 0) {
			err = kiln_errorf(log, -errno,
					  "restore: KVM_SET_MSRS: %s",
					  strerror(errno));
			goto out;
		}
		if ((uint32_t)set < nmsrs - from)
			log_debug(log, "restore: MSR 0x%x not restored",
				  msrs->entries[from + (uint32_t)set].index);
		from += (uint32_t)set + 1;
	}
	if (have_ev == 1)
		SET(KVM_SET_VCPU_EVENTS, &ev, "KVM_SET_VCPU_EVENTS");
#undef SET
out:
	free(cpuid);
	free(xs);
	free(msrs);
	free(batch);
	return err;
}
