/* SPDX-License-Identifier: MIT */
/*
 * The snapshot state file's encoding: a header, then tagged records, then
 * an END record holding the CRC-32 of everything before it.
 *
 *   header  "KILNSNAP" | u16 major | u16 minor | u32 0
 *   record  u32 tag | u32 flags (bit 0: mandatory) | u64 length | payload
 *   END     tag 0, length 4, payload: CRC-32 (zlib) of the file up to it
 *
 * Numbers are little-endian. A reader refuses a newer major version, a bad
 * CRC, a truncated file and an unknown record marked mandatory; it skips
 * unknown optional ones. Every read is bounds-checked: a short or hostile
 * payload sets `bad`, never reads past the buffer.
 */
#ifndef KILN_UTIL_SNAPSHOT_IO_H
#define KILN_UTIL_SNAPSHOT_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAPSHOT_MAGIC	   "KILNSNAP"
#define SNAPSHOT_MAJOR	   1
#define SNAPSHOT_MINOR	   0
#define SNAPSHOT_HDR_SIZE  16
#define SNAPSHOT_MANDATORY 1u
#define SNAPSHOT_MAX_STATE (64u << 20) /* a state file, at most */

enum snapshot_tag {
	SNAP_END = 0,
	SNAP_HOST = 1,	 /* who made it: kiln version, host fingerprint */
	SNAP_CONFIG = 2, /* cpus, memory, cmdline, devices */
	SNAP_VM = 3,	 /* the architecture's VM state (x86: PIT, irqchip,
			    clock) */
	SNAP_VCPU = 4,	 /* one vCPU's state */
	SNAP_SERIAL = 5, /* the UART */
	SNAP_DEVICE = 6, /* one virtio device: transport, queues, device */
};

struct snapshot_writer {
	uint8_t *buf;
	size_t len, cap;
	size_t record; /* where the open record's length goes, 0: none */
	bool oom;
};

struct snapshot_reader {
	const uint8_t *p;
	size_t len, off;
	bool bad; /* a read went past the end */
};

/* A writer with the header written; snapshot_finish adds END. */
void snapshot_writer_init(struct snapshot_writer *w);
void snapshot_writer_free(struct snapshot_writer *w);
/* Opens a record (closing any open one). */
void sw_record(struct snapshot_writer *w, uint32_t tag, uint32_t flags);
void sw_u8(struct snapshot_writer *w, uint8_t v);
void sw_u16(struct snapshot_writer *w, uint16_t v);
void sw_u32(struct snapshot_writer *w, uint32_t v);
void sw_u64(struct snapshot_writer *w, uint64_t v);
void sw_bytes(struct snapshot_writer *w, const void *p, size_t n);
/* A u32 length, then the bytes (no NUL). */
void sw_str(struct snapshot_writer *w, const char *s);
/* Closes the open record and appends END: 0, or -ENOMEM. */
int snapshot_finish(struct snapshot_writer *w);

/* Checks header, version and CRC of a whole state file: 0, or -EINVAL
 * (not a snapshot, or truncated), -EPROTONOSUPPORT (newer major version),
 * -EBADMSG (bad CRC); *why gets a message for the user. On success *body
 * reads the records. */
int snapshot_open(const uint8_t *buf, size_t len, struct snapshot_reader *body,
		  const char **why);
/* The next record: 1 and its tag, flags and payload reader; 0 at END; -1
 * when the framing is broken (sets body->bad). */
int sr_record(struct snapshot_reader *body, uint32_t *tag, uint32_t *flags,
	      struct snapshot_reader *payload);
uint8_t sr_u8(struct snapshot_reader *r);
uint16_t sr_u16(struct snapshot_reader *r);
uint32_t sr_u32(struct snapshot_reader *r);
uint64_t sr_u64(struct snapshot_reader *r);
/* n bytes into dst (zeros and `bad` when short). */
void sr_bytes(struct snapshot_reader *r, void *dst, size_t n);
/* A string into buf (NUL-terminated); `bad` if longer than cap - 1 or it
 * holds a NUL. */
void sr_str(struct snapshot_reader *r, char *buf, size_t cap);

#endif
