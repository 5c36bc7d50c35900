/* SPDX-License-Identifier: MIT */
/*
 * Device wiring: the legacy port devices (UART, i8042 reset, debug exit)
 * on the KVM engine's buses, and the virtio devices, built through the
 * device table (virtio/device_table.h) for both engines and given their
 * virtio-mmio transports, notifications and host fds on the KVM engine.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "virtio/console.h"
#include "virtio/device_table.h"
#include "virtio/rng.h"
#include "vm/vm_internal.h"

static void serial_set_irq(void *opaque, int level)
{
	struct kiln_vm *vm = opaque;

	kvm_vm_irq_line(vm->vm_fd, SERIAL8250_COM1_IRQ, level);
}

static void serial_rx_space(void *opaque)
{
	struct kiln_vm *vm = opaque;

	pthread_mutex_lock(&vm->lock);
	vm->rx_space = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static const struct serial8250_ops serial_ops = {
	.output = vm_console_output,
	.set_irq = serial_set_irq,
	.rx_space = serial_rx_space,
};

static void legacy_request(void *opaque, enum legacy_request req, int code)
{
	struct kiln_vm *vm = opaque;

	if (req == LEGACY_RESET) {
		vm_finish(vm, KILN_OUTCOME_RESET, "guest reset");
	} else {
		struct kiln_exit_info info = {.outcome =
						      KILN_OUTCOME_DEBUG_EXIT,
					      .debug_exit_code = code};
		char detail[64];

		snprintf(detail, sizeof(detail), "guest debug-exit %d", code);
		vm_finish_info(vm, &info, detail);
	}
}

int vm_setup_legacy_devices(struct kiln_vm *vm)
{
	int r;

	serial8250_init(&vm->serial, &serial_ops, vm);
	vm->legacy = (struct legacy_devices){legacy_request, vm};
	r = bus_register(&vm->pio, SERIAL8250_COM1_PORT, 8, serial8250_access,
			 &vm->serial);
	if (r == 0)
		r = bus_register(&vm->pio, I8042_DATA_PORT, 5, i8042_access,
				 &vm->legacy);
	if (r == 0)
		r = bus_register(&vm->pio, RESET_CONTROL_PORT, 1,
				 reset_control_access, &vm->legacy);
	if (r == 0 && vm->debug_exit)
		r = bus_register(&vm->pio, KILN_DEBUG_EXIT_PORT, 1,
				 debug_exit_access, &vm->legacy);
	if (r < 0)
		return kiln_errorf(&vm->log, r, "cannot register devices");
	return 0;
}

/* A device's host-side fds (vsock's sockets), on the device thread, under
 * the same lock its queue_notify runs with. */
static void vdev_host_events(void *opaque, int fd, unsigned events)
{
	struct vm_vdev *v = opaque;

	(void)fd;
	(void)events;
	pthread_mutex_lock(&v->mmio.lock);
	v->mmio.dev.ops->host_events(&v->mmio.dev);
	pthread_mutex_unlock(&v->mmio.lock);
}

static void vdev_notify(void *opaque, int fd, unsigned events)
{
	struct vm_vdev_notify *n = opaque;

	(void)fd;
	(void)events;
	virtio_mmio_handle_notify(&n->vdev->mmio, n->queue);
}

int vm_create_vdevs(struct kiln_vm *vm, const struct kiln_config *cfg,
		    bool with_console)
{
	int at = -1;
	bool own_rng = !config_next_device(cfg, &virtio_rng_ops, &at);
	unsigned n =
		(with_console ? 1 : 0) + (own_rng ? 1 : 0) + cfg->nr_devices;
	int r;

	/* kiln_config_add_* keep to KILN_MAX_DEVICES, which fits */
	if (n > VM_VIRTIO_MAX_DEVICES)
		return kiln_errorf(&vm->log, -E2BIG,
				   "%u devices, kiln has %u virtio-mmio slots",
				   n, VM_VIRTIO_MAX_DEVICES);
	vm->vdevs = calloc(n, sizeof(*vm->vdevs));
	if (!vm->vdevs)
		return -ENOMEM;
	if (with_console) {
		struct vm_vdev *v = &vm->vdevs[vm->nr_vdevs++];

		v->mmio.dev.log = &vm->log;
		virtio_console_init(&v->console, &v->mmio.dev,
				    vm_console_output, vm);
		if (cfg->console == KILN_CONSOLE_VIRTIO)
			vm->console_vdev = v;
	}
	for (int i = own_rng ? -1 : 0; i < (int)cfg->nr_devices; i++) {
		struct vm_vdev *v = &vm->vdevs[vm->nr_vdevs++];
		struct virtio_dev_opts rng;
		const struct virtio_dev_opts *o = &cfg->devices[i < 0 ? 0 : i];

		if (i < 0) {
			virtio_dev_opts_init(&rng, &virtio_rng_ops);
			o = &rng;
		}
		r = virtio_dev_create(&v->mmio.dev, o, &vm->log);
		if (r < 0)
			return r; /* logged; vm_destroy_vdevs cleans up */
	}
	return 0;
}

/* KVM engine: gives each device a virtio-mmio transport, its queue
 * notifications and host fds on the device thread, and its share of the
 * kernel command line. */
int vm_setup_virtio(struct kiln_vm *vm, const struct kiln_config *cfg,
		    char **cmdline_part)
{
	size_t len = 0;
	char *part;
	int r;

	*cmdline_part = NULL;
	r = vm_create_vdevs(vm, cfg, true);
	if (r < 0)
		return r;
	part = calloc(vm->nr_vdevs + 1, 64);
	if (!part)
		return -ENOMEM;
	*cmdline_part = part;
	for (unsigned i = 0; i < vm->nr_vdevs; i++) {
		struct vm_vdev *v = &vm->vdevs[i];
		uint64_t base = VM_VIRTIO_MMIO_BASE + i * VM_VIRTIO_MMIO_STRIDE;

		r = virtio_mmio_init(&v->mmio, &vm->mem, &vm->log, base,
				     VM_VIRTIO_FIRST_GSI + i, vm->vm_fd);
		v->transport_up = true;
		if (r < 0)
			return kiln_errorf(&vm->log, r, "cannot set up %s: %s",
					   v->mmio.dev.ops->name, strerror(-r));
		r = bus_register(&vm->mmio, base, VIRTIO_MMIO_SIZE,
				 virtio_mmio_access, &v->mmio);
		for (unsigned q = 0; r == 0 && q < v->mmio.dev.ops->num_queues;
		     q++) {
			v->notify[q] = (struct vm_vdev_notify){v, q};
			r = event_loop_add(&vm->events, v->mmio.notify_fd[q],
					   EPOLLIN, vdev_notify, &v->notify[q]);
		}
		if (r == 0 && v->mmio.dev.ops->host_fd)
			r = event_loop_add(
				&vm->events,
				v->mmio.dev.ops->host_fd(&v->mmio.dev), EPOLLIN,
				vdev_host_events, v);
		if (r < 0)
			return kiln_errorf(&vm->log, r, "cannot wire %s: %s",
					   v->mmio.dev.ops->name, strerror(-r));
		if (len)
			part[len++] = ' ';
		r = virtio_mmio_cmdline(&v->mmio, part + len, 63);
		if (r < 0)
			return r;
		len += (size_t)r;
	}
	return 0;
}

void vm_destroy_vdevs(struct kiln_vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vdevs; i++) {
		struct vm_vdev *v = &vm->vdevs[i];

		if (v->transport_up)
			virtio_mmio_destroy(&v->mmio, vm->vm_fd);
		virtio_dev_destroy(&v->mmio.dev);
	}
	free(vm->vdevs);
	vm->vdevs = NULL;
	vm->nr_vdevs = 0;
}
