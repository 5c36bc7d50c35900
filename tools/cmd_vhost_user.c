/* SPDX-License-Identifier: MIT */
/*
 * kiln vhost-user — serve one kiln virtio device to another VMM (QEMU)
 * over a vhost-user socket until SIGINT/SIGTERM, one front-end after the
 * other. Exit status: 0 stopped by a signal, 2 usage error, 125 failure.
 *
 * --device takes TYPE,key=value,... ; each type has a table entry naming
 * its keys and a function that builds the device, so fs/vsock/net slot in
 * beside blk.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>

#include "backends/block.h"
#include "commands.h"
#include "util/log.h"
#include "vhost_user/server.h"
#include "virtio/blk.h"
#include "virtio/fs.h"
#include "virtio/vsock.h"

#define EXIT_USAGE	 2
#define EXIT_KILN_FAILED 125
#define MAX_KEYS	 16

struct kv {
	const char *key;
	const char *val; /* NULL for a bare flag such as "ro" */
};

struct device_spec {
	char *buf; /* the --device argument, cut up in place */
	const char *type;
	struct kv kvs[MAX_KEYS];
	unsigned n;
};

/* What a built device holds on to, released by its type's destroy. */
struct device {
	struct virtio_dev dev;
	struct block_backend *be;
};

struct device_type {
	const char *name;
	const char *const *keys; /* NULL-terminated */
	/* 0, -EINVAL for a bad value (usage error, already reported), or
	 * another -errno (kiln failed, logged) */
	int (*create)(const struct device_spec *spec,
		      const struct kiln_log *log, struct device *out);
	void (*destroy)(struct device *d);
	/* optional: hooks the device's own events into the server */
	int (*serve)(struct device *d, struct vhost_user_server *s);
};

static struct vhost_user_server *server;

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kiln: vhost-user: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr,
		"\nTry 'kiln vhost-user --help' for more information.\n");
}

static void print_help(FILE *f)
{
	fprintf(f,
		"Usage: kiln vhost-user --socket PATH --device "
		"TYPE,KEY=VALUE,...\n"
		"\n"
		"Serve one virtio device to another VMM (e.g. QEMU's\n"
		"-device vhost-user-blk) over a vhost-user Unix socket, one\n"
		"front-end at a time, until SIGINT or SIGTERM.\n"
		"\n"
		"Options:\n"
		"  --socket PATH    listen here (a stale socket is replaced)\n"
		"  --device SPEC    the device to serve:\n"
		"                     blk,path=IMAGE[,ro]  raw disk image or "
		"block\n"
		"                                          device; ro: "
		"read-only\n"
		"                     fs,dir=DIR,tag=TAG[,ro]  virtio-fs: "
		"share DIR\n"
		"                                          as TAG (guest: "
		"mount -t\n"
		"                                          virtiofs TAG "
		"/mnt); ro: read-only\n"
		"                     vsock,cid=CID,uds=PATH  virtio-vsock, "
		"guest CID\n"
		"                                          CID; host end: "
		"Unix sockets\n"
		"                                          (PATH: CONNECT "
		"PORT; PATH_PORT)\n"
		"  -v, --verbose    log every vhost-user message\n"
		"  -h, --help       show this help\n"
		"\n"
		"Exit status: 0 stopped by a signal; 2 usage error; 125 kiln "
		"failed.\n");
}

static void log_to_stderr(void *opaque, enum kiln_log_level level,
			  const char *msg)
{
	(void)opaque;
	fprintf(stderr, "kiln: %s%s\n",
		level == KILN_LOG_WARN ? "warning: " : "", msg);
}

static void on_signal(int sig)
{
	(void)sig;
	if (server)
		vhost_user_server_stop(server);
}

static const struct kv *spec_get(const struct device_spec *spec,
				 const char *key)
{
	for (unsigned i = 0; i < spec->n; i++)
		if (!strcmp(spec->kvs[i].key, key))
			return &spec->kvs[i];
	return NULL;
}

/* Boolean key: absent false, bare "key" true, else on/off/yes/no/1/0. */
static int spec_bool(const struct device_spec *spec, const char *key, bool *out)
{
	const struct kv *kv = spec_get(spec, key);

	*out = false;
	if (!kv)
		return 0;
	if (!kv->val || !strcmp(kv->val, "on") || !strcmp(kv->val, "yes") ||
	    !strcmp(kv->val, "1") || !strcmp(kv->val, "true")) {
		*out = true;
		return 0;
	}
	if (!strcmp(kv->val, "off") || !strcmp(kv->val, "no") ||
	    !strcmp(kv->val, "0") || !strcmp(kv->val, "false"))
		return 0;
	usage_error("--device %s: %s=%s is not on or off", spec->type, key,
		    kv->val);
	return -EINVAL;
}

static int blk_create(const struct device_spec *spec,
		      const struct kiln_log *log, struct device *out)
{
	const struct kv *path = spec_get(spec, "path");
	bool ro;
	int err;

	if (!path || !path->val || !*path->val) {
		usage_error("--device blk: path=IMAGE is required");
		return -EINVAL;
	}
	if (spec_bool(spec, "ro", &ro) < 0)
		return -EINVAL;
	err = block_raw_open(path->val, ro, log, &out->be);
	if (err < 0)
		return err == -EINVAL ? -EIO : err;
	err = virtio_blk_create(out->be, ro, &out->dev);
	if (err < 0) {
		block_backend_destroy(out->be);
		out->be = NULL;
		log_error(log, "blk: %s", strerror(-err));
		return err == -EINVAL ? -EIO : err;
	}
	return 0;
}

static void blk_destroy(struct device *d)
{
	virtio_blk_destroy(&d->dev);
	block_backend_destroy(d->be);
	d->be = NULL;
}

static const char *const blk_keys[] = {"path", "ro", NULL};

static int fs_create(const struct device_spec *spec, const struct kiln_log *log,
		     struct device *out)
{
	const struct kv *dir = spec_get(spec, "dir");
	const struct kv *tag = spec_get(spec, "tag");
	struct rlimit rl;
	bool ro;
	int err;

	if (!dir || !dir->val || !*dir->val) {
		usage_error("--device fs: dir=DIR is required");
		return -EINVAL;
	}
	if (!tag || !tag->val || !*tag->val) {
		usage_error("--device fs: tag=TAG is required");
		return -EINVAL;
	}
	if (spec_bool(spec, "ro", &ro) < 0)
		return -EINVAL;
	/* Every inode the guest looks up is a host fd, and the share's
	 * limits are fitted to RLIMIT_NOFILE: take all this process may. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	err = virtio_fs_create(dir->val, tag->val, ro, log, &out->dev);
	if (err == -EINVAL) {
		/* the directory was checked above: the tag is the problem */
		usage_error("--device fs: tag=%s: 1..%u bytes, no spaces",
			    tag->val, VIRTIO_FS_TAG_MAX);
		return -EINVAL;
	}
	return err;
}

static void fs_destroy(struct device *d)
{
	virtio_fs_destroy(&d->dev);
}

static const char *const fs_keys[] = {"dir", "tag", "ro", NULL};

static int vsock_create(const struct device_spec *spec,
			const struct kiln_log *log, struct device *out)
{
	const struct kv *cid = spec_get(spec, "cid");
	const struct kv *uds = spec_get(spec, "uds");
	struct virtio_vsock_config cfg;
	uintmax_t v;
	char *end;
	int err;

	if (!cid || !cid->val || !*cid->val) {
		usage_error("--device vsock: cid=CID is required");
		return -EINVAL;
	}
	errno = 0;
	v = strtoumax(cid->val, &end, 10);
	if (errno || *end || cid->val[0] == '-' || v < 3 || v >= UINT32_MAX) {
		usage_error("--device vsock: cid=%s is not a number in 3..%u",
			    cid->val, UINT32_MAX - 1);
		return -EINVAL;
	}
	if (!uds || !uds->val || !*uds->val) {
		usage_error("--device vsock: uds=PATH is required");
		return -EINVAL;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.guest_cid = v;
	cfg.uds_path = uds->val;
	out->dev.log = log;
	err = virtio_vsock_create(&cfg, &out->dev);
	if (err == -ENAMETOOLONG) {
		usage_error("--device vsock: uds=%s is too long", uds->val);
		return -EINVAL;
	}
	return err == -EINVAL ? -EIO : err;
}

static void vsock_destroy(struct device *d)
{
	virtio_vsock_destroy(&d->dev);
}

static void vsock_events(void *opaque)
{
	virtio_vsock_handle_events(opaque);
}

/* Host sockets are served on the server's thread, like the rings. */
static int vsock_serve(struct device *d, struct vhost_user_server *s)
{
	return vhost_user_server_watch_fd(s, virtio_vsock_poll_fd(&d->dev),
					  vsock_events, &d->dev);
}

static const char *const vsock_keys[] = {"cid", "uds", NULL};

static const struct device_type device_types[] = {
	{"blk", blk_keys, blk_create, blk_destroy, NULL},
	{"fs", fs_keys, fs_create, fs_destroy, NULL},
	{"vsock", vsock_keys, vsock_create, vsock_destroy, vsock_serve},
};

static const struct device_type *find_type(const char *name)
{
	for (size_t i = 0; i < sizeof(device_types) / sizeof(device_types[0]);
	     i++)
		if (!strcmp(device_types[i].name, name))
			return &device_types[i];
	return NULL;
}

/* Splits "TYPE,k=v,flag,..." and checks the keys against the type. */
static int parse_device(char *arg, struct device_spec *spec,
			const struct device_type **type)
{
	char *save = NULL, *tok;

	spec->buf = arg;
	spec->n = 0;
	spec->type = strtok_r(arg, ",", &save);
	if (!spec->type || !*spec->type) {
		usage_error("--device: missing device type");
		return -EINVAL;
	}
	*type = find_type(spec->type);
	if (!*type) {
		usage_error(
			"--device: unknown device type '%s' (supported: blk, "
			"fs, vsock)",
			spec->type);
		return -EINVAL;
	}
	while ((tok = strtok_r(NULL, ",", &save))) {
		char *eq = strchr(tok, '=');
		const char *const *k;

		if (eq)
			*eq = 0;
		for (k = (*type)->keys; *k && strcmp(*k, tok); k++)
			;
		if (!*k) {
			usage_error("--device %s: unknown key '%s'", spec->type,
				    tok);
			return -EINVAL;
		}
		if (spec_get(spec, tok)) {
			usage_error("--device %s: '%s' given twice", spec->type,
				    tok);
			return -EINVAL;
		}
		if (spec->n == MAX_KEYS) {
			usage_error("--device %s: too many keys", spec->type);
			return -EINVAL;
		}
		spec->kvs[spec->n++] = (struct kv){tok, eq ? eq + 1 : NULL};
	}
	return 0;
}

int kiln_cmd_vhost_user(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"device", required_argument, NULL, 'd'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct kiln_log log = {log_to_stderr, NULL, KILN_LOG_INFO};
	const struct device_type *type = NULL;
	struct device_spec spec;
	struct device dev;
	struct sigaction sa;
	sigset_t blocked;
	const char *socket_path = NULL;
	char *device_arg = NULL;
	int c, err, code = EXIT_KILN_FAILED;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 's': socket_path = optarg; break;
		case 'd':
			if (device_arg) {
				usage_error("only one --device per socket");
				goto usage;
			}
			device_arg = strdup(optarg);
			if (!device_arg) {
				fprintf(stderr, "kiln: out of memory\n");
				return EXIT_KILN_FAILED;
			}
			break;
		case 'v': log.max_level = KILN_LOG_DEBUG; break;
		case 'h':
			print_help(stdout);
			free(device_arg);
			return 0;
		default:
			fprintf(stderr, "Try 'kiln vhost-user --help' for more "
					"information.\n");
			goto usage;
		}
	}
	if (optind < argc) {
		usage_error("unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	if (!socket_path || !*socket_path) {
		usage_error("--socket PATH is required");
		goto usage;
	}
	if (strlen(socket_path) >=
	    sizeof(((struct sockaddr_un *)0)->sun_path)) {
		usage_error("--socket: path longer than %zu bytes",
			    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		goto usage;
	}
	if (!device_arg) {
		usage_error("--device TYPE,... is required");
		goto usage;
	}
	if (parse_device(device_arg, &spec, &type) < 0)
		goto usage;

	memset(&dev, 0, sizeof(dev));
	err = type->create(&spec, &log, &dev);
	if (err == -EINVAL)
		goto usage;
	if (err < 0) {
		fprintf(stderr,
			"kiln: vhost-user: cannot create the %s device\n",
			type->name);
		goto out;
	}
	err = vhost_user_server_create(&dev.dev, &log, &server);
	if (err < 0)
		goto out_dev;
	if (type->serve) {
		err = type->serve(&dev, server);
		if (err < 0)
			goto out_server;
	}
	err = vhost_user_server_listen(server, socket_path);
	if (err < 0)
		goto out_server;

	/* The handler only writes the server's stop eventfd. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	err = vhost_user_server_run(server);
	code = err < 0 ? EXIT_KILN_FAILED : 0;
	if (code == 0)
		log_info(&log, "vhost-user: stopped");
	/* No handler may reach the server once it is gone. */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
out_server:
	vhost_user_server_destroy(server);
	server = NULL;
out_dev:
	type->destroy(&dev);
out:
	free(device_arg);
	return code;
usage:
	free(device_arg);
	return EXIT_USAGE;
}
