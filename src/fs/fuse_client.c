/* SPDX-License-Identifier: MIT */
#include "fuse_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fuse_client_open(struct fuse_client *c, struct fuse_server *s)
{
	memset(c, 0, sizeof(*c));
	c->s = s;
	c->chain = calloc(1, sizeof(*c->chain));
	c->req = malloc(FUSE_CLIENT_ARG_MAX);
	if (!c->chain || !c->req) {
		fuse_client_close(c);
		return -ENOMEM;
	}
	return 0;
}

void fuse_client_close(struct fuse_client *c)
{
	free(c->chain);
	free(c->req);
	c->chain = NULL;
	c->req = NULL;
}

int fuse_client_call(struct fuse_client *c, uint32_t opcode, uint64_t nodeid,
		     const void *arg, size_t arg_len, const struct iovec *data,
		     unsigned n_data, void *rbuf, size_t rcap, size_t *rlen)
{
	struct fuse_in_header h = {
		.opcode = opcode,
		.unique = ++c->unique,
		.nodeid = nodeid,
		.uid = c->uid,
		.gid = c->gid,
		.pid = c->pid,
	};
	struct virtq_chain *ch = c->chain;
	uint64_t len = sizeof(h) + arg_len;
	uint32_t written;

	if (rlen)
		*rlen = 0;
	if (arg_len > FUSE_CLIENT_ARG_MAX - sizeof(h) ||
	    n_data > VIRTQ_MAX_SEGS - 1)
		return -E2BIG;
	ch->n_out = ch->n_in = 0;
	ch->out_len = ch->in_len = 0;
	for (unsigned i = 0; i < n_data; i++)
		len += data[i].iov_len;
	h.len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
	memcpy(c->req, &h, sizeof(h));
	if (arg_len)
		memcpy(c->req + sizeof(h), arg, arg_len);
	ch->out[ch->n_out++] = (struct iovec){c->req, sizeof(h) + arg_len};
	ch->out_len = sizeof(h) + arg_len;
	for (unsigned i = 0; i < n_data; i++) {
		ch->out[ch->n_out++] = data[i];
		ch->out_len += data[i].iov_len;
	}
	ch->in[ch->n_in++] = (struct iovec){&c->rep_hdr, sizeof(c->rep_hdr)};
	ch->in_len = sizeof(c->rep_hdr);
	if (rcap) {
		ch->in[ch->n_in++] = (struct iovec){rbuf, rcap};
		ch->in_len += rcap;
	}

	c->last_ret = fuse_server_handle(c->s, ch, &written);
	if (c->last_ret < 0)
		return -EPROTO;
	if (written == 0)
		return 1;
	if (written < sizeof(c->rep_hdr) || written > ch->in_len ||
	    c->rep_hdr.len != written || c->rep_hdr.unique != h.unique ||
	    c->rep_hdr.error > 0 || c->rep_hdr.error < -4095 ||
	    (c->rep_hdr.error && written != sizeof(c->rep_hdr)))
		return -EPROTO;
	if (rlen)
		*rlen = written - sizeof(c->rep_hdr);
	return c->rep_hdr.error;
}

size_t fuse_client_args(void *buf, size_t cap, const void *fixed,
			size_t fixed_len, const char *s1, const char *s2)
{
	size_t l1 = s1 ? strlen(s1) + 1 : 0, l2 = s2 ? strlen(s2) + 1 : 0;
	uint8_t *p = buf;

	if (fixed_len > cap || l1 > cap - fixed_len ||
	    l2 > cap - fixed_len - l1)
		return 0;
	if (fixed_len)
		memcpy(p, fixed, fixed_len);
	if (l1)
		memcpy(p + fixed_len, s1, l1);
	if (l2)
		memcpy(p + fixed_len + l1, s2, l2);
	return fixed_len + l1 + l2;
}

/* A call whose reply body must be exactly `len` bytes when it succeeds. */
static int call_fixed(struct fuse_client *c, uint32_t opcode, uint64_t nodeid,
		      const void *arg, size_t arg_len, void *out, size_t len)
{
	size_t got;
	int err = fuse_client_call(c, opcode, nodeid, arg, arg_len, NULL, 0,
				   out, len, &got);

	if (err == 0 && got != len)
		return -EPROTO;
	return err;
}

int fuse_client_init(struct fuse_client *c, struct fuse_init_out *out)
{
	struct fuse_init_in in = {
		.major = FUSE_KERNEL_VERSION,
		.minor = FUSE_KERNEL_MINOR_VERSION,
		.max_readahead = 1u << 20,
		.flags = 0xffffffffu,
	};
	struct fuse_init_out tmp;

	return call_fixed(c, FUSE_INIT, 0, &in, sizeof(in), out ? out : &tmp,
			  sizeof(tmp));
}

int fuse_client_lookup(struct fuse_client *c, uint64_t parent, const char *name,
		       struct fuse_entry_out *e)
{
	return call_fixed(c, FUSE_LOOKUP, parent, name, strlen(name) + 1, e,
			  sizeof(*e));
}

int fuse_client_forget(struct fuse_client *c, uint64_t nodeid, uint64_t n)
{
	struct fuse_forget_in in = {.nlookup = n};
	int err = fuse_client_call(c, FUSE_FORGET, nodeid, &in, sizeof(in),
				   NULL, 0, NULL, 0, NULL);

	return err == 1 ? 0 : err < 0 ? err : -EPROTO;
}

int fuse_client_getattr(struct fuse_client *c, uint64_t nodeid,
			struct fuse_attr *a)
{
	struct fuse_getattr_in in = {0};
	struct fuse_attr_out out;
	int err = call_fixed(c, FUSE_GETATTR, nodeid, &in, sizeof(in), &out,
			     sizeof(out));

	if (!err && a)
		*a = out.attr;
	return err;
}

int fuse_client_mkdir(struct fuse_client *c, uint64_t parent, const char *name,
		      uint32_t mode, struct fuse_entry_out *e)
{
	struct fuse_mkdir_in in = {.mode = mode};
	uint8_t buf[sizeof(in) + 4096 + 1];
	size_t n =
		fuse_client_args(buf, sizeof(buf), &in, sizeof(in), name, NULL);

	if (!n)
		return -E2BIG;
	return call_fixed(c, FUSE_MKDIR, parent, buf, n, e, sizeof(*e));
}

int fuse_client_create(struct fuse_client *c, uint64_t parent, const char *name,
		       uint32_t flags, uint32_t mode, struct fuse_entry_out *e,
		       uint64_t *fh)
{
	struct fuse_create_in in = {.flags = flags, .mode = mode};
	struct {
		struct fuse_entry_out e;
		struct fuse_open_out o;
	} out;
	uint8_t buf[sizeof(in) + 4096 + 1];
	size_t n =
		fuse_client_args(buf, sizeof(buf), &in, sizeof(in), name, NULL);
	int err;

	if (!n)
		return -E2BIG;
	err = call_fixed(c, FUSE_CREATE, parent, buf, n, &out, sizeof(out));
	if (!err) {
		if (e)
			*e = out.e;
		*fh = out.o.fh;
	}
	return err;
}

int fuse_client_unlink(struct fuse_client *c, uint64_t parent, const char *name)
{
	return call_fixed(c, FUSE_UNLINK, parent, name, strlen(name) + 1, NULL,
			  0);
}

static int open_common(struct fuse_client *c, uint32_t opcode, uint64_t nodeid,
		       uint32_t flags, uint64_t *fh)
{
	struct fuse_open_in in = {.flags = flags};
	struct fuse_open_out out;
	int err = call_fixed(c, opcode, nodeid, &in, sizeof(in), &out,
			     sizeof(out));

	if (!err)
		*fh = out.fh;
	return err;
}

int fuse_client_openfile(struct fuse_client *c, uint64_t nodeid, uint32_t flags,
			 uint64_t *fh)
{
	return open_common(c, FUSE_OPEN, nodeid, flags, fh);
}

int fuse_client_opendir(struct fuse_client *c, uint64_t nodeid, uint64_t *fh)
{
	return open_common(c, FUSE_OPENDIR, nodeid, 0, fh);
}

int fuse_client_release(struct fuse_client *c, uint64_t nodeid, uint64_t fh,
			int dir)
{
	struct fuse_release_in in = {.fh = fh};

	return call_fixed(c, dir ? FUSE_RELEASEDIR : FUSE_RELEASE, nodeid, &in,
			  sizeof(in), NULL, 0);
}

ssize_t fuse_client_read(struct fuse_client *c, uint64_t nodeid, uint64_t fh,
			 uint64_t off, void *buf, uint32_t size)
{
	struct fuse_read_in in = {.fh = fh, .offset = off, .size = size};
	size_t got;
	int err = fuse_client_call(c, FUSE_READ, nodeid, &in, sizeof(in), NULL,
				   0, buf, size, &got);

	return err ? err : (ssize_t)got;
}

ssize_t fuse_client_write(struct fuse_client *c, uint64_t nodeid, uint64_t fh,
			  uint64_t off, const void *buf, uint32_t size)
{
	struct fuse_write_in in = {.fh = fh, .offset = off, .size = size};
	struct fuse_write_out out;
	struct iovec data = {(void *)buf, size};
	int err = fuse_client_call(c, FUSE_WRITE, nodeid, &in, sizeof(in),
				   &data, 1, &out, sizeof(out), NULL);

	return err ? err : (ssize_t)out.size;
}
