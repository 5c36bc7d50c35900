/* SPDX-License-Identifier: MIT */
/*
 * Agent protocol codec (format in include/kiln/agent_proto.h). Pure functions
 * on buffers, linked into both libkiln and the static guest agent, so it uses
 * nothing beyond <string.h> and <errno.h>. Every length read from the wire
 * is checked against what is left before it is used.
 */
#include <errno.h>
#include <string.h>

#include <kiln/agent_proto.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Payload size rule of a type: exactly `min` if min == max. */
struct size_rule {
	uint16_t type;
	uint32_t min;
	uint32_t max;
};

static const struct size_rule size_rules[] = {
	{KILN_AGENT_HELLO, 8, 8},
	{KILN_AGENT_EXEC, 28 + 2 * 5, KILN_AGENT_MAX_FRAME}, /* cwd, argv[0] */
	{KILN_AGENT_STDIN, 1, KILN_AGENT_MAX_FRAME},
	{KILN_AGENT_STDIN_EOF, 0, 0},
	{KILN_AGENT_SIGNAL, 8, 8},
	{KILN_AGENT_WINSIZE, 4, 4},
	{KILN_AGENT_FILE_PUT, 16 + 4 + 2, 16 + 4 + KILN_AGENT_MAX_PATH},
	{KILN_AGENT_PUT_DATA, 1, KILN_AGENT_MAX_FRAME},
	{KILN_AGENT_FILE_GET, 16 + 4 + 2, 16 + 4 + KILN_AGENT_MAX_PATH},
	{KILN_AGENT_CANCEL, 0, 0},
	{KILN_AGENT_SHUTDOWN, 4, 4},
	/* clock, entropy, id (2..), hostname (1..64) */
	{KILN_AGENT_RESTORED, 8 + KILN_AGENT_ENTROPY + 4 + 2 + 4 + 1,
	 8 + KILN_AGENT_ENTROPY + 4 + KILN_AGENT_MAX_NAME + 1 + 4 + 64},
	{KILN_AGENT_READY, 16, 16 + KILN_AGENT_MAX_NAME},
	{KILN_AGENT_STARTED, 8, 8},
	{KILN_AGENT_STDOUT, 1, KILN_AGENT_MAX_FRAME},
	{KILN_AGENT_STDERR, 1, KILN_AGENT_MAX_FRAME},
	{KILN_AGENT_STDIN_CREDIT, 4, 4},
	{KILN_AGENT_EXIT, 12, 12},
	{KILN_AGENT_ERROR, 8, 8 + KILN_AGENT_MAX_MSG},
	{KILN_AGENT_FILE_DATA, 1, KILN_AGENT_MAX_FRAME},
	{KILN_AGENT_FILE_END, 8, 8},
	{KILN_AGENT_RESTORED_DONE, 12, 12},
};

static const struct size_rule *rule_of(uint16_t type)
{
	for (size_t i = 0; i < sizeof(size_rules) / sizeof(size_rules[0]); i++)
		if (size_rules[i].type == type)
			return &size_rules[i];
	return NULL;
}

const char *kiln_agent_type_name(uint16_t type)
{
	switch (type) {
	case KILN_AGENT_HELLO: return "HELLO";
	case KILN_AGENT_EXEC: return "EXEC";
	case KILN_AGENT_STDIN: return "STDIN";
	case KILN_AGENT_STDIN_EOF: return "STDIN_EOF";
	case KILN_AGENT_SIGNAL: return "SIGNAL";
	case KILN_AGENT_WINSIZE: return "WINSIZE";
	case KILN_AGENT_FILE_PUT: return "FILE_PUT";
	case KILN_AGENT_PUT_DATA: return "PUT_DATA";
	case KILN_AGENT_FILE_GET: return "FILE_GET";
	case KILN_AGENT_CANCEL: return "CANCEL";
	case KILN_AGENT_SHUTDOWN: return "SHUTDOWN";
	case KILN_AGENT_RESTORED: return "RESTORED";
	case KILN_AGENT_RESTORED_DONE: return "RESTORED_DONE";
	case KILN_AGENT_READY: return "READY";
	case KILN_AGENT_STARTED: return "STARTED";
	case KILN_AGENT_STDOUT: return "STDOUT";
	case KILN_AGENT_STDERR: return "STDERR";
	case KILN_AGENT_STDIN_CREDIT: return "STDIN_CREDIT";
	case KILN_AGENT_EXIT: return "EXIT";
	case KILN_AGENT_ERROR: return "ERROR";
	case KILN_AGENT_FILE_DATA: return "FILE_DATA";
	case KILN_AGENT_FILE_END: return "FILE_END";
	}
	return "?";
}

void kiln_agent_hdr_encode(uint8_t *out, uint16_t type, uint32_t session,
			   uint32_t length)
{
	put32(out, KILN_AGENT_MAGIC);
	put16(out + 4, KILN_AGENT_VERSION);
	put16(out + 6, type);
	put32(out + 8, session);
	put32(out + 12, length);
}

int kiln_agent_hdr_decode(const uint8_t *buf, int responses,
			  struct kiln_agent_hdr *h)
{
	h->magic = get32(buf);
	h->version = get16(buf + 4);
	h->type = get16(buf + 6);
	h->session = get32(buf + 8);
	h->length = get32(buf + 12);
	if (h->magic != KILN_AGENT_MAGIC)
		return -EBADMSG;
	if (h->version != KILN_AGENT_VERSION)
		return -EPROTONOSUPPORT;
	if (h->length > KILN_AGENT_MAX_FRAME)
		return -EMSGSIZE;
	if (!rule_of(h->type))
		return -EPROTO;
	if (!(h->type & KILN_AGENT_RESPONSE) != !responses)
		return -EPROTO;
	/* session 0 is the connection itself: only these live there */
	switch (h->type) {
	case KILN_AGENT_HELLO:
	case KILN_AGENT_READY:
	case KILN_AGENT_SHUTDOWN:
	case KILN_AGENT_RESTORED:
	case KILN_AGENT_RESTORED_DONE:
		if (h->session != 0)
			return -EPROTO;
		break;
	case KILN_AGENT_ERROR: break;
	default:
		if (h->session == 0)
			return -EPROTO;
	}
	return 0;
}

int kiln_agent_frame_next(const uint8_t *buf, size_t len, int responses,
			  struct kiln_agent_hdr *h, const uint8_t **payload)
{
	const struct size_rule *r;
	int err;

	if (len < KILN_AGENT_HDR_SIZE)
		return 0;
	err = kiln_agent_hdr_decode(buf, responses, h);
	if (err < 0)
		return err;
	r = rule_of(h->type);
	if (h->length < r->min || h->length > r->max)
		return -EBADMSG;
	if (len - KILN_AGENT_HDR_SIZE < h->length)
		return 0;
	*payload = buf + KILN_AGENT_HDR_SIZE;
	return (int)(KILN_AGENT_HDR_SIZE + h->length);
}

/* ---- fixed payloads ---- */

int kiln_agent_hello_encode(uint8_t *p, size_t cap,
			    const struct kiln_agent_hello *m)
{
	if (cap < 8)
		return -ENOBUFS;
	put32(p, m->version);
	put32(p + 4, m->flags);
	return 8;
}

int kiln_agent_hello_decode(const uint8_t *p, size_t len,
			    struct kiln_agent_hello *m)
{
	if (len != 8)
		return -EBADMSG;
	m->version = get32(p);
	m->flags = get32(p + 4);
	if (m->flags != 0)
		return -EBADMSG;
	return 0;
}

int kiln_agent_ready_encode(uint8_t *p, size_t cap,
			    const struct kiln_agent_ready *m)
{
	size_t n = strnlen(m->name, KILN_AGENT_MAX_NAME);

	if (cap < 16 + n)
		return -ENOBUFS;
	put32(p, m->version);
	put32(p + 4, m->max_frame);
	put32(p + 8, m->max_sessions);
	put32(p + 12, m->stdin_window);
	memcpy(p + 16, m->name, n);
	return (int)(16 + n);
}

int kiln_agent_ready_decode(const uint8_t *p, size_t len,
			    struct kiln_agent_ready *m)
{
	if (len < 16 || len > 16 + KILN_AGENT_MAX_NAME)
		return -EBADMSG;
	m->version = get32(p);
	m->max_frame = get32(p + 4);
	m->max_sessions = get32(p + 8);
	m->stdin_window = get32(p + 12);
	if (memchr(p + 16, 0, len - 16))
		return -EBADMSG;
	memcpy(m->name, p + 16, len - 16);
	m->name[len - 16] = '\0';
	/* an agent must take at least one full data chunk per frame */
	if (m->max_frame < KILN_AGENT_IO_CHUNK ||
	    m->max_frame > KILN_AGENT_MAX_FRAME || m->max_sessions == 0 ||
	    m->stdin_window == 0 || m->stdin_window > KILN_AGENT_MAX_WINDOW)
		return -EBADMSG;
	return 0;
}

int kiln_agent_started_encode(uint8_t *p, size_t cap,
			      const struct kiln_agent_started *m)
{
	if (cap < 8)
		return -ENOBUFS;
	put32(p, m->pid);
	put32(p + 4, m->stdin_credit);
	return 8;
}

int kiln_agent_started_decode(const uint8_t *p, size_t len,
			      struct kiln_agent_started *m)
{
	if (len != 8)
		return -EBADMSG;
	m->pid = get32(p);
	m->stdin_credit = get32(p + 4);
	if (m->pid == 0 || m->pid > 0x3fffffffu ||
	    m->stdin_credit > KILN_AGENT_MAX_WINDOW)
		return -EBADMSG;
	return 0;
}

int kiln_agent_signal_encode(uint8_t *p, size_t cap,
			     const struct kiln_agent_signal *m)
{
	if (m->signo < 1 || m->signo > 64 ||
	    (m->flags & ~KILN_AGENT_SIGNAL_GROUP))
		return -EINVAL;
	if (cap < 8)
		return -ENOBUFS;
	put32(p, m->signo);
	put32(p + 4, m->flags);
	return 8;
}

int kiln_agent_signal_decode(const uint8_t *p, size_t len,
			     struct kiln_agent_signal *m)
{
	if (len != 8)
		return -EBADMSG;
	m->signo = get32(p);
	m->flags = get32(p + 4);
	if (m->signo < 1 || m->signo > 64 ||
	    (m->flags & ~KILN_AGENT_SIGNAL_GROUP))
		return -EBADMSG;
	return 0;
}

int kiln_agent_winsize_encode(uint8_t *p, size_t cap,
			      const struct kiln_agent_winsize *m)
{
	if (cap < 4)
		return -ENOBUFS;
	put16(p, m->rows);
	put16(p + 2, m->cols);
	return 4;
}

int kiln_agent_winsize_decode(const uint8_t *p, size_t len,
			      struct kiln_agent_winsize *m)
{
	if (len != 4)
		return -EBADMSG;
	m->rows = get16(p);
	m->cols = get16(p + 2);
	return 0;
}

static int exit_valid(const struct kiln_agent_exit *m)
{
	if (m->flags & ~KILN_AGENT_EXIT_TIMED_OUT)
		return 0;
	if (m->how == KILN_AGENT_EXITED)
		return m->value <= 255;
	if (m->how == KILN_AGENT_SIGNALED)
		return m->value >= 1 && m->value <= 64;
	return 0;
}

int kiln_agent_exit_encode(uint8_t *p, size_t cap,
			   const struct kiln_agent_exit *m)
{
	if (!exit_valid(m))
		return -EINVAL;
	if (cap < 12)
		return -ENOBUFS;
	put32(p, m->how);
	put32(p + 4, m->value);
	put32(p + 8, m->flags);
	return 12;
}

int kiln_agent_exit_decode(const uint8_t *p, size_t len,
			   struct kiln_agent_exit *m)
{
	if (len != 12)
		return -EBADMSG;
	m->how = get32(p);
	m->value = get32(p + 4);
	m->flags = get32(p + 8);
	return exit_valid(m) ? 0 : -EBADMSG;
}

int kiln_agent_error_encode(uint8_t *p, size_t cap,
			    const struct kiln_agent_error *m)
{
	size_t n = strnlen(m->msg, KILN_AGENT_MAX_MSG);

	if (m->err < 1 || m->err > 4095 || m->what < KILN_AGENT_ERR_PROTOCOL ||
	    m->what > KILN_AGENT_ERR_INTERNAL)
		return -EINVAL;
	if (cap < 8 + n)
		return -ENOBUFS;
	put32(p, m->err);
	put32(p + 4, m->what);
	memcpy(p + 8, m->msg, n);
	return (int)(8 + n);
}

int kiln_agent_error_decode(const uint8_t *p, size_t len,
			    struct kiln_agent_error *m)
{
	if (len < 8 || len > 8 + KILN_AGENT_MAX_MSG)
		return -EBADMSG;
	m->err = get32(p);
	m->what = get32(p + 4);
	if (m->err < 1 || m->err > 4095 || m->what < KILN_AGENT_ERR_PROTOCOL ||
	    m->what > KILN_AGENT_ERR_INTERNAL)
		return -EBADMSG;
	if (memchr(p + 8, 0, len - 8))
		return -EBADMSG;
	memcpy(m->msg, p + 8, len - 8);
	m->msg[len - 8] = '\0';
	return 0;
}

int kiln_agent_u32_encode(uint8_t *p, size_t cap, uint32_t v)
{
	if (cap < 4)
		return -ENOBUFS;
	put32(p, v);
	return 4;
}

int kiln_agent_u32_decode(const uint8_t *p, size_t len, uint32_t *v)
{
	if (len != 4)
		return -EBADMSG;
	*v = get32(p);
	return 0;
}

int kiln_agent_u64_encode(uint8_t *p, size_t cap, uint64_t v)
{
	if (cap < 8)
		return -ENOBUFS;
	put64(p, v);
	return 8;
}

int kiln_agent_u64_decode(const uint8_t *p, size_t len, uint64_t *v)
{
	if (len != 8)
		return -EBADMSG;
	*v = get64(p);
	return 0;
}

/* ---- strings ---- */

/* Appends a string at *pos; -ENOBUFS if it does not fit. */
static int put_str(uint8_t *p, size_t cap, size_t *pos, const char *s)
{
	size_t n = strlen(s) + 1;

	if (n > KILN_AGENT_MAX_FRAME || cap - *pos < 4 || cap - *pos - 4 < n)
		return -ENOBUFS;
	put32(p + *pos, (uint32_t)n);
	memcpy(p + *pos + 4, s, n);
	*pos += 4 + n;
	return 0;
}

/* Takes a string at *pos: its length must fit what is left, end in its only
 * NUL and be at most max bytes (NUL included). */
static int get_str(const uint8_t *p, size_t len, size_t *pos, size_t max,
		   const char **out)
{
	uint32_t n;

	if (len - *pos < 4)
		return -EBADMSG;
	n = get32(p + *pos);
	/* compare against what is left first: n is untrusted */
	if (n == 0 || n > len - *pos - 4 || n > max)
		return -EBADMSG;
	if (p[*pos + 4 + n - 1] != '\0' ||
	    memchr(p + *pos + 4, 0, n - 1) != NULL)
		return -EBADMSG;
	*out = (const char *)(p + *pos + 4);
	*pos += 4 + n;
	return 0;
}

static int path_valid(const char *path)
{
	return path[0] == '/' && strlen(path) < KILN_AGENT_MAX_PATH;
}

int kiln_agent_file_req_encode(uint8_t *p, size_t cap,
			       const struct kiln_agent_file_req *m)
{
	size_t pos = 16;

	if (!m->path || !path_valid(m->path) || m->size > KILN_AGENT_MAX_FILE ||
	    m->mode > 07777 || m->flags != 0)
		return -EINVAL;
	if (cap < 16)
		return -ENOBUFS;
	put64(p, m->size);
	put32(p + 8, m->mode);
	put32(p + 12, m->flags);
	if (put_str(p, cap, &pos, m->path) < 0)
		return -ENOBUFS;
	return (int)pos;
}

int kiln_agent_file_req_decode(const uint8_t *p, size_t len,
			       struct kiln_agent_file_req *m)
{
	size_t pos = 16;

	if (len < 16)
		return -EBADMSG;
	m->size = get64(p);
	m->mode = get32(p + 8);
	m->flags = get32(p + 12);
	if (m->size > KILN_AGENT_MAX_FILE || m->mode > 07777 || m->flags != 0)
		return -EBADMSG;
	if (get_str(p, len, &pos, KILN_AGENT_MAX_PATH, &m->path) < 0)
		return -EBADMSG;
	if (pos != len || m->path[0] != '/')
		return -EBADMSG;
	return 0;
}

/* ---- RESTORED ---- */

/* A hostname's characters (length checked by the caller). */
static int hostname_ok(const char *h)
{
	for (const char *c = h; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '.'))
			return 0;
	return 1;
}

int kiln_agent_restored_encode(uint8_t *p, size_t cap,
			       const struct kiln_agent_restored *m)
{
	size_t pos = 8 + KILN_AGENT_ENTROPY;
	size_t idn = strnlen(m->id, sizeof(m->id)),
	       hn = strnlen(m->hostname, sizeof(m->hostname));

	if (idn == 0 || idn > KILN_AGENT_MAX_NAME || hn > 63 ||
	    !hostname_ok(m->hostname))
		return -EINVAL;
	if (cap < pos)
		return -ENOBUFS;
	put64(p, m->wall_ns);
	memcpy(p + 8, m->entropy, KILN_AGENT_ENTROPY);
	if (put_str(p, cap, &pos, m->id) < 0 ||
	    put_str(p, cap, &pos, m->hostname) < 0)
		return -ENOBUFS;
	return (int)pos;
}

int kiln_agent_restored_decode(const uint8_t *p, size_t len,
			       struct kiln_agent_restored *m)
{
	size_t pos = 8 + KILN_AGENT_ENTROPY;
	const char *id, *host;

	if (len < pos)
		return -EBADMSG;
	m->wall_ns = get64(p);
	memcpy(m->entropy, p + 8, KILN_AGENT_ENTROPY);
	if (get_str(p, len, &pos, KILN_AGENT_MAX_NAME + 1, &id) < 0 ||
	    get_str(p, len, &pos, 64, &host) < 0 || pos != len || !id[0])
		return -EBADMSG;
	if (!hostname_ok(host))
		return -EBADMSG;
	memcpy(m->id, id, strlen(id) + 1);
	memcpy(m->hostname, host, strlen(host) + 1);
	return 0;
}

int kiln_agent_restored_done_encode(uint8_t *p, size_t cap,
				    const struct kiln_agent_restored_done *m)
{
	if (m->clock_err > 4095 || m->entropy_err > 4095 ||
	    m->hostname_err > 4095)
		return -EINVAL;
	if (cap < 12)
		return -ENOBUFS;
	put32(p, m->clock_err);
	put32(p + 4, m->entropy_err);
	put32(p + 8, m->hostname_err);
	return 12;
}

int kiln_agent_restored_done_decode(const uint8_t *p, size_t len,
				    struct kiln_agent_restored_done *m)
{
	if (len != 12)
		return -EBADMSG;
	m->clock_err = get32(p);
	m->entropy_err = get32(p + 4);
	m->hostname_err = get32(p + 8);
	if (m->clock_err > 4095 || m->entropy_err > 4095 ||
	    m->hostname_err > 4095)
		return -EBADMSG;
	return 0;
}

/* ---- EXEC ---- */

#define EXEC_FIXED 28

static int env_valid(const char *e)
{
	const char *eq = strchr(e, '=');

	return eq && eq != e;
}

int kiln_agent_exec_encode(uint8_t *p, size_t cap,
			   const struct kiln_agent_exec_req *m)
{
	const char *cwd = m->cwd ? m->cwd : "";
	uint32_t argc = 0, envc = 0;
	size_t pos = EXEC_FIXED;

	if (!m->argv || !m->argv[0] || (m->flags & ~KILN_AGENT_EXEC_FLAGS) ||
	    strlen(cwd) >= KILN_AGENT_MAX_PATH)
		return -EINVAL;
	while (m->argv[argc])
		if (++argc > KILN_AGENT_MAX_ARGS)
			return -E2BIG;
	while (m->env && m->env[envc]) {
		if (!env_valid(m->env[envc]))
			return -EINVAL;
		if (++envc > KILN_AGENT_MAX_ENV)
			return -E2BIG;
	}
	if (cap < EXEC_FIXED)
		return -ENOBUFS;
	put32(p, m->flags);
	put32(p + 4, m->uid);
	put32(p + 8, m->gid);
	put32(p + 12, m->timeout_ms);
	put16(p + 16, m->rows);
	put16(p + 18, m->cols);
	put32(p + 20, argc);
	put32(p + 24, envc);
	/* filling a whole frame's worth means too big, not just cramped */
	if (put_str(p, cap, &pos, cwd) < 0)
		goto full;
	for (uint32_t i = 0; i < argc; i++)
		if (put_str(p, cap, &pos, m->argv[i]) < 0)
			goto full;
	for (uint32_t i = 0; i < envc; i++)
		if (put_str(p, cap, &pos, m->env[i]) < 0)
			goto full;
	if (pos > KILN_AGENT_MAX_FRAME)
		return -E2BIG;
	return (int)pos;
full:
	return cap >= KILN_AGENT_MAX_FRAME ? -E2BIG : -ENOBUFS;
}

int kiln_agent_exec_decode(const uint8_t *p, size_t len,
			   struct kiln_agent_exec_req *m,
			   struct kiln_agent_exec_vec *vec)
{
	size_t pos = EXEC_FIXED;

	if (len < EXEC_FIXED || len > KILN_AGENT_MAX_FRAME)
		return -EBADMSG;
	m->flags = get32(p);
	m->uid = get32(p + 4);
	m->gid = get32(p + 8);
	m->timeout_ms = get32(p + 12);
	m->rows = get16(p + 16);
	m->cols = get16(p + 18);
	m->argc = get32(p + 20);
	m->envc = get32(p + 24);
	if ((m->flags & ~KILN_AGENT_EXEC_FLAGS) || m->argc == 0 ||
	    m->argc > KILN_AGENT_MAX_ARGS || m->envc > KILN_AGENT_MAX_ENV)
		return -EBADMSG;
	/* each string takes at least 5 bytes: reject impossible counts early */
	if ((size_t)(1 + m->argc + m->envc) * 5 > len - EXEC_FIXED)
		return -EBADMSG;
	if (get_str(p, len, &pos, KILN_AGENT_MAX_PATH, &m->cwd) < 0)
		return -EBADMSG;
	for (uint32_t i = 0; i < m->argc; i++)
		if (get_str(p, len, &pos, len, &vec->argv[i]) < 0)
			return -EBADMSG;
	for (uint32_t i = 0; i < m->envc; i++) {
		if (get_str(p, len, &pos, len, &vec->env[i]) < 0 ||
		    !env_valid(vec->env[i]))
			return -EBADMSG;
	}
	if (pos != len)
		return -EBADMSG;
	vec->argv[m->argc] = NULL;
	vec->env[m->envc] = NULL;
	m->argv = vec->argv;
	m->env = vec->env;
	return 0;
}

/* ---- CLI statuses ---- */

int kiln_agent_exit_status(const struct kiln_agent_exit *m)
{
	if (m->flags & KILN_AGENT_EXIT_TIMED_OUT)
		return KILN_STATUS_TIMEOUT;
	if (m->how == KILN_AGENT_EXITED && m->value <= 255)
		return (int)m->value;
	if (m->how == KILN_AGENT_SIGNALED && m->value >= 1 && m->value <= 64)
		return 128 + (int)m->value;
	return KILN_STATUS_FAILED;
}

int kiln_agent_error_status(const struct kiln_agent_error *m)
{
	switch (m->what) {
	case KILN_AGENT_ERR_EXEC:
		return m->err == ENOENT ? KILN_STATUS_NOT_FOUND
					: KILN_STATUS_NOT_EXECUTABLE;
	case KILN_AGENT_ERR_SETUP: return KILN_STATUS_NOT_EXECUTABLE;
	}
	return KILN_STATUS_FAILED;
}
