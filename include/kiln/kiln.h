/* SPDX-License-Identifier: MIT */
/*
 * libkiln — boot and run Linux microVMs on KVM.
 *
 * Conventions: every function returning int returns 0 (or a non-negative
 * value) on success and a negative errno on failure; details of a failure go
 * to the log callback of the config or VM. Types are opaque. No function
 * exits or aborts the process. Several VMs may live in one process.
 *
 * Threads: a kiln_config is used by one thread at a time. kiln_vm_wait,
 * kiln_vm_stop(_with), kiln_vm_outcome, kiln_vm_end_fd and the console
 * calls may be made from any thread, concurrently; kiln_vm_start and
 * kiln_vm_destroy from one thread, with no other call on that VM running.
 * A sandbox (and its execs) is used by one thread at a time; different
 * sandboxes are independent. Log callbacks may run on any thread.
 *
 * Signals: kiln's own threads block every signal; a vCPU unblocks one
 * real-time signal (SIGRTMIN+3) inside KVM_RUN only, and installs a no-op
 * handler for it if the application left the default. Writes to fds the
 * caller hands over (console output, exec output) never raise SIGPIPE in
 * the caller: a closed reader is treated as "discard". Console output goes
 * through a 1 MiB queue and its own thread, so a reader that stalls never
 * stalls the guest; what it does not take is dropped, with one warning.
 *
 * Growth: option structs carry their size (kiln_exec_opts), result structs
 * reserved space; fields are only ever added at the end.
 */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#define KILN_VERSION_MAJOR  0
#define KILN_VERSION_MINOR  1
#define KILN_VERSION_PATCH  0
#define KILN_VERSION_STRING "0.1.0"

/* Limits enforced by kiln_config_set_* and at start. */
#define KILN_MIN_MEMORY_MIB 4u
#define KILN_MAX_MEMORY_MIB (256u * 1024u)
#define KILN_MAX_CPUS	    64u
/* The i/o port a test guest writes its exit status to (with debug_exit on). */
#define KILN_DEBUG_EXIT_PORT 0x501

enum kiln_log_level {
	KILN_LOG_ERROR = 0,
	KILN_LOG_WARN = 1,
	KILN_LOG_INFO = 2,
	KILN_LOG_DEBUG = 3,
};

/* Receives one message (no trailing newline); may be called from any thread. */
typedef void (*kiln_log_fn)(void *opaque, enum kiln_log_level level,
			    const char *message);

/* How a VM run ended. */
enum kiln_outcome {
	KILN_OUTCOME_NONE = 0,	     /* still running / never started */
	KILN_OUTCOME_RESET,	     /* guest requested a reset (reboot) */
	KILN_OUTCOME_HALT,	     /* every vCPU halted with interrupts off */
	KILN_OUTCOME_TRIPLE_FAULT,   /* KVM_EXIT_SHUTDOWN */
	KILN_OUTCOME_INTERNAL_ERROR, /* KVM could not run the guest further */
	KILN_OUTCOME_DEBUG_EXIT,     /* guest wrote to the debug-exit port */
	KILN_OUTCOME_TIMEOUT,	     /* the run's timeout expired */
	KILN_OUTCOME_STOPPED,	     /* kiln_vm_stop() was called */
	KILN_OUTCOME_VMM_ERROR,	     /* kiln itself failed while running */
};

struct kiln_config;
struct kiln_vm;

/* Result of a finished run; strings live as long as the VM. */
struct kiln_exit_info {
	enum kiln_outcome outcome;
	int debug_exit_code;	    /* DEBUG_EXIT: value written */
	uint32_t internal_suberror; /* INTERNAL_ERROR: KVM suberror */
	uint64_t rip;		    /* TRIPLE_FAULT/INTERNAL_ERROR: guest RIP */
	const char *detail;	    /* human-readable one-line description */
	uint64_t reserved[4];	    /* room to grow without an ABI break */
};

/* Library version string, e.g. "0.1.0". */
KILN_API const char *kiln_version(void);

/* Name of an outcome ("reset", "triple-fault", ...). */
KILN_API const char *kiln_outcome_name(enum kiln_outcome outcome);

/* New config with defaults (1 vCPU, 256 MiB, no kernel); NULL on ENOMEM. */
KILN_API struct kiln_config *kiln_config_new(void);
/* Frees a config; NULL is fine. */
KILN_API void kiln_config_free(struct kiln_config *cfg);
/* Log callback for config errors and for VMs created from this config. */
KILN_API void kiln_config_set_log(struct kiln_config *cfg, kiln_log_fn fn,
				  void *opaque, enum kiln_log_level max_level);
/* Kernel image: bzImage or ELF vmlinux with a PVH note. Checked at start. */
KILN_API int kiln_config_set_kernel(struct kiln_config *cfg, const char *path);
/* Optional initramfs; NULL clears it. */
KILN_API int kiln_config_set_initrd(struct kiln_config *cfg, const char *path);
/* vCPU count, 1..KILN_MAX_CPUS; -EINVAL otherwise. */
KILN_API int kiln_config_set_cpus(struct kiln_config *cfg, unsigned cpus);
/* Guest RAM in MiB, KILN_MIN_MEMORY_MIB..KILN_MAX_MEMORY_MIB. */
KILN_API int kiln_config_set_memory_mib(struct kiln_config *cfg, uint64_t mib);
/* Extra arguments appended after kiln's default command line. */
KILN_API int kiln_config_append_cmdline(struct kiln_config *cfg,
					const char *args);
/* Replace kiln's default cmdline base ("console=ttyS0 reboot=k panic=-1"). */
KILN_API int kiln_config_set_base_cmdline(struct kiln_config *cfg,
					  const char *base);
/* Serial console: guest output to out_fd (-1 discards), input from in_fd
 * (-1: none). kiln does not close these fds. Default: stdout, no input. */
KILN_API int kiln_config_set_console_fds(struct kiln_config *cfg, int in_fd,
					 int out_fd);
/* Console escape byte (e.g. 0x01 for Ctrl-A): escape then 'x' stops the VM,
 * escape twice sends one escape. 0 disables (the default). */
KILN_API int kiln_config_set_console_escape(struct kiln_config *cfg, int ch);
/* Which console the kernel uses: the 8250 UART (ttyS0, the default) or
 * virtio-console (hvc0). Both devices exist; input goes to this one. */
enum kiln_console { KILN_CONSOLE_SERIAL = 0, KILN_CONSOLE_VIRTIO = 1 };
KILN_API int kiln_config_set_console(struct kiln_config *cfg,
				     enum kiln_console console);
/* Adds a virtio device described as "TYPE,KEY=VALUE,..." (a literal comma
 * in a value written ",,"), the syntax of `kiln --device` and
 * `kiln vhost-user --device`: blk,path=IMAGE[,ro]; fs,dir=DIR,tag=TAG[,ro]
 * [,mount=/GUEST/PATH]; vsock,cid=CID,uds=PATH; rng. Disks and shares may
 * be fds the caller keeps open until kiln_vm_create instead: blk,fd=N and
 * fs,dirfd=N. Keys and values are checked now (-EINVAL), files when the VM
 * is created. A VM has at most 17
 * devices besides its console and rng (-E2BIG). */
KILN_API int kiln_config_add_device(struct kiln_config *cfg, const char *spec);
/* Attaches a disk image (raw or qcow2, detected) as the next virtio-blk
 * device (/dev/vda, vdb, ...). The file is checked (exists, regular, size
 * multiple of 512, a sound qcow2 header) at kiln_vm_create. */
KILN_API int kiln_config_add_disk(struct kiln_config *cfg, const char *path,
				  int read_only);
/* kiln_config_add_disk with more: flags KILN_DISK_READ_ONLY (the guest
 * may not write) and KILN_DISK_SNAPSHOT (the image is only read; the
 * guest's writes go to a private copy-on-write overlay that goes with the
 * VM, so many VMs can share one image); format "raw", "qcow2" (versions 2
 * and 3, backing files included) or NULL / "auto": detected from the
 * image's header, never from its name. An image a guest could ever write
 * as a raw disk should be given format "raw": detection would otherwise
 * trust a qcow2 header (and its backing file name) the guest wrote. */
#define KILN_DISK_READ_ONLY 1u
#define KILN_DISK_SNAPSHOT  2u
/* path may be an http:// or https:// URL of a raw image: read with range
 * requests into a cache under $XDG_CACHE_HOME/kiln/blocks, read-only
 * unless KILN_DISK_SNAPSHOT; plain http only to the loopback unless
 * KILN_DISK_INSECURE. */
#define KILN_DISK_INSECURE 4u
KILN_API int kiln_config_add_disk_with(struct kiln_config *cfg,
				       const char *path, unsigned flags,
				       const char *format);
/* Shares host directory `dir` with the guest as virtio-fs tag `tag`
 * (mount -t virtiofs TAG /mnt/TAG), read-only if read_only. The directory is
 * checked at kiln_vm_create. Each looked-up guest inode holds a host fd: raise
 * RLIMIT_NOFILE for large trees. */
KILN_API int kiln_config_add_share(struct kiln_config *cfg, const char *dir,
				   const char *tag, int read_only);
/* Like kiln_config_add_share; a sandbox's agent mounts it at guest_path
 * (absolute, at most 255 bytes, no whitespace or ':'), NULL: /mnt/TAG. */
KILN_API int kiln_config_add_share_at(struct kiln_config *cfg, const char *dir,
				      const char *tag, int read_only,
				      const char *guest_path);
/* Uses kiln's default guest from dir: dir/vmlinux (or dir/bzImage) as the
 * kernel and dir/initramfs.cpio.gz (with the agent) as the initrd. NULL:
 * $KILN_GUEST_DIR, else the installed one (DATADIR/kiln/guest). */
KILN_API int kiln_config_set_guest_dir(struct kiln_config *cfg,
				       const char *dir);
/* Limits on every command a sandbox runs (the agent applies them before
 * exec): name is nofile, nproc, fsize, stack, core, memlock or as (bytes for
 * fsize, stack, core, memlock, as); KILN_ULIMIT_UNLIMITED for no limit;
 * soft <= hard. Setting a name again replaces it. Without one the agent's
 * defaults hold: nofile 65536, nproc the kernel's. -EINVAL for a bad value
 * (logged). */
#define KILN_ULIMIT_UNLIMITED UINT64_MAX
#define KILN_MAX_ULIMITS      7
KILN_API int kiln_config_set_ulimit(struct kiln_config *cfg, const char *name,
				    uint64_t soft, uint64_t hard);
/*
 * Networking (the library side of `kiln run --net/--allow/-p/--network`).
 * Without any of these a VM has no network card at all.
 */
/* How far the user-mode NAT's card reaches: PUBLIC (the internet only: no
 * private, loopback, link-local, CGNAT, multicast addresses, not the host),
 * ALL (everything the host reaches), NONE (only what rules allow). */
enum kiln_egress {
	KILN_EGRESS_PUBLIC = 0,
	KILN_EGRESS_ALL = 1,
	KILN_EGRESS_NONE = 2,
};
/* Gives the VM a virtio-net card behind kiln's user-mode NAT (rootless,
 * libslirp; guest 10.0.2.15/24, gateway .2, DNS .3) with the egress
 * posture; calling it again changes the posture. -EINVAL otherwise. */
KILN_API int kiln_config_set_net_user(struct kiln_config *cfg,
				      enum kiln_egress egress);
/* The NAT card's MAC ("XX:XX:XX:XX:XX:XX", NULL: 52:54:00:12:34:56) and
 * IPv4 network ("A.B.C.D/N", N 8..24; NULL: 10.0.2.0/24). Needs
 * kiln_config_set_net_user. */
KILN_API int kiln_config_set_net_address(struct kiln_config *cfg,
					 const char *mac, const char *subnet);
/* Adds an egress rule (allow != 0: allow, else deny), tried in order
 * before the posture, first match wins: CIDR[:PORT[-PORT]][/tcp|/udp],
 * [IPV6CIDR]:PORT..., or host:PORT[-PORT] (the host's loopback). Needs
 * kiln_config_set_net_user first. -EINVAL (logged) for a bad rule. */
KILN_API int kiln_config_add_net_rule(struct kiln_config *cfg, int allow,
				      const char *rule);
/* Publishes a guest port on the host: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|
 * /udp], HOSTIP 127.0.0.1 unless given. A taken host port fails
 * kiln_vm_create. Needs kiln_config_set_net_user. */
KILN_API int kiln_config_add_port_forward(struct kiln_config *cfg,
					  const char *spec);
/* Lets the guest reach the addresses name (exact, or "*.suffix") resolves
 * to, through kiln's resolver, for their TTL; under KILN_EGRESS_NONE other
 * names get NXDOMAIN. Needs kiln_config_set_net_user. */
KILN_API int kiln_config_add_allowed_domain(struct kiln_config *cfg,
					    const char *name);
/* The resolver kiln's DNS forwards to: IP[:PORT] or [IPV6]:PORT; NULL: the
 * host's (/etc/resolv.conf). Needs kiln_config_set_net_user. */
KILN_API int kiln_config_set_dns(struct kiln_config *cfg, const char *server);
/* A sandbox's hostname, and its DNS name on cluster networks: 1..63 of
 * A-Z a-z 0-9 _ - ., not starting with . or -. NULL: "kiln" (and no
 * name on a network). */
KILN_API int kiln_config_set_hostname(struct kiln_config *cfg,
				      const char *name);
/* Adds a card on cluster network `name` (kiln_network_create): an address
 * from the network, the other members by their hostnames, any port; no
 * NAT and no policy on it. At most 4 networks. -ENOENT if there is no such
 * network (logged). */
KILN_API int kiln_config_add_network(struct kiln_config *cfg, const char *name);

/* Cluster networks: a virtual Ethernet segment per name, its switch a
 * small background process of this user (reached through
 * $XDG_RUNTIME_DIR/kiln/.networks/NAME, or /tmp/kiln-UID/...). */
struct kiln_network_info {
	char name[64];
	char subnet[20]; /* "10.89.0.0/24" */
	int running;	 /* the switch answers */
	unsigned members;
	uint64_t reserved[4];
};
/* Creates network name (1..32 of A-Z a-z 0-9 _ - .) on subnet
 * ("A.B.C.D/N", N 16..29; NULL: the first free 10.89.N.0/24) and starts
 * its switch process (forked: call it before starting threads of your
 * own where you can). -EEXIST if it exists, -EINVAL for a bad name or a
 * subnet overlapping another network's or 10.0.2.0/24. Logged to log_fn
 * (may be NULL). */
KILN_API int kiln_network_create(const char *name, const char *subnet,
				 kiln_log_fn log_fn, void *opaque);
/* Stops network name's switch and removes it; -EBUSY while it has
 * members unless force (they lose the network), -ENOENT if none. */
KILN_API int kiln_network_remove(const char *name, int force,
				 kiln_log_fn log_fn, void *opaque);
/* The user's networks: *out (malloc'd, free() it) with *count entries. */
KILN_API int kiln_network_list(struct kiln_network_info **out, size_t *count);
/* Network name's members as text, one per line: "NAME ADDR MAC rx=N tx=N
 * dropped=N" (NAME "-" for one without a name); *text malloc'd. */
KILN_API int kiln_network_members(const char *name, char **text);

/* Adds a virtio-vsock device with guest CID `cid` (3..2^32-2) in the hybrid
 * model: guest connections to host port P reach the Unix socket
 * "<uds_path>_P"; host clients connect to uds_path and send "CONNECT P\n".
 * NULL uds_path removes the device. */
KILN_API int kiln_config_set_vsock(struct kiln_config *cfg, uint64_t cid,
				   const char *uds_path);
/* Keep the console's output (serial and virtio) in a bounded buffer for
 * kiln_vm_console_wait_for/exec, in addition to the output fd. */
KILN_API int kiln_config_set_console_capture(struct kiln_config *cfg,
					     int enabled);
/* Enable the debug-exit port (KILN_DEBUG_EXIT_PORT), for test guests. */
KILN_API int kiln_config_set_debug_exit(struct kiln_config *cfg, int enabled);
/* Path of the KVM device, default "/dev/kvm" (tests use others). */
KILN_API int kiln_config_set_kvm_path(struct kiln_config *cfg,
				      const char *path);
/* The KVM device as an fd the caller opened (e.g. passed in by a more
 * privileged process); it must stay open until kiln_vm_create. -EBADF if it
 * is not open. */
KILN_API int kiln_config_set_kvm_fd(struct kiln_config *cfg, int fd);

/* Which engine runs the guest. KVM: kiln's own vCPUs on /dev/kvm (hardware
 * virtualization). TCG: QEMU's emulator (qemu-system-x86_64 -accel tcg,
 * from $KILN_QEMU or PATH) as a child process, with kiln's own devices
 * served to it over vhost-user; much slower, and isolation then rests on
 * QEMU's emulator rather than on hardware. AUTO (the default): KVM when
 * /dev/kvm opens and has hardware virtualization, else TCG when QEMU is
 * installed (with one warning saying why), else KVM's error. */
enum kiln_accel { KILN_ACCEL_AUTO = 0, KILN_ACCEL_KVM = 1, KILN_ACCEL_TCG = 2 };
/* Chooses the engine; -EINVAL for an unknown value. */
KILN_API int kiln_config_set_accel(struct kiln_config *cfg,
				   enum kiln_accel accel);
/* "auto", "kvm", "tcg". */
KILN_API const char *kiln_accel_name(enum kiln_accel accel);
/* Parses "auto", "kvm" or "tcg" into *out; -EINVAL otherwise. */
KILN_API int kiln_accel_parse(const char *name, enum kiln_accel *out);

/* Builds a VM from cfg: opens KVM, maps RAM, loads kernel/initrd, creates
 * vCPUs. The config may be freed afterwards. Returns 0 and *out, or -errno. */
KILN_API int kiln_vm_create(const struct kiln_config *cfg,
			    struct kiln_vm **out);
/* Starts the vCPU and device threads; returns once they run. */
KILN_API int kiln_vm_start(struct kiln_vm *vm);
/* Waits for the VM to end, at most timeout_ms (< 0: forever), and fills
 * *info (if non-NULL) with how it ended. 0 once it ended; -ETIMEDOUT if it
 * still runs (it is left running: stopping is kiln_vm_stop's job); -EINVAL
 * if it was never started. Any thread, several at once. */
KILN_API int kiln_vm_wait(struct kiln_vm *vm, int timeout_ms,
			  struct kiln_exit_info *info);
/* Asks a running VM to stop (outcome STOPPED) and returns at once; the
 * threads are gone after kiln_vm_wait. Any thread; no effect once ended. */
KILN_API void kiln_vm_stop(struct kiln_vm *vm);
/* kiln_vm_stop recording outcome STOPPED or TIMEOUT (e.g. an embedder's own
 * deadline) and detail (NULL: a default); -EINVAL for other outcomes. */
KILN_API int kiln_vm_stop_with(struct kiln_vm *vm, enum kiln_outcome outcome,
			       const char *detail);
/* An fd that becomes readable when the VM ends and stays readable, for the
 * caller's poll/epoll; owned by the VM: never read or close it. Valid until
 * kiln_vm_destroy. */
KILN_API int kiln_vm_end_fd(const struct kiln_vm *vm);
/* Stops (if needed) and frees the VM and all its resources; NULL is fine. */
KILN_API void kiln_vm_destroy(struct kiln_vm *vm);
/* The full kernel command line the guest gets (valid until destroy). */
KILN_API const char *kiln_vm_cmdline(const struct kiln_vm *vm);

/* Console API (needs console capture). Sends bytes to the guest's console
 * input (the UART or virtio-console, whichever is the console); blocks while
 * the guest is not reading. Returns bytes sent, or -EPIPE once the VM ended. */
KILN_API long kiln_vm_console_write(struct kiln_vm *vm, const void *buf,
				    size_t len);
/* Waits until `pattern` appears in console output not yet consumed; on
 * success consumes through the pattern and, if output is non-NULL, returns
 * that text (malloc'd, caller frees). -ETIMEDOUT after timeout_ms, -EPIPE
 * if the VM ended first, -EINVAL without capture. */
KILN_API int kiln_vm_console_wait_for(struct kiln_vm *vm, const char *pattern,
				      int timeout_ms, char **output);
/* Types `line` and a newline, waits for `prompt`, and returns what the guest
 * printed in between, without the echoed line and the prompt. Errors as
 * kiln_vm_console_wait_for. */
KILN_API int kiln_vm_console_exec(struct kiln_vm *vm, const char *line,
				  const char *prompt, int timeout_ms,
				  char **output);

/* Pauses a running VM (KVM engine): every vCPU leaves the guest with its
 * last exit completed and waits, the device thread finishes what it runs
 * and waits, console input stays unread; nothing is lost. Returns once all
 * of it holds: 0 (also when paused already), -ENOTSUP on the emulating
 * engine, -EINVAL when not running, -EPIPE when the VM ended meanwhile.
 * Disk requests already handed to a disk's workers may still complete.
 * kiln_vm_stop and destroy work on a paused VM. */
KILN_API int kiln_vm_pause(struct kiln_vm *vm);
/* Lets a paused VM run again; 0 (also when not paused). */
KILN_API int kiln_vm_resume(struct kiln_vm *vm);
/* 1 while paused, else 0. */
KILN_API int kiln_vm_paused(const struct kiln_vm *vm);

/*
 * Snapshots (KVM engine). kiln_vm_snapshot writes the running VM to dir
 * (made if missing): "state" (versioned, checksummed: CPU, interrupt
 * controllers, clock, devices, config) and "memory" (guest RAM, zero pages
 * as holes), each under a temporary name renamed when whole. The VM is
 * paused for it and resumed after (left paused if it was). Refused with
 * -ENOTSUP (logged): the emulating engine, devices whose host-side state
 * is not saved (virtio-fs shares, net), disks given as fds; -EROFS: a
 * read-write disk (clones would all write it); -EBUSY: a vsock connection
 * is open (its host socket cannot come along). A restored guest's vsock
 * driver gets TRANSPORT_RESET.
 */
KILN_API int kiln_vm_snapshot(struct kiln_vm *vm, const char *dir);
/* kiln_vm_restore: copy guest RAM out of the memory file instead of mapping
 * it copy-on-write (the clone no longer depends on the file). */
#define KILN_RESTORE_EAGER 1u
/*
 * A VM restored from snapshot dir, not started yet (kiln_vm_start runs it
 * from where the snapshot was taken). cfg gives the log, console fds and
 * capture, and the KVM device; the snapshot gives CPUs, memory, command line
 * and devices (disks reopened by path, and refused if the file changed).
 * RAM maps the memory file copy-on-write, which is never written, so
 * restoring one snapshot N times gives N independent clones. Refused,
 * logged: -EBADMSG (checksum), -EPROTONOSUPPORT (newer major version, or
 * an unknown mandatory record), -EINVAL (truncated or malformed state,
 * memory file of another size), -EXDEV (another CPU, kernel or TSC rate),
 * -ESTALE (a disk changed), -ENOTSUP (the emulating engine forced).
 */
KILN_API int kiln_vm_restore(const struct kiln_config *cfg, const char *dir,
			     unsigned flags, struct kiln_vm **out);

/* The engine that runs this VM: KILN_ACCEL_KVM or KILN_ACCEL_TCG. */
KILN_API enum kiln_accel kiln_vm_accel(const struct kiln_vm *vm);

/* How the VM ended so far: KILN_OUTCOME_NONE while it runs (or before
 * start). Never blocks; any thread. */
KILN_API enum kiln_outcome kiln_vm_outcome(const struct kiln_vm *vm);

/* Counters of a VM's network card (--net user / a "net" device). */
struct kiln_net_stats {
	uint64_t tx_frames;  /* frames the guest sent that passed */
	uint64_t tx_denied;  /* frames the egress policy refused */
	uint64_t tx_errors;  /* runts, giants: dropped */
	uint64_t rx_frames;  /* frames delivered to the guest */
	uint64_t rx_dropped; /* frames for the guest that found no buffer */
	uint64_t tx_dropped; /* frames a full switch port could not take */
	uint64_t reserved[3];
};
/* Fills *out with the counters of the VM's first network card (the NAT's
 * when it has one): 0, or -ENOENT when it has none. Any thread; the values
 * are a snapshot. */
KILN_API int kiln_vm_net_stats(const struct kiln_vm *vm,
			       struct kiln_net_stats *out);

/* Describes why KVM cannot run a stock Linux guest at usable speed here
 * (e.g. a PVM host without VMX/SVM); NULL when the host looks fine. */
KILN_API const char *kiln_host_limitation(void);

/*
 * Sandboxes: a VM whose PID 1 is kiln's guest agent (guest/agent/), reached
 * over virtio-vsock, that runs commands and moves files on request. The
 * guest is not trusted: whatever the agent sends is checked. One sandbox is
 * used by one thread at a time; every blocking call moves all of its execs.
 */
struct kiln_sandbox;
struct kiln_exec;

/* Receives an exec's output; stream is 1 (stdout) or 2 (stderr). Must not
 * call back into the sandbox. */
typedef void (*kiln_output_fn)(void *opaque, int stream, const void *data,
			       size_t len);

#define KILN_EXEC_MESSAGE_MAX 512u

/* What to run; set with kiln_exec_opts_init first. `size` lets the struct
 * grow: fields added later go at the end, and the library treats those a
 * caller built against an older kiln.h lacks as defaults. */
struct kiln_exec_opts {
	size_t size; /* sizeof(struct kiln_exec_opts); set by init */
	const char *const *argv; /* NULL-terminated; argv[0] found in PATH */
	const char *const *env;	 /* "NAME=value" added to the agent's; NULL */
	const char *cwd;	 /* NULL: / */
	long uid;		 /* < 0: root (the agent's) */
	long gid;		 /* < 0: the agent's */
	int pty;		 /* run on a new pseudo-terminal ... */
	unsigned rows, cols;	 /* ... of this size (0: the default) */
	unsigned timeout_ms; /* the agent kills its process group; 0: none */
	int stdin_fd;	     /* >= 0: forwarded until EOF, by the waits */
	int stdin_pipe;	     /* stdin_fd < 0: fed by kiln_exec_write_stdin */
	kiln_output_fn on_output; /* if set, gets all output */
	void *opaque;
	int stdout_fd; /* without on_output: output goes here; -1 drops it */
	int stderr_fd;
};

/* How an exec ended. */
struct kiln_exec_result {
	int status;	/* shell-style: code, 128+N, 124 timeout, 126 cannot
			   execute, 127 not found, 125 other failure */
	int started;	/* the command ran; else `error` says why not */
	int exited;	/* ended by exit(code) */
	int code;	/* exit code */
	int signo;	/* killing signal, or 0 */
	int timed_out;	/* timeout_ms killed it */
	int error;	/* errno of the agent's error, or 0 */
	int error_what; /* enum kiln_agent_error_what, or 0 */
	char message[KILN_EXEC_MESSAGE_MAX + 1]; /* the agent's message */
	uint64_t reserved[4]; /* room to grow without an ABI break */
};

/* Defaults: no env, cwd, ids, pty or timeout; no stdin; output dropped. */
KILN_API void kiln_exec_opts_init(struct kiln_exec_opts *o);

/* Creates and starts a sandbox VM from cfg (which may be freed afterwards):
 * the kernel gets rdinit=/sbin/kiln-agent, quiet, and a mount request per
 * share; without a vsock device in cfg one is added on a private socket.
 * Returns without waiting for the agent. */
KILN_API int kiln_sandbox_create(const struct kiln_config *cfg,
				 struct kiln_sandbox **out);
/* Waits at most timeout_ms (< 0: forever) for the agent to announce itself
 * and connects to it. -ETIMEDOUT, or -EPIPE if the VM ended first. */
KILN_API int kiln_sandbox_wait_ready(struct kiln_sandbox *sb, int timeout_ms);
/* Connects to an agent that already runs (another process's sandbox) through
 * its hybrid vsock socket; the sandbox then has no VM of its own. */
KILN_API int kiln_sandbox_attach(const char *vsock_uds, kiln_log_fn log,
				 void *opaque, enum kiln_log_level max_level,
				 int timeout_ms, struct kiln_sandbox **out);
/* The sandbox's VM (NULL when attached); owned by the sandbox. */
KILN_API struct kiln_vm *kiln_sandbox_vm(struct kiln_sandbox *sb);
/* The hybrid vsock socket the agent is reached through. */
KILN_API const char *kiln_sandbox_vsock_path(const struct kiln_sandbox *sb);

/* Starts a command; its result (even "not found") comes from the wait. */
KILN_API int kiln_sandbox_exec(struct kiln_sandbox *sb,
			       const struct kiln_exec_opts *o,
			       struct kiln_exec **out);
/* Feeds stdin of an exec started with stdin_pipe; -EPIPE once it ended. */
KILN_API int kiln_exec_write_stdin(struct kiln_exec *e, const void *buf,
				   size_t len, int timeout_ms);
/* Closes the exec's stdin after what was written. */
KILN_API int kiln_exec_close_stdin(struct kiln_exec *e);
/* Sends signal signo (1..64) to the exec's process group. */
KILN_API int kiln_exec_kill(struct kiln_exec *e, int signo);
/* Resizes the exec's pty (ignored without one). */
KILN_API int kiln_exec_resize(struct kiln_exec *e, unsigned rows,
			      unsigned cols);
/* Waits at most timeout_ms (< 0: forever) for the exec to end, filling *res.
 * -ETIMEDOUT leaves it running; -EPIPE if the VM or connection died. Output
 * for stdout_fd/stderr_fd is written during waits and never holds one past
 * its timeout: what a slow reader has not taken yet is written by the next
 * wait (nothing is dropped unless the fd fails). */
KILN_API int kiln_exec_wait(struct kiln_exec *e, int timeout_ms,
			    struct kiln_exec_result *res);
/* Frees an exec; one still running is killed first. NULL is fine. */
KILN_API void kiln_exec_free(struct kiln_exec *e);
/* exec, wait and free in one; on -ETIMEDOUT the command is killed. */
KILN_API int kiln_sandbox_run(struct kiln_sandbox *sb,
			      const struct kiln_exec_opts *o, int timeout_ms,
			      struct kiln_exec_result *res);

/* Writes `size` bytes read from fd to the guest file `path` (absolute; made
 * atomically with `mode`); -EFBIG above 1 GiB. */
KILN_API int kiln_sandbox_put_file(struct kiln_sandbox *sb, const char *path,
				   unsigned mode, int fd, uint64_t size,
				   int timeout_ms);
/* Copies the guest's regular file `path` to fd; -EFBIG above max_size.
 * *size (if non-NULL) gets the bytes written. */
KILN_API int kiln_sandbox_get_file(struct kiln_sandbox *sb, const char *path,
				   uint64_t max_size, int fd, int timeout_ms,
				   uint64_t *size);
/* Clean shutdown: the agent signals every process, syncs and reboots; after
 * grace_ms the VM is stopped hard. Fills *info (if non-NULL) with how the VM
 * ended. Attached sandboxes only send the request. */
KILN_API int kiln_sandbox_stop(struct kiln_sandbox *sb, int grace_ms,
			       struct kiln_exit_info *info);
/* Stops (hard) and frees the sandbox, its VM and private sockets. */
KILN_API void kiln_sandbox_destroy(struct kiln_sandbox *sb);

/*
 * Sandbox templates (KVM engine). kiln_sandbox_snapshot writes the running
 * sandbox to dir as kiln_vm_snapshot does, as a template: its connection
 * to the agent is closed first (commands it runs end), the snapshot waits
 * up to 5 s for every connection to be gone (-EBUSY otherwise: another
 * process's exec), and the sandbox then goes on, connected again.
 * -ENOTSUP on the emulating engine.
 */
KILN_API int kiln_sandbox_snapshot(struct kiln_sandbox *sb, const char *dir);
/*
 * A sandbox restored from template dir, its agent connected and told it is
 * a new clone (RESTORED: the host's wall clock, 64 bytes of fresh entropy
 * it adds and reseeds its random generator with, a new id, and cfg's
 * hostname if set) before it is returned: two clones never share a random
 * stream or a clock from the past. cfg gives what kiln_vm_restore takes
 * from it, and the vsock socket if it has one (else a private one).
 * Waits at most timeout_ms (< 0: forever) for the agent.
 */
KILN_API int kiln_sandbox_restore(const struct kiln_config *cfg,
				  const char *dir, int timeout_ms,
				  struct kiln_sandbox **out);

/*
 * Pools of pre-warmed sandboxes: booted from one config ahead of demand, so
 * a claim costs a connection instead of a boot. Members are single-use: an
 * acquired sandbox is the caller's (kiln_pool_release hands it back to be
 * destroyed off the caller's path, or kiln_sandbox_destroy it), and the
 * pool boots a replacement in the background. Refill failures are counted
 * and back off; while refills fail, an acquire that would wait returns the
 * last refill's error instead. Any thread may use a pool.
 */
struct kiln_pool;

/* What an acquire does when no member is ready. */
enum kiln_pool_empty {
	KILN_POOL_WAIT = 0, /* wait for a refill (up to its timeout) */
	KILN_POOL_FAIL,	    /* -EAGAIN at once */
	KILN_POOL_COLD,	    /* boot one on the caller's thread */
};

/* Pool options; set with kiln_pool_opts_init first (`size` lets the
 * struct grow, as kiln_exec_opts). */
struct kiln_pool_opts {
	size_t size;		   /* sizeof(struct kiln_pool_opts) */
	unsigned target;	   /* members kept ready (1..64; default 2) */
	unsigned fill_parallel;	   /* boots at once (1..16; default 1) */
	unsigned idle_lifetime_ms; /* a member idle this long is replaced;
				      0: never */
	int boot_timeout_ms;	   /* one member's boot (default 30000) */
	enum kiln_pool_empty empty;
	/* members restored from this sandbox template (kiln_sandbox_snapshot;
	 * KVM engine) instead of booted from the config; NULL: booted */
	const char *from_snapshot;
};

/* A pool's counters at one moment. */
struct kiln_pool_stats {
	unsigned target, ready, filling, in_use;
	unsigned releasing;	/* released or expired, being destroyed */
	uint64_t acquired;	/* members handed out, ever */
	uint64_t booted;	/* members that became ready, ever */
	uint64_t failures;	/* refills that failed, ever */
	unsigned failing;	/* refills failed in a row (0: healthy) */
	int last_error;		/* -errno of the last failed refill, or 0 */
	char last_message[256]; /* what it said, or "" */
	uint64_t reserved[4];
};

/* Defaults: target 2, one boot at once, no idle limit, 30 s boots, wait. */
KILN_API void kiln_pool_opts_init(struct kiln_pool_opts *o);
/* Creates a pool of sandboxes booted from cfg (copied; may be freed
 * afterwards) and starts filling it. -EINVAL (logged) for options out of
 * range or a config whose members would collide: a vsock socket path, a
 * published port, or a disk opened read-write without ,snapshot. */
KILN_API int kiln_pool_create(const struct kiln_config *cfg,
			      const struct kiln_pool_opts *o,
			      struct kiln_pool **out);
/* Takes a ready member (waiting at most timeout_ms, < 0 forever, when the
 * pool is empty and its policy is to wait). 0 and *out; -ETIMEDOUT;
 * -EAGAIN (empty, policy fail); the last refill error while refills fail;
 * -ECANCELED once the pool is being destroyed. */
KILN_API int kiln_pool_acquire(struct kiln_pool *p, int timeout_ms,
			       struct kiln_sandbox **out);
/* Takes a ready member without waiting or booting: 0, or -EAGAIN. */
KILN_API int kiln_pool_try_acquire(struct kiln_pool *p,
				   struct kiln_sandbox **out);
/* Hands an acquired member back; it is stopped and destroyed on the pool's
 * thread (members are never reused). NULL is fine. */
KILN_API void kiln_pool_release(struct kiln_pool *p, struct kiln_sandbox *sb);
/* A pool of VMs restored from snapshot dir (kiln_vm_snapshot; KVM engine):
 * members are restored ahead (memory mapped, state put back) but not
 * started, so a claim only starts one. cfg as for kiln_vm_restore. The
 * first member is restored here: a snapshot that does not restore fails
 * this call with kiln_vm_restore's error. */
KILN_API int kiln_pool_create_from_snapshot(const struct kiln_config *cfg,
					    const char *dir,
					    const struct kiln_pool_opts *o,
					    struct kiln_pool **out);
/* kiln_pool_acquire for a snapshot pool: a started VM, the caller's
 * (kiln_pool_release_vm hands it back to be destroyed, or
 * kiln_vm_destroy). -EINVAL on a pool of sandboxes (and
 * kiln_pool_acquire on a snapshot pool). */
KILN_API int kiln_pool_acquire_vm(struct kiln_pool *p, int timeout_ms,
				  struct kiln_vm **out);
/* Hands an acquired VM back, to be destroyed on the pool's thread. NULL is
 * fine. */
KILN_API void kiln_pool_release_vm(struct kiln_pool *p, struct kiln_vm *vm);
/* Fills *out with the pool's counters. */
KILN_API void kiln_pool_stats(struct kiln_pool *p, struct kiln_pool_stats *out);
/* Wakes every waiter (-ECANCELED), waits for boots in progress, destroys
 * the ready and released members and frees the pool. Members still
 * acquired stay the caller's (kiln_sandbox_destroy). NULL is fine. */
KILN_API void kiln_pool_destroy(struct kiln_pool *p);

/* ---- vhost-user: one kiln device served to another VMM (e.g. QEMU) ---- */
struct kiln_vhost_user;
/* Builds the device described by device_spec (kiln_config_add_device's
 * syntax) and listens on socket_path, replacing a stale socket there (never
 * another file or a live socket). -EINVAL: bad options (logged); other
 * -errno: the device or socket could not be made (logged). */
KILN_API int kiln_vhost_user_create(const char *device_spec,
				    const char *socket_path, kiln_log_fn log,
				    void *opaque, enum kiln_log_level max_level,
				    struct kiln_vhost_user **out);
/* Serves front-ends one after the other, on the calling thread, until
 * kiln_vhost_user_stop. 0 once stopped, or -errno. */
KILN_API int kiln_vhost_user_run(struct kiln_vhost_user *vu);
/* Makes kiln_vhost_user_run return soon. Any thread, async-signal-safe. */
KILN_API void kiln_vhost_user_stop(struct kiln_vhost_user *vu);
/* Closes the connection and the socket (removing it), frees the device. NULL
 * is fine; not while kiln_vhost_user_run runs. */
KILN_API void kiln_vhost_user_free(struct kiln_vhost_user *vu);

#ifdef __cplusplus
}
#endif
#endif
