/* SPDX-License-Identifier: MIT */
/*
 * kiln vhost-user — serve one kiln virtio device to another VMM (QEMU)
 * over a vhost-user socket until SIGINT/SIGTERM, one front-end after the
 * other. Exit status: 0 stopped by a signal, 2 usage error, 125 failure.
 *
 * --device takes the library's device syntax (TYPE,key=value,...): the
 * device table and the server are libkiln's (kiln_vhost_user_*).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <kiln/kiln.h>

#include "commands.h"

#define EXIT_USAGE	 2
#define EXIT_KILN_FAILED 125

static struct kiln_vhost_user *server;

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kiln: vhost-user: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr,
		"\nTry 'kiln vhost-user --help' for more information.\n");
}

static void print_help(FILE *f)
{
	fprintf(f,
		"Usage: kiln vhost-user --socket PATH --device "
		"TYPE,KEY=VALUE,...\n"
		"\n"
		"Serve one virtio device to another VMM (e.g. QEMU's\n"
		"-device vhost-user-blk) over a vhost-user Unix socket, one\n"
		"front-end at a time, until SIGINT or SIGTERM.\n"
		"\n"
		"Options:\n"
		"  --socket PATH    listen here (a stale socket is replaced)\n"
		"  --device SPEC    the device to serve:\n"
		"                     blk,path=IMAGE[,ro]  raw disk image or "
		"block\n"
		"                                          device; ro: "
		"read-only\n"
		"                     fs,dir=DIR,tag=TAG[,ro][,nodev]  "
		"virtio-fs:\n"
		"                                          share DIR as TAG "
		"(guest:\n"
		"                                          mount -t virtiofs "
		"TAG /mnt);\n"
		"                                          ro: read-only; "
		"nodev: no\n"
		"                                          device nodes\n"
		"                     net[,egress=public|all|none]  "
		"virtio-net\n"
		"                                          with kiln's "
		"user-mode "
		"NAT\n"
		"                                          (QEMU: -netdev "
		"vhost-user)\n"
		"                     vsock,cid=CID,uds=PATH  virtio-vsock, "
		"guest CID\n"
		"                                          CID; host end: "
		"Unix sockets\n"
		"                                          (PATH: CONNECT "
		"PORT; PATH_PORT)\n"
		"                     rng                  virtio-rng "
		"(host getrandom)\n"
		"                   a comma inside a value is written twice "
		"(,,)\n"
		"  -v, --verbose    log every vhost-user message\n"
		"  -h, --help       show this help\n"
		"\n"
		"Exit status: 0 stopped by a signal; 2 usage error; 125 kiln "
		"failed.\n");
}

static void log_to_stderr(void *opaque, enum kiln_log_level level,
			  const char *msg)
{
	(void)opaque;
	fprintf(stderr, "kiln: %s%s\n",
		level == KILN_LOG_WARN ? "warning: " : "", msg);
}

static void on_signal(int sig)
{
	(void)sig;
	if (server)
		kiln_vhost_user_stop(server);
}

/* A share holds one host fd per guest inode: allow as many as we may. */
static void raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int kiln_cmd_vhost_user(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"device", required_argument, NULL, 'd'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	enum kiln_log_level level = KILN_LOG_INFO;
	struct sigaction sa;
	sigset_t blocked;
	const char *socket_path = NULL, *device = NULL;
	int c, err;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 's': socket_path = optarg; break;
		case 'd':
			if (device) {
				usage_error("only one --device per socket");
				return EXIT_USAGE;
			}
			device = optarg;
			break;
		case 'v': level = KILN_LOG_DEBUG; break;
		case 'h': print_help(stdout); return 0;
		default:
			fprintf(stderr, "Try 'kiln vhost-user --help' for more "
					"information.\n");
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		usage_error("unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	if (!socket_path || !*socket_path) {
		usage_error("--socket PATH is required");
		return EXIT_USAGE;
	}
	if (!device) {
		usage_error("--device TYPE,... is required");
		return EXIT_USAGE;
	}
	raise_nofile_limit();
	err = kiln_vhost_user_create(device, socket_path, log_to_stderr, NULL,
				     level, &server);
	if (err == -EINVAL) {
		fprintf(stderr, "Try 'kiln vhost-user --help' for more "
				"information.\n");
		return EXIT_USAGE;
	}
	if (err < 0) {
		fprintf(stderr, "kiln: vhost-user: cannot serve %s\n", device);
		return EXIT_KILN_FAILED;
	}

	/* The handler only writes the server's stop eventfd. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	err = kiln_vhost_user_run(server);
	if (err == 0)
		fprintf(stderr, "kiln: vhost-user: stopped\n");
	/* No handler may reach the server once it is gone. */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	kiln_vhost_user_free(server);
	server = NULL;
	return err < 0 ? EXIT_KILN_FAILED : 0;
}
