/* SPDX-License-Identifier: MIT */
#include "guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void guest_mem_init(struct guest_mem *m, uint8_t *host, uint64_t size)
{
	uint64_t low =
		size < GUEST_MMIO_HOLE_START ? size : GUEST_MMIO_HOLE_START;

	memset(m, 0, sizeof(*m));
	m->mapping = host;
	m->size = size;
	m->external = true;
	m->regions[0] = (struct guest_mem_region){0, low, host};
	m->nr_regions = 1;
	if (size > low) {
		m->regions[1] = (struct guest_mem_region){
			GUEST_4GIB, size - low, host + low};
		m->nr_regions = 2;
	}
}

int guest_mem_add_region(struct guest_mem *m, uint64_t gpa, uint64_t size,
			 uint8_t *host)
{
	if (size == 0 || gpa + size < gpa || !host)
		return -EINVAL;
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];

		if (gpa < r->gpa + r->size && r->gpa < gpa + size)
			return -EINVAL;
	}
	if (m->nr_regions == GUEST_MEM_MAX_REGIONS)
		return -ENOSPC;
	m->regions[m->nr_regions++] =
		(struct guest_mem_region){gpa, size, host};
	m->size += size;
	m->external = true;
	return 0;
}

int guest_mem_map(struct guest_mem *m, uint64_t size)
{
	void *p;

	if (size == 0 || size > (uint64_t)SIZE_MAX)
		return -EINVAL;
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Guest RAM is never worth a core dump and must not be merged by
	 * fork(); failures of these hints are harmless. */
	madvise(p, (size_t)size, MADV_DONTDUMP);
	madvise(p, (size_t)size, MADV_DONTFORK);
	guest_mem_init(m, p, size);
	m->external = false;
	return 0;
}

int guest_mem_map_file(struct guest_mem *m, int fd, uint64_t size, bool copy)
{
	void *p;

	if (size == 0 || size > (uint64_t)SIZE_MAX)
		return -EINVAL;
	if (!copy) {
		/* copy-on-write: pages the guest never writes stay the
		 * file's, shared in the page cache by every clone */
		p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_NORESERVE, fd, 0);
		if (p == MAP_FAILED)
			return -errno;
	} else {
		off_t data = 0, hole;

		p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return -errno;
		/* only the file's data: its holes are zero pages already */
		while ((data = lseek(fd, data, SEEK_DATA)) >= 0 &&
		       (uint64_t)data < size) {
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > size)
				hole = (off_t)size;
			for (off_t at = data; at < hole;) {
				ssize_t r = pread(fd, (uint8_t *)p + at,
						  (size_t)(hole - at), at);

				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0) {
					int err = r < 0 ? -errno : -EIO;

					munmap(p, (size_t)size);
					return err;
				}
				at += r;
			}
			data = hole;
		}
	}
	madvise(p, (size_t)size, MADV_DONTDUMP);
	madvise(p, (size_t)size, MADV_DONTFORK);
	guest_mem_init(m, p, size);
	m->external = false;
	m->file_backed = !copy;
	return 0;
}

void guest_mem_unmap(struct guest_mem *m)
{
	if (m->mapping && !m->external)
		munmap(m->mapping, (size_t)m->size);
	memset(m, 0, sizeof(*m));
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->nr_regions; i++) {
		const struct guest_mem_region *r = &m->regions[i];

		/* Written so that no sum can wrap: offset and len are each
		 * compared against what is left of the region. */
		if (gpa < r->gpa || gpa - r->gpa > r->size)
			continue;
		uint64_t off = gpa - r->gpa;
		/* too long for this region; a touching next region may
		 * start exactly here, so keep looking */
		if (len > r->size - off)
			continue;
		return r->host + off;
	}
	return NULL;
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src,
		    uint64_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, (size_t)len);
	return 0;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst,
		   uint64_t len)
{
	const void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, (size_t)len);
	return 0;
}

uint64_t guest_mem_low_end(const struct guest_mem *m)
{
	return m->nr_regions ? m->regions[0].size : 0;
}
