/* SPDX-License-Identifier: MIT */
/*
 * agent_probe: drives a guest agent through a hybrid vsock socket for the
 * Linux-driver tier (tests/linux/vhost-user-vsock.sh).
 *
 *   agent_probe ready UDS SECONDS    listen on UDS_1025 (before the guest
 *                                    boots) and print the agent's READY
 *   agent_probe garbage UDS          CONNECT to the agent, send junk; prints
 *                                    "closed" once the agent hangs up
 *   agent_probe shutdown UDS         send SHUTDOWN through the sandbox API's
 *                                    client
 *   agent_probe pty UDS              runs `tty; stty size` on a pty of 30x100 (stdout is the pty;
 *                                    without stdin, stdin is not)
 *                                    and prints what it said
 *   agent_probe bench UDS N          exec /bin/true N times over one
 *                                    connection vs a shell loop of N in the
 *                                    guest; prints the overhead ratio
 * Exit status 0 when the step worked, 1 otherwise (with a message).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kiln/kiln.h>

#include "agent/client.h"

static void log_stderr(void *opaque, enum kiln_log_level level,
		       const char *msg)
{
	(void)opaque;
	(void)level;
	fprintf(stderr, "agent_probe: %s\n", msg);
}

static const struct kiln_log plog = {log_stderr, NULL, KILN_LOG_INFO};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmd_ready(const char *uds, int seconds)
{
	struct kiln_agent_ready ready;
	int fd = kiln_agent_listen_hybrid(uds, KILN_AGENT_READY_PORT, &plog);

	if (fd < 0)
		return 1;
	/* the caller starts the guest once this line is out */
	printf("listening\n");
	fflush(stdout);
	if (kiln_agent_accept_ready(fd, seconds * 1000, &plog, &ready) < 0)
		return 1;
	printf("READY version %u name %s max_sessions %u\n", ready.version,
	       ready.name, ready.max_sessions);
	return 0;
}

static int cmd_garbage(const char *uds)
{
	static const char junk[] = "this is not a frame, not even close....";
	int fd = kiln_agent_dial_hybrid(uds, KILN_AGENT_PORT, 10000, &plog);
	char buf[4096];
	struct pollfd pfd;

	if (fd < 0)
		return 1;
	if (write(fd, junk, sizeof(junk)) != (ssize_t)sizeof(junk)) {
		perror("agent_probe: write");
		return 1;
	}
	/* the agent answers ERROR and closes: read until EOF, 20 s at most */
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		ssize_t n;

		if (poll(&pfd, 1, 20000) <= 0) {
			fprintf(stderr, "agent_probe: the agent kept the "
					"connection open\n");
			return 1;
		}
		n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n < 0) {
			perror("agent_probe: read");
			return 1;
		}
	}
	close(fd);
	printf("closed\n");
	return 0;
}

static int cmd_shutdown(const char *uds)
{
	struct kiln_agent *a;
	int fd = kiln_agent_dial_hybrid(uds, KILN_AGENT_PORT, 10000, &plog);

	if (fd < 0 || kiln_agent_connect(fd, &plog, 10000, &a) < 0)
		return 1;
	if (kiln_agent_shutdown(a, 5000) < 0)
		return 1;
	kiln_agent_close(a);
	printf("sent\n");
	return 0;
}

static void print_output(void *opaque, int stream, const void *data,
			 size_t len)
{
	(void)opaque;
	(void)stream;
	fwrite(data, 1, len, stdout);
}

static int cmd_pty(const char *uds)
{
	static const char *const argv[] = {"/bin/sh", "-c",
					   "tty <&1; stty size <&1",
					   NULL};
	struct kiln_exec_result res;
	struct kiln_exec_opts o;
	struct kiln_sandbox *sb;
	int err;

	if (kiln_sandbox_attach(uds, log_stderr, NULL, KILN_LOG_INFO, 10000,
				&sb) < 0)
		return 1;
	kiln_exec_opts_init(&o);
	o.argv = argv;
	o.pty = 1;
	o.rows = 30;
	o.cols = 100;
	o.on_output = print_output;
	err = kiln_sandbox_run(sb, &o, 60000, &res);
	kiln_sandbox_destroy(sb);
	return err < 0 || res.status != 0;
}

static int cmd_bench(const char *uds, int n)
{
	static const char *const true_argv[] = {"/bin/true", NULL};
	const char *loop_argv[] = {"/bin/sh", "-c", NULL, NULL};
	struct kiln_exec_result res;
	struct kiln_exec_opts o;
	struct kiln_sandbox *sb;
	char script[256];
	double t0, agent_s, shell_s;

	if (kiln_sandbox_attach(uds, log_stderr, NULL, KILN_LOG_INFO, 10000,
				&sb) < 0)
		return 1;
	kiln_exec_opts_init(&o);
	o.argv = true_argv;
	/* warm the page cache and the agent */
	if (kiln_sandbox_run(sb, &o, 60000, &res) < 0 || res.status != 0)
		return 1;
	t0 = now_s();
	for (int i = 0; i < n; i++)
		if (kiln_sandbox_run(sb, &o, 60000, &res) < 0 ||
		    res.status != 0)
			return 1;
	agent_s = now_s() - t0;
	/* the same N runs by a shell inside the same guest */
	snprintf(script, sizeof(script),
		 "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", n);
	loop_argv[2] = script;
	o.argv = loop_argv;
	t0 = now_s();
	if (kiln_sandbox_run(sb, &o, 600000, &res) < 0 || res.status != 0)
		return 1;
	shell_s = now_s() - t0;
	printf("agent exec round trip: %.0f us per exec vs %.0f us for sh "
	       "fork+exec in the same guest, ratio %.2f (%d execs of "
	       "/bin/true; target <= 1.2)\n",
	       agent_s / n * 1e6, shell_s / n * 1e6, agent_s / shell_s, n);
	kiln_sandbox_destroy(sb);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "ready"))
		return cmd_ready(argv[2], atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "garbage"))
		return cmd_garbage(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "shutdown"))
		return cmd_shutdown(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "pty"))
		return cmd_pty(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "bench"))
		return cmd_bench(argv[2], atoi(argv[3]));
	fprintf(stderr, "usage: agent_probe ready UDS SECONDS | garbage UDS | "
			"shutdown UDS | pty UDS | bench UDS N\n");
	return 2;
}
