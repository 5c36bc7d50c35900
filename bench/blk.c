/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk throughput (not a timed test): a fake driver in this process
 * pushes read requests through a real split ring in fake guest RAM into
 * kiln's virtqueue and blk device over a raw file, and the same reads (same
 * offsets, same order, same destination buffers) are done with plain pread.
 * The file is read once first so both run from the page cache; the two are
 * interleaved over several rounds and the medians compared.
 *
 *   blk [--rounds N] IMAGE           both workloads, ratio lines
 *   blk --callgrind N IMAGE          N 4 KiB reads through kiln only (for
 *                                    valgrind --toggle-collect)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "backends/block.h"
#include "virtio/blk.h"
#include "virtio/device_table.h"

#define QSZ	   256
#define RAM_SIZE   (64ull << 20)
#define DESC_GPA   0x0
#define AVAIL_GPA  0x1000
#define USED_GPA   0x2000
#define HDR_GPA	   0x4000	/* per slot: 16-byte header */
#define STATUS_GPA 0x8000	/* per slot: 1 status byte */
#define DATA_GPA   (1ull << 20) /* per slot: data buffer */
#define MAX_SLOTS  (QSZ / 3)	/* three descriptors per request */

#define RAND_BS	   4096u
#define RAND_BATCH 64u
#define RAND_OPS   200000u
#define SEQ_BS	   (1u << 20)
#define SEQ_BATCH  8u
#define SEQ_PASSES 4u

struct bench {
	uint8_t *ram;
	struct guest_mem mem;
	struct block_backend *be;
	struct virtio_dev dev;
	int fd; /* the same image, for pread */
	uint64_t size;
	uint16_t avail_idx, used_seen;
	unsigned slots;
	uint32_t bs;
};

static void die(const char *what)
{
	fprintf(stderr, "blk bench: %s\n", what);
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint64_t data_gpa(const struct bench *b, unsigned slot)
{
	return DATA_GPA + (uint64_t)slot * b->bs;
}

static void set_desc(struct bench *b, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = b->ram + DESC_GPA + 16 * i;

	put64(d, addr);
	put32(d + 8, len);
	put16(d + 12, flags);
	put16(d + 14, next);
}

/* Lays out `slots` fixed {header, data, status} chains of bs-byte reads, as
 * a driver with preallocated requests would. */
static void setup_slots(struct bench *b, unsigned slots, uint32_t bs)
{
	b->slots = slots;
	b->bs = bs;
	if (DATA_GPA + (uint64_t)slots * bs > RAM_SIZE || slots > MAX_SLOTS)
		die("slots do not fit");
	for (unsigned s = 0; s < slots; s++) {
		uint16_t h = (uint16_t)(3 * s);

		memset(b->ram + HDR_GPA + 16 * s, 0, 16); /* type IN */
		set_desc(b, h, HDR_GPA + 16 * s, 16, VIRTQ_DESC_F_NEXT, h + 1);
		set_desc(b, h + 1, data_gpa(b, s), bs,
			 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, h + 2);
		set_desc(b, h + 2, STATUS_GPA + s, 1, VIRTQ_DESC_F_WRITE, 0);
	}
}

static void notify_used(struct virtio_dev *d, unsigned q)
{
	(void)d;
	(void)q;
}

static void needs_reset(struct virtio_dev *d)
{
	(void)d;
	die("device needs reset");
}

static const struct virtio_transport_ops transport = {
	.notify_used = notify_used,
	.needs_reset = needs_reset,
};

static void bench_init(struct bench *b, const char *path)
{
	struct virtq *q;
	int r;

	memset(b, 0, sizeof(*b));
	b->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (b->ram == MAP_FAILED)
		die("cannot map fake guest RAM");
	guest_mem_init(&b->mem, b->ram, RAM_SIZE);
	r = block_raw_open(path, true, NULL, &b->be);
	if (r < 0) {
		fprintf(stderr, "blk bench: %s: %s\n", path, strerror(-r));
		exit(1);
	}
	b->size = block_backend_size(b->be);
	if (b->size < (16u << 20))
		die("image smaller than 16 MiB");
	b->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (b->fd < 0)
		die("cannot open image for pread");
	b->dev.mem = &b->mem;
	b->dev.transport = &transport;
	if (virtio_blk_create(b->be, true, &b->dev) < 0)
		die("virtio_blk_create failed");
	/* a plain driver: no event index, no indirect descriptors */
	b->dev.driver_features =
		1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_BLK_F_SEG_MAX |
		1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_RO;
	virtio_dev_apply_features(&b->dev);
	q = &b->dev.vqs[0];
	q->size = QSZ;
	q->desc_gpa = DESC_GPA;
	q->avail_gpa = AVAIL_GPA;
	q->used_gpa = USED_GPA;
	if (virtq_check_config(q, b->dev.ops->queue_max_size) < 0)
		die("bad queue config");
	q->ready = true;
	b->dev.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
}

/* Reads offs[0..n) through kiln, `slots` requests per notify. */
static void run_kiln(struct bench *b, const uint64_t *offs, unsigned n)
{
	uint16_t *avail_ring = (uint16_t *)(b->ram + AVAIL_GPA + 4);
	uint16_t *avail_idx = (uint16_t *)(b->ram + AVAIL_GPA + 2);
	uint16_t *used_idx = (uint16_t *)(b->ram + USED_GPA + 2);

	for (unsigned i = 0; i < n;) {
		unsigned k = n - i < b->slots ? n - i : b->slots;

		for (unsigned s = 0; s < k; s++) {
			put64(b->ram + HDR_GPA + 16 * s + 8,
			      offs[i + s] / BLOCK_SECTOR_SIZE);
			b->ram[STATUS_GPA + s] = 0xff;
			avail_ring[b->avail_idx++ % QSZ] = (uint16_t)(3 * s);
		}
		__atomic_store_n(avail_idx, b->avail_idx, __ATOMIC_RELEASE);
		b->dev.ops->queue_notify(&b->dev, 0);
		while (b->used_seen !=
		       __atomic_load_n(used_idx, __ATOMIC_ACQUIRE)) {
			uint8_t *el = b->ram + USED_GPA + 4 +
				      8 * (b->used_seen % QSZ);
			uint32_t id, len;

			memcpy(&id, el, 4);
			memcpy(&len, el + 4, 4);
			if (id % 3 || id / 3 >= k || len != b->bs + 1 ||
			    b->ram[STATUS_GPA + id / 3] != VIRTIO_BLK_S_OK)
				die("bad completion");
			b->used_seen++;
		}
		if ((uint16_t)(b->avail_idx - b->used_seen))
			die("requests left uncompleted");
		i += k;
	}
}

/* The same reads with pread into the same buffers. */
static void run_pread(struct bench *b, const uint64_t *offs, unsigned n)
{
	for (unsigned i = 0; i < n;) {
		unsigned k = n - i < b->slots ? n - i : b->slots;

		for (unsigned s = 0; s < k; s++) {
			uint8_t *dst = b->ram + data_gpa(b, s);
			size_t done = 0;

			while (done < b->bs) {
				ssize_t r =
					pread(b->fd, dst + done, b->bs - done,
					      (off_t)(offs[i + s] + done));

				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0)
					die("pread failed");
				done += (size_t)r;
			}
		}
		i += k;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* xorshift64*: deterministic offsets, same for both runs */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static void warm(struct bench *b)
{
	uint64_t *offs;
	unsigned n = (unsigned)(b->size / SEQ_BS);

	offs = malloc(sizeof(*offs) * n);
	if (!offs)
		die("out of memory");
	for (unsigned i = 0; i < n; i++)
		offs[i] = (uint64_t)i * SEQ_BS;
	setup_slots(b, SEQ_BATCH, SEQ_BS);
	run_pread(b, offs, n);
	free(offs);
}

/* Times kiln and pread on offs, interleaved; medians of the times into
 * *tk / *tp and of the per-round ratios (pread time / kiln time: pairs run
 * back to back see the same machine load) into *ratio. */
static void compare(struct bench *b, const uint64_t *offs, unsigned n,
		    unsigned rounds, double *tk, double *tp, double *ratio)
{
	double *k = calloc(rounds, sizeof(double));
	double *p = calloc(rounds, sizeof(double));
	double *q = calloc(rounds, sizeof(double));

	if (!k || !p || !q)
		die("out of memory");
	/* one untimed round each: first touches, branch predictors */
	run_kiln(b, offs, n);
	run_pread(b, offs, n);
	for (unsigned r = 0; r < rounds; r++) {
		double t0 = now();

		if (r % 2) {
			run_pread(b, offs, n);
			p[r] = now() - t0;
			t0 = now();
			run_kiln(b, offs, n);
			k[r] = now() - t0;
		} else {
			run_kiln(b, offs, n);
			k[r] = now() - t0;
			t0 = now();
			run_pread(b, offs, n);
			p[r] = now() - t0;
		}
	}
	for (unsigned r = 0; r < rounds; r++)
		q[r] = p[r] / k[r];
	*ratio = median(q, rounds);
	*tk = median(k, rounds);
	*tp = median(p, rounds);
	free(k);
	free(p);
	free(q);
}

static uint64_t *random_offsets(const struct bench *b, unsigned n)
{
	uint64_t *offs = malloc(sizeof(*offs) * n),
		 seed = 0x9e3779b97f4a7c15ull;

	if (!offs)
		die("out of memory");
	for (unsigned i = 0; i < n; i++)
		offs[i] = rnd(&seed) % (b->size / RAND_BS) * RAND_BS;
	return offs;
}

/* 4 KiB random reads with QD requests always in flight, through a disk
 * made from options (asynchronous: io_uring or workers), the driver
 * refilling each slot as its completion arrives. Returns IOPS. */
#define QD 32
static double run_async(const char *path, unsigned n)
{
	struct bench *b = calloc(1, sizeof(*b));
	struct virtio_dev_opts o;
	uint16_t *avail_ring, *avail_idx, *used_idx;
	uint64_t *offs, issued = 0, done = 0;
	char spec[4200];
	struct pollfd pfd;
	double t0;

	if (!b)
		die("out of memory");
	b->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (b->ram == MAP_FAILED)
		die("cannot map fake guest RAM");
	guest_mem_init(&b->mem, b->ram, RAM_SIZE);
	snprintf(spec, sizeof(spec), "blk,path=%s,ro,format=raw", path);
	if (virtio_dev_opts_parse(spec, NULL, &o) < 0 ||
	    virtio_dev_create(&b->dev, &o, NULL) < 0)
		die("cannot make the disk");
	virtio_dev_opts_free(&o);
	b->dev.mem = &b->mem;
	b->dev.transport = &transport;
	b->dev.driver_features =
		1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_BLK_F_SEG_MAX |
		1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_RO;
	virtio_dev_apply_features(&b->dev);
	b->dev.vqs[0].size = QSZ;
	b->dev.vqs[0].desc_gpa = DESC_GPA;
	b->dev.vqs[0].avail_gpa = AVAIL_GPA;
	b->dev.vqs[0].used_gpa = USED_GPA;
	if (virtq_check_config(&b->dev.vqs[0], b->dev.ops->queue_max_size) < 0)
		die("bad queue config");
	b->dev.vqs[0].ready = true;
	b->dev.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	{
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;

		if (end <= 0)
			die("cannot size the image");
		b->size = (uint64_t)end;
		close(fd);
	}
	offs = random_offsets(b, n);
	setup_slots(b, QD, RAND_BS);
	avail_ring = (uint16_t *)(b->ram + AVAIL_GPA + 4);
	avail_idx = (uint16_t *)(b->ram + AVAIL_GPA + 2);
	used_idx = (uint16_t *)(b->ram + USED_GPA + 2);
	pfd.fd = b->dev.ops->host_fd(&b->dev);
	pfd.events = POLLIN;
	t0 = now();
	for (unsigned s = 0; s < QD && issued < n; s++, issued++) {
		put64(b->ram + HDR_GPA + 16 * s + 8,
		      offs[issued] / BLOCK_SECTOR_SIZE);
		avail_ring[b->avail_idx++ % QSZ] = (uint16_t)(3 * s);
	}
	__atomic_store_n(avail_idx, b->avail_idx, __ATOMIC_RELEASE);
	b->dev.ops->queue_notify(&b->dev, 0);
	while (done < n) {
		bool more = false;

		if (poll(&pfd, 1, 5000) <= 0)
			die("no completion in 5 s");
		b->dev.ops->host_events(&b->dev);
		while (b->used_seen !=
		       __atomic_load_n(used_idx, __ATOMIC_ACQUIRE)) {
			uint8_t *el = b->ram + USED_GPA + 4 +
				      8 * (b->used_seen % QSZ);
			uint32_t id;

			memcpy(&id, el, 4);
			if (b->ram[STATUS_GPA + id / 3] != VIRTIO_BLK_S_OK)
				die("bad completion");
			b->used_seen++;
			done++;
			if (issued < n) {
				unsigned s = id / 3;

				put64(b->ram + HDR_GPA + 16 * s + 8,
				      offs[issued++] / BLOCK_SECTOR_SIZE);
				avail_ring[b->avail_idx++ % QSZ] = (uint16_t)id;
				more = true;
			}
		}
		if (more) {
			__atomic_store_n(avail_idx, b->avail_idx,
					 __ATOMIC_RELEASE);
			b->dev.ops->queue_notify(&b->dev, 0);
		}
	}
	t0 = now() - t0;
	virtio_dev_destroy(&b->dev);
	munmap(b->ram, RAM_SIZE);
	free(offs);
	free(b);
	return n / t0;
}

int main(int argc, char **argv)
{
	unsigned rounds = 7, cg_ops = 0;
	struct bench *b = malloc(sizeof(*b));
	uint64_t *offs;
	double tk, tp, ratio, mb;
	unsigned n;
	int i = 1;

		if (argc == 4 && !strcmp(argv[1], "--qd32")) {
		printf("%.0f\n", run_async(argv[3], (unsigned)atoi(argv[2])));
		return 0;
	}
	for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
		if (!strcmp(argv[i], "--rounds"))
			rounds = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--callgrind"))
			cg_ops = (unsigned)atoi(argv[i + 1]);
		else
			die("usage: blk [--rounds N | --callgrind N] IMAGE");
	}
	if (i + 1 != argc || !b || rounds == 0)
		die("usage: blk [--rounds N | --callgrind N] IMAGE");
	bench_init(b, argv[i]);

	if (cg_ops) {
		offs = random_offsets(b, cg_ops);
		setup_slots(b, RAND_BATCH, RAND_BS);
		run_pread(b, offs, cg_ops); /* page cache */
		run_kiln(b, offs, cg_ops);
		printf("chains: %u\n", cg_ops);
		return 0;
	}

	warm(b);

	n = (unsigned)(b->size / SEQ_BS) * SEQ_PASSES;
	offs = malloc(sizeof(*offs) * n);
	if (!offs)
		die("out of memory");
	for (unsigned j = 0; j < n; j++)
		offs[j] = (uint64_t)j * SEQ_BS % (b->size / SEQ_BS * SEQ_BS);
	setup_slots(b, SEQ_BATCH, SEQ_BS);
	compare(b, offs, n, rounds, &tk, &tp, &ratio);
	mb = (double)n * SEQ_BS / 1e6;
	printf("blk 1MiB seq read: kiln %.0f MB/s, pread %.0f MB/s, ratio %.2f "
	       "(target >= 0.9)\n",
	       mb / tk, mb / tp, ratio);
	free(offs);

	offs = random_offsets(b, RAND_OPS);
	setup_slots(b, RAND_BATCH, RAND_BS);
	compare(b, offs, RAND_OPS, rounds, &tk, &tp, &ratio);
	printf("blk 4KiB rand read: kiln %.0f IOPS, pread %.0f IOPS, ratio "
	       "%.2f (target >= 0.8)\n",
	       RAND_OPS / tk, RAND_OPS / tp, ratio);
	free(offs);

	virtio_blk_destroy(&b->dev);
	block_backend_destroy(b->be);
	close(b->fd);
	munmap(b->ram, RAM_SIZE);
	free(b);
	return 0;
}
