/* SPDX-License-Identifier: MIT */
#include "util/snapshot_io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void grow(struct snapshot_writer *w, size_t n)
{
	size_t cap = w->cap ? w->cap : 4096;
	uint8_t *b;

	if (w->oom)
		return;
	if (n > SNAPSHOT_MAX_STATE - w->len) {
		w->oom = true;
		return;
	}
	while (cap < w->len + n)
		cap *= 2;
	if (cap == w->cap)
		return;
	b = realloc(w->buf, cap);
	if (!b) {
		w->oom = true;
		return;
	}
	w->buf = b;
	w->cap = cap;
}

static void put_le(struct snapshot_writer *w, uint64_t v, unsigned n)
{
	grow(w, n);
	if (w->oom)
		return;
	for (unsigned i = 0; i < n; i++, v >>= 8)
		w->buf[w->len++] = (uint8_t)v;
}

void sw_u8(struct snapshot_writer *w, uint8_t v)
{
	put_le(w, v, 1);
}

void sw_u16(struct snapshot_writer *w, uint16_t v)
{
	put_le(w, v, 2);
}

void sw_u32(struct snapshot_writer *w, uint32_t v)
{
	put_le(w, v, 4);
}

void sw_u64(struct snapshot_writer *w, uint64_t v)
{
	put_le(w, v, 8);
}

void sw_bytes(struct snapshot_writer *w, const void *p, size_t n)
{
	grow(w, n);
	if (w->oom || !n)
		return;
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

void sw_str(struct snapshot_writer *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	sw_u32(w, (uint32_t)n);
	sw_bytes(w, s, n);
}

void snapshot_writer_init(struct snapshot_writer *w)
{
	memset(w, 0, sizeof(*w));
	sw_bytes(w, SNAPSHOT_MAGIC, 8);
	sw_u16(w, SNAPSHOT_MAJOR);
	sw_u16(w, SNAPSHOT_MINOR);
	sw_u32(w, 0);
}

void snapshot_writer_free(struct snapshot_writer *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

static void close_record(struct snapshot_writer *w)
{
	uint64_t n;

	if (!w->record || w->oom)
		return;
	n = w->len - w->record - 8;
	for (unsigned i = 0; i < 8; i++, n >>= 8)
		w->buf[w->record + i] = (uint8_t)n;
	w->record = 0;
}

void sw_record(struct snapshot_writer *w, uint32_t tag, uint32_t flags)
{
	close_record(w);
	sw_u32(w, tag);
	sw_u32(w, flags);
	w->record = w->len;
	sw_u64(w, 0);
}

int snapshot_finish(struct snapshot_writer *w)
{
	uint32_t crc;

	close_record(w);
	sw_u32(w, SNAP_END);
	sw_u32(w, SNAPSHOT_MANDATORY);
	sw_u64(w, 4);
	if (w->oom)
		return -ENOMEM;
	crc = (uint32_t)crc32(0L, w->buf, (uInt)w->len);
	sw_u32(w, crc);
	return w->oom ? -ENOMEM : 0;
}

/* ---- reading ---- */

static uint64_t get_le(struct snapshot_reader *r, unsigned n)
{
	uint64_t v = 0;

	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)r->p[r->off + i] << (8 * i);
	r->off += n;
	return v;
}

uint8_t sr_u8(struct snapshot_reader *r)
{
	return (uint8_t)get_le(r, 1);
}

uint16_t sr_u16(struct snapshot_reader *r)
{
	return (uint16_t)get_le(r, 2);
}

uint32_t sr_u32(struct snapshot_reader *r)
{
	return (uint32_t)get_le(r, 4);
}

uint64_t sr_u64(struct snapshot_reader *r)
{
	return get_le(r, 8);
}

void sr_bytes(struct snapshot_reader *r, void *dst, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		memset(dst, 0, n);
		return;
	}
	memcpy(dst, r->p + r->off, n);
	r->off += n;
}

void sr_str(struct snapshot_reader *r, char *buf, size_t cap)
{
	uint32_t n = sr_u32(r);

	buf[0] = 0;
	if (r->bad || n >= cap || n > r->len - r->off) {
		r->bad = true;
		return;
	}
	memcpy(buf, r->p + r->off, n);
	buf[n] = 0;
	r->off += n;
	if (strlen(buf) != n)
		r->bad = true;
}

int snapshot_open(const uint8_t *buf, size_t len, struct snapshot_reader *body,
		  const char **why)
{
	struct snapshot_reader h = {buf, len, 0, false};
	uint8_t magic[8];
	uint16_t major;
	uint32_t crc;

	memset(body, 0, sizeof(*body));
	sr_bytes(&h, magic, 8);
	major = sr_u16(&h);
	(void)sr_u16(&h);
	(void)sr_u32(&h);
	if (h.bad || memcmp(magic, SNAPSHOT_MAGIC, 8)) {
		*why = "not a kiln snapshot state file";
		return -EINVAL;
	}
	if (major > SNAPSHOT_MAJOR) {
		*why = "made by a newer kiln (state format major version "
		       "higher than this kiln reads)";
		return -EPROTONOSUPPORT;
	}
	if (major < SNAPSHOT_MAJOR) {
		*why = "made by an older kiln whose state format this kiln "
		       "no longer reads";
		return -EPROTONOSUPPORT;
	}
	/* END is the last 20 bytes: tag, flags, length 4, CRC */
	if (len < SNAPSHOT_HDR_SIZE + 20) {
		*why = "truncated (no END record)";
		return -EINVAL;
	}
	{
		struct snapshot_reader e = {buf, len, len - 20, false};
		uint32_t tag = sr_u32(&e), flags = sr_u32(&e);
		uint64_t n = sr_u64(&e);

		crc = sr_u32(&e);
		if (tag != SNAP_END || n != 4 ||
		    !(flags & SNAPSHOT_MANDATORY)) {
			*why = "truncated (no END record)";
			return -EINVAL;
		}
	}
	if ((uint32_t)crc32(0L, buf, (uInt)(len - 4)) != crc) {
		*why = "checksum mismatch (the state file is corrupt)";
		return -EBADMSG;
	}
	body->p = buf;
	body->len = len - 20; /* END is not a record to iterate */
	body->off = SNAPSHOT_HDR_SIZE;
	return 0;
}

int sr_record(struct snapshot_reader *body, uint32_t *tag, uint32_t *flags,
	      struct snapshot_reader *payload)
{
	uint64_t n;

	if (body->off == body->len)
		return 0;
	*tag = sr_u32(body);
	*flags = sr_u32(body);
	n = sr_u64(body);
	if (body->bad || n > body->len - body->off) {
		body->bad = true;
		return -1;
	}
	*payload = (struct snapshot_reader){body->p + body->off, (size_t)n, 0,
					    false};
	body->off += (size_t)n;
	return 1;
}
