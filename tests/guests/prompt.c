/* SPDX-License-Identifier: MIT */
/*
 * prompt: a tiny line-oriented "shell" for the console API tests. Prints
 * the prompt "kiln$ ", echoes what it receives, and on '\r' or '\n' answers
 * "you said: <line>" and prompts again. "exit" ends the VM with status 0.
 */
#include "lib.h"

#define LINE_MAX 128

static bool streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

void guest_main(const struct entry_state *es)
{
	char line[LINE_MAX + 1];
	unsigned len = 0;

	(void)es;
	uart_puts("kiln$ ");
	for (;;) {
		char c;

		if (!uart_rx_ready()) {
			cpu_relax();
			continue;
		}
		c = (char)uart_getc_raw();
		if (c != '\r' && c != '\n') {
			if (len < LINE_MAX)
				line[len++] = c;
			uart_putc(c);
			continue;
		}
		line[len] = 0;
		uart_putc('\n');
		if (streq(line, "exit"))
			debug_exit(0);
		uart_puts("you said: ");
		uart_puts(line);
		uart_puts("\nkiln$ ");
		len = 0;
	}
}
