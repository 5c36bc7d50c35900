/* SPDX-License-Identifier: MIT */
/*
 * The public face of the vhost-user server (kiln.h, kiln_vhost_user_*):
 * one device from the device table, served on one Unix socket. The CLI's
 * `kiln vhost-user` is a thin wrapper around it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <kiln/kiln.h>

#include "util/log.h"
#include "vhost_user/server.h"
#include "virtio/device_table.h"

struct kiln_vhost_user {
	struct kiln_log log;
	struct virtio_dev dev;
	struct vhost_user_server *srv;
};

KILN_API int kiln_vhost_user_create(const char *device_spec,
				    const char *socket_path, kiln_log_fn log,
				    void *opaque, enum kiln_log_level max_level,
				    struct kiln_vhost_user **out)
{
	struct kiln_vhost_user *vu;
	struct virtio_dev_opts opts;
	int err;

	*out = NULL;
	vu = calloc(1, sizeof(*vu));
	if (!vu)
		return -ENOMEM;
	vu->log = (struct kiln_log){log, opaque, max_level};
	if (!socket_path || !*socket_path ||
	    strlen(socket_path) >=
		    sizeof(((struct sockaddr_un *)0)->sun_path)) {
		err = kiln_errorf(&vu->log, -EINVAL,
				  "vhost-user: the socket path must be 1..%zu "
				  "bytes",
				  sizeof(((struct sockaddr_un *)0)->sun_path) -
					  1);
		free(vu);
		return err;
	}
	err = virtio_dev_opts_parse(device_spec, &vu->log, &opts);
	if (err < 0) {
		free(vu);
		return err;
	}
	err = virtio_dev_create(&vu->dev, &opts, &vu->log);
	virtio_dev_opts_free(&opts);
	/* -EINVAL is kept for bad options: a device that cannot be made is a
	 * failure of another kind */
	if (err == -EINVAL)
		err = -EIO;
	if (err == 0)
		err = vhost_user_server_create(&vu->dev, &vu->log, &vu->srv);
	if (err == 0)
		err = vhost_user_server_listen(vu->srv, socket_path);
	if (err < 0) {
		kiln_vhost_user_free(vu);
		return err == -EINVAL ? -EIO : err;
	}
	*out = vu;
	return 0;
}

KILN_API int kiln_vhost_user_run(struct kiln_vhost_user *vu)
{
	return vhost_user_server_run(vu->srv);
}

KILN_API void kiln_vhost_user_stop(struct kiln_vhost_user *vu)
{
	vhost_user_server_stop(vu->srv);
}

KILN_API void kiln_vhost_user_free(struct kiln_vhost_user *vu)
{
	if (!vu)
		return;
	vhost_user_server_destroy(vu->srv);
	virtio_dev_destroy(&vu->dev);
	free(vu);
}
