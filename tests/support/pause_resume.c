/* SPDX-License-Identifier: MIT */
/*
 * KVM-tier test of kiln_vm_pause/resume against the "prompt" tiny guest,
 * which polls its UART with IN instructions all the time (so a pause lands
 * on an IN exit): paused, the guest answers nothing typed at it; resumed,
 * it answers, in order, nothing lost or repeated; pause twice and resume
 * twice are fine; a paused VM stops cleanly. Prints ok/not ok lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kiln/kiln.h>

static int failures;

static void check(int cond, const char *name, const char *detail)
{
	if (cond) {
		printf("ok - pause/resume: %s\n", name);
	} else {
		printf("not ok - pause/resume: %s: %s\n", name,
		       detail ? detail : "");
		failures++;
	}
}

static long long ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	struct kiln_config *cfg = kiln_config_new();
	struct kiln_exit_info info;
	struct kiln_vm *vm;
	char *out = NULL;
	long long t0;
	int r;

	if (argc != 2 || !cfg)
		return 2;
	kiln_config_set_kernel(cfg, argv[1]);
	kiln_config_set_memory_mib(cfg, 16);
	kiln_config_set_debug_exit(cfg, 1);
	kiln_config_set_accel(cfg, KILN_ACCEL_KVM);
	kiln_config_set_console_capture(cfg, 1);
	kiln_config_set_console_fds(cfg, -1, -1);
	r = kiln_vm_create(cfg, &vm);
	kiln_config_free(cfg);
	if (r < 0 || kiln_vm_start(vm) < 0) {
		printf("not ok - pause/resume: cannot start VM (%d)\n", r);
		return 1;
	}
	r = kiln_vm_console_wait_for(vm, "kiln$ ", 20000, &out);
	free(out);
	check(r == 0, "the guest is up", strerror(-r));

	t0 = ms_now();
	r = kiln_vm_pause(vm);
	check(r == 0 && kiln_vm_paused(vm) == 1,
	      "pause returns with the VM paused", strerror(-r));
	printf("# pause took %lld ms\n", ms_now() - t0);
	check(kiln_vm_pause(vm) == 0, "pausing a paused VM is fine", NULL);
	/* typed while paused: not even echoed */
	r = (int)kiln_vm_console_write(vm, "one\n", 4);
	check(r == 4, "input is accepted while paused", strerror(-r));
	r = kiln_vm_console_wait_for(vm, "one", 1500, &out);
	free(out);
	out = NULL;
	check(r == -ETIMEDOUT, "paused: the guest answers nothing for 1.5 s",
	      r == 0 ? "it echoed" : strerror(-r));
	check(kiln_vm_outcome(vm) == KILN_OUTCOME_NONE,
	      "paused: the halt monitor does not take it for halted", NULL);

	r = kiln_vm_resume(vm);
	check(r == 0 && kiln_vm_paused(vm) == 0, "resume", strerror(-r));
	check(kiln_vm_resume(vm) == 0, "resuming a running VM is fine", NULL);
	r = kiln_vm_console_wait_for(vm, "you said: one\nkiln$ ", 20000, &out);
	check(r == 0, "resumed: the input typed while paused is answered once",
	      out ? out : strerror(-r));
	free(out);
	out = NULL;
	/* many pauses in a row while the guest polls its UART */
	for (int i = 0; i < 20 && r == 0; i++) {
		r = kiln_vm_pause(vm);
		if (r == 0)
			r = kiln_vm_resume(vm);
	}
	check(r == 0, "20 pause/resume cycles", strerror(-r));
	r = kiln_vm_console_exec(vm, "two", "kiln$ ", 20000, &out);
	check(r == 0 && out && !strcmp(out, "you said: two\n"),
	      "the guest works after them", out ? out : strerror(-r));
	free(out);
	/* a paused VM stops */
	kiln_vm_pause(vm);
	kiln_vm_stop(vm);
	r = kiln_vm_wait(vm, 10000, &info);
	check(r == 0 && info.outcome == KILN_OUTCOME_STOPPED,
	      "a paused VM stops", strerror(-r));
	check(kiln_vm_pause(vm) == -EINVAL, "pausing an ended VM: EINVAL",
	      NULL);
	kiln_vm_destroy(vm);
	return failures ? 1 : 0;
}
