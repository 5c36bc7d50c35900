/* SPDX-License-Identifier: MIT */
/*
 * kiln-agent: runs commands and moves files for the host, inside a kiln guest
 * (protocol: include/kiln/agent_proto.h). A static binary that can be PID 1:
 * then it mounts the basic filesystems, names the host, brings lo up, sets
 * rlimits and reaps every orphan. It listens on vsock (or, for tests, a Unix
 * socket), announces itself on the ready port, and serves any number of
 * connections from one poll loop: no threads.
 *
 * Memory is bounded everywhere the host or a child could push: a connection
 * reads only while less than OUT_HIGH bytes wait to go out, an exec's pipes
 * are read under the same rule (a slow host stalls the child, not the agent),
 * and stdin is credit based. Anything malformed gets ERROR and its connection
 * is closed; the agent itself never exits on the host's account.
 *
 *   kiln-agent [--port N] [--ready-port N] [--ready-cid N]
 *   kiln-agent --unix PATH [--ready-unix PATH] [--init]
 *
 * --unix is for tests: no PID 1 set-up unless --init asks for it (which
 * only acts when the agent really is PID 1, e.g. in a pid namespace).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <linux/random.h>
#include <linux/vm_sockets.h>

#include <kiln/agent_proto.h>

#define AGENT_NAME "kiln-agent 0.1.0"

#define MAX_CONNS 128
/* Frames are only produced while fewer bytes than this wait to be sent. */
#define OUT_HIGH     (256u * 1024u)
#define IN_CAP	     (64u * 1024u)
#define STDIN_WINDOW (64u * 1024u)
/* After the child exits, output still in its pipes is read; a background
 * process that keeps them open gets this long, then they are closed. */
#define DRAIN_MS 100
/* A connection being closed for an error gets this long to take it. */
#define CLOSE_GRACE_MS 1000
#define READY_TRIES    100
#define READY_RETRY_MS 20
#define NOFILE_LIMIT   65536
/* SHUTDOWN: processes get this long after SIGTERM before SIGKILL. */
#define SHUTDOWN_GRACE_MS 1000

/* What the child reports on the status pipe when it cannot exec. */
enum stage {
	ST_EXEC,
	ST_PTY,
	ST_DUP,
	ST_CHDIR,
	ST_GROUPS,
	ST_GID,
	ST_UID,
	ST_RLIMIT,
};

static const char *const stage_names[] = {
	"exec",	  "pty",    "stdio",  "chdir",
	"setgroups", "setgid", "setuid", "setrlimit",
};

/* kiln.ulimit=NAME=SOFT:HARD,...: limits every exec starts with. */
#define MAX_ULIMITS 8
static struct {
	int resource;
	struct rlimit rl;
} ulimits[MAX_ULIMITS];
static int nulimits;

struct child_status {
	int stage;
	int err;
};

struct buf {
	uint8_t *p;
	size_t off, len, cap;
};

enum sess_kind { SESS_EXEC, SESS_PUT, SESS_GET };

struct conn;

struct sess {
	struct sess *next;
	struct conn *c;
	uint32_t id;
	enum sess_kind kind;
	bool dead; /* ended; freed at the end of the loop round */

	/* exec */
	pid_t pid;
	bool started, exited, timed_out, pty;
	bool stdin_wanted, stdin_eof, stdin_dead;
	int status;
	int status_fd; /* until execve succeeded (EOF) or failed */
	int in_fd;     /* the child's stdin (pipe, or a dup of the pty) */
	int out_fd[2]; /* its stdout and stderr pipes; pty: [0] only */
	uint8_t *inq;  /* stdin not yet written, within the window */
	size_t inq_off, inq_len;
	uint32_t unacked; /* stdin taken off the window, not yet credited */
	int64_t deadline; /* timeout kill, or 0 */
	int64_t exit_ms;
	char what[64]; /* argv[0] or the path, for messages */

	/* put and get */
	int fd;
	uint64_t size, done;
	char *path, *tmp;
};

struct conn {
	struct conn *next;
	int fd;
	bool hello, closing, dead;
	int64_t close_by;
	uint32_t max_id;
	unsigned nsess;
	struct buf in, out;
	struct sess *sessions;
};

/* What a pollfd entry stands for. */
enum ref_kind { REF_LISTEN, REF_SIGNAL, REF_CONN, REF_STATUS, REF_OUT, REF_IN };

struct ref {
	enum ref_kind kind;
	struct conn *c;
	struct sess *s;
	int idx;
};

static struct {
	int listen_fd;
	int sig_fd;
	struct conn *conns;
	unsigned nconns;
	struct pollfd *pfd;
	struct ref *refs;
	size_t npfd, cap_pfd;
	bool pid1;
} ag = {.listen_fd = -1, .sig_fd = -1};

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	char buf[600] = "kiln-agent: ";
	size_t pre = strlen(buf);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf + pre, sizeof(buf) - pre - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n += (int)pre;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* one write per line: lines stay whole on a shared console */
	if (write(2, buf, (size_t)n) < 0)
		return;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- buffers and frames ---- */

static bool buf_reserve(struct buf *b, size_t need)
{
	if (b->off == b->len)
		b->off = b->len = 0;
	if (b->cap - b->len >= need)
		return true;
	if (b->off) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= need)
			return true;
	}
	size_t cap = b->cap ? b->cap : IN_CAP;
	uint8_t *p;

	while (cap - b->len < need)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

static size_t out_pending(const struct conn *c)
{
	return c->out.len - c->out.off;
}

static bool has_room(const struct conn *c)
{
	return !c->dead && !c->closing && out_pending(c) < OUT_HIGH;
}

/* Payload space for one frame of up to max bytes, or NULL (ENOMEM). */
static uint8_t *frame_begin(struct conn *c, size_t max)
{
	if (!buf_reserve(&c->out, KILN_AGENT_HDR_SIZE + max))
		return NULL;
	return c->out.p + c->out.len + KILN_AGENT_HDR_SIZE;
}

static void frame_end(struct conn *c, uint16_t type, uint32_t session,
		      size_t len)
{
	kiln_agent_hdr_encode(c->out.p + c->out.len, type, session,
			      (uint32_t)len);
	c->out.len += KILN_AGENT_HDR_SIZE + len;
}

static void conn_drop(struct conn *c, const char *why);

static void send_frame(struct conn *c, uint16_t type, uint32_t session,
		       const void *p, size_t len)
{
	uint8_t *dst;

	if (c->dead)
		return;
	dst = frame_begin(c, len);
	if (!dst) {
		conn_drop(c, "out of memory");
		return;
	}
	if (len)
		memcpy(dst, p, len);
	frame_end(c, type, session, len);
}

static void send_u32(struct conn *c, uint16_t type, uint32_t session,
		     uint32_t v)
{
	uint8_t p[4];

	kiln_agent_u32_encode(p, sizeof(p), v);
	send_frame(c, type, session, p, sizeof(p));
}

static void send_u64(struct conn *c, uint16_t type, uint32_t session,
		     uint64_t v)
{
	uint8_t p[8];

	kiln_agent_u64_encode(p, sizeof(p), v);
	send_frame(c, type, session, p, sizeof(p));
}

static void send_error(struct conn *c, uint32_t session, int err,
		       enum kiln_agent_error_what what, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void send_error(struct conn *c, uint32_t session, int err,
		       enum kiln_agent_error_what what, const char *fmt, ...)
{
	struct kiln_agent_error m = {.err = (uint32_t)err, .what = what};
	uint8_t p[8 + KILN_AGENT_MAX_MSG];
	va_list ap;
	int n;

	if (err < 1 || err > 4095)
		m.err = EIO;
	va_start(ap, fmt);
	vsnprintf(m.msg, sizeof(m.msg), fmt, ap);
	va_end(ap);
	n = kiln_agent_error_encode(p, sizeof(p), &m);
	if (n > 0)
		send_frame(c, KILN_AGENT_ERROR, session, p, (size_t)n);
}

static void send_ready(struct conn *c)
{
	struct kiln_agent_ready r = {
		.version = KILN_AGENT_VERSION,
		.max_frame = KILN_AGENT_MAX_FRAME,
		.max_sessions = KILN_AGENT_MAX_SESSIONS,
		.stdin_window = STDIN_WINDOW,
		.name = AGENT_NAME,
	};
	uint8_t p[16 + KILN_AGENT_MAX_NAME];
	int n = kiln_agent_ready_encode(p, sizeof(p), &r);

	if (n > 0)
		send_frame(c, KILN_AGENT_READY, 0, p, (size_t)n);
}

/* ---- sessions ---- */

static struct sess *sess_new(struct conn *c, uint32_t id, enum sess_kind kind)
{
	struct sess *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->c = c;
	s->id = id;
	s->kind = kind;
	s->status_fd = s->in_fd = s->fd = -1;
	s->out_fd[0] = s->out_fd[1] = -1;
	s->next = c->sessions;
	c->sessions = s;
	c->nsess++;
	return s;
}

static struct sess *sess_find(struct conn *c, uint32_t id)
{
	for (struct sess *s = c->sessions; s; s = s->next)
		if (s->id == id && !s->dead)
			return s;
	return NULL;
}

static void kill_exec(struct sess *s, int sig)
{
	if (s->pid <= 0 || s->exited)
		return;
	/* the group may not exist yet if the child has not run setsid */
	kill(-s->pid, sig);
	kill(s->pid, sig);
}

/* Ends a session: releases what it holds; the struct goes at the sweep. The
 * child, if any, is reaped by the SIGCHLD loop whenever it exits. */
static void sess_end(struct sess *s)
{
	if (s->dead)
		return;
	s->dead = true;
	if (s->kind == SESS_EXEC && !s->exited)
		kill_exec(s, SIGKILL);
	close_fd(&s->status_fd);
	close_fd(&s->in_fd);
	close_fd(&s->out_fd[0]);
	close_fd(&s->out_fd[1]);
	close_fd(&s->fd);
	if (s->tmp)
		unlink(s->tmp);
	free(s->inq);
	free(s->tmp);
	free(s->path);
	s->inq = NULL;
	s->tmp = s->path = NULL;
}

/* ---- connections ---- */

static void conn_drop(struct conn *c, const char *why)
{
	if (c->dead)
		return;
	if (why)
		logmsg("connection closed: %s", why);
	c->dead = true;
	for (struct sess *s = c->sessions; s; s = s->next)
		sess_end(s);
}

/* A protocol error: say why, stop reading, close once it is sent. */
static void conn_fail(struct conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_fail(struct conn *c, int err, const char *fmt, ...)
{
	char msg[KILN_AGENT_MAX_MSG + 1];
	va_list ap;

	if (c->dead || c->closing)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logmsg("protocol error: %s", msg);
	send_error(c, 0, err, KILN_AGENT_ERR_PROTOCOL, "%s", msg);
	c->closing = true;
	c->close_by = now_ms() + CLOSE_GRACE_MS;
	for (struct sess *s = c->sessions; s; s = s->next)
		sess_end(s);
}

static void conn_flush(struct conn *c)
{
	while (!c->dead && out_pending(c)) {
		ssize_t n = send(c->fd, c->out.p + c->out.off, out_pending(c),
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_drop(c, strerror(errno));
			return;
		}
		c->out.off += (size_t)n;
	}
	if (c->out.off == c->out.len)
		c->out.off = c->out.len = 0;
}

static void conn_new(int fd)
{
	struct conn *c;

	if (ag.nconns >= MAX_CONNS) {
		struct conn tmp = {.fd = fd};

		/* best effort: tell it why, then hang up */
		send_error(&tmp, 0, EAGAIN, KILN_AGENT_ERR_REQUEST,
			   "too many connections (%d)", MAX_CONNS);
		conn_flush(&tmp);
		free(tmp.out.p);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->next = ag.conns;
	ag.conns = c;
	ag.nconns++;
}

/* ---- exec: child side ---- */

static void child_fail(int status_fd, enum stage stage)
{
	struct child_status st = {stage, errno};

	if (write(status_fd, &st, sizeof(st)) < 0)
		_exit(127);
	_exit(127);
}

/* Runs in the forked child: never returns. */
static void child_run(const struct kiln_agent_exec_req *req, int status_fd,
		      int fds[3], const char *pty_name)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	setsid();
	if (pty_name) {
		/* the first tty a session leader opens becomes its ctty */
		int t = open(pty_name, O_RDWR);

		if (t < 0 || ioctl(t, TIOCSCTTY, 0) < 0)
			child_fail(status_fd, ST_PTY);
		fds[1] = fds[2] = t;
		if (req->flags & KILN_AGENT_EXEC_STDIN)
			fds[0] = t;
	}
	/* every fd is >= 3 (main keeps 0-2 open), so no dup2 clobbers one */
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			child_fail(status_fd, ST_DUP);
	if (req->cwd && req->cwd[0] && chdir(req->cwd) < 0)
		child_fail(status_fd, ST_CHDIR);
	if (req->flags & KILN_AGENT_EXEC_GID) {
		if (setgroups(0, NULL) < 0 && errno != EPERM)
			child_fail(status_fd, ST_GROUPS);
		if (setgid(req->gid) < 0)
			child_fail(status_fd, ST_GID);
	}
	/* before setuid: only root may raise a hard limit */
	for (int i = 0; i < nulimits; i++)
		if (setrlimit(ulimits[i].resource, &ulimits[i].rl) < 0)
			child_fail(status_fd, ST_RLIMIT);
	if ((req->flags & KILN_AGENT_EXEC_UID) && setuid(req->uid) < 0)
		child_fail(status_fd, ST_UID);
	for (uint32_t i = 0; i < req->envc; i++)
		putenv((char *)req->env[i]);
	/* argv lives in the child's copy of the request buffer */
	execvp(req->argv[0], (char *const *)req->argv);
	child_fail(status_fd, ST_EXEC);
}

/* ---- exec: agent side ---- */

static int open_pty(const struct kiln_agent_exec_req *req, char *name,
		    size_t len)
{
	struct winsize ws = {.ws_row = req->rows ? req->rows : 24,
			     .ws_col = req->cols ? req->cols : 80};
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (m < 0)
		return -1;
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, len) != 0 ||
	    ioctl(m, TIOCSWINSZ, &ws) < 0) {
		int e = errno;

		close(m);
		errno = e;
		return -1;
	}
	return m;
}

static void exec_start(struct conn *c, uint32_t id,
		       const struct kiln_agent_exec_req *req)
{
	int st[2] = {-1, -1}, in[2] = {-1, -1}, out[2] = {-1, -1},
	    err[2] = {-1, -1};
	int fds[3], master = -1;
	char pty_name[64];
	const char *step = "pipe";
	struct sess *s;
	pid_t pid;

	s = sess_new(c, id, SESS_EXEC);
	if (!s) {
		send_error(c, id, ENOMEM, KILN_AGENT_ERR_INTERNAL,
			   "out of memory");
		return;
	}
	snprintf(s->what, sizeof(s->what), "%s", req->argv[0]);
	s->stdin_wanted = req->flags & KILN_AGENT_EXEC_STDIN;
	s->pty = req->flags & KILN_AGENT_EXEC_PTY;
	if (s->stdin_wanted) {
		s->inq = malloc(STDIN_WINDOW);
		if (!s->inq)
			goto fail;
	}
	if (pipe2(st, O_CLOEXEC) < 0)
		goto fail;
	/* without STDIN the child reads EOF from a pipe nobody writes */
	if ((!s->pty || !s->stdin_wanted) && pipe2(in, O_CLOEXEC) < 0)
		goto fail;
	if (s->pty) {
		step = "pty";
		master = open_pty(req, pty_name, sizeof(pty_name));
		if (master < 0) {
			send_error(c, id, errno, KILN_AGENT_ERR_SETUP,
				   "pty for %s: %s", s->what, strerror(errno));
			goto out;
		}
	} else if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		goto fail;
	}
	fds[0] = in[0];
	fds[1] = out[1];
	fds[2] = err[1];
	step = "fork";
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		child_run(req, st[1], fds, s->pty ? pty_name : NULL);

	s->pid = pid;
	s->status_fd = st[0];
	st[0] = -1;
	if (s->pty) {
		s->out_fd[0] = master;
		if (s->stdin_wanted)
			s->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
		master = -1;
	} else {
		s->out_fd[0] = out[0];
		s->out_fd[1] = err[0];
		out[0] = err[0] = -1;
	}
	if (s->stdin_wanted && !s->pty) {
		s->in_fd = in[1];
		in[1] = -1;
	}
	/* no way to the child's stdin: its data is dropped (and credited) */
	if (s->stdin_wanted && s->in_fd < 0)
		s->stdin_dead = true;
	for (int i = 0; i < 2; i++)
		if (s->out_fd[i] >= 0)
			set_nonblock(s->out_fd[i]);
	if (s->in_fd >= 0)
		set_nonblock(s->in_fd);
	set_nonblock(s->status_fd);
	if (req->timeout_ms)
		s->deadline = now_ms() + req->timeout_ms;
	goto out;
fail:
	send_error(c, id, errno, KILN_AGENT_ERR_INTERNAL, "%s for %s: %s", step,
		   s->what, strerror(errno));
out:
	close_fd(&st[0]);
	close_fd(&st[1]);
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&out[0]);
	close_fd(&out[1]);
	close_fd(&err[0]);
	close_fd(&err[1]);
	close_fd(&master);
	if (s->pid == 0)
		sess_end(s);
}

/* Credits back what left the window, in batches. */
static void exec_credit(struct sess *s, bool now)
{
	/* the host has no window before STARTED */
	if (s->started && s->unacked &&
	    (now || s->unacked >= STDIN_WINDOW / 4)) {
		send_u32(s->c, KILN_AGENT_STDIN_CREDIT, s->id, s->unacked);
		s->unacked = 0;
	}
}

/* Drops queued stdin: the child will never read it. */
static void exec_stdin_dead(struct sess *s)
{
	s->stdin_dead = true;
	close_fd(&s->in_fd);
	s->unacked += (uint32_t)s->inq_len;
	s->inq_len = s->inq_off = 0;
	exec_credit(s, true);
}

/* Writes queued stdin to the child as far as it takes it. */
static void exec_write_stdin(struct sess *s)
{
	while (s->inq_len && s->in_fd >= 0) {
		ssize_t n = write(s->in_fd, s->inq + s->inq_off, s->inq_len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				exec_stdin_dead(s);
			break;
		}
		s->inq_off += (size_t)n;
		s->inq_len -= (size_t)n;
		s->unacked += (uint32_t)n;
	}
	if (!s->inq_len)
		s->inq_off = 0;
	exec_credit(s, s->inq_len == 0);
	if (s->stdin_eof && !s->inq_len && s->in_fd >= 0 && s->started) {
		if (s->pty) {
			/* a terminal has no half-close: type its EOF char */
			struct termios t;
			char eof = 4;

			if (tcgetattr(s->in_fd, &t) == 0 && t.c_cc[VEOF])
				eof = (char)t.c_cc[VEOF];
			if (write(s->in_fd, &eof, 1) < 0)
				logmsg("exec %u: pty EOF: %s", s->id,
				       strerror(errno));
		}
		close_fd(&s->in_fd);
	}
}

static void exec_stdin(struct sess *s, const uint8_t *p, size_t len)
{
	if (s->stdin_dead || s->exited) {
		s->unacked += (uint32_t)len;
		exec_credit(s, true);
		return;
	}
	if (s->inq_off + s->inq_len + len > STDIN_WINDOW) {
		memmove(s->inq, s->inq + s->inq_off, s->inq_len);
		s->inq_off = 0;
	}
	memcpy(s->inq + s->inq_off + s->inq_len, p, len);
	s->inq_len += len;
	if (s->started)
		exec_write_stdin(s);
}

/* EXIT once the child is reaped and its output is all sent. */
static void exec_maybe_finish(struct sess *s)
{
	struct kiln_agent_exit m = {0};
	uint8_t p[12];

	if (s->dead || !s->started || !s->exited || s->out_fd[0] >= 0 ||
	    s->out_fd[1] >= 0)
		return;
	if (WIFEXITED(s->status)) {
		m.how = KILN_AGENT_EXITED;
		m.value = (uint32_t)WEXITSTATUS(s->status);
	} else {
		m.how = KILN_AGENT_SIGNALED;
		m.value = (uint32_t)WTERMSIG(s->status);
	}
	m.flags = s->timed_out ? KILN_AGENT_EXIT_TIMED_OUT : 0;
	exec_credit(s, true);
	if (kiln_agent_exit_encode(p, sizeof(p), &m) == 12)
		send_frame(s->c, KILN_AGENT_EXIT, s->id, p, 12);
	sess_end(s);
}

/* The status pipe: EOF means execve succeeded. */
static void exec_status(struct sess *s)
{
	struct kiln_agent_started m = {0};
	struct child_status st;
	uint8_t p[8];
	ssize_t n = read(s->status_fd, &st, sizeof(st));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	close_fd(&s->status_fd);
	if (n == (ssize_t)sizeof(st) && st.stage >= ST_EXEC &&
	    st.stage <= ST_RLIMIT) {
		send_error(s->c, s->id, st.err,
			   st.stage == ST_EXEC ? KILN_AGENT_ERR_EXEC
					       : KILN_AGENT_ERR_SETUP,
			   "%s %s: %s", stage_names[st.stage], s->what,
			   strerror(st.err));
		sess_end(s);
		return;
	}
	if (n != 0) {
		send_error(s->c, s->id, EIO, KILN_AGENT_ERR_INTERNAL,
			   "exec %s: bad status from the child", s->what);
		sess_end(s);
		return;
	}
	s->started = true;
	m.pid = (uint32_t)s->pid;
	m.stdin_credit = s->stdin_wanted ? STDIN_WINDOW : 0;
	kiln_agent_started_encode(p, sizeof(p), &m);
	send_frame(s->c, KILN_AGENT_STARTED, s->id, p, sizeof(p));
	exec_write_stdin(s);
	exec_maybe_finish(s);
}

/* Moves one chunk of the child's output into a frame. */
static void exec_read_output(struct sess *s, int i, int64_t now)
{
	struct conn *c = s->c;
	uint8_t *p;
	ssize_t n;

	if (s->dead || s->out_fd[i] < 0 || !has_room(c))
		return;
	p = frame_begin(c, KILN_AGENT_IO_CHUNK);
	if (!p) {
		conn_drop(c, "out of memory");
		return;
	}
	n = read(s->out_fd[i], p, KILN_AGENT_IO_CHUNK);
	if (n > 0) {
		frame_end(c, i == 0 ? KILN_AGENT_STDOUT : KILN_AGENT_STDERR,
			  s->id, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		if (!s->exited || now < s->exit_ms + DRAIN_MS)
			return;
	}
	/* EOF; EIO: a pty whose last slave fd closed; or drained */
	close_fd(&s->out_fd[i]);
	exec_maybe_finish(s);
}

static void exec_cancel(struct sess *s)
{
	kill_exec(s, SIGKILL);
}

/* ---- files ---- */

static void put_finish(struct sess *s);

static void put_start(struct conn *c, uint32_t id,
		      const struct kiln_agent_file_req *req)
{
	const char *slash = strrchr(req->path, '/');
	struct sess *s = sess_new(c, id, SESS_PUT);
	int n;

	if (!s) {
		send_error(c, id, ENOMEM, KILN_AGENT_ERR_INTERNAL,
			   "out of memory");
		return;
	}
	snprintf(s->what, sizeof(s->what), "%s", req->path);
	s->size = req->size;
	s->path = strdup(req->path);
	/* the copy is written next to its name and renamed when whole */
	n = (int)(slash - req->path);
	if (s->path &&
	    asprintf(&s->tmp, "%.*s/.kiln-put-XXXXXX", n, req->path) < 0)
		s->tmp = NULL;
	if (!s->path || !s->tmp) {
		send_error(c, id, ENOMEM, KILN_AGENT_ERR_INTERNAL,
			   "out of memory");
		sess_end(s);
		return;
	}
	s->fd = mkostemp(s->tmp, O_CLOEXEC);
	if (s->fd < 0) {
		send_error(c, id, errno, KILN_AGENT_ERR_FILE, "put %s: %s",
			   req->path, strerror(errno));
		free(s->tmp);
		s->tmp = NULL;
		sess_end(s);
		return;
	}
	if (fchmod(s->fd, req->mode) < 0)
		logmsg("put %s: chmod: %s", req->path, strerror(errno));
	if (s->size == 0)
		put_finish(s);
}

static void put_finish(struct sess *s)
{
	int err = close(s->fd);

	s->fd = -1;
	if (err == 0 && rename(s->tmp, s->path) == 0) {
		free(s->tmp);
		s->tmp = NULL;
		send_u64(s->c, KILN_AGENT_FILE_END, s->id, s->size);
	} else {
		send_error(s->c, s->id, errno, KILN_AGENT_ERR_FILE,
			   "put %s: %s", s->path, strerror(errno));
	}
	sess_end(s);
}

static void put_data(struct sess *s, const uint8_t *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(s->fd, p + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* the rest of its data arrives stale and is dropped */
			send_error(s->c, s->id, n < 0 ? errno : EIO,
				   KILN_AGENT_ERR_FILE, "put %s: %s", s->path,
				   strerror(n < 0 ? errno : EIO));
			sess_end(s);
			return;
		}
		off += (size_t)n;
	}
	s->done += len;
	if (s->done == s->size)
		put_finish(s);
}

static void get_start(struct conn *c, uint32_t id,
		      const struct kiln_agent_file_req *req)
{
	struct stat st;
	int fd = open(req->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct sess *s;

	if (fd < 0) {
		send_error(c, id, errno, KILN_AGENT_ERR_FILE, "get %s: %s",
			   req->path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0) {
		send_error(c, id, errno, KILN_AGENT_ERR_FILE, "get %s: %s",
			   req->path, strerror(errno));
		close(fd);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		send_error(c, id, S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
			   KILN_AGENT_ERR_FILE, "get %s: not a regular file",
			   req->path);
		close(fd);
		return;
	}
	if ((uint64_t)st.st_size > req->size) {
		send_error(c, id, EFBIG, KILN_AGENT_ERR_FILE,
			   "get %s: %lld bytes, more than the %llu allowed",
			   req->path, (long long)st.st_size,
			   (unsigned long long)req->size);
		close(fd);
		return;
	}
	s = sess_new(c, id, SESS_GET);
	if (!s) {
		send_error(c, id, ENOMEM, KILN_AGENT_ERR_INTERNAL,
			   "out of memory");
		close(fd);
		return;
	}
	snprintf(s->what, sizeof(s->what), "%s", req->path);
	s->fd = fd;
	s->size = req->size;
}

/* One chunk of a get, if the connection has room. */
static void get_step(struct sess *s)
{
	struct conn *c = s->c;
	size_t want = KILN_AGENT_IO_CHUNK;
	uint8_t *p;
	ssize_t n;

	if (s->dead || !has_room(c))
		return;
	p = frame_begin(c, want);
	if (!p) {
		conn_drop(c, "out of memory");
		return;
	}
	n = read(s->fd, p, want);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n < 0) {
		send_error(c, s->id, errno, KILN_AGENT_ERR_FILE, "get %s: %s",
			   s->what, strerror(errno));
	} else if ((uint64_t)n > s->size - s->done) {
		/* it grew while being read */
		send_error(c, s->id, EFBIG, KILN_AGENT_ERR_FILE,
			   "get %s: more than the %llu bytes allowed", s->what,
			   (unsigned long long)s->size);
	} else if (n > 0) {
		frame_end(c, KILN_AGENT_FILE_DATA, s->id, (size_t)n);
		s->done += (uint64_t)n;
		return;
	} else {
		send_u64(c, KILN_AGENT_FILE_END, s->id, s->done);
	}
	sess_end(s);
}

/* ---- requests ---- */

static void open_session(struct conn *c, const struct kiln_agent_hdr *h,
			 const uint8_t *p)
{
	static struct kiln_agent_exec_vec vec;
	struct kiln_agent_exec_req req;
	struct kiln_agent_file_req freq;

	if (h->session <= c->max_id) {
		conn_fail(c, EPROTO, "%s: session %u is not new",
			  kiln_agent_type_name(h->type), h->session);
		return;
	}
	c->max_id = h->session;
	if (h->type == KILN_AGENT_EXEC) {
		if (kiln_agent_exec_decode(p, h->length, &req, &vec) < 0) {
			conn_fail(c, EBADMSG, "malformed EXEC body");
			return;
		}
	} else if (kiln_agent_file_req_decode(p, h->length, &freq) < 0) {
		conn_fail(c, EBADMSG, "malformed %s body",
			  kiln_agent_type_name(h->type));
		return;
	}
	if (c->nsess >= KILN_AGENT_MAX_SESSIONS) {
		send_error(c, h->session, EAGAIN, KILN_AGENT_ERR_REQUEST,
			   "too many sessions (%u)", KILN_AGENT_MAX_SESSIONS);
		return;
	}
	if (h->type == KILN_AGENT_EXEC)
		exec_start(c, h->session, &req);
	else if (h->type == KILN_AGENT_FILE_PUT)
		put_start(c, h->session, &freq);
	else
		get_start(c, h->session, &freq);
}

static void session_frame(struct conn *c, const struct kiln_agent_hdr *h,
			  const uint8_t *p)
{
	struct sess *s = sess_find(c, h->session);
	struct kiln_agent_signal sig;
	struct kiln_agent_winsize ws;
	const char *name = kiln_agent_type_name(h->type);

	if (!s) {
		/* an ended session's late frames are expected; others not */
		if (h->session > c->max_id)
			conn_fail(c, EPROTO, "%s for session %u never opened",
				  name, h->session);
		return;
	}
	switch (h->type) {
	case KILN_AGENT_STDIN:
		if (s->kind != SESS_EXEC || !s->stdin_wanted || s->stdin_eof)
			break;
		/* the credit it was given: window minus what we still hold */
		if (h->length > STDIN_WINDOW - s->inq_len - s->unacked) {
			conn_fail(c, EPROTO, "session %u: STDIN beyond credit",
				  s->id);
			return;
		}
		exec_stdin(s, p, h->length);
		return;
	case KILN_AGENT_STDIN_EOF:
		if (s->kind != SESS_EXEC || !s->stdin_wanted || s->stdin_eof)
			break;
		s->stdin_eof = true;
		if (s->stdin_dead || s->exited)
			close_fd(&s->in_fd);
		else
			exec_write_stdin(s);
		return;
	case KILN_AGENT_SIGNAL:
		if (s->kind != SESS_EXEC)
			break;
		if (kiln_agent_signal_decode(p, h->length, &sig) < 0) {
			conn_fail(c, EBADMSG, "malformed SIGNAL");
			return;
		}
		if (!s->exited) {
			if (!(sig.flags & KILN_AGENT_SIGNAL_GROUP) ||
			    kill(-s->pid, (int)sig.signo) < 0)
				kill(s->pid, (int)sig.signo);
		}
		return;
	case KILN_AGENT_WINSIZE:
		if (s->kind != SESS_EXEC)
			break;
		kiln_agent_winsize_decode(p, h->length, &ws);
		if (s->pty && s->out_fd[0] >= 0) {
			struct winsize w = {.ws_row = ws.rows,
					    .ws_col = ws.cols};

			ioctl(s->out_fd[0], TIOCSWINSZ, &w);
		}
		return;
	case KILN_AGENT_PUT_DATA:
		if (s->kind != SESS_PUT)
			break;
		if (h->length > s->size - s->done) {
			conn_fail(c, EPROTO, "session %u: PUT_DATA past size",
				  s->id);
			return;
		}
		put_data(s, p, h->length);
		return;
	case KILN_AGENT_CANCEL:
		if (s->kind == SESS_EXEC) {
			exec_cancel(s);
		} else {
			send_error(c, s->id, ECANCELED, KILN_AGENT_ERR_FILE,
				   "%s %s: cancelled",
				   s->kind == SESS_PUT ? "put" : "get",
				   s->what);
			sess_end(s);
		}
		return;
	}
	conn_fail(c, EPROTO, "%s not allowed for session %u", name, s->id);
}

/* SHUTDOWN: end every process, then the guest (or, not PID 1, the agent). */
static void shutdown_guest(void)
{
	logmsg("shutting down");
	if (!ag.pid1) {
		/* tests: the agent is an ordinary process; only its execs go */
		for (struct conn *c = ag.conns; c; c = c->next)
			for (struct sess *s = c->sessions; s; s = s->next)
				if (s->kind == SESS_EXEC)
					kill_exec(s, SIGKILL);
		exit(0);
	}
	/* PID 1: every other process, the execs' groups included */
	kill(-1, SIGTERM);
	/* give them a moment to exit, reaping as they do */
	for (int i = 0; i < SHUTDOWN_GRACE_MS / 10; i++) {
		pid_t p;

		while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (p < 0 && errno == ECHILD)
			break;
		usleep(10000);
	}
	kill(-1, SIGKILL);
	sync();
	reboot(RB_AUTOBOOT);
	/* reboot failed: power off, or at worst stay (PID 1 must not exit) */
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* RESTORED: this VM is a clone of a snapshot. Its clock is the snapshot's
 * and its CRNG state its siblings': set the one, feed and reseed the other,
 * take the new hostname. Not PID 1 (tests), nothing of the host changes. */
static void restored(struct conn *c, const uint8_t *p, uint32_t len)
{
	struct kiln_agent_restored m;
	struct kiln_agent_restored_done done = {0};
	uint8_t out[12];

	if (kiln_agent_restored_decode(p, len, &m) < 0) {
		conn_fail(c, EBADMSG, "malformed RESTORED");
		return;
	}
	if (ag.pid1) {
		struct timespec ts = {(time_t)(m.wall_ns / 1000000000ull),
				      (long)(m.wall_ns % 1000000000ull)};
		struct {
			int entropy_count;
			int buf_size;
			uint8_t buf[KILN_AGENT_ENTROPY];
		} e = {KILN_AGENT_ENTROPY * 8, KILN_AGENT_ENTROPY, {0}};
		int fd;

		if (clock_settime(CLOCK_REALTIME, &ts) < 0)
			done.clock_err = (uint32_t)errno;
		memcpy(e.buf, m.entropy, sizeof(e.buf));
		fd = open("/dev/random", O_WRONLY | O_CLOEXEC);
		if (fd < 0 || ioctl(fd, RNDADDENTROPY, &e) < 0)
			done.entropy_err = (uint32_t)errno;
		/* the CRNG now mixes the new entropy in (6.1: reseeded at
		 * once by the ioctl below) */
		if (fd >= 0 && done.entropy_err == 0 &&
		    ioctl(fd, RNDRESEEDCRNG) < 0)
			done.entropy_err = (uint32_t)errno;
		if (fd >= 0)
			close(fd);
		if (m.hostname[0] &&
		    sethostname(m.hostname, strlen(m.hostname)) < 0)
			done.hostname_err = (uint32_t)errno;
		explicit_bzero(&e, sizeof(e));
	}
	explicit_bzero(m.entropy, sizeof(m.entropy));
	logmsg("restored as %s%s%s", m.id, m.hostname[0] ? ", hostname " : "",
	       m.hostname);
	kiln_agent_restored_done_encode(out, sizeof(out), &done);
	send_frame(c, KILN_AGENT_RESTORED_DONE, 0, out, sizeof(out));
}

static void handle_frame(struct conn *c, const struct kiln_agent_hdr *h,
			 const uint8_t *p)
{
	struct kiln_agent_hello hello;

	if (!c->hello) {
		if (h->type != KILN_AGENT_HELLO) {
			conn_fail(c, EPROTO, "expected HELLO, got %s",
				  kiln_agent_type_name(h->type));
			return;
		}
		if (kiln_agent_hello_decode(p, h->length, &hello) < 0) {
			conn_fail(c, EBADMSG, "malformed HELLO");
			return;
		}
		if (hello.version != KILN_AGENT_VERSION) {
			conn_fail(c, EPROTONOSUPPORT,
				  "version %u is not supported (only %u)",
				  hello.version, KILN_AGENT_VERSION);
			return;
		}
		c->hello = true;
		send_ready(c);
		return;
	}
	switch (h->type) {
	case KILN_AGENT_HELLO: conn_fail(c, EPROTO, "a second HELLO"); return;
	case KILN_AGENT_SHUTDOWN:
		if (p[0] | p[1] | p[2] | p[3]) {
			conn_fail(c, EINVAL, "SHUTDOWN with unknown flags");
			return;
		}
		shutdown_guest();
		return;
	case KILN_AGENT_RESTORED: restored(c, p, h->length); return;
	case KILN_AGENT_EXEC:
	case KILN_AGENT_FILE_PUT:
	case KILN_AGENT_FILE_GET: open_session(c, h, p); return;
	default: session_frame(c, h, p);
	}
}

static const char *frame_error(int err)
{
	switch (err) {
	case -EBADMSG: return "bad magic or payload size";
	case -EPROTONOSUPPORT: return "unsupported version";
	case -EMSGSIZE: return "frame too large";
	}
	return "unknown type, wrong direction or session";
}

/* Handles buffered frames while there is room for their answers. */
static void conn_process(struct conn *c)
{
	struct kiln_agent_hdr h = {0};
	const uint8_t *p;
	int n = 0;

	while (has_room(c)) {
		n = kiln_agent_frame_next(c->in.p + c->in.off,
					  c->in.len - c->in.off, 0, &h, &p);
		if (n < 0) {
			conn_fail(c, -n, "malformed frame: %s", frame_error(n));
			return;
		}
		if (n == 0)
			break;
		handle_frame(c, &h, p);
		c->in.off += (size_t)n;
	}
	if (c->in.off == c->in.len)
		c->in.off = c->in.len = 0;
	/* frame_next checked this header: make room for the whole frame */
	if (n == 0 && c->in.len - c->in.off >= KILN_AGENT_HDR_SIZE &&
	    !buf_reserve(&c->in, KILN_AGENT_HDR_SIZE + h.length -
					 (c->in.len - c->in.off)))
		conn_drop(c, "out of memory");
}

static void conn_read(struct conn *c)
{
	ssize_t n;

	if (!buf_reserve(&c->in, 4096)) {
		conn_drop(c, "out of memory");
		return;
	}
	n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
	if (n < 0) {
		if (errno != EINTR && errno != EAGAIN)
			conn_drop(c, strerror(errno));
		return;
	}
	if (n == 0) {
		conn_drop(c, NULL);
		return;
	}
	c->in.len += (size_t)n;
	conn_process(c);
}

/* ---- children ---- */

static struct sess *exec_by_pid(pid_t pid)
{
	for (struct conn *c = ag.conns; c; c = c->next)
		for (struct sess *s = c->sessions; s; s = s->next)
			if (s->kind == SESS_EXEC && !s->dead && s->pid == pid)
				return s;
	return NULL;
}

static void reap(void)
{
	struct signalfd_siginfo si;
	int status;
	pid_t pid;

	while (read(ag.sig_fd, &si, sizeof(si)) > 0)
		;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct sess *s = exec_by_pid(pid);

		/* no session: an orphan (PID 1) or an exec that failed */
		if (!s)
			continue;
		s->exited = true;
		s->status = status;
		s->exit_ms = now_ms();
		if (s->stdin_wanted && !s->stdin_dead)
			exec_stdin_dead(s);
		exec_maybe_finish(s);
	}
}

/* ---- the loop ---- */

static void add_pfd(int fd, short events, enum ref_kind kind, struct conn *c,
		    struct sess *s, int idx)
{
	if (ag.npfd == ag.cap_pfd) {
		size_t cap = ag.cap_pfd ? ag.cap_pfd * 2 : 64;
		struct pollfd *p = realloc(ag.pfd, cap * sizeof(*p));
		struct ref *r;

		if (!p)
			return;
		ag.pfd = p;
		r = realloc(ag.refs, cap * sizeof(*r));
		if (!r)
			return;
		ag.refs = r;
		ag.cap_pfd = cap;
	}
	ag.pfd[ag.npfd] = (struct pollfd){.fd = fd, .events = events};
	ag.refs[ag.npfd] = (struct ref){kind, c, s, idx};
	ag.npfd++;
}

static int64_t min_deadline(int64_t a, int64_t b)
{
	return a == 0 || (b != 0 && b < a) ? b : a;
}

/* Timers, and work that needs no poll event; returns the next deadline
 * (0: none, -1: more work now). */
static int64_t tick(int64_t now)
{
	int64_t next = 0;
	bool busy = false;

	for (struct conn *c = ag.conns; c; c = c->next) {
		if (c->dead)
			continue;
		if (c->closing) {
			if (!out_pending(c) || now >= c->close_by)
				conn_drop(c, NULL);
			else
				next = min_deadline(next, c->close_by);
			continue;
		}
		if (has_room(c) && c->in.len - c->in.off >= KILN_AGENT_HDR_SIZE)
			conn_process(c);
		for (struct sess *s = c->sessions; s; s = s->next) {
			if (s->dead)
				continue;
			if (s->kind == SESS_GET) {
				get_step(s);
				busy |= !s->dead && has_room(c);
				continue;
			}
			if (s->kind != SESS_EXEC)
				continue;
			if (s->deadline && !s->exited) {
				if (now >= s->deadline) {
					s->timed_out = true;
					s->deadline = 0;
					kill_exec(s, SIGKILL);
				} else {
					next = min_deadline(next, s->deadline);
				}
			}
			if (s->exited && s->started) {
				if (now >= s->exit_ms + DRAIN_MS) {
					exec_read_output(s, 0, now);
					exec_read_output(s, 1, now);
				} else {
					next = min_deadline(
						next, s->exit_ms + DRAIN_MS);
				}
			}
		}
	}
	return busy ? -1 : next;
}

/* Frees what ended during the round. */
static void sweep(void)
{
	for (struct conn **cp = &ag.conns; *cp;) {
		struct conn *c = *cp;

		for (struct sess **sp = &c->sessions; *sp;) {
			struct sess *s = *sp;

			if (s->dead || c->dead) {
				sess_end(s);
				*sp = s->next;
				c->nsess--;
				free(s);
			} else {
				sp = &s->next;
			}
		}
		if (c->dead) {
			*cp = c->next;
			close(c->fd);
			free(c->in.p);
			free(c->out.p);
			free(c);
			ag.nconns--;
		} else {
			cp = &c->next;
		}
	}
}

static void build_pollset(void)
{
	ag.npfd = 0;
	add_pfd(ag.listen_fd, POLLIN, REF_LISTEN, NULL, NULL, 0);
	add_pfd(ag.sig_fd, POLLIN, REF_SIGNAL, NULL, NULL, 0);
	for (struct conn *c = ag.conns; c; c = c->next) {
		short ev = out_pending(c) ? POLLOUT : 0;

		if (has_room(c))
			ev |= POLLIN;
		add_pfd(c->fd, ev, REF_CONN, c, NULL, 0);
		if (c->closing)
			continue;
		for (struct sess *s = c->sessions; s; s = s->next) {
			if (s->kind != SESS_EXEC)
				continue;
			if (s->status_fd >= 0)
				add_pfd(s->status_fd, POLLIN, REF_STATUS, c, s,
					0);
			for (int i = 0; i < 2; i++)
				if (s->started && s->out_fd[i] >= 0 &&
				    has_room(c))
					add_pfd(s->out_fd[i], POLLIN, REF_OUT,
						c, s, i);
			if (s->started && s->in_fd >= 0 && s->inq_len)
				add_pfd(s->in_fd, POLLOUT, REF_IN, c, s, 0);
		}
	}
}

static void conn_event(struct conn *c, short rev)
{
	if (rev & POLLOUT)
		conn_flush(c);
	if (c->dead)
		return;
	if (c->closing) {
		/* nothing more is read; a peer that hung up cannot take it */
		if (rev & (POLLHUP | POLLERR))
			conn_drop(c, NULL);
		return;
	}
	if (rev & (POLLIN | POLLHUP | POLLERR))
		conn_read(c);
}

static void accept_conns(void)
{
	for (;;) {
		int fd = accept4(ag.listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				logmsg("accept: %s", strerror(errno));
			return;
		}
		conn_new(fd);
	}
}

static void serve(void)
{
	for (;;) {
		int64_t now = now_ms();
		int64_t next = tick(now);
		int timeout = -1;

		sweep();
		build_pollset();
		if (next < 0)
			timeout = 0;
		else if (next > 0)
			timeout = next > now ? (int)(next - now) : 0;
		if (poll(ag.pfd, ag.npfd, timeout) < 0) {
			if (errno != EINTR)
				logmsg("poll: %s", strerror(errno));
			continue;
		}
		now = now_ms();
		for (size_t i = 0; i < ag.npfd; i++) {
			struct ref *r = &ag.refs[i];
			short rev = ag.pfd[i].revents;

			if (!rev || (r->c && r->c->dead) ||
			    (r->s && r->s->dead))
				continue;
			switch (r->kind) {
			case REF_LISTEN: accept_conns(); break;
			case REF_SIGNAL: reap(); break;
			case REF_CONN: conn_event(r->c, rev); break;
			case REF_STATUS: exec_status(r->s); break;
			case REF_OUT:
				exec_read_output(r->s, r->idx, now);
				break;
			case REF_IN: exec_write_stdin(r->s); break;
			}
		}
		/* send what the round produced without waiting a round */
		for (struct conn *c = ag.conns; c; c = c->next)
			if (!c->dead && out_pending(c))
				conn_flush(c);
	}
}

/* ---- start-up ---- */

static bool is_mountpoint(const char *dir)
{
	struct stat a, b;
	char parent[PATH_MAX];

	snprintf(parent, sizeof(parent), "%s/..", dir);
	return stat(dir, &a) == 0 && stat(parent, &b) == 0 &&
	       a.st_dev != b.st_dev;
}

static void mount_fs(const char *src, const char *dir, const char *type,
		     unsigned long flags, const char *opts)
{
	mkdir(dir, 0755);
	/* an init script may have mounted it already */
	if (is_mountpoint(dir))
		return;
	if (mount(src, dir, type, flags, opts) < 0)
		logmsg("mount %s on %s: %s", type, dir, strerror(errno));
}

static void init_system(void)
{
	struct rlimit nofile = {NOFILE_LIMIT, NOFILE_LIMIT};
	struct ifreq ifr = {0};
	int s;

	mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		 NULL);
	mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		 NULL);
	mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		 "mode=0620,ptmxmode=0666");
	mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_fs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	if (sethostname("kiln", 4) < 0)
		logmsg("sethostname: %s", strerror(errno));
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		logmsg("lo: %s", strerror(errno));
	} else {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			logmsg("bringing lo up: %s", strerror(errno));
	}
	if (s >= 0)
		close(s);
	if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
		logmsg("RLIMIT_NOFILE: %s", strerror(errno));
	setenv("PATH",
	       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	       0);
	setenv("HOME", "/root", 0);
	if (chdir("/") < 0)
		logmsg("chdir /: %s", strerror(errno));
}

/* Makes sure fds 0-2 exist, so that no pipe or socket lands there. */
static void ensure_stdio(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int n = open("/dev/console", O_RDWR | O_NOCTTY);

		if (n < 0)
			n = open("/dev/null", O_RDWR);
		if (n >= 0 && n != fd) {
			dup2(n, fd);
			close(n);
		}
	}
}

/* mkdir -p for an absolute path (components made 0755). */
static void make_dirs(const char *path)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(tmp, 0755);
		*p = '/';
	}
	mkdir(tmp, 0755);
}

/* kiln.mount=TAG:PATH[:ro]: mounts virtio-fs TAG at PATH (a share). */
static void mount_share(const char *spec)
{
	char buf[512], *tag = buf, *path, *mode;
	unsigned long flags = MS_NOSUID | MS_NODEV;

	if (strlen(spec) >= sizeof(buf)) {
		logmsg("kiln.mount=%.32s...: too long", spec);
		return;
	}
	strcpy(buf, spec);
	path = strchr(buf, ':');
	if (!path || path == buf || path[1] != '/') {
		logmsg("kiln.mount=%s: expected TAG:/PATH[:ro]", spec);
		return;
	}
	*path++ = '\0';
	mode = strchr(path, ':');
	if (mode) {
		*mode++ = '\0';
		if (!strcmp(mode, "ro"))
			flags |= MS_RDONLY;
		else if (strcmp(mode, "rw")) {
			logmsg("kiln.mount=%s: mode is ro or rw", spec);
			return;
		}
	}
	make_dirs(path);
	if (mount(tag, path, "virtiofs", flags, NULL) < 0)
		logmsg("mounting share %s on %s: %s", tag, path,
		       strerror(errno));
}

static bool set_addr(int s, const char *ifname, unsigned long req,
		     struct in_addr a)
{
	struct ifreq ifr = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	sin->sin_family = AF_INET;
	sin->sin_addr = a;
	return ioctl(s, req, &ifr) == 0;
}

/* The interface whose MAC is mac ("xx:xx:..."), into name; false if none. */
static bool ifname_of(int s, const char *mac, char name[IFNAMSIZ])
{
	struct if_nameindex *all = if_nameindex(), *i;
	unsigned v[6];
	bool found = false;

	if (!all || sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5]) != 6) {
		if (all)
			if_freenameindex(all);
		return false;
	}
	for (i = all; i->if_index && !found; i++) {
		struct ifreq ifr = {0};
		const unsigned char *hw;

		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", i->if_name);
		if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
			continue;
		hw = (const unsigned char *)ifr.ifr_hwaddr.sa_data;
		found = true;
		for (int k = 0; k < 6; k++)
			found = found && hw[k] == v[k];
		if (found)
			snprintf(name, IFNAMSIZ, "%s", i->if_name);
	}
	if_freenameindex(all);
	return found;
}

/* Nameservers for /etc/resolv.conf: cluster networks' switches first (they
 * answer their members' names and refuse others), then the NAT's. */
#define MAX_NAMESERVERS 6
static char nameservers[MAX_NAMESERVERS][16];
static unsigned nr_nameservers, nr_cluster_nameservers;

static void add_nameserver(const char *dns, bool cluster)
{
	unsigned at = cluster ? nr_cluster_nameservers : nr_nameservers;

	/* resolvers read three: two cluster switches at most, so the NAT's
	 * (for every other name) is always among them */
	if (nr_nameservers == MAX_NAMESERVERS ||
	    (cluster && nr_cluster_nameservers == 2))
		return;
	memmove(nameservers[at + 1], nameservers[at],
		(nr_nameservers - at) * sizeof(nameservers[0]));
	snprintf(nameservers[at], sizeof(nameservers[at]), "%s", dns);
	nr_nameservers++;
	if (cluster)
		nr_cluster_nameservers++;
}

static void write_resolv_conf(void)
{
	int fd;

	if (!nr_nameservers)
		return;
	mkdir("/etc", 0755);
	fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		  0644);
	for (unsigned i = 0; fd >= 0 && i < nr_nameservers; i++)
		if (dprintf(fd, "nameserver %s\n", nameservers[i]) < 0)
			break;
	if (fd < 0)
		logmsg("net: /etc/resolv.conf: %s", strerror(errno));
	else
		close(fd);
}

/* kiln.nic=MAC,ADDR/N,GW,DNS: the card with that MAC gets ADDR/N and is
 * up; GW ("-": none, a cluster network's card) becomes the default route;
 * DNS goes into /etc/resolv.conf. Static: no DHCP wait. */
static void configure_nic(const char *spec)
{
	char mac[18], addr[16], gw[16], dns[16], ifname[IFNAMSIZ];
	struct in_addr a, g, d, mask;
	struct rtentry rt = {0};
	struct ifreq ifr = {0};
	bool has_gw;
	unsigned prefix;
	int s;

	if (sscanf(spec, "%17[0-9a-f:],%15[0-9.]/%u,%15[0-9.-],%15[0-9.]", mac,
		   addr, &prefix, gw, dns) != 5 ||
	    prefix < 1 || prefix > 30 || inet_pton(AF_INET, addr, &a) != 1 ||
	    inet_pton(AF_INET, dns, &d) != 1) {
		logmsg("kiln.nic=%.64s: expected MAC,ADDR/N,GW|-,DNS", spec);
		return;
	}
	has_gw = strcmp(gw, "-") != 0;
	if (has_gw && inet_pton(AF_INET, gw, &g) != 1) {
		logmsg("kiln.nic=%.64s: bad gateway", spec);
		return;
	}
	mask.s_addr = htonl(~0u << (32 - prefix));
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		logmsg("net: socket: %s", strerror(errno));
		return;
	}
	if (!ifname_of(s, mac, ifname)) {
		logmsg("net: no interface has MAC %s", mac);
		close(s);
		return;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (!set_addr(s, ifname, SIOCSIFADDR, a) ||
	    !set_addr(s, ifname, SIOCSIFNETMASK, mask) ||
	    ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		logmsg("net: %s: %s", ifname, strerror(errno));
		close(s);
		return;
	}
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		logmsg("net: bringing %s up: %s", ifname, strerror(errno));
	if (has_gw) {
		((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
		((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
		((struct sockaddr_in *)&rt.rt_gateway)->sin_family = AF_INET;
		((struct sockaddr_in *)&rt.rt_gateway)->sin_addr = g;
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		rt.rt_dev = ifname;
		if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST)
			logmsg("net: default route via %s: %s", gw,
			       strerror(errno));
	}
	close(s);
	if (!has_gw) {
		/* a cluster network's card: other members are no routers */
		char path[96];
		int fd;

		snprintf(path, sizeof(path),
			 "/proc/sys/net/ipv6/conf/%s/accept_ra", ifname);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			(void)!write(fd, "0\n", 2);
			close(fd);
		}
	}
	add_nameserver(dns, !has_gw);
}

/* kiln.hostname=NAME (checked by the host; checked again: a hostile
 * command line is not ours to trust either). */
static void set_hostname(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyz"
			 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789-_.") != n) {
		logmsg("kiln.hostname=%.64s: not a host name", name);
		return;
	}
	if (sethostname(name, n) < 0)
		logmsg("sethostname: %s", strerror(errno));
}

static bool parse_limit(const char *s, char **end, rlim_t *out)
{
	if (!strncmp(s, "unlimited", 9)) {
		*out = RLIM_INFINITY;
		*end = (char *)s + 9;
		return true;
	}
	errno = 0;
	*out = (rlim_t)strtoull(s, end, 10);
	return *end != s && !errno;
}

/* kiln.ulimit=NAME=SOFT:HARD[,...] (the host checked names and values). */
static void parse_ulimits(const char *spec)
{
	static const struct {
		const char *name;
		int resource;
	} names[] = {
		{"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC},
		{"fsize", RLIMIT_FSIZE},   {"stack", RLIMIT_STACK},
		{"core", RLIMIT_CORE},	   {"memlock", RLIMIT_MEMLOCK},
		{"as", RLIMIT_AS},
	};

	while (*spec && nulimits < MAX_ULIMITS) {
		const char *eq = strchr(spec, '=');
		char *end;
		rlim_t soft, hard;
		int res = -1;

		if (!eq)
			break;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i].name) == (size_t)(eq - spec) &&
			    !strncmp(spec, names[i].name, (size_t)(eq - spec)))
				res = names[i].resource;
		if (res < 0 || !parse_limit(eq + 1, &end, &soft) ||
		    *end != ':' || !parse_limit(end + 1, &end, &hard) ||
		    (*end && *end != ',')) {
			logmsg("kiln.ulimit: cannot read '%.40s'", spec);
			return;
		}
		ulimits[nulimits].resource = res;
		ulimits[nulimits].rl.rlim_cur = soft;
		ulimits[nulimits].rl.rlim_max = hard;
		nulimits++;
		spec = *end ? end + 1 : end;
	}
}

/* kiln.agent.port=N, kiln.agent.ready_port=N and kiln.mount=... from the
 * kernel command line (the kernel keeps dotted parameters from init's argv).
 * Mounts happen here, before the agent says it is ready. */
static void from_cmdline(unsigned *port, unsigned *ready_port)
{
	char buf[4096], *tok, *save = NULL;
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (tok = strtok_r(buf, " \n", &save); tok;
	     tok = strtok_r(NULL, " \n", &save)) {
		if (!strncmp(tok, "kiln.agent.port=", 16))
			*port = (unsigned)strtoul(tok + 16, NULL, 10);
		else if (!strncmp(tok, "kiln.agent.ready_port=", 22))
			*ready_port = (unsigned)strtoul(tok + 22, NULL, 10);
		else if (!strncmp(tok, "kiln.mount=", 11))
			mount_share(tok + 11);
		else if (!strncmp(tok, "kiln.nic=", 9))
			configure_nic(tok + 9);
		else if (!strncmp(tok, "kiln.hostname=", 14))
			set_hostname(tok + 14);
		else if (!strncmp(tok, "kiln.ulimit=", 12))
			parse_ulimits(tok + 12);
	}
	write_resolv_conf();
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* a stale socket from an earlier run, but never any other file */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int listen_vsock(unsigned port)
{
	struct sockaddr_vm sa = {.svm_family = AF_VSOCK,
				 .svm_cid = VMADDR_CID_ANY,
				 .svm_port = port};
	int fd =
		socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Tells the host we listen: one READY frame on a fresh connection. */
static void announce(const char *unix_path, unsigned cid, unsigned port)
{
	struct conn tmp = {.fd = -1};
	int err = 0;

	send_ready(&tmp);
	for (int i = 0; i < READY_TRIES; i++) {
		struct sockaddr_un su = {.sun_family = AF_UNIX};
		struct sockaddr_vm sv = {.svm_family = AF_VSOCK,
					 .svm_cid = cid,
					 .svm_port = port};
		struct sockaddr *sa = (struct sockaddr *)&sv;
		socklen_t len = sizeof(sv);
		int fd;

		if (unix_path) {
			snprintf(su.sun_path, sizeof(su.sun_path), "%s",
				 unix_path);
			sa = (struct sockaddr *)&su;
			len = sizeof(su);
		}
		fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, sa, len) == 0) {
			ssize_t n =
				send(fd, tmp.out.p, tmp.out.len, MSG_NOSIGNAL);

			err = n == (ssize_t)tmp.out.len ? 0 : errno;
			close(fd);
			if (!err)
				break;
		} else {
			err = errno;
			if (fd >= 0)
				close(fd);
		}
		/* the host may not listen yet: retry briefly */
		usleep(READY_RETRY_MS * 1000);
	}
	if (err)
		logmsg("announcing readiness failed: %s; serving anyway",
		       strerror(err));
	free(tmp.out.p);
}

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fatal(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logmsg("fatal: %s", msg);
	if (!ag.pid1)
		exit(1);
	/* PID 1 must not exit (the kernel would panic): end the VM */
	sync();
	reboot(RB_POWER_OFF);
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

static void usage(void)
{
	fprintf(stderr,
		"usage: kiln-agent [--port N] [--ready-port N] "
		"[--ready-cid N]\n"
		"       kiln-agent --unix PATH [--ready-unix PATH] [--init]\n");
}

static bool parse_uint(const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > UINT_MAX)
		return false;
	*out = (unsigned)v;
	return true;
}

int main(int argc, char **argv)
{
	const char *unix_path = NULL, *ready_unix = NULL;
	unsigned port = KILN_AGENT_PORT, ready_port = KILN_AGENT_READY_PORT;
	unsigned ready_cid = VMADDR_CID_HOST;
	bool port_set = false, ready_set = false, force_init = false;
	sigset_t chld;

	ag.pid1 = getpid() == 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = v != NULL;

		if (!strcmp(a, "--help")) {
			usage();
			return 0;
		}
		if (!strcmp(a, "--init")) {
			force_init = true;
			continue;
		}
		if (!v) {
			ok = false;
		} else if (!strcmp(a, "--unix")) {
			unix_path = v;
		} else if (!strcmp(a, "--ready-unix")) {
			ready_unix = v;
		} else if (!strcmp(a, "--port")) {
			ok = parse_uint(v, &port);
			port_set = true;
		} else if (!strcmp(a, "--ready-port")) {
			ok = parse_uint(v, &ready_port);
			ready_set = true;
		} else if (!strcmp(a, "--ready-cid")) {
			ok = parse_uint(v, &ready_cid);
		} else {
			ok = false;
		}
		if (!ok) {
			/* PID 1 gets stray kernel arguments: ignore them */
			if (ag.pid1)
				continue;
			usage();
			return 2;
		}
		i++;
	}

	ensure_stdio();
	if (ag.pid1 && (!unix_path || force_init)) {
		unsigned p = port, r = ready_port;

		init_system();
		from_cmdline(&p, &r);
		if (!port_set)
			port = p;
		if (!ready_set)
			ready_port = r;
	}
	umask(022);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	ag.sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (ag.sig_fd < 0)
		fatal("signalfd: %s", strerror(errno));
	ag.listen_fd = unix_path ? listen_unix(unix_path) : listen_vsock(port);
	if (ag.listen_fd < 0) {
		if (unix_path)
			fatal("listening on %s: %s", unix_path,
			      strerror(errno));
		fatal("listening on vsock port %u: %s", port, strerror(errno));
	}
	if (unix_path) {
		if (ready_unix)
			announce(ready_unix, 0, 0);
	} else {
		announce(NULL, ready_cid, ready_port);
	}
	if (unix_path)
		logmsg("%s serving on %s", AGENT_NAME, unix_path);
	else
		logmsg("%s serving on vsock port %u", AGENT_NAME, port);
	serve();
	return 0;
}
