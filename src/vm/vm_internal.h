/* SPDX-License-Identifier: MIT */
/*
 * The VM behind the opaque struct kiln_vm, shared by the VM core (vm.c,
 * the KVM engine) and the emulating engine (tcg.c). Nothing outside
 * src/vm/ includes this.
 */
#ifndef KILN_VM_VM_INTERNAL_H
#define KILN_VM_VM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "devices/bus.h"
#include "devices/legacy.h"
#include "devices/serial8250.h"
#include "kvm/kvm.h"
#include "mem/guest_mem.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "vm/config.h"
#include "vm/event_loop.h"

/* When the monitor checks for a guest that can never run again: first
 * after 250 ms, then at doubling intervals up to 2 s (an idle VM wakes the
 * host about once every 2 s for it). */
#define HALT_PROBE_INTERVAL_MS	   250
#define HALT_PROBE_MAX_INTERVAL_MS 2000
#define HALT_PROBE_ANSWER_MS	   100

struct vm_vcpu {
	struct kiln_vm *vm;
	struct kvm_vcpu_fd kvm;
	pthread_t thread;
	bool started;
	/* the last exit (IO, MMIO) completes on the next KVM_RUN */
	bool exit_pending;
	/* halt probe: monitor bumps probe_req, vCPU answers with its state */
	atomic_uint probe_req;
	unsigned probe_done; /* under vm->lock */
	bool probe_dead;     /* under vm->lock */
};

/* virtio-mmio devices sit in the MMIO hole, one page each, with GSIs from 5
 * (4 is the UART) up to 23, the last IOAPIC pin. */
#define VM_VIRTIO_MMIO_BASE   0xd0000000ull
#define VM_VIRTIO_MMIO_STRIDE 0x1000ull
#define VM_VIRTIO_FIRST_GSI   5
#define VM_VIRTIO_MAX_DEVICES 19

_Static_assert(VM_VIRTIO_MAX_DEVICES >= KILN_MAX_DEVICES + 2,
	       "every configured device, the console and rng need a slot");

struct vm_vdev;
struct vm_vdev_notify {
	struct vm_vdev *vdev;
	unsigned queue;
};

/* One virtio device. Its state is mmio.dev on both engines; the mmio
 * transport itself is set up only by the KVM engine (transport_up). */
struct vm_vdev {
	struct virtio_mmio mmio;
	bool transport_up;
	struct vm_vdev_notify notify[VIRTIO_MAX_QUEUES];
	struct virtio_console console; /* the VM's own console device only */
};

struct tcg_engine;

struct kiln_vm {
	struct kiln_log log;
	enum kiln_accel accel; /* the engine: KVM or TCG */
	char *cmdline;
	unsigned ncpus;
	int console_in_fd, console_out_fd, console_escape;
	bool debug_exit;

	/* KVM engine */
	struct kvm_system kvm;
	int vm_fd;
	struct guest_mem mem;
	struct vm_vcpu *vcpus;
	struct bus pio, mmio;
	struct serial8250 serial;
	struct legacy_devices legacy;
	struct event_loop events;
	int kick_signal;
	pthread_t monitor_thread;
	bool monitor_started;

	struct kiln_config *config; /* KVM engine: a copy, for snapshots */

	/* TCG engine (NULL on KVM) */
	struct tcg_engine *tcg;

	struct vm_vdev *vdevs;
	unsigned nr_vdevs;
	struct vm_vdev *console_vdev; /* input goes here if virtio console */

	int wake_fd; /* eventfd: set once the VM stops, never drained */
	pthread_t console_thread;
	bool console_started, running;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* outcome set, probe answers, rx space */
	atomic_bool stopping;
	/* kiln_vm_pause: vCPUs park (parked counts them, under lock), the
	 * device thread and console input wait */
	atomic_bool pause_req;
	unsigned parked;
	bool paused; /* under lock */
	struct kiln_exit_info exit;
	char exit_detail[512];
	bool rx_space;
	/* console output (console.c): a bounded ring drained to
	 * console_out_fd by its own thread, so no vCPU or device thread ever
	 * waits for the reader; under out_lock */
	struct console_out {
		pthread_mutex_t lock;
		pthread_cond_t cond; /* output queued, drained, or stop */
		uint8_t *ring;	     /* NULL: no output fd */
		size_t head, len;
		uint64_t dropped; /* bytes lost to a full ring or dead fd */
		bool stop, dead, started;
		pthread_t thread;
	} out;
	/* console capture for wait_for/exec, under lock */
	bool capture;
	char *cap;
	size_t cap_len, cap_size;
};

/* Console output waiting for a slow reader of the output fd; beyond this
 * it is dropped (and counted), never waited for. */
#define CONSOLE_OUT_RING (1u << 20)

/* console.c: the output ring and its thread. init: 0 or -ENOMEM; start
 * (with signals blocked, from kiln_vm_start): 0 or -errno; drain: waits up
 * to ms for what is queued to be written; stop: drains (bounded), ends
 * the thread, frees the ring. */
int vm_console_out_init(struct kiln_vm *vm);
int vm_console_out_start(struct kiln_vm *vm);
void vm_console_out_drain(struct kiln_vm *vm, int ms);
void vm_console_out_stop(struct kiln_vm *vm);

/* Bound on unread captured console output; older bytes are dropped. */
#define CONSOLE_CAPTURE_MAX (1u << 20)

/* A VM with the fields every engine shares set up from cfg (log, console
 * fds, locks, wake fd, console output ring): 0, or -errno with *out (if
 * set) for kiln_vm_destroy. */
int vm_new(const struct kiln_config *cfg, struct kiln_vm **out);
/* The KVM engine's VM before RAM and devices: vCPU slots, legacy devices,
 * /dev/kvm opened and checked, the VM with the architecture's setup, the
 * device thread's loop, a copy of cfg. 0 or -errno (logged). */
int vm_kvm_open(struct kiln_vm *vm, const struct kiln_config *cfg);

/* Records the outcome (first caller wins), sets `stopping`, signals
 * wake_fd and wakes every engine thread. Any thread. */
void vm_finish_info(struct kiln_vm *vm, const struct kiln_exit_info *in,
		    const char *detail);
void vm_finish(struct kiln_vm *vm, enum kiln_outcome outcome, const char *fmt,
	       ...) __attribute__((format(printf, 3, 4)));

/* Guest console output: into the capture buffer, then to the output fd. */
void vm_console_output(void *opaque, const uint8_t *buf, size_t len);

/* ts = clock's now + ms (CLOCK_REALTIME for pthread_timedjoin_np). */
static inline void deadline_on(clockid_t clock, struct timespec *ts, long ms)
{
	clock_gettime(clock, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* ts = CLOCK_MONOTONIC now + ms, for pthread_cond_timedwait on a condition
 * made by vm_cond_init (vm->cond, the console output's). */
static inline void deadline_after(struct timespec *ts, long ms)
{
	deadline_on(CLOCK_MONOTONIC, ts, ms);
}

/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
static inline void vm_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
}

/* Thread bodies (arg: the vm, or the vm_vcpu for a vCPU). vcpu.c,
 * console.c, monitor.c. */
void *vm_vcpu_thread(void *arg);
void *vm_console_thread(void *arg);
void *vm_monitor_thread(void *arg);

/* vcpu.c: the kick signal (a handler installed if the application left
 * the default), and the vCPUs created and set up for boot. */
int vm_kick_signal_setup(void);
struct arch_boot;
int vm_setup_vcpus(struct kiln_vm *vm, const struct arch_boot *boot);

/* guest.c: guest RAM mapped into KVM, and the kernel/initrd loaded into it
 * (0 or -errno, logged). */
int vm_setup_memory(struct kiln_vm *vm, uint64_t bytes);
int vm_load_guest(struct kiln_vm *vm, const struct kiln_config *cfg,
		  struct arch_boot *boot);

/* devices.c: the UART, reset and debug-exit ports on the port bus; and
 * every virtio device with its transport, notifications and command-line
 * part (cmdline_part: malloc'd). 0 or -errno (logged). */
int vm_setup_legacy_devices(struct kiln_vm *vm);
int vm_setup_virtio(struct kiln_vm *vm, const struct kiln_config *cfg,
		    char **cmdline_part);

/* Checks the kernel (bzImage or PVH ELF) and initrd files as the KVM engine
 * would load them, with the same messages; 0 or -errno (logged). */
int vm_check_guest_files(struct kiln_vm *vm, const struct kiln_config *cfg);

/* Creates the virtio devices in vm->vdevs, without transports: the
 * console (if with_console), rng unless the config lists one, then the
 * config's devices in order, each through the device table. On failure
 * what was made is left for vm_destroy_vdevs. 0 or -errno (logged). */
int vm_create_vdevs(struct kiln_vm *vm, const struct kiln_config *cfg,
		    bool with_console);
/* Destroys the devices vm_create_vdevs made (transports first). */
void vm_destroy_vdevs(struct kiln_vm *vm);

/* The emulating engine (tcg.c). create: devices, QEMU's command line;
 * start: spawns QEMU and the device threads, 0 once QEMU runs; join: waits
 * for QEMU to be gone (after vm_finish); destroy: frees what is left. */
int tcg_create(struct kiln_vm *vm, const struct kiln_config *cfg,
	       const char *qemu);
int tcg_start(struct kiln_vm *vm);
void tcg_join(struct kiln_vm *vm);
void tcg_destroy(struct kiln_vm *vm);
/* Console input for the TCG engine's serial port: bytes the socket takes
 * now; push sends without blocking; wait (vm->lock held) sleeps briefly
 * until it may take more. */
size_t tcg_console_room(struct kiln_vm *vm);
size_t tcg_console_push(struct kiln_vm *vm, const uint8_t *buf, size_t len);
void tcg_wait_console_room(struct kiln_vm *vm);

#endif
