/* SPDX-License-Identifier: MIT */
/*
 * Minimal virtio-mmio driver pieces for kiln's virtio test guests:
 * register access, status/feature negotiation, one split virtqueue per
 * struct vq, and interrupt plumbing (IDT, LAPIC, IOAPIC, a periodic LAPIC
 * timer used only to bound waits).
 *
 * kiln's contract: virtio device i at 0xd0000000 + i*0x1000, GSI (= IOAPIC
 * pin) 5+i, edge-triggered; 0 console, 1 rng, 2.. virtio-blk disks.
 */
#ifndef KILN_TEST_GUEST_VIRTIO_LIB_H
#define KILN_TEST_GUEST_VIRTIO_LIB_H

/* Interrupt vectors (shared with virtio_isr.S). */
#define VEC_VIRTIO 0x30
#define VEC_TIMER 0x31
#define VEC_PIT 0x32
#define VEC_SPURIOUS 0xff

#ifndef __ASSEMBLER__

#include "lib.h"

#define VIRTIO_MMIO_BASE 0xd0000000ull
#define VIRTIO_MMIO_STRIDE 0x1000ull
#define VIRTIO_FIRST_PIN 5
#define VIRTIO_DEV_BASE(i) (VIRTIO_MMIO_BASE + (uint64_t)(i) * VIRTIO_MMIO_STRIDE)

/* virtio-mmio version 2 registers (virtio 1.2, 4.2.2) */
#define VMMIO_MAGIC 0x000
#define VMMIO_VERSION 0x004
#define VMMIO_DEVICE_ID 0x008
#define VMMIO_VENDOR_ID 0x00c
#define VMMIO_DEVICE_FEATURES 0x010
#define VMMIO_DEVICE_FEATURES_SEL 0x014
#define VMMIO_DRIVER_FEATURES 0x020
#define VMMIO_DRIVER_FEATURES_SEL 0x024
#define VMMIO_QUEUE_SEL 0x030
#define VMMIO_QUEUE_NUM_MAX 0x034
#define VMMIO_QUEUE_NUM 0x038
#define VMMIO_QUEUE_READY 0x044
#define VMMIO_QUEUE_NOTIFY 0x050
#define VMMIO_INTERRUPT_STATUS 0x060
#define VMMIO_INTERRUPT_ACK 0x064
#define VMMIO_STATUS 0x070
#define VMMIO_QUEUE_DESC_LOW 0x080
#define VMMIO_QUEUE_DESC_HIGH 0x084
#define VMMIO_QUEUE_DRIVER_LOW 0x090
#define VMMIO_QUEUE_DRIVER_HIGH 0x094
#define VMMIO_QUEUE_DEVICE_LOW 0x0a0
#define VMMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VMMIO_CONFIG_GENERATION 0x0fc
#define VMMIO_CONFIG 0x100

#define VIRTIO_MAGIC 0x74726976u /* "virt" */
#define VIRTIO_VENDOR_KILN 0x4e4c494bu

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4

/* device status bits */
#define VSTAT_ACKNOWLEDGE 1
#define VSTAT_DRIVER 2
#define VSTAT_DRIVER_OK 4
#define VSTAT_FEATURES_OK 8
#define VSTAT_NEEDS_RESET 64
#define VSTAT_FAILED 128

/* InterruptStatus bits */
#define VIRQ_USED 1
#define VIRQ_CONFIG 2

/* feature bits */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_FLUSH 9
#define FEAT(b) (1ull << (b))

/* virtio-blk requests */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

struct virtio_blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* ---- registers ---- */
static inline uint32_t vmmio_rd(uint64_t base, uint32_t off)
{
	return *(volatile uint32_t *)(uintptr_t)(base + off);
}
static inline void vmmio_wr(uint64_t base, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(base + off) = v;
}
static inline void barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

/* Checks magic, version 2, vendor and device id; prints FAIL lines. */
bool virtio_probe(uint64_t base, uint32_t device_id, const char *tag);
/* Status = 0, then waits (bounded) until it reads back 0. */
bool virtio_reset(uint64_t base);
/* Reset, ACKNOWLEDGE, DRIVER, read the offered features into *offered,
 * accept want & offered (VERSION_1 must be offered and wanted), set
 * FEATURES_OK and check that it stuck. Prints FAIL lines. */
bool virtio_negotiate(uint64_t base, uint64_t want, uint64_t *offered,
		      const char *tag);
void virtio_driver_ok(uint64_t base);
uint64_t virtio_device_features(uint64_t base);

/* ---- split virtqueue ---- */
#define VQ_MAX 16

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

/* Ring memory for a queue of up to VQ_MAX entries; the device computes
 * positions from the negotiated size, the arrays only bound it. */
struct vring_mem {
	struct vring_desc desc[VQ_MAX];
	struct {
		uint16_t flags;
		uint16_t idx;
		uint16_t ring[VQ_MAX + 1]; /* + used_event */
	} avail __attribute__((aligned(16)));
	struct {
		uint16_t flags;
		uint16_t idx;
		struct vring_used_elem ring[VQ_MAX];
		uint16_t avail_event;
	} used __attribute__((aligned(16)));
} __attribute__((aligned(4096)));

struct vq {
	uint64_t base;
	unsigned index;
	uint16_t size;
	struct vring_mem *r;
	uint16_t avail_idx; /* next avail idx to publish */
	uint16_t last_used; /* used entries consumed so far */
	uint16_t next_desc; /* rolling descriptor allocator */
};

struct vbuf {
	uint64_t addr;
	uint32_t len;
	bool write; /* device-writable */
};

/* Zeroes the ring memory and configures queue `index` (size `size`),
 * then sets QueueReady and checks it reads back 1. Prints FAIL lines. */
bool vq_setup(struct vq *q, uint64_t base, unsigned index,
	      struct vring_mem *r, uint16_t size, const char *tag);
/* Builds a chain from n buffers (n <= size) and publishes it; returns
 * the head descriptor index. Does not notify. */
uint16_t vq_add(struct vq *q, const struct vbuf *b, unsigned n);
/* Publishes descriptor `head` (already written by the caller). */
void vq_publish(struct vq *q, uint16_t head);
void vq_kick(struct vq *q);
/* True if the device returned a buffer not yet consumed. */
bool vq_has_used(const struct vq *q);
/* Consumes one used element; false if there is none. */
bool vq_get_used(struct vq *q, uint32_t *id, uint32_t *len);

/* ---- interrupts ---- */
/* Interrupt counters (updated by the handler). */
extern volatile uint32_t virq_used;     /* interrupts with ISR bit 0 */
extern volatile uint32_t virq_config;   /* interrupts with ISR bit 1 */
extern volatile uint32_t virq_total;    /* virtio interrupts taken */
extern volatile uint32_t virq_spurious; /* virtio interrupt, ISR read 0 */
extern volatile uint32_t timer_ticks;   /* 10 ms LAPIC timer ticks */
extern volatile uint32_t pit_ticks;     /* PIT channel 0 interrupts */

/* Loads an IDT (exceptions print FAIL and exit 1), enables the LAPIC with
 * a periodic 10 ms timer, masks the 8259s, and routes the IOAPIC pin of
 * virtio device `dev_index` to the virtio handler, which reads and acks
 * that device's InterruptStatus. Interrupts stay disabled (IF=0). */
void virtio_irq_init(unsigned dev_index);
/* After virtio_irq_init: PIT channel 0 as a 100 Hz rate generator, its
 * IOAPIC pin (0: KVM's in-kernel PIT raises GSI 0) to VEC_PIT. */
void virtio_pit_init(void);
/* Spins (IF=1, no hlt) until the LAPIC timer ticks twice, bounded by an
 * iteration count; false if it does not: then virtio_wait's bound would not
 * hold and callers should fail instead of waiting. Returns with IF=0. */
bool virtio_timer_check(void);
/* Waits with `sti; hlt` until cond(arg) holds or max_ticks timer ticks
 * passed; returns whether cond held. Returns with IF=0. */
bool virtio_wait(bool (*cond)(void *), void *arg, unsigned max_ticks);

/* Called by the assembly stubs. */
void virtio_isr(uint64_t vector, uint64_t error, const uint64_t *frame);

/* ---- output helpers ---- */
void put_hex_bytes(const uint8_t *p, size_t n); /* "0a1b..." */
void put_fail(const char *what, uint64_t got);  /* "FAIL what (got 0x..)\n" */
/* "FAIL prefix: what (got 0x..)\n" */
void put_fail2(const char *prefix, const char *what, uint64_t got);

#endif /* __ASSEMBLER__ */
#endif /* KILN_TEST_GUEST_VIRTIO_LIB_H */
