/* SPDX-License-Identifier: MIT */
/*
 * Sandbox commands, all built on libkiln's sandbox API (kiln.h):
 *
 *   kiln run    boot the default guest, run one command, stop
 *   kiln start  boot a named sandbox in a background process
 *   kiln exec   run a command in a named sandbox (or any agent's socket)
 *   kiln cp     copy a file in or out
 *   kiln ps     list named sandboxes
 *   kiln stop   shut one down, killing it after a grace period
 *
 * A named sandbox lives in $XDG_RUNTIME_DIR/kiln/NAME (or /tmp/kiln-UID/NAME):
 *   vsock        the hybrid vsock socket (kiln exec/cp connect here)
 *   control      the background process's control socket (stop, status,
 *                stats: its network card's counters)
 *   console.log  the guest's console
 *   info         "pid cpus memory_mib start_time start_ticks engine ports" of
 *                the background process (start_ticks: its start time in
 *                /proc/PID/stat, so a reused pid is never taken for it;
 *                engine: kvm or tcg, what runs the guest; ports: its -p
 *                forwards as "tcp:HOSTIP:HOSTPORT:GUESTPORT;...", or -)
 * The background process removes the directory when the VM ends.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <kiln/kiln.h>

#include "cli.h"
#include "commands.h"

#define DEFAULT_BOOT_TIMEOUT_MS 30000
#define DEFAULT_GRACE_MS	5000
#define FILE_TIMEOUT_MS		(10 * 60 * 1000)
#define MAX_FILE_BYTES		(1ull << 30)
#define MAX_ENV			256
#define MAX_COPIES		32
#define MAX_NAME		32
/* After the command's own --timeout, the host gives the agent this long to
 * report the kill before it gives up on it. */
#define TIMEOUT_SLACK_MS 5000
/* After the first SIGINT/SIGTERM/SIGHUP is passed on to the command, kiln
 * waits this long for it to end (a second signal: not at all), then kills
 * it and exits 128+N. */
#define SIGNAL_GRACE_MS 10000

/* ---- signals and the terminal ---- */

static volatile sig_atomic_t pending_signal, pending_winch;
/* run_command gave up on a command after signals: nothing more to do */
static bool gave_up;

static void on_signal(int sig)
{
	if (sig == SIGWINCH)
		pending_winch = 1;
	else
		pending_signal = sig;
}

void cli_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: polls wake up */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGWINCH, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int cli_pending_signal(void)
{
	return pending_signal;
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void tty_size(unsigned *rows, unsigned *cols)
{
	struct winsize ws;

	*rows = *cols = 0;
	if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* ---- running one command ---- */

/* The exec options of run and exec. */
struct cmd_opts {
	const char *env[MAX_ENV + 1];
	unsigned nenv;
	const char *cwd;
	int timeout_ms; /* -1: none */
	bool interactive, tty;
	char **argv;
};

/* -e/-w/--timeout/-i/-t; 0 if c was one of them (or an exit code). */
static int cmd_option(struct cmd_opts *o, int c, const char *arg, bool *used)
{
	*used = true;
	switch (c) {
	case 'e':
		if (!*arg || arg[0] == '=') {
			cli_usage_error("-e: expected NAME=VALUE, got '%s'",
					arg);
			return EXIT_USAGE;
		}
		if (!strchr(arg, '=')) {
			/* -e NAME passes the host's value, as docker does */
			const char *v = getenv(arg);
			char *kv;

			if (!v)
				return 0;
			if (asprintf(&kv, "%s=%s", arg, v) < 0)
				return EXIT_KILN_FAILED;
			arg = kv; /* lives until exit */
		}
		if (o->nenv == MAX_ENV) {
			cli_usage_error("-e: at most %d variables", MAX_ENV);
			return EXIT_USAGE;
		}
		o->env[o->nenv++] = arg;
		return 0;
	case 'w':
		if (arg[0] != '/') {
			cli_usage_error("-w: '%s' is not an absolute path",
					arg);
			return EXIT_USAGE;
		}
		o->cwd = arg;
		return 0;
	case OPT_TIMEOUT:
		return cli_parse_seconds("--timeout", arg, &o->timeout_ms)
			       ? 0
			       : EXIT_USAGE;
	case 'i': o->interactive = true; return 0;
	case 't': o->tty = true; return 0;
	}
	*used = false;
	return 0;
}

/* The command after the options; none and a terminal: a shell. */
static int cmd_argv(struct cmd_opts *o, int argc, char **argv)
{
	static char *shell[] = {"/bin/sh", NULL};

	if (optind < argc) {
		o->argv = argv + optind;
		return 0;
	}
	if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
		o->argv = shell;
		o->interactive = o->tty = true;
		return 0;
	}
	cli_usage_error("missing command (kiln %s ... -- CMD [ARGS...])",
			argv[0]);
	return EXIT_USAGE;
}

/* Runs o's command in sb with this process's stdio; returns its status. */
static int run_command(struct kiln_sandbox *sb, struct cmd_opts *o)
{
	struct kiln_exec_opts eo;
	struct kiln_exec_result res;
	struct kiln_exec *e;
	int64_t waited = 0, limit;
	long long first_sig_at = 0;
	int err, first_sig = 0;

	if (o->tty && !isatty(STDIN_FILENO)) {
		cli_error("-t: stdin is not a terminal");
		return EXIT_USAGE;
	}
	kiln_exec_opts_init(&eo);
	eo.argv = (const char *const *)o->argv;
	o->env[o->nenv] = NULL;
	eo.env = o->nenv ? o->env : NULL;
	eo.cwd = o->cwd;
	eo.timeout_ms = o->timeout_ms > 0 ? (unsigned)o->timeout_ms : 0;
	eo.pty = o->tty;
	if (o->tty)
		tty_size(&eo.rows, &eo.cols);
	eo.stdin_fd = o->interactive ? STDIN_FILENO : -1;
	eo.stdout_fd = STDOUT_FILENO;
	eo.stderr_fd = STDERR_FILENO;
	limit = o->timeout_ms > 0 ? o->timeout_ms + TIMEOUT_SLACK_MS : -1;

	err = kiln_sandbox_exec(sb, &eo, &e);
	if (err < 0)
		return EXIT_KILN_FAILED;
	if (o->tty)
		cli_tty_raw(false);
	for (;;) {
		err = kiln_exec_wait(e, 100, &res);
		if (err != -ETIMEDOUT)
			break;
		waited += 100;
		if (pending_signal) {
			/* with a pty, ^C arrives as a byte; these come from
			 * kill(1) and hang-ups: pass the first on, give up
			 * at the second */
			int sig = pending_signal;

			pending_signal = 0;
			if (first_sig) {
				cli_tty_restore();
				cli_error("%s: signal %d again; killing it and "
					  "giving up on it",
					  o->argv[0], sig);
				goto give_up;
			}
			first_sig = sig;
			first_sig_at = mono_ms();
			kiln_exec_kill(e, sig);
		}
		if (first_sig && mono_ms() - first_sig_at >= SIGNAL_GRACE_MS) {
			cli_tty_restore();
			cli_error("%s: still running %d s after signal %d; "
				  "killing it and giving up on it",
				  o->argv[0], SIGNAL_GRACE_MS / 1000,
				  first_sig);
			goto give_up;
		}
		if (pending_winch && o->tty) {
			unsigned rows, cols;

			pending_winch = 0;
			tty_size(&rows, &cols);
			kiln_exec_resize(e, rows, cols);
		}
		if (limit >= 0 && waited > limit) {
			cli_tty_restore();
			cli_error("the command did not end %d ms after its "
				  "timeout; giving up on it",
				  TIMEOUT_SLACK_MS);
			kiln_exec_free(e);
			return EXIT_TIMEOUT;
		}
	}
	cli_tty_restore();
	kiln_exec_free(e);
	if (err < 0)
		return EXIT_KILN_FAILED;
	/* (the library leaves no control characters in res.message) */
	if (!res.started || res.error)
		cli_error("%s: %s", o->argv[0],
			  res.message[0] ? res.message : strerror(res.error));
	else if (res.timed_out)
		cli_error("%s: timed out, killed", o->argv[0]);
	return res.status;
give_up:
	/* the command (or the agent) ignores it: as if kiln were killed
	 * by the first signal */
	kiln_exec_kill(e, SIGKILL);
	kiln_exec_free(e);
	gave_up = true;
	return 128 + first_sig;
}

/* ---- copies ---- */

struct copy {
	const char *host, *guest;
};

/* HOST:GUEST (copy-in; GUEST absolute, split at the last ":/") or
 * GUEST:HOST (copy-out; split at the first ':'). */
static bool parse_copy(const char *arg, bool in, struct copy *c)
{
	char *s = strdup(arg), *sep;

	if (!s)
		return false;
	if (in) {
		sep = NULL;
		for (char *p = strstr(s, ":/"); p; p = strstr(p + 1, ":/"))
			sep = p;
	} else {
		sep = s[0] == '/' ? strchr(s, ':') : NULL;
	}
	if (!sep || sep == s || !sep[1]) {
		free(s);
		return false;
	}
	*sep = 0;
	c->host = in ? s : sep + 1;
	c->guest = in ? sep + 1 : s;
	return true;
}

static int copy_in(struct kiln_sandbox *sb, const char *host, const char *guest)
{
	struct stat st;
	int fd = open(host, O_RDONLY | O_CLOEXEC), err;

	if (fd < 0) {
		cli_error("copy in: %s: %s", host, strerror(errno));
		return EXIT_KILN_FAILED;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		cli_error("copy in: %s is not a regular file", host);
		close(fd);
		return EXIT_KILN_FAILED;
	}
	err = kiln_sandbox_put_file(sb, guest, st.st_mode & 0777, fd,
				    (uint64_t)st.st_size, FILE_TIMEOUT_MS);
	close(fd);
	if (err < 0) {
		cli_error("copy in: %s -> %s: %s", host, guest, strerror(-err));
		return EXIT_KILN_FAILED;
	}
	return 0;
}

/* Into an existing special file (a character device such as /dev/null or
 * a terminal, a FIFO with a reader), as cp(1) does: written in place, never
 * replaced. Block devices and sockets are refused. */
static int copy_out_special(struct kiln_sandbox *sb, const char *guest,
			    const char *host, const struct stat *st)
{
	int fd, fl, err;

	if (S_ISBLK(st->st_mode) || S_ISSOCK(st->st_mode)) {
		cli_error("copy out: %s is a %s; refusing to write into it",
			  host,
			  S_ISBLK(st->st_mode) ? "block device" : "socket");
		return EXIT_KILN_FAILED;
	}
	/* O_NONBLOCK: a FIFO nobody reads fails (ENXIO) instead of hanging */
	fd = open(host, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		cli_error("copy out: %s: %s", host,
			  errno == ENXIO ? "a FIFO that nobody reads"
					 : strerror(errno));
		return EXIT_KILN_FAILED;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	err = kiln_sandbox_get_file(sb, guest, MAX_FILE_BYTES, fd,
				    FILE_TIMEOUT_MS, NULL);
	close(fd);
	if (err < 0) {
		cli_error("copy out: %s -> %s: %s", guest, host,
			  strerror(-err));
		return EXIT_KILN_FAILED;
	}
	return 0;
}

/* Copies guest to host the way cp(1) treats the destination: a symbolic
 * link is followed (its target gets the file; the link stays; a dangling
 * one is refused), an existing special file is written into, and a
 * regular file or a new name gets a temp file beside it, renamed over it
 * once complete, so a failed copy never clobbers what was there. */
static int copy_out(struct kiln_sandbox *sb, const char *guest,
		    const char *host)
{
	char tmp[PATH_MAX], real[PATH_MAX];
	struct stat st, lst;
	int fd, err;

	if (lstat(host, &lst) == 0) {
		if (stat(host, &st) < 0) {
			cli_error("copy out: %s is a dangling symbolic link; "
				  "not writing through it",
				  host);
			return EXIT_KILN_FAILED;
		}
		if (S_ISDIR(st.st_mode)) {
			cli_error("copy out: %s is a directory; name the file",
				  host);
			return EXIT_KILN_FAILED;
		}
		if (!S_ISREG(st.st_mode))
			return copy_out_special(sb, guest, host, &st);
		if (S_ISLNK(lst.st_mode)) {
			/* the temp file goes beside the link's target */
			if (!realpath(host, real)) {
				cli_error("copy out: %s: %s", host,
					  strerror(errno));
				return EXIT_KILN_FAILED;
			}
			host = real;
		}
	}
	if (snprintf(tmp, sizeof(tmp), "%s.kiln-XXXXXX", host) >=
	    (int)sizeof(tmp)) {
		cli_error("copy out: %s: name too long", host);
		return EXIT_KILN_FAILED;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		cli_error("copy out: cannot create a file beside %s: %s", host,
			  strerror(errno));
		return EXIT_KILN_FAILED;
	}
	err = kiln_sandbox_get_file(sb, guest, MAX_FILE_BYTES, fd,
				    FILE_TIMEOUT_MS, NULL);
	if (err == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
		err = -errno;
	close(fd);
	if (err == 0 && rename(tmp, host) < 0)
		err = -errno;
	if (err < 0) {
		unlink(tmp);
		cli_error("copy out: %s -> %s: %s", guest, host,
			  strerror(-err));
		return EXIT_KILN_FAILED;
	}
	return 0;
}

/* ---- booting ---- */

/* Prints the end of the console log (why a boot failed, usually). */
static void show_console_tail(int fd)
{
	char buf[4096];
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from =
		end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n;

	if (end <= 0)
		return;
	n = pread(fd, buf, sizeof(buf) - 1, from);
	if (n <= 0)
		return;
	buf[n] = 0;
	fprintf(stderr, "%s: the guest's console ended with:\n%s%s",
		cli_progname, buf, buf[n - 1] == '\n' ? "" : "\n");
}

/* Boots cfg as a sandbox and waits for its agent: 0, or an exit code after
 * saying why (with the console's last words when it has them). */
static int boot_sandbox(struct kiln_config *cfg, int boot_timeout_ms,
			int console_fd, struct kiln_sandbox **out)
{
	int err = kiln_sandbox_create(cfg, out);

	if (err < 0)
		return err == -EINVAL ? EXIT_USAGE : EXIT_KILN_FAILED;
	err = kiln_sandbox_wait_ready(*out, boot_timeout_ms);
	if (err < 0) {
		/* (a host limitation was already reported as a warning) */
		if (console_fd >= 0)
			show_console_tail(console_fd);
		kiln_sandbox_destroy(*out);
		*out = NULL;
		return EXIT_KILN_FAILED;
	}
	return 0;
}

/* A console log: the named file, or an anonymous one shown on failure. */
static int open_console_log(const char *path)
{
	int fd;

	if (path) {
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			cli_error("cannot open console log %s: %s", path,
				  strerror(errno));
		return fd;
	}
	fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	return fd < 0 ? open("/dev/null", O_RDWR | O_CLOEXEC) : fd;
}

static void print_run_help(void)
{
	printf("Usage: kiln run [OPTIONS] -- CMD [ARGS...]\n"
	       "\n"
	       "Boot kiln's guest, run CMD through its agent with this "
	       "terminal's\n"
	       "stdio, and exit with CMD's status (124 timeout, 125 kiln "
	       "failed,\n"
	       "126 not executable, 127 not found, 128+N killed by signal N).\n"
	       "Without CMD on a terminal: an interactive shell.\n"
	       "\n"
	       "  --cpus N, --memory MIB, --disk PATH[,ro], --kernel, "
	       "--initrd,\n"
	       "  --cmdline ARGS, --accel auto|kvm|tcg, --device SPEC  as for "
	       "kiln boot\n"
	       "  --share DIR:TAG[:ro][:/GUEST]  share DIR, mounted at "
	       "/mnt/TAG\n"
	       "                       (or GUEST) in the sandbox\n"
	       "  --net none|user[,egress=public|all|none]  network (default "
	       "none:\n"
	       "                       no NIC); user: rootless NAT, eth0 "
	       "10.0.2.15,\n"
	       "                       the internet only unless egress= "
	       "says more\n"
	       "  --allow RULE, --deny RULE  CIDR[:PORT[-PORT]][/tcp|/udp] "
	       "or\n"
	       "                       host:PORT (the host's loopback); "
	       "first match\n"
	       "                       wins, before the posture; "
	       "repeatable\n"
	       "  --allow-domain NAME|*.SUFFIX  what NAME resolves to is "
	       "reachable;\n"
	       "                       under egress=none other names get "
	       "NXDOMAIN\n"
	       "  --dns IP[:PORT]      the resolver guest queries go to\n"
	       "  --ulimit NAME=SOFT[:HARD]  a limit on every command: nofile, "
	       "nproc,\n"
	       "                       fsize, stack, core, memlock, as "
	       "(\"unlimited\")\n"
	       "  -p [HOSTIP:]HOSTPORT:GUESTPORT[/udp]  publish a guest port "
	       "(HOSTIP\n"
	       "                       127.0.0.1 unless given); "
	       "repeatable\n"
	       "  --network NAME       a card on cluster network NAME (kiln "
	       "network\n"
	       "                       create); members reach each other by "
	       "name\n"
	       "  --name NAME          the guest's hostname and its name on "
	       "networks\n"
	       "  --pool POOL          run CMD in a pre-booted member of POOL "
	       "(kiln\n"
	       "                       pool start); it is destroyed after\n"
	       "  --from DIR           run CMD in a clone of the sandbox "
	       "template DIR\n"
	       "                       (kiln snapshot; KVM engine) instead "
	       "of booting\n"
	       "  -e NAME=VALUE        environment (-e NAME: the host's "
	       "value)\n"
	       "  -w DIR               working directory in the guest\n"
	       "  --timeout SECONDS    kill CMD after SECONDS (exit 124)\n"
	       "  -i                   pass stdin to CMD\n"
	       "  -t                   run CMD on a pseudo-terminal\n"
	       "  --copy-in HOST:GUEST   copy a file in before CMD runs\n"
	       "  --copy-out GUEST:HOST  copy a file out after CMD ended\n"
	       "  --console-log FILE   keep the guest's console in FILE\n"
	       "  --boot-timeout SECONDS  wait this long for the agent (30)\n"
	       "  -v                   say what kiln does\n"
	       "\n"
	       "SIGINT, SIGTERM and SIGHUP are passed on to CMD. If CMD has "
	       "not "
	       "ended\n"
	       "10 s after the first, or a second one arrives, kiln kills CMD "
	       "and\n"
	       "exits 128+N (N: the first signal).\n"
	       "--copy-out HOST as cp(1): a symbolic link is followed (a "
	       "dangling\n"
	       "one is refused), a character device or FIFO is written into, "
	       "a\n"
	       "block device or socket refused, a regular file replaced "
	       "once the\n"
	       "copy is complete.\n");
}

#define CMD_OPTIONS                                                            \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},                     \
		{"env", required_argument, NULL, 'e'},                         \
		{"workdir", required_argument, NULL, 'w'},                     \
		{"interactive", no_argument, NULL, 'i'},                       \
	{                                                                      \
		"tty", no_argument, NULL, 't'                                  \
	}

static bool verbose; /* -v given */

static bool parse_rlim(const char *s, uint64_t *out)
{
	if (!strcmp(s, "unlimited")) {
		*out = KILN_ULIMIT_UNLIMITED;
		return true;
	}
	return cli_parse_u64(s, out) && *out != KILN_ULIMIT_UNLIMITED;
}

/* --ulimit NAME=SOFT[:HARD] (HARD: SOFT unless given; "unlimited"). */
static int ulimit_option(struct kiln_config *cfg, const char *arg)
{
	char buf[96], *eq, *colon;
	uint64_t soft, hard;

	if (snprintf(buf, sizeof(buf), "%s", arg) >= (int)sizeof(buf) ||
	    !(eq = strchr(buf, '=')))
		goto bad;
	*eq = 0;
	colon = strchr(eq + 1, ':');
	if (colon)
		*colon = 0;
	if (!parse_rlim(eq + 1, &soft) ||
	    (colon ? !parse_rlim(colon + 1, &hard) : !(hard = soft, true)))
		goto bad;
	/* bad names and values are explained by the library (logged) */
	return kiln_config_set_ulimit(cfg, buf, soft, hard) < 0 ? EXIT_USAGE
								: 0;
bad:
	cli_usage_error("--ulimit: expected NAME=SOFT[:HARD] (a number or "
			"unlimited), got '%s'",
			arg);
	return EXIT_USAGE;
}

/* The network card's counters once the command ended: all of them with
 * -v, else one line if the policy refused anything. */
static void report_net(struct kiln_sandbox *sb)
{
	struct kiln_net_stats st;

	if (kiln_vm_net_stats(kiln_sandbox_vm(sb), &st) < 0)
		return;
	if (verbose)
		fprintf(stderr,
			"%s: net: %" PRIu64 " frames out, %" PRIu64
			" denied, %" PRIu64 " malformed; %" PRIu64
			" in, %" PRIu64 " dropped\n",
			cli_progname, st.tx_frames, st.tx_denied, st.tx_errors,
			st.rx_frames, st.rx_dropped);
	else if (st.tx_denied)
		fprintf(stderr,
			"%s: net: the egress policy refused %" PRIu64
			" frames (-v shows each)\n",
			cli_progname, st.tx_denied);
}

/* Options run and start share: the VM's, --boot-timeout and -v. Returns 0
 * (*handled says whether c was one of them) or an exit code. */
int cli_boot_option(struct kiln_config *cfg, struct cli_vm *vm, int c,
		    const char *arg, int *boot_timeout_ms, bool *handled)
{
	*handled = true;
	if (c == 'p') /* -p: --publish */
		c = OPT_PUBLISH;
	if (c >= OPT_KERNEL && c <= OPT_VM_LAST)
		return cli_vm_option(cfg, vm, c, arg);
	switch (c) {
	case OPT_BOOT_TIMEOUT:
		return cli_parse_seconds("--boot-timeout", arg, boot_timeout_ms)
			       ? 0
			       : EXIT_USAGE;
	case OPT_ULIMIT: return ulimit_option(cfg, arg);
	case 'v':
		kiln_config_set_log(cfg, cli_log, NULL, KILN_LOG_DEBUG);
		verbose = true;
		return 0;
	}
	*handled = false;
	return 0;
}

int kiln_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_VM_OPTIONS,
		CMD_OPTIONS,
		{"copy-in", required_argument, NULL, OPT_COPY_IN},
		{"copy-out", required_argument, NULL, OPT_COPY_OUT},
		{"console-log", required_argument, NULL, OPT_CONSOLE_LOG},
		{"boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT},
		{"ulimit", required_argument, NULL, OPT_ULIMIT},
		{"name", required_argument, NULL, OPT_NAME},
		{"pool", required_argument, NULL, OPT_POOL},
		{"from", required_argument, NULL, OPT_FROM},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct cmd_opts co = {.timeout_ms = -1};
	const char *pool = NULL, *vm_option = NULL, *from = NULL;
	int claim_fd = -1;
	bool named = false;
	struct copy ins[MAX_COPIES], outs[MAX_COPIES];
	unsigned nin = 0, nout = 0;
	struct cli_vm vmopt = {0};
	struct kiln_sandbox *sb = NULL;
	struct kiln_config *cfg = kiln_config_new();
	const char *console_path = NULL;
	int boot_timeout_ms = DEFAULT_BOOT_TIMEOUT_MS, console_fd = -1;
	int c, code = EXIT_KILN_FAILED;
	bool used;

	if (!cfg)
		return EXIT_KILN_FAILED;
	kiln_config_set_log(cfg, cli_log, NULL, KILN_LOG_WARN);
	optind = 1;
	while ((c = getopt_long(argc, argv, "+e:w:itvhp:", opts, NULL)) != -1) {
		code = cmd_option(&co, c, optarg, &used);
		if (!used) {
			code = cli_boot_option(cfg, &vmopt, c, optarg,
					       &boot_timeout_ms, &used);
			/* what makes a VM: the pool's business with --pool */
			if (used && c != 'v' && c != OPT_BOOT_TIMEOUT)
				vm_option = cli_option_word(argv, optind);
		}
		if (used) {
			if (code)
				goto out;
			continue;
		}
		code = EXIT_USAGE;
		switch (c) {
		case OPT_COPY_IN:
		case OPT_COPY_OUT: {
			bool in = c == OPT_COPY_IN;
			struct copy *cp = in ? &ins[nin] : &outs[nout];

			if ((in ? nin : nout) == MAX_COPIES) {
				cli_usage_error("at most %d copies each way",
						MAX_COPIES);
				goto out;
			}
			if (!parse_copy(optarg, in, cp)) {
				cli_usage_error(
					"--copy-%s: expected %s, got '%s'",
					in ? "in" : "out",
					in ? "HOST:/GUEST/PATH"
					   : "/GUEST/PATH:HOST",
					optarg);
				goto out;
			}
			if (in)
				nin++;
			else
				nout++;
			break;
		}
		case OPT_CONSOLE_LOG: console_path = optarg; break;
		case OPT_POOL: pool = optarg; break;
		case OPT_FROM: from = optarg; break;
		case OPT_NAME:
			/* the guest's hostname, and its name on networks */
			if (kiln_config_set_hostname(cfg, optarg) < 0)
				goto out;
			named = true;
			break;
		case 'h':
			print_run_help();
			code = 0;
			goto out;
		default:
			fprintf(stderr, "Try 'kiln run --help' for more "
					"information.\n");
			goto out;
		}
	}
	code = cmd_argv(&co, argc, argv);
	if (code)
		goto out;
	if (pool && from) {
		cli_usage_error("--pool and --from: one or the other (a pool "
				"of clones: kiln pool start --from)");
		code = EXIT_USAGE;
		goto out;
	}
	if (pool) {
		/* a member of a pool: booted already, from the pool's
		 * options */
		code = EXIT_USAGE;
		if (vm_option || console_path || named) {
			cli_usage_error("--pool: the pool's members are booted "
					"already (%s belongs to kiln pool "
					"start)",
					vm_option      ? vm_option
					: console_path ? "--console-log"
						       : "--name");
			goto out;
		}
		cli_catch_signals();
		code = cli_pool_claim(pool, boot_timeout_ms, &sb, &claim_fd);
		if (code)
			goto out;
		goto run;
	}
	/* a clone of a sandbox template: its VM options are the snapshot's */
	if (from && vm_option) {
		cli_usage_error(
			"--from: the snapshot decides the VM (%s cannot "
			"change it)",
			vm_option);
		code = EXIT_USAGE;
		goto out;
	}
	code = from ? cli_vm_engine(cfg, &vmopt) : cli_vm_finish(cfg, &vmopt);
	if (code)
		goto out;
	console_fd = open_console_log(console_path);
	if (console_fd < 0) {
		code = EXIT_KILN_FAILED;
		goto out;
	}
	kiln_config_set_console_fds(cfg, -1, console_fd);
	cli_catch_signals();
	if (from)
		code = kiln_sandbox_restore(cfg, from, boot_timeout_ms, &sb) < 0
			       ? EXIT_KILN_FAILED
			       : 0;
	else
		code = boot_sandbox(cfg, boot_timeout_ms, console_fd, &sb);
	if (code)
		goto out;
run:
	for (unsigned i = 0; i < nin && !code; i++)
		code = copy_in(sb, ins[i].host, ins[i].guest);
	if (!code) {
		code = run_command(sb, &co);
		if (kiln_sandbox_vm(sb))
			report_net(sb);
		/* interrupted: no copies out from what may not answer */
		for (unsigned i = 0; i < nout && !gave_up; i++) {
			int r = copy_out(sb, outs[i].guest, outs[i].host);

			if (r)
				code = r;
		}
	}
	/* a pool's member is released by closing the claim: the pool
	 * destroys it */
	if (!pool)
		kiln_sandbox_stop(sb, 1000, NULL);
out:
	kiln_sandbox_destroy(sb);
	if (claim_fd >= 0)
		close(claim_fd);
	kiln_config_free(cfg);
	if (console_fd >= 0)
		close(console_fd);
	return code;
}

/* ---- named sandboxes ---- */

/* $XDG_RUNTIME_DIR/kiln, or /tmp/kiln-UID (ours, 0700, not a link). */
int cli_state_root(char *buf, size_t len, bool create)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;

	if (xdg && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(buf, len, "%s/kiln", xdg);
	else
		snprintf(buf, len, "/tmp/kiln-%u", (unsigned)getuid());
	if (create && mkdir(buf, 0700) < 0 && errno != EEXIST) {
		cli_error("cannot create %s: %s", buf, strerror(errno));
		return -1;
	}
	if (lstat(buf, &st) < 0)
		return create ? -1 : 1; /* 1: nothing there yet */
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
	    (st.st_mode & 077)) {
		cli_error("%s is not a private directory of this user; "
			  "refusing to use it",
			  buf);
		return -1;
	}
	return 0;
}

bool cli_valid_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > MAX_NAME || name[0] == '.' || name[0] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '_' && *p != '-' &&
		    *p != '.')
			return false;
	return true;
}

/* The state directory of an existing sandbox, or an exit code. */
static int sandbox_dir(const char *name, char *dir, size_t len)
{
	char root[PATH_MAX - 64];
	struct stat st;
	int r;

	if (!cli_valid_name(name)) {
		cli_usage_error("'%s' is not a sandbox name (1..%d of "
				"A-Z a-z 0-9 _ - ., not starting with . or -)",
				name, MAX_NAME);
		return EXIT_USAGE;
	}
	r = cli_state_root(root, sizeof(root), false);
	if (r < 0)
		return EXIT_KILN_FAILED;
	snprintf(dir, len, "%s/%s", root, name);
	if (r == 1 || lstat(dir, &st) < 0) {
		cli_error("no sandbox named '%s' (kiln ps lists them)", name);
		return EXIT_KILN_FAILED;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_error("no sandbox named '%s': %s is not a sandbox's "
			  "directory (kiln leaves it alone)",
			  name, dir);
		return EXIT_KILN_FAILED;
	}
	return 0;
}

/* The background process's pid from DIR/info, or 0; *ticks gets its
 * recorded start time (0 if the file has none). */
static pid_t info_pid(const char *dir, unsigned *cpus, unsigned long *mib,
		      long long *started, unsigned long long *ticks,
		      char engine[8], char ports[256])
{
	char path[PATH_MAX], eng[8] = "-", fwd[256] = "-";
	long long pid = 0, t = 0;
	unsigned long long k = 0;
	unsigned c = 0;
	unsigned long m = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/info", dir);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%lld %u %lu %lld", &pid, &c, &m, &t) != 4)
		pid = 0;
	else if (fscanf(f, "%llu", &k) != 1)
		k = 0;
	else if (fscanf(f, "%7s", eng) != 1)
		strcpy(eng, "-");
	else if (fscanf(f, "%255s", fwd) != 1)
		strcpy(fwd, "-");
	fclose(f);
	if (engine)
		memcpy(engine, eng, sizeof(eng));
	if (ports)
		memcpy(ports, fwd, sizeof(fwd));
	if (cpus)
		*cpus = c;
	if (mib)
		*mib = m;
	if (started)
		*started = t;
	if (ticks)
		*ticks = k;
	return pid > 0 && pid <= INT_MAX ? (pid_t)pid : 0;
}

static bool alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Field 22 of /proc/PID/stat: when the process started, in clock ticks
 * since boot; 0 if it cannot be read. With the pid it names one process
 * for good: a pid is reused, a (pid, start time) pair is not. */
unsigned long long cli_proc_start_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ticks = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* the command name may hold anything, ')' included */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	for (int field = 3; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p, " %llu", &ticks) != 1)
		return 0;
	return ticks;
}

/* Whether DIR's background process runs: 1 yes (*pid), 0 it is gone (or
 * never wrote its pid), -1 the pid DIR names is some other process (a
 * stale state directory whose pid was reused, or a corrupted one). */
static int owner_state(const char *dir, pid_t *pid_out,
		       unsigned long long *ticks_out)
{
	unsigned long long ticks = 0;
	pid_t pid = info_pid(dir, NULL, NULL, NULL, &ticks, NULL, NULL);

	if (pid_out)
		*pid_out = pid;
	if (ticks_out)
		*ticks_out = ticks;
	if (!alive(pid))
		return 0;
	if (ticks && cli_proc_start_ticks(pid) == ticks)
		return 1;
	return -1;
}

/* A verified background process, held through a pidfd where the kernel
 * has them (a pid alone could be reused while we wait for it to end). */
struct owner {
	pid_t pid;
	unsigned long long ticks;
	int pidfd;
};

#ifndef SYS_pidfd_open
#define SYS_pidfd_open	      434
#define SYS_pidfd_send_signal 424
#endif

static void owner_open(struct owner *o)
{
	o->pidfd = (int)syscall(SYS_pidfd_open, o->pid, 0);
	/* the pid may have been reused just before pidfd_open */
	if (o->pidfd >= 0 && cli_proc_start_ticks(o->pid) != o->ticks) {
		close(o->pidfd);
		o->pidfd = -2; /* gone */
	}
}

static bool owner_alive(const struct owner *o)
{
	struct pollfd p = {.fd = o->pidfd, .events = POLLIN};

	if (o->pidfd == -2)
		return false;
	if (o->pidfd >= 0) /* readable once it has exited */
		return poll(&p, 1, 0) == 0;
	return alive(o->pid) && cli_proc_start_ticks(o->pid) == o->ticks;
}

static void owner_signal(const struct owner *o, int sig)
{
	if (o->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, o->pidfd, sig, NULL, 0);
	else if (owner_alive(o))
		kill(o->pid, sig);
}

/* Removes DIR and the files kiln puts there (nothing else). */
static void remove_state(const char *dir)
{
	static const char *const files[] = {
		"vsock", "control", "console.log", "info", "kiln.log", NULL,
	};
	char path[PATH_MAX];
	DIR *d;
	struct dirent *de;

	for (unsigned i = 0; files[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	/* vsock_PORT sockets of host-side listeners */
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "vsock_", 6))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

/* A Unix stream socket connected to, or listening on, path; -1 + errno. */
int cli_unix_socket(const char *path, bool listening)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (listening)
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
				    listen(fd, 8) < 0
			    ? -1
			    : 0;
	else
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Reads a line (without '\n') from fd within timeout_ms: 0 or -1. */
int cli_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t got;
		int r = poll(&pfd, 1, timeout_ms);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got = read(fd, buf + n, 1);
		if (got <= 0)
			return -1;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
	return 0;
}

/* The background process's last error message (it has no terminal), for
 * the answers on its control socket. */
static char bg_last_error[512];

static void bg_log(void *opaque, enum kiln_log_level level, const char *msg)
{
	if (level == KILN_LOG_ERROR) {
		snprintf(bg_last_error, sizeof(bg_last_error), "%s", msg);
		for (char *p = bg_last_error; *p; p++)
			if (*p == '\n')
				*p = ' ';
	}
	cli_log(opaque, level, msg);
}

/* The background process of `kiln start`: owns the VM, answers the
 * control socket, removes the state directory when the VM ends. */
static int serve_sandbox(struct kiln_sandbox *sb, const char *dir,
			 int control_fd)
{
	struct kiln_exit_info info = {0};
	int grace_ms = DEFAULT_GRACE_MS;
	int reply_fd = -1;

	while (kiln_vm_outcome(kiln_sandbox_vm(sb)) == KILN_OUTCOME_NONE) {
		/* wakes for a client, the VM's end, or a signal (EINTR; the
		 * timeout covers one landing just before poll) */
		struct pollfd pfd[2] = {
			{.fd = control_fd, .events = POLLIN},
			{.fd = kiln_vm_end_fd(kiln_sandbox_vm(sb)),
			 .events = POLLIN},
		};
		char line[PATH_MAX + 16];
		int fd;

		if (pending_signal)
			break;
		if (poll(pfd, 2, 1000) <= 0 || !(pfd[0].revents & POLLIN))
			continue;
		fd = accept4(control_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (cli_read_line(fd, line, sizeof(line), 1000) < 0) {
			close(fd);
			continue;
		}
		if (!strcmp(line, "status")) {
			dprintf(fd, "running\n");
			close(fd);
		} else if (!strcmp(line, "stats")) {
			struct kiln_net_stats st;

			if (kiln_vm_net_stats(kiln_sandbox_vm(sb), &st) == 0)
				dprintf(fd,
					"net tx=%llu denied=%llu rx=%llu "
					"dropped=%llu\n",
					(unsigned long long)st.tx_frames,
					(unsigned long long)st.tx_denied,
					(unsigned long long)st.rx_frames,
					(unsigned long long)(st.rx_dropped +
							     st.tx_dropped +
							     st.tx_errors));
			else
				dprintf(fd, "net -\n");
			close(fd);
		} else if (!strncmp(line, "snapshot /", 10)) {
			/* a template of this sandbox; it goes on */
			bg_last_error[0] = 0;
			if (kiln_sandbox_snapshot(sb, line + 9) == 0)
				dprintf(fd, "ok\n");
			else
				dprintf(fd, "error %s\n",
					bg_last_error[0]
						? bg_last_error
						: "the snapshot failed");
			close(fd);
		} else if (!strncmp(line, "stop ", 5)) {
			grace_ms = atoi(line + 5);
			if (grace_ms < 0 || grace_ms > 3600000)
				grace_ms = DEFAULT_GRACE_MS;
			reply_fd = fd;
			break;
		} else {
			dprintf(fd, "error unknown request\n");
			close(fd);
		}
	}
	close(control_fd);
	kiln_sandbox_stop(sb, grace_ms, &info);
	kiln_sandbox_destroy(sb);
	remove_state(dir);
	if (reply_fd >= 0) {
		dprintf(reply_fd, "stopped %s\n",
			kiln_outcome_name(info.outcome));
		close(reply_fd);
	}
	return 0;
}

/* The -p options as the info file keeps them, "tcp:HOSTIP:HOSTPORT:GUEST
 * PORT;..." (checked by the library already), or "-". */
static const char *ports_text(const struct cli_vm *vm, char *out, size_t cap)
{
	size_t used = 0;

	out[0] = 0;
	for (unsigned i = 0; i < vm->nr_forwards; i++) {
		char spec[128];
		const char *proto = "tcp";
		char *slash;
		int colons = 0;

		snprintf(spec, sizeof(spec), "%s", vm->forwards[i]);
		slash = strrchr(spec, '/');
		if (slash) {
			proto = !strcmp(slash, "/udp") ? "udp" : "tcp";
			*slash = 0;
		}
		for (const char *p = spec; *p; p++)
			colons += *p == ':';
		used += (size_t)snprintf(out + used, cap - used, "%s%s:%s%s",
					 used ? ";" : "", proto,
					 colons == 1 ? "127.0.0.1:" : "", spec);
		if (used >= cap) {
			out[0] = 0;
			break;
		}
	}
	return out[0] ? out : "-";
}

/* ---- background processes (kiln start, kiln pool start) ---- */

int cli_fork_background(bool *child, int *ready_fd)
{
	int pipefd[2];
	char status = 0;
	pid_t pid;

	*child = false;
	*ready_fd = -1;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		cli_error("pipe: %s", strerror(errno));
		return EXIT_KILN_FAILED;
	}
	pid = fork();
	if (pid < 0) {
		cli_error("fork: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return EXIT_KILN_FAILED;
	}
	if (pid > 0) {
		/* the parent: wait for "ready", or the child's failure (its
		 * message is already on our shared stderr) */
		int st = 0, code = EXIT_KILN_FAILED;

		close(pipefd[1]);
		if (read(pipefd[0], &status, 1) == 1 && status == 'R')
			code = 0;
		else if (waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
			 WEXITSTATUS(st))
			code = WEXITSTATUS(st);
		close(pipefd[0]);
		return code;
	}
	/* the background process: its own session, not hung up with the
	 * terminal; errors still on the parent's stderr until ready */
	close(pipefd[0]);
	setsid();
	cli_catch_signals();
	signal(SIGHUP, SIG_IGN);
	*child = true;
	*ready_fd = pipefd[1];
	return 0;
}

int cli_background_ready(int ready_fd, int log_fd)
{
	int null = open("/dev/null", O_RDWR), ok;

	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(log_fd >= 0 ? log_fd : null, STDERR_FILENO);
		if (null > 2)
			close(null);
	}
	if (log_fd > 2)
		close(log_fd);
	ok = write(ready_fd, "R", 1) == 1;
	close(ready_fd);
	return ok ? 0 : -1;
}

static void print_start_help(void)
{
	printf("Usage: kiln start [--name NAME] [OPTIONS]\n"
	       "\n"
	       "Boot a sandbox in the background; return (printing its name)\n"
	       "once its agent is ready. Options as for kiln run (--cpus,\n"
	       "--memory, --disk, --share, --net, --allow, --deny,\n"
	       "--allow-domain, --dns, -p, --ulimit,\n"
	       "--kernel, --initrd, --cmdline, --accel, --boot-timeout, -v).\n"
	       "Then: kiln exec NAME -- CMD, "
	       "kiln cp,\n"
	       "kiln ps, kiln stop NAME.\n");
}

int kiln_cmd_start(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_VM_OPTIONS,
		{"name", required_argument, NULL, OPT_NAME},
		{"boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT},
		{"ulimit", required_argument, NULL, OPT_ULIMIT},
		{"from", required_argument, NULL, OPT_FROM},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct cli_vm vmopt = {0};
	struct kiln_config *cfg = kiln_config_new();
	struct kiln_sandbox *sb = NULL;
	const char *name = NULL, *from = NULL, *vm_option = NULL;
	char root[PATH_MAX - 128], dir[PATH_MAX - 64], path[PATH_MAX];
	char autoname[16], ports[1024];
	int boot_timeout_ms = DEFAULT_BOOT_TIMEOUT_MS, c, code = EXIT_USAGE;
	int ready_fd = -1, console_fd, control_fd;
	bool child;
	FILE *f;

	if (!cfg)
		return EXIT_KILN_FAILED;
	kiln_config_set_log(cfg, cli_log, NULL, KILN_LOG_WARN);
	optind = 1;
	while ((c = getopt_long(argc, argv, "+vhp:", opts, NULL)) != -1) {
		bool used;

		code = cli_boot_option(cfg, &vmopt, c, optarg, &boot_timeout_ms,
				       &used);
		if (used && c != 'v' && c != OPT_BOOT_TIMEOUT)
			vm_option = cli_option_word(argv, optind);
		if (used) {
			if (code)
				goto out;
			continue;
		}
		code = EXIT_USAGE;
		switch (c) {
		case OPT_FROM: from = optarg; break;
		case OPT_NAME:
			if (!cli_valid_name(optarg)) {
				cli_usage_error(
					"--name: '%s' is not a sandbox "
					"name (1..%d of A-Z a-z 0-9 _ - "
					"., not starting with . or -)",
					optarg, MAX_NAME);
				goto out;
			}
			name = optarg;
			break;
		case 'h':
			print_start_help();
			code = 0;
			goto out;
		default:
			fprintf(stderr, "Try 'kiln start --help' for more "
					"information.\n");
			goto out;
		}
	}
	code = EXIT_USAGE; /* the last option may have left 0 */
	if (optind < argc) {
		cli_usage_error("start: unexpected argument '%s'",
				argv[optind]);
		goto out;
	}
	if (from && vm_option) {
		cli_usage_error("--from: the snapshot decides the VM (%s "
				"cannot change it)",
				vm_option);
		goto out;
	}
	code = from ? cli_vm_engine(cfg, &vmopt) : cli_vm_finish(cfg, &vmopt);
	if (code)
		goto out;
	code = EXIT_KILN_FAILED;
	if (cli_state_root(root, sizeof(root), true) < 0)
		goto out;
	/* claim the name: mkdir is atomic; a dead owner's leftovers go */
	for (unsigned n = 1; !name || n == 1; n++) {
		const char *try = name;

		if (!name) {
			snprintf(autoname, sizeof(autoname), "%u", n);
			try = autoname;
		}
		snprintf(dir, sizeof(dir), "%s/%s", root, try);
		if (mkdir(dir, 0700) == 0) {
			name = try;
			break;
		}
		if (errno == EEXIST && owner_state(dir, NULL, NULL) != 1 &&
		    access(dir, F_OK) == 0) {
			struct stat st;

			/* the owner died, or is still booting (no info yet):
			 * only take it over once it is old enough */
			if (stat(dir, &st) == 0 &&
			    time(NULL) - st.st_mtime >
				    boot_timeout_ms / 1000 + 10) {
				remove_state(dir);
				if (mkdir(dir, 0700) == 0) {
					name = try;
					break;
				}
			}
		}
		if (name) {
			cli_error("a sandbox named '%s' exists (kiln stop %s)",
				  name, name);
			goto out;
		}
		if (n > 10000) {
			cli_error("no free sandbox name in %s", root);
			goto out;
		}
	}
	/* the guest is called what the sandbox is (and so on networks) */
	if (kiln_config_set_hostname(cfg, name) < 0) {
		remove_state(dir);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/console.log", dir);
	console_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	snprintf(path, sizeof(path), "%s/vsock", dir);
	if (console_fd < 0 || kiln_config_set_vsock(cfg, 3, path) < 0) {
		cli_error("cannot set up %s: %s", dir, strerror(errno));
		remove_state(dir);
		goto out;
	}
	kiln_config_set_console_fds(cfg, -1, console_fd);

	code = cli_fork_background(&child, &ready_fd);
	if (!child) {
		/* (a child that failed removed its state itself) */
		if (code == 0)
			printf("%s\n", name);
		close(console_fd);
		goto out;
	}
	/* the last error, for the control socket's answers */
	kiln_config_set_log(cfg, bg_log, NULL,
			    verbose ? KILN_LOG_DEBUG : KILN_LOG_WARN);
	if (from ? kiln_sandbox_restore(cfg, from, boot_timeout_ms, &sb) < 0
		 : boot_sandbox(cfg, boot_timeout_ms, console_fd, &sb) != 0) {
		remove_state(dir);
		_exit(EXIT_KILN_FAILED);
	}
	snprintf(path, sizeof(path), "%s/control", dir);
	control_fd = cli_unix_socket(path, true);
	snprintf(path, sizeof(path), "%s/info", dir);
	f = fopen(path, "we");
	if (control_fd < 0 || !f) {
		cli_error("cannot set up %s: %s", dir, strerror(errno));
		kiln_sandbox_destroy(sb);
		remove_state(dir);
		_exit(EXIT_KILN_FAILED);
	}
	fprintf(f, "%d %u %lu %lld %llu %s %s\n", (int)getpid(),
		vmopt.cpus ? vmopt.cpus : 1,
		(unsigned long)(vmopt.memory_mib ? vmopt.memory_mib : 256),
		(long long)time(NULL), cli_proc_start_ticks(getpid()),
		kiln_accel_name(kiln_vm_accel(kiln_sandbox_vm(sb))),
		ports_text(&vmopt, ports, sizeof(ports)));
	fclose(f);
	kiln_config_free(cfg);
	/* ready: detached from the terminal */
	if (cli_background_ready(ready_fd, -1) < 0)
		pending_signal = SIGTERM; /* the parent is gone: stop */
	_exit(serve_sandbox(sb, dir, control_fd));
out:
	kiln_config_free(cfg);
	return code;
}

/* Connects to NAME's agent (or to --vsock PATH): 0 or an exit code. */
static int attach(const char *name, const char *vsock, struct kiln_sandbox **sb)
{
	char dir[PATH_MAX - 16], path[PATH_MAX];
	int code;

	if (!vsock) {
		code = sandbox_dir(name, dir, sizeof(dir));
		if (code)
			return code;
		snprintf(path, sizeof(path), "%s/vsock", dir);
		vsock = path;
	}
	if (kiln_sandbox_attach(vsock, cli_log, NULL, KILN_LOG_WARN, 10000,
				sb) < 0) {
		if (name)
			cli_error("cannot reach sandbox '%s'", name);
		return EXIT_KILN_FAILED;
	}
	return 0;
}

int kiln_cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		CMD_OPTIONS,
		{"vsock", required_argument, NULL, OPT_VSOCK},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct cmd_opts co = {.timeout_ms = -1};
	struct kiln_sandbox *sb = NULL;
	const char *vsock = NULL, *name = NULL;
	int c, code;
	bool used;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+e:w:ith", opts, NULL)) != -1) {
		code = cmd_option(&co, c, optarg, &used);
		if (used) {
			if (code)
				return code;
			continue;
		}
		if (c == OPT_VSOCK) {
			vsock = optarg;
		} else if (c == 'h') {
			printf("Usage: kiln exec NAME [OPTIONS] -- CMD "
			       "[ARGS...]\n"
			       "       kiln exec --vsock PATH [OPTIONS] -- CMD "
			       "[ARGS...]\n"
			       "\nRun CMD in a running sandbox (or the agent "
			       "behind a hybrid vsock\nsocket). Options: -e, "
			       "-w, "
			       "--timeout, -i, -t as for kiln run.\n"
			       "SIGINT, SIGTERM and SIGHUP are passed on to "
			       "CMD; 10 s after the first,\nor at a second "
			       "one, kiln kills CMD and exits 128+N (N: the "
			       "first\nsignal).\n");
			return 0;
		} else {
			fprintf(stderr, "Try 'kiln exec --help' for more "
					"information.\n");
			return EXIT_USAGE;
		}
	}
	if (!vsock) {
		if (optind >= argc || !strcmp(argv[optind - 1], "--")) {
			cli_usage_error("exec: missing sandbox name");
			return EXIT_USAGE;
		}
		name = argv[optind++];
		/* options may follow the name too */
		while ((c = getopt_long(argc, argv, "+e:w:ith", opts, NULL)) !=
		       -1) {
			code = cmd_option(&co, c, optarg, &used);
			if (!used || c == OPT_VSOCK) {
				cli_usage_error("exec: unexpected option after "
						"the name");
				return EXIT_USAGE;
			}
			if (code)
				return code;
		}
	}
	code = cmd_argv(&co, argc, argv);
	if (code)
		return code;
	code = attach(name, vsock, &sb);
	if (code)
		return code;
	cli_catch_signals();
	code = run_command(sb, &co);
	kiln_sandbox_destroy(sb);
	return code;
}

int kiln_cmd_cp(int argc, char **argv)
{
	static const struct option opts[] = {
		{"vsock", required_argument, NULL, OPT_VSOCK},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *vsock = NULL, *src, *dst;
	struct kiln_sandbox *sb = NULL;
	char name[MAX_NAME + 2];
	const char *guest, *host, *colon;
	bool in;
	int c, code;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (c == OPT_VSOCK) {
			vsock = optarg;
		} else if (c == 'h') {
			printf("Usage: kiln cp NAME:/GUEST/PATH HOST_PATH\n"
			       "       kiln cp HOST_PATH NAME:/GUEST/PATH\n"
			       "       kiln cp --vsock PATH SRC DST   (the "
			       "guest "
			       "side written :/GUEST/PATH)\n"
			       "\nCopying out, HOST_PATH is treated as by "
			       "cp(1): a symbolic link is\nfollowed (a "
			       "dangling one is refused), a character device "
			       "or a FIFO\nwith a reader is written into, a "
			       "block device or socket is refused,\nand a "
			       "regular file is replaced once the copy is "
			       "complete.\n");
			return 0;
		} else {
			fprintf(stderr, "Try 'kiln cp --help' for more "
					"information.\n");
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		cli_usage_error("cp: expected SRC and DST");
		return EXIT_USAGE;
	}
	src = argv[optind];
	dst = argv[optind + 1];
	/* the sandbox side is NAME:/PATH (with --vsock, :/PATH) */
	colon = strstr(src, ":/");
	in = !colon || (size_t)(colon - src) > MAX_NAME;
	if (in) {
		colon = strstr(dst, ":/");
		if (!colon || (size_t)(colon - dst) > MAX_NAME) {
			cli_usage_error(
				"cp: one side must be NAME:/GUEST/PATH");
			return EXIT_USAGE;
		}
		host = src;
		guest = colon + 1;
		snprintf(name, sizeof(name), "%.*s", (int)(colon - dst), dst);
	} else {
		host = dst;
		guest = colon + 1;
		snprintf(name, sizeof(name), "%.*s", (int)(colon - src), src);
	}
	if (!vsock && !name[0]) {
		cli_usage_error(
			"cp: the sandbox side needs a NAME (or --vsock)");
		return EXIT_USAGE;
	}
	code = attach(vsock ? NULL : name, vsock, &sb);
	if (code)
		return code;
	code = in ? copy_in(sb, host, guest) : copy_out(sb, guest, host);
	kiln_sandbox_destroy(sb);
	return code;
}

/* "tcp:127.0.0.1:8080:80;..." as "  127.0.0.1:8080->80/tcp, ..." ("" for
 * none). */
static void show_ports(const char *ports, char *out, size_t cap)
{
	size_t used = 0;

	out[0] = 0;
	while (ports[0] && strcmp(ports, "-")) {
		char proto[4], host[16];
		unsigned hp, gp;
		int n = 0;

		if (sscanf(ports, "%3[a-z]:%15[0-9.]:%u:%u%n", proto, host, &hp,
			   &gp, &n) != 4)
			return;
		used += (size_t)snprintf(out + used, cap - used,
					 "%s%s:%u->%u/%s", used ? ", " : "  ",
					 host, hp, gp, proto);
		if (used >= cap)
			return;
		ports += n;
		if (*ports == ';')
			ports++;
	}
}

/* Appends "  net tx=N denied=N rx=N dropped=N" (asked of the background
 * process, which holds the counters) to out when the sandbox has a card. */
static void net_counters(const char *dir, char *out, size_t cap)
{
	char path[PATH_MAX], line[160];
	size_t used = strlen(out);
	int fd;

	snprintf(path, sizeof(path), "%s/control", dir);
	fd = cli_unix_socket(path, false);
	if (fd < 0)
		return;
	if (dprintf(fd, "stats\n") > 0 &&
	    cli_read_line(fd, line, sizeof(line), 1000) == 0 &&
	    !strncmp(line, "net tx=", 7))
		snprintf(out + used, cap - used, "  %s", line);
	close(fd);
}

int kiln_cmd_ps(int argc, char **argv)
{
	char root[PATH_MAX - 128], dir[PATH_MAX - 64];
	DIR *d;
	struct dirent *de;
	int r;

	(void)argv;
	if (argc > 1) {
		cli_usage_error("ps: takes no arguments");
		return EXIT_USAGE;
	}
	r = cli_state_root(root, sizeof(root), false);
	if (r < 0)
		return EXIT_KILN_FAILED;
	printf("%-16s %8s %5s %8s %9s %6s  %s\n", "NAME", "PID", "CPUS",
	       "MEMORY", "UPTIME", "ENGINE", "STATE");
	d = r == 1 ? NULL : opendir(root);
	while (d && (de = readdir(d))) {
		unsigned cpus = 0;
		unsigned long mib = 0;
		long long started = 0;
		char engine[8], ports[256], shown[512];
		struct stat st;
		pid_t pid;
		int state;

		if (!cli_valid_name(de->d_name))
			continue;
		snprintf(dir, sizeof(dir), "%s/%.32s", root, de->d_name);
		if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		pid = info_pid(dir, &cpus, &mib, &started, NULL, engine, ports);
		show_ports(ports, shown, sizeof(shown));
		if (!pid) {
			printf("%-16s %8s %5s %8s %9s %6s  %s\n", de->d_name,
			       "-", "-", "-", "-", "-", "starting");
			continue;
		}
		state = owner_state(dir, NULL, NULL);
		if (state > 0)
			net_counters(dir, shown, sizeof(shown));
		printf("%-16s %8d %5u %6luMi %8llds %6s  %s%s\n", de->d_name,
		       (int)pid, cpus, mib, (long long)time(NULL) - started,
		       engine,
		       state > 0    ? "running"
		       : state == 0 ? "dead (kiln stop cleans up)"
				    : "stale: the pid is another process "
				      "(kiln stop cleans up)",
		       state > 0 ? shown : "");
	}
	if (d)
		closedir(d);
	return 0;
}

int kiln_cmd_stop(int argc, char **argv)
{
	static const struct option opts[] = {
		{"grace", required_argument, NULL, OPT_GRACE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int grace_ms = DEFAULT_GRACE_MS, c, code = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (c == OPT_GRACE) {
			if (!cli_parse_seconds("--grace", optarg, &grace_ms))
				return EXIT_USAGE;
		} else if (c == 'h') {
			printf("Usage: kiln stop [--grace SECONDS] NAME...\n"
			       "\nAsk each sandbox's guest to shut down; kill "
			       "it "
			       "after SECONDS (default %d).\n"
			       "A sandbox whose state names a process that is "
			       "not its own (stale or\ncorrupted) is not "
			       "signalled: its state is removed and kiln "
			       "stop\nexits 125.\n",
			       DEFAULT_GRACE_MS / 1000);
			return 0;
		} else {
			fprintf(stderr, "Try 'kiln stop --help' for more "
					"information.\n");
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		cli_usage_error("stop: missing sandbox name");
		return EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		char dir[PATH_MAX - 16], path[PATH_MAX], line[64];
		struct owner o = {.pidfd = -1};
		int r = sandbox_dir(argv[i], dir, sizeof(dir)), fd, state;

		if (r) {
			code = r;
			continue;
		}
		snprintf(path, sizeof(path), "%s/control", dir);
		fd = cli_unix_socket(path, false);
		if (fd >= 0) {
			dprintf(fd, "stop %d\n", grace_ms);
			/* the reply comes once the VM is gone */
			if (cli_read_line(fd, line, sizeof(line),
					  grace_ms + 5000) == 0) {
				close(fd);
				continue;
			}
			close(fd);
		}
		/* no answer: end the background process ourselves, if the
		 * pid still names it */
		state = owner_state(dir, &o.pid, &o.ticks);
		if (state < 0) {
			cli_error("sandbox '%s': its state names pid %d, which "
				  "is not its background process (stale or "
				  "corrupted state); not signalling it, "
				  "removing the state",
				  argv[i], (int)o.pid);
			remove_state(dir);
			code = EXIT_KILN_FAILED;
			continue;
		}
		if (state > 0) {
			owner_open(&o);
			owner_signal(&o, SIGTERM);
			for (int t = 0; t < grace_ms / 50 && owner_alive(&o);
			     t++)
				usleep(50000);
			if (owner_alive(&o)) {
				owner_signal(&o, SIGKILL);
				usleep(100000);
			}
			if (o.pidfd >= 0)
				close(o.pidfd);
		}
		remove_state(dir);
	}
	return code;
}

/* ---- kiln snapshot ---- */

int kiln_cmd_snapshot(int argc, char **argv)
{
	char dir[PATH_MAX - 16], path[PATH_MAX], target[PATH_MAX], reply[600];
	int code, fd;

	if (argc == 2 &&
	    (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		printf("Usage: kiln snapshot NAME DIR\n"
		       "\n"
		       "Write a template of the started sandbox NAME to DIR "
		       "(KVM engine):\n"
		       "its memory and state, taken with the agent idle (the "
		       "commands it\n"
		       "runs end). NAME goes on. Then: kiln run --from DIR, "
		       "kiln start\n"
		       "--from DIR, kiln pool start --from DIR.\n");
		return 0;
	}
	if (argc != 3) {
		cli_usage_error("usage: kiln snapshot NAME DIR");
		return EXIT_USAGE;
	}
	code = sandbox_dir(argv[1], dir, sizeof(dir));
	if (code)
		return code;
	/* the background process has its own working directory */
	if (argv[2][0] == '/') {
		snprintf(target, sizeof(target), "%s", argv[2]);
	} else {
		char cwd[PATH_MAX - 256];

		if (!getcwd(cwd, sizeof(cwd)) ||
		    (size_t)snprintf(target, sizeof(target), "%s/%s", cwd,
				     argv[2]) >= sizeof(target)) {
			cli_error("snapshot: cannot make %s absolute", argv[2]);
			return EXIT_KILN_FAILED;
		}
	}
	if (strchr(target, '\n')) {
		cli_usage_error("snapshot: a directory name with a newline");
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "%s/control", dir);
	fd = cli_unix_socket(path, false);
	if (fd < 0) {
		cli_error("cannot reach sandbox '%s'", argv[1]);
		return EXIT_KILN_FAILED;
	}
	if (dprintf(fd, "snapshot %s\n", target) < 0 ||
	    cli_read_line(fd, reply, sizeof(reply), 120000) < 0) {
		cli_error("sandbox '%s' did not answer", argv[1]);
		close(fd);
		return EXIT_KILN_FAILED;
	}
	close(fd);
	if (strcmp(reply, "ok")) {
		cli_error("snapshot of '%s': %s", argv[1],
			  !strncmp(reply, "error ", 6) ? reply + 6 : reply);
		return EXIT_KILN_FAILED;
	}
	printf("%s\n", target);
	return 0;
}
