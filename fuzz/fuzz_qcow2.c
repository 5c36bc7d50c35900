/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: kiln's qcow2 backend on hostile images (a user may be
 * handed any file, and a raw disk a guest wrote can look like one). The
 * input is the image file (in a memfd); the first byte picks read-only or
 * read-write. Opened through block_open as the device does, then read
 * from start to end in pieces and, when writable, written across cluster
 * boundaries and read again: every offset, size and table entry in it is
 * the fuzzer's. No crash, no read outside buffers, no hang.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends/block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct block_open_opts o = {.fd = -1, .format = BLOCK_FORMAT_QCOW2};
	struct block_backend *be;
	static uint8_t buf[70000];
	uint64_t disk, step;
	int fd;

	if (size < 1)
		return 0;
	fd = memfd_create("img", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) {
		close(fd);
		return 0;
	}
	o.fd = fd;
	o.read_only = data[0] & 1;
	if (block_open(&o, NULL, &be) == 0) {
		disk = block_backend_size(be);
		/* at most 64 reads, however large the disk claims to be */
		step = disk / 64 > sizeof(buf) ? disk / 64 : sizeof(buf);
		for (uint64_t off = 0; off < disk; off += step) {
			struct iovec v = {buf, disk - off < sizeof(buf)
						       ? (size_t)(disk - off)
						       : sizeof(buf)};

			(void)be->ops->readv(be, &v, 1, off);
		}
		if (!o.read_only) {
			struct iovec v = {buf, 70000 < disk ? 70000 : disk};

			memset(buf, 0x5a, sizeof(buf));
			(void)be->ops->writev(be, &v, 1, 0);
			(void)be->ops->write_zeroes(be, disk / 2, 512, false);
			(void)be->ops->readv(be, &v, 1, 0);
			(void)be->ops->flush(be);
		}
		block_backend_destroy(be);
	}
	close(fd);
	return 0;
}
