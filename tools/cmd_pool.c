/* SPDX-License-Identifier: MIT */
/*
 * Pools of pre-booted sandboxes, built on kiln_pool_* (kiln.h):
 *
 *   kiln pool start --name P [--size N] [run options]   a background process
 *   kiln run --pool P -- CMD   claim a member, run CMD in it, release it
 *   kiln pool ls               every pool's counters and last error
 *   kiln pool stop P           destroy it and every member
 *
 * A pool lives in $XDG_RUNTIME_DIR/kiln/.pools/P (or /tmp/kiln-UID/...):
 *   control      the background process's socket, one request per
 *                connection: "stats", "stop", or "acquire MS" answered
 *                "ok VSOCK" (the member's agent socket; the claim holds the
 *                member until the connection closes, then the pool
 *                destroys it) or "error ERRNO MESSAGE"
 *   info         "pid start_ticks" of the background process
 *   console.log  the members' consoles, one after the other
 *   pool.log     the background process's messages (refill failures)
 * The background process removes the directory when it stops.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kiln/kiln.h>

#include "cli.h"
#include "commands.h"

#define DEFAULT_BOOT_TIMEOUT_MS 30000
#define MAX_CLAIMS		64
#define CLAIM_SLICE_MS		200

/* ---- where pools live ---- */

/* DIR of pool name (made if create): 0, or an exit code after a message. */
static int pool_dir(const char *name, char *dir, size_t len, bool create)
{
	char root[PATH_MAX - 96];
	int r;

	if (!cli_valid_name(name)) {
		cli_usage_error("'%s' is not a pool name (1..32 of A-Z a-z "
				"0-9 _ - ., not starting with . or -)",
				name);
		return EXIT_USAGE;
	}
	r = cli_state_root(root, sizeof(root), create);
	if (r < 0)
		return EXIT_KILN_FAILED;
	snprintf(dir, len, "%s/.pools", root);
	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		cli_error("cannot create %s: %s", dir, strerror(errno));
		return EXIT_KILN_FAILED;
	}
	snprintf(dir, len, "%s/.pools/%s", root, name);
	return 0;
}

/* Whether DIR's background process runs (pid and start time match). */
static bool pool_owner_alive(const char *dir, pid_t *pid_out)
{
	char path[PATH_MAX + 32];
	long long pid = 0;
	unsigned long long ticks = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/info", dir);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fscanf(f, "%lld %llu", &pid, &ticks) != 2)
		pid = 0;
	fclose(f);
	if (pid_out)
		*pid_out = (pid_t)pid;
	if (pid <= 0 || pid > INT_MAX || !ticks ||
	    cli_proc_start_ticks((pid_t)pid) != ticks)
		return false;
	/* a zombie (ended, not reaped yet) is gone too */
	snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
	f = fopen(path, "re");
	if (f) {
		char state = 0;

		if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
			state = 0;
		fclose(f);
		if (state == 'Z')
			return false;
	}
	return true;
}

static void remove_pool_dir(const char *dir)
{
	static const char *const files[] = {"control", "info", "console.log",
					    "pool.log", NULL};
	char path[PATH_MAX + 32];

	for (unsigned i = 0; files[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

/* One request to pool DIR's process: its first reply line into reply.
 * The connection is returned in *keep (if non-NULL) instead of closed.
 * 0, or -1 after a message. */
static int ask(const char *name, const char *dir, const char *req, char *reply,
	       size_t cap, int timeout_ms, int *keep)
{
	char path[PATH_MAX + 32];
	int fd;

	snprintf(path, sizeof(path), "%s/control", dir);
	fd = cli_unix_socket(path, false);
	if (fd < 0) {
		cli_error("pool '%s' does not answer (%s)%s", name,
			  strerror(errno),
			  pool_owner_alive(dir, NULL)
				  ? ""
				  : ": it is not running (kiln pool ls)");
		return -1;
	}
	if (dprintf(fd, "%s\n", req) < 0 ||
	    cli_read_line(fd, reply, cap, timeout_ms) < 0) {
		cli_error("pool '%s' did not answer '%s'", name, req);
		close(fd);
		return -1;
	}
	if (keep)
		*keep = fd;
	else
		close(fd);
	return 0;
}

/* ---- the background process ---- */

struct server {
	struct kiln_pool *pool;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	unsigned claims;
	int claim_fds[MAX_CLAIMS];
	bool stopping;
};

struct claim {
	struct server *s;
	int fd, slot;
	int timeout_ms;
};

static bool stopping(struct server *s)
{
	pthread_mutex_lock(&s->lock);
	bool r = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Whether the claimant hung up (EOF or error on its connection). */
static bool hung_up(int fd, int wait_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	if (poll(&p, 1, wait_ms) <= 0)
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) <= 0 || (p.revents & POLLHUP);
}

static void *claim_main(void *arg)
{
	struct claim *c = arg;
	struct server *s = c->s;
	struct kiln_sandbox *sb = NULL;
	struct timespec t0;
	long long waited = 0;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* in slices, so a claimant that gives up or a stop ends the wait */
	for (;;) {
		int slice = c->timeout_ms - (int)waited < CLAIM_SLICE_MS
				    ? c->timeout_ms - (int)waited
				    : CLAIM_SLICE_MS;
		struct timespec t;

		err = kiln_pool_acquire(s->pool, slice < 0 ? 0 : slice, &sb);
		if (err != -ETIMEDOUT || stopping(s) || hung_up(c->fd, 0))
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		waited = (t.tv_sec - t0.tv_sec) * 1000LL +
			 (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (waited >= c->timeout_ms)
			break;
	}
	if (err < 0) {
		struct kiln_pool_stats st;

		kiln_pool_stats(s->pool, &st);
		dprintf(c->fd, "error %d %s\n", -err,
			err == -ETIMEDOUT   ? "no member became ready in time"
			: err == -ECANCELED ? "the pool is stopping"
			: st.failing && st.last_message[0] ? st.last_message
							   : strerror(-err));
	} else {
		dprintf(c->fd, "ok %s\n", kiln_sandbox_vsock_path(sb));
		/* held until the claimant closes (or the pool stops) */
		while (!hung_up(c->fd, 1000) && !stopping(s))
			;
		kiln_pool_release(s->pool, sb);
	}
	close(c->fd);
	pthread_mutex_lock(&s->lock);
	s->claim_fds[c->slot] = -1;
	s->claims--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	free(c);
	return NULL;
}

static void start_claim(struct server *s, int fd, int timeout_ms)
{
	struct claim *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	pthread_t t;
	int slot = -1;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < MAX_CLAIMS && slot < 0; i++)
		if (s->claim_fds[i] < 0)
			slot = i;
	if (slot >= 0 && c) {
		s->claim_fds[slot] = fd;
		s->claims++;
	}
	pthread_mutex_unlock(&s->lock);
	if (slot < 0 || !c) {
		dprintf(fd, "error %d too many claims at once\n", EBUSY);
		close(fd);
		free(c);
		return;
	}
	c->s = s;
	c->fd = fd;
	c->slot = slot;
	c->timeout_ms = timeout_ms;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, claim_main, c) != 0) {
		dprintf(fd, "error %d cannot start a thread\n", EAGAIN);
		close(fd);
		pthread_mutex_lock(&s->lock);
		s->claim_fds[slot] = -1;
		s->claims--;
		pthread_mutex_unlock(&s->lock);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

static void reply_stats(struct kiln_pool *pool, int fd)
{
	struct kiln_pool_stats st;

	kiln_pool_stats(pool, &st);
	/* the message last: it may hold spaces (never a newline) */
	for (char *p = st.last_message; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	dprintf(fd, "stats %u %u %u %u %llu %llu %llu %u %d %s\n", st.target,
		st.ready, st.filling, st.in_use,
		(unsigned long long)st.acquired, (unsigned long long)st.booted,
		(unsigned long long)st.failures, st.failing, -st.last_error,
		st.last_message[0] ? st.last_message : "-");
}

static int serve_pool(struct kiln_pool *pool, const char *dir, int control_fd)
{
	struct server s = {.pool = pool};
	int reply_fd = -1;

	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cv, NULL);
	for (int i = 0; i < MAX_CLAIMS; i++)
		s.claim_fds[i] = -1;
	while (!cli_pending_signal()) {
		struct pollfd pfd = {.fd = control_fd, .events = POLLIN};
		char line[64];
		int fd, ms;

		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		fd = accept4(control_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (cli_read_line(fd, line, sizeof(line), 1000) < 0) {
			close(fd);
			continue;
		}
		if (!strcmp(line, "stats")) {
			reply_stats(pool, fd);
			close(fd);
		} else if (sscanf(line, "acquire %d", &ms) == 1 && ms >= 0) {
			start_claim(&s, fd, ms);
		} else if (!strcmp(line, "stop")) {
			reply_fd = fd;
			break;
		} else {
			dprintf(fd, "error %d unknown request\n", EINVAL);
			close(fd);
		}
	}
	/* no new claims; end the ones in progress (their members are
	 * released), then the pool and its members */
	close(control_fd);
	pthread_mutex_lock(&s.lock);
	s.stopping = true;
	for (int i = 0; i < MAX_CLAIMS; i++)
		if (s.claim_fds[i] >= 0)
			shutdown(s.claim_fds[i], SHUT_RDWR);
	while (s.claims)
		pthread_cond_wait(&s.cv, &s.lock);
	pthread_mutex_unlock(&s.lock);
	kiln_pool_destroy(pool);
	remove_pool_dir(dir);
	if (reply_fd >= 0) {
		dprintf(reply_fd, "stopped\n");
		close(reply_fd);
	}
	return 0;
}

/* ---- kiln pool start ---- */

static void print_start_help(void)
{
	printf("Usage: kiln pool start --name POOL [--size N] [OPTIONS]\n"
	       "\n"
	       "Start a background process that keeps N sandboxes (2) booted "
	       "and\n"
	       "ready; kiln run --pool POOL -- CMD claims one, runs CMD in it "
	       "and\n"
	       "releases it (a member is never reused: it is destroyed and "
	       "the pool\n"
	       "boots another).\n"
	       "\n"
	       "  --size N             members kept ready (1..64)\n"
	       "  --parallel N         boots at once (1..16; 1)\n"
	       "  --idle-lifetime SECONDS  replace a member idle this long\n"
	       "  --from DIR           members restored from the sandbox "
	       "template DIR\n"
	       "                       (kiln snapshot; KVM engine) instead "
	       "of booted\n"
	       "  --empty wait|fail|cold  when no member is ready: wait for "
	       "one\n"
	       "                       (default), fail at once, or boot one "
	       "for the\n"
	       "                       claim\n"
	       "  VM options as for kiln run (--cpus, --memory, --disk "
	       "IMG,ro|snapshot,\n"
	       "  --share, --net, --allow, --deny, --network, --ulimit, "
	       "--kernel,\n"
	       "  --initrd, --accel, --boot-timeout, -v); not -p (one member "
	       "could\n"
	       "  bind it) or a disk without ,ro or ,snapshot.\n");
}

enum {
	OPT_PARALLEL = 1000,
	OPT_IDLE,
	OPT_EMPTY,
};

static int pool_start(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_VM_OPTIONS,
		{"name", required_argument, NULL, OPT_NAME},
		{"size", required_argument, NULL, OPT_SIZE},
		{"parallel", required_argument, NULL, OPT_PARALLEL},
		{"idle-lifetime", required_argument, NULL, OPT_IDLE},
		{"empty", required_argument, NULL, OPT_EMPTY},
		{"from", required_argument, NULL, OPT_FROM},
		{"boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT},
		{"ulimit", required_argument, NULL, OPT_ULIMIT},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct cli_vm vmopt = {0};
	struct kiln_config *cfg = kiln_config_new();
	struct kiln_pool_opts po;
	struct kiln_pool *pool = NULL;
	const char *name = NULL, *vm_option = NULL;
	char dir[PATH_MAX - 64], path[PATH_MAX], from[PATH_MAX + 256];
	int boot_timeout_ms = DEFAULT_BOOT_TIMEOUT_MS, c, code = EXIT_USAGE;
	int ready_fd = -1, console_fd, control_fd, log_fd, err;
	bool child;
	uint64_t n;
	FILE *f;

	if (!cfg)
		return EXIT_KILN_FAILED;
	kiln_pool_opts_init(&po);
	kiln_config_set_log(cfg, cli_log, NULL, KILN_LOG_WARN);
	optind = 1;
	while ((c = getopt_long(argc, argv, "+vhp:", opts, NULL)) != -1) {
		bool used;
		int ms;

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
		case OPT_NAME:
			if (!cli_valid_name(optarg)) {
				cli_usage_error("--name: '%s' is not a pool "
						"name (1..32 of A-Z a-z 0-9 _ "
						"- ., not starting with . or "
						"-)",
						optarg);
				goto out;
			}
			name = optarg;
			break;
		case OPT_SIZE:
		case OPT_PARALLEL:
			if (!cli_parse_u64(optarg, &n) || n < 1 ||
			    n > (c == OPT_SIZE ? 64 : 16)) {
				cli_usage_error(
					"--%s: expected 1..%d, got "
					"'%s'",
					c == OPT_SIZE ? "size" : "parallel",
					c == OPT_SIZE ? 64 : 16, optarg);
				goto out;
			}
			if (c == OPT_SIZE)
				po.target = (unsigned)n;
			else
				po.fill_parallel = (unsigned)n;
			break;
		case OPT_IDLE:
			if (!cli_parse_seconds("--idle-lifetime", optarg, &ms))
				goto out;
			po.idle_lifetime_ms = (unsigned)ms;
			break;
		case OPT_EMPTY:
			if (!strcmp(optarg, "wait"))
				po.empty = KILN_POOL_WAIT;
			else if (!strcmp(optarg, "fail"))
				po.empty = KILN_POOL_FAIL;
			else if (!strcmp(optarg, "cold"))
				po.empty = KILN_POOL_COLD;
			else {
				cli_usage_error("--empty: expected wait, fail "
						"or cold, got '%s'",
						optarg);
				goto out;
			}
			break;
		case OPT_FROM:
			/* the background process keeps its own cwd */
			if (optarg[0] != '/' &&
			    getcwd(path, sizeof(path) - 256))
				snprintf(from, sizeof(from), "%s/%.200s", path,
					 optarg);
			else
				snprintf(from, sizeof(from), "%s", optarg);
			po.from_snapshot = from;
			break;
		case 'h':
			print_start_help();
			code = 0;
			goto out;
		default:
			fprintf(stderr, "Try 'kiln pool start --help' for "
					"more information.\n");
			goto out;
		}
	}
	code = EXIT_USAGE;
	if (optind < argc) {
		cli_usage_error("pool start: unexpected argument '%s'",
				argv[optind]);
		goto out;
	}
	if (!name) {
		cli_usage_error("pool start: --name POOL is required");
		goto out;
	}
	po.boot_timeout_ms = boot_timeout_ms;
	if (po.from_snapshot && vm_option) {
		cli_usage_error("--from: the snapshot decides the VM (%s "
				"cannot change it)",
				vm_option);
		goto out;
	}
	code = po.from_snapshot ? cli_vm_engine(cfg, &vmopt)
				: cli_vm_finish(cfg, &vmopt);
	if (code)
		goto out;
	code = pool_dir(name, dir, sizeof(dir), true);
	if (code)
		goto out;
	code = EXIT_KILN_FAILED;
	if (mkdir(dir, 0700) < 0) {
		if (errno != EEXIST || pool_owner_alive(dir, NULL)) {
			cli_error(errno == EEXIST
					  ? "a pool named '%s' exists (kiln "
					    "pool stop %s)"
					  : "cannot create the pool '%s': %s",
				  name,
				  errno == EEXIST ? name : strerror(errno));
			goto out;
		}
		/* a dead pool's leftovers */
		remove_pool_dir(dir);
		if (mkdir(dir, 0700) < 0) {
			cli_error("cannot create %s: %s", dir, strerror(errno));
			goto out;
		}
	}
	snprintf(path, sizeof(path), "%s/console.log", dir);
	console_fd =
		open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	snprintf(path, sizeof(path), "%s/pool.log", dir);
	log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (console_fd < 0 || log_fd < 0) {
		cli_error("cannot set up %s: %s", dir, strerror(errno));
		remove_pool_dir(dir);
		goto out;
	}
	kiln_config_set_console_fds(cfg, -1, console_fd);
	code = cli_fork_background(&child, &ready_fd);
	if (!child) {
		/* (a child that failed removed the pool's directory) */
		if (code == 0)
			printf("%s\n", name);
		close(console_fd);
		close(log_fd);
		goto out;
	}
	/* the background process: the pool's threads start here, after
	 * the fork */
	snprintf(path, sizeof(path), "%s/control", dir);
	control_fd = cli_unix_socket(path, true);
	if (control_fd < 0) {
		cli_error("cannot listen on %s: %s", path, strerror(errno));
		remove_pool_dir(dir);
		_exit(EXIT_KILN_FAILED);
	}
	err = kiln_pool_create(cfg, &po, &pool);
	if (err < 0) {
		remove_pool_dir(dir);
		_exit(err == -EINVAL ? EXIT_USAGE : EXIT_KILN_FAILED);
	}
	snprintf(path, sizeof(path), "%s/info", dir);
	f = fopen(path, "we");
	if (!f) {
		cli_error("cannot write %s: %s", path, strerror(errno));
		kiln_pool_destroy(pool);
		remove_pool_dir(dir);
		_exit(EXIT_KILN_FAILED);
	}
	fprintf(f, "%d %llu\n", (int)getpid(), cli_proc_start_ticks(getpid()));
	fclose(f);
	kiln_config_free(cfg);
	/* ready: messages go to pool.log from now on */
	if (cli_background_ready(ready_fd, log_fd) < 0) {
		kiln_pool_destroy(pool);
		remove_pool_dir(dir);
		_exit(EXIT_KILN_FAILED);
	}
	_exit(serve_pool(pool, dir, control_fd));
out:
	kiln_config_free(cfg);
	return code;
}

/* ---- kiln run --pool: the claim ---- */

int cli_pool_claim(const char *name, int timeout_ms, struct kiln_sandbox **sb,
		   int *claim_fd)
{
	char dir[PATH_MAX - 64], req[32], reply[512];
	int code = pool_dir(name, dir, sizeof(dir), false), fd = -1;

	*sb = NULL;
	*claim_fd = -1;
	if (code)
		return code;
	snprintf(req, sizeof(req), "acquire %d", timeout_ms);
	/* the pool answers within timeout_ms (plus a slice) */
	if (ask(name, dir, req, reply, sizeof(reply), timeout_ms + 5000, &fd) <
	    0)
		return EXIT_KILN_FAILED;
	if (strncmp(reply, "ok ", 3)) {
		const char *msg = reply;

		if (!strncmp(reply, "error ", 6)) {
			msg = strchr(reply + 6, ' ');
			msg = msg ? msg + 1 : reply + 6;
		}
		cli_error("pool '%s': %s", name, msg);
		close(fd);
		return EXIT_KILN_FAILED;
	}
	if (kiln_sandbox_attach(reply + 3, cli_log, NULL, KILN_LOG_WARN, 10000,
				sb) < 0) {
		cli_error("pool '%s': cannot reach the member it gave", name);
		close(fd);
		return EXIT_KILN_FAILED;
	}
	*claim_fd = fd;
	return 0;
}

/* ---- kiln pool ls / stop ---- */

static int pool_ls(int argc, char **argv)
{
	char root[PATH_MAX - 400], dir[PATH_MAX - 360];
	struct dirent *de;
	DIR *d;
	int r;

	if (argc > 1) {
		cli_usage_error("pool ls: unexpected argument '%s'", argv[1]);
		return EXIT_USAGE;
	}
	r = cli_state_root(root, sizeof(root), false);
	if (r < 0)
		return EXIT_KILN_FAILED;
	printf("%-16s %4s %5s %7s %6s %7s %8s  %s\n", "NAME", "SIZE", "READY",
	       "FILLING", "IN-USE", "CLAIMED", "FAILURES", "LAST ERROR");
	if (r == 1)
		return 0;
	snprintf(dir, sizeof(dir), "%s/.pools", root);
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		char pdir[PATH_MAX - 64], reply[512], msg[300] = "-";
		unsigned target, ready, filling, in_use, failing;
		unsigned long long acquired, booted, failures;
		int last;

		if (de->d_name[0] == '.' || !cli_valid_name(de->d_name))
			continue;
		snprintf(pdir, sizeof(pdir), "%s/%s", dir, de->d_name);
		if (!pool_owner_alive(pdir, NULL)) {
			/* the process died: its leftovers go */
			remove_pool_dir(pdir);
			continue;
		}
		if (ask(de->d_name, pdir, "stats", reply, sizeof(reply), 2000,
			NULL) < 0 ||
		    sscanf(reply,
			   "stats %u %u %u %u %llu %llu %llu %u %d %299[^\n]",
			   &target, &ready, &filling, &in_use, &acquired,
			   &booted, &failures, &failing, &last, msg) < 9) {
			printf("%-16s (not answering)\n", de->d_name);
			continue;
		}
		printf("%-16s %4u %5u %7u %6u %7llu %8llu  %s%s\n", de->d_name,
		       target, ready, filling, in_use, acquired, failures,
		       failing ? "" : (failures ? "(recovered) " : ""),
		       failures ? msg : "-");
	}
	if (d)
		closedir(d);
	return 0;
}

static int pool_stop(int argc, char **argv)
{
	char dir[PATH_MAX - 64], reply[64];
	pid_t pid = 0;
	int code;

	if (argc != 2) {
		cli_usage_error("usage: kiln pool stop POOL");
		return EXIT_USAGE;
	}
	code = pool_dir(argv[1], dir, sizeof(dir), false);
	if (code)
		return code;
	if (access(dir, F_OK) < 0) {
		cli_error("no pool named '%s' (kiln pool ls lists them)",
			  argv[1]);
		return EXIT_KILN_FAILED;
	}
	if (!pool_owner_alive(dir, &pid)) {
		remove_pool_dir(dir);
		printf("%s\n", argv[1]);
		return 0;
	}
	/* its members stop within their grace period */
	if (ask(argv[1], dir, "stop", reply, sizeof(reply), 60000, NULL) < 0)
		return EXIT_KILN_FAILED;
	for (int i = 0; i < 100 && pool_owner_alive(dir, NULL); i++)
		usleep(50000);
	printf("%s\n", argv[1]);
	return 0;
}

int kiln_cmd_pool(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		printf("Usage: kiln pool start --name POOL [--size N] "
		       "[OPTIONS]\n"
		       "       kiln pool ls\n"
		       "       kiln pool stop POOL\n"
		       "Then: kiln run --pool POOL -- CMD\n");
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "start"))
		return pool_start(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ls"))
		return pool_ls(argc - 1, argv + 1);
	if (!strcmp(argv[1], "stop"))
		return pool_stop(argc - 1, argv + 1);
	cli_usage_error("pool: unknown command '%s' (start, ls, stop)",
			argv[1]);
	return EXIT_USAGE;
}
