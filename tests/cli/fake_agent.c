/* SPDX-License-Identifier: MIT */
/*
 * A hostile or minimal stand-in for kiln's guest agent behind a hybrid vsock
 * socket, for the CLI tier (tests/cli/run.sh builds it with the real codec):
 *
 *   fake_agent SOCKET MODE
 *
 * It answers CONNECT and HELLO like the agent, logs each request type to
 * SOCKET.log, and then by MODE:
 *   silent  EXEC gets STARTED and nothing else: SIGNAL and CANCEL are only
 *           logged (a command, or an agent, that ignores signals)
 *   error   EXEC gets an ERROR whose text holds terminal escape sequences
 *   normal  EXEC exits 0 at once; FILE_GET sends "hello from the guest\n"
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <kiln/agent_proto.h>

static const char *mode;
static FILE *req_log;

static int read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static int send_frame(int fd, uint16_t type, uint32_t session,
		      const void *payload, int len)
{
	uint8_t hdr[KILN_AGENT_HDR_SIZE];

	if (len < 0)
		return -1;
	kiln_agent_hdr_encode(hdr, type, session, (uint32_t)len);
	if (write_full(fd, hdr, sizeof(hdr)) < 0)
		return -1;
	return len ? write_full(fd, payload, (size_t)len) : 0;
}

static void serve(int fd)
{
	static uint8_t payload[KILN_AGENT_MAX_FRAME];
	uint8_t out[1024], hdr[KILN_AGENT_HDR_SIZE];
	char line[64];
	size_t n = 0;

	/* the hybrid vsock handshake */
	while (n + 1 < sizeof(line)) {
		if (read_full(fd, line + n, 1) < 0)
			return;
		if (line[n++] == '\n')
			break;
	}
	if (write_full(fd, "OK 1\n", 5) < 0)
		return;
	for (;;) {
		struct kiln_agent_hdr h;

		if (read_full(fd, hdr, sizeof(hdr)) < 0 ||
		    kiln_agent_hdr_decode(hdr, 0, &h) < 0 ||
		    read_full(fd, payload, h.length) < 0)
			return;
		fprintf(req_log, "%s %u\n", kiln_agent_type_name(h.type),
			h.length >= 4 && h.type == KILN_AGENT_SIGNAL
				? (unsigned)payload[0]
				: 0u);
		fflush(req_log);
		switch (h.type) {
		case KILN_AGENT_HELLO: {
			struct kiln_agent_ready r = {
				KILN_AGENT_VERSION, KILN_AGENT_MAX_FRAME,
				KILN_AGENT_MAX_SESSIONS, 65536, "fake\033[2J"};

			send_frame(
				fd, KILN_AGENT_READY, 0, out,
				kiln_agent_ready_encode(out, sizeof(out), &r));
			break;
		}
		case KILN_AGENT_EXEC:
			if (!strcmp(mode, "error")) {
				struct kiln_agent_error e = {
					ENOENT, KILN_AGENT_ERR_EXEC,
					"no\033]0;pwned\007 such\033[2J\033[H"
					"\r\nfile\302\233"};

				send_frame(fd, KILN_AGENT_ERROR, h.session, out,
					   kiln_agent_error_encode(
						   out, sizeof(out), &e));
			} else {
				struct kiln_agent_started st = {42, 0};

				send_frame(fd, KILN_AGENT_STARTED, h.session,
					   out,
					   kiln_agent_started_encode(
						   out, sizeof(out), &st));
			}
			if (!strcmp(mode, "normal")) {
				struct kiln_agent_exit x = {KILN_AGENT_EXITED,
							    0, 0};

				send_frame(fd, KILN_AGENT_EXIT, h.session, out,
					   kiln_agent_exit_encode(
						   out, sizeof(out), &x));
			}
			break;
		case KILN_AGENT_FILE_GET: {
			static const char data[] = "hello from the guest\n";

			send_frame(fd, KILN_AGENT_FILE_DATA, h.session, data,
				   (int)strlen(data));
			send_frame(fd, KILN_AGENT_FILE_END, h.session, out,
				   kiln_agent_u64_encode(out, sizeof(out),
							 strlen(data)));
			break;
		}
		default: break; /* SIGNAL, CANCEL, STDIN...: ignored */
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char path[sizeof(sa.sun_path) + 8];
	int lfd;

	if (argc != 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr,
			"usage: fake_agent SOCKET silent|error|normal\n");
		return 2;
	}
	mode = argv[2];
	signal(SIGPIPE, SIG_IGN);
	snprintf(path, sizeof(path), "%s.log", argv[1]);
	req_log = fopen(path, "w");
	strcpy(sa.sun_path, argv[1]);
	unlink(argv[1]);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (!req_log || lfd < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 4) < 0) {
		perror("fake_agent");
		return 1;
	}
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			continue;
		serve(fd);
		close(fd);
	}
}
