/* SPDX-License-Identifier: MIT */
/*
 * KVM-tier test of the console API (wait_for / exec) against the "prompt"
 * tiny guest: a prompt, a command's output, a timeout, and the VM ending
 * under an exec. Prints ok/not ok lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kiln/kiln.h>

static int failures;

static void check(int cond, const char *name, const char *detail)
{
	if (cond) {
		printf("ok - console api: %s\n", name);
	} else {
		printf("not ok - console api: %s: %s\n", name, detail ? detail : "");
		failures++;
	}
}

int main(int argc, char **argv)
{
	struct kiln_config *cfg = kiln_config_new();
	struct kiln_exit_info info;
	struct kiln_vm *vm;
	char *out = NULL;
	int r;

	if (argc != 2 || !cfg)
		return 2;
	kiln_config_set_kernel(cfg, argv[1]);
	kiln_config_set_memory_mib(cfg, 16);
	kiln_config_set_debug_exit(cfg, 1);
	/* tier 2: kiln's own vCPUs, never QEMU */
	kiln_config_set_accel(cfg, KILN_ACCEL_KVM);
	kiln_config_set_console_capture(cfg, 1);
	kiln_config_set_console_fds(cfg, -1, -1);
	r = kiln_vm_create(cfg, &vm);
	kiln_config_free(cfg);
	if (r < 0 || kiln_vm_start(vm) < 0) {
		printf("not ok - console api: cannot start VM (%d)\n", r);
		return 1;
	}
	r = kiln_vm_console_wait_for(vm, "kiln$ ", 20000, &out);
	check(r == 0, "wait_for the first prompt", strerror(-r));
	free(out);

	r = kiln_vm_console_exec(vm, "hello world", "kiln$ ", 20000, &out);
	check(r == 0 && out && strcmp(out, "you said: hello world\n") == 0,
	      "exec returns the command's output", out ? out : strerror(-r));
	free(out);

	r = kiln_vm_console_wait_for(vm, "never printed", 300, &out);
	check(r == -ETIMEDOUT && !out, "wait_for times out", strerror(-r));

	r = kiln_vm_console_exec(vm, "exit", "kiln$ ", 20000, &out);
	check(r == -EPIPE, "exec sees the VM end", strerror(-r));
	free(out);

	kiln_vm_wait(vm, 20000, &info);
	check(info.outcome == KILN_OUTCOME_DEBUG_EXIT && info.debug_exit_code == 0,
	      "guest exited", info.detail);
	kiln_vm_destroy(vm);
	return failures ? 1 : 0;
}
