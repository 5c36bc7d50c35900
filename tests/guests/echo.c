/* SPDX-License-Identifier: MIT */
/*
 * echo: print "ECHO ready", then echo every byte received on the UART.
 * On 'q' (not echoed) print "ECHO bye" on a line of its own (a '\n' is
 * inserted first if the echoed bytes did not end with one) and exit 0.
 */
#include "lib.h"

void guest_main(const struct entry_state *es)
{
	(void)es;
	char last = '\n';

	uart_puts("ECHO ready\n");
	for (;;) {
		if (!uart_rx_ready()) {
			cpu_relax();
			continue;
		}
		char c = (char)uart_getc_raw();
		if (c == 'q')
			break;
		uart_putc(c);
		last = c;
	}
	if (last != '\n')
		uart_putc('\n');
	uart_puts("ECHO bye\n");
	debug_exit(0);
}
