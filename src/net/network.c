/* SPDX-License-Identifier: MIT */
#include "network.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kiln/kiln.h"
#include "net/egress.h"
#include "util/clock.h"

#define DEFAULT_NET   0x0a590000u /* 10.89.0.0: 10.89.N.0/24 by default */
#define NAT_NET	      0x0a000200u /* --net user's default 10.0.2.0/24 */
#define HELLO_WAIT_MS 2000

/* <runtime>/kiln/.networks: $XDG_RUNTIME_DIR/kiln or /tmp/kiln-UID, the
 * directories `kiln start` keeps its sandboxes in. 0, 1 (does not exist
 * and !create), or -errno (logged). */
static int network_root(char *buf, size_t len, bool create,
			const struct kiln_log *log)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	int n;

	if (xdg && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode))
		n = snprintf(buf, len, "%s/kiln", xdg);
	else
		n = snprintf(buf, len, "/tmp/kiln-%u", (unsigned)getuid());
	if (n < 0 || (size_t)n + 12 >= len)
		return kiln_errorf(log, -ENAMETOOLONG, "network: %s: too long",
				   buf);
	if (create && mkdir(buf, 0700) < 0 && errno != EEXIST)
		return kiln_errorf(log, -errno, "network: cannot create %s: %s",
				   buf, strerror(errno));
	if (lstat(buf, &st) < 0)
		return create ? -errno : 1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
		return kiln_errorf(log, -EPERM,
				   "network: %s is not a private directory "
				   "of this user; refusing to use it",
				   buf);
	strcat(buf, "/.networks");
	if (create && mkdir(buf, 0700) < 0 && errno != EEXIST)
		return kiln_errorf(log, -errno, "network: cannot create %s: %s",
				   buf, strerror(errno));
	if (lstat(buf, &st) < 0)
		return create ? -errno : 1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid())
		return kiln_errorf(log, -EPERM,
				   "network: %s is not a directory of this "
				   "user; refusing to use it",
				   buf);
	return 0;
}

static int check_name(const char *name, const struct kiln_log *log)
{
	if (!name || !sw_name_valid(name) || strlen(name) > 32)
		return kiln_errorf(log, -EINVAL,
				   "'%s' is not a network name (1..32 of A-Z "
				   "a-z 0-9 _ - ., not starting with . or -)",
				   name ? name : "(null)");
	return 0;
}

static int network_dir(const char *name, char *buf, size_t len, bool create,
		       const struct kiln_log *log)
{
	int r = check_name(name, log);

	if (r == 0)
		r = network_root(buf, len, create, log);
	if (r < 0)
		return r;
	if (r == 1)
		return -ENOENT;
	if (strlen(buf) + strlen(name) + 16 >= len)
		return kiln_errorf(log, -ENAMETOOLONG,
				   "network: %s/%s: too long", buf, name);
	strcat(buf, "/");
	strcat(buf, name);
	return 0;
}

int network_socket_path(const char *name, char *buf, size_t len,
			const struct kiln_log *log)
{
	struct stat st;
	int r = network_dir(name, buf, len, false, log);

	if (r == 0 && lstat(buf, &st) < 0)
		r = -ENOENT;
	if (r == -ENOENT)
		return kiln_errorf(log, r,
				   "no network named '%s' (kiln network "
				   "create %s)",
				   name, name);
	if (r < 0)
		return r;
	if (strlen(buf) + 12 >= len ||
	    strlen(buf) + 12 >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return kiln_errorf(log, -ENAMETOOLONG,
				   "network: %s: too long for a socket path",
				   buf);
	strcat(buf, "/switch.sock");
	return 0;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int network_hello(const char *path, const struct sw_hello *h,
		  struct sw_reply *r, int timeout_ms, int *port_fd)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int64_t deadline = now_ms() + timeout_ms;
	uint8_t msg[80], *in;
	ssize_t n;
	int fd, err;

	if (port_fd)
		*port_fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* a listening Unix socket connects at once or refuses; a full
	 * backlog is EAGAIN: wait a little for it */
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		if (err != -EAGAIN || now_ms() >= deadline) {
			close(fd);
			return err == -EAGAIN ? -ETIMEDOUT : err;
		}
		usleep(10000);
	}
	n = (ssize_t)sw_hello_encode(h, msg);
	if (send(fd, msg, (size_t)n, MSG_NOSIGNAL) != n) {
		err = -errno;
		close(fd);
		return err ? err : -EPROTO;
	}
	in = malloc(14 + SW_REPLY_MAX);
	if (!in) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		err = wait_fd(fd, POLLIN, deadline);
		if (err < 0)
			break;
		n = recv(fd, in, 14 + SW_REPLY_MAX, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		err = n < 0				      ? -errno
		      : n == 0				      ? -ECONNRESET
		      : sw_reply_decode(in, (size_t)n, r) < 0 ? -EPROTO
							      : 0;
		break;
	}
	free(in);
	if (err == 0 && port_fd && h->kind == SW_HELLO_PORT && r->status == 0) {
		*port_fd = fd;
		return 0;
	}
	close(fd);
	return err;
}

/* ---- kiln_network_* ---- */

/* A network's subnet, "A.B.C.D/N" with N 16..29, host bits cleared. */
static int parse_subnet(const char *s, uint32_t *net, unsigned *prefix)
{
	int r = egress_net4_parse(s, 16, 29, net, prefix);

	if (r == 0)
		*net &= ~0u << (32 - *prefix);
	return r;
}

static bool overlaps(uint32_t n1, unsigned p1, uint32_t n2, unsigned p2)
{
	unsigned p = p1 < p2 ? p1 : p2;
	uint32_t mask = ~0u << (32 - p);

	return (n1 & mask) == (n2 & mask);
}

/* A network's recorded subnet (DIR/subnet): 0 or -errno. */
static int read_subnet(const char *dir, uint32_t *net, unsigned *prefix,
		       char text[20])
{
	char path[PATH_MAX], line[32] = "";
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/subnet", dir);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	r = fgets(line, sizeof(line), f) ? 0 : -EINVAL;
	fclose(f);
	line[strcspn(line, "\n")] = 0;
	if (r == 0)
		r = parse_subnet(line, net, prefix);
	if (r == 0 && text)
		snprintf(text, 20, "%s", line);
	return r;
}

/* A subnet no other network of this user has: *net given (checked), or
 * the first free 10.89.N.0/24. */
static int pick_subnet(const char *root, const char *self, bool given,
		       uint32_t *net, unsigned *prefix,
		       const struct kiln_log *log)
{
	for (unsigned n = 0; n < 256; n++) {
		uint32_t want = given ? *net : DEFAULT_NET + (n << 8);
		unsigned wp = given ? *prefix : 24;
		bool clash = overlaps(want, wp, NAT_NET, 24);
		char other_name[64] = "";
		struct dirent *de;
		DIR *d;

		if (clash && given)
			return kiln_errorf(
				log, -EINVAL,
				"network: subnet overlaps 10.0.2.0/24,"
				" the user-mode NAT's (--net user)");
		d = opendir(root);
		while (!clash && d && (de = readdir(d))) {
			char dir[PATH_MAX];
			uint32_t on;
			unsigned op;

			if (de->d_name[0] == '.' || !strcmp(de->d_name, self))
				continue;
			snprintf(dir, sizeof(dir), "%.3900s/%.32s", root,
				 de->d_name);
			if (read_subnet(dir, &on, &op, NULL) == 0 &&
			    overlaps(want, wp, on, op)) {
				clash = true;
				snprintf(other_name, sizeof(other_name),
					 "%.63s", de->d_name);
			}
		}
		if (d)
			closedir(d);
		if (!clash) {
			*net = want;
			*prefix = wp;
			return 0;
		}
		if (given)
			return kiln_errorf(
				log, -EEXIST,
				"network: the subnet overlaps that of "
				"network '%s'",
				other_name);
	}
	return kiln_errorf(log, -ENOSPC,
			   "network: no free subnet in 10.89.0.0/16: give "
			   "--subnet");
}

static volatile sig_atomic_t switch_stop;

static void on_term(int sig)
{
	(void)sig;
	switch_stop = 1;
}

static void switch_log(void *opaque, enum kiln_log_level level, const char *msg)
{
	time_t t = time(NULL);
	struct tm tm;
	char when[32];

	(void)opaque, (void)level;
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%F %T", &tm);
	fprintf(stderr, "%s %s\n", when, msg);
}

/* The switch process: fd 3 is its listening socket. Never returns. */
static void switch_main(const char *dir, uint32_t net, unsigned prefix)
{
	struct kiln_log log = {switch_log, NULL, KILN_LOG_INFO};
	struct sigaction sa = {.sa_handler = on_term};
	struct net_switch *sw = malloc(sizeof(*sw));
	char path[PATH_MAX];
	int null = open("/dev/null", O_RDWR | O_CLOEXEC), logfd, r;

	snprintf(path, sizeof(path), "%s/switch.log", dir);
	logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
	}
	if (logfd >= 0)
		dup2(logfd, STDERR_FILENO);
	else if (null >= 0)
		dup2(null, STDERR_FILENO);
	setvbuf(stderr, NULL, _IOLBF, 0);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if (!sw || sw_init(sw, net, prefix, &log) < 0)
		_exit(1);
	kiln_logf(&log, KILN_LOG_INFO, "switch: serving %s", dir);
	r = sw_serve(sw, 3, &switch_stop);
	if (r < 0)
		kiln_logf(&log, KILN_LOG_ERROR, "switch: %s", strerror(-r));
	kiln_logf(&log, KILN_LOG_INFO, "switch: stopped");
	_exit(r < 0 ? 1 : 0);
}

static bool switch_alive(const char *sock, unsigned *members)
{
	struct sw_hello h = {.kind = SW_HELLO_LIST};
	struct sw_reply *r = malloc(sizeof(*r));
	bool alive = false;

	if (r && network_hello(sock, &h, r, HELLO_WAIT_MS, NULL) == 0 &&
	    r->status == 0) {
		alive = true;
		if (members) {
			*members = 0;
			for (const char *p = r->text; *p; p++)
				*members += *p == '\n';
		}
	}
	free(r);
	return alive;
}

KILN_API int kiln_network_create(const char *name, const char *subnet,
				 kiln_log_fn log_fn, void *opaque)
{
	struct kiln_log log = {log_fn, opaque, KILN_LOG_DEBUG};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char root[PATH_MAX - 128], dir[PATH_MAX - 64], path[PATH_MAX];
	uint32_t net = 0;
	unsigned prefix = 24;
	int r, fd, lock;
	pid_t pid;
	FILE *f;

	if (subnet && parse_subnet(subnet, &net, &prefix) < 0)
		return kiln_errorf(&log, -EINVAL,
				   "network: subnet '%s': expected an IPv4 "
				   "network A.B.C.D/N with N 16..29",
				   subnet);
	r = network_dir(name, dir, sizeof(dir), true, &log);
	if (r < 0)
		return r;
	snprintf(root, sizeof(root), "%.*s", (int)(strrchr(dir, '/') - dir),
		 dir);
	snprintf(path, sizeof(path), "%s/switch.sock", dir);
	if (strlen(path) >= sizeof(sa.sun_path))
		return kiln_errorf(&log, -ENAMETOOLONG,
				   "network: %s: too long for a socket path",
				   path);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return kiln_errorf(&log, -errno,
				   "network: cannot create %s: %s", dir,
				   strerror(errno));
	/* one create at a time per name: the second sees the first's switch */
	lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lock < 0 || flock(lock, LOCK_EX) < 0) {
		r = kiln_errorf(&log, -errno, "network: cannot lock %s: %s",
				dir, strerror(errno));
		if (lock >= 0)
			close(lock);
		return r;
	}
	if (switch_alive(path, NULL)) {
		close(lock);
		return kiln_errorf(&log, -EEXIST, "a network named '%s' exists",
				   name);
	}
	/* new, or a switch that died: its network is made (anew) */
	r = pick_subnet(root, name, subnet != NULL, &net, &prefix, &log);
	if (r < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/subnet", dir);
	f = fopen(path, "we");
	if (!f ||
	    fprintf(f, "%u.%u.%u.%u/%u\n", net >> 24, net >> 16 & 255,
		    net >> 8 & 255, net & 255, prefix) < 0 ||
	    fclose(f) != 0) {
		r = kiln_errorf(&log, -EIO, "network: cannot write %s", path);
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/switch.sock", dir);
	strcpy(sa.sun_path, path);
	unlink(path); /* a dead switch's: checked not to answer above */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		r = kiln_errorf(&log, -errno, "network: %s: %s", path,
				strerror(errno));
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	/* the switch runs in its own process, detached (two forks), so it
	 * outlives whoever created the network; it keeps only its socket */
	pid = fork();
	if (pid < 0) {
		r = kiln_errorf(&log, -errno, "network: fork: %s",
				strerror(errno));
		close(fd);
		goto fail;
	}
	if (pid == 0) {
		setsid();
		if (fork() != 0)
			_exit(0);
		if (dup2(fd, 3) < 0)
			_exit(1);
		/* nothing of the caller's but the socket (close_range needs
		 * Linux 5.9: else one by one) */
		if (close_range(4, ~0u, 0) < 0)
			for (int k = 4; k < 65536; k++)
				close(k);
		if (chdir("/") < 0)
			_exit(1);
		fcntl(3, F_SETFD, FD_CLOEXEC);
		switch_main(dir, net, prefix);
	}
	close(fd);
	waitpid(pid, NULL, 0);
	close(lock);
	return 0;
fail:
	close(lock);
	snprintf(path, sizeof(path), "%s/subnet", dir);
	unlink(path);
	rmdir(dir);
	return r;
}

static void remove_files(const char *dir)
{
	static const char *const files[] = {"switch.sock", "subnet",
					    "switch.log"};
	char path[PATH_MAX + 16];

	for (unsigned i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

KILN_API int kiln_network_remove(const char *name, int force,
				 kiln_log_fn log_fn, void *opaque)
{
	struct kiln_log log = {log_fn, opaque, KILN_LOG_DEBUG};
	char path[PATH_MAX], dir[PATH_MAX];
	unsigned members = 0;
	int r = network_socket_path(name, path, sizeof(path), &log);

	if (r < 0)
		return r;
	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path),
		 path);
	if (switch_alive(path, &members)) {
		struct sw_hello h = {.kind = SW_HELLO_STOP};
		struct sw_reply *rep;
		int64_t deadline = now_ms() + 5000;

		if (members && !force)
			return kiln_errorf(&log, -EBUSY,
					   "network '%s' has %u member%s (stop "
					   "them, or remove it anyway with "
					   "--force: they lose the network)",
					   name, members,
					   members == 1 ? "" : "s");
		rep = malloc(sizeof(*rep));
		if (!rep)
			return -ENOMEM;
		r = network_hello(path, &h, rep, HELLO_WAIT_MS, NULL);
		free(rep);
		if (r < 0)
			return kiln_errorf(&log, r,
					   "network '%s': the switch did not "
					   "stop: %s",
					   name, strerror(-r));
		/* gone once it no longer accepts */
		while (switch_alive(path, NULL) && now_ms() < deadline)
			usleep(20000);
	}
	remove_files(dir);
	return 0;
}

KILN_API int kiln_network_list(struct kiln_network_info **out, size_t *count)
{
	char root[PATH_MAX - 128];
	struct kiln_network_info *list = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int r = network_root(root, sizeof(root), false, NULL);

	*out = NULL;
	*count = 0;
	if (r < 0)
		return r;
	if (r == 1)
		return 0;
	d = opendir(root);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char dir[PATH_MAX - 64], sock[PATH_MAX];
		struct kiln_network_info *e;
		uint32_t net;
		unsigned prefix;

		if (!sw_name_valid(de->d_name) || strlen(de->d_name) > 32)
			continue;
		snprintf(dir, sizeof(dir), "%s/%.32s", root, de->d_name);
		if (n == cap) {
			void *p = realloc(list, (cap = cap ? 2 * cap : 8) *
							sizeof(*list));

			if (!p) {
				free(list);
				closedir(d);
				return -ENOMEM;
			}
			list = p;
		}
		e = &list[n];
		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%s", de->d_name);
		if (read_subnet(dir, &net, &prefix, e->subnet) < 0)
			snprintf(e->subnet, sizeof(e->subnet), "?");
		snprintf(sock, sizeof(sock), "%s/switch.sock", dir);
		e->running = switch_alive(sock, &e->members);
		n++;
	}
	closedir(d);
	*out = list;
	*count = n;
	return 0;
}

KILN_API int kiln_network_members(const char *name, char **text)
{
	char path[PATH_MAX];
	struct sw_hello h = {.kind = SW_HELLO_LIST};
	struct sw_reply *r;
	int err = network_socket_path(name, path, sizeof(path), NULL);

	*text = NULL;
	if (err < 0)
		return err;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	err = network_hello(path, &h, r, HELLO_WAIT_MS, NULL);
	if (err == 0 && r->status)
		err = -r->status;
	if (err == 0 && !(*text = strdup(r->text)))
		err = -ENOMEM;
	free(r);
	return err;
}
