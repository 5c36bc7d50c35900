/* SPDX-License-Identifier: MIT */
/*
 * Guest agent client: frames go out through a byte queue, come in through a
 * receive buffer, and one poll round (pump) moves both; every blocking call
 * pumps until its condition holds or its deadline passes. Sessions are a
 * short list, ids only grow. The agent is on the guest's side of the trust
 * boundary: each frame is checked against the session's state before it is
 * used.
 */
#include "agent/client.h"
#include "util/clock.h"
#include "util/fdio.h"
#include "util/unix_socket.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define IN_CAP_MIN (256u * 1024u)
/* Data frames (stdin, put) are only queued below this many unsent bytes. */
#define OUT_HIGH (256u * 1024u)
/* Forwarded stdin fds polled per round; more wait for the next round. */
#define MAX_POLL_STDIN 64

enum sess_kind { SESS_EXEC, SESS_PUT, SESS_GET };
enum sess_state { SESS_OPENING, SESS_RUNNING, SESS_DONE };

/* An exec or, inside the file calls, a put or get. */
struct kiln_agent_exec {
	struct kiln_agent *a;
	struct kiln_agent_exec *next;
	uint32_t id;
	enum sess_kind kind;
	enum sess_state state;
	bool detached; /* its owner let go: freed when it ends */
	bool stdin_wanted;
	bool stdin_open; /* STDIN and STDIN_EOF may still be sent */
	uint32_t pid;
	uint32_t window; /* stdin credit granted by STARTED */
	uint32_t credit; /* stdin bytes we may send now */
	int stdin_fd;
	kiln_output_fn on_output;
	void *opaque;
	int out_fd[2];
	/* output the caller's fd did not take before a wait's deadline: it
	 * goes first on the next wait, and no frame is read until then */
	uint8_t *pend;
	size_t pend_len, pend_off;
	int pend_stream;
	struct kiln_exec_result res;
	int file_fd;
	uint64_t size; /* put: bytes to send; get: the most we take */
	uint64_t done; /* put: bytes queued; get: bytes received */
	int err;       /* put/get outcome, -errno */
};

struct kiln_agent {
	int fd;
	struct kiln_log log;
	int err; /* sticky: once set, the connection is dead */
	bool ready;
	struct kiln_agent_ready peer;
	uint32_t last_id;
	struct kiln_agent_exec *sessions;
	/* the running wait's deadline (-1: none), for writes to output fds */
	int64_t io_deadline;
	unsigned n_pending; /* sessions with pending output */
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	/* RESTORED: the answer, once it came */
	bool restored_done;
	struct kiln_agent_restored_done restored;
};

static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static bool expired(int64_t deadline)
{
	return deadline >= 0 && now_ms() >= deadline;
}

static int poll_timeout(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	if (left < 0)
		return 0;
	return left > 60000 ? 60000 : (int)left;
}

/* Waits until fd has events (POLLIN/POLLOUT) or deadline (-1: none)
 * passes: 1 ready, 0 deadline passed, -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	for (;;) {
		int r = poll(&pfd, 1, poll_timeout(deadline));

		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0 && expired(deadline))
			return 0;
	}
}

/* Marks the connection dead (first error wins), logs why, returns err. */
static int conn_fail(struct kiln_agent *a, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int conn_fail(struct kiln_agent *a, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (a->err)
		return a->err;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error(&a->log, "agent connection: %s", msg);
	a->err = err;
	/* the agent sees EOF and kills what this connection ran */
	shutdown(a->fd, SHUT_RDWR);
	return err;
}

#define proto_fail(a, ...) conn_fail((a), -EPROTO, __VA_ARGS__)

/* ---- output queue ---- */

static size_t out_pending(const struct kiln_agent *a)
{
	return a->out_len - a->out_off;
}

/* Room for one frame of up to max_payload bytes; returns where its payload
 * goes, or NULL on ENOMEM. */
static uint8_t *out_reserve(struct kiln_agent *a, size_t max_payload)
{
	size_t need = KILN_AGENT_HDR_SIZE + max_payload;

	if (a->out_off == a->out_len)
		a->out_off = a->out_len = 0;
	if (a->out_cap - a->out_len < need && a->out_off) {
		memmove(a->out, a->out + a->out_off, a->out_len - a->out_off);
		a->out_len -= a->out_off;
		a->out_off = 0;
	}
	if (a->out_cap - a->out_len < need) {
		size_t cap = a->out_cap ? a->out_cap : 64 * 1024;
		uint8_t *p;

		while (cap - a->out_len < need)
			cap *= 2;
		p = realloc(a->out, cap);
		if (!p)
			return NULL;
		a->out = p;
		a->out_cap = cap;
	}
	return a->out + a->out_len + KILN_AGENT_HDR_SIZE;
}

static void out_commit(struct kiln_agent *a, uint16_t type, uint32_t session,
		       size_t len)
{
	kiln_agent_hdr_encode(a->out + a->out_len, type, session,
			      (uint32_t)len);
	a->out_len += KILN_AGENT_HDR_SIZE + len;
}

/* Queues a frame whose payload is p[0..len). */
static int queue_frame(struct kiln_agent *a, uint16_t type, uint32_t session,
		       const void *p, size_t len)
{
	uint8_t *dst = out_reserve(a, len);

	if (!dst)
		return -ENOMEM;
	if (len)
		memcpy(dst, p, len);
	out_commit(a, type, session, len);
	return 0;
}

/* Sends what the socket takes now. */
static int flush_out(struct kiln_agent *a)
{
	while (!a->err && out_pending(a)) {
		ssize_t n = send(a->fd, a->out + a->out_off, out_pending(a),
				 MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write(a->fd, a->out + a->out_off, out_pending(a));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return conn_fail(a, -errno, "send: %s",
					 strerror(errno));
		}
		a->out_off += (size_t)n;
	}
	return a->err;
}

/* ---- sessions ---- */

static struct kiln_agent_exec *sess_new(struct kiln_agent *a,
					enum sess_kind kind)
{
	struct kiln_agent_exec *s;

	if (a->last_id == UINT32_MAX)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->a = a;
	s->id = ++a->last_id;
	s->kind = kind;
	s->stdin_fd = -1;
	s->out_fd[0] = s->out_fd[1] = -1;
	s->file_fd = -1;
	s->next = a->sessions;
	a->sessions = s;
	return s;
}

static void sess_free(struct kiln_agent_exec *s)
{
	struct kiln_agent_exec **pp = &s->a->sessions;

	while (*pp && *pp != s)
		pp = &(*pp)->next;
	if (*pp)
		*pp = s->next;
	if (s->pend) {
		free(s->pend);
		s->a->n_pending--;
	}
	free(s);
}

static struct kiln_agent_exec *sess_find(struct kiln_agent *a, uint32_t id)
{
	for (struct kiln_agent_exec *s = a->sessions; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

/* A session's last frame arrived. */
static void sess_end(struct kiln_agent_exec *s)
{
	s->state = SESS_DONE;
	s->stdin_open = false;
	if (s->detached)
		sess_free(s);
}

/* Stops a session early; its last frame still comes and frees it. */
static void sess_cancel(struct kiln_agent_exec *s)
{
	struct kiln_agent *a = s->a;

	if (s->state == SESS_DONE || a->err) {
		sess_free(s);
		return;
	}
	s->detached = true;
	s->stdin_fd = -1;
	s->stdin_open = false;
	s->on_output = NULL;
	s->out_fd[0] = s->out_fd[1] = -1;
	if (queue_frame(a, KILN_AGENT_CANCEL, s->id, NULL, 0) < 0) {
		conn_fail(a, -ENOMEM, "out of memory");
		sess_free(s);
		return;
	}
	flush_out(a);
}

/* ---- incoming frames ---- */

/* Writes to an fd the caller gave for output, never past deadline (-1:
 * none): it waits for room with poll and writes at most a pipe buffer at a
 * time, so a blocking fd cannot hold the thread longer. Returns the bytes
 * written (fewer than len only at the deadline) or -errno. */
static ssize_t write_some(int fd, const uint8_t *p, size_t len,
			  int64_t deadline)
{
	size_t done = 0;

	while (done < len) {
		size_t chunk = len - done < PIPE_BUF ? len - done : PIPE_BUF;
		int r = wait_fd(fd, POLLOUT, deadline);
		ssize_t n;

		if (r < 0)
			return r;
		if (r == 0)
			break;
		n = write_nosigpipe(fd, p + done, chunk);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == EWOULDBLOCK)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static void output_failed(struct kiln_agent_exec *s, int stream, int err)
{
	log_warn(&s->a->log,
		 "agent exec %u: writing its %s: %s; dropping the rest", s->id,
		 stream == 1 ? "stdout" : "stderr", strerror(-err));
	s->out_fd[stream - 1] = -1;
}

/* Writes what is pending for every session, until deadline. */
static void flush_pending(struct kiln_agent *a, int64_t deadline)
{
	for (struct kiln_agent_exec *s = a->sessions; s && a->n_pending;
	     s = s->next) {
		int fd;
		ssize_t n;

		if (!s->pend)
			continue;
		fd = s->out_fd[s->pend_stream - 1];
		n = fd < 0 ? (ssize_t)(s->pend_len - s->pend_off)
			   : write_some(fd, s->pend + s->pend_off,
					s->pend_len - s->pend_off, deadline);
		if (n < 0) {
			output_failed(s, s->pend_stream, (int)n);
			n = (ssize_t)(s->pend_len - s->pend_off);
		}
		s->pend_off += (size_t)n;
		if (s->pend_off < s->pend_len)
			return; /* deadline */
		free(s->pend);
		s->pend = NULL;
		a->n_pending--;
	}
}

static void deliver(struct kiln_agent_exec *s, int stream, const uint8_t *p,
		    size_t len)
{
	int fd = s->out_fd[stream - 1];
	ssize_t n;

	if (s->on_output) {
		s->on_output(s->opaque, stream, p, len);
		return;
	}
	if (fd < 0)
		return;
	n = write_some(fd, p, len, s->a->io_deadline);
	if (n < 0) {
		output_failed(s, stream, (int)n);
	} else if ((size_t)n < len) {
		/* the wait's deadline: keep the rest for the next wait */
		s->pend = malloc(len - (size_t)n);
		if (!s->pend) {
			conn_fail(s->a, -ENOMEM, "out of memory");
			return;
		}
		memcpy(s->pend, p + n, len - (size_t)n);
		s->pend_len = len - (size_t)n;
		s->pend_off = 0;
		s->pend_stream = stream;
		s->a->n_pending++;
	}
}

static int on_exit_frame(struct kiln_agent_exec *s, const uint8_t *p,
			 size_t len)
{
	struct kiln_agent_exit m;
	struct kiln_exec_result *r = &s->res;

	if (kiln_agent_exit_decode(p, len, &m) < 0)
		return proto_fail(s->a, "bad EXIT for session %u", s->id);
	r->exited = m.how == KILN_AGENT_EXITED;
	r->code = r->exited ? (int)m.value : 0;
	r->signo = r->exited ? 0 : (int)m.value;
	r->timed_out = !!(m.flags & KILN_AGENT_EXIT_TIMED_OUT);
	r->status = kiln_agent_exit_status(&m);
	sess_end(s);
	return 0;
}

/* Text from the guest ends up on the host's terminal: control characters
 * (C0, DEL, and C1 as UTF-8) become '?', so it cannot move the cursor,
 * retitle the window or worse. */
static void scrub_text(char *t)
{
	for (unsigned char *c = (unsigned char *)t; *c; c++) {
		if (*c < 0x20 || *c == 0x7f) {
			*c = '?';
		} else if (*c == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) {
			c[0] = c[1] = '?';
			c++;
		}
	}
}

static int on_error_frame(struct kiln_agent_exec *s, const uint8_t *p,
			  size_t len)
{
	struct kiln_agent_error m;

	if (kiln_agent_error_decode(p, len, &m) < 0)
		return proto_fail(s->a, "bad ERROR for session %u", s->id);
	scrub_text(m.msg);
	if (s->kind == SESS_EXEC) {
		s->res.error = (int)m.err;
		s->res.error_what = (int)m.what;
		snprintf(s->res.message, sizeof(s->res.message), "%s", m.msg);
		s->res.status = kiln_agent_error_status(&m);
	} else if (!s->err) {
		s->err = -(int)m.err;
		if (!s->detached)
			log_error(&s->a->log, "agent: %s", m.msg);
	}
	sess_end(s);
	return 0;
}

static int on_file_data(struct kiln_agent_exec *s, const uint8_t *p, size_t len)
{
	ssize_t n;
	int err;

	if (len > s->size - s->done)
		return proto_fail(s->a, "session %u: more than %llu bytes",
				  s->id, (unsigned long long)s->size);
	s->done += len;
	if (s->err || s->detached)
		return 0;
	/* a file: written completely, whatever the wait's deadline */
	n = write_some(s->file_fd, p, len, -1);
	err = n < 0 ? (int)n : 0;
	if (err < 0) {
		log_error(&s->a->log, "agent get: writing the copy: %s",
			  strerror(-err));
		s->err = err;
		/* the agent stops and answers ECANCELED: nothing to wait for */
		if (queue_frame(s->a, KILN_AGENT_CANCEL, s->id, NULL, 0) < 0)
			return conn_fail(s->a, -ENOMEM, "out of memory");
	}
	return 0;
}

static int on_file_end(struct kiln_agent_exec *s, const uint8_t *p, size_t len)
{
	uint64_t size;

	if (kiln_agent_u64_decode(p, len, &size) < 0 || size != s->done ||
	    (s->kind == SESS_PUT && s->done != s->size))
		return proto_fail(s->a, "bad FILE_END for session %u", s->id);
	sess_end(s);
	return 0;
}

static int on_conn_error(struct kiln_agent *a, const uint8_t *p, size_t len)
{
	struct kiln_agent_error m;

	if (kiln_agent_error_decode(p, len, &m) < 0)
		return proto_fail(a, "bad connection ERROR");
	scrub_text(m.msg);
	return conn_fail(a, -ECONNABORTED, "the agent closed it: %s (%s)",
			 m.msg, strerror((int)m.err));
}

static int dispatch(struct kiln_agent *a, const struct kiln_agent_hdr *h,
		    const uint8_t *p)
{
	struct kiln_agent_exec *s;
	struct kiln_agent_started st;
	uint32_t credit;

	if (h->type == KILN_AGENT_READY) {
		if (a->ready)
			return proto_fail(a, "a second READY");
		if (kiln_agent_ready_decode(p, h->length, &a->peer) < 0)
			return proto_fail(a, "bad READY");
		scrub_text(a->peer.name);
		if (a->peer.version != KILN_AGENT_VERSION)
			return conn_fail(a, -EPROTONOSUPPORT,
					 "agent speaks version %u, not %u",
					 a->peer.version, KILN_AGENT_VERSION);
		a->ready = true;
		return 0;
	}
	if (h->type == KILN_AGENT_ERROR && h->session == 0)
		return on_conn_error(a, p, h->length);
	if (h->type == KILN_AGENT_RESTORED_DONE) {
		if (!a->ready || a->restored_done ||
		    kiln_agent_restored_done_decode(p, h->length,
						    &a->restored) < 0)
			return proto_fail(a, "bad or unasked RESTORED_DONE");
		a->restored_done = true;
		return 0;
	}
	if (!a->ready)
		return proto_fail(a, "%s before READY",
				  kiln_agent_type_name(h->type));
	s = sess_find(a, h->session);
	if (!s || s->state == SESS_DONE)
		return proto_fail(a, "%s for unknown session %u",
				  kiln_agent_type_name(h->type), h->session);

	switch (h->type) {
	case KILN_AGENT_STARTED:
		if (s->kind != SESS_EXEC || s->state != SESS_OPENING ||
		    kiln_agent_started_decode(p, h->length, &st) < 0 ||
		    (st.stdin_credit != 0) != s->stdin_wanted)
			break;
		s->pid = st.pid;
		s->window = s->credit = st.stdin_credit;
		s->state = SESS_RUNNING;
		s->res.started = 1;
		return 0;
	case KILN_AGENT_STDOUT:
	case KILN_AGENT_STDERR:
		if (s->kind != SESS_EXEC || s->state != SESS_RUNNING)
			break;
		if (!s->detached)
			deliver(s, h->type == KILN_AGENT_STDOUT ? 1 : 2, p,
				h->length);
		return 0;
	case KILN_AGENT_STDIN_CREDIT:
		/* never more outstanding than the window it granted */
		if (s->kind != SESS_EXEC || s->state != SESS_RUNNING ||
		    kiln_agent_u32_decode(p, h->length, &credit) < 0 ||
		    credit == 0 || credit > s->window - s->credit)
			break;
		s->credit += credit;
		return 0;
	case KILN_AGENT_EXIT:
		if (s->kind != SESS_EXEC || s->state != SESS_RUNNING)
			break;
		return on_exit_frame(s, p, h->length);
	case KILN_AGENT_ERROR: return on_error_frame(s, p, h->length);
	case KILN_AGENT_FILE_DATA:
		if (s->kind != SESS_GET)
			break;
		return on_file_data(s, p, h->length);
	case KILN_AGENT_FILE_END:
		if (s->kind == SESS_EXEC)
			break;
		return on_file_end(s, p, h->length);
	}
	return proto_fail(a, "unexpected %s for session %u",
			  kiln_agent_type_name(h->type), h->session);
}

/* Handles every whole frame in the receive buffer. */
static int process_input(struct kiln_agent *a)
{
	size_t off = 0;
	struct kiln_agent_hdr h = {0};
	const uint8_t *p;
	int n = 0;

	/* no frame after one whose output is still pending (order) */
	while (!a->err && !a->n_pending) {
		n = kiln_agent_frame_next(a->in + off, a->in_len - off, 1, &h,
					  &p);
		if (n < 0)
			return proto_fail(a, "malformed frame: %s",
					  strerror(-n));
		if (n == 0)
			break;
		if (dispatch(a, &h, p) < 0)
			return a->err;
		off += (size_t)n;
	}
	if (a->err)
		return a->err;
	memmove(a->in, a->in + off, a->in_len - off);
	a->in_len -= off;
	/* frame_next checked the header: a partial frame may need more room */
	if (a->in_len >= KILN_AGENT_HDR_SIZE &&
	    KILN_AGENT_HDR_SIZE + h.length > a->in_cap) {
		uint8_t *q = realloc(a->in, KILN_AGENT_HDR_SIZE + h.length);

		if (!q)
			return conn_fail(a, -ENOMEM, "out of memory");
		a->in = q;
		a->in_cap = KILN_AGENT_HDR_SIZE + h.length;
	}
	return 0;
}

static int recv_some(struct kiln_agent *a)
{
	ssize_t n;

	n = recv(a->fd, a->in + a->in_len, a->in_cap - a->in_len, 0);
	if (n < 0 && errno == ENOTSOCK)
		n = read(a->fd, a->in + a->in_len, a->in_cap - a->in_len);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return conn_fail(a, -errno, "recv: %s", strerror(errno));
	}
	if (n == 0)
		return conn_fail(a, -EPIPE, "the agent closed the connection");
	a->in_len += (size_t)n;
	return process_input(a);
}

/* ---- the pump ---- */

static size_t data_chunk(const struct kiln_agent *a, uint64_t limit)
{
	size_t n = KILN_AGENT_IO_CHUNK;

	if (a->peer.max_frame < n)
		n = a->peer.max_frame;
	return limit < n ? (size_t)limit : n;
}

/* Moves forwarded stdin for one session: what its credit allows. */
static void forward_stdin(struct kiln_agent_exec *s)
{
	struct kiln_agent *a = s->a;
	size_t want = data_chunk(a, s->credit);
	uint8_t *p = out_reserve(a, want);
	ssize_t n;

	if (!p) {
		conn_fail(a, -ENOMEM, "out of memory");
		return;
	}
	n = read(s->stdin_fd, p, want);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		out_commit(a, KILN_AGENT_STDIN, s->id, (size_t)n);
		s->credit -= (uint32_t)n;
		return;
	}
	if (n < 0)
		log_warn(&a->log, "agent exec %u: reading its stdin: %s", s->id,
			 strerror(errno));
	out_commit(a, KILN_AGENT_STDIN_EOF, s->id, 0);
	s->stdin_open = false;
	s->stdin_fd = -1;
}

/* One poll round: flush, forward stdin, receive and dispatch. */
static int pump(struct kiln_agent *a, int64_t deadline)
{
	struct pollfd pfd[1 + MAX_POLL_STDIN];
	struct kiln_agent_exec *fwd[1 + MAX_POLL_STDIN];
	nfds_t nfds = 1;
	int n;

	if (a->err)
		return a->err;
	a->io_deadline = deadline;
	if (a->n_pending) {
		flush_pending(a, deadline);
		/* then the frames that waited behind it */
		if (!a->n_pending && a->in_len)
			process_input(a);
		if (a->n_pending || a->err)
			return a->err;
	}
	pfd[0].fd = a->fd;
	pfd[0].events = POLLIN | (out_pending(a) ? POLLOUT : 0);
	for (struct kiln_agent_exec *s = a->sessions;
	     s && nfds <= MAX_POLL_STDIN && out_pending(a) < OUT_HIGH;
	     s = s->next) {
		if (s->kind != SESS_EXEC || s->state != SESS_RUNNING ||
		    s->stdin_fd < 0 || !s->stdin_open || !s->credit)
			continue;
		fwd[nfds] = s;
		pfd[nfds].fd = s->stdin_fd;
		pfd[nfds].events = POLLIN;
		nfds++;
	}
	n = poll(pfd, nfds, poll_timeout(deadline));
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	/* receive first: an agent that hung up may have said why */
	if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
		recv_some(a);
	/* forwarded execs are never freed by dispatch (only detached ones
	 * are), but they may have ended */
	for (nfds_t i = 1; i < nfds && !a->err; i++)
		if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    fwd[i]->state == SESS_RUNNING && fwd[i]->stdin_fd >= 0 &&
		    fwd[i]->stdin_open && fwd[i]->credit)
			forward_stdin(fwd[i]);
	if (!a->err && out_pending(a))
		flush_out(a);
	return a->err;
}

/* Pumps until done(s) holds: 0, the connection's error, or -ETIMEDOUT. */
static int pump_until(struct kiln_agent *a, int64_t deadline,
		      bool (*done)(const struct kiln_agent *,
				   const struct kiln_agent_exec *),
		      const struct kiln_agent_exec *s)
{
	for (;;) {
		int err;

		if (done(a, s))
			return 0;
		if (a->err)
			return a->err;
		err = pump(a, deadline);
		if (err < 0 && !done(a, s))
			return err;
		if (done(a, s))
			return 0;
		if (expired(deadline))
			return -ETIMEDOUT;
	}
}

static bool is_ready(const struct kiln_agent *a,
		     const struct kiln_agent_exec *s)
{
	(void)s;
	return a->ready;
}

static bool is_done(const struct kiln_agent *a, const struct kiln_agent_exec *s)
{
	(void)a;
	return s->state == SESS_DONE;
}

static bool can_send_stdin(const struct kiln_agent *a,
			   const struct kiln_agent_exec *s)
{
	return s->state == SESS_DONE ||
	       (s->state == SESS_RUNNING && s->credit &&
		out_pending(a) < OUT_HIGH);
}

static bool can_queue(const struct kiln_agent *a,
		      const struct kiln_agent_exec *s)
{
	return s->state == SESS_DONE || out_pending(a) < OUT_HIGH;
}

/* ---- connection ---- */

int kiln_agent_read_ready(int fd, int timeout_ms, const struct kiln_log *log,
			  struct kiln_agent_ready *ready)
{
	uint8_t buf[KILN_AGENT_HDR_SIZE + 16 + KILN_AGENT_MAX_NAME];
	int64_t deadline = deadline_of(timeout_ms);
	struct kiln_agent_hdr h;
	const uint8_t *p;
	size_t have = 0;
	int n;

	for (;;) {
		ssize_t r;

		n = kiln_agent_frame_next(buf, have, 1, &h, &p);
		if (n < 0)
			return kiln_errorf(log, -EPROTO,
					   "agent ready: malformed frame: %s",
					   strerror(-n));
		if (n > 0)
			break;
		if (have == sizeof(buf))
			return kiln_errorf(log, -EPROTO,
					   "agent ready: frame too large");
		r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			return kiln_errorf(log, (int)r, "agent ready: poll: %s",
					   strerror((int)-r));
		if (r == 0)
			return kiln_errorf(log, -ETIMEDOUT,
					   "agent ready: no READY in %d ms",
					   timeout_ms);
		/* take only this frame's bytes: the header bounds the rest */
		r = read(fd, buf + have,
			 have < KILN_AGENT_HDR_SIZE ? KILN_AGENT_HDR_SIZE - have
						    : sizeof(buf) - have);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return kiln_errorf(log, -errno, "agent ready: read: %s",
					   strerror(errno));
		if (r == 0)
			return kiln_errorf(log, -EPIPE,
					   "agent ready: closed before READY");
		have += (size_t)r;
	}
	if (h.type != KILN_AGENT_READY ||
	    kiln_agent_ready_decode(p, h.length, ready) < 0)
		return kiln_errorf(log, -EPROTO, "agent ready: bad %s frame",
				   kiln_agent_type_name(h.type));
	if (ready->version != KILN_AGENT_VERSION)
		return kiln_errorf(log, -EPROTONOSUPPORT,
				   "agent ready: version %u, not %u",
				   ready->version, KILN_AGENT_VERSION);
	return 0;
}

/* ---- hybrid vsock ---- */

static int uds_addr(struct sockaddr_un *sa, const char *uds_path, int port,
		    const struct kiln_log *log)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (port >= 0)
		n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s_%d",
			     uds_path, port);
	else
		n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s",
			     uds_path);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
		return kiln_errorf(log, -ENAMETOOLONG,
				   "agent: socket path %s is too long",
				   uds_path);
	return 0;
}

int kiln_agent_listen_hybrid(const char *uds_path, unsigned port,
			     const struct kiln_log *log)
{
	struct sockaddr_un sa;
	struct unix_socket_id id;
	int fd, err;

	if (port > INT32_MAX)
		return -EINVAL;
	err = uds_addr(&sa, uds_path, (int)port, log);
	if (err < 0)
		return err;
	/* a socket left by an earlier run, but never a live one or any
	 * other file */
	fd = unix_listen(sa.sun_path, 4, false, "agent", log, &id);
	return fd;
}

int kiln_agent_accept_ready(int listen_fd, int timeout_ms,
			    const struct kiln_log *log,
			    struct kiln_agent_ready *ready)
{
	int64_t deadline = deadline_of(timeout_ms);
	int fd, err, n = wait_fd(listen_fd, POLLIN, deadline);

	if (n < 0)
		return kiln_errorf(log, n, "agent ready: poll: %s",
				   strerror(-n));
	if (n == 0)
		return kiln_errorf(log, -ETIMEDOUT,
				   "agent ready: no announcement in %d ms",
				   timeout_ms);
	fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return kiln_errorf(log, -errno, "agent ready: accept: %s",
				   strerror(errno));
	timeout_ms = deadline < 0 ? -1 : poll_timeout(deadline);
	err = kiln_agent_read_ready(fd, timeout_ms, log, ready);
	close(fd);
	return err;
}

/* Reads the device's answer line, a byte at a time: nothing after the
 * newline belongs to us. */
static int read_line(int fd, char *buf, size_t cap, int64_t deadline)
{
	size_t n = 0;

	while (n + 1 < cap) {
		int r = wait_fd(fd, POLLIN, deadline);
		ssize_t got;

		if (r < 0)
			return r;
		if (r == 0)
			return -ETIMEDOUT;
		got = read(fd, buf + n, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return -ECONNREFUSED;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return 0;
		}
		n++;
	}
	return -EPROTO;
}

int kiln_agent_dial_hybrid(const char *uds_path, unsigned port, int timeout_ms,
			   const struct kiln_log *log)
{
	int64_t deadline = deadline_of(timeout_ms);
	struct sockaddr_un sa;
	char line[64];
	int fd, err, n;

	err = uds_addr(&sa, uds_path, -1, log);
	if (err < 0)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kiln_errorf(log, -errno, "agent: socket: %s",
				   strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return kiln_errorf(log, err, "agent: connecting to %s: %s",
				   uds_path, strerror(-err));
	}
	n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		err = -errno;
		close(fd);
		return kiln_errorf(log, err ? err : -EIO,
				   "agent: CONNECT %u: %s", port,
				   strerror(errno));
	}
	err = read_line(fd, line, sizeof(line), deadline);
	if (err == 0 && strncmp(line, "OK ", 3) != 0)
		err = -EPROTO;
	if (err < 0) {
		close(fd);
		if (err == -ECONNREFUSED)
			return kiln_errorf(log, err,
					   "agent: guest port %u refused the "
					   "connection",
					   port);
		return kiln_errorf(log, err, "agent: CONNECT %u: %s", port,
				   err == -EPROTO ? "bad answer"
						  : strerror(-err));
	}
	return fd;
}

int kiln_agent_connect(int fd, const struct kiln_log *log, int timeout_ms,
		       struct kiln_agent **out)
{
	struct kiln_agent_hello hello = {KILN_AGENT_VERSION, 0};
	struct kiln_agent *a;
	uint8_t payload[8];
	int flags, err;

	*out = NULL;
	if (fd < 0)
		return kiln_errorf(log, -EBADF, "agent connect: no socket");
	a = calloc(1, sizeof(*a));
	if (!a) {
		close(fd);
		return -ENOMEM;
	}
	a->fd = fd;
	a->io_deadline = -1;
	if (log)
		a->log = *log;
	a->in = malloc(IN_CAP_MIN);
	flags = fcntl(fd, F_GETFL);
	if (!a->in || flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		err = a->in ? -errno : -ENOMEM;
		kiln_agent_close(a);
		return kiln_errorf(log, err, "agent connect: %s",
				   strerror(-err));
	}
	a->in_cap = IN_CAP_MIN;
	kiln_agent_hello_encode(payload, sizeof(payload), &hello);
	err = queue_frame(a, KILN_AGENT_HELLO, 0, payload, sizeof(payload));
	if (err == 0)
		err = flush_out(a);
	if (err == 0)
		err = pump_until(a, deadline_of(timeout_ms), is_ready, NULL);
	/* READY may have come in the same read as what broke the connection */
	if (err == 0 && a->err)
		err = a->err;
	if (err < 0) {
		if (err == -ETIMEDOUT)
			log_error(log, "agent connect: no READY in %d ms",
				  timeout_ms);
		kiln_agent_close(a);
		return err;
	}
	log_debug(log, "agent connect: %s, version %u", a->peer.name,
		  a->peer.version);
	*out = a;
	return 0;
}

const struct kiln_agent_ready *kiln_agent_peer(const struct kiln_agent *a)
{
	return &a->peer;
}

void kiln_agent_close(struct kiln_agent *a)
{
	if (!a)
		return;
	while (a->sessions)
		sess_free(a->sessions);
	close(a->fd);
	free(a->in);
	free(a->out);
	free(a);
}

/* ---- execs ---- */

KILN_API void kiln_exec_opts_init(struct kiln_exec_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->uid = o->gid = -1;
	o->stdin_fd = o->stdout_fd = o->stderr_fd = -1;
}

int kiln_agent_exec_start(struct kiln_agent *a,
			  const struct kiln_exec_opts *caller_opts,
			  struct kiln_agent_exec **out)
{
	struct kiln_agent_exec_req req = {0};
	struct kiln_exec_opts opts;
	const struct kiln_exec_opts *o = &opts;
	struct kiln_agent_exec *s;
	uint8_t *p;
	int n;

	*out = NULL;
	if (a->err)
		return a->err;
	/* A caller built against an older kiln.h passes a smaller struct:
	 * what it lacks keeps the defaults. */
	if (caller_opts->size <
		    offsetof(struct kiln_exec_opts, stderr_fd) + sizeof(int) ||
	    caller_opts->size > sizeof(opts))
		return kiln_errorf(&a->log, -EINVAL,
				   "agent exec: options not set up with "
				   "kiln_exec_opts_init (size %zu)",
				   caller_opts->size);
	kiln_exec_opts_init(&opts);
	memcpy(&opts, caller_opts, caller_opts->size);
	if (!o->argv || !o->argv[0])
		return kiln_errorf(&a->log, -EINVAL, "agent exec: empty argv");
	if (o->uid > (long)UINT32_MAX || o->gid > (long)UINT32_MAX ||
	    o->rows > UINT16_MAX || o->cols > UINT16_MAX)
		return kiln_errorf(&a->log, -EINVAL,
				   "agent exec: uid, gid or size out of range");
	req.flags = (o->stdin_fd >= 0 || o->stdin_pipe ? KILN_AGENT_EXEC_STDIN
						       : 0) |
		    (o->pty ? KILN_AGENT_EXEC_PTY : 0) |
		    (o->uid >= 0 ? KILN_AGENT_EXEC_UID : 0) |
		    (o->gid >= 0 ? KILN_AGENT_EXEC_GID : 0);
	req.uid = o->uid >= 0 ? (uint32_t)o->uid : 0;
	req.gid = o->gid >= 0 ? (uint32_t)o->gid : 0;
	req.timeout_ms = o->timeout_ms;
	req.rows = (uint16_t)o->rows;
	req.cols = (uint16_t)o->cols;
	req.cwd = o->cwd;
	req.argv = o->argv;
	req.env = o->env;

	p = out_reserve(a, a->peer.max_frame);
	if (!p)
		return -ENOMEM;
	n = kiln_agent_exec_encode(p, a->peer.max_frame, &req);
	if (n < 0)
		return kiln_errorf(&a->log, n == -ENOBUFS ? -E2BIG : n,
				   "agent exec %s: %s", o->argv[0],
				   n == -EINVAL ? "invalid request"
						: "arguments too long");
	s = sess_new(a, SESS_EXEC);
	if (!s)
		return -ENOMEM;
	out_commit(a, KILN_AGENT_EXEC, s->id, (size_t)n);
	s->stdin_wanted = req.flags & KILN_AGENT_EXEC_STDIN;
	s->stdin_open = s->stdin_wanted;
	s->stdin_fd = o->stdin_fd;
	s->on_output = o->on_output;
	s->opaque = o->opaque;
	s->out_fd[0] = o->stdout_fd;
	s->out_fd[1] = o->stderr_fd;
	flush_out(a);
	*out = s;
	return 0;
}

int kiln_agent_exec_write_stdin(struct kiln_agent_exec *e, const void *buf,
				size_t len, int timeout_ms)
{
	struct kiln_agent *a = e->a;
	int64_t deadline = deadline_of(timeout_ms);
	const uint8_t *p = buf;

	if (!e->stdin_wanted || e->stdin_fd >= 0)
		return -EINVAL;
	while (len) {
		size_t n;
		int err;

		if (!e->stdin_open || e->state == SESS_DONE)
			return -EPIPE;
		err = pump_until(a, deadline, can_send_stdin, e);
		if (err < 0)
			return err;
		if (e->state == SESS_DONE)
			return -EPIPE;
		n = data_chunk(a, e->credit < len ? e->credit : len);
		err = queue_frame(a, KILN_AGENT_STDIN, e->id, p, n);
		if (err < 0)
			return err;
		e->credit -= (uint32_t)n;
		p += n;
		len -= n;
		flush_out(a);
	}
	return a->err;
}

int kiln_agent_exec_close_stdin(struct kiln_agent_exec *e)
{
	int err;

	if (e->a->err)
		return e->a->err;
	if (!e->stdin_open || e->state == SESS_DONE)
		return 0;
	e->stdin_open = false;
	e->stdin_fd = -1;
	err = queue_frame(e->a, KILN_AGENT_STDIN_EOF, e->id, NULL, 0);
	return err < 0 ? err : flush_out(e->a);
}

int kiln_agent_exec_signal(struct kiln_agent_exec *e, int signo, int group)
{
	struct kiln_agent_signal sig = {(uint32_t)signo,
					group ? KILN_AGENT_SIGNAL_GROUP : 0};
	uint8_t payload[8];
	int err;

	if (e->a->err)
		return e->a->err;
	if (kiln_agent_signal_encode(payload, sizeof(payload), &sig) < 0)
		return -EINVAL;
	if (e->state == SESS_DONE)
		return -ESRCH;
	err = queue_frame(e->a, KILN_AGENT_SIGNAL, e->id, payload, 8);
	return err < 0 ? err : flush_out(e->a);
}

int kiln_agent_exec_resize(struct kiln_agent_exec *e, unsigned rows,
			   unsigned cols)
{
	struct kiln_agent_winsize ws = {(uint16_t)rows, (uint16_t)cols};
	uint8_t payload[4];
	int err;

	if (e->a->err)
		return e->a->err;
	if (rows > UINT16_MAX || cols > UINT16_MAX)
		return -EINVAL;
	if (e->state == SESS_DONE)
		return -ESRCH;
	kiln_agent_winsize_encode(payload, sizeof(payload), &ws);
	err = queue_frame(e->a, KILN_AGENT_WINSIZE, e->id, payload, 4);
	return err < 0 ? err : flush_out(e->a);
}

long kiln_agent_exec_pid(const struct kiln_agent_exec *e)
{
	return e->pid;
}

int kiln_agent_exec_wait(struct kiln_agent_exec *e, int timeout_ms,
			 struct kiln_exec_result *res)
{
	int err = pump_until(e->a, deadline_of(timeout_ms), is_done, e);

	if (err == 0 && res)
		*res = e->res;
	return err;
}

void kiln_agent_exec_free(struct kiln_agent_exec *e)
{
	if (e)
		sess_cancel(e);
}

int kiln_agent_run(struct kiln_agent *a, const struct kiln_exec_opts *o,
		   int timeout_ms, struct kiln_exec_result *res)
{
	struct kiln_agent_exec *e;
	int err = kiln_agent_exec_start(a, o, &e);

	if (err < 0)
		return err;
	err = kiln_agent_exec_wait(e, timeout_ms, res);
	kiln_agent_exec_free(e);
	return err;
}

/* ---- files ---- */

static struct kiln_agent_exec *file_open(struct kiln_agent *a,
					 enum sess_kind kind,
					 const struct kiln_agent_file_req *req)
{
	struct kiln_agent_exec *s;
	uint8_t *p = out_reserve(a, 16 + 4 + KILN_AGENT_MAX_PATH);
	int n;

	if (!p)
		return NULL;
	n = kiln_agent_file_req_encode(p, 16 + 4 + KILN_AGENT_MAX_PATH, req);
	if (n < 0)
		return NULL;
	s = sess_new(a, kind);
	if (!s)
		return NULL;
	out_commit(a,
		   kind == SESS_PUT ? KILN_AGENT_FILE_PUT : KILN_AGENT_FILE_GET,
		   s->id, (size_t)n);
	s->state = SESS_RUNNING;
	s->size = req->size;
	return s;
}

/* Ends a transfer call: the session outlives it only if still running. */
static int file_finish(struct kiln_agent_exec *s, int err)
{
	if (err == 0 && s->state == SESS_DONE)
		err = s->err;
	sess_cancel(s);
	return err;
}

int kiln_agent_put_file(struct kiln_agent *a, const char *path, unsigned mode,
			int fd, uint64_t size, int timeout_ms)
{
	struct kiln_agent_file_req req = {size, mode, 0, path};
	int64_t deadline = deadline_of(timeout_ms);
	struct kiln_agent_exec *s;
	int err = 0;

	if (a->err)
		return a->err;
	if (size > KILN_AGENT_MAX_FILE)
		return kiln_errorf(&a->log, -EFBIG,
				   "agent put %s: %llu bytes is over the limit",
				   path, (unsigned long long)size);
	if (!path || path[0] != '/' || mode > 07777)
		return kiln_errorf(
			&a->log, -EINVAL,
			"agent put: needs an absolute path and a mode");
	s = file_open(a, SESS_PUT, &req);
	if (!s)
		return kiln_errorf(&a->log, -EINVAL,
				   "agent put %s: bad request", path);
	flush_out(a);
	while (!err && s->state != SESS_DONE && s->done < s->size) {
		size_t want = data_chunk(a, s->size - s->done);
		uint8_t *p;
		ssize_t n;

		err = pump_until(a, deadline, can_queue, s);
		if (err < 0 || s->state == SESS_DONE)
			break;
		p = out_reserve(a, want);
		if (!p) {
			err = -ENOMEM;
			break;
		}
		n = read(fd, p, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			log_error(&a->log,
				  "agent put %s: reading the source: %s", path,
				  n < 0 ? strerror(errno) : "ended early");
			break;
		}
		out_commit(a, KILN_AGENT_PUT_DATA, s->id, (size_t)n);
		s->done += (uint64_t)n;
		flush_out(a);
	}
	if (!err)
		err = pump_until(a, deadline, is_done, s);
	return file_finish(s, err);
}

int kiln_agent_get_file(struct kiln_agent *a, const char *path,
			uint64_t max_size, int fd, int timeout_ms,
			uint64_t *size)
{
	struct kiln_agent_file_req req = {max_size, 0, 0, path};
	struct kiln_agent_exec *s;
	int err;

	if (size)
		*size = 0;
	if (a->err)
		return a->err;
	if (req.size > KILN_AGENT_MAX_FILE)
		req.size = KILN_AGENT_MAX_FILE;
	if (!path || path[0] != '/')
		return kiln_errorf(&a->log, -EINVAL,
				   "agent get: needs an absolute path");
	s = file_open(a, SESS_GET, &req);
	if (!s)
		return kiln_errorf(&a->log, -EINVAL,
				   "agent get %s: bad request", path);
	s->file_fd = fd;
	flush_out(a);
	err = pump_until(a, deadline_of(timeout_ms), is_done, s);
	if (size)
		*size = s->done;
	return file_finish(s, err);
}

/* ---- the guest ---- */

static bool out_sent(const struct kiln_agent *a,
		     const struct kiln_agent_exec *s)
{
	(void)s;
	return out_pending(a) == 0;
}

int kiln_agent_shutdown(struct kiln_agent *a, int timeout_ms)
{
	uint8_t flags[4] = {0};
	int err;

	if (a->err)
		return a->err;
	err = queue_frame(a, KILN_AGENT_SHUTDOWN, 0, flags, sizeof(flags));
	if (err < 0)
		return err;
	flush_out(a);
	err = pump_until(a, deadline_of(timeout_ms), out_sent, NULL);
	/* the agent going away right after is what we asked for */
	return err == -ETIMEDOUT ? err : 0;
}

static bool restored_answered(const struct kiln_agent *a,
			      const struct kiln_agent_exec *s)
{
	(void)s;
	return a->restored_done;
}

int kiln_agent_restored(struct kiln_agent *a,
			const struct kiln_agent_restored *m, int timeout_ms,
			struct kiln_agent_restored_done *done)
{
	uint8_t p[8 + KILN_AGENT_ENTROPY + 8 + KILN_AGENT_MAX_NAME + 1 + 64];
	int n, err;

	if (a->err)
		return a->err;
	n = kiln_agent_restored_encode(p, sizeof(p), m);
	if (n < 0)
		return kiln_errorf(&a->log, -EINVAL,
				   "agent: RESTORED: bad id or hostname");
	a->restored_done = false;
	err = queue_frame(a, KILN_AGENT_RESTORED, 0, p, (size_t)n);
	explicit_bzero(p, sizeof(p));
	if (err < 0)
		return err;
	flush_out(a);
	err = pump_until(a, deadline_of(timeout_ms), restored_answered, NULL);
	if (err == 0 && done)
		*done = a->restored;
	return err;
}
