/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the guest agent protocol. Byte 0 picks the target:
 *
 *   mode 0  the rest is a byte stream cut into frames with
 *           kiln_agent_frame_next (bit 7: as responses, else requests);
 *           each payload goes to its type's decoder, and whatever decodes
 *           must re-encode to the very same bytes
 *   mode 1  the rest is one EXEC body, for the decoder alone
 *   mode 2  the rest is what a (hostile) agent sends the host client,
 *           after a valid READY, while two execs and a get are open
 *
 * Invariants are checked with __builtin_trap so any breach is a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <kiln/agent_proto.h>

#include "agent/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static uint8_t out[KILN_AGENT_MAX_FRAME];

static void roundtrip_exec(const uint8_t *p, size_t len)
{
	static struct kiln_agent_exec_vec vec;
	struct kiln_agent_exec_req m;
	int n;

	if (kiln_agent_exec_decode(p, len, &m, &vec) < 0)
		return;
	check(m.argc >= 1 && m.argc <= KILN_AGENT_MAX_ARGS);
	check(m.envc <= KILN_AGENT_MAX_ENV);
	check(m.argv[m.argc] == NULL && m.env[m.envc] == NULL);
	for (uint32_t i = 0; i < m.argc; i++)
		check((const uint8_t *)m.argv[i] >= p &&
		      (const uint8_t *)m.argv[i] + strlen(m.argv[i]) < p + len);
	for (uint32_t i = 0; i < m.envc; i++)
		check(strchr(m.env[i], '=') && m.env[i][0] != '=');
	n = kiln_agent_exec_encode(out, sizeof(out), &m);
	check(n == (int)len && memcmp(out, p, len) == 0);
}

static void decode_payload(uint16_t type, const uint8_t *p, size_t len)
{
	struct kiln_agent_hello hello;
	struct kiln_agent_ready ready;
	struct kiln_agent_started st;
	struct kiln_agent_signal sig;
	struct kiln_agent_winsize ws;
	struct kiln_agent_exit ex;
	struct kiln_agent_error er;
	struct kiln_agent_file_req fr;
	uint32_t v32;
	uint64_t v64;
	int n = -1;

	switch (type) {
	case KILN_AGENT_EXEC: roundtrip_exec(p, len); return;
	case KILN_AGENT_HELLO:
		if (kiln_agent_hello_decode(p, len, &hello) == 0)
			n = kiln_agent_hello_encode(out, sizeof(out), &hello);
		break;
	case KILN_AGENT_READY:
		if (kiln_agent_ready_decode(p, len, &ready) == 0)
			n = kiln_agent_ready_encode(out, sizeof(out), &ready);
		break;
	case KILN_AGENT_STARTED:
		if (kiln_agent_started_decode(p, len, &st) == 0)
			n = kiln_agent_started_encode(out, sizeof(out), &st);
		break;
	case KILN_AGENT_SIGNAL:
		if (kiln_agent_signal_decode(p, len, &sig) == 0)
			n = kiln_agent_signal_encode(out, sizeof(out), &sig);
		break;
	case KILN_AGENT_WINSIZE:
		if (kiln_agent_winsize_decode(p, len, &ws) == 0)
			n = kiln_agent_winsize_encode(out, sizeof(out), &ws);
		break;
	case KILN_AGENT_EXIT:
		if (kiln_agent_exit_decode(p, len, &ex) == 0) {
			int status = kiln_agent_exit_status(&ex);

			/* codes 0..255, 128+N for N <= 64, or 124 */
			check(status >= 0 && status <= 255);
			n = kiln_agent_exit_encode(out, sizeof(out), &ex);
		}
		break;
	case KILN_AGENT_ERROR:
		if (kiln_agent_error_decode(p, len, &er) == 0) {
			int status = kiln_agent_error_status(&er);

			check(status >= 125 && status <= 127);
			n = kiln_agent_error_encode(out, sizeof(out), &er);
		}
		break;
	case KILN_AGENT_FILE_PUT:
	case KILN_AGENT_FILE_GET:
		if (kiln_agent_file_req_decode(p, len, &fr) == 0) {
			check(fr.path[0] == '/' &&
			      fr.size <= KILN_AGENT_MAX_FILE);
			n = kiln_agent_file_req_encode(out, sizeof(out), &fr);
		}
		break;
	case KILN_AGENT_STDIN_CREDIT:
		if (kiln_agent_u32_decode(p, len, &v32) == 0)
			n = kiln_agent_u32_encode(out, sizeof(out), v32);
		break;
	case KILN_AGENT_FILE_END:
		if (kiln_agent_u64_decode(p, len, &v64) == 0)
			n = kiln_agent_u64_encode(out, sizeof(out), v64);
		break;
	default: return;
	}
	if (n >= 0)
		check((size_t)n == len && memcmp(out, p, len) == 0);
}

static void fuzz_stream(const uint8_t *data, size_t size, int responses)
{
	struct kiln_agent_hdr h;
	const uint8_t *p;
	size_t off = 0;

	for (;;) {
		int n = kiln_agent_frame_next(data + off, size - off, responses,
					      &h, &p);

		if (n <= 0)
			return;
		check((size_t)n <= size - off);
		check((size_t)n == KILN_AGENT_HDR_SIZE + h.length);
		check(h.length <= KILN_AGENT_MAX_FRAME);
		check(!(h.type & KILN_AGENT_RESPONSE) == !responses);
		decode_payload(h.type, p, h.length);
		off += (size_t)n;
	}
}

static void fuzz_client(const uint8_t *data, size_t size)
{
	static const char *argv[] = {"true", NULL};
	struct kiln_agent_ready r = {KILN_AGENT_VERSION, KILN_AGENT_MAX_FRAME,
				     64, 65536, "fuzz"};
	static int devnull = -1;
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct kiln_agent_exec *e1 = NULL, *e2 = NULL;
	struct kiln_agent *a;
	uint8_t ready[16 + 16 + KILN_AGENT_MAX_NAME];
	int sv[2], n, bufsize = 1 << 20;

	if (devnull < 0)
		devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	/* whatever does not fit the socket is dropped, never waited for */
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	n = kiln_agent_ready_encode(ready + 16, sizeof(ready) - 16, &r);
	kiln_agent_hdr_encode(ready, KILN_AGENT_READY, 0, (uint32_t)n);
	/* READY alone first: connect must not see the sessions' frames */
	if (write(sv[1], ready, 16 + (size_t)n) != 16 + n ||
	    kiln_agent_connect(sv[0], NULL, 1000, &a) < 0) {
		close(sv[1]);
		return;
	}
	kiln_exec_opts_init(&o);
	o.argv = argv;
	o.stdout_fd = devnull;
	kiln_agent_exec_start(a, &o, &e1); /* session 1 */
	o.stdin_pipe = 1;
	kiln_agent_exec_start(a, &o, &e2); /* session 2, with stdin */
	if (size)
		(void)!write(sv[1], data, size);
	shutdown(sv[1], SHUT_WR);
	/* session 3; pumps everything the fake agent sent */
	kiln_agent_get_file(a, "/x", 4096, devnull, 0, NULL);
	for (int i = 0; i < 4; i++) {
		if (e1 && kiln_agent_exec_wait(e1, 0, &res) == 0)
			check(res.status >= 0 && res.status <= 255);
		if (e2 && kiln_agent_exec_wait(e2, 0, &res) == 0)
			check(res.status >= 0 && res.status <= 255);
	}
	kiln_agent_exec_free(e1);
	kiln_agent_exec_free(e2);
	kiln_agent_close(a);
	close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0: fuzz_stream(data + 1, size - 1, data[0] >> 7); break;
	case 1: roundtrip_exec(data + 1, size - 1); break;
	case 2: fuzz_client(data + 1, size - 1); break;
	}
	return 0;
}
