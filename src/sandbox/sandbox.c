/* SPDX-License-Identifier: MIT */
/*
 * Sandboxes: a VM with kiln's agent as PID 1, reached over hybrid vsock.
 *
 * Boot: the agent listens on guest port KILN_AGENT_PORT and announces itself
 * by connecting to host port KILN_AGENT_READY_PORT, i.e. to the Unix socket
 * "<uds>_1025" we listen on before the VM starts (the host never polls the
 * guest). Then we CONNECT to the agent through "<uds>" and speak the exec
 * protocol (src/agent/client.c).
 *
 * A watcher thread waits for the VM to end and shuts the agent socket down,
 * so no call blocks on a guest that is gone.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kiln/kiln.h>

#include "agent/client.h"
#include "net/network.h"
#include "util/log.h"
#include "virtio/fs.h"
#include "virtio/net.h"
#include "virtio/vsock.h"
#include "vm/config.h"
#include "util/clock.h"
#include "util/thread.h"

_Static_assert(KILN_EXEC_MESSAGE_MAX == KILN_AGENT_MAX_MSG,
	       "kiln.h and agent_proto.h disagree on the message size");

/* Guest CID of a sandbox's private vsock device. */
#define SANDBOX_CID 3

struct kiln_sandbox {
	struct kiln_log log;
	struct kiln_vm *vm; /* NULL when attached */
	char *private_dir;  /* ours to remove at destroy, or NULL */
	char *uds;	    /* hybrid vsock socket */
	char *ready_path;   /* "<uds>_1025" while we listen there */
	int ready_fd;	    /* listening for the announcement, or -1 */
	struct kiln_agent *agent;

	pthread_t watcher;
	bool watching;
	pthread_mutex_t lock; /* guards agent_fd and watcher_saw_end */
	int agent_fd;	      /* the agent's socket, for the watcher */
	bool watcher_saw_end; /* so a late agent_fd is shut down too */
};

struct kiln_exec {
	struct kiln_sandbox *sb;
	struct kiln_agent_exec *e;
};

/* Milliseconds left until deadline (< 0: none), as a poll timeout. */
static int left_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

static void *watcher_main(void *arg)
{
	struct kiln_sandbox *sb = arg;

	kiln_vm_wait(sb->vm, -1, NULL);
	pthread_mutex_lock(&sb->lock);
	sb->watcher_saw_end = true;
	if (sb->agent_fd >= 0)
		shutdown(sb->agent_fd, SHUT_RDWR);
	pthread_mutex_unlock(&sb->lock);
	return NULL;
}

static bool vm_ended(struct kiln_sandbox *sb)
{
	return sb->vm && kiln_vm_outcome(sb->vm) != KILN_OUTCOME_NONE;
}

/* Logs how the VM ended; returns -EPIPE. */
static int vm_gone(struct kiln_sandbox *sb, const char *while_doing)
{
	struct kiln_exit_info info = {0};

	kiln_vm_wait(sb->vm, -1, &info);
	return kiln_errorf(&sb->log, -EPIPE, "the VM ended %s: %s: %s",
			   while_doing, kiln_outcome_name(info.outcome),
			   info.detail ? info.detail : "");
}

static struct kiln_sandbox *sandbox_alloc(void)
{
	struct kiln_sandbox *sb = calloc(1, sizeof(*sb));

	if (!sb)
		return NULL;
	sb->ready_fd = -1;
	sb->agent_fd = -1;
	pthread_mutex_init(&sb->lock, NULL);
	return sb;
}

/* A cluster network's card (options o): its MAC (a random locally
 * administered one unless given) and the member name go into o; the
 * address is leased from the network's switch now, before boot, so the
 * agent can be told: "MAC,ADDR/N,-,DNS" into buf. */
static int network_card(struct kiln_config *c, struct virtio_dev_opts *o,
			char *buf, size_t len)
{
	struct sw_hello h = {.kind = SW_HELLO_LEASE};
	const char *mac = virtio_dev_opts_get(o, "mac");
	const char *sw = virtio_dev_opts_get(o, "switch");
	char text[18], a[16], dns[16];
	struct sw_reply *r;
	struct in_addr ia;
	unsigned v[6];
	int err;

	if (!mac) {
		uint8_t m[6];

		if (getrandom(m, 6, 0) != 6)
			return kiln_errorf(&c->log, -EIO,
					   "sandbox: no random MAC: %s",
					   strerror(errno));
		m[0] = (uint8_t)((m[0] & 0xfc) | 0x02); /* local, unicast */
		snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x",
			 m[0], m[1], m[2], m[3], m[4], m[5]);
		err = virtio_dev_opts_add(o, "mac", text);
		if (err < 0)
			return err;
		mac = text;
	}
	if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5]) != 6)
		return -EINVAL; /* checked with the options: cannot happen */
	for (int i = 0; i < 6; i++)
		h.mac[i] = (uint8_t)v[i];
	/* as the agent reads it: lower case, no padding */
	snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", v[0],
		 v[1], v[2], v[3], v[4], v[5]);
	mac = text;
	if (c->hostname[0] && !virtio_dev_opts_find(o, "name", NULL)) {
		err = virtio_dev_opts_add(o, "name", c->hostname);
		if (err < 0)
			return err;
	}
	if (virtio_dev_opts_get(o, "name"))
		snprintf(h.name, sizeof(h.name), "%s",
			 virtio_dev_opts_get(o, "name"));
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	err = network_hello(sw, &h, r, 5000, NULL);
	if (err < 0) {
		free(r);
		return kiln_errorf(&c->log, err,
				   "sandbox: the network's switch at %s: %s "
				   "(is the network there? kiln network ls)",
				   sw, strerror(-err));
	}
	if (r->status) {
		err = kiln_errorf(&c->log, -r->status,
				  "sandbox: joining the network%s%s: %s",
				  h.name[0] ? " as " : "", h.name, r->text);
		free(r);
		return err;
	}
	ia.s_addr = htonl(r->addr);
	inet_ntop(AF_INET, &ia, a, sizeof(a));
	ia.s_addr = htonl(r->dns);
	inet_ntop(AF_INET, &ia, dns, sizeof(dns));
	snprintf(buf, len, "%s,%s/%u,-,%s", mac, a, r->prefix, dns);
	free(r);
	return 0;
}

/* "rdinit=/sbin/kiln-agent quiet [kiln.hostname=NAME]
 * [kiln.nic=MAC,ADDR/N,GW|-,DNS ...] kiln.mount=TAG:PATH[:ro] ..." before
 * the user's own arguments (so theirs win). */
static int sandbox_cmdline(struct kiln_config *c)
{
	size_t cap = 64 + (c->extra_cmdline ? strlen(c->extra_cmdline) : 0);
	const struct virtio_dev_opts *sh;
	char *s, *p;
	int i = -1;

	while ((sh = config_next_device(c, &virtio_fs_ops, &i))) {
		const char *mount = virtio_dev_opts_get(sh, "mount");

		cap += 32 + strlen(virtio_dev_opts_get(sh, "tag")) * 2 +
		       (mount ? strlen(mount) : 0);
	}
	cap += 112 * NET_MAX_CARDS + 80;	  /* kiln.nic=, hostname */
	cap += 16 + c->nr_ulimits * (8 + 2 * 21); /* kiln.ulimit= */
	s = malloc(cap);
	if (!s)
		return -ENOMEM;
	p = s + sprintf(s, "rdinit=/sbin/kiln-agent quiet");
	if (c->hostname[0])
		p += sprintf(p, " kiln.hostname=%s", c->hostname);
	i = -1;
	/* the cards the agent configures before it says it is ready */
	while ((sh = config_next_device(c, &virtio_net_ops, &i))) {
		char nic[96];
		int err = 0;

		if (virtio_dev_opts_find(sh, "switch", NULL))
			err = network_card(c, &c->devices[i], nic, sizeof(nic));
		else if (virtio_net_guest_config(sh, nic, sizeof(nic)) < 0)
			nic[0] = 0;
		if (err < 0) {
			free(s);
			return err;
		}
		if (nic[0])
			p += sprintf(p, " kiln.nic=%s", nic);
	}
	i = -1;
	while ((sh = config_next_device(c, &virtio_fs_ops, &i))) {
		const char *tag = virtio_dev_opts_get(sh, "tag");
		const char *mount = virtio_dev_opts_get(sh, "mount");
		bool ro = false;

		/* checked when the share was added: cannot fail */
		virtio_dev_opts_bool(sh, "ro", NULL, &ro);
		if (mount)
			p += sprintf(p, " kiln.mount=%s:%s", tag, mount);
		else
			p += sprintf(p, " kiln.mount=%s:/mnt/%s", tag, tag);
		if (ro)
			p += sprintf(p, ":ro");
	}
	/* the limits every exec starts with: kiln.ulimit=NAME=SOFT:HARD,... */
	for (unsigned u = 0; u < c->nr_ulimits; u++) {
		p += sprintf(p, "%s%s=", u ? "," : " kiln.ulimit=",
			     c->ulimits[u].name);
		if (c->ulimits[u].soft == KILN_ULIMIT_UNLIMITED)
			p += sprintf(p, "unlimited:");
		else
			p += sprintf(p, "%" PRIu64 ":", c->ulimits[u].soft);
		if (c->ulimits[u].hard == KILN_ULIMIT_UNLIMITED)
			p += sprintf(p, "unlimited");
		else
			p += sprintf(p, "%" PRIu64, c->ulimits[u].hard);
	}
	if (c->extra_cmdline && *c->extra_cmdline)
		sprintf(p, " %s", c->extra_cmdline);
	free(c->extra_cmdline);
	c->extra_cmdline = s;
	return 0;
}

/* A private directory for the vsock sockets: $XDG_RUNTIME_DIR or /tmp. */
static int make_private_dir(struct kiln_sandbox *sb)
{
	const char *base = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	char *tmpl;

	if (!base || base[0] != '/' || stat(base, &st) < 0 ||
	    !S_ISDIR(st.st_mode) || access(base, W_OK) < 0)
		base = "/tmp";
	if (asprintf(&tmpl, "%s/kiln-sandbox-XXXXXX", base) < 0)
		return -ENOMEM;
	if (!mkdtemp(tmpl)) {
		int err = -errno;

		free(tmpl);
		return kiln_errorf(&sb->log, err,
				   "sandbox: cannot make a directory in %s: %s",
				   base, strerror(-err));
	}
	sb->private_dir = tmpl;
	if (asprintf(&sb->uds, "%s/vsock", tmpl) < 0) {
		sb->uds = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* A new sandbox logging as cfg says, and a copy of cfg to build its VM
 * from: 0, or -ENOMEM with neither. */
static int sandbox_begin(const struct kiln_config *cfg,
			 struct kiln_sandbox **sb, struct kiln_config **c)
{
	*sb = sandbox_alloc();
	*c = *sb ? config_clone(cfg) : NULL;
	if (!*c) {
		free(*sb);
		*sb = NULL;
		return -ENOMEM;
	}
	(*sb)->log = cfg->log;
	return 0;
}

/* The agent's vsock socket: the config's vsock device's, else one in a
 * private directory, added to c. 0 or -errno. */
static int agent_socket(struct kiln_sandbox *sb, struct kiln_config *c)
{
	int at = -1;
	const struct virtio_dev_opts *vsock =
		config_next_device(c, &virtio_vsock_ops, &at);
	int err;

	if (vsock) {
		sb->uds = strdup(virtio_dev_opts_get(vsock, "uds"));
		return sb->uds ? 0 : -ENOMEM;
	}
	err = make_private_dir(sb);
	if (err == 0)
		err = kiln_config_set_vsock(c, SANDBOX_CID, sb->uds);
	return err;
}

KILN_API int kiln_sandbox_create(const struct kiln_config *cfg,
				 struct kiln_sandbox **out)
{
	struct kiln_sandbox *sb;
	struct kiln_config *c;
	int err;

	*out = NULL;
	if (!cfg->kernel_path)
		return kiln_errorf(
			&cfg->log, -EINVAL,
			"sandbox: no kernel (use "
			"kiln_config_set_guest_dir for kiln's guest)");
	err = sandbox_begin(cfg, &sb, &c);
	if (err < 0)
		return err;
	err = sandbox_cmdline(c);
	if (err < 0)
		goto fail;
	err = agent_socket(sb, c);
	if (err < 0)
		goto fail;
	if (asprintf(&sb->ready_path, "%s_%u", sb->uds, KILN_AGENT_READY_PORT) <
	    0) {
		sb->ready_path = NULL;
		err = -ENOMEM;
		goto fail;
	}
	/* before the VM starts: the agent announces itself only once */
	sb->ready_fd = kiln_agent_listen_hybrid(sb->uds, KILN_AGENT_READY_PORT,
						&sb->log);
	if (sb->ready_fd < 0) {
		err = sb->ready_fd;
		goto fail;
	}
	err = kiln_vm_create(c, &sb->vm);
	kiln_config_free(c);
	c = NULL;
	if (err < 0)
		goto fail;
	err = kiln_vm_start(sb->vm);
	if (err < 0)
		goto fail;
	if (thread_start_blocked(&sb->watcher, watcher_main, sb) != 0) {
		err = kiln_errorf(&sb->log, -EAGAIN,
				  "sandbox: cannot start a thread");
		goto fail;
	}
	sb->watching = true;
	*out = sb;
	return 0;
fail:
	kiln_config_free(c);
	kiln_sandbox_destroy(sb);
	return err;
}

/* Dials the agent and says HELLO; the fd is published for the watcher. */
static int connect_agent(struct kiln_sandbox *sb, int64_t deadline)
{
	int fd = kiln_agent_dial_hybrid(sb->uds, KILN_AGENT_PORT,
					left_ms(deadline), &sb->log);
	int err;

	if (fd < 0)
		return fd;
	pthread_mutex_lock(&sb->lock);
	sb->agent_fd = fd;
	if (sb->watcher_saw_end)
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&sb->lock);
	/* connect takes the fd, and closes it on failure */
	err = kiln_agent_connect(fd, &sb->log, left_ms(deadline), &sb->agent);
	if (err < 0) {
		pthread_mutex_lock(&sb->lock);
		sb->agent_fd = -1;
		pthread_mutex_unlock(&sb->lock);
	}
	return err;
}

KILN_API int kiln_sandbox_wait_ready(struct kiln_sandbox *sb, int timeout_ms)
{
	int64_t start = now_ms();
	int64_t deadline = timeout_ms < 0 ? -1 : start + timeout_ms;
	struct kiln_agent_ready ready;
	int err;

	if (sb->agent)
		return 0;
	if (!sb->vm || sb->ready_fd < 0)
		return -EINVAL;
	for (;;) {
		/* the agent's READY, or the VM's end: no polling in slices */
		struct pollfd pfd[2] = {
			{.fd = sb->ready_fd, .events = POLLIN},
			{.fd = kiln_vm_end_fd(sb->vm), .events = POLLIN},
		};
		int n;

		if (vm_ended(sb))
			return vm_gone(sb, "before its agent was ready");
		n = poll(pfd, 2, left_ms(deadline));
		if (n < 0 && errno != EINTR)
			return kiln_errorf(&sb->log, -errno,
					   "sandbox: poll: %s",
					   strerror(errno));
		if (n > 0 && (pfd[0].revents & POLLIN))
			break;
		if (deadline >= 0 && now_ms() >= deadline)
			return kiln_errorf(
				&sb->log, -ETIMEDOUT,
				"sandbox: the agent was not ready within %d ms "
				"(the console log may say why; is the "
				"initramfs "
				"kiln's, with /sbin/kiln-agent?)",
				timeout_ms);
	}
	err = kiln_agent_accept_ready(sb->ready_fd, left_ms(deadline), &sb->log,
				      &ready);
	if (err < 0)
		return err;
	close(sb->ready_fd);
	sb->ready_fd = -1;
	unlink(sb->ready_path);
	err = connect_agent(sb, deadline);
	if (err < 0)
		return err;
	log_debug(&sb->log, "sandbox: agent '%s' ready after %lld ms",
		  kiln_agent_peer(sb->agent)->name,
		  (long long)(now_ms() - start));
	return 0;
}

KILN_API int kiln_sandbox_attach(const char *vsock_uds, kiln_log_fn log,
				 void *opaque, enum kiln_log_level max_level,
				 int timeout_ms, struct kiln_sandbox **out)
{
	struct kiln_sandbox *sb;
	int err;

	*out = NULL;
	sb = sandbox_alloc();
	if (!sb)
		return -ENOMEM;
	sb->log = (struct kiln_log){log, opaque, max_level};
	if (!vsock_uds || !*vsock_uds) {
		err = kiln_errorf(&sb->log, -EINVAL,
				  "attach: empty socket path");
		goto fail;
	}
	sb->uds = strdup(vsock_uds);
	if (!sb->uds) {
		err = -ENOMEM;
		goto fail;
	}
	err = connect_agent(sb, timeout_ms < 0 ? -1 : now_ms() + timeout_ms);
	if (err < 0)
		goto fail;
	*out = sb;
	return 0;
fail:
	kiln_sandbox_destroy(sb);
	return err;
}

KILN_API struct kiln_vm *kiln_sandbox_vm(struct kiln_sandbox *sb)
{
	return sb->vm;
}

KILN_API const char *kiln_sandbox_vsock_path(const struct kiln_sandbox *sb)
{
	return sb->uds;
}

/* -EPIPE with the VM's fate when a connection error came from its end. */
static int map_error(struct kiln_sandbox *sb, int err, const char *what)
{
	if (err < 0 && err != -ETIMEDOUT && vm_ended(sb))
		return vm_gone(sb, what);
	return err;
}

static int need_agent(struct kiln_sandbox *sb)
{
	if (sb->agent)
		return 0;
	return kiln_errorf(&sb->log, -ENOTCONN,
			   "sandbox: the agent is not connected (call "
			   "kiln_sandbox_wait_ready first)");
}

KILN_API int kiln_sandbox_exec(struct kiln_sandbox *sb,
			       const struct kiln_exec_opts *o,
			       struct kiln_exec **out)
{
	struct kiln_exec *x;
	int err;

	*out = NULL;
	err = need_agent(sb);
	if (err < 0)
		return err;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->sb = sb;
	err = kiln_agent_exec_start(sb->agent, o, &x->e);
	if (err < 0) {
		free(x);
		return map_error(sb, err, "while starting a command");
	}
	*out = x;
	return 0;
}

KILN_API int kiln_exec_write_stdin(struct kiln_exec *e, const void *buf,
				   size_t len, int timeout_ms)
{
	return map_error(
		e->sb, kiln_agent_exec_write_stdin(e->e, buf, len, timeout_ms),
		"while writing stdin");
}

KILN_API int kiln_exec_close_stdin(struct kiln_exec *e)
{
	return map_error(e->sb, kiln_agent_exec_close_stdin(e->e),
			 "while closing stdin");
}

KILN_API int kiln_exec_kill(struct kiln_exec *e, int signo)
{
	return kiln_agent_exec_signal(e->e, signo, 1);
}

KILN_API int kiln_exec_resize(struct kiln_exec *e, unsigned rows, unsigned cols)
{
	return kiln_agent_exec_resize(e->e, rows, cols);
}

KILN_API int kiln_exec_wait(struct kiln_exec *e, int timeout_ms,
			    struct kiln_exec_result *res)
{
	return map_error(e->sb, kiln_agent_exec_wait(e->e, timeout_ms, res),
			 "while a command ran");
}

KILN_API void kiln_exec_free(struct kiln_exec *e)
{
	if (!e)
		return;
	kiln_agent_exec_free(e->e);
	free(e);
}

KILN_API int kiln_sandbox_run(struct kiln_sandbox *sb,
			      const struct kiln_exec_opts *o, int timeout_ms,
			      struct kiln_exec_result *res)
{
	struct kiln_exec *e;
	int err = kiln_sandbox_exec(sb, o, &e);

	if (err < 0)
		return err;
	err = kiln_exec_wait(e, timeout_ms, res);
	kiln_exec_free(e);
	return err;
}

KILN_API int kiln_sandbox_put_file(struct kiln_sandbox *sb, const char *path,
				   unsigned mode, int fd, uint64_t size,
				   int timeout_ms)
{
	int err = need_agent(sb);

	if (err < 0)
		return err;
	return map_error(sb,
			 kiln_agent_put_file(sb->agent, path, mode, fd, size,
					     timeout_ms),
			 "while copying a file in");
}

KILN_API int kiln_sandbox_get_file(struct kiln_sandbox *sb, const char *path,
				   uint64_t max_size, int fd, int timeout_ms,
				   uint64_t *size)
{
	int err = need_agent(sb);

	if (err < 0)
		return err;
	return map_error(sb,
			 kiln_agent_get_file(sb->agent, path, max_size, fd,
					     timeout_ms, size),
			 "while copying a file out");
}

KILN_API int kiln_sandbox_stop(struct kiln_sandbox *sb, int grace_ms,
			       struct kiln_exit_info *info)
{
	int64_t deadline = now_ms() + (grace_ms < 0 ? 0 : grace_ms);

	if (sb->agent)
		kiln_agent_shutdown(sb->agent, grace_ms < 0 ? 0 : grace_ms);
	if (!sb->vm)
		return 0;
	while (!vm_ended(sb) && now_ms() < deadline) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	if (!vm_ended(sb))
		kiln_vm_stop(sb->vm);
	return kiln_vm_wait(sb->vm, -1, info);
}

KILN_API void kiln_sandbox_destroy(struct kiln_sandbox *sb)
{
	if (!sb)
		return;
	if (sb->vm)
		kiln_vm_stop(sb->vm);
	if (sb->watching)
		pthread_join(sb->watcher, NULL);
	kiln_agent_close(sb->agent);
	kiln_vm_destroy(sb->vm);
	if (sb->ready_fd >= 0) {
		close(sb->ready_fd);
		unlink(sb->ready_path);
	}
	if (sb->private_dir) {
		if (sb->uds)
			unlink(sb->uds);
		rmdir(sb->private_dir);
	}
	pthread_mutex_destroy(&sb->lock);
	free(sb->private_dir);
	free(sb->uds);
	free(sb->ready_path);
	free(sb);
}

/* ---- snapshots: templates and their clones ---- */

/* The agent's connection, closed (its running commands end with it). */
static void drop_agent(struct kiln_sandbox *sb)
{
	pthread_mutex_lock(&sb->lock);
	sb->agent_fd = -1;
	pthread_mutex_unlock(&sb->lock);
	kiln_agent_close(sb->agent);
	sb->agent = NULL;
}

KILN_API int kiln_sandbox_snapshot(struct kiln_sandbox *sb, const char *dir)
{
	int64_t deadline = now_ms() + 5000;
	int err;

	if (!sb->vm)
		return kiln_errorf(&sb->log, -EINVAL,
				   "snapshot: an attached sandbox has no VM "
				   "here (its own process snapshots it)");
	if (kiln_vm_accel(sb->vm) != KILN_ACCEL_KVM)
		return kiln_errorf(
			&sb->log, -ENOTSUP,
			"snapshot: the sandbox runs on the emulating "
			"engine (tcg), which cannot snapshot; "
			"kiln's KVM engine can");
	/* a template has no host connection: ours goes, and the snapshot
	 * waits (briefly) for the guest to finish closing it */
	drop_agent(sb);
	do {
		err = kiln_vm_snapshot(sb->vm, dir);
		if (err == -EBUSY)
			usleep(10000);
	} while (err == -EBUSY && now_ms() < deadline);
	if (err == -EBUSY)
		kiln_errorf(&sb->log, err,
			    "snapshot: the sandbox keeps connections open "
			    "(another kiln exec or cp?): a template has none");
	/* the sandbox goes on: connected again */
	if (!vm_ended(sb)) {
		int r = connect_agent(sb, now_ms() + 10000);

		if (r < 0 && err == 0)
			err = r;
	}
	return err;
}

/* What makes a clone of a snapshot itself: the time now, fresh entropy,
 * a new id; logged and refused if the agent could not take them. */
static int tell_restored(struct kiln_sandbox *sb, const char *hostname,
			 int64_t deadline)
{
	struct kiln_agent_restored m;
	struct kiln_agent_restored_done done;
	struct timespec ts;
	uint8_t idb[8];
	int err;

	memset(&m, 0, sizeof(m));
	clock_gettime(CLOCK_REALTIME, &ts);
	m.wall_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (getrandom(m.entropy, sizeof(m.entropy), 0) !=
		    (ssize_t)sizeof(m.entropy) ||
	    getrandom(idb, sizeof(idb), 0) != (ssize_t)sizeof(idb))
		return kiln_errorf(&sb->log, -EIO,
				   "restore: no entropy from the host "
				   "(getrandom)");
	snprintf(m.id, sizeof(m.id), "%02x%02x%02x%02x%02x%02x%02x%02x", idb[0],
		 idb[1], idb[2], idb[3], idb[4], idb[5], idb[6], idb[7]);
	snprintf(m.hostname, sizeof(m.hostname), "%s", hostname);
	err = kiln_agent_restored(sb->agent, &m, left_ms(deadline), &done);
	explicit_bzero(m.entropy, sizeof(m.entropy));
	if (err < 0)
		return kiln_errorf(&sb->log, err,
				   "restore: the agent did not take RESTORED: "
				   "%s",
				   strerror(-err));
	/* two clones must never share a random stream or an old clock */
	if (done.entropy_err || done.clock_err)
		return kiln_errorf(
			&sb->log, -EIO, "restore: the agent could not %s (%s)",
			done.entropy_err ? "reseed its random "
					   "generator"
					 : "set its clock",
			strerror((int)(done.entropy_err ? done.entropy_err
							: done.clock_err)));
	if (done.hostname_err)
		kiln_logf(&sb->log, KILN_LOG_WARN,
			  "restore: the agent could not set hostname %s: %s",
			  hostname, strerror((int)done.hostname_err));
	log_debug(&sb->log, "sandbox: restored as %s", m.id);
	return 0;
}

KILN_API int kiln_sandbox_restore(const struct kiln_config *cfg,
				  const char *dir, int timeout_ms,
				  struct kiln_sandbox **out)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	struct kiln_sandbox *sb;
	struct kiln_config *c;
	int err;

	*out = NULL;
	err = sandbox_begin(cfg, &sb, &c);
	if (err < 0)
		return err;
	/* the clone's own vsock socket (the snapshot's belongs to the
	 * sandbox it was taken of) */
	err = agent_socket(sb, c);
	if (err == 0)
		err = kiln_vm_restore(c, dir, 0, &sb->vm);
	/* the restored vsock device listens on the clone's socket; none
	 * there: the snapshot was not of a sandbox */
	if (err == 0 && access(sb->uds, F_OK) < 0)
		err = kiln_errorf(&sb->log, -EINVAL,
				  "restore: %s is not a sandbox template (its "
				  "VM has no vsock device for an agent)",
				  dir);
	if (err == 0)
		err = kiln_vm_start(sb->vm);
	if (err == 0 &&
	    thread_start_blocked(&sb->watcher, watcher_main, sb) != 0)
		err = kiln_errorf(&sb->log, -EAGAIN,
				  "sandbox: cannot start a thread");
	else if (err == 0)
		sb->watching = true;
	/* its agent listens already: dial it, then make it a clone */
	if (err == 0)
		err = connect_agent(sb, deadline);
	if (err == 0)
		err = tell_restored(sb, c->hostname, deadline);
	kiln_config_free(c);
	if (err < 0) {
		kiln_sandbox_destroy(sb);
		return err;
	}
	*out = sb;
	return 0;
}
