/* SPDX-License-Identifier: MIT */
/*
 * Host side of the guest agent protocol (include/kiln/agent_proto.h).
 *
 * One struct kiln_agent per connection, used by one thread at a time (use
 * several connections for several threads). Every blocking call pumps the
 * whole connection, so all of its execs and transfers progress while any one
 * is waited for. The agent runs inside the guest and is not trusted: every
 * frame is checked, and one that breaks the protocol ends the connection
 * with -EPROTO (logged), never the process. Output callbacks must not call
 * back into this API.
 */
#ifndef KILN_AGENT_CLIENT_H
#define KILN_AGENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <kiln/agent_proto.h>
#include <kiln/kiln.h>

#include "util/log.h"

struct kiln_agent;
struct kiln_agent_exec;

/* Reads the one READY frame an agent sends on the ready port from fd
 * (not closed), waiting at most timeout_ms (< 0: forever). */
int kiln_agent_read_ready(int fd, int timeout_ms, const struct kiln_log *log,
			  struct kiln_agent_ready *ready);

/*
 * Firecracker-style "hybrid" vsock (src/virtio/vsock.h): the guest's connects
 * to host port P arrive on the Unix socket "<uds_path>_P"; the host reaches
 * guest port P through "<uds_path>" and a "CONNECT P" line.
 */
/* Listens on "<uds_path>_<port>" (replacing a stale socket there); returns
 * the fd. Do this before the VM starts: the agent announces itself once. */
int kiln_agent_listen_hybrid(const char *uds_path, unsigned port,
			     const struct kiln_log *log);
/* Accepts one connection on listen_fd and reads its READY, within
 * timeout_ms (< 0: forever). */
int kiln_agent_accept_ready(int listen_fd, int timeout_ms,
			    const struct kiln_log *log,
			    struct kiln_agent_ready *ready);
/* Connects to guest port `port` through "<uds_path>": returns a stream fd
 * for kiln_agent_connect, -ECONNREFUSED if the device refused, -ETIMEDOUT. */
int kiln_agent_dial_hybrid(const char *uds_path, unsigned port, int timeout_ms,
			   const struct kiln_log *log);

/* Takes fd (a connected stream socket; closed by kiln_agent_close, or here
 * on failure), says HELLO and waits for READY. log may be NULL. */
int kiln_agent_connect(int fd, const struct kiln_log *log, int timeout_ms,
		       struct kiln_agent **out);
/* What the agent said in READY. */
const struct kiln_agent_ready *kiln_agent_peer(const struct kiln_agent *a);
/* Closes the connection and frees it with all its execs; NULL is fine. The
 * agent kills whatever this connection still runs. */
void kiln_agent_close(struct kiln_agent *a);

/* Asks the agent to end the guest (SHUTDOWN): it signals every process,
 * syncs and reboots, so the VM ends with outcome "reset". An agent that is
 * not PID 1 (tests) exits instead. Returns once the frame is sent. */
int kiln_agent_shutdown(struct kiln_agent *a, int timeout_ms);
/* Tells a restored guest's agent it is a new clone (RESTORED) and waits
 * for its RESTORED_DONE: 0 and *done (each errno the agent met), or the
 * connection's error, -ETIMEDOUT. */
int kiln_agent_restored(struct kiln_agent *a,
			const struct kiln_agent_restored *m, int timeout_ms,
			struct kiln_agent_restored_done *done);
/* Sends an EXEC; the result (even "not found") comes from exec_wait. */
int kiln_agent_exec_start(struct kiln_agent *a, const struct kiln_exec_opts *o,
			  struct kiln_agent_exec **out);
/* Queues stdin for an exec started with stdin_pipe, waiting for credit as
 * needed; -EPIPE once the exec ended or its stdin was closed; on -ETIMEDOUT
 * a first part of buf may have been queued. */
int kiln_agent_exec_write_stdin(struct kiln_agent_exec *e, const void *buf,
				size_t len, int timeout_ms);
/* Sends EOF on the exec's stdin (after what was written). */
int kiln_agent_exec_close_stdin(struct kiln_agent_exec *e);
/* Sends signal signo (1..64) to the exec, or to its process group. */
int kiln_agent_exec_signal(struct kiln_agent_exec *e, int signo, int group);
/* Resizes the exec's pty (ignored by the agent without one). */
int kiln_agent_exec_resize(struct kiln_agent_exec *e, unsigned rows,
			   unsigned cols);
/* The exec's pid in the guest once STARTED came, else 0. */
long kiln_agent_exec_pid(const struct kiln_agent_exec *e);
/* Waits at most timeout_ms (< 0: forever) for the exec to end and fills
 * *res. -ETIMEDOUT leaves it running; connection errors are returned. */
int kiln_agent_exec_wait(struct kiln_agent_exec *e, int timeout_ms,
			 struct kiln_exec_result *res);
/* Frees an exec; one still running is killed (process group) first. */
void kiln_agent_exec_free(struct kiln_agent_exec *e);
/* exec_start, exec_wait and exec_free in one; on -ETIMEDOUT it is killed. */
int kiln_agent_run(struct kiln_agent *a, const struct kiln_exec_opts *o,
		   int timeout_ms, struct kiln_exec_result *res);

/* Writes `size` bytes read from fd to `path` in the guest (absolute; made
 * atomically, with `mode`). Returns 0, the agent's error as -errno, or
 * -EFBIG above KILN_AGENT_MAX_FILE, -EIO if fd ends early. */
int kiln_agent_put_file(struct kiln_agent *a, const char *path, unsigned mode,
			int fd, uint64_t size, int timeout_ms);
/* Copies the guest's regular file `path` to fd; -EFBIG if it is larger than
 * max_size. *size (if non-NULL) gets the bytes written. */
int kiln_agent_get_file(struct kiln_agent *a, const char *path,
			uint64_t max_size, int fd, int timeout_ms,
			uint64_t *size);

#endif
