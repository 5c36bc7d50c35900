/* SPDX-License-Identifier: MIT */
/*
 * guest_mem: layout of RAM around the MMIO hole and the bounds checks of
 * guest_mem_ptr, the one place where a guest address becomes a pointer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem/guest_mem.h"

#define MIB	  (1024ull * 1024ull)
#define GIB	  (1024ull * MIB)
#define SMALL_RAM (2 * MIB)

/* Offset of p from base, for pointers that may lie outside any object (the
 * fake > 3 GiB layouts): compared as integers, never dereferenced. */
static uint64_t host_off(const void *base, const void *p)
{
	return (uint64_t)((uintptr_t)p - (uintptr_t)base);
}

static int setup_small(void **state)
{
	struct guest_mem *m = calloc(1, sizeof(*m));
	uint8_t *ram = calloc(1, SMALL_RAM);

	if (!m || !ram) {
		free(m);
		free(ram);
		return -1;
	}
	guest_mem_init(m, ram, SMALL_RAM);
	*state = m;
	return 0;
}

static int teardown_small(void **state)
{
	struct guest_mem *m = *state;

	free(m->mapping);
	free(m);
	return 0;
}

static void test_init_small(void **state)
{
	struct guest_mem *m = *state;

	assert_int_equal(m->nr_regions, 1);
	assert_int_equal(m->size, SMALL_RAM);
	assert_true(m->external);
	assert_int_equal(m->regions[0].gpa, 0);
	assert_int_equal(m->regions[0].size, SMALL_RAM);
	assert_ptr_equal(m->regions[0].host, m->mapping);
	assert_int_equal(guest_mem_low_end(m), SMALL_RAM);
}

static void test_init_exactly_hole(void **state)
{
	uint8_t buf[16];
	struct guest_mem m;

	(void)state;
	/* 3 GiB of RAM fits entirely below the hole: one region. */
	guest_mem_init(&m, buf, GUEST_MMIO_HOLE_START);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(m.regions[0].size, GUEST_MMIO_HOLE_START);
	assert_int_equal(guest_mem_low_end(&m), GUEST_MMIO_HOLE_START);
}

static void test_init_above_hole(void **state)
{
	uint8_t buf[16];
	struct guest_mem m;

	(void)state;
	/* 5 GiB: [0, 3 GiB) and [4 GiB, 6 GiB); only pointer arithmetic. */
	guest_mem_init(&m, buf, 5 * GIB);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.size, 5 * GIB);
	assert_int_equal(m.regions[0].gpa, 0);
	assert_int_equal(m.regions[0].size, 3 * GIB);
	assert_ptr_equal(m.regions[0].host, buf);
	assert_int_equal(m.regions[1].gpa, GUEST_4GIB);
	assert_int_equal(m.regions[1].size, 2 * GIB);
	assert_int_equal(host_off(buf, m.regions[1].host), 3 * GIB);
	assert_int_equal(guest_mem_low_end(&m), 3 * GIB);

	/* One byte above the hole. */
	guest_mem_init(&m, buf, 3 * GIB + 1);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.regions[1].size, 1);
}

static void test_ptr_small(void **state)
{
	struct guest_mem *m = *state;
	uint8_t *ram = m->mapping;

	assert_ptr_equal(guest_mem_ptr(m, 0, 1), ram);
	assert_ptr_equal(guest_mem_ptr(m, 0, SMALL_RAM), ram);
	assert_ptr_equal(guest_mem_ptr(m, 0, 0), ram);
	assert_ptr_equal(guest_mem_ptr(m, 4096, 100), ram + 4096);
	assert_ptr_equal(guest_mem_ptr(m, SMALL_RAM - 1, 1),
			 ram + SMALL_RAM - 1);
	/* len 0 at the end of RAM is allowed; anything past it is not. */
	assert_ptr_equal(guest_mem_ptr(m, SMALL_RAM, 0), ram + SMALL_RAM);
	assert_null(guest_mem_ptr(m, SMALL_RAM, 1));
	assert_null(guest_mem_ptr(m, SMALL_RAM - 1, 2));
	assert_null(guest_mem_ptr(m, 0, SMALL_RAM + 1));
	assert_null(guest_mem_ptr(m, SMALL_RAM + 1, 0));
	assert_true(guest_mem_valid(m, 0, SMALL_RAM));
	assert_false(guest_mem_valid(m, 1, SMALL_RAM));
}

static void test_ptr_overflow(void **state)
{
	struct guest_mem *m = *state;

	assert_null(guest_mem_ptr(m, UINT64_MAX, 0));
	assert_null(guest_mem_ptr(m, UINT64_MAX, 1));
	assert_null(guest_mem_ptr(m, UINT64_MAX, UINT64_MAX));
	assert_null(guest_mem_ptr(m, 0, UINT64_MAX));
	assert_null(guest_mem_ptr(m, 1, UINT64_MAX));
	/* gpa + len wraps around to a small "valid-looking" end. */
	assert_null(guest_mem_ptr(m, 4096, UINT64_MAX - 4095));
	assert_null(guest_mem_ptr(m, 4096, UINT64_MAX - 4096 + 2));
	assert_null(guest_mem_ptr(m, SMALL_RAM - 1, UINT64_MAX));
	assert_null(guest_mem_ptr(m, UINT64_MAX - 1, 2));
}

static void test_ptr_two_regions(void **state)
{
	uint8_t buf[16];
	struct guest_mem m;

	(void)state;
	guest_mem_init(&m, buf, 5 * GIB);
	assert_int_equal(host_off(buf, guest_mem_ptr(&m, 0, 16)), 0);
	assert_int_equal(host_off(buf, guest_mem_ptr(&m, 3 * GIB - 1, 1)),
			 3 * GIB - 1);
	/* Low region end: len 0 ok, 1 byte into the hole not. */
	assert_int_equal(host_off(buf, guest_mem_ptr(&m, 3 * GIB, 0)), 3 * GIB);
	assert_null(guest_mem_ptr(&m, 3 * GIB, 1));
	/* The hole itself. */
	assert_null(guest_mem_ptr(&m, 3 * GIB + 1, 0));
	assert_null(guest_mem_ptr(&m, 3 * GIB + 4096, 1));
	assert_null(guest_mem_ptr(&m, 0xFEC00000ull, 4));
	assert_null(guest_mem_ptr(&m, GUEST_4GIB - 1, 1));
	/* A range spanning both regions (and the hole). */
	assert_null(guest_mem_ptr(&m, 3 * GIB - 1, GIB + 2));
	assert_null(guest_mem_ptr(&m, 0, 5 * GIB));
	assert_null(guest_mem_ptr(&m, 0, 4 * GIB + 1));
	/* High region: starts at 4 GiB, host right after the low part. */
	assert_int_equal(host_off(buf, guest_mem_ptr(&m, GUEST_4GIB, 1)),
			 3 * GIB);
	assert_int_equal(host_off(buf, guest_mem_ptr(&m, GUEST_4GIB, 2 * GIB)),
			 3 * GIB);
	assert_int_equal(host_off(buf, guest_mem_ptr(&m, 6 * GIB - 8, 8)),
			 5 * GIB - 8);
	assert_int_equal(host_off(buf, guest_mem_ptr(&m, 6 * GIB, 0)), 5 * GIB);
	assert_null(guest_mem_ptr(&m, 6 * GIB, 1));
	assert_null(guest_mem_ptr(&m, 6 * GIB - 8, 9));
	assert_null(guest_mem_ptr(&m, GUEST_4GIB, 2 * GIB + 1));
	assert_null(guest_mem_ptr(&m, GUEST_4GIB, UINT64_MAX));
	assert_null(guest_mem_ptr(&m, UINT64_MAX, 0));
	assert_null(guest_mem_ptr(&m, UINT64_MAX - GIB, GIB + 1));
}

static void test_read_write(void **state)
{
	struct guest_mem *m = *state;
	uint8_t *ram = m->mapping;
	const uint8_t pattern[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	uint8_t out[8];

	assert_int_equal(guest_mem_write(m, 0x1000, pattern, sizeof(pattern)),
			 0);
	assert_memory_equal(ram + 0x1000, pattern, sizeof(pattern));
	memset(out, 0, sizeof(out));
	assert_int_equal(guest_mem_read(m, 0x1000, out, sizeof(out)), 0);
	assert_memory_equal(out, pattern, sizeof(pattern));
	/* Last bytes of RAM. */
	assert_int_equal(guest_mem_write(m, SMALL_RAM - 8, pattern, 8), 0);
	assert_int_equal(guest_mem_read(m, SMALL_RAM - 8, out, 8), 0);
	assert_memory_equal(out, pattern, 8);
	/* Zero-length at the end is fine. */
	assert_int_equal(guest_mem_write(m, SMALL_RAM, pattern, 0), 0);
	assert_int_equal(guest_mem_read(m, SMALL_RAM, out, 0), 0);
}

static void test_read_write_efault(void **state)
{
	struct guest_mem *m = *state;
	uint8_t *ram = m->mapping;
	uint8_t buf[8] = {0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA};
	uint8_t out[8];

	assert_int_equal(guest_mem_write(m, SMALL_RAM - 4, buf, 8), -EFAULT);
	/* Nothing was written on failure. */
	assert_int_equal(ram[SMALL_RAM - 4], 0);
	assert_int_equal(guest_mem_write(m, SMALL_RAM, buf, 1), -EFAULT);
	assert_int_equal(guest_mem_write(m, UINT64_MAX, buf, 1), -EFAULT);
	assert_int_equal(guest_mem_write(m, 8, buf, UINT64_MAX), -EFAULT);
	memset(out, 0x55, sizeof(out));
	assert_int_equal(guest_mem_read(m, SMALL_RAM - 4, out, 8), -EFAULT);
	assert_int_equal(out[0], 0x55);
	assert_int_equal(guest_mem_read(m, GUEST_MMIO_HOLE_START, out, 1),
			 -EFAULT);
	assert_int_equal(guest_mem_read(m, UINT64_MAX - 3, out, 8), -EFAULT);
}

static void test_map_unmap(void **state)
{
	struct guest_mem m;
	const uint32_t v = 0xDEADBEEF;
	uint32_t out = 0;

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_int_equal(guest_mem_map(&m, 0), -EINVAL);
	assert_int_equal(guest_mem_map(&m, 4 * MIB), 0);
	assert_false(m.external);
	assert_non_null(m.mapping);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(guest_mem_low_end(&m), 4 * MIB);
	/* Anonymous memory starts zeroed. */
	assert_int_equal(guest_mem_read(&m, 4 * MIB - 4, &out, 4), 0);
	assert_int_equal(out, 0);
	assert_int_equal(guest_mem_write(&m, 4 * MIB - 4, &v, 4), 0);
	assert_int_equal(guest_mem_read(&m, 4 * MIB - 4, &out, 4), 0);
	assert_int_equal(out, v);
	guest_mem_unmap(&m);
	assert_null(m.mapping);
	assert_int_equal(m.nr_regions, 0);
	assert_int_equal(guest_mem_low_end(&m), 0);
	assert_null(guest_mem_ptr(&m, 0, 0));
	/* Safe on a zeroed struct, twice. */
	guest_mem_unmap(&m);
}

static void test_unmap_external(void **state)
{
	uint8_t *ram = calloc(1, 4096);
	struct guest_mem m;

	(void)state;
	assert_non_null(ram);
	guest_mem_init(&m, ram, 4096);
	/* External memory is not ours to unmap: still usable afterwards. */
	guest_mem_unmap(&m);
	assert_null(m.mapping);
	ram[4095] = 1;
	free(ram);
}

static void test_add_region(void **state)
{
	static uint8_t a[4096], b[8192];
	struct guest_mem m;

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_int_equal(guest_mem_add_region(&m, 0x10000, sizeof(a), a), 0);
	assert_int_equal(guest_mem_add_region(&m, 0x40000, sizeof(b), b), 0);
	assert_int_equal(m.nr_regions, 2);
	assert_int_equal(m.size, sizeof(a) + sizeof(b));
	assert_true(m.external);
	assert_ptr_equal(guest_mem_ptr(&m, 0x10000, 4096), a);
	assert_ptr_equal(guest_mem_ptr(&m, 0x10FFF, 1), a + 4095);
	assert_ptr_equal(guest_mem_ptr(&m, 0x40000, 8192), b);
	assert_ptr_equal(guest_mem_ptr(&m, 0x41000, 16), b + 4096);
	assert_null(guest_mem_ptr(&m, 0x11000, 1));
	assert_null(guest_mem_ptr(&m, 0xFFFF, 2));
	assert_null(guest_mem_ptr(&m, 0x10000, 0x30000 + 1));
	assert_null(guest_mem_ptr(&m, 0x42000, 1));
	assert_null(guest_mem_ptr(&m, 0x40000, UINT64_MAX));
	assert_null(guest_mem_ptr(&m, 0, 0));
	/* Nothing is unmapped for regions the caller owns. */
	guest_mem_unmap(&m);
	a[0] = b[0] = 1;
}

static void test_add_region_errors(void **state)
{
	static uint8_t buf[4096];
	struct guest_mem m;

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_int_equal(guest_mem_add_region(&m, 0x1000, 0, buf), -EINVAL);
	assert_int_equal(guest_mem_add_region(&m, 0x1000, 16, NULL), -EINVAL);
	assert_int_equal(guest_mem_add_region(&m, UINT64_MAX, 2, buf), -EINVAL);
	assert_int_equal(guest_mem_add_region(&m, 2, UINT64_MAX, buf), -EINVAL);
	assert_int_equal(m.nr_regions, 0);
	assert_int_equal(guest_mem_add_region(&m, 0x10000, 0x1000, buf), 0);
	/* Overlaps, from either side, or contained, or containing. */
	assert_int_equal(guest_mem_add_region(&m, 0x10000, 0x1000, buf),
			 -EINVAL);
	assert_int_equal(guest_mem_add_region(&m, 0xF000, 0x1001, buf),
			 -EINVAL);
	assert_int_equal(guest_mem_add_region(&m, 0x10FFF, 0x10, buf), -EINVAL);
	assert_int_equal(guest_mem_add_region(&m, 0x10100, 0x10, buf), -EINVAL);
	assert_int_equal(guest_mem_add_region(&m, 0, 0x100000, buf), -EINVAL);
	assert_int_equal(m.nr_regions, 1);
	assert_int_equal(m.size, 0x1000);
	/* Fill the table: -ENOSPC. */
	for (unsigned i = 1; i < GUEST_MEM_MAX_REGIONS; i++)
		assert_int_equal(
			guest_mem_add_region(&m, 0x100000ull * i, 0x1000, buf),
			0);
	assert_int_equal(guest_mem_add_region(&m, 0x10000000, 0x1000, buf),
			 -ENOSPC);
	assert_int_equal(m.nr_regions, GUEST_MEM_MAX_REGIONS);
}

static void test_add_region_in_hole(void **state)
{
	uint8_t buf[16];
	static uint8_t mmio[4096];
	struct guest_mem m;

	(void)state;
	/* A region in the MMIO hole of a fake 5 GiB layout (not adjacent). */
	guest_mem_init(&m, buf, 5 * GIB);
	assert_int_equal(
		guest_mem_add_region(&m, 3 * GIB + 0x1000, sizeof(mmio), mmio),
		0);
	assert_int_equal(m.nr_regions, 3);
	assert_ptr_equal(guest_mem_ptr(&m, 3 * GIB + 0x1000, 4096), mmio);
	assert_null(guest_mem_ptr(&m, 3 * GIB + 0x1000, 4097));
	assert_null(guest_mem_ptr(&m, 3 * GIB + 0x800, 1));
	/* Overlapping the RAM regions is refused. */
	assert_int_equal(guest_mem_add_region(&m, 3 * GIB - 1, 2, mmio),
			 -EINVAL);
	assert_int_equal(guest_mem_add_region(&m, 4 * GIB, 1, mmio), -EINVAL);
}

/* vhost-user memory tables commonly describe RAM as regions that touch
 * (e.g. [0, 640K) and [640K, ...)). An access starting exactly where one
 * region ends and the next begins belongs to the second. */
static void test_adjacent_regions(void **state)
{
	static uint8_t a[4096], b[4096];
	struct guest_mem m;

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_int_equal(guest_mem_add_region(&m, 0, sizeof(a), a), 0);
	assert_int_equal(guest_mem_add_region(&m, 0x1000, sizeof(b), b), 0);
	assert_ptr_equal(guest_mem_ptr(&m, 0x1000, 1), b);
	assert_ptr_equal(guest_mem_ptr(&m, 0x1000, 4096), b);
	/* Still not across the boundary. */
	assert_null(guest_mem_ptr(&m, 0xFFF, 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_small, setup_small,
						teardown_small),
		cmocka_unit_test(test_init_exactly_hole),
		cmocka_unit_test(test_init_above_hole),
		cmocka_unit_test_setup_teardown(test_ptr_small, setup_small,
						teardown_small),
		cmocka_unit_test_setup_teardown(test_ptr_overflow, setup_small,
						teardown_small),
		cmocka_unit_test(test_ptr_two_regions),
		cmocka_unit_test_setup_teardown(test_read_write, setup_small,
						teardown_small),
		cmocka_unit_test_setup_teardown(test_read_write_efault,
						setup_small, teardown_small),
		cmocka_unit_test(test_map_unmap),
		cmocka_unit_test(test_unmap_external),
		cmocka_unit_test(test_add_region),
		cmocka_unit_test(test_add_region_errors),
		cmocka_unit_test(test_add_region_in_hole),
		cmocka_unit_test(test_adjacent_regions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
