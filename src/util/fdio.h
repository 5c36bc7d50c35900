/* SPDX-License-Identifier: MIT */
/* Writing to fds the embedder owns. */
#ifndef KILN_UTIL_FDIO_H
#define KILN_UTIL_FDIO_H

#include <stddef.h>
#include <sys/types.h>

/* write(2) that never raises SIGPIPE in the calling thread: a write to a
 * pipe or socket nobody reads fails with -1/EPIPE and the signal it raised
 * is taken back (unless one was already pending). Same results otherwise. */
ssize_t write_nosigpipe(int fd, const void *buf, size_t len);

#endif
