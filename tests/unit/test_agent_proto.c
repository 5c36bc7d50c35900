/* SPDX-License-Identifier: MIT */
/*
 * Guest agent protocol: the frame codec on good, malformed, truncated and
 * oversized frames; EXEC bodies with too many arguments, unterminated
 * strings and lying lengths; the other payloads' checks; the CLI status
 * mapping; the host client against a fake (hostile) agent on a socketpair,
 * whose frames are written before the client reads them; and the hybrid
 * vsock helpers against a fake device in a child process.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <kiln/agent_proto.h>

#include "agent/client.h"

static uint8_t frame[KILN_AGENT_HDR_SIZE + KILN_AGENT_MAX_FRAME + 64];

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* ---- headers and frames ---- */

static void test_hdr_roundtrip(void **state)
{
	struct kiln_agent_hdr h;

	(void)state;
	kiln_agent_hdr_encode(frame, KILN_AGENT_EXEC, 7, 1234);
	assert_memory_equal(frame, "KAGT", 4);
	assert_int_equal(kiln_agent_hdr_decode(frame, 0, &h), 0);
	assert_int_equal(h.type, KILN_AGENT_EXEC);
	assert_int_equal(h.session, 7);
	assert_int_equal(h.length, 1234);
	assert_int_equal(h.version, KILN_AGENT_VERSION);
	/* a request is not a response */
	assert_int_equal(kiln_agent_hdr_decode(frame, 1, &h), -EPROTO);
}

static void test_hdr_bad_fields(void **state)
{
	struct kiln_agent_hdr h;

	(void)state;
	kiln_agent_hdr_encode(frame, KILN_AGENT_STDOUT, 1, 10);
	frame[0] ^= 0xff;
	assert_int_equal(kiln_agent_hdr_decode(frame, 1, &h), -EBADMSG);

	kiln_agent_hdr_encode(frame, KILN_AGENT_STDOUT, 1, 10);
	le16(frame + 4, 2);
	assert_int_equal(kiln_agent_hdr_decode(frame, 1, &h), -EPROTONOSUPPORT);
	le16(frame + 4, 0);
	assert_int_equal(kiln_agent_hdr_decode(frame, 1, &h), -EPROTONOSUPPORT);

	kiln_agent_hdr_encode(frame, KILN_AGENT_STDOUT, 1,
			      KILN_AGENT_MAX_FRAME + 1);
	assert_int_equal(kiln_agent_hdr_decode(frame, 1, &h), -EMSGSIZE);
	le32(frame + 12, 0xffffffffu);
	assert_int_equal(kiln_agent_hdr_decode(frame, 1, &h), -EMSGSIZE);

	kiln_agent_hdr_encode(frame, 0x1234, 1, 0);
	assert_int_equal(kiln_agent_hdr_decode(frame, 0, &h), -EPROTO);
	kiln_agent_hdr_encode(frame, 0x8000, 1, 0);
	assert_int_equal(kiln_agent_hdr_decode(frame, 1, &h), -EPROTO);

	/* session 0 is the connection's; HELLO/READY only live there */
	kiln_agent_hdr_encode(frame, KILN_AGENT_STDIN, 0, 1);
	assert_int_equal(kiln_agent_hdr_decode(frame, 0, &h), -EPROTO);
	kiln_agent_hdr_encode(frame, KILN_AGENT_HELLO, 3, 8);
	assert_int_equal(kiln_agent_hdr_decode(frame, 0, &h), -EPROTO);
	kiln_agent_hdr_encode(frame, KILN_AGENT_ERROR, 0, 8);
	assert_int_equal(kiln_agent_hdr_decode(frame, 1, &h), 0);
}

/* SHUTDOWN: a request on session 0 only, with exactly 4 bytes of flags. */
static void test_shutdown_frame(void **state)
{
	struct kiln_agent_hdr h;
	const uint8_t *p = NULL;

	(void)state;
	memset(frame, 0, 16 + 8);
	kiln_agent_hdr_encode(frame, KILN_AGENT_SHUTDOWN, 0, 4);
	assert_int_equal(kiln_agent_frame_next(frame, 20, 0, &h, &p), 20);
	assert_int_equal(h.type, KILN_AGENT_SHUTDOWN);
	assert_string_equal(kiln_agent_type_name(KILN_AGENT_SHUTDOWN),
			    "SHUTDOWN");
	/* from the agent's side it is not a response */
	assert_int_equal(kiln_agent_frame_next(frame, 20, 1, &h, &p), -EPROTO);
	kiln_agent_hdr_encode(frame, KILN_AGENT_SHUTDOWN, 1, 4);
	assert_int_equal(kiln_agent_frame_next(frame, 20, 0, &h, &p), -EPROTO);
	kiln_agent_hdr_encode(frame, KILN_AGENT_SHUTDOWN, 0, 0);
	assert_int_equal(kiln_agent_frame_next(frame, 16, 0, &h, &p), -EBADMSG);
	kiln_agent_hdr_encode(frame, KILN_AGENT_SHUTDOWN, 0, 8);
	assert_int_equal(kiln_agent_frame_next(frame, 24, 0, &h, &p), -EBADMSG);
}

static void test_frame_truncated(void **state)
{
	struct kiln_agent_hdr h;
	const uint8_t *p = NULL;
	struct kiln_agent_signal sig = {9, KILN_AGENT_SIGNAL_GROUP};

	(void)state;
	kiln_agent_hdr_encode(frame, KILN_AGENT_SIGNAL, 5, 8);
	assert_int_equal(kiln_agent_signal_encode(frame + 16, 8, &sig), 8);
	/* every strict prefix needs more bytes, none is an error */
	for (size_t n = 0; n < 24; n++)
		assert_int_equal(kiln_agent_frame_next(frame, n, 0, &h, &p), 0);
	assert_int_equal(kiln_agent_frame_next(frame, 24, 0, &h, &p), 24);
	assert_ptr_equal(p, frame + 16);
	/* with the next frame's bytes behind it: still just this one */
	assert_int_equal(kiln_agent_frame_next(frame, 40, 0, &h, &p), 24);
}

static void test_frame_payload_sizes(void **state)
{
	struct kiln_agent_hdr h;
	const uint8_t *p;

	(void)state;
	memset(frame, 0, 64);
	/* fixed-size payloads must be exact, checked from the header alone */
	kiln_agent_hdr_encode(frame, KILN_AGENT_SIGNAL, 5, 7);
	assert_int_equal(kiln_agent_frame_next(frame, 16, 0, &h, &p), -EBADMSG);
	kiln_agent_hdr_encode(frame, KILN_AGENT_SIGNAL, 5, 9);
	assert_int_equal(kiln_agent_frame_next(frame, 16, 0, &h, &p), -EBADMSG);
	kiln_agent_hdr_encode(frame, KILN_AGENT_STDIN_EOF, 5, 1);
	assert_int_equal(kiln_agent_frame_next(frame, 17, 0, &h, &p), -EBADMSG);
	/* empty data frames are refused */
	kiln_agent_hdr_encode(frame, KILN_AGENT_STDIN, 5, 0);
	assert_int_equal(kiln_agent_frame_next(frame, 16, 0, &h, &p), -EBADMSG);
	kiln_agent_hdr_encode(frame, KILN_AGENT_EXEC, 5, 37);
	assert_int_equal(kiln_agent_frame_next(frame, 16, 0, &h, &p), -EBADMSG);
	kiln_agent_hdr_encode(frame, KILN_AGENT_ERROR, 5,
			      8 + KILN_AGENT_MAX_MSG + 1);
	assert_int_equal(kiln_agent_frame_next(frame, 16, 1, &h, &p), -EBADMSG);
	/* oversized: refused from the header, before any payload arrives */
	kiln_agent_hdr_encode(frame, KILN_AGENT_STDOUT, 5,
			      KILN_AGENT_MAX_FRAME + 1);
	assert_int_equal(kiln_agent_frame_next(frame, 16, 1, &h, &p),
			 -EMSGSIZE);
	/* the largest allowed data frame is fine */
	kiln_agent_hdr_encode(frame, KILN_AGENT_STDOUT, 5,
			      KILN_AGENT_MAX_FRAME);
	assert_int_equal(kiln_agent_frame_next(frame, 16, 1, &h, &p), 0);
	assert_int_equal(kiln_agent_frame_next(frame,
					       KILN_AGENT_HDR_SIZE +
						       KILN_AGENT_MAX_FRAME,
					       1, &h, &p),
			 KILN_AGENT_HDR_SIZE + KILN_AGENT_MAX_FRAME);
}

/* ---- EXEC bodies ---- */

static void test_exec_roundtrip(void **state)
{
	static struct kiln_agent_exec_vec vec;
	const char *argv[] = {"sh", "-c", "echo $X", NULL};
	const char *env[] = {"X=1", "EMPTY=", NULL};
	struct kiln_agent_exec_req in = {
		.flags = KILN_AGENT_EXEC_STDIN | KILN_AGENT_EXEC_PTY |
			 KILN_AGENT_EXEC_UID,
		.uid = 1000,
		.timeout_ms = 5000,
		.rows = 40,
		.cols = 120,
		.cwd = "/tmp",
		.argv = argv,
		.env = env,
	};
	struct kiln_agent_exec_req out;
	int n;

	(void)state;
	n = kiln_agent_exec_encode(frame, sizeof(frame), &in);
	assert_true(n > 28);
	assert_int_equal(kiln_agent_exec_decode(frame, (size_t)n, &out, &vec),
			 0);
	assert_int_equal(out.flags, in.flags);
	assert_int_equal(out.uid, 1000);
	assert_int_equal(out.timeout_ms, 5000);
	assert_int_equal(out.rows, 40);
	assert_int_equal(out.cols, 120);
	assert_string_equal(out.cwd, "/tmp");
	assert_int_equal(out.argc, 3);
	assert_string_equal(out.argv[2], "echo $X");
	assert_null(out.argv[3]);
	assert_int_equal(out.envc, 2);
	assert_string_equal(out.env[1], "EMPTY=");
	assert_null(out.env[2]);
	/* every truncation of a valid body is refused */
	for (int len = 0; len < n; len++)
		assert_int_equal(
			kiln_agent_exec_decode(frame, (size_t)len, &out, &vec),
			-EBADMSG);
	/* and so are trailing bytes */
	assert_int_equal(
		kiln_agent_exec_decode(frame, (size_t)n + 1, &out, &vec),
		-EBADMSG);
}

static void test_exec_encode_limits(void **state)
{
	static const char *many[KILN_AGENT_MAX_ARGS + 2];
	const char *argv[] = {"true", NULL};
	const char *empty[] = {NULL};
	const char *bad_env[] = {"NOEQUALS", NULL};
	const char *bad_env2[] = {"=x", NULL};
	struct kiln_agent_exec_req m = {.argv = argv};
	char *big;

	(void)state;
	for (unsigned i = 0; i <= KILN_AGENT_MAX_ARGS; i++)
		many[i] = "a";
	m.argv = many;
	assert_int_equal(kiln_agent_exec_encode(frame, sizeof(frame), &m),
			 -E2BIG);
	m.argv = NULL;
	assert_int_equal(kiln_agent_exec_encode(frame, sizeof(frame), &m),
			 -EINVAL);
	m.argv = empty;
	assert_int_equal(kiln_agent_exec_encode(frame, sizeof(frame), &m),
			 -EINVAL);
	m.argv = argv;
	m.env = bad_env;
	assert_int_equal(kiln_agent_exec_encode(frame, sizeof(frame), &m),
			 -EINVAL);
	m.env = bad_env2;
	assert_int_equal(kiln_agent_exec_encode(frame, sizeof(frame), &m),
			 -EINVAL);
	m.env = NULL;
	m.flags = 0x100;
	assert_int_equal(kiln_agent_exec_encode(frame, sizeof(frame), &m),
			 -EINVAL);
	m.flags = 0;
	assert_int_equal(kiln_agent_exec_encode(frame, 20, &m), -ENOBUFS);
	assert_int_equal(kiln_agent_exec_encode(frame, 40, &m), -ENOBUFS);
	assert_int_equal(kiln_agent_exec_encode(frame, 42, &m), 42);

	/* one argument as large as a frame cannot be carried */
	big = malloc(KILN_AGENT_MAX_FRAME);
	assert_non_null(big);
	memset(big, 'x', KILN_AGENT_MAX_FRAME - 1);
	big[KILN_AGENT_MAX_FRAME - 1] = '\0';
	argv[0] = big;
	assert_int_equal(
		kiln_agent_exec_encode(frame, KILN_AGENT_MAX_FRAME, &m),
		-E2BIG);
	/* nor a cwd of PATH_MAX */
	argv[0] = "true";
	big[KILN_AGENT_MAX_PATH] = '\0';
	m.cwd = big;
	assert_int_equal(kiln_agent_exec_encode(frame, sizeof(frame), &m),
			 -EINVAL);
	free(big);
}

/* Builds a body by hand: fixed part, then strings given as (len, bytes). */
static size_t body(uint8_t *p, uint32_t flags, uint32_t argc, uint32_t envc)
{
	memset(p, 0, 28);
	le32(p, flags);
	le32(p + 20, argc);
	le32(p + 24, envc);
	return 28;
}

static size_t str(uint8_t *p, size_t pos, uint32_t n, const char *bytes,
		  size_t blen)
{
	le32(p + pos, n);
	memcpy(p + pos + 4, bytes, blen);
	return pos + 4 + blen;
}

static void test_exec_decode_malformed(void **state)
{
	static struct kiln_agent_exec_vec vec;
	struct kiln_agent_exec_req m;
	size_t n;

	(void)state;
	/* well formed: cwd "", argv {"ls"} */
	n = body(frame, 0, 1, 0);
	n = str(frame, n, 1, "", 1);
	n = str(frame, n, 3, "ls", 3);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), 0);
	assert_string_equal(m.argv[0], "ls");
	assert_string_equal(m.cwd, "");

	/* unterminated string: its last byte is not NUL */
	n = body(frame, 0, 1, 0);
	n = str(frame, n, 1, "", 1);
	n = str(frame, n, 2, "ls", 2);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	/* embedded NUL */
	n = body(frame, 0, 1, 0);
	n = str(frame, n, 1, "", 1);
	n = str(frame, n, 4, "l\0s", 4);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	/* zero-length string */
	n = body(frame, 0, 1, 0);
	n = str(frame, n, 0, "", 0);
	n = str(frame, n, 3, "ls", 3);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	/* lengths that overrun the body, including ones that wrap */
	static const uint32_t lies[] = {4,	     5,		  0x7fffffffu,
					0xfffffffbu, 0xfffffffcu, 0xffffffffu};
	for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		n = body(frame, 0, 1, 0);
		n = str(frame, n, 1, "", 1);
		n = str(frame, n, lies[i], "ls", 3);
		assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec),
				 -EBADMSG);
	}
	/* argc 0, too many args/env, counts the body cannot hold */
	n = body(frame, 0, 0, 0);
	n = str(frame, n, 1, "", 1);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	n = body(frame, 0, KILN_AGENT_MAX_ARGS + 1, 0);
	n = str(frame, n, 1, "", 1);
	for (unsigned i = 0; i <= KILN_AGENT_MAX_ARGS; i++)
		n = str(frame, n, 2, "a", 2);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	n = body(frame, 0, 1, KILN_AGENT_MAX_ENV + 1);
	n = str(frame, n, 1, "", 1);
	n = str(frame, n, 2, "a", 2);
	for (unsigned i = 0; i <= KILN_AGENT_MAX_ENV; i++)
		n = str(frame, n, 4, "A=1", 4);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	n = body(frame, 0, 1000, 0);
	n = str(frame, n, 1, "", 1);
	n = str(frame, n, 2, "a", 2);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	n = body(frame, 0, 0xffffffffu, 0xffffffffu);
	n = str(frame, n, 1, "", 1);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	/* env entries need NAME= */
	n = body(frame, 0, 1, 1);
	n = str(frame, n, 1, "", 1);
	n = str(frame, n, 2, "a", 2);
	n = str(frame, n, 4, "ABC", 4);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	/* unknown flags */
	n = body(frame, 0x80, 1, 0);
	n = str(frame, n, 1, "", 1);
	n = str(frame, n, 2, "a", 2);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
	/* cwd longer than a path */
	n = body(frame, 0, 1, 0);
	memset(frame + n + 4, 'd', KILN_AGENT_MAX_PATH);
	frame[n + 4 + KILN_AGENT_MAX_PATH] = '\0';
	le32(frame + n, KILN_AGENT_MAX_PATH + 1);
	n += 4 + KILN_AGENT_MAX_PATH + 1;
	n = str(frame, n, 2, "a", 2);
	assert_int_equal(kiln_agent_exec_decode(frame, n, &m, &vec), -EBADMSG);
}

/* ---- other payloads ---- */

static void test_small_payloads(void **state)
{
	struct kiln_agent_ready r = {1, KILN_AGENT_MAX_FRAME, 64, 65536,
				     "agent"};
	struct kiln_agent_ready r2;
	struct kiln_agent_started st;
	struct kiln_agent_signal sig = {0, 0};
	struct kiln_agent_exit ex;
	struct kiln_agent_hello hello;
	uint8_t p[64];
	int n;

	(void)state;
	n = kiln_agent_ready_encode(p, sizeof(p), &r);
	assert_int_equal(n, 21);
	assert_int_equal(kiln_agent_ready_decode(p, (size_t)n, &r2), 0);
	assert_string_equal(r2.name, "agent");
	p[18] = 0; /* NUL inside the name */
	assert_int_equal(kiln_agent_ready_decode(p, (size_t)n, &r2), -EBADMSG);
	r.max_frame = 100; /* cannot take a data chunk */
	n = kiln_agent_ready_encode(p, sizeof(p), &r);
	assert_int_equal(kiln_agent_ready_decode(p, (size_t)n, &r2), -EBADMSG);
	r.max_frame = KILN_AGENT_MAX_FRAME;
	r.stdin_window = KILN_AGENT_MAX_WINDOW + 1;
	n = kiln_agent_ready_encode(p, sizeof(p), &r);
	assert_int_equal(kiln_agent_ready_decode(p, (size_t)n, &r2), -EBADMSG);

	le32(p, 1);
	le32(p + 4, 1);
	assert_int_equal(kiln_agent_hello_decode(p, 8, &hello), -EBADMSG);
	le32(p + 4, 0);
	assert_int_equal(kiln_agent_hello_decode(p, 8, &hello), 0);
	assert_int_equal(kiln_agent_hello_decode(p, 7, &hello), -EBADMSG);

	le32(p, 0);
	le32(p + 4, 0);
	assert_int_equal(kiln_agent_started_decode(p, 8, &st), -EBADMSG);
	le32(p, 42);
	le32(p + 4, KILN_AGENT_MAX_WINDOW + 1);
	assert_int_equal(kiln_agent_started_decode(p, 8, &st), -EBADMSG);

	assert_int_equal(kiln_agent_signal_encode(p, 8, &sig), -EINVAL);
	sig.signo = 65;
	assert_int_equal(kiln_agent_signal_encode(p, 8, &sig), -EINVAL);
	le32(p, 65);
	le32(p + 4, 0);
	assert_int_equal(kiln_agent_signal_decode(p, 8, &sig), -EBADMSG);
	le32(p, 9);
	le32(p + 4, 2);
	assert_int_equal(kiln_agent_signal_decode(p, 8, &sig), -EBADMSG);

	/* EXIT: how, and a value that fits it */
	le32(p, 2);
	le32(p + 4, 0);
	le32(p + 8, 0);
	assert_int_equal(kiln_agent_exit_decode(p, 12, &ex), -EBADMSG);
	le32(p, KILN_AGENT_EXITED);
	le32(p + 4, 256);
	assert_int_equal(kiln_agent_exit_decode(p, 12, &ex), -EBADMSG);
	le32(p, KILN_AGENT_SIGNALED);
	le32(p + 4, 0);
	assert_int_equal(kiln_agent_exit_decode(p, 12, &ex), -EBADMSG);
	le32(p + 4, 9);
	le32(p + 8, 2);
	assert_int_equal(kiln_agent_exit_decode(p, 12, &ex), -EBADMSG);
	le32(p + 8, KILN_AGENT_EXIT_TIMED_OUT);
	assert_int_equal(kiln_agent_exit_decode(p, 12, &ex), 0);
}

static void test_error_payload(void **state)
{
	struct kiln_agent_error e = {ENOENT, KILN_AGENT_ERR_EXEC, ""};
	struct kiln_agent_error d;
	uint8_t p[8 + KILN_AGENT_MAX_MSG + 16];
	int n;

	(void)state;
	memset(e.msg, 'm', KILN_AGENT_MAX_MSG);
	e.msg[KILN_AGENT_MAX_MSG] = '\0';
	n = kiln_agent_error_encode(p, sizeof(p), &e);
	assert_int_equal(n, 8 + KILN_AGENT_MAX_MSG);
	assert_int_equal(kiln_agent_error_decode(p, (size_t)n, &d), 0);
	assert_int_equal(strlen(d.msg), KILN_AGENT_MAX_MSG);
	assert_int_equal(d.err, ENOENT);
	p[20] = '\0';
	assert_int_equal(kiln_agent_error_decode(p, (size_t)n, &d), -EBADMSG);
	assert_int_equal(kiln_agent_error_decode(p, 7, &d), -EBADMSG);
	le32(p, 0);
	assert_int_equal(kiln_agent_error_decode(p, 8, &d), -EBADMSG);
	le32(p, 5000);
	assert_int_equal(kiln_agent_error_decode(p, 8, &d), -EBADMSG);
	le32(p, EIO);
	le32(p + 4, 0);
	assert_int_equal(kiln_agent_error_decode(p, 8, &d), -EBADMSG);
	le32(p + 4, KILN_AGENT_ERR_INTERNAL + 1);
	assert_int_equal(kiln_agent_error_decode(p, 8, &d), -EBADMSG);
	e.err = 0;
	assert_int_equal(kiln_agent_error_encode(p, sizeof(p), &e), -EINVAL);
}

static void test_file_req(void **state)
{
	struct kiln_agent_file_req r = {5u << 20, 0644, 0, "/tmp/x"};
	struct kiln_agent_file_req d;
	uint8_t p[64];
	int n;

	(void)state;
	n = kiln_agent_file_req_encode(p, sizeof(p), &r);
	assert_int_equal(n, 16 + 4 + 7);
	assert_int_equal(kiln_agent_file_req_decode(p, (size_t)n, &d), 0);
	assert_string_equal(d.path, "/tmp/x");
	assert_int_equal(d.size, 5u << 20);
	assert_int_equal(d.mode, 0644);
	assert_int_equal(kiln_agent_file_req_decode(p, (size_t)n - 1, &d),
			 -EBADMSG);
	assert_int_equal(kiln_agent_file_req_decode(p, (size_t)n + 1, &d),
			 -EBADMSG);

	r.path = "tmp/x";
	assert_int_equal(kiln_agent_file_req_encode(p, sizeof(p), &r), -EINVAL);
	r.path = "/tmp/x";
	r.size = KILN_AGENT_MAX_FILE + 1;
	assert_int_equal(kiln_agent_file_req_encode(p, sizeof(p), &r), -EINVAL);
	r.size = 1;
	r.mode = 010000;
	assert_int_equal(kiln_agent_file_req_encode(p, sizeof(p), &r), -EINVAL);
	r.mode = 0;
	assert_int_equal(kiln_agent_file_req_encode(p, 20, &r), -ENOBUFS);

	/* a relative path or a big size on the wire */
	n = kiln_agent_file_req_encode(p, sizeof(p), &r);
	p[20] = 't';
	assert_int_equal(kiln_agent_file_req_decode(p, (size_t)n, &d),
			 -EBADMSG);
	p[20] = '/';
	p[7] = 0x80;
	assert_int_equal(kiln_agent_file_req_decode(p, (size_t)n, &d),
			 -EBADMSG);
}

static void test_restored(void **state)
{
	struct kiln_agent_restored m = {0}, got;
	struct kiln_agent_restored_done d = {0, 5, 0}, dgot;
	struct kiln_agent_hdr h;
	const uint8_t *pl;
	uint8_t p[512], fr[600];
	int n;

	(void)state;
	m.wall_ns = 1765000000123456789ull;
	for (unsigned i = 0; i < KILN_AGENT_ENTROPY; i++)
		m.entropy[i] = (uint8_t)(255 - i);
	strcpy(m.id, "sb-42");
	strcpy(m.hostname, "web-1");
	n = kiln_agent_restored_encode(p, sizeof(p), &m);
	assert_true(n > 0);
	/* as a fr: session 0 only, request direction */
	kiln_agent_hdr_encode(fr, KILN_AGENT_RESTORED, 0, (uint32_t)n);
	memcpy(fr + KILN_AGENT_HDR_SIZE, p, (size_t)n);
	assert_int_equal(
		kiln_agent_frame_next(fr, KILN_AGENT_HDR_SIZE + n, 0, &h, &pl),
		KILN_AGENT_HDR_SIZE + n);
	assert_int_equal(kiln_agent_restored_decode(pl, h.length, &got), 0);
	assert_true(got.wall_ns == m.wall_ns);
	assert_memory_equal(got.entropy, m.entropy, KILN_AGENT_ENTROPY);
	assert_string_equal(got.id, "sb-42");
	assert_string_equal(got.hostname, "web-1");
	kiln_agent_hdr_encode(fr, KILN_AGENT_RESTORED, 3, (uint32_t)n);
	assert_true(kiln_agent_frame_next(fr, KILN_AGENT_HDR_SIZE + n, 0, &h,
					  &pl) < 0);
	/* an empty hostname keeps the guest's */
	m.hostname[0] = 0;
	n = kiln_agent_restored_encode(p, sizeof(p), &m);
	assert_true(n > 0);
	assert_int_equal(kiln_agent_restored_decode(p, (size_t)n, &got), 0);
	assert_string_equal(got.hostname, "");
	/* refused: no id, a hostname with other characters, cut short,
	 * trailing bytes */
	m.id[0] = 0;
	assert_int_equal(kiln_agent_restored_encode(p, sizeof(p), &m), -EINVAL);
	strcpy(m.id, "x");
	strcpy(m.hostname, "a b");
	assert_int_equal(kiln_agent_restored_encode(p, sizeof(p), &m), -EINVAL);
	strcpy(m.hostname, "ab");
	n = kiln_agent_restored_encode(p, sizeof(p), &m);
	p[n - 2] = ' '; /* "a " on the wire */
	assert_int_equal(kiln_agent_restored_decode(p, (size_t)n, &got),
			 -EBADMSG);
	p[n - 2] = 'b';
	for (int cut = 0; cut < n; cut++)
		assert_int_equal(
			kiln_agent_restored_decode(p, (size_t)cut, &got),
			-EBADMSG);
	p[n] = 0;
	assert_int_equal(kiln_agent_restored_decode(p, (size_t)n + 1, &got),
			 -EBADMSG);
	/* the answer */
	assert_int_equal(kiln_agent_restored_done_encode(p, sizeof(p), &d), 12);
	assert_int_equal(kiln_agent_restored_done_decode(p, 12, &dgot), 0);
	assert_int_equal(dgot.entropy_err, 5);
	p[0] = 0xff, p[1] = 0xff;
	assert_int_equal(kiln_agent_restored_done_decode(p, 12, &dgot),
			 -EBADMSG);
}

static void test_status_mapping(void **state)
{
	struct kiln_agent_exit ex = {KILN_AGENT_EXITED, 3, 0};
	struct kiln_agent_error er = {ENOENT, KILN_AGENT_ERR_EXEC, ""};

	(void)state;
	assert_int_equal(kiln_agent_exit_status(&ex), 3);
	ex.value = 0;
	assert_int_equal(kiln_agent_exit_status(&ex), 0);
	ex.value = 255;
	assert_int_equal(kiln_agent_exit_status(&ex), 255);
	ex.how = KILN_AGENT_SIGNALED;
	ex.value = 9;
	assert_int_equal(kiln_agent_exit_status(&ex), 137);
	ex.value = 15;
	assert_int_equal(kiln_agent_exit_status(&ex), 143);
	ex.flags = KILN_AGENT_EXIT_TIMED_OUT;
	assert_int_equal(kiln_agent_exit_status(&ex), KILN_STATUS_TIMEOUT);
	ex.how = KILN_AGENT_EXITED;
	ex.value = 0;
	assert_int_equal(kiln_agent_exit_status(&ex), 124);

	assert_int_equal(kiln_agent_error_status(&er), 127);
	er.err = EACCES;
	assert_int_equal(kiln_agent_error_status(&er), 126);
	er.err = ENOEXEC;
	assert_int_equal(kiln_agent_error_status(&er), 126);
	er.what = KILN_AGENT_ERR_SETUP;
	er.err = ENOENT; /* a missing cwd is not a missing command */
	assert_int_equal(kiln_agent_error_status(&er), 126);
	er.what = KILN_AGENT_ERR_REQUEST;
	assert_int_equal(kiln_agent_error_status(&er), 125);
	er.what = KILN_AGENT_ERR_INTERNAL;
	assert_int_equal(kiln_agent_error_status(&er), 125);
}

/* ---- the client against a fake agent ---- */

static char last_log[1024];

static void capture_log(void *opaque, enum kiln_log_level level,
			const char *msg)
{
	(void)opaque;
	(void)level;
	snprintf(last_log, sizeof(last_log), "%s", msg);
}

static const struct kiln_log test_log = {capture_log, NULL, KILN_LOG_DEBUG};

static void put_frame(int fd, uint16_t type, uint32_t session, const void *p,
		      size_t len)
{
	uint8_t hdr[KILN_AGENT_HDR_SIZE];

	kiln_agent_hdr_encode(hdr, type, session, (uint32_t)len);
	assert_int_equal(write(fd, hdr, sizeof(hdr)), sizeof(hdr));
	if (len)
		assert_int_equal(write(fd, p, len), (ssize_t)len);
}

static void put_ready(int fd, uint32_t version)
{
	struct kiln_agent_ready r = {version, KILN_AGENT_MAX_FRAME, 64, 65536,
				     "fake"};
	uint8_t p[64];
	int n = kiln_agent_ready_encode(p, sizeof(p), &r);

	put_frame(fd, KILN_AGENT_READY, 0, p, (size_t)n);
}

static void put_started(int fd, uint32_t session, uint32_t credit)
{
	struct kiln_agent_started st = {1234, credit};
	uint8_t p[8];

	kiln_agent_started_encode(p, 8, &st);
	put_frame(fd, KILN_AGENT_STARTED, session, p, 8);
}

static void put_exit(int fd, uint32_t session, uint32_t how, uint32_t value)
{
	struct kiln_agent_exit ex = {how, value, 0};
	uint8_t p[12];

	kiln_agent_exit_encode(p, 12, &ex);
	put_frame(fd, KILN_AGENT_EXIT, session, p, 12);
}

/* Reads one frame the client sent and checks its type and session. */
static size_t take_frame(int fd, uint16_t type, uint32_t session)
{
	struct kiln_agent_hdr h;
	const uint8_t *p;
	size_t have = 0;
	int n;

	for (;;) {
		n = kiln_agent_frame_next(frame, have, 0, &h, &p);
		assert_true(n >= 0);
		if (n > 0)
			break;
		/* read only what this frame needs */
		size_t want = have < 16 ? 16 - have : 16 + h.length - have;
		ssize_t r = read(fd, frame + have, want);

		assert_true(r > 0);
		have += (size_t)r;
	}
	assert_int_equal(h.type, type);
	assert_int_equal(h.session, session);
	return h.length;
}

struct fake {
	int agent; /* our end */
	struct kiln_agent *a;
};

static void fake_connect(struct fake *f)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	f->agent = sv[1];
	put_ready(f->agent, KILN_AGENT_VERSION);
	assert_int_equal(kiln_agent_connect(sv[0], &test_log, 2000, &f->a), 0);
	assert_string_equal(kiln_agent_peer(f->a)->name, "fake");
	take_frame(f->agent, KILN_AGENT_HELLO, 0);
}

static void fake_close(struct fake *f)
{
	kiln_agent_close(f->a);
	close(f->agent);
}

struct out_capture {
	char buf[256];
	size_t len;
};

static void on_output(void *opaque, int stream, const void *data, size_t len)
{
	struct out_capture *c = opaque;

	(void)stream;
	if (len > sizeof(c->buf) - 1 - c->len)
		len = sizeof(c->buf) - 1 - c->len;
	memcpy(c->buf + c->len, data, len);
	c->len += len;
}

static struct kiln_agent_exec *
start_true(struct fake *f, struct out_capture *cap, int stdin_pipe)
{
	static const char *argv[] = {"true", NULL};
	struct kiln_exec_opts o;
	struct kiln_agent_exec *e;

	kiln_exec_opts_init(&o);
	o.argv = argv;
	o.on_output = on_output;
	o.opaque = cap;
	o.stdin_pipe = stdin_pipe;
	assert_int_equal(kiln_agent_exec_start(f->a, &o, &e), 0);
	return e;
}

static void test_client_exec_ok(void **state)
{
	struct out_capture cap = {0};
	struct kiln_exec_result res;
	struct kiln_agent_exec *e;
	struct fake f;
	static struct kiln_agent_exec_vec vec;
	struct kiln_agent_exec_req req;
	size_t len;

	(void)state;
	fake_connect(&f);
	e = start_true(&f, &cap, 0);
	len = take_frame(f.agent, KILN_AGENT_EXEC, 1);
	assert_int_equal(kiln_agent_exec_decode(frame + 16, len, &req, &vec),
			 0);
	assert_string_equal(req.argv[0], "true");
	assert_int_equal(req.flags, 0);
	put_started(f.agent, 1, 0);
	put_frame(f.agent, KILN_AGENT_STDOUT, 1, "hello ", 6);
	put_frame(f.agent, KILN_AGENT_STDERR, 1, "world", 5);
	put_exit(f.agent, 1, KILN_AGENT_EXITED, 3);
	assert_int_equal(kiln_agent_exec_wait(e, 2000, &res), 0);
	assert_int_equal(res.status, 3);
	assert_true(res.started && res.exited);
	assert_int_equal(kiln_agent_exec_pid(e), 1234);
	assert_memory_equal(cap.buf, "hello world", 11);
	kiln_agent_exec_free(e);

	/* the next exec gets session 2 and fails to start: 127 */
	e = start_true(&f, &cap, 0);
	take_frame(f.agent, KILN_AGENT_EXEC, 2);
	{
		struct kiln_agent_error er = {ENOENT, KILN_AGENT_ERR_EXEC,
					      "exec nope: No such file"};
		uint8_t p[64];
		int n = kiln_agent_error_encode(p, sizeof(p), &er);

		put_frame(f.agent, KILN_AGENT_ERROR, 2, p, (size_t)n);
	}
	assert_int_equal(kiln_agent_exec_wait(e, 2000, &res), 0);
	assert_int_equal(res.status, 127);
	assert_false(res.started);
	assert_string_equal(res.message, "exec nope: No such file");
	kiln_agent_exec_free(e);
	fake_close(&f);
}

static void test_client_wait_timeout(void **state)
{
	struct out_capture cap = {0};
	struct kiln_exec_result res;
	struct kiln_agent_exec *e;
	struct fake f;

	(void)state;
	fake_connect(&f);
	e = start_true(&f, &cap, 0);
	assert_int_equal(kiln_agent_exec_wait(e, 0, &res), -ETIMEDOUT);
	assert_int_equal(kiln_agent_exec_wait(e, 50, &res), -ETIMEDOUT);
	/* freeing a running exec cancels it */
	kiln_agent_exec_free(e);
	take_frame(f.agent, KILN_AGENT_EXEC, 1);
	take_frame(f.agent, KILN_AGENT_CANCEL, 1);
	fake_close(&f);
}

/* Each of these agent misdeeds ends the connection with -EPROTO. */
static void expect_proto(void (*misdeed)(int fd), int stdin_pipe)
{
	struct out_capture cap = {0};
	struct kiln_exec_result res;
	struct kiln_agent_exec *e;
	struct fake f;

	fake_connect(&f);
	e = start_true(&f, &cap, stdin_pipe);
	misdeed(f.agent);
	assert_int_equal(kiln_agent_exec_wait(e, 2000, &res), -EPROTO);
	/* and stays dead */
	assert_int_equal(kiln_agent_exec_wait(e, 0, &res), -EPROTO);
	kiln_agent_exec_free(e);
	fake_close(&f);
}

static void output_before_started(int fd)
{
	put_frame(fd, KILN_AGENT_STDOUT, 1, "x", 1);
}

static void unknown_session(int fd)
{
	put_started(fd, 7, 0);
}

static void credit_overflow(int fd)
{
	uint8_t p[4];

	put_started(fd, 1, 65536);
	kiln_agent_u32_encode(p, 4, 1);
	put_frame(fd, KILN_AGENT_STDIN_CREDIT, 1, p, 4);
}

static void credit_without_stdin(int fd)
{
	put_started(fd, 1, 65536); /* the exec did not ask for stdin */
}

static void garbage(int fd)
{
	assert_int_equal(write(fd, "GET / HTTP/1.0\r\n\r\n", 18), 18);
}

static void frame_after_exit(int fd)
{
	put_started(fd, 1, 0);
	put_exit(fd, 1, KILN_AGENT_EXITED, 0);
	put_frame(fd, KILN_AGENT_STDOUT, 1, "late", 4);
}

static void second_ready(int fd)
{
	put_ready(fd, KILN_AGENT_VERSION);
}

static void request_type(int fd)
{
	put_frame(fd, KILN_AGENT_STDIN_EOF, 1, NULL, 0);
}

static void bad_exit(int fd)
{
	uint8_t p[12];

	put_started(fd, 1, 0);
	le32(p, KILN_AGENT_EXITED);
	le32(p + 4, 300);
	le32(p + 8, 0);
	put_frame(fd, KILN_AGENT_EXIT, 1, p, 12);
}

static void test_client_hostile_agent(void **state)
{
	(void)state;
	expect_proto(output_before_started, 0);
	expect_proto(unknown_session, 0);
	expect_proto(credit_overflow, 1);
	expect_proto(credit_without_stdin, 0);
	expect_proto(garbage, 0);
	expect_proto(second_ready, 0);
	expect_proto(request_type, 0);
	expect_proto(bad_exit, 0);
	/* a frame after EXIT: the exec ended fine, the connection did not */
	{
		struct out_capture cap = {0};
		struct kiln_exec_result res;
		struct kiln_agent_exec *e, *e2;
		struct fake f;

		fake_connect(&f);
		e = start_true(&f, &cap, 0);
		e2 = start_true(&f, &cap, 0);
		frame_after_exit(f.agent);
		assert_int_equal(kiln_agent_exec_wait(e2, 2000, &res), -EPROTO);
		assert_int_equal(kiln_agent_exec_wait(e, 0, &res), 0);
		kiln_agent_exec_free(e);
		kiln_agent_exec_free(e2);
		fake_close(&f);
	}
}

static void test_client_stdin_credit(void **state)
{
	struct out_capture cap = {0};
	struct kiln_exec_result res;
	struct kiln_agent_exec *e;
	static uint8_t data[100000];
	struct fake f;
	uint8_t p[4];
	size_t got = 0;

	(void)state;
	fake_connect(&f);
	e = start_true(&f, &cap, 1);
	take_frame(f.agent, KILN_AGENT_EXEC, 1);
	put_started(f.agent, 1, 65536);
	/* more than the window: the client waits for credit */
	assert_int_equal(
		kiln_agent_exec_write_stdin(e, data, sizeof(data), 100),
		-ETIMEDOUT);
	while (got < 65536)
		got += take_frame(f.agent, KILN_AGENT_STDIN, 1);
	assert_int_equal(got, 65536);
	kiln_agent_u32_encode(p, 4, 65536);
	put_frame(f.agent, KILN_AGENT_STDIN_CREDIT, 1, p, 4);
	assert_int_equal(kiln_agent_exec_write_stdin(e, data, 1000, 2000), 0);
	assert_int_equal(take_frame(f.agent, KILN_AGENT_STDIN, 1), 1000);
	assert_int_equal(kiln_agent_exec_close_stdin(e), 0);
	take_frame(f.agent, KILN_AGENT_STDIN_EOF, 1);
	assert_int_equal(kiln_agent_exec_write_stdin(e, data, 1, 0), -EPIPE);
	assert_int_equal(kiln_agent_exec_signal(e, 15, 1), 0);
	assert_int_equal(take_frame(f.agent, KILN_AGENT_SIGNAL, 1), 8);
	assert_int_equal(kiln_agent_exec_signal(e, 0, 1), -EINVAL);
	put_exit(f.agent, 1, KILN_AGENT_SIGNALED, 15);
	assert_int_equal(kiln_agent_exec_wait(e, 2000, &res), 0);
	assert_int_equal(res.status, 143);
	assert_int_equal(res.signo, 15);
	assert_int_equal(kiln_agent_exec_signal(e, 9, 0), -ESRCH);
	kiln_agent_exec_free(e);
	fake_close(&f);
}

static void test_client_connect_failures(void **state)
{
	struct kiln_agent *a;
	struct kiln_agent_ready r;
	int sv[2];

	(void)state;
	/* wrong version */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	put_ready(sv[1], 2);
	assert_int_equal(kiln_agent_connect(sv[0], &test_log, 1000, &a),
			 -EPROTONOSUPPORT);
	assert_null(a);
	close(sv[1]);

	/* refused with an ERROR on session 0 */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	{
		struct kiln_agent_error er = {EAGAIN, KILN_AGENT_ERR_REQUEST,
					      "too many connections"};
		uint8_t p[64];
		int n = kiln_agent_error_encode(p, sizeof(p), &er);

		put_frame(sv[1], KILN_AGENT_ERROR, 0, p, (size_t)n);
	}
	assert_int_equal(kiln_agent_connect(sv[0], &test_log, 1000, &a),
			 -ECONNABORTED);
	assert_non_null(strstr(last_log, "too many connections"));
	close(sv[1]);

	/* closed, and silent */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	assert_int_equal(kiln_agent_connect(sv[0], &test_log, 1000, &a),
			 -EPIPE);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(kiln_agent_connect(sv[0], &test_log, 50, &a),
			 -ETIMEDOUT);
	close(sv[1]);

	/* the ready port */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	put_ready(sv[1], KILN_AGENT_VERSION);
	assert_int_equal(kiln_agent_read_ready(sv[0], 1000, &test_log, &r), 0);
	assert_string_equal(r.name, "fake");
	put_frame(sv[1], KILN_AGENT_STDOUT, 1, "x", 1);
	assert_int_equal(kiln_agent_read_ready(sv[0], 1000, &test_log, &r),
			 -EPROTO);
	assert_int_equal(kiln_agent_read_ready(sv[0], 20, &test_log, &r),
			 -ETIMEDOUT);
	close(sv[1]);
	assert_int_equal(kiln_agent_read_ready(sv[0], 1000, &test_log, &r),
			 -EPIPE);
	close(sv[0]);
}

static void test_client_get_file(void **state)
{
	struct fake f;
	uint8_t p[8];
	uint64_t size;
	int out;
	char path[] = "/tmp/kiln-agent-unit-XXXXXX";

	(void)state;
	out = mkstemp(path);
	assert_true(out >= 0);
	unlink(path);
	fake_connect(&f);
	/* the fake answers before the request is sent: session 1, max 8 */
	put_frame(f.agent, KILN_AGENT_FILE_DATA, 1, "12345", 5);
	put_frame(f.agent, KILN_AGENT_FILE_DATA, 1, "678", 3);
	kiln_agent_u64_encode(p, 8, 8);
	put_frame(f.agent, KILN_AGENT_FILE_END, 1, p, 8);
	assert_int_equal(
		kiln_agent_get_file(f.a, "/etc/x", 8, out, 2000, &size), 0);
	assert_int_equal(size, 8);
	assert_int_equal(take_frame(f.agent, KILN_AGENT_FILE_GET, 1),
			 16 + 4 + 7);
	/* more than asked for */
	put_frame(f.agent, KILN_AGENT_FILE_DATA, 2, "123456789", 9);
	assert_int_equal(
		kiln_agent_get_file(f.a, "/etc/x", 8, out, 2000, &size),
		-EPROTO);
	fake_close(&f);
	close(out);
}

/* ---- hybrid vsock helpers against a fake device (a child process) ---- */

static int listen_at(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

/* Child: accept one client, expect "CONNECT 1024", answer `reply` (NULL:
 * hang up), then play an agent that sends READY. Exit status 0 if all
 * went as expected. */
static void fake_device(int lfd, const char *reply)
{
	struct kiln_agent_ready r = {1, KILN_AGENT_MAX_FRAME, 64, 65536, "dev"};
	uint8_t f[16 + 64];
	char line[64] = "";
	size_t n = 0;
	int c = accept(lfd, NULL, NULL), len;

	while (c >= 0 && n < sizeof(line) - 1 && read(c, line + n, 1) == 1 &&
	       line[n] != '\n')
		n++;
	line[n] = '\0';
	if (c < 0 || strcmp(line, "CONNECT 1024"))
		_exit(1);
	if (!reply)
		_exit(0);
	if (write(c, reply, strlen(reply)) != (ssize_t)strlen(reply))
		_exit(2);
	len = kiln_agent_ready_encode(f + 16, 64, &r);
	kiln_agent_hdr_encode(f, KILN_AGENT_READY, 0, (uint32_t)len);
	if (write(c, f, 16 + (size_t)len) != 16 + len)
		_exit(3);
	/* the client's HELLO must follow, untouched by the line reader */
	if (read(c, f, 24) != 24 || f[6] != KILN_AGENT_HELLO)
		_exit(4);
	_exit(0);
}

static int wait_child(pid_t pid)
{
	int st = -1;

	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

static void test_hybrid_vsock(void **state)
{
	/* short enough for sun_path with "_1025" added */
	char dir[] = "/tmp/kiln-hybrid-XXXXXX", uds[64], path[160];
	struct kiln_agent_ready r;
	struct kiln_agent *a;
	int lfd, fd;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);

	/* the ready port: "<uds>_1025" */
	lfd = kiln_agent_listen_hybrid(uds, KILN_AGENT_READY_PORT, &test_log);
	assert_true(lfd >= 0);
	pid = fork();
	if (pid == 0) {
		struct kiln_agent_ready rr = {1, KILN_AGENT_MAX_FRAME, 64,
					      65536, "agent"};
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		uint8_t f[16 + 64];
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		int len = kiln_agent_ready_encode(f + 16, 64, &rr);

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_1025", uds);
		kiln_agent_hdr_encode(f, KILN_AGENT_READY, 0, (uint32_t)len);
		if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    write(c, f, 16 + (size_t)len) != 16 + len)
			_exit(1);
		_exit(0);
	}
	assert_int_equal(kiln_agent_accept_ready(lfd, 5000, &test_log, &r), 0);
	assert_string_equal(r.name, "agent");
	assert_int_equal(wait_child(pid), 0);
	assert_int_equal(kiln_agent_accept_ready(lfd, 20, &test_log, &r),
			 -ETIMEDOUT);
	close(lfd);
	/* listening again replaces the stale socket */
	lfd = kiln_agent_listen_hybrid(uds, KILN_AGENT_READY_PORT, &test_log);
	assert_true(lfd >= 0);
	close(lfd);

	/* the exec port through "<uds>": CONNECT, OK, then the protocol */
	lfd = listen_at(uds);
	pid = fork();
	if (pid == 0)
		fake_device(lfd, "OK 1073741824\n");
	fd = kiln_agent_dial_hybrid(uds, KILN_AGENT_PORT, 5000, &test_log);
	assert_true(fd >= 0);
	assert_int_equal(kiln_agent_connect(fd, &test_log, 5000, &a), 0);
	assert_string_equal(kiln_agent_peer(a)->name, "dev");
	assert_int_equal(wait_child(pid), 0);
	kiln_agent_close(a);

	/* refused (hung up), and a wrong answer */
	pid = fork();
	if (pid == 0)
		fake_device(lfd, NULL);
	assert_int_equal(
		kiln_agent_dial_hybrid(uds, KILN_AGENT_PORT, 5000, &test_log),
		-ECONNREFUSED);
	assert_int_equal(wait_child(pid), 0);
	pid = fork();
	if (pid == 0)
		fake_device(lfd, "NO\n");
	assert_int_equal(
		kiln_agent_dial_hybrid(uds, KILN_AGENT_PORT, 5000, &test_log),
		-EPROTO);
	wait_child(pid);
	close(lfd);
	unlink(uds);
	snprintf(path, sizeof(path), "%s_1025", uds);
	unlink(path);
	rmdir(dir);

	/* nobody there, and a path too long for a socket */
	assert_int_equal(
		kiln_agent_dial_hybrid(uds, KILN_AGENT_PORT, 100, &test_log),
		-ENOENT);
	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(kiln_agent_listen_hybrid(path, 1, &test_log),
			 -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_roundtrip),
		cmocka_unit_test(test_hdr_bad_fields),
		cmocka_unit_test(test_frame_truncated),
		cmocka_unit_test(test_frame_payload_sizes),
		cmocka_unit_test(test_exec_roundtrip),
		cmocka_unit_test(test_exec_encode_limits),
		cmocka_unit_test(test_exec_decode_malformed),
		cmocka_unit_test(test_small_payloads),
		cmocka_unit_test(test_error_payload),
		cmocka_unit_test(test_file_req),
		cmocka_unit_test(test_status_mapping),
		cmocka_unit_test(test_restored),
		cmocka_unit_test(test_shutdown_frame),
		cmocka_unit_test(test_client_exec_ok),
		cmocka_unit_test(test_client_wait_timeout),
		cmocka_unit_test(test_client_hostile_agent),
		cmocka_unit_test(test_client_stdin_credit),
		cmocka_unit_test(test_client_connect_failures),
		cmocka_unit_test(test_client_get_file),
		cmocka_unit_test(test_hybrid_vsock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
