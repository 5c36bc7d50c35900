/* SPDX-License-Identifier: MIT */
/* clihlt: announce, then cli; hlt forever (the VMM must detect a dead guest). */
#include "lib.h"

void guest_main(const struct entry_state *es)
{
	(void)es;
	uart_puts("CLIHLT now\n");
	halt_forever();
}
