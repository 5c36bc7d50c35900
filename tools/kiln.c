/* SPDX-License-Identifier: MIT */
/*
 * kiln — command-line front end of libkiln. Turns library errors into
 * messages and exit codes: 2 usage, 125 kiln failed, 124 timeout, otherwise
 * the guest's outcome (see kiln(1)).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <kiln/kiln.h>

#include "cli.h"
#include "commands.h"

#define progname cli_progname

static bool verbose;

static void print_help(FILE *f)
{
	fprintf(f,
		"Usage: kiln run [OPTIONS] -- CMD [ARGS...]\n"
		"       kiln start [--name NAME] [OPTIONS]\n"
		"       kiln exec NAME|--vsock PATH [-i] [-t] [-e K=V] [-w "
		"DIR] -- CMD\n"
		"       kiln cp NAME:/GUEST/PATH HOST | kiln cp HOST "
		"NAME:/GUEST/PATH\n"
		"       kiln ps | kiln stop [--grace SECONDS] NAME...\n"
		"       kiln network create NAME [--subnet CIDR] | ls | "
		"inspect "
		"NAME |\n"
		"                    rm [--force] NAME...\n"
		"       kiln pool start --name POOL [--size N] [OPTIONS] | ls "
		"| "
		"stop POOL\n"
		"       kiln run --pool POOL -- CMD [ARGS...]\n"
		"       kiln snapshot NAME DIR; kiln run|start --from DIR ...\n"
		"       kiln boot [OPTIONS]\n"
		"       kiln vhost-user --socket PATH --device "
		"TYPE,KEY=VALUE,...\n"
		"       kiln mkimage DIR IMAGE [--size MIB]\n"
		"       kiln --help | --version\n"
		"\n"
		"run/start/exec/cp/ps/stop work with sandboxes: kiln's guest "
		"with its\n"
		"agent (see 'kiln run --help'). boot boots a Linux guest on "
		"KVM with\n"
		"the serial console on this terminal.\n"
		"\n"
		"Options for boot:\n"
		"  --kernel PATH       bzImage or PVH vmlinux (default: kiln's "
		"own guest)\n"
		"  --initrd PATH       initramfs (default with the default "
		"kernel: kiln's)\n"
		"  --cpus N            vCPUs, 1..%u (default 1)\n"
		"  --memory MIB        guest RAM in MiB, %u..%u (default 256)\n"
		"  --cmdline ARGS      appended to 'console=ttyS0 reboot=k "
		"panic=-1'\n"
		"  --console-log FILE  write the console to FILE instead of "
		"stdout\n"
		"  --timeout SECONDS   stop the guest after SECONDS (exit "
		"124)\n"
		"  --disk PATH[,ro]    raw disk image as the next virtio-blk "
		"disk\n"
		"                      (/dev/vda, vdb, ...); repeatable\n"
		"  --console KIND      serial (ttyS0, default) or virtio "
		"(hvc0)\n"
		"  --share DIR:TAG[:ro]  share a host directory (virtio-fs, "
		"mount -t\n"
		"                      virtiofs TAG); repeatable\n"
		"  --vsock cid=C,uds=PATH  virtio-vsock; guest port P reaches "
		"PATH_P,\n"
		"                      host clients connect to PATH, send "
		"CONNECT P\n"
		"  --device TYPE,KEY=VALUE,...  any virtio device, as for "
		"'kiln\n"
		"                      vhost-user --device': "
		"blk,path=IMAGE[,ro]\n"
		"                      fs,dir=DIR,tag=TAG[,ro] "
		"vsock,cid=C,uds=PATH rng net\n"
		"  --net user[,egress=public|all|none]  virtio-net with "
		"kiln's\n"
		"                      user-mode NAT (--allow, --deny, -p as "
		"for run)\n"
		"  --accel ENGINE      auto (default; also $KILN_ACCEL), kvm "
		"(hardware\n"
		"                      virtualization only) or tcg (QEMU's "
		"emulator)\n"
		"  --debug-exit        let the guest end the VM with its "
		"status by\n"
		"                      writing it to port 0x%x (test guests)\n"
		"  -v, --verbose       report how the guest ended, even when "
		"clean\n"
		"\n"
		"mkimage makes an ext4 image from DIR (mke2fs -d) for --disk.\n"
		"\n"
		"On a terminal, Ctrl-A x quits and Ctrl-A Ctrl-A sends "
		"Ctrl-A.\n"
		"Exit status: 0 guest rebooted or powered off; 1 guest crashed "
		"(triple\n"
		"fault, KVM internal error); 124 timeout; 125 kiln failed; 2 "
		"usage error;\n"
		"N when a --debug-exit guest wrote N.\n",
		KILN_MAX_CPUS, KILN_MIN_MEMORY_MIB, KILN_MAX_MEMORY_MIB,
		KILN_DEBUG_EXIT_PORT);
}

struct signal_waiter {
	struct kiln_vm *vm;
	sigset_t set;
	int signo;
};

static void *signal_thread(void *arg)
{
	struct signal_waiter *w = arg;
	int sig;

	if (sigwait(&w->set, &sig) == 0) {
		w->signo = sig;
		kiln_vm_stop(w->vm);
	}
	return NULL;
}

static int exit_code_for(const struct kiln_exit_info *info, int signo)
{
	switch (info->outcome) {
	case KILN_OUTCOME_RESET:
	case KILN_OUTCOME_HALT: return 0;
	case KILN_OUTCOME_STOPPED: return signo ? 128 + signo : 0;
	case KILN_OUTCOME_DEBUG_EXIT: return info->debug_exit_code & 0xff;
	case KILN_OUTCOME_TIMEOUT: return EXIT_TIMEOUT;
	case KILN_OUTCOME_TRIPLE_FAULT:
	case KILN_OUTCOME_INTERNAL_ERROR: return EXIT_GUEST_CRASH;
	default: return EXIT_KILN_FAILED;
	}
}

static int cmd_boot(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_VM_OPTIONS,
		{"console-log", required_argument, NULL, OPT_CONSOLE_LOG},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"debug-exit", no_argument, NULL, OPT_DEBUG_EXIT},
		{"console", required_argument, NULL, OPT_CONSOLE},
		{"vsock", required_argument, NULL, OPT_VSOCK},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *console_log = NULL;
	struct cli_vm vmopt = {0};
	struct kiln_config *cfg;
	struct kiln_vm *vm = NULL;
	struct kiln_exit_info info;
	struct signal_waiter waiter;
	pthread_t sig_thread;
	int timeout_ms = -1, c, r, code, out_fd = STDOUT_FILENO;

	cfg = kiln_config_new();
	if (!cfg) {
		fprintf(stderr, "%s: out of memory\n", progname);
		return EXIT_KILN_FAILED;
	}
	kiln_config_set_log(cfg, cli_log, NULL, KILN_LOG_INFO);
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_CONSOLE_LOG: console_log = optarg; break;
		case OPT_TIMEOUT:
			if (!cli_parse_seconds("--timeout", optarg,
					       &timeout_ms))
				goto usage;
			break;
		case OPT_DEBUG_EXIT: kiln_config_set_debug_exit(cfg, 1); break;
		case OPT_VSOCK: {
			/* cid=C,uds=PATH (the path may not contain commas) */
			char *spec = strdup(optarg), *save = NULL, *tok;
			const char *uds = NULL;
			uint64_t cid = 0;
			bool ok = spec != NULL, have_cid = false;

			for (tok = spec ? strtok_r(spec, ",", &save) : NULL;
			     ok && tok; tok = strtok_r(NULL, ",", &save)) {
				if (!strncmp(tok, "cid=", 4))
					ok = have_cid =
						cli_parse_u64(tok + 4, &cid);
				else if (!strncmp(tok, "uds=", 4) && tok[4])
					uds = tok + 4;
				else
					ok = false;
			}
			if (!ok || !have_cid || !uds) {
				cli_usage_error("--vsock: expected "
						"cid=CID,uds=PATH, got "
						"'%s'",
						optarg);
				free(spec);
				goto usage;
			}
			r = kiln_config_set_vsock(cfg, cid, uds);
			free(spec);
			if (r < 0)
				goto usage;
			break;
		}
		case OPT_CONSOLE:
			if (!strcmp(optarg, "serial")) {
				kiln_config_set_console(cfg,
							KILN_CONSOLE_SERIAL);
			} else if (!strcmp(optarg, "virtio")) {
				kiln_config_set_console(cfg,
							KILN_CONSOLE_VIRTIO);
			} else {
				cli_usage_error(
					"--console: '%s' is not 'serial' or "
					"'virtio'",
					optarg);
				goto usage;
			}
			break;
		case 'v':
			verbose = true;
			kiln_config_set_log(cfg, cli_log, NULL, KILN_LOG_DEBUG);
			break;
		case 'h':
			print_help(stdout);
			kiln_config_free(cfg);
			return 0;
		default:
			if (c >= OPT_KERNEL && c <= OPT_VM_LAST) {
				r = cli_vm_option(cfg, &vmopt, c, optarg);
				if (r == EXIT_USAGE)
					goto usage;
				if (r)
					goto fail;
				break;
			}
			fprintf(stderr,
				"Try '%s --help' for more information.\n",
				progname);
			goto usage;
		}
	}
	if (optind < argc) {
		cli_usage_error("boot: unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	switch (cli_vm_finish(cfg, &vmopt)) {
	case 0: break;
	case EXIT_USAGE: goto usage;
	default: goto fail;
	}
	if (console_log) {
		out_fd = open(console_log,
			      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out_fd < 0) {
			fprintf(stderr, "%s: cannot open console log %s: %s\n",
				progname, console_log, strerror(errno));
			goto fail;
		}
	}
	kiln_config_set_console_fds(cfg, STDIN_FILENO, out_fd);
	if (isatty(STDIN_FILENO))
		kiln_config_set_console_escape(cfg, 0x01); /* Ctrl-A */

	/* SIGINT/SIGTERM/SIGHUP stop the guest cleanly via a waiter thread. */
	sigemptyset(&waiter.set);
	sigaddset(&waiter.set, SIGINT);
	sigaddset(&waiter.set, SIGTERM);
	sigaddset(&waiter.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &waiter.set, NULL);
	waiter.signo = 0;

	r = kiln_vm_create(cfg, &vm);
	kiln_config_free(cfg);
	cfg = NULL;
	if (r < 0)
		goto fail;
	waiter.vm = vm;
	if (pthread_create(&sig_thread, NULL, signal_thread, &waiter) != 0) {
		fprintf(stderr, "%s: cannot start signal thread\n", progname);
		goto fail;
	}
	if (isatty(STDIN_FILENO))
		cli_tty_raw(true);
	r = kiln_vm_start(vm);
	if (r == 0)
		r = kiln_vm_wait(vm, timeout_ms, &info);
	if (r == -ETIMEDOUT) {
		char detail[64];

		snprintf(detail, sizeof(detail), "timed out after %d.%03d s",
			 timeout_ms / 1000, timeout_ms % 1000);
		kiln_vm_stop_with(vm, KILN_OUTCOME_TIMEOUT, detail);
		r = kiln_vm_wait(vm, -1, &info);
	}
	cli_tty_restore();
	/* sigwait is a cancellation point: the waiter must not outlive vm. */
	pthread_cancel(sig_thread);
	pthread_join(sig_thread, NULL);
	if (r < 0)
		goto fail;
	code = exit_code_for(&info, waiter.signo);
	if (verbose || code != 0 || info.outcome == KILN_OUTCOME_STOPPED)
		fprintf(stderr, "%s: %s: %s\n", progname,
			kiln_outcome_name(info.outcome), info.detail);
	if (info.outcome == KILN_OUTCOME_INTERNAL_ERROR &&
	    kiln_host_limitation())
		fprintf(stderr, "%s: note: %s\n", progname,
			kiln_host_limitation());
	kiln_vm_destroy(vm);
	if (out_fd != STDOUT_FILENO)
		close(out_fd);
	return code;
usage:
	kiln_config_free(cfg);
	return EXIT_USAGE;
fail:
	cli_tty_restore();
	kiln_config_free(cfg);
	kiln_vm_destroy(vm);
	return EXIT_KILN_FAILED;
}

static uint64_t tree_bytes;

static int add_size(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	/* data plus an inode's worth per entry */
	tree_bytes += (uint64_t)st->st_size + 4096;
	return 0;
}

/* kiln mkimage DIR IMAGE [--size MIB]: an ext4 image holding DIR's files,
 * made by mke2fs -d (e2fsprogs). */
static int cmd_mkimage(int argc, char **argv)
{
	static const struct option opts[] = {
		{"size", required_argument, NULL, OPT_SIZE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir, *img;
	uint64_t size_mib = 0;
	struct stat st;
	char size_arg[32];
	int c, fd, status;
	pid_t pid;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_SIZE:
			if (!cli_parse_u64(optarg, &size_mib) || size_mib < 1 ||
			    size_mib > 16u * 1024 * 1024) {
				cli_usage_error(
					"--size: '%s' is not a size in MiB "
					"(1..16777216)",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h': print_help(stdout); return 0;
		default:
			fprintf(stderr,
				"Try '%s --help' for more information.\n",
				progname);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		cli_usage_error("mkimage: expected DIR and IMAGE");
		return EXIT_USAGE;
	}
	dir = argv[optind];
	img = argv[optind + 1];
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "%s: mkimage: %s is not a directory\n",
			progname, dir);
		return EXIT_KILN_FAILED;
	}
	if (size_mib == 0) {
		tree_bytes = 0;
		if (nftw(dir, add_size, 16, FTW_PHYS) < 0) {
			fprintf(stderr, "%s: mkimage: cannot read %s: %s\n",
				progname, dir, strerror(errno));
			return EXIT_KILN_FAILED;
		}
		/* room for ext4's metadata and journal, and some to spare */
		size_mib = tree_bytes / (1 << 20) * 5 / 4 + 16;
	}
	/* Never clobber an existing file: nothing the user has is lost. */
	fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "%s: mkimage: cannot create %s: %s\n", progname,
			img, strerror(errno));
		return EXIT_KILN_FAILED;
	}
	if (ftruncate(fd, (off_t)(size_mib << 20)) < 0) {
		fprintf(stderr, "%s: mkimage: cannot size %s: %s\n", progname,
			img, strerror(errno));
		close(fd);
		unlink(img);
		return EXIT_KILN_FAILED;
	}
	close(fd);
	snprintf(size_arg, sizeof(size_arg), "%lluM",
		 (unsigned long long)size_mib);
	pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		if (devnull >= 0)
			dup2(devnull, STDOUT_FILENO);
		execlp("mke2fs", "mke2fs", "-q", "-F", "-t", "ext4", "-d", dir,
		       img, size_arg, (char *)NULL);
		fprintf(stderr,
			"%s: mkimage: cannot run mke2fs: %s (install "
			"e2fsprogs)\n",
			progname, strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) != 127)
			fprintf(stderr,
				"%s: mkimage: mke2fs failed (is %llu MiB "
				"enough? try --size)\n",
				progname, (unsigned long long)size_mib);
		unlink(img);
		return EXIT_KILN_FAILED;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		cli_usage_error("missing command");
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		print_help(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("kiln %s\n", kiln_version());
		return 0;
	}
	if (!strcmp(argv[1], "mkimage"))
		return cmd_mkimage(argc - 1, argv + 1);
	if (!strcmp(argv[1], "boot")) {
		progname = "kiln";
		return cmd_boot(argc - 1, argv + 1);
	}
	if (!strcmp(argv[1], "vhost-user"))
		return kiln_cmd_vhost_user(argc - 1, argv + 1);
	if (!strcmp(argv[1], "run"))
		return kiln_cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "start"))
		return kiln_cmd_start(argc - 1, argv + 1);
	if (!strcmp(argv[1], "exec"))
		return kiln_cmd_exec(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cp"))
		return kiln_cmd_cp(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ps"))
		return kiln_cmd_ps(argc - 1, argv + 1);
	if (!strcmp(argv[1], "stop"))
		return kiln_cmd_stop(argc - 1, argv + 1);
	if (!strcmp(argv[1], "network"))
		return kiln_cmd_network(argc - 1, argv + 1);
	if (!strcmp(argv[1], "pool"))
		return kiln_cmd_pool(argc - 1, argv + 1);
	if (!strcmp(argv[1], "snapshot"))
		return kiln_cmd_snapshot(argc - 1, argv + 1);
	cli_usage_error("unknown command '%s'", argv[1]);
	return EXIT_USAGE;
}
