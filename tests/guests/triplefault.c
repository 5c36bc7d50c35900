/* SPDX-License-Identifier: MIT */
/*
 * triplefault: load an IDT with limit 0, then raise #UD.  The exception
 * cannot be delivered (#GP), nor can the #GP (#DF), nor the #DF: the CPU
 * shuts down and the VMM must report a triple fault / shutdown.
 */
#include "lib.h"

void guest_main(const struct entry_state *es)
{
	(void)es;
	static const struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} idtr = { 0, 0 };

	uart_puts("TRIPLEFAULT now\n");
	__asm__ volatile("lidt %0" : : "m"(idtr));
	__asm__ volatile("ud2");
	/* Not reached on a correct VMM. */
	uart_puts("FAIL survived an undeliverable exception\n");
	finish(false);
}
