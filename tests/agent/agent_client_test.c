/* SPDX-License-Identifier: MIT */
/*
 * Drives a real kiln-agent, started here with --unix, through the host
 * client library (src/agent/client.h): exit codes, signals, exec failures,
 * large output, stdin, env/cwd, timeouts, concurrency, files, pty, limits,
 * and hostile clients. Prints "ok - NAME" / "not ok - NAME: why" per check
 * and the exec round-trip comparison line; exits 0 unless it cannot start.
 *
 *   agent_client_test [--pid1] AGENT_BINARY WORKDIR
 * --pid1 runs the agent as PID 1 of new user, mount, pid, UTS and net
 * namespaces (unshare) with --init, and checks only its PID 1 duties.
 * Environment: AGENT_BENCH_N (200) execs for the timing line.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "util/clock.h"

#define WAIT_MS 30000

static const char *workdir;
/* sized like sun_path: the work dir must be short */
static char agent_sock[108], ready_sock[108];
static pid_t agent_pid;
static struct kiln_agent *conn;
static int n_fail;

/* The client's last complaint: expected ones stay quiet, a failing check
 * shows it. */
static char last_log[600];

static void keep_log(void *opaque, enum kiln_log_level level, const char *msg)
{
	(void)opaque;
	(void)level;
	snprintf(last_log, sizeof(last_log), "%s", msg);
}

static const struct kiln_log test_log = {keep_log, NULL, KILN_LOG_WARN};

static void pass(const char *name)
{
	printf("ok - %s\n", name);
	fflush(stdout);
	last_log[0] = '\0';
}

/* pass() with details after the name */
static void passf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void passf(const char *fmt, ...)
{
	char name[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	pass(name);
}

static void fail(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("not ok - %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (last_log[0])
		printf("  (client log: %s)\n", last_log);
	fflush(stdout);
	last_log[0] = '\0';
	n_fail++;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

/* Output of one exec: kept (up to 64 KiB per stream) and hashed. */
struct capture {
	char text[2][65536];
	size_t len[2];
	uint64_t total[2];
	uint64_t hash[2];
	unsigned slow_us; /* sleep per frame: a slow reader */
};

static void capture_init(struct capture *c)
{
	memset(c, 0, sizeof(*c));
	c->hash[0] = c->hash[1] = FNV_INIT;
}

static void on_output(void *opaque, int stream, const void *data, size_t len)
{
	struct capture *c = opaque;
	int i = stream - 1;
	size_t room = sizeof(c->text[i]) - 1 - c->len[i];

	memcpy(c->text[i] + c->len[i], data, len < room ? len : room);
	c->len[i] += len < room ? len : room;
	c->total[i] += len;
	c->hash[i] = fnv1a(c->hash[i], data, len);
	if (c->slow_us)
		usleep(c->slow_us);
}

static void opts_for(struct kiln_exec_opts *o, const char *const *argv,
		     struct capture *cap)
{
	kiln_exec_opts_init(o);
	o->argv = argv;
	o->on_output = on_output;
	o->opaque = cap;
	capture_init(cap);
}

/* Runs argv on the main connection; -errno on a transport failure. */
static int run(const char *const *argv, struct capture *cap,
	       struct kiln_exec_result *res)
{
	struct kiln_exec_opts o;

	opts_for(&o, argv, cap);
	return kiln_agent_run(conn, &o, WAIT_MS, res);
}

static int write_file(const char *path, size_t size, uint64_t *hash,
		      mode_t mode)
{
	static uint8_t buf[65536];
	uint64_t h = FNV_INIT, x = 0x9e3779b97f4a7c15ull ^ size;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	if (fd < 0)
		return -1;
	for (size_t done = 0; done < size;) {
		size_t n =
			size - done < sizeof(buf) ? size - done : sizeof(buf);

		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (uint8_t)x;
		}
		if (write(fd, buf, n) != (ssize_t)n) {
			close(fd);
			return -1;
		}
		h = fnv1a(h, buf, n);
		done += n;
	}
	*hash = h;
	return close(fd);
}

static int hash_fd(int fd, uint64_t *hash, uint64_t *size)
{
	static uint8_t buf[65536];
	uint64_t h = FNV_INIT, total = 0;
	ssize_t n;

	if (lseek(fd, 0, SEEK_SET) < 0)
		return -1;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		h = fnv1a(h, buf, (size_t)n);
		total += (uint64_t)n;
	}
	*hash = h;
	*size = total;
	return n < 0 ? -1 : 0;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct kiln_agent *new_conn(void)
{
	struct kiln_agent *a;
	int fd = unix_connect(agent_sock);

	if (fd < 0 || kiln_agent_connect(fd, &test_log, 5000, &a) < 0)
		return NULL;
	return a;
}

/* ---- setup ---- */

static int start_agent(const char *bin, bool pid1)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct kiln_agent_ready ready;
	char logpath[300];
	struct pollfd pfd;
	int lfd, fd, err;

	if (strlen(workdir) > sizeof(agent_sock) - 12) {
		fail("agent starts", "work dir path too long for a socket");
		return -1;
	}
	snprintf(agent_sock, sizeof(agent_sock), "%s/agent.sock", workdir);
	snprintf(ready_sock, sizeof(ready_sock), "%s/ready.sock", workdir);
	snprintf(logpath, sizeof(logpath), "%s/agent.log", workdir);
	/* listen before the agent starts: it never has to poll for us */
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(sa.sun_path, ready_sock, sizeof(ready_sock));
	unlink(ready_sock);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 1) < 0) {
		fail("agent starts", "ready socket: %s", strerror(errno));
		return -1;
	}
	agent_pid = fork();
	if (agent_pid == 0) {
		int log = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int null = open("/dev/null", O_RDONLY);

		/* never hold our stdout: a pipe reader would wait for it */
		if (log >= 0) {
			dup2(log, 1);
			dup2(log, 2);
		}
		if (null >= 0)
			dup2(null, 0);
		/* and die with us (unshare passes it on with --kill-child) */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (pid1)
			execlp("unshare", "unshare", "-Urmpfun", "--mount-proc",
			       "--kill-child", bin, "--init", "--unix",
			       agent_sock, "--ready-unix", ready_sock,
			       (char *)NULL);
		else
			execl(bin, bin, "--unix", agent_sock, "--ready-unix",
			      ready_sock, (char *)NULL);
		_exit(127);
	}
	pfd = (struct pollfd){.fd = lfd, .events = POLLIN};
	if (poll(&pfd, 1, 10000) != 1) {
		fail("agent starts",
		     "no connection on the ready socket in 10 s");
		return -1;
	}
	fd = accept(lfd, NULL, NULL);
	err = kiln_agent_read_ready(fd, 5000, &test_log, &ready);
	close(fd);
	close(lfd);
	if (err < 0) {
		fail("agent starts", "READY: %s", strerror(-err));
		return -1;
	}
	conn = new_conn();
	if (!conn) {
		fail("agent starts", "connecting to %s failed", agent_sock);
		return -1;
	}
	pass(pid1 ? "agent starts as PID 1 in new namespaces (--init)"
		  : "agent starts, announces READY on the ready socket, "
		    "accepts a connection");
	return 0;
}

/* ---- checks ---- */

static void check_status(const char *name, const char *const *argv, int want)
{
	struct kiln_exec_result res;
	struct capture cap;
	int err = run(argv, &cap, &res);

	if (err < 0)
		fail(name, "%s", strerror(-err));
	else if (res.status != want)
		fail(name, "status %d, expected %d (%s)", res.status, want,
		     res.message);
	else
		pass(name);
}

static void test_statuses(void)
{
	const char *exit3[] = {"sh", "-c", "exit 3", NULL};
	const char *kill9[] = {"sh", "-c", "kill -9 $$", NULL};
	const char *missing[] = {"/nonexistent/kiln-cmd", NULL};
	const char *missing_path[] = {"kiln-no-such-command", NULL};
	const char *truecmd[] = {"true", NULL};
	char noexec[300];
	const char *noexec_argv[] = {noexec, NULL};
	uint64_t h;

	check_status("exit code: sh -c 'exit 3' -> 3", exit3, 3);
	check_status("exit code: true -> 0", truecmd, 0);
	check_status("signal: sh -c 'kill -9 $$' -> 137", kill9, 137);
	check_status("not found: /nonexistent/kiln-cmd -> 127", missing, 127);
	check_status("not found in PATH -> 127", missing_path, 127);
	snprintf(noexec, sizeof(noexec), "%s/noexec.sh", workdir);
	if (write_file(noexec, 16, &h, 0644) < 0)
		fail("not executable -> 126", "cannot create %s", noexec);
	else
		check_status("not executable -> 126", noexec_argv, 126);
}

static void test_big_stdout(void)
{
	const char *name = "10 MiB of stdout byte-exact (FNV-1a)";
	struct kiln_exec_result res;
	struct capture *cap = malloc(sizeof(*cap));
	char path[300];
	const char *argv[] = {"cat", path, NULL};
	uint64_t h;
	double t;
	int err;

	snprintf(path, sizeof(path), "%s/big.bin", workdir);
	if (!cap || write_file(path, 10u << 20, &h, 0644) < 0) {
		fail(name, "cannot create %s", path);
		free(cap);
		return;
	}
	t = now_s();
	err = run(argv, cap, &res);
	t = now_s() - t;
	if (err < 0 || res.status != 0)
		fail(name, "err %d status %d", err, res.status);
	else if (cap->total[0] != 10u << 20 || cap->hash[0] != h)
		fail(name, "got %llu bytes, hash %016llx, expected %016llx",
		     (unsigned long long)cap->total[0],
		     (unsigned long long)cap->hash[0], (unsigned long long)h);
	else
		passf("%s (%.0f MiB/s)", name, 10 / t);
	free(cap);
}

static long agent_hwm_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)agent_pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void test_slow_reader(void)
{
	const char *name = "slow reader: 32 MiB stdout, agent memory bounded";
	struct kiln_exec_result res;
	struct capture *cap = malloc(sizeof(*cap));
	const char *argv[] = {"sh", "-c", "head -c 33554432 /dev/zero", NULL};
	struct kiln_exec_opts o;
	long before = agent_hwm_kib(), after;
	int err;

	if (!cap)
		return;
	opts_for(&o, argv, cap);
	cap->slow_us = 300;
	err = kiln_agent_run(conn, &o, WAIT_MS, &res);
	after = agent_hwm_kib();
	if (err < 0 || res.status != 0 || cap->total[0] != 32u << 20)
		fail(name, "err %d status %d bytes %llu", err, res.status,
		     (unsigned long long)cap->total[0]);
	else if (before > 0 && after - before > 4096)
		fail(name, "agent peak RSS grew by %ld KiB", after - before);
	else
		passf("%s (peak RSS %ld KiB)", name, after);
	free(cap);
}

/* A caller's stdout fd whose reader does not read for a while: the wait
 * still returns at its timeout, and nothing is lost: once the reader reads,
 * later waits deliver the rest and then the command's end. */
static void test_stalled_stdout_fd(void)
{
	const char *name = "stalled stdout fd: the wait keeps its timeout, "
			   "no output lost";
	const char *argv[] = {"sh", "-c", "head -c 1048576 /dev/zero", NULL};
	struct kiln_agent_exec *e = NULL;
	struct kiln_exec_result res;
	struct kiln_exec_opts o;
	static char buf[65536];
	long long took = -1;
	size_t total = 0;
	int64_t t0;
	int p[2], err;

	if (pipe(p) < 0) {
		fail(name, "pipe: %s", strerror(errno));
		return;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	kiln_exec_opts_init(&o);
	o.argv = argv;
	o.stdout_fd = p[1]; /* blocking; read only between waits */
	err = kiln_agent_exec_start(conn, &o, &e);
	t0 = now_ms();
	if (err == 0)
		err = kiln_agent_exec_wait(e, 1000, &res);
	took = now_ms() - t0;
	for (int rounds = 0; err == -ETIMEDOUT && rounds < 2000; rounds++) {
		ssize_t n;

		while ((n = read(p[0], buf, sizeof(buf))) > 0)
			total += (size_t)n;
		err = kiln_agent_exec_wait(e, 20, &res);
	}
	if (err == 0) {
		ssize_t n;

		while ((n = read(p[0], buf, sizeof(buf))) > 0)
			total += (size_t)n;
	}
	if (err < 0 || res.status != 0 || total != 1048576 || took < 900 ||
	    took > 3000)
		fail(name, "err %d status %d, %zu bytes, first wait %lld ms",
		     err, res.status, total, took);
	else
		passf("%s (first wait %lld ms)", name, took);
	kiln_agent_exec_free(e);
	close(p[0]);
	close(p[1]);
}

static void test_streams(void)
{
	const char *name = "stdout and stderr kept apart";
	const char *argv[] = {"sh", "-c", "echo out; echo err >&2; echo out2",
			      NULL};
	struct kiln_exec_result res;
	struct capture cap;
	int err = run(argv, &cap, &res);

	if (err < 0 || res.status != 0 ||
	    strcmp(cap.text[0], "out\nout2\n") != 0 ||
	    strcmp(cap.text[1], "err\n") != 0)
		fail(name, "err %d stdout '%s' stderr '%s'", err, cap.text[0],
		     cap.text[1]);
	else
		pass(name);
}

static void test_stdin(void)
{
	const char *name = "stdin piped: 1 MiB + 7 into wc -c";
	const char *argv[] = {"wc", "-c", NULL};
	static uint8_t data[(1u << 20) + 7];
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct kiln_agent_exec *e = NULL;
	struct capture cap;
	int err;

	opts_for(&o, argv, &cap);
	o.stdin_pipe = 1;
	err = kiln_agent_exec_start(conn, &o, &e);
	if (err == 0)
		err = kiln_agent_exec_write_stdin(e, data, sizeof(data),
						  WAIT_MS);
	if (err == 0)
		err = kiln_agent_exec_close_stdin(e);
	if (err == 0)
		err = kiln_agent_exec_wait(e, WAIT_MS, &res);
	if (err < 0 || res.status != 0 || atol(cap.text[0]) != sizeof(data))
		fail(name, "err %d output '%s'", err, cap.text[0]);
	else
		pass(name);
	kiln_agent_exec_free(e);
}

static void test_stdin_fd(void)
{
	const char *name = "stdin from an fd: 3 MiB through cat byte-exact";
	const char *argv[] = {"cat", NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct capture *cap = malloc(sizeof(*cap));
	char path[300];
	uint64_t h;
	int fd, err;

	snprintf(path, sizeof(path), "%s/stdin.bin", workdir);
	if (!cap || write_file(path, 3u << 20, &h, 0644) < 0 ||
	    (fd = open(path, O_RDONLY)) < 0) {
		fail(name, "cannot create %s", path);
		free(cap);
		return;
	}
	opts_for(&o, argv, cap);
	o.stdin_fd = fd;
	err = kiln_agent_run(conn, &o, WAIT_MS, &res);
	if (err < 0 || res.status != 0 || cap->total[0] != 3u << 20 ||
	    cap->hash[0] != h)
		fail(name, "err %d status %d bytes %llu", err, res.status,
		     (unsigned long long)cap->total[0]);
	else
		pass(name);
	close(fd);
	free(cap);
}

static void test_env_cwd(void)
{
	const char *name = "env and cwd";
	const char *argv[] = {"sh", "-c", "echo \"$KILN_X:$KILN_Y:$(pwd)\"",
			      NULL};
	const char *env[] = {"KILN_X=hello world", "KILN_Y=", NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct capture cap;
	char want[400];
	int err;

	opts_for(&o, argv, &cap);
	o.env = env;
	o.cwd = workdir;
	err = kiln_agent_run(conn, &o, WAIT_MS, &res);
	snprintf(want, sizeof(want), "hello world::%s\n", workdir);
	if (err < 0 || res.status != 0 || strcmp(cap.text[0], want) != 0)
		fail(name, "err %d output '%s', expected '%s'", err,
		     cap.text[0], want);
	else
		pass(name);

	o.cwd = "/nonexistent-kiln-dir";
	opts_for(&o, argv, &cap);
	o.cwd = "/nonexistent-kiln-dir";
	err = kiln_agent_run(conn, &o, WAIT_MS, &res);
	if (err < 0 || res.status != 126 || res.error != ENOENT ||
	    res.error_what != KILN_AGENT_ERR_SETUP)
		fail("missing cwd -> 126 with a setup error",
		     "err %d status %d: %s", err, res.status, res.message);
	else
		pass("missing cwd -> 126 with a setup error");
}

static void test_timeout(void)
{
	const char *name = "timeout: sleep 10 with timeout 300 ms -> 124";
	const char *argv[] = {"sh", "-c", "sleep 10; echo not killed", NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct capture cap;
	double t = now_s();
	int err;

	opts_for(&o, argv, &cap);
	o.timeout_ms = 300;
	err = kiln_agent_run(conn, &o, WAIT_MS, &res);
	t = now_s() - t;
	if (err < 0 || res.status != 124 || !res.timed_out || t > 3)
		fail(name, "err %d status %d after %.1f s", err, res.status, t);
	else
		passf("%s (%.2f s)", name, t);
}

static void test_signal(void)
{
	const char *name = "SIGTERM to the process group -> 143";
	const char *argv[] = {"sleep", "10", NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct kiln_agent_exec *e;
	struct capture cap;
	int err;

	opts_for(&o, argv, &cap);
	err = kiln_agent_exec_start(conn, &o, &e);
	if (err < 0) {
		fail(name, "%s", strerror(-err));
		return;
	}
	/* wait for STARTED, so the group exists */
	while (!kiln_agent_exec_pid(e) &&
	       kiln_agent_exec_wait(e, 10, &res) == -ETIMEDOUT)
		;
	err = kiln_agent_exec_signal(e, SIGTERM, 1);
	if (err == 0)
		err = kiln_agent_exec_wait(e, WAIT_MS, &res);
	if (err < 0 || res.status != 143)
		fail(name, "err %d status %d", err, res.status);
	else
		pass(name);
	kiln_agent_exec_free(e);
}

static void test_concurrent(void)
{
	const char *name = "20 concurrent execs on one connection";
	enum { N = 20 };
	struct kiln_agent_exec *e[N] = {0};
	struct capture *cap = calloc(N, sizeof(*cap));
	char envs[N][32];
	const char *env[N][2];
	const char *argv[] = {"sh", "-c", "sleep 0.5; echo \"n=$N\"", NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	double t = now_s();
	int bad = 0;

	if (!cap)
		return;
	for (int i = 0; i < N; i++) {
		opts_for(&o, argv, &cap[i]);
		snprintf(envs[i], sizeof(envs[i]), "N=%d", i);
		env[i][0] = envs[i];
		env[i][1] = NULL;
		o.env = env[i];
		if (kiln_agent_exec_start(conn, &o, &e[i]) < 0)
			bad++;
	}
	for (int i = 0; i < N; i++) {
		char want[32];

		snprintf(want, sizeof(want), "n=%d\n", i);
		if (!e[i] || kiln_agent_exec_wait(e[i], WAIT_MS, &res) < 0 ||
		    res.status != 0 || strcmp(cap[i].text[0], want) != 0)
			bad++;
		kiln_agent_exec_free(e[i]);
	}
	t = now_s() - t;
	/* one after another they would take 10 s */
	if (bad || t > 5)
		fail(name, "%d failed, %.2f s", bad, t);
	else
		passf("%s (%.2f s for 20 x sleep 0.5)", name, t);
	free(cap);
}

static void test_several_connections(void)
{
	const char *name = "several connections at once";
	struct kiln_agent *a[4];
	const char *argv[] = {"sh", "-c", "echo hi", NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct capture cap;
	int bad = 0;

	for (int i = 0; i < 4; i++)
		a[i] = new_conn();
	for (int i = 0; i < 4; i++) {
		opts_for(&o, argv, &cap);
		if (!a[i] || kiln_agent_run(a[i], &o, WAIT_MS, &res) < 0 ||
		    strcmp(cap.text[0], "hi\n") != 0)
			bad++;
	}
	for (int i = 0; i < 4; i++)
		kiln_agent_close(a[i]);
	if (bad)
		fail(name, "%d of 4 failed", bad);
	else
		pass(name);
}

static void test_files(void)
{
	const char *name = "put and get a 5 MiB file byte-exact";
	char src[300], dst[300], copy[300];
	uint64_t h, h2 = 0, h3 = 0, size = 0, size2 = 0;
	struct stat st = {0};
	int fd, cfd, err;

	snprintf(src, sizeof(src), "%s/put-src.bin", workdir);
	snprintf(dst, sizeof(dst), "%s/put-dst.bin", workdir);
	snprintf(copy, sizeof(copy), "%s/get-copy.bin", workdir);
	if (write_file(src, 5u << 20, &h, 0644) < 0 ||
	    (fd = open(src, O_RDONLY)) < 0 ||
	    (cfd = open(copy, O_RDWR | O_CREAT | O_TRUNC, 0644)) < 0) {
		fail(name, "cannot create test files");
		return;
	}
	err = kiln_agent_put_file(conn, dst, 0640, fd, 5u << 20, WAIT_MS);
	close(fd);
	fd = open(dst, O_RDONLY);
	if (err < 0 || fd < 0 || fstat(fd, &st) < 0 ||
	    hash_fd(fd, &h2, &size) < 0 || size != 5u << 20 || h2 != h ||
	    (st.st_mode & 07777) != 0640) {
		fail(name, "put: err %d, size %llu, mode %o", err,
		     (unsigned long long)size, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	err = kiln_agent_get_file(conn, dst, 5u << 20, cfd, WAIT_MS, &size2);
	if (err < 0 || hash_fd(cfd, &h3, &size) < 0 || h3 != h ||
	    size2 != 5u << 20) {
		fail(name, "get: err %d, size %llu", err,
		     (unsigned long long)size2);
		goto out;
	}
	pass(name);

	/* limits and errors */
	err = kiln_agent_get_file(conn, dst, (5u << 20) - 1, cfd, WAIT_MS,
				  NULL);
	if (err == -EFBIG)
		pass("get over max_size -> EFBIG");
	else
		fail("get over max_size -> EFBIG", "got %d", err);
	err = kiln_agent_get_file(conn, "/nonexistent/kiln", 1, cfd, WAIT_MS,
				  NULL);
	if (err == -ENOENT)
		pass("get a missing file -> ENOENT");
	else
		fail("get a missing file -> ENOENT", "got %d", err);
	err = kiln_agent_get_file(conn, "/", 1 << 20, cfd, WAIT_MS, NULL);
	if (err == -EISDIR)
		pass("get a directory -> EISDIR");
	else
		fail("get a directory -> EISDIR", "got %d", err);
	fd = open(src, O_RDONLY);
	err = kiln_agent_put_file(conn, "/nonexistent/kiln/x", 0644, fd, 100,
				  WAIT_MS);
	close(fd);
	if (err == -ENOENT)
		pass("put into a missing directory -> ENOENT");
	else
		fail("put into a missing directory -> ENOENT", "got %d", err);
	/* a source shorter than announced: cancelled, the old file stays */
	fd = open(src, O_RDONLY);
	lseek(fd, -1000, SEEK_END);
	err = kiln_agent_put_file(conn, dst, 0644, fd, 5000, WAIT_MS);
	close(fd);
	fd = open(dst, O_RDONLY);
	if (err == -EIO && fd >= 0 && hash_fd(fd, &h2, &size) == 0 && h2 == h)
		pass("put with a short source is cancelled, target untouched");
	else
		fail("put with a short source is cancelled, target untouched",
		     "got %d", err);
	/* empty file */
	err = kiln_agent_put_file(conn, copy, 0600, -1, 0, WAIT_MS);
	if (err == 0 && stat(copy, &st) == 0 && st.st_size == 0)
		pass("put an empty file");
	else
		fail("put an empty file", "got %d", err);
out:
	if (fd >= 0)
		close(fd);
	close(cfd);
}

static void test_pty(void)
{
	const char *name = "pty: a terminal of the asked size";
	const char *argv[] = {"sh", "-c",
			      "test -t 0 && test -t 1 && echo tty; stty size",
			      NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct capture cap;
	int err;

	if (access("/dev/ptmx", R_OK | W_OK) < 0) {
		printf("SKIP: %s: no /dev/ptmx\n", name);
		return;
	}
	opts_for(&o, argv, &cap);
	o.pty = 1;
	o.stdin_pipe = 1;
	o.rows = 33;
	o.cols = 77;
	err = kiln_agent_run(conn, &o, WAIT_MS, &res);
	if (err < 0 || res.status != 0 || !strstr(cap.text[0], "tty") ||
	    !strstr(cap.text[0], "33 77"))
		fail(name, "err %d status %d output '%s' (%s)", err, res.status,
		     cap.text[0], res.message);
	else
		pass(name);
}

static void test_pty_stdin(void)
{
	const char *name = "pty: stdin, resize, then EOF";
	const char *argv[] = {"sh", "-c", "read x; stty size; cat; exit 7",
			      NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct kiln_agent_exec *e = NULL;
	struct capture cap;
	int err;

	if (access("/dev/ptmx", R_OK | W_OK) < 0) {
		printf("SKIP: %s: no /dev/ptmx\n", name);
		return;
	}
	opts_for(&o, argv, &cap);
	o.pty = 1;
	o.stdin_pipe = 1;
	err = kiln_agent_exec_start(conn, &o, &e);
	if (err == 0)
		err = kiln_agent_exec_resize(e, 50, 100);
	if (err == 0)
		err = kiln_agent_exec_write_stdin(e, "go\nline\n", 8, WAIT_MS);
	if (err == 0)
		err = kiln_agent_exec_close_stdin(e);
	if (err == 0)
		err = kiln_agent_exec_wait(e, WAIT_MS, &res);
	if (err < 0 || res.status != 7 || !strstr(cap.text[0], "50 100") ||
	    !strstr(cap.text[0], "line"))
		fail(name, "err %d status %d output '%s'", err, res.status,
		     cap.text[0]);
	else
		pass(name);
	kiln_agent_exec_free(e);
}

static void test_background_holder(void)
{
	const char *name = "a background process keeping stdout open does not "
			   "hold up EXIT";
	const char *argv[] = {"sh", "-c", "sleep 5 & echo started", NULL};
	struct kiln_exec_result res;
	struct capture cap;
	double t = now_s();
	int err = run(argv, &cap, &res);

	t = now_s() - t;
	if (err < 0 || res.status != 0 || strcmp(cap.text[0], "started\n") ||
	    t > 2)
		fail(name, "err %d status %d output '%s' after %.2f s", err,
		     res.status, cap.text[0], t);
	else
		passf("%s (%.2f s)", name, t);
}

static void test_ids(void)
{
	const char *name = "uid and gid";
	const char *argv[] = {"sh", "-c", "echo $(id -u):$(id -g)", NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct capture cap;
	int err;

	if (geteuid() != 0) {
		printf("SKIP: %s: not root\n", name);
		return;
	}
	opts_for(&o, argv, &cap);
	o.uid = 65534;
	o.gid = 65533;
	o.cwd = "/";
	err = kiln_agent_run(conn, &o, WAIT_MS, &res);
	if (err < 0 || res.status != 0 || strcmp(cap.text[0], "65534:65533\n"))
		fail(name, "err %d status %d output '%s' (%s)", err, res.status,
		     cap.text[0], res.message);
	else
		pass(name);
}

static void test_disconnect_kills(void)
{
	const char *name = "closing a connection kills its execs";
	const char *argv[] = {"sleep", "30", NULL};
	struct kiln_agent *a = new_conn();
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct kiln_agent_exec *e;
	struct capture cap;
	long pid = 0;

	opts_for(&o, argv, &cap);
	if (!a || kiln_agent_exec_start(a, &o, &e) < 0) {
		fail(name, "cannot start");
		kiln_agent_close(a);
		return;
	}
	while (!(pid = kiln_agent_exec_pid(e)) &&
	       kiln_agent_exec_wait(e, 10, &res) == -ETIMEDOUT)
		;
	kiln_agent_close(a);
	for (int i = 0; i < 200 && kill((pid_t)pid, 0) == 0; i++)
		usleep(10000);
	if (pid <= 0 || kill((pid_t)pid, 0) == 0)
		fail(name, "pid %ld still there", pid);
	else
		pass(name);
}

static void test_session_limit(void)
{
	const char *name = "more than 64 sessions: the 65th is refused, "
			   "the rest run";
	const char *argv[] = {"sleep", "30", NULL};
	struct kiln_agent *a = new_conn();
	struct kiln_agent_exec *e[KILN_AGENT_MAX_SESSIONS + 1] = {0};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct capture cap;
	int err;

	if (!a) {
		fail(name, "no connection");
		return;
	}
	opts_for(&o, argv, &cap);
	for (unsigned i = 0; i <= KILN_AGENT_MAX_SESSIONS; i++)
		kiln_agent_exec_start(a, &o, &e[i]);
	err = kiln_agent_exec_wait(e[KILN_AGENT_MAX_SESSIONS], WAIT_MS, &res);
	if (err < 0 || res.error != EAGAIN || res.status != 125)
		fail(name, "err %d error %d status %d", err, res.error,
		     res.status);
	else if (kiln_agent_exec_wait(e[0], 0, &res) != -ETIMEDOUT)
		fail(name, "the first exec is not running");
	else
		pass(name);
	kiln_agent_close(a);
}

/* ---- hostile clients, on raw sockets ---- */

/* Reads frames until EOF; returns the first ERROR's what, or -1. */
static int read_until_eof(int fd, int *saw_ready)
{
	static uint8_t buf[1 << 16];
	size_t have = 0;
	int what = -1;

	*saw_ready = 0;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		struct kiln_agent_hdr h;
		const uint8_t *p;
		ssize_t n;
		int r;

		while ((r = kiln_agent_frame_next(buf, have, 1, &h, &p)) > 0) {
			struct kiln_agent_error e;

			if (h.type == KILN_AGENT_READY)
				*saw_ready = 1;
			if (h.type == KILN_AGENT_ERROR && what < 0 &&
			    kiln_agent_error_decode(p, h.length, &e) == 0)
				what = (int)e.what;
			memmove(buf, buf + r, have - (size_t)r);
			have -= (size_t)r;
		}
		if (r < 0 || poll(&pfd, 1, 5000) != 1)
			return -2;
		n = read(fd, buf + have, sizeof(buf) - have);
		if (n <= 0)
			return n == 0 ? what : -2;
		have += (size_t)n;
	}
}

static void hello(int fd)
{
	uint8_t f[24];
	struct kiln_agent_hello h = {KILN_AGENT_VERSION, 0};

	kiln_agent_hdr_encode(f, KILN_AGENT_HELLO, 0, 8);
	kiln_agent_hello_encode(f + 16, 8, &h);
	if (write(fd, f, sizeof(f)) != sizeof(f))
		perror("write");
}

static void hostile(const char *name, bool say_hello, const void *bytes,
		    size_t len)
{
	int fd = unix_connect(agent_sock), ready, what;

	if (fd < 0) {
		fail(name, "connect: %s", strerror(errno));
		return;
	}
	if (say_hello)
		hello(fd);
	if (len && write(fd, bytes, len) != (ssize_t)len)
		perror("write");
	what = read_until_eof(fd, &ready);
	close(fd);
	if (what != KILN_AGENT_ERR_PROTOCOL || ready != say_hello)
		fail(name, "error kind %d, ready %d", what, ready);
	else
		pass(name);
}

/* An exec with stdin, then more STDIN than its window in one frame. */
static void hostile_stdin_overrun(void)
{
	static uint8_t f[16 + 256 + 16 + 65537];
	const char *argv[] = {"cat", NULL};
	struct kiln_agent_exec_req req = {.flags = KILN_AGENT_EXEC_STDIN,
					  .argv = argv};
	int n = kiln_agent_exec_encode(f + 16, 256, &req);

	kiln_agent_hdr_encode(f, KILN_AGENT_EXEC, 1, (uint32_t)n);
	kiln_agent_hdr_encode(f + 16 + n, KILN_AGENT_STDIN, 1, 65537);
	hostile("STDIN beyond the credit: ERROR, disconnected", true, f,
		16 + (size_t)n + 16 + 65537);
}

static void test_hostile_clients(void)
{
	const char *argv[] = {"sh", "-c", "sleep 0.5; echo alive", NULL};
	struct kiln_exec_opts o;
	struct kiln_exec_result res;
	struct kiln_agent_exec *e;
	struct capture cap;
	uint8_t f[64];
	int err;

	/* a session that must survive all of it */
	opts_for(&o, argv, &cap);
	err = kiln_agent_exec_start(conn, &o, &e);

	hostile("garbage instead of HELLO: ERROR, disconnected", false,
		"GET / HTTP/1.1\r\nHost: kiln\r\n\r\n", 30);
	hostile("garbage after HELLO: ERROR, disconnected", true,
		"\x4b\x41\x47\x54garbage-garbage-garbage", 27);
	kiln_agent_hdr_encode(f, KILN_AGENT_STDOUT, 1, 0xffffffffu);
	hostile("oversized frame: ERROR, disconnected", true, f, 16);
	kiln_agent_hdr_encode(f, KILN_AGENT_EXEC, 1, 38);
	memset(f + 16, 0xff, 38);
	hostile("malformed EXEC body: ERROR, disconnected", true, f, 54);
	kiln_agent_hdr_encode(f, KILN_AGENT_STDIN, 9, 1);
	hostile("STDIN for a session never opened: ERROR, disconnected", true,
		f, 17);
	kiln_agent_hdr_encode(f, KILN_AGENT_HELLO, 0, 8);
	memset(f + 16, 0, 8);
	f[4] = 9; /* the header's version */
	hostile("unknown version: ERROR, disconnected", false, f, 24);
	hostile_stdin_overrun();

	if (err == 0)
		err = kiln_agent_exec_wait(e, WAIT_MS, &res);
	if (err < 0 || res.status != 0 || strcmp(cap.text[0], "alive\n") != 0)
		fail("an exec on another connection carries on", "err %d '%s'",
		     err, cap.text[0]);
	else
		pass("an exec on another connection carries on");
	if (err == 0)
		kiln_agent_exec_free(e);
}

/* ---- PID 1 ---- */

static void test_pid1(void)
{
	const char *setup[] = {"sh", "-c",
			       "cat /proc/sys/kernel/hostname; "
			       "stat -f -c %T /tmp /run; "
			       "cat /sys/class/net/lo/flags; echo $PPID",
			       NULL};
	const char *orphan[] = {"sh", "-c", "sleep 0.2 & exit 0", NULL};
	const char *states[] = {"sh", "-c", "cat /proc/[0-9]*/stat", NULL};
	struct kiln_exec_result res;
	struct capture cap;
	char host[64], t1[64], t2[64];
	unsigned flags = 0;
	int ppid = 0, zombies = 0, procs = 0;

	if (run(setup, &cap, &res) < 0 || res.status != 0 ||
	    sscanf(cap.text[0], "%63s %63s %63s %x %d", host, t1, t2, &flags,
		   &ppid) != 5)
		fail("PID 1: set-up", "output '%s' (%s)", cap.text[0],
		     cap.text[1]);
	else if (strcmp(host, "kiln") || strcmp(t1, "tmpfs") ||
		 strcmp(t2, "tmpfs") || !(flags & 1) || ppid != 1)
		fail("PID 1: set-up",
		     "hostname %s, /tmp %s, /run %s, lo flags "
		     "%#x, parent %d",
		     host, t1, t2, flags, ppid);
	else
		pass("PID 1: hostname kiln, tmpfs /tmp and /run, lo up, execs "
		     "are its children");

	if (run(orphan, &cap, &res) < 0 || res.status != 0) {
		fail("PID 1: orphans are reaped", "exec failed");
		return;
	}
	usleep(500000);
	if (run(states, &cap, &res) < 0 || res.status != 0) {
		fail("PID 1: orphans are reaped", "exec failed");
		return;
	}
	for (char *l = cap.text[0]; l && *l; l = strchr(l, '\n')) {
		char *paren;

		if (*l == '\n')
			l++;
		paren = strchr(l, ')');
		if (!paren)
			break;
		procs++;
		if (paren[1] == ' ' && paren[2] == 'Z')
			zombies++;
		l = paren;
	}
	if (procs < 2 || zombies)
		fail("PID 1: orphans are reaped", "%d zombies among %d",
		     zombies, procs);
	else
		pass("PID 1: orphans are reaped");
}

/* RESTORED: an agent that is not PID 1 checks it and answers with nothing
 * changed on this host (its clock, entropy pool and name are the host's). */
static void test_restored(void)
{
	struct kiln_agent_restored m = {0};
	struct kiln_agent_restored_done done = {1, 1, 1};
	const char *argv[] = {"true", NULL};
	struct kiln_exec_result res;
	struct capture cap;
	int err;

	m.wall_ns = 1234567890ull * 1000000000ull;
	for (unsigned i = 0; i < sizeof(m.entropy); i++)
		m.entropy[i] = (uint8_t)(i * 37 + 1);
	strcpy(m.id, "clone-7");
	strcpy(m.hostname, "clone-7");
	err = kiln_agent_restored(conn, &m, 5000, &done);
	if (err < 0 || done.clock_err || done.entropy_err || done.hostname_err)
		fail("RESTORED answered", "%s, errs %u %u %u", strerror(-err),
		     done.clock_err, done.entropy_err, done.hostname_err);
	else if (run(argv, &cap, &res) < 0 || res.status != 0)
		fail("RESTORED answered", "the connection does not go on");
	else
		pass("RESTORED is answered RESTORED_DONE (not PID 1: nothing "
		     "of the host changed), the connection goes on");
	strcpy(m.hostname, "not a name!");
	err = kiln_agent_restored(conn, &m, 5000, &done);
	if (err != -EINVAL)
		fail("RESTORED with a bad hostname is refused by the client",
		     "%s", strerror(-err));
	else
		pass("RESTORED with a bad hostname is refused");
}

/* SHUTDOWN: an agent that is not PID 1 ends its execs and exits 0. */
static void test_shutdown(void)
{
	const char *argv[] = {"sleep", "60", NULL};
	struct kiln_agent *other = new_conn();
	struct kiln_exec_result res;
	struct kiln_agent_exec *e = NULL;
	struct kiln_exec_opts o;
	struct capture cap;
	int status = -1, err;
	double t0 = now_s();

	if (!other) {
		fail("shutdown", "no second connection");
		return;
	}
	capture_init(&cap);
	opts_for(&o, argv, &cap);
	if (kiln_agent_exec_start(other, &o, &e) < 0 ||
	    kiln_agent_exec_wait(e, 200, &res) != -ETIMEDOUT) {
		fail("shutdown", "could not start sleep 60");
		goto out;
	}
	if (kiln_agent_shutdown(conn, 5000) < 0) {
		fail("shutdown", "SHUTDOWN not sent");
		goto out;
	}
	for (int i = 0; i < 100; i++) {
		if (waitpid(agent_pid, &status, WNOHANG) == agent_pid)
			break;
		usleep(50000);
	}
	err = kiln_agent_exec_wait(e, 5000, &res);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("shutdown", "agent did not exit 0 (status 0x%x)", status);
	else if (err == -ETIMEDOUT)
		fail("shutdown", "the running exec's connection stayed open");
	else
		passf("SHUTDOWN: the agent (not PID 1) killed its execs and "
		      "exited 0 in %.0f ms",
		      (now_s() - t0) * 1000);
	agent_pid = -1;
out:
	kiln_agent_exec_free(e);
	kiln_agent_close(other);
}

/* ---- timing ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* N execs of /bin/true through the agent vs N fork+execs of it by sh, in
 * interleaved batches (the host may be busy); medians of the batches. */
static void bench(void)
{
	enum { ROUNDS = 10 };
	const char *argv[] = {"/bin/true", NULL};
	const char *env_n = getenv("AGENT_BENCH_N");
	int n = env_n ? atoi(env_n) : 200, per;
	double agent[ROUNDS], sh[ROUNDS], t;
	struct kiln_exec_result res;
	struct capture cap;
	char cmd[300];
	int bad = 0;

	if (n < ROUNDS)
		n = 200;
	per = n / ROUNDS;
	snprintf(cmd, sizeof(cmd),
		 "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done",
		 per);
	run(argv, &cap, &res); /* warm up */
	for (int r = 0; r < ROUNDS; r++) {
		t = now_s();
		for (int i = 0; i < per; i++)
			if (run(argv, &cap, &res) < 0 || res.status != 0)
				bad++;
		agent[r] = (now_s() - t) / per;
		t = now_s();
		if (system(cmd) != 0)
			bad++;
		sh[r] = (now_s() - t) / per;
	}
	qsort(agent, ROUNDS, sizeof(double), cmp_double);
	qsort(sh, ROUNDS, sizeof(double), cmp_double);
	t = (agent[ROUNDS / 2 - 1] + agent[ROUNDS / 2]) / 2;
	if (bad)
		fail("exec round trips", "%d failed", bad);
	printf("agent exec overhead: %.0f us per exec vs %.0f us for sh "
	       "fork+exec, ratio %.2f (%d execs of /bin/true each, medians "
	       "of %d interleaved batches)\n",
	       t * 1e6, (sh[ROUNDS / 2 - 1] + sh[ROUNDS / 2]) / 2 * 1e6,
	       t / ((sh[ROUNDS / 2 - 1] + sh[ROUNDS / 2]) / 2), per * ROUNDS,
	       ROUNDS);
}

int main(int argc, char **argv)
{
	bool pid1 = argc == 4 && !strcmp(argv[1], "--pid1");

	if (argc != 3 && !pid1) {
		fprintf(stderr, "usage: %s [--pid1] AGENT_BINARY WORKDIR\n",
			argv[0]);
		return 2;
	}
	workdir = argv[argc - 1];
	signal(SIGPIPE, SIG_IGN);
	if (start_agent(argv[argc - 2], pid1) < 0) {
		if (agent_pid > 0)
			kill(agent_pid, SIGKILL);
		return 1;
	}
	if (pid1) {
		test_pid1();
		goto out;
	}
	test_statuses();
	test_streams();
	test_big_stdout();
	test_slow_reader();
	test_stalled_stdout_fd();
	test_stdin();
	test_stdin_fd();
	test_env_cwd();
	test_timeout();
	test_signal();
	test_concurrent();
	test_several_connections();
	test_files();
	test_pty();
	test_pty_stdin();
	test_background_holder();
	test_ids();
	test_disconnect_kills();
	test_session_limit();
	test_hostile_clients();
	test_restored();
	bench();
	test_shutdown();
out:
	kiln_agent_close(conn);
	/* SIGKILL: unshare blocks SIGTERM while it waits */
	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
	}
	return 0;
}
