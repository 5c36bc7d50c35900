/* SPDX-License-Identifier: MIT */
#include "util/unix_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Removes what an earlier run left at path: a socket nobody accepts on
 * any more. Anything else there is somebody's and stays. */
static int remove_stale(const char *path, const struct sockaddr_un *addr,
			const char *who, const struct kiln_log *log)
{
	struct stat st;
	int fd, r, err;

	if (lstat(path, &st) < 0)
		return errno == ENOENT
			       ? 0
			       : kiln_errorf(log, -errno, "%s: %s: %s", who,
					     path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return kiln_errorf(log, -EEXIST,
				   "%s: %s exists and is not a socket", who,
				   path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return kiln_errorf(log, -errno, "%s: socket: %s", who,
				   strerror(errno));
	r = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	err = errno;
	close(fd);
	/* a full backlog (EAGAIN) is a live listener too */
	if (r == 0 || err == EAGAIN || err == EINPROGRESS)
		return kiln_errorf(log, -EADDRINUSE,
				   "%s: something listens on %s", who, path);
	if (unlink(path) < 0 && errno != ENOENT)
		return kiln_errorf(log, -errno,
				   "%s: cannot remove stale %s: %s", who, path,
				   strerror(errno));
	return 0;
}

int unix_listen(const char *path, int backlog, bool nonblock, const char *who,
		const struct kiln_log *log, struct unix_socket_id *id)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, err;

	id->valid = false;
	if (!path || !*path || strlen(path) >= sizeof(addr.sun_path))
		return kiln_errorf(log, -ENAMETOOLONG,
				   "%s: socket path must be 1..%zu bytes", who,
				   sizeof(addr.sun_path) - 1);
	memcpy(addr.sun_path, path, strlen(path) + 1);
	err = remove_stale(path, &addr, who, log);
	if (err < 0)
		return err;
	fd = socket(AF_UNIX,
		    SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0),
		    0);
	if (fd < 0)
		return kiln_errorf(log, -errno, "%s: socket: %s", who,
				   strerror(errno));
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(fd, backlog) < 0 || stat(path, &st) < 0) {
		err = -errno;
		close(fd);
		return kiln_errorf(log, err, "%s: cannot listen on %s: %s", who,
				   path, strerror(-err));
	}
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->valid = true;
	return fd;
}

void unix_unlink_own(const char *path, const struct unix_socket_id *id)
{
	struct stat st;

	if (path && id->valid && lstat(path, &st) == 0 &&
	    S_ISSOCK(st.st_mode) && st.st_dev == id->dev &&
	    st.st_ino == id->ino)
		unlink(path);
}
