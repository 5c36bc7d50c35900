/* SPDX-License-Identifier: MIT */
/*
 * x86_cpuid_adjust on a synthetic KVM_GET_SUPPORTED_CPUID result: APIC IDs,
 * the hypervisor bit, HTT, cache/topology leaves and the disabled PMU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/cpu.h"

#define HYPERVISOR (1u << 31)
#define HTT	   (1u << 28)

/* Leaves as a host might report them, with junk where kiln must write. */
static const struct kvm_cpuid_entry2 template[] = {
	{.function = 0, .eax = 0x1F, .ebx = 0x756e6547},
	{.function = 1,
	 .eax = 0x000806F8,
	 .ebx = 0xAB3F0800,
	 .ecx = 0x7FFAF3BF,
	 .edx = 0xBFEBFBFF},
	{.function = 4,
	 .index = 0,
	 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	 .eax = 0xFC004121,
	 .ebx = 0x02C0003F,
	 .ecx = 0x3F},
	{.function = 4,
	 .index = 1,
	 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	 .eax = 0xFC004122,
	 .ebx = 0x01C0003F,
	 .ecx = 0x3F},
	{.function = 4,
	 .index = 3,
	 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	 .eax = 0xFC03C163,
	 .ebx = 0x03C0003F,
	 .ecx = 0xBFFF},
	{.function = 7, .ebx = 0x12345678, .ecx = 0x9ABCDEF0},
	{.function = 0xA,
	 .eax = 0x07300805,
	 .ebx = 0x1,
	 .ecx = 0x2,
	 .edx = 0x8603},
	{.function = 0xB,
	 .index = 0,
	 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	 .eax = 1,
	 .ebx = 2,
	 .ecx = 0x100,
	 .edx = 0x55},
	{.function = 0xB,
	 .index = 1,
	 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	 .eax = 7,
	 .ebx = 112,
	 .ecx = 0x201,
	 .edx = 0x55},
	{.function = 0xB,
	 .index = 2,
	 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	 .eax = 9,
	 .ebx = 9,
	 .ecx = 0x302,
	 .edx = 0x55},
	{.function = 0x1F,
	 .index = 0,
	 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	 .eax = 1,
	 .ebx = 2,
	 .ecx = 0x100,
	 .edx = 0x55},
	{.function = 0x1F,
	 .index = 1,
	 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
	 .eax = 7,
	 .ebx = 112,
	 .ecx = 0x201,
	 .edx = 0x55},
	{.function = 0x40000000, .eax = 0x40000001, .ebx = 0x4b4d564b},
	{.function = 0x80000001, .ecx = 0x121, .edx = 0x2C100800},
};
#define NENT (sizeof(template) / sizeof(template[0]))

static struct kvm_cpuid2 *make_cpuid(void)
{
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + NENT * sizeof(struct kvm_cpuid_entry2));

	assert_non_null(c);
	c->nent = NENT;
	memcpy(c->entries, template, sizeof(template));
	return c;
}

static const struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *c,
					   uint32_t fn, uint32_t index)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    c->entries[i].index == index)
			return &c->entries[i];
	fail_msg("leaf 0x%x.%u missing", fn, index);
	return NULL;
}

static const struct kvm_cpuid_entry2 *orig(uint32_t fn, uint32_t index)
{
	for (unsigned i = 0; i < NENT; i++)
		if (template[i].function == fn && template[i].index == index)
			return &template[i];
	return NULL;
}

static struct kvm_cpuid2 *adjusted(unsigned index, unsigned ncpus)
{
	struct kvm_cpuid2 *c = make_cpuid();

	x86_cpuid_adjust(c, index, ncpus);
	assert_int_equal(c->nent, NENT);
	return c;
}

static void test_leaf1_apic_id(void **state)
{
	static const unsigned cases[][2] = {
		{0, 1}, {0, 2}, {1, 2}, {5, 8}, {63, 64},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned idx = cases[i][0], n = cases[i][1];
		struct kvm_cpuid2 *c = adjusted(idx, n);
		const struct kvm_cpuid_entry2 *e = leaf(c, 1, 0);

		/* EBX[31:24] initial APIC id, [23:16] logical count,
		 * [15:0] (brand, CLFLUSH size) kept. */
		assert_int_equal(e->ebx >> 24, idx);
		assert_int_equal((e->ebx >> 16) & 0xFF, n);
		assert_int_equal(e->ebx & 0xFFFF, orig(1, 0)->ebx & 0xFFFF);
		assert_int_equal(e->eax, orig(1, 0)->eax);
		free(c);
	}
}

static void test_leaf1_hypervisor_htt(void **state)
{
	struct kvm_cpuid2 *c;
	const struct kvm_cpuid_entry2 *e;

	(void)state;
	/* One vCPU: HTT cleared even though the host had it. */
	c = adjusted(0, 1);
	e = leaf(c, 1, 0);
	assert_true(e->ecx & HYPERVISOR);
	assert_false(e->edx & HTT);
	assert_int_equal(e->ecx & ~HYPERVISOR, orig(1, 0)->ecx & ~HYPERVISOR);
	assert_int_equal(e->edx, orig(1, 0)->edx & ~HTT);
	free(c);

	/* Several: HTT set. */
	c = make_cpuid();
	c->entries[1].edx &= ~HTT;
	c->entries[1].ecx &= ~HYPERVISOR;
	x86_cpuid_adjust(c, 1, 4);
	e = leaf(c, 1, 0);
	assert_true(e->ecx & HYPERVISOR);
	assert_true(e->edx & HTT);
	free(c);
}

static void test_leaf4_cores(void **state)
{
	static const unsigned subleaves[] = {0, 1, 3};

	(void)state;
	for (unsigned n = 1; n <= 64; n *= 2) {
		struct kvm_cpuid2 *c = adjusted(0, n);

		for (size_t i = 0; i < 3; i++) {
			const struct kvm_cpuid_entry2 *e =
				leaf(c, 4, subleaves[i]);
			uint32_t o = orig(4, subleaves[i])->eax;

			/* EAX[31:26]: cores per package - 1. */
			assert_int_equal(e->eax >> 26, n - 1);
			/* EAX[25:14]: threads sharing the cache - 1 = 0. */
			assert_int_equal((e->eax >> 14) & 0xFFF, 0);
			/* Cache type/level etc. kept. */
			assert_int_equal(e->eax & 0x3FFF, o & 0x3FFF);
			assert_int_equal(e->ebx, orig(4, subleaves[i])->ebx);
		}
		free(c);
	}
}

static void test_pmu_disabled(void **state)
{
	struct kvm_cpuid2 *c = adjusted(0, 2);
	const struct kvm_cpuid_entry2 *e = leaf(c, 0xA, 0);

	(void)state;
	assert_int_equal(e->eax, 0);
	assert_int_equal(e->ebx, 0);
	assert_int_equal(e->ecx, 0);
	assert_int_equal(e->edx, 0);
	free(c);
}

static void check_topology(const struct kvm_cpuid2 *c, uint32_t fn,
			   unsigned idx, unsigned n, unsigned shift)
{
	const struct kvm_cpuid_entry2 *e;

	/* Subleaf 0: SMT level, one thread per core. */
	e = leaf(c, fn, 0);
	assert_int_equal(e->eax & 0x1F, 0);
	assert_int_equal(e->ebx & 0xFFFF, 1);
	assert_int_equal(e->ecx & 0xFF, 0);
	assert_int_equal((e->ecx >> 8) & 0xFF, 1); /* type SMT */
	assert_int_equal(e->edx, idx);
	/* Subleaf 1: core level, n logical processors, x2APIC id shift. */
	e = leaf(c, fn, 1);
	assert_int_equal(e->eax & 0x1F, shift);
	assert_int_equal(e->ebx & 0xFFFF, n);
	assert_int_equal(e->ecx & 0xFF, 1);
	assert_int_equal((e->ecx >> 8) & 0xFF, 2); /* type core */
	assert_int_equal(e->edx, idx);
	/* The shift covers every APIC id: (n - 1) >> shift == 0. */
	assert_int_equal((n - 1) >> shift, 0);
}

static void test_leaf_b_topology(void **state)
{
	static const unsigned cases[][3] = {
		/* index, ncpus, bits */
		{0, 1, 0}, {1, 2, 1}, {2, 3, 2},   {3, 4, 2},
		{4, 5, 3}, {7, 8, 3}, {40, 63, 6}, {63, 64, 6},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned idx = cases[i][0], n = cases[i][1];
		struct kvm_cpuid2 *c = adjusted(idx, n);
		const struct kvm_cpuid_entry2 *e;

		check_topology(c, 0xB, idx, n, cases[i][2]);
		check_topology(c, 0x1F, idx, n, cases[i][2]);
		/* Subleaf 2: invalid level (type 0), level number kept. */
		e = leaf(c, 0xB, 2);
		assert_int_equal(e->eax, 0);
		assert_int_equal(e->ebx, 0);
		assert_int_equal(e->ecx, 2);
		assert_int_equal((e->ecx >> 8) & 0xFF, 0);
		assert_int_equal(e->edx, idx);
		free(c);
	}
}

static void test_other_leaves_untouched(void **state)
{
	struct kvm_cpuid2 *c = adjusted(3, 4);
	static const uint32_t fns[] = {0, 7, 0x40000000, 0x80000001};

	(void)state;
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		assert_memory_equal(leaf(c, fns[i], 0), orig(fns[i], 0),
				    sizeof(struct kvm_cpuid_entry2));
	free(c);
}

static void test_each_vcpu_distinct(void **state)
{
	(void)state;
	/* Every vCPU of a 64-vCPU VM gets its own id in both places. */
	for (unsigned idx = 0; idx < 64; idx++) {
		struct kvm_cpuid2 *c = adjusted(idx, 64);

		assert_int_equal(leaf(c, 1, 0)->ebx >> 24, idx);
		assert_int_equal(leaf(c, 0xB, 0)->edx, idx);
		assert_int_equal(leaf(c, 0xB, 1)->edx, idx);
		free(c);
	}
}

static void test_empty(void **state)
{
	struct kvm_cpuid2 c;

	(void)state;
	memset(&c, 0, sizeof(c));
	x86_cpuid_adjust(&c, 0, 1);
	assert_int_equal(c.nent, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leaf1_apic_id),
		cmocka_unit_test(test_leaf1_hypervisor_htt),
		cmocka_unit_test(test_leaf4_cores),
		cmocka_unit_test(test_pmu_disabled),
		cmocka_unit_test(test_leaf_b_topology),
		cmocka_unit_test(test_other_leaves_untouched),
		cmocka_unit_test(test_each_vcpu_distinct),
		cmocka_unit_test(test_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
