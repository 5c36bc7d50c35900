/* SPDX-License-Identifier: MIT */
/*
 * kiln guest agent protocol: the one definition shared by the host client
 * (src/agent/client.c) and the agent in the guest (guest/agent/). The codec
 * declared here (src/agent/codec.c) needs nothing but <string.h>, so the
 * static agent links the very same file.
 *
 * Transport: a reliable byte stream. In a guest, the agent listens on vsock
 * port KILN_AGENT_PORT; once listening it connects to the host (CID 2) on
 * KILN_AGENT_READY_PORT, sends one READY frame (session 0) and closes, so the
 * host never polls. Tests use Unix sockets the same way.
 *
 * Frame: a 16-byte header, then `length` payload bytes. All integers are
 * little-endian.
 *
 *	 0  le32 magic    KILN_AGENT_MAGIC (bytes "KAGT")
 *	 4  le16 version  KILN_AGENT_VERSION
 *	 6  le16 type     enum kiln_agent_type
 *	 8  le32 session  0 for HELLO, READY and connection-wide ERROR; else
 *	                  the id the host gave the session when opening it
 *	12  le32 length   payload bytes, at most KILN_AGENT_MAX_FRAME
 *
 * A string is le32 n, then n bytes: the last is NUL and no other is (so a
 * decoder uses it in place). Payloads ("bytes" = raw data, at least 1 byte):
 *
 *   host -> agent (requests)
 *	HELLO      le32 version, le32 flags (0)
 *	EXEC       le32 flags (KILN_AGENT_EXEC_*), le32 uid, le32 gid,
 *	           le32 timeout_ms (0: none), le16 rows, le16 cols (pty size,
 *	           0: default), le32 argc (1..MAX_ARGS), le32 envc (0..MAX_ENV),
 *	           string cwd ("": the agent's), argc strings argv, envc
 *	           strings "NAME=value" (added to the agent's environment)
 *	STDIN      bytes, no more than the session's stdin credit
 *	STDIN_EOF  (empty) close the child's stdin once the data before it is in
 *	SIGNAL     le32 signo (1..64), le32 flags (KILN_AGENT_SIGNAL_GROUP)
 *	WINSIZE    le16 rows, le16 cols (ignored without a pty)
 *	FILE_PUT   le64 size, le32 mode (07777), le32 flags (0), string path;
 *	           then exactly `size` bytes in PUT_DATA frames
 *	PUT_DATA   bytes
 *	FILE_GET   le64 max_size, le32 flags (0), string path
 *	CANCEL     (empty) end a session early: an exec's process group gets
 *	           SIGKILL (EXIT follows), a put is discarded and a get stops
 *	           (ERROR ECANCELED follows)
 *	SHUTDOWN   le32 flags (0), session 0: end the guest. The agent sends
 *	           SIGTERM to every process, waits briefly, SIGKILLs, syncs
 *	           and reboots (the VM ends); an agent that is not PID 1 exits.
 *	           Nothing answers it.
 *	RESTORED   le64 wall clock (ns since the epoch), 64 bytes of entropy,
 *	           string id (a new sandbox id, 1..MAX_NAME bytes), string
 *	           hostname (0..63 bytes; "": keep), session 0: the VM was
 *	           restored from a snapshot. The agent sets the clock, adds
 *	           the entropy (RNDADDENTROPY) and reseeds the kernel's CRNG,
 *	           sets the hostname, and answers RESTORED_DONE. An agent
 *	           that is not PID 1 (tests) checks and answers, changing
 *	           nothing on its host.
 *
 *   agent -> host (responses)
 *	READY      le32 version, le32 max_frame (largest payload it accepts),
 *	           le32 max_sessions, le32 stdin_window, then 0..MAX_NAME bytes
 *	           naming the agent (no NUL)
 *	STARTED    le32 pid, le32 stdin credit (0 without KILN_AGENT_EXEC_STDIN)
 *	STDOUT     bytes (with a pty, all of the terminal's output)
 *	STDERR     bytes
 *	STDIN_CREDIT le32 bytes: that much more STDIN may be sent
 *	EXIT       le32 how (KILN_AGENT_EXITED/SIGNALED), le32 code or signo,
 *	           le32 flags (KILN_AGENT_EXIT_TIMED_OUT)
 *	ERROR      le32 errno (1..4095), le32 what (enum kiln_agent_error_what),
 *	           then 0..MAX_MSG bytes of message (no NUL)
 *	FILE_DATA  bytes
 *	FILE_END   le64 size: the put or get of that many bytes is complete
 *	RESTORED_DONE le32 errno setting the clock, le32 errno adding entropy
 *	           and reseeding, le32 errno setting the hostname (0: done),
 *	           session 0
 *
 * Conversation: HELLO first, answered by READY. Then sessions, interleaved:
 * EXEC, FILE_PUT and FILE_GET open one under a new id, larger than every id
 * used before on the connection. An exec answers STARTED, then output and
 * credits, then EXIT; a put answers FILE_END; a get sends FILE_DATA, then
 * FILE_END. ERROR (session != 0) ends a session at any point; an exec that
 * cannot start (ENOENT/EACCES from execve, what = EXEC) gets it instead of
 * STARTED. EXIT, FILE_END and ERROR are a session's last frame.
 *
 * Requests for a session that has ended are ignored (the host may not have
 * seen the end yet); for an id never opened they are a protocol error. A
 * malformed frame or one out of place gets ERROR (session 0, what =
 * PROTOCOL) and the connection is closed; other connections carry on.
 *
 * Flow control: stdin is credit based (an exec's stdin memory in the agent is
 * bounded by its window); output relies on the stream: when the host reads
 * slowly the agent stops reading the child's pipes. The host must keep
 * reading while it writes.
 */
#ifndef KILN_AGENT_PROTO_H
#define KILN_AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define KILN_AGENT_MAGIC    0x5447414bu /* "KAGT" on the wire */
#define KILN_AGENT_VERSION  1u
#define KILN_AGENT_HDR_SIZE 16u

/* Limits both sides enforce. */
#define KILN_AGENT_MAX_FRAME	(1u << 20) /* payload bytes */
#define KILN_AGENT_MAX_ARGS	1024u
#define KILN_AGENT_MAX_ENV	1024u
#define KILN_AGENT_MAX_PATH	4096u /* string bytes, NUL included */
#define KILN_AGENT_MAX_MSG	512u
#define KILN_AGENT_MAX_NAME	64u
#define KILN_AGENT_MAX_SESSIONS 64u /* open at once, per connection */
#define KILN_AGENT_MAX_FILE	(1ull << 30)
/* Largest stdin window an agent may announce (host memory per exec). */
#define KILN_AGENT_MAX_WINDOW (1u << 20)
/* Data frames are sent in pieces of at most this many bytes. */
#define KILN_AGENT_IO_CHUNK (64u * 1024u)

/* vsock ports: the agent listens on PORT and announces itself on READY. */
#define KILN_AGENT_PORT	      1024u
#define KILN_AGENT_READY_PORT 1025u

enum kiln_agent_type {
	KILN_AGENT_HELLO = 0x0001,
	KILN_AGENT_EXEC = 0x0002,
	KILN_AGENT_STDIN = 0x0003,
	KILN_AGENT_STDIN_EOF = 0x0004,
	KILN_AGENT_SIGNAL = 0x0005,
	KILN_AGENT_WINSIZE = 0x0006,
	KILN_AGENT_FILE_PUT = 0x0007,
	KILN_AGENT_PUT_DATA = 0x0008,
	KILN_AGENT_FILE_GET = 0x0009,
	KILN_AGENT_CANCEL = 0x000a,
	KILN_AGENT_SHUTDOWN = 0x000b,
	KILN_AGENT_RESTORED = 0x000c,

	KILN_AGENT_READY = 0x8001,
	KILN_AGENT_STARTED = 0x8002,
	KILN_AGENT_STDOUT = 0x8003,
	KILN_AGENT_STDERR = 0x8004,
	KILN_AGENT_STDIN_CREDIT = 0x8005,
	KILN_AGENT_EXIT = 0x8006,
	KILN_AGENT_ERROR = 0x8007,
	KILN_AGENT_FILE_DATA = 0x8008,
	KILN_AGENT_FILE_END = 0x8009,
	KILN_AGENT_RESTORED_DONE = 0x800a,
};

/* Response types have this bit; requests do not. */
#define KILN_AGENT_RESPONSE 0x8000u

/* EXEC flags */
#define KILN_AGENT_EXEC_STDIN 0x1u /* stdin comes in STDIN frames; else EOF */
#define KILN_AGENT_EXEC_PTY   0x2u /* run on a new pseudo-terminal */
#define KILN_AGENT_EXEC_UID   0x4u /* setuid(uid) before exec */
#define KILN_AGENT_EXEC_GID   0x8u /* setgroups(0), setgid(gid) */
#define KILN_AGENT_EXEC_FLAGS 0xfu

/* SIGNAL flags: signal the exec's process group, not just its pid. */
#define KILN_AGENT_SIGNAL_GROUP 0x1u

/* EXIT */
#define KILN_AGENT_EXITED	  0u
#define KILN_AGENT_SIGNALED	  1u
#define KILN_AGENT_EXIT_TIMED_OUT 0x1u /* the agent killed it at timeout_ms */

/* ERROR: what failed. */
enum kiln_agent_error_what {
	KILN_AGENT_ERR_PROTOCOL = 1, /* malformed or misplaced frame */
	KILN_AGENT_ERR_REQUEST = 2,  /* refused: limits, bad path, busy */
	KILN_AGENT_ERR_EXEC = 3,     /* execve failed (errno from it) */
	KILN_AGENT_ERR_SETUP = 4,    /* child setup: cwd, ids, pty */
	KILN_AGENT_ERR_FILE = 5,     /* file put/get failed */
	KILN_AGENT_ERR_INTERNAL = 6, /* agent resources: fork, pipes */
};

/* Process exit statuses of the CLI convention. */
#define KILN_STATUS_TIMEOUT	   124
#define KILN_STATUS_NOT_EXECUTABLE 126
#define KILN_STATUS_NOT_FOUND	   127
#define KILN_STATUS_FAILED	   125 /* kiln or the agent failed */

struct kiln_agent_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t session;
	uint32_t length;
};

struct kiln_agent_hello {
	uint32_t version;
	uint32_t flags;
};

struct kiln_agent_ready {
	uint32_t version;
	uint32_t max_frame;
	uint32_t max_sessions;
	uint32_t stdin_window;
	char name[KILN_AGENT_MAX_NAME + 1];
};

struct kiln_agent_started {
	uint32_t pid;
	uint32_t stdin_credit;
};

struct kiln_agent_signal {
	uint32_t signo;
	uint32_t flags;
};

struct kiln_agent_winsize {
	uint16_t rows;
	uint16_t cols;
};

struct kiln_agent_exit {
	uint32_t how;
	uint32_t value;
	uint32_t flags;
};

struct kiln_agent_error {
	uint32_t err;
	uint32_t what;
	char msg[KILN_AGENT_MAX_MSG + 1];
};

/* FILE_PUT (size = exact size, mode) and FILE_GET (size = max size). */
struct kiln_agent_file_req {
	uint64_t size;
	uint32_t mode;
	uint32_t flags;
	const char *path;
};

/* An EXEC body. Decoded, the strings point into the payload. */
struct kiln_agent_exec_req {
	uint32_t flags;
	uint32_t uid;
	uint32_t gid;
	uint32_t timeout_ms;
	uint16_t rows;
	uint16_t cols;
	const char *cwd;	 /* NULL or "": the agent's cwd */
	uint32_t argc;		 /* decode fills it; encode counts argv */
	const char *const *argv; /* NULL-terminated */
	uint32_t envc;
	const char *const *env; /* NULL-terminated; NULL: none */
};

/* Pointer storage a decoded EXEC body's argv and env live in. */
struct kiln_agent_exec_vec {
	const char *argv[KILN_AGENT_MAX_ARGS + 1];
	const char *env[KILN_AGENT_MAX_ENV + 1];
};

/* RESTORED: what a restored clone must not share with its siblings. */
#define KILN_AGENT_ENTROPY 64u
struct kiln_agent_restored {
	uint64_t wall_ns;
	uint8_t entropy[KILN_AGENT_ENTROPY];
	char id[KILN_AGENT_MAX_NAME + 1];
	char hostname[64];
};

struct kiln_agent_restored_done {
	uint32_t clock_err, entropy_err, hostname_err;
};

/* Writes a frame header for `length` payload bytes into out[HDR_SIZE]. */
void kiln_agent_hdr_encode(uint8_t *out, uint16_t type, uint32_t session,
			   uint32_t length);

/* Decodes and checks a header from buf[HDR_SIZE]; `responses` selects which
 * direction is acceptable. -EBADMSG bad magic, -EPROTONOSUPPORT version,
 * -EMSGSIZE length, -EPROTO unknown type, wrong direction or session. */
int kiln_agent_hdr_decode(const uint8_t *buf, int responses,
			  struct kiln_agent_hdr *h);

/* Finds the first frame in buf[0..len): returns its total size (header and
 * payload) with *h and *payload set, 0 if more bytes are needed, or a
 * negative errno if these bytes can never be a valid frame (header errors
 * as above; -EBADMSG: payload size wrong for the type). */
int kiln_agent_frame_next(const uint8_t *buf, size_t len, int responses,
			  struct kiln_agent_hdr *h, const uint8_t **payload);

/*
 * Payload codecs. *_encode writes into p[0..cap) and returns the payload
 * size, or -ENOBUFS if it does not fit, -EINVAL for values the protocol
 * cannot carry. *_decode checks everything and returns 0 or -EBADMSG.
 */
int kiln_agent_hello_encode(uint8_t *p, size_t cap,
			    const struct kiln_agent_hello *m);
int kiln_agent_hello_decode(const uint8_t *p, size_t len,
			    struct kiln_agent_hello *m);
int kiln_agent_ready_encode(uint8_t *p, size_t cap,
			    const struct kiln_agent_ready *m);
int kiln_agent_ready_decode(const uint8_t *p, size_t len,
			    struct kiln_agent_ready *m);
int kiln_agent_started_encode(uint8_t *p, size_t cap,
			      const struct kiln_agent_started *m);
int kiln_agent_started_decode(const uint8_t *p, size_t len,
			      struct kiln_agent_started *m);
int kiln_agent_signal_encode(uint8_t *p, size_t cap,
			     const struct kiln_agent_signal *m);
int kiln_agent_signal_decode(const uint8_t *p, size_t len,
			     struct kiln_agent_signal *m);
int kiln_agent_winsize_encode(uint8_t *p, size_t cap,
			      const struct kiln_agent_winsize *m);
int kiln_agent_winsize_decode(const uint8_t *p, size_t len,
			      struct kiln_agent_winsize *m);
int kiln_agent_exit_encode(uint8_t *p, size_t cap,
			   const struct kiln_agent_exit *m);
int kiln_agent_exit_decode(const uint8_t *p, size_t len,
			   struct kiln_agent_exit *m);
/* The message is cut to KILN_AGENT_MAX_MSG bytes. */
int kiln_agent_error_encode(uint8_t *p, size_t cap,
			    const struct kiln_agent_error *m);
int kiln_agent_error_decode(const uint8_t *p, size_t len,
			    struct kiln_agent_error *m);
int kiln_agent_u32_encode(uint8_t *p, size_t cap, uint32_t v);
int kiln_agent_u32_decode(const uint8_t *p, size_t len, uint32_t *v);
int kiln_agent_u64_encode(uint8_t *p, size_t cap, uint64_t v);
int kiln_agent_u64_decode(const uint8_t *p, size_t len, uint64_t *v);
/* FILE_PUT/FILE_GET: an absolute path shorter than KILN_AGENT_MAX_PATH;
 * size at most KILN_AGENT_MAX_FILE, mode at most 07777, flags 0. */
int kiln_agent_file_req_encode(uint8_t *p, size_t cap,
			       const struct kiln_agent_file_req *m);
int kiln_agent_file_req_decode(const uint8_t *p, size_t len,
			       struct kiln_agent_file_req *m);
/* EXEC: -E2BIG for more than MAX_ARGS/MAX_ENV entries, -EINVAL for an empty
 * argv, an env entry without "NAME=", unknown flags or too long a cwd. */
int kiln_agent_exec_encode(uint8_t *p, size_t cap,
			   const struct kiln_agent_exec_req *m);
/* Decodes into *m, with argv and env pointing into vec and the payload. */
int kiln_agent_exec_decode(const uint8_t *p, size_t len,
			   struct kiln_agent_exec_req *m,
			   struct kiln_agent_exec_vec *vec);

/* RESTORED: -EINVAL for an empty or too long id or hostname. */
int kiln_agent_restored_encode(uint8_t *p, size_t cap,
			       const struct kiln_agent_restored *m);
int kiln_agent_restored_decode(const uint8_t *p, size_t len,
			       struct kiln_agent_restored *m);
/* RESTORED_DONE: each errno 0..4095. */
int kiln_agent_restored_done_encode(uint8_t *p, size_t cap,
				    const struct kiln_agent_restored_done *m);
int kiln_agent_restored_done_decode(const uint8_t *p, size_t len,
				    struct kiln_agent_restored_done *m);

/* CLI status of an EXIT: the code, 128+N for signal N, 124 if timed out. */
int kiln_agent_exit_status(const struct kiln_agent_exit *m);
/* CLI status of an exec that got ERROR instead of starting: 127 for ENOENT
 * from execve, 126 for other exec and setup failures, 125 otherwise. */
int kiln_agent_error_status(const struct kiln_agent_error *m);
/* Short name of a frame type ("EXEC"), "?" if unknown. */
const char *kiln_agent_type_name(uint16_t type);

#endif
