/* SPDX-License-Identifier: MIT */
/* reset: announce, then pulse reset through the i8042 (0xfe to port 0x64). */
#include "lib.h"

void guest_main(const struct entry_state *es)
{
	(void)es;
	uart_puts("RESET now\n");
	outb(I8042_CMD_PORT, 0xfe);
	/* Not reached when the VMM handles the reset request synchronously. */
	uart_puts("FAIL i8042 reset ignored\n");
	finish(false);
}
