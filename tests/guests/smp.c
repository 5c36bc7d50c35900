/* SPDX-License-Identifier: MIT */
/*
 * smp: start the application processor(s) with INIT/SIPI/SIPI and check
 * the MP table.  Run with two vCPUs.
 *
 * Output:
 *   SMP cpus=<processor entries in the MP table> ap=<yes|no>
 *   FAIL <what>        one per failed check
 *   RESULT PASS|FAIL   PASS iff cpus == 2, the AP ran and all checks passed
 */
#include "lib.h"

#define TRAMP_ADDR 0x3000u
#define SIPI_VECTOR (TRAMP_ADDR >> 12)

#define MP_SCAN_START 0x9fc00u
#define MP_SCAN_END 0xa0000u
#define MAX_CPUS 16

#define LAPIC_DEFAULT_BASE 0xfee00000u
#define LAPIC_ID 0x020
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT 0x00000500u
#define ICR_STARTUP 0x00000600u
#define ICR_LEVEL_ASSERT 0x00004000u
#define ICR_BUSY 0x00001000u

#define MSR_APIC_BASE 0x1b

extern const char smp_tramp_start[], smp_tramp_count[], smp_tramp_end[];

static bool all_ok = true;
static const char *fails[16];
static unsigned nfails;

static void fail(const char *what)
{
	all_ok = false;
	if (nfails < sizeof(fails) / sizeof(fails[0]))
		fails[nfails++] = what;
}

static uint8_t sum8(uint64_t addr, uint64_t len)
{
	uint8_t s = 0;
	for (uint64_t i = 0; i < len; i++)
		s = (uint8_t)(s + phys_rd8(addr + i));
	return s;
}

static uintptr_t lapic;

static uint32_t lapic_rd(uint32_t reg)
{
	return *(volatile uint32_t *)(lapic + reg);
}

static void lapic_wr(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(lapic + reg) = v;
}

static void send_ipi(uint8_t apic_id, uint32_t lo)
{
	lapic_wr(LAPIC_ICR_HI, (uint32_t)apic_id << 24);
	lapic_wr(LAPIC_ICR_LO, lo);
	for (unsigned i = 0; i < 1000 && (lapic_rd(LAPIC_ICR_LO) & ICR_BUSY); i++)
		cpu_relax();
}

struct mpinfo {
	bool found;
	unsigned cpus;          /* enabled processor entries */
	uint8_t ap_ids[MAX_CPUS];
	unsigned n_ap;
};

static uint64_t find_mpfp(void)
{
	for (uint64_t a = MP_SCAN_START; a + 16 <= MP_SCAN_END; a += 16) {
		if (phys_rd32(a) == 0x5f504d5fu) /* "_MP_" */
			return a;
	}
	return 0;
}

static void parse_mp(struct mpinfo *mp, uint8_t bsp_id)
{
	uint64_t fp = find_mpfp();

	if (!fp) {
		fail("MP floating pointer not found in 0x9fc00..0xa0000");
		return;
	}
	uint8_t fp_len = phys_rd8(fp + 8);
	if (fp_len != 1)
		fail("MP floating pointer length != 1");
	if (sum8(fp, 16) != 0)
		fail("MP floating pointer checksum");
	uint8_t rev = phys_rd8(fp + 9);
	if (rev != 1 && rev != 4)
		fail("MP floating pointer spec revision not 1.1/1.4");
	if (phys_rd8(fp + 11) != 0)
		fail("MP default configuration used (feature byte 1 != 0)");

	uint64_t ct = phys_rd32(fp + 4);
	if (ct == 0 || ct >= 0x100000) {
		fail("MP config table pointer not in low memory");
		return;
	}
	if (phys_rd32(ct) != 0x504d4350u) { /* "PCMP" */
		fail("MP config table signature != PCMP");
		return;
	}
	uint16_t len = phys_rd16(ct + 4);
	uint16_t count = phys_rd16(ct + 34);
	if (len < 44 || len > 4096) {
		fail("MP config table length out of range");
		return;
	}
	if (sum8(ct, len) != 0)
		fail("MP config table checksum");
	if (phys_rd32(ct + 36) != LAPIC_DEFAULT_BASE)
		fail("MP config table LAPIC address != 0xfee00000");

	mp->found = true;
	bool saw_ioapic = false, saw_isa = false, saw_bsp = false;
	uint32_t id_mask = 0;
	/* Walk the entries by table length (as Linux does), then compare counts. */
	uint64_t p = ct + 44, end = ct + len;
	unsigned seen = 0;
	while (p < end) {
		uint8_t type = phys_rd8(p);
		seen++;
		if (type == 0) { /* processor */
			uint8_t id = phys_rd8(p + 1), flags = phys_rd8(p + 3);
			if (flags & 1) {
				mp->cpus++;
				if (id < 32)
					id_mask |= 1u << id;
				if (flags & 2) {
					saw_bsp = true;
					if (id != 0)
						fail("MP BSP entry has APIC ID != 0");
					if (id != bsp_id)
						fail("MP BSP entry APIC ID != BSP's LAPIC ID");
				} else if (mp->n_ap < MAX_CPUS) {
					mp->ap_ids[mp->n_ap++] = id;
				}
			}
			p += 20;
		} else if (type <= 4) {
			if (type == 1 && mem_eq((const void *)(uintptr_t)(p + 2), "ISA   ", 6))
				saw_isa = true;
			if (type == 2 && (phys_rd8(p + 3) & 1) && phys_rd32(p + 4) == 0xfec00000u)
				saw_ioapic = true;
			p += 8;
		} else {
			fail("MP config table has an unknown entry type");
			break;
		}
	}
	if (p > end)
		fail("MP config table's last entry overruns its length");
	if (seen != count)
		fail("MP config table entry count != entries within its length");
	if (!saw_bsp)
		fail("MP table has no BSP processor entry");
	if (mp->cpus > 0 && mp->cpus <= 32 && id_mask != (uint32_t)((1ull << mp->cpus) - 1))
		fail("MP processor APIC IDs are not 0..n-1");
	if (!saw_ioapic)
		fail("MP table has no enabled IOAPIC at 0xfec00000");
	if (!saw_isa)
		fail("MP table has no ISA bus entry");
}

/* Wait for `want` APs to check in: bounded by TSC (~1-3 s) and iterations. */
static uint32_t wait_aps(volatile uint32_t *count, uint32_t want)
{
	uint64_t t0 = rdtsc();
	for (unsigned long i = 0; i < 20000000ul; i++) {
		if (*count >= want)
			break;
		if ((i & 0xff) == 0 && rdtsc() - t0 > 3000000000ull)
			break;
		cpu_relax();
	}
	return *count;
}

void guest_main(const struct entry_state *es)
{
	(void)es;
	struct mpinfo mp = { 0 };

	lapic = (uintptr_t)(rdmsr(MSR_APIC_BASE) & 0xfffff000u);
	if (lapic != LAPIC_DEFAULT_BASE) {
		fail("IA32_APIC_BASE != 0xfee00000");
		lapic = LAPIC_DEFAULT_BASE;
	}
	uint8_t bsp_id = (uint8_t)(lapic_rd(LAPIC_ID) >> 24);
	parse_mp(&mp, bsp_id);

	/* Targets: the MP table's APs, or APIC ID 1 if there is no table. */
	if (!mp.found) {
		mp.ap_ids[0] = 1;
		mp.n_ap = 1;
	}

	/* Install the trampoline. */
	size_t tlen = (size_t)(smp_tramp_end - smp_tramp_start);
	volatile char *dst = (volatile char *)(uintptr_t)TRAMP_ADDR;
	for (size_t i = 0; i < tlen; i++)
		dst[i] = smp_tramp_start[i];
	volatile uint32_t *count =
		(volatile uint32_t *)(uintptr_t)(TRAMP_ADDR + (smp_tramp_count - smp_tramp_start));
	*count = 0;

	/* Software-enable the LAPIC (spurious vector 0xff), then INIT/SIPI/SIPI. */
	lapic_wr(LAPIC_SVR, lapic_rd(LAPIC_SVR) | 0x1ff);
	for (unsigned i = 0; i < mp.n_ap; i++) {
		uint8_t id = mp.ap_ids[i];
		send_ipi(id, ICR_INIT | ICR_LEVEL_ASSERT);
		send_ipi(id, ICR_STARTUP | ICR_LEVEL_ASSERT | SIPI_VECTOR);
		send_ipi(id, ICR_STARTUP | ICR_LEVEL_ASSERT | SIPI_VECTOR);
	}
	uint32_t started = wait_aps(count, mp.n_ap);
	bool ap_ok = mp.n_ap > 0 && started == mp.n_ap;
	if (!ap_ok)
		fail("not every AP ran the trampoline");
	if (mp.cpus != 2)
		fail("MP table does not list exactly 2 processors");

	uart_puts("SMP cpus=");
	uart_putdec(mp.cpus);
	uart_puts(ap_ok ? " ap=yes\n" : " ap=no\n");
	for (unsigned i = 0; i < nfails; i++) {
		uart_puts("FAIL ");
		uart_puts(fails[i]);
		uart_putc('\n');
	}
	finish(all_ok);
}
