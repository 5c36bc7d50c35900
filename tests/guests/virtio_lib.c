/* SPDX-License-Identifier: MIT */
/* Minimal virtio-mmio driver helpers and interrupt plumbing (virtio_lib.h). */
#include "virtio_lib.h"

/* ---- output ---- */

void put_hex_bytes(const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		uart_putc(hex[p[i] >> 4]);
		uart_putc(hex[p[i] & 15]);
	}
}

void put_fail(const char *what, uint64_t got)
{
	uart_puts("FAIL ");
	uart_puts(what);
	uart_puts(" (got ");
	uart_puthex(got);
	uart_puts(")\n");
}

void put_fail2(const char *prefix, const char *what, uint64_t got)
{
	uart_puts("FAIL ");
	uart_puts(prefix);
	uart_puts(": ");
	uart_puts(what);
	uart_puts(" (got ");
	uart_puthex(got);
	uart_puts(")\n");
}

/* ---- device setup ---- */

bool virtio_probe(uint64_t base, uint32_t device_id, const char *tag)
{
	uint32_t v;
	bool ok = true;

	if ((v = vmmio_rd(base, VMMIO_MAGIC)) != VIRTIO_MAGIC) {
		put_fail2(tag, "magic", v);
		ok = false;
	}
	if ((v = vmmio_rd(base, VMMIO_VERSION)) != 2) {
		put_fail2(tag, "version", v);
		ok = false;
	}
	if ((v = vmmio_rd(base, VMMIO_DEVICE_ID)) != device_id) {
		put_fail2(tag, "device id", v);
		ok = false;
	}
	if ((v = vmmio_rd(base, VMMIO_VENDOR_ID)) != VIRTIO_VENDOR_KILN) {
		put_fail2(tag, "vendor id", v);
		ok = false;
	}
	return ok;
}

bool virtio_reset(uint64_t base)
{
	vmmio_wr(base, VMMIO_STATUS, 0);
	for (unsigned i = 0; i < 1000; i++) {
		if (vmmio_rd(base, VMMIO_STATUS) == 0)
			return true;
		cpu_relax();
	}
	return false;
}

uint64_t virtio_device_features(uint64_t base)
{
	uint64_t f;

	vmmio_wr(base, VMMIO_DEVICE_FEATURES_SEL, 1);
	f = (uint64_t)vmmio_rd(base, VMMIO_DEVICE_FEATURES) << 32;
	vmmio_wr(base, VMMIO_DEVICE_FEATURES_SEL, 0);
	f |= vmmio_rd(base, VMMIO_DEVICE_FEATURES);
	return f;
}

bool virtio_negotiate(uint64_t base, uint64_t want, uint64_t *offered,
		      const char *tag)
{
	uint64_t f, accept;
	uint32_t st;

	if (!virtio_reset(base)) {
		put_fail2(tag, "reset: status stays nonzero",
			 vmmio_rd(base, VMMIO_STATUS));
		return false;
	}
	vmmio_wr(base, VMMIO_STATUS, VSTAT_ACKNOWLEDGE);
	vmmio_wr(base, VMMIO_STATUS, VSTAT_ACKNOWLEDGE | VSTAT_DRIVER);
	f = virtio_device_features(base);
	if (offered)
		*offered = f;
	if (!(f & FEAT(VIRTIO_F_VERSION_1))) {
		put_fail2(tag, "VERSION_1 not offered", f);
		return false;
	}
	accept = (want | FEAT(VIRTIO_F_VERSION_1)) & f;
	vmmio_wr(base, VMMIO_DRIVER_FEATURES_SEL, 0);
	vmmio_wr(base, VMMIO_DRIVER_FEATURES, (uint32_t)accept);
	vmmio_wr(base, VMMIO_DRIVER_FEATURES_SEL, 1);
	vmmio_wr(base, VMMIO_DRIVER_FEATURES, (uint32_t)(accept >> 32));
	vmmio_wr(base, VMMIO_STATUS,
		 VSTAT_ACKNOWLEDGE | VSTAT_DRIVER | VSTAT_FEATURES_OK);
	st = vmmio_rd(base, VMMIO_STATUS);
	if (!(st & VSTAT_FEATURES_OK)) {
		put_fail2(tag, "FEATURES_OK did not stick", st);
		vmmio_wr(base, VMMIO_STATUS, st | VSTAT_FAILED);
		return false;
	}
	return true;
}

void virtio_driver_ok(uint64_t base)
{
	vmmio_wr(base, VMMIO_STATUS,
		 VSTAT_ACKNOWLEDGE | VSTAT_DRIVER | VSTAT_FEATURES_OK |
			 VSTAT_DRIVER_OK);
}

/* ---- virtqueue ---- */

static void wr_addr(uint64_t base, uint32_t lo_reg, uint64_t a)
{
	vmmio_wr(base, lo_reg, (uint32_t)a);
	vmmio_wr(base, lo_reg + 4, (uint32_t)(a >> 32));
}

bool vq_setup(struct vq *q, uint64_t base, unsigned index,
	      struct vring_mem *r, uint16_t size, const char *tag)
{
	uint32_t v;

	memset(r, 0, sizeof(*r));
	q->base = base;
	q->index = index;
	q->size = size;
	q->r = r;
	q->avail_idx = q->last_used = q->next_desc = 0;
	vmmio_wr(base, VMMIO_QUEUE_SEL, index);
	if ((v = vmmio_rd(base, VMMIO_QUEUE_READY)) != 0) {
		put_fail2(tag, "queue already ready", v);
		return false;
	}
	v = vmmio_rd(base, VMMIO_QUEUE_NUM_MAX);
	if (v < size || size > VQ_MAX) {
		put_fail2(tag, "QueueNumMax too small", v);
		return false;
	}
	vmmio_wr(base, VMMIO_QUEUE_NUM, size);
	wr_addr(base, VMMIO_QUEUE_DESC_LOW, (uintptr_t)r->desc);
	wr_addr(base, VMMIO_QUEUE_DRIVER_LOW, (uintptr_t)&r->avail);
	wr_addr(base, VMMIO_QUEUE_DEVICE_LOW, (uintptr_t)&r->used);
	vmmio_wr(base, VMMIO_QUEUE_READY, 1);
	if ((v = vmmio_rd(base, VMMIO_QUEUE_READY)) != 1) {
		put_fail2(tag, "QueueReady did not stick", v);
		return false;
	}
	return true;
}

void vq_publish(struct vq *q, uint16_t head)
{
	q->r->avail.ring[q->avail_idx & (q->size - 1)] = head;
	barrier(); /* x86: stores are not reordered with other stores */
	q->avail_idx++;
	*(volatile uint16_t *)&q->r->avail.idx = q->avail_idx;
	barrier();
}

uint16_t vq_add(struct vq *q, const struct vbuf *b, unsigned n)
{
	uint16_t head = q->next_desc, d = head;

	for (unsigned i = 0; i < n; i++) {
		struct vring_desc *e = &q->r->desc[d];
		uint16_t next = (uint16_t)((d + 1) & (q->size - 1));

		e->addr = b[i].addr;
		e->len = b[i].len;
		e->flags = (uint16_t)((b[i].write ? VRING_DESC_F_WRITE : 0) |
				      (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		e->next = i + 1 < n ? next : 0;
		d = next;
	}
	q->next_desc = d;
	vq_publish(q, head);
	return head;
}

void vq_kick(struct vq *q)
{
	vmmio_wr(q->base, VMMIO_QUEUE_NOTIFY, q->index);
}

bool vq_has_used(const struct vq *q)
{
	return *(const volatile uint16_t *)&q->r->used.idx != q->last_used;
}

bool vq_get_used(struct vq *q, uint32_t *id, uint32_t *len)
{
	const volatile struct vring_used_elem *e;

	if (!vq_has_used(q))
		return false;
	barrier();
	e = (const volatile struct vring_used_elem *)
		    &q->r->used.ring[q->last_used & (q->size - 1)];
	if (id)
		*id = e->id;
	if (len)
		*len = e->len;
	q->last_used++;
	return true;
}

/* ---- interrupts ---- */

#define LAPIC_BASE 0xfee00000ull
#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_SVR 0x0f0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define LVT_MASKED (1u << 16)
#define LVT_PERIODIC (1u << 17)
#define MSR_APIC_BASE 0x1b

#define IOAPIC_BASE 0xfec00000ull
#define IOAPIC_REGSEL 0x00
#define IOAPIC_WIN 0x10

/* KVM's LAPIC timer runs at 1 GHz: 10 ms with divide-by-1. */
#define TIMER_COUNT 10000000u

volatile uint32_t virq_used, virq_config, virq_total, virq_spurious;
volatile uint32_t timer_ticks;
volatile uint32_t pit_ticks;
static uint64_t irq_dev_base;

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
};
_Static_assert(sizeof(struct idt_gate) == 16, "IDT gate");

static struct idt_gate idt[256] __attribute__((aligned(16)));

extern const uint64_t virtio_stub_table[36];

static void lapic_wr(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg) = v;
}
static uint32_t lapic_rd(uint32_t reg)
{
	return *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg);
}

static void ioapic_wr(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(IOAPIC_BASE + IOAPIC_REGSEL) = reg;
	*(volatile uint32_t *)(uintptr_t)(IOAPIC_BASE + IOAPIC_WIN) = v;
}

static void set_gate(unsigned vec, uint64_t handler, uint16_t cs)
{
	struct idt_gate *g = &idt[vec];

	g->off_lo = (uint16_t)handler;
	g->sel = cs;
	g->ist = 0;
	g->type = 0x8e; /* present, DPL 0, 64-bit interrupt gate */
	g->off_mid = (uint16_t)(handler >> 16);
	g->off_hi = (uint32_t)(handler >> 32);
	g->zero = 0;
}

static const char *const exc_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "?9", "#TS", "#NP", "#SS", "#GP", "#PF", "?15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void virtio_isr(uint64_t vector, uint64_t error, const uint64_t *frame)
{
	if (vector < 32) {
		uart_puts("FAIL exception ");
		uart_puts(exc_names[vector] ? exc_names[vector] : "?");
		uart_puts(" vector ");
		uart_puthex(vector);
		uart_puts(" error ");
		uart_puthex(error);
		uart_puts(" rip ");
		uart_puthex(frame[0]);
		if (vector == 14) {
			uint64_t cr2;

			__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
			uart_puts(" cr2 ");
			uart_puthex(cr2);
		}
		uart_putc('\n');
		finish(false);
	}
	if (vector == VEC_TIMER) {
		timer_ticks++;
		return;
	}
	if (vector == VEC_PIT) {
		pit_ticks++;
		return;
	}
	if (vector == VEC_VIRTIO) {
		uint32_t isr = vmmio_rd(irq_dev_base, VMMIO_INTERRUPT_STATUS);

		virq_total++;
		if (isr)
			vmmio_wr(irq_dev_base, VMMIO_INTERRUPT_ACK, isr);
		else
			virq_spurious++;
		if (isr & VIRQ_USED)
			virq_used++;
		if (isr & VIRQ_CONFIG)
			virq_config++;
	}
	/* VEC_SPURIOUS: nothing to do */
}

void virtio_irq_init(unsigned dev_index)
{
	struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} idtr = { sizeof(idt) - 1, (uintptr_t)idt };
	uint16_t cs;
	uint32_t apic_id;
	unsigned pin = VIRTIO_FIRST_PIN + dev_index;
	uint64_t apic_base;

	__asm__ volatile("cli");
	irq_dev_base = VIRTIO_DEV_BASE(dev_index);
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	for (unsigned v = 0; v < 32; v++)
		set_gate(v, virtio_stub_table[v], cs);
	set_gate(VEC_VIRTIO, virtio_stub_table[32], cs);
	set_gate(VEC_TIMER, virtio_stub_table[33], cs);
	set_gate(VEC_SPURIOUS, virtio_stub_table[34], cs);
	set_gate(VEC_PIT, virtio_stub_table[35], cs);
	__asm__ volatile("lidt %0" : : "m"(idtr));

	/* Both 8259s fully masked: the IOAPIC delivers instead. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);

	apic_base = rdmsr(MSR_APIC_BASE);
	if (!(apic_base & (1u << 11)) || (apic_base & (1u << 10)) ||
	    (apic_base & ~0xfffull) != LAPIC_BASE)
		put_fail("IA32_APIC_BASE not xAPIC-enabled at 0xfee00000",
			 apic_base);
	lapic_wr(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_wr(LAPIC_TPR, 0);
	lapic_wr(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_wr(LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
	lapic_wr(LAPIC_LVT_TIMER, LVT_PERIODIC | VEC_TIMER);
	lapic_wr(LAPIC_TIMER_INIT, TIMER_COUNT);
	apic_id = lapic_rd(LAPIC_ID) >> 24;

	/* Edge, active high, fixed delivery, physical destination. */
	ioapic_wr(0x10 + 2 * pin + 1, apic_id << 24);
	ioapic_wr(0x10 + 2 * pin, VEC_VIRTIO);
}

void virtio_pit_init(void)
{
	uint16_t div = 11932; /* 1193182 Hz / 100 */
	uint32_t apic_id = lapic_rd(LAPIC_ID) >> 24;

	outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
	outb(0x40, (uint8_t)div);
	outb(0x40, (uint8_t)(div >> 8));
	ioapic_wr(0x10 + 1, apic_id << 24);
	ioapic_wr(0x10, VEC_PIT);
}

bool virtio_timer_check(void)
{
	uint32_t start = timer_ticks;
	bool ok = false;

	__asm__ volatile("sti" ::: "memory");
	for (unsigned i = 0; i < 3000000 && !ok; i++) {
		ok = timer_ticks - start >= 2;
		cpu_relax();
	}
	__asm__ volatile("cli" ::: "memory");
	return ok;
}

bool virtio_wait(bool (*cond)(void *), void *arg, unsigned max_ticks)
{
	uint32_t start = timer_ticks;

	for (;;) {
		__asm__ volatile("cli" ::: "memory");
		if (cond(arg))
			return true;
		if (timer_ticks - start >= max_ticks)
			return false;
		/* sti's interrupt shadow covers hlt: no lost wakeup. */
		__asm__ volatile("sti; hlt" ::: "memory");
	}
}
