/* SPDX-License-Identifier: MIT */
/*
 * Shared definitions for kiln's freestanding test guests.
 *
 * Included from C (guest programs, lib.c) and from assembly (the entry
 * stubs), so everything outside the __ASSEMBLER__ guard must be plain
 * preprocessor definitions.
 */
#ifndef KILN_TEST_GUEST_LIB_H
#define KILN_TEST_GUEST_LIB_H

/* Which boot protocol brought us up (entry_state.proto). */
#define BOOT_PROTO_BZIMAGE 1 /* bzImage, 64-bit boot protocol (head64.S) */
#define BOOT_PROTO_PVH 2     /* ELF + Xen PVH note (head_pvh.S) */

/* Byte offsets of struct entry_state fields, for the assembly stubs. */
#define ES_PROTO 0
#define ES_BOOTREG 8 /* RSI (bzImage: zero page) or EBX (PVH: start_info) */
#define ES_FLAGS 16  /* RFLAGS / EFLAGS at entry */
#define ES_CR0 24
#define ES_CR3 32
#define ES_CR4 40
#define ES_EFER 48
#define ES_CS 56
#define ES_DS 64
#define ES_ES 72
#define ES_SS 80
#define ES_FS 88
#define ES_GS 96
#define ES_SIZE 104

/* Fixed platform addresses (kiln's contract). */
#define UART_BASE 0x3f8
#define DEBUG_EXIT_PORT 0x501
#define I8042_CMD_PORT 0x64

#ifndef __ASSEMBLER__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Machine state as found at the very first instruction of the guest,
 * recorded by the entry stub before it changes anything (the stub only
 * loads its own stack pointer before reading the flags register).
 */
struct entry_state {
	uint64_t proto;
	uint64_t bootreg;
	uint64_t flags;
	uint64_t cr0;
	uint64_t cr3;
	uint64_t cr4;
	uint64_t efer;
	uint64_t cs, ds, es, ss, fs, gs;
};

_Static_assert(offsetof(struct entry_state, bootreg) == ES_BOOTREG, "ES_BOOTREG");
_Static_assert(offsetof(struct entry_state, flags) == ES_FLAGS, "ES_FLAGS");
_Static_assert(offsetof(struct entry_state, efer) == ES_EFER, "ES_EFER");
_Static_assert(offsetof(struct entry_state, cs) == ES_CS, "ES_CS");
_Static_assert(offsetof(struct entry_state, gs) == ES_GS, "ES_GS");
_Static_assert(sizeof(struct entry_state) == ES_SIZE, "ES_SIZE");

/* Every guest program provides this; the entry stub calls it. */
void guest_main(const struct entry_state *es);

/* Linker-script symbols: the whole image, load address to end of stack. */
extern char _image_start[], _image_end[];

/* ---- port I/O ---- */
static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* Unaligned little-endian loads from guest-physical memory (identity map). */
static inline uint8_t phys_rd8(uint64_t a)
{
	return *(const volatile uint8_t *)(uintptr_t)a;
}
static inline uint16_t phys_rd16(uint64_t a)
{
	struct __attribute__((packed)) p { uint16_t v; };
	return ((const volatile struct p *)(uintptr_t)a)->v;
}
static inline uint32_t phys_rd32(uint64_t a)
{
	struct __attribute__((packed)) p { uint32_t v; };
	return ((const volatile struct p *)(uintptr_t)a)->v;
}
static inline uint64_t phys_rd64(uint64_t a)
{
	struct __attribute__((packed)) p { uint64_t v; };
	return ((const volatile struct p *)(uintptr_t)a)->v;
}

/* ---- lib.c ---- */
void uart_putc(char c);
void uart_puts(const char *s);            /* no newline added */
void uart_putn(const char *s, size_t n);  /* n raw bytes */
void uart_puthex(uint64_t v);             /* "0x" + lowercase, no leading zeros */
void uart_putdec(uint64_t v);
bool uart_rx_ready(void);
uint8_t uart_getc_raw(void);              /* only when uart_rx_ready() */

size_t str_len(const char *s);
size_t str_nlen(const char *s, size_t max);
bool str_eq(const char *a, const char *b);
bool mem_eq(const void *a, const void *b, size_t n);
uint32_t fnv1a32(uint64_t paddr, uint64_t len);

/* Print "RESULT PASS"/"RESULT FAIL" and exit through the debug port. */
__attribute__((noreturn)) void finish(bool pass);
/* OUT code to the debug-exit port, then park the CPU. */
__attribute__((noreturn)) void debug_exit(uint8_t code);
/* cli; hlt forever. */
__attribute__((noreturn)) void halt_forever(void);

/* gcc may emit calls to these even when freestanding. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif /* __ASSEMBLER__ */
#endif /* KILN_TEST_GUEST_LIB_H */
