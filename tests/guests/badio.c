/* SPDX-License-Identifier: MIT */
/*
 * badio: accesses to unassigned I/O ports and MMIO must not kill the VM:
 * writes are ignored, reads return all-ones at every width.
 *
 * Output: BADIO ok, or FAIL <what> lines; then RESULT PASS|FAIL.
 */
#include "lib.h"

#define MMIO_HOLE 0xc0001000ull

static bool ok = true;

static void fail(const char *what, uint64_t addr, uint64_t got)
{
	ok = false;
	uart_puts("FAIL ");
	uart_puts(what);
	uart_putc(' ');
	uart_puthex(addr);
	uart_puts(" read ");
	uart_puthex(got);
	uart_putc('\n');
}

static void check_ports(uint16_t port)
{
	uint8_t b = inb(port);
	if (b != 0xff)
		fail("inb", port, b);
	uint16_t w = inw(port);
	if (w != 0xffff)
		fail("inw", port, w);
	uint32_t l = inl(port);
	if (l != 0xffffffffu)
		fail("inl", port, l);
}

static void check_mmio(uint64_t a)
{
	uint8_t b;
	uint16_t w;
	uint32_t l;
	uint64_t q;

	/* Explicit mov forms so every access has exactly the intended width. */
	__asm__ volatile("movb (%1), %0" : "=q"(b) : "r"(a) : "memory");
	if (b != 0xff)
		fail("mmio read8", a, b);
	__asm__ volatile("movw (%1), %0" : "=r"(w) : "r"(a + 2) : "memory");
	if (w != 0xffff)
		fail("mmio read16", a + 2, w);
	__asm__ volatile("movl (%1), %0" : "=r"(l) : "r"(a + 4) : "memory");
	if (l != 0xffffffffu)
		fail("mmio read32", a + 4, l);
	__asm__ volatile("movq (%1), %0" : "=r"(q) : "r"(a + 8) : "memory");
	if (q != ~0ull)
		fail("mmio read64", a + 8, q);
}

static void write_mmio(uint64_t a)
{
	__asm__ volatile("movb %0, (%1)" : : "q"((uint8_t)0x5a), "r"(a) : "memory");
	__asm__ volatile("movw %0, (%1)" : : "r"((uint16_t)0x5a5a), "r"(a + 2) : "memory");
	__asm__ volatile("movl %0, (%1)" : : "r"(0x5a5a5a5au), "r"(a + 4) : "memory");
	__asm__ volatile("movq %0, (%1)" : : "r"(0x5a5a5a5a5a5a5a5aull), "r"(a + 8) : "memory");
}

void guest_main(const struct entry_state *es)
{
	(void)es;
	static const uint16_t ports[] = { 0x1234, 0x2f0 };

	for (unsigned i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		uint16_t p = ports[i];
		check_ports(p);
		outb(p, 0x5a);
		outw(p, 0x5a5a);
		outl(p, 0x5a5a5a5au);
		check_ports(p); /* writes must have been dropped */
	}

	check_mmio(MMIO_HOLE);
	write_mmio(MMIO_HOLE);
	check_mmio(MMIO_HOLE);

	if (ok)
		uart_puts("BADIO ok\n");
	finish(ok);
}
