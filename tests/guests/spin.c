/* SPDX-License-Identifier: MIT */
/* spin: no output, busy loop forever (the VMM's --timeout must end it). */
#include "lib.h"

void guest_main(const struct entry_state *es)
{
	(void)es;
	for (;;)
		__asm__ volatile("1: jmp 1b");
}
