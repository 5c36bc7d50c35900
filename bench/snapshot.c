/* SPDX-License-Identifier: MIT */
/*
 * Snapshot benchmark (not a timed test; bench/snapshot.sh builds and runs
 * it), on the KVM engine with the "prompt" tiny guest, each figure beside
 * its peer in the same run:
 *   1. restore + start until the guest answers a line, vs a fresh boot of
 *      the same guest until it answers a line (medians of N, interleaved)
 *   2. snapshot-pool claims (take a restored VM, start it): p50 / p99 of M
 *   3. the memory file of a 256 MiB guest with 10 % of its pages touched:
 *      kiln_vm_snapshot's time vs writing the same pages with pwrite +
 *      fsync (the disk's own floor), and vs Firecracker's 180 ms
 *   4. the memory (PSS) of 50 clones of a 64 MiB snapshot, each answering
 *      a line, vs 50 x its RAM
 * Linked with the library's internals only to dirty guest pages from the
 * host for (3).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kiln/kiln.h>

#include "vm/vm_internal.h"

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000ll + ts.tv_nsec / 1000;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

static long long pct(long long *v, int n, int p)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_ll);
	return v[(n * p + 99) / 100 - 1 < 0 ? 0 : (n * p + 99) / 100 - 1];
}

static struct kiln_config *config(const char *kernel, unsigned mib)
{
	struct kiln_config *c = kiln_config_new();

	kiln_config_set_accel(c, KILN_ACCEL_KVM);
	kiln_config_set_console_capture(c, 1);
	kiln_config_set_console_fds(c, -1, -1);
	if (kernel)
		kiln_config_set_kernel(c, kernel);
	kiln_config_set_memory_mib(c, mib);
	return c;
}

static int answer(struct kiln_vm *vm)
{
	char *out = NULL;
	int r = kiln_vm_console_exec(vm, "x", "kiln$ ", 20000, &out);

	if (r == 0 && (!out || strcmp(out, "you said: x\n")))
		r = -EBADMSG;
	free(out);
	return r;
}

static struct kiln_vm *boot(const char *kernel, unsigned mib)
{
	struct kiln_config *c = config(kernel, mib);
	struct kiln_vm *vm = NULL;
	char *out = NULL;

	if (kiln_vm_create(c, &vm) < 0 || kiln_vm_start(vm) < 0 ||
	    kiln_vm_console_wait_for(vm, "kiln$ ", 20000, &out) < 0) {
		kiln_vm_destroy(vm);
		vm = NULL;
	}
	free(out);
	kiln_config_free(c);
	return vm;
}

static long long pss_kib(void)
{
	char line[256];
	long long v = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %lld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	const char *kernel, *dir;
	char snap[600], big[600], path[700];
	long long fresh[64], rest[64], fresh_first[64], rest_first[64];
	long long claims[1000], t;
	struct kiln_vm *vm;
	int n, m;

	if (argc != 5)
		return 2;
	kernel = argv[1];
	dir = argv[2];
	n = atoi(argv[3]);
	m = atoi(argv[4]);
	if (n < 1 || n > 64 || m < 1 || m > 1000)
		return 2;
	snprintf(snap, sizeof(snap), "%s/prompt", dir);
	snprintf(big, sizeof(big), "%s/big", dir);

	/* 1. restore vs fresh boot, until the guest answers */
	vm = boot(kernel, 16);
	if (!vm || kiln_vm_snapshot(vm, snap) < 0) {
		fprintf(stderr, "bench: cannot boot or snapshot the guest\n");
		return 1;
	}
	kiln_vm_destroy(vm);
	for (int i = 0; i < n; i++) {
		struct kiln_config *c = config(NULL, 16),
				   *f = config(kernel, 16);

		/* to the first instruction: create/restore, start */
		t = now_us();
		if (kiln_vm_create(f, &vm) < 0 || kiln_vm_start(vm) < 0)
			return 1;
		fresh_first[i] = now_us() - t;
		kiln_vm_destroy(vm);
		kiln_config_free(f);
		t = now_us();
		if (kiln_vm_restore(c, snap, 0, &vm) < 0 ||
		    kiln_vm_start(vm) < 0)
			return 1;
		rest_first[i] = now_us() - t;
		kiln_vm_destroy(vm);
		/* until it answers a line */
		t = now_us();
		vm = boot(kernel, 16);
		if (!vm || answer(vm) < 0)
			return 1;
		fresh[i] = now_us() - t;
		kiln_vm_destroy(vm);
		t = now_us();
		if (kiln_vm_restore(c, snap, 0, &vm) < 0 ||
		    kiln_vm_start(vm) < 0 || answer(vm) < 0)
			return 1;
		rest[i] = now_us() - t;
		kiln_vm_destroy(vm);
		kiln_config_free(c);
	}
	{
		long long f = pct(fresh, n, 50), r = pct(rest, n, 50);

		long long ff = pct(fresh_first, n, 50),
			  rf = pct(rest_first, n, 50);

		printf("snapshot: restore + start (to the first instruction) "
		       "%.3f ms vs create + start of the same guest %.3f ms "
		       "(median of %d): ratio %.3f\n",
		       rf / 1000.0, ff / 1000.0, n, (double)rf / (double)ff);
		printf("snapshot: restore + start until the guest answers %.2f "
		       "ms vs a fresh boot until it answers %.2f ms (median "
		       "of %d): ratio %.3f\n",
		       r / 1000.0, f / 1000.0, n, (double)r / (double)f);
	}

	/* 2. snapshot-pool claims */
	{
		struct kiln_config *c = config(NULL, 16);
		struct kiln_pool_opts o;
		struct kiln_pool *p;
		struct kiln_pool_stats st;

		kiln_pool_opts_init(&o);
		o.target = 4;
		if (kiln_pool_create_from_snapshot(c, snap, &o, &p) < 0)
			return 1;
		kiln_config_free(c);
		for (int i = 0; i < m; i++) {
			for (int k = 0; k < 500; k++) {
				kiln_pool_stats(p, &st);
				if (st.ready == 4 && !st.releasing)
					break;
				usleep(2000);
			}
			t = now_us();
			if (kiln_pool_acquire_vm(p, 10000, &vm) < 0)
				return 1;
			claims[i] = now_us() - t;
			kiln_pool_release_vm(p, vm);
		}
		kiln_pool_destroy(p);
		printf("snapshot: pool claim (a restored VM taken and started) "
		       "p50 %.3f ms, p99 %.3f ms over %d claims (target p99 <= "
		       "1 ms)\n",
		       pct(claims, m, 50) / 1000.0, pct(claims, m, 99) / 1000.0,
		       m);
	}

	/* 3. the memory file: 256 MiB, 10 % of the pages touched */
	{
		size_t pages = (256u << 20) / 4096, touched = 0;
		uint8_t *ram;
		long long snap_us, floor_us;
		int fd;

		vm = boot(kernel, 256);
		if (!vm || kiln_vm_pause(vm) < 0)
			return 1;
		ram = vm->mem.mapping;
		for (size_t i = 0; i < pages; i += 10, touched++)
			memset(ram + i * 4096, (int)(i & 0x7f) | 1, 4096);
		t = now_us();
		if (kiln_vm_snapshot(vm, big) < 0)
			return 1;
		snap_us = now_us() - t;
		/* the floor: the same pages, written and synced */
		snprintf(path, sizeof(path), "%s/floor", dir);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		t = now_us();
		if (ftruncate(fd, 256 << 20) < 0)
			return 1;
		for (size_t i = 0; i < pages; i += 10)
			if (pwrite(fd, ram + i * 4096, 4096,
				   (off_t)(i * 4096)) != 4096)
				return 1;
		fsync(fd);
		floor_us = now_us() - t;
		close(fd);
		unlink(path);
		kiln_vm_destroy(vm);
		printf("snapshot: memory file of 256 MiB with %zu of %zu pages "
		       "touched: %.1f ms vs pwrite+fsync of the same pages "
		       "%.1f "
		       "ms (ratio %.2f; target <= 180 ms, Firecracker's full "
		       "snapshot)\n",
		       touched, pages, snap_us / 1000.0, floor_us / 1000.0,
		       (double)snap_us / (double)floor_us);
	}

	/* 4. 50 clones of a 64 MiB snapshot */
	{
		struct kiln_vm *clones[50];
		long long before, after;

		snprintf(path, sizeof(path), "%s/p64", dir);
		vm = boot(kernel, 64);
		if (!vm || kiln_vm_snapshot(vm, path) < 0)
			return 1;
		kiln_vm_destroy(vm);
		before = pss_kib();
		for (int i = 0; i < 50; i++) {
			struct kiln_config *c = config(NULL, 64);

			if (kiln_vm_restore(c, path, 0, &clones[i]) < 0 ||
			    kiln_vm_start(clones[i]) < 0 ||
			    answer(clones[i]) < 0)
				return 1;
			kiln_config_free(c);
		}
		after = pss_kib();
		printf("snapshot: 50 clones of a 64 MiB snapshot, each "
		       "answering: %.1f MiB more memory (PSS) vs 50 x 64 MiB = "
		       "3200 MiB of RAM: ratio %.4f\n",
		       (after - before) / 1024.0,
		       (double)(after - before) / (3200.0 * 1024));
		for (int i = 0; i < 50; i++)
			kiln_vm_destroy(clones[i]);
	}
	return 0;
}
