/* SPDX-License-Identifier: MIT */
/* Shared freestanding helpers for kiln's test guests: UART output, hex, strings. */
#include "lib.h"

#define UART_THR (UART_BASE + 0)
#define UART_RBR (UART_BASE + 0)
#define UART_LSR (UART_BASE + 5)
#define LSR_DR 0x01
#define LSR_THRE 0x20

void uart_putc(char c)
{
	/* Bounded wait for THRE; an absent UART reads all-ones (THRE set). */
	for (unsigned i = 0; i < 100000; i++) {
		if (inb(UART_LSR) & LSR_THRE)
			break;
		cpu_relax();
	}
	outb(UART_THR, (uint8_t)c);
}

void uart_puts(const char *s)
{
	while (*s)
		uart_putc(*s++);
}

void uart_putn(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		uart_putc(s[i]);
}

void uart_puthex(uint64_t v)
{
	char buf[18];
	int i = 0;

	do {
		unsigned d = v & 0xf;
		buf[i++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v >>= 4;
	} while (v);
	uart_putc('0');
	uart_putc('x');
	while (i)
		uart_putc(buf[--i]);
}

void uart_putdec(uint64_t v)
{
	char buf[20];
	int i = 0;

	do {
		buf[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		uart_putc(buf[--i]);
}

bool uart_rx_ready(void)
{
	return inb(UART_LSR) & LSR_DR;
}

uint8_t uart_getc_raw(void)
{
	return inb(UART_RBR);
}

size_t str_len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

size_t str_nlen(const char *s, size_t max)
{
	size_t n = 0;
	while (n < max && s[n])
		n++;
	return n;
}

bool str_eq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

bool mem_eq(const void *a, const void *b, size_t n)
{
	return memcmp(a, b, n) == 0;
}

uint32_t fnv1a32(uint64_t paddr, uint64_t len)
{
	const uint8_t *p = (const uint8_t *)(uintptr_t)paddr;
	uint32_t h = 0x811c9dc5u;

	for (uint64_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x01000193u;
	}
	return h;
}

void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void debug_exit(uint8_t code)
{
	outb(DEBUG_EXIT_PORT, code);
	halt_forever();
}

void finish(bool pass)
{
	uart_puts(pass ? "RESULT PASS\n" : "RESULT FAIL\n");
	debug_exit(pass ? 0 : 1);
}

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;
	while (n--)
		*dp++ = *sp++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;
	if (dp < sp) {
		while (n--)
			*dp++ = *sp++;
	} else {
		while (n--)
			dp[n] = sp[n];
	}
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (size_t i = 0; i < n; i++) {
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	}
	return 0;
}
