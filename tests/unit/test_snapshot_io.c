/* SPDX-License-Identifier: MIT */
/* The snapshot state file's encoding (src/util/snapshot_io.c): records
 * round-trip; a foreign file, a newer or older major version, a bad CRC, a
 * truncated file and broken framing are refused; reads past a payload's end
 * set `bad` and return zeros instead of reading on; strings with a NUL or
 * longer than their buffer are refused. Restores of whole snapshots are the
 * KVM tier's (tests/support/snapshot_check.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "util/snapshot_io.h"

static void make(struct snapshot_writer *w)
{
	snapshot_writer_init(w);
	sw_record(w, 1, SNAPSHOT_MANDATORY);
	sw_u8(w, 0xab);
	sw_u16(w, 0xbeef);
	sw_u32(w, 0xdeadbeef);
	sw_u64(w, 0x0123456789abcdefull);
	sw_str(w, "hello");
	sw_record(w, 2, 0);
	sw_bytes(w, "xyz", 3);
	sw_record(w, 3, SNAPSHOT_MANDATORY); /* empty */
	assert_int_equal(snapshot_finish(w), 0);
}

static void round_trip(void **state)
{
	struct snapshot_writer w;
	struct snapshot_reader body, p;
	const char *why = NULL;
	uint32_t tag, flags;
	char s[16];
	uint8_t b[3];

	(void)state;
	make(&w);
	assert_int_equal(snapshot_open(w.buf, w.len, &body, &why), 0);
	assert_int_equal(sr_record(&body, &tag, &flags, &p), 1);
	assert_int_equal(tag, 1);
	assert_int_equal(flags, SNAPSHOT_MANDATORY);
	assert_int_equal(sr_u8(&p), 0xab);
	assert_int_equal(sr_u16(&p), 0xbeef);
	assert_int_equal(sr_u32(&p), 0xdeadbeef);
	assert_true(sr_u64(&p) == 0x0123456789abcdefull);
	sr_str(&p, s, sizeof(s));
	assert_string_equal(s, "hello");
	assert_false(p.bad);
	/* past the payload's end: zeros and bad, never the next record */
	assert_int_equal(sr_u32(&p), 0);
	assert_true(p.bad);
	assert_int_equal(sr_record(&body, &tag, &flags, &p), 1);
	assert_int_equal(tag, 2);
	assert_int_equal(flags, 0);
	sr_bytes(&p, b, 3);
	assert_memory_equal(b, "xyz", 3);
	assert_int_equal(sr_record(&body, &tag, &flags, &p), 1);
	assert_int_equal(tag, 3);
	assert_int_equal(p.len, 0);
	assert_int_equal(sr_record(&body, &tag, &flags, &p), 0); /* END */
	snapshot_writer_free(&w);
}

static void fix_crc(uint8_t *b, size_t len)
{
	uint32_t crc = (uint32_t)crc32(0L, b, (uInt)(len - 4));

	for (int i = 0; i < 4; i++)
		b[len - 4 + i] = (uint8_t)(crc >> (8 * i));
}

static void refusals(void **state)
{
	struct snapshot_writer w;
	struct snapshot_reader body;
	const char *why;
	uint8_t *copy;

	(void)state;
	make(&w);
	copy = malloc(w.len);
	/* a bad CRC */
	memcpy(copy, w.buf, w.len);
	copy[20] ^= 1;
	assert_int_equal(snapshot_open(copy, w.len, &body, &why), -EBADMSG);
	assert_non_null(strstr(why, "checksum"));
	/* a newer major version (CRC right) */
	memcpy(copy, w.buf, w.len);
	copy[8] = SNAPSHOT_MAJOR + 1;
	fix_crc(copy, w.len);
	assert_int_equal(snapshot_open(copy, w.len, &body, &why),
			 -EPROTONOSUPPORT);
	assert_non_null(strstr(why, "newer"));
	/* an older one */
	copy[8] = SNAPSHOT_MAJOR - 1;
	fix_crc(copy, w.len);
	assert_int_equal(snapshot_open(copy, w.len, &body, &why),
			 -EPROTONOSUPPORT);
	/* not a snapshot */
	memcpy(copy, w.buf, w.len);
	copy[0] = 'X';
	assert_int_equal(snapshot_open(copy, w.len, &body, &why), -EINVAL);
	/* truncated anywhere */
	for (size_t n = 0; n < w.len; n += 7)
		assert_true(snapshot_open(w.buf, n, &body, &why) < 0);
	/* a record whose length runs past the end (CRC right) */
	memcpy(copy, w.buf, w.len);
	copy[SNAPSHOT_HDR_SIZE + 8] = 0xff;
	copy[SNAPSHOT_HDR_SIZE + 9] = 0xff;
	fix_crc(copy, w.len);
	{
		uint32_t tag, flags;
		struct snapshot_reader p;

		assert_int_equal(snapshot_open(copy, w.len, &body, &why), 0);
		assert_int_equal(sr_record(&body, &tag, &flags, &p), -1);
		assert_true(body.bad);
	}
	free(copy);
	snapshot_writer_free(&w);
}

static void hostile_strings(void **state)
{
	uint8_t buf[32];
	struct snapshot_reader r;
	char s[8];

	(void)state;
	/* longer than the buffer */
	memset(buf, 'a', sizeof(buf));
	buf[0] = 10, buf[1] = buf[2] = buf[3] = 0;
	r = (struct snapshot_reader){buf, sizeof(buf), 0, false};
	sr_str(&r, s, sizeof(s));
	assert_true(r.bad);
	assert_string_equal(s, "");
	/* a NUL inside */
	buf[0] = 4;
	buf[5] = 0;
	r = (struct snapshot_reader){buf, sizeof(buf), 0, false};
	sr_str(&r, s, sizeof(s));
	assert_true(r.bad);
	/* a length past the end */
	buf[0] = 0xff, buf[1] = 0xff, buf[2] = 0xff, buf[3] = 0xff;
	r = (struct snapshot_reader){buf, sizeof(buf), 0, false};
	sr_str(&r, s, sizeof(s));
	assert_true(r.bad);
	/* once bad, every read is zero */
	assert_int_equal(sr_u64(&r), 0);
	sr_bytes(&r, s, 4);
	assert_memory_equal(s, "\0\0\0\0", 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(refusals),
		cmocka_unit_test(hostile_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
