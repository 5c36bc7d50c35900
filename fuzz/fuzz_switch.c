/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the cluster network's switch, which takes hellos from
 * any client of the user and frames from every member (hostile guests).
 * The input is a hello (decoded, and re-encoded when valid) and a reply
 * (decoded), then a sequence of frames, each from one of three members on
 * socketpairs: [port byte][length byte pair][bytes]. The switch must never
 * read past a frame, crash, or let a member's queue pass its bound.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/switch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct net_switch *sw;
static int ports[3], peers[3];

static void setup(void)
{
	static const uint8_t macs[3][6] = {
		{6, 0, 0, 0, 0, 1}, {6, 0, 0, 0, 0, 2}, {6, 0, 0, 0, 0, 3}};
	static const char *const names[3] = {"a", "b", ""};

	sw = malloc(sizeof(*sw));
	if (!sw || sw_init(sw, 0x0a590000, 24, NULL) < 0)
		abort();
	for (int i = 0; i < 3; i++) {
		int sv[2];
		uint32_t addr;

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv) <
		    0)
			abort();
		ports[i] = sw_port_add(sw, sv[0], names[i], macs[i], 0, &addr);
		if (ports[i] < 0)
			abort();
		peers[i] = sv[1];
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sw_hello h;
	static struct sw_reply r;
	uint8_t enc[128], buf[2048];

	if (!sw)
		setup();
	if (sw_hello_decode(data, size, &h) == 0) {
		size_t n = sw_hello_encode(&h, enc);

		if (n != size || memcmp(enc, data, n))
			abort(); /* a valid hello encodes back to itself */
	}
	(void)sw_reply_decode(data, size, &r);
	while (size >= 3) {
		int from = data[0] % 3;
		size_t len = (size_t)data[1] << 8 | data[2];
		uint8_t *f;

		data += 3, size -= 3;
		if (len > size)
			len = size;
		f = malloc(len ? len : 1); /* exactly its size: ASan sees */
		if (!f)
			return 0;
		memcpy(f, data, len);
		sw_frame_in(sw, ports[from], f, len);
		free(f);
		data += len, size -= len;
	}
	/* drain what the members got; queues stay within their bound */
	for (int i = 0; i < 3; i++) {
		if (sw->conns[ports[i]].qcount > SW_QUEUE)
			abort();
		while (recv(peers[i], buf, sizeof(buf), MSG_DONTWAIT) > 0)
			sw_flush(sw, ports[i]);
	}
	return 0;
}
