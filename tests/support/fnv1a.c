/* SPDX-License-Identifier: MIT */
/* Prints the FNV-1a 32-bit hash of a file as "0x" + lowercase hex without
 * leading zeros: exactly how the test guests' uart_puthex reports the initrd
 * they received (a zero-padded form failed whenever the hash was below
 * 0x10000000). */
#include <stdint.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	uint32_t h = 2166136261u;
	FILE *f;
	int c;

	if (argc != 2 || !(f = fopen(argv[1], "rb"))) {
		fprintf(stderr, "usage: fnv1a FILE\n");
		return 2;
	}
	while ((c = getc(f)) != EOF)
		h = (h ^ (uint8_t)c) * 16777619u;
	fclose(f);
	printf("0x%x\n", h);
	return 0;
}
