/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM and the one place where a guest-physical address becomes a host
 * pointer (guest_mem_ptr). Every other piece of kiln goes through it, so a
 * hostile address or length can never reach outside guest RAM.
 */
#ifndef KILN_MEM_GUEST_MEM_H
#define KILN_MEM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RAM above this address is moved above 4 GiB; [hole, 4 GiB) is for MMIO. */
#define GUEST_MMIO_HOLE_START 0xC0000000ull
#define GUEST_4GIB	      0x100000000ull
#define GUEST_MEM_MAX_REGIONS 8 /* vhost-user sends up to 8 */

struct guest_mem_region {
	uint64_t gpa;  /* first guest-physical address */
	uint64_t size; /* bytes */
	uint8_t *host; /* host address of gpa */
};

struct guest_mem {
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned nr_regions;
	uint8_t *mapping; /* whole host mapping (mmap'd unless external) */
	uint64_t size;	  /* total RAM bytes */
	bool external;	  /* mapping not owned (unit tests) */
	bool file_backed; /* a private mapping of a snapshot's memory file */
};

/* Lays out `size` bytes of RAM at `host`: [0, min(size, hole)) and the rest
 * from 4 GiB. Does not allocate; used by guest_mem_map and by tests. */
void guest_mem_init(struct guest_mem *m, uint8_t *host, uint64_t size);

/* Adds a region backed by host memory the caller owns (e.g. a vhost-user
 * memory-table mapping). -EINVAL if it overlaps another region or wraps,
 * -ENOSPC when full. */
int guest_mem_add_region(struct guest_mem *m, uint64_t gpa, uint64_t size,
			 uint8_t *host);

/* mmaps `size` bytes of anonymous RAM (MAP_NORESERVE: untouched memory costs
 * nothing) and lays it out. Returns 0 or -errno. */
int guest_mem_map(struct guest_mem *m, uint64_t size);

/* Maps `size` bytes of RAM from fd (a snapshot's memory file, the layout
 * guest_mem_init gives): MAP_PRIVATE, so the file is never written; with
 * copy, an anonymous copy instead (the file's data read in, holes left
 * untouched). 0 or -errno. */
int guest_mem_map_file(struct guest_mem *m, int fd, uint64_t size, bool copy);
/* Unmaps RAM mapped by guest_mem_map; safe on a zeroed struct. */
void guest_mem_unmap(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len) if the whole range is inside one RAM
 * region, else NULL. Overflow-safe for any gpa/len. len 0 is allowed at any
 * address inside a region or at its end. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* True if [gpa, gpa+len) is guest RAM (same rule as guest_mem_ptr). */
static inline bool guest_mem_valid(const struct guest_mem *m, uint64_t gpa,
				   uint64_t len)
{
	return guest_mem_ptr(m, gpa, len) != NULL;
}

/* Copies into / out of guest RAM; -EFAULT if the range is not RAM. */
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src,
		    uint64_t len);
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst,
		   uint64_t len);

/* End (exclusive) of the RAM region that starts at 0: the usable RAM below
 * the MMIO hole. */
uint64_t guest_mem_low_end(const struct guest_mem *m);

#endif
