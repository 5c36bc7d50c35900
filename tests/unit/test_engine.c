/* SPDX-License-Identifier: MIT */
/*
 * Engine selection (KVM or QEMU TCG) over fake host states, QEMU lookup,
 * and how a QEMU exit maps onto kiln's outcomes.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <kiln/kiln.h>

#include "vm/engine.h"
#include "vm/tcg.h"

#define QEMU "/usr/bin/qemu-system-x86_64"

static int pick(enum kiln_accel want, int kvm_err, bool pvm, const char *qemu,
		char *note, char *why)
{
	struct engine_host h = {
		.kvm_err = kvm_err, .kvm_pvm = pvm, .qemu = qemu};

	return engine_select(want, &h, note, 512, why, 256);
}

static void test_auto_prefers_hardware_kvm(void **state)
{
	char note[512], why[256];

	(void)state;
	assert_int_equal(pick(KILN_ACCEL_AUTO, 0, false, QEMU, note, why),
			 KILN_ACCEL_KVM);
	assert_string_equal(note, "");
	assert_int_equal(pick(KILN_ACCEL_AUTO, 0, false, NULL, note, why),
			 KILN_ACCEL_KVM);
	assert_string_equal(note, "");
}

static void test_auto_falls_back_with_reason(void **state)
{
	static const struct {
		int err;
		bool pvm;
		const char *reason;
	} cases[] = {
		{0, true, "/dev/kvm is PVM (no VMX/SVM)"},
		{-ENOENT, false, "no /dev/kvm"},
		{-EACCES, false, "no permission to open /dev/kvm"},
		{-EPERM, true, "no permission to open /dev/kvm"},
		{-EIO, false, "/dev/kvm cannot be opened"},
	};
	char note[512], why[256];

	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(pick(KILN_ACCEL_AUTO, cases[i].err,
				      cases[i].pvm, QEMU, note, why),
				 KILN_ACCEL_TCG);
		assert_non_null(strstr(note, cases[i].reason));
		assert_non_null(strstr(note, "emulating engine"));
		assert_non_null(strstr(note, "isolation rests on QEMU"));
	}
}

static void test_auto_without_qemu_names_the_package(void **state)
{
	char note[512], why[256];

	(void)state;
	/* KVM's own error then says what is wrong with /dev/kvm */
	assert_int_equal(pick(KILN_ACCEL_AUTO, -ENOENT, false, NULL, note, why),
			 KILN_ACCEL_KVM);
	assert_non_null(strstr(note, "qemu-system-x86"));
	assert_int_equal(pick(KILN_ACCEL_AUTO, 0, true, NULL, note, why),
			 KILN_ACCEL_KVM);
	assert_non_null(strstr(note, "PVM"));
}

static void test_kvm_never_falls_back(void **state)
{
	char note[512], why[256];

	(void)state;
	assert_int_equal(pick(KILN_ACCEL_KVM, -ENOENT, false, QEMU, note, why),
			 KILN_ACCEL_KVM);
	assert_string_equal(note, "");
	assert_int_equal(pick(KILN_ACCEL_KVM, 0, true, QEMU, note, why),
			 KILN_ACCEL_KVM);
	assert_string_equal(note, "");
}

static void test_tcg_needs_qemu(void **state)
{
	char note[512], why[256];

	(void)state;
	assert_int_equal(pick(KILN_ACCEL_TCG, 0, false, QEMU, note, why),
			 KILN_ACCEL_TCG);
	assert_int_equal(pick(KILN_ACCEL_TCG, 0, false, NULL, note, why),
			 -ENOENT);
	assert_non_null(strstr(why, "qemu-system-x86"));
	assert_non_null(strstr(why, "KILN_QEMU"));
}

static void test_find_qemu(void **state)
{
	char dir[] = "/tmp/kiln-engine-XXXXXX", exe[128], buf[4096];
	char *old_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(exe, sizeof(exe), "%s/qemu-system-x86_64", dir);
	f = fopen(exe, "w");
	assert_non_null(f);
	fclose(f);
	chmod(exe, 0755);

	setenv("KILN_QEMU", exe, 1);
	assert_int_equal(engine_find_qemu(buf, sizeof(buf)), 0);
	assert_string_equal(buf, exe);
	setenv("KILN_QEMU", "/nonexistent/qemu", 1);
	assert_int_equal(engine_find_qemu(buf, sizeof(buf)), -ENOENT);
	unsetenv("KILN_QEMU");

	setenv("PATH", "/nonexistent::relative", 1);
	assert_int_equal(engine_find_qemu(buf, sizeof(buf)), -ENOENT);
	{
		char path[300];

		snprintf(path, sizeof(path), "/nonexistent:%s", dir);
		setenv("PATH", path, 1);
	}
	assert_int_equal(engine_find_qemu(buf, sizeof(buf)), 0);
	assert_string_equal(buf, exe);
	/* not executable: skipped */
	chmod(exe, 0644);
	if (geteuid() != 0)
		assert_int_equal(engine_find_qemu(buf, sizeof(buf)), -ENOENT);

	if (old_path)
		setenv("PATH", old_path, 1);
	free(old_path);
	unlink(exe);
	rmdir(dir);
}

static void test_accel_names(void **state)
{
	enum kiln_accel a;
	struct kiln_config *cfg = kiln_config_new();

	(void)state;
	assert_int_equal(kiln_accel_parse("auto", &a), 0);
	assert_int_equal(a, KILN_ACCEL_AUTO);
	assert_int_equal(kiln_accel_parse("kvm", &a), 0);
	assert_int_equal(a, KILN_ACCEL_KVM);
	assert_int_equal(kiln_accel_parse("tcg", &a), 0);
	assert_int_equal(a, KILN_ACCEL_TCG);
	assert_int_equal(kiln_accel_parse("hvf", &a), -EINVAL);
	assert_int_equal(kiln_accel_parse("", &a), -EINVAL);
	assert_int_equal(kiln_accel_parse(NULL, &a), -EINVAL);
	assert_string_equal(kiln_accel_name(KILN_ACCEL_TCG), "tcg");
	assert_int_equal(kiln_config_set_accel(cfg, KILN_ACCEL_TCG), 0);
	assert_int_equal(kiln_config_set_accel(cfg, (enum kiln_accel)7),
			 -EINVAL);
	kiln_config_free(cfg);
}

static int exited(int code)
{
	return code << 8; /* a wait status as WIFEXITED reads it */
}

static void test_map_exit(void **state)
{
	struct kiln_exit_info info;
	char d[512];

	(void)state;
	tcg_map_exit(exited(0), false, false, "", &info, d, sizeof(d));
	assert_int_equal(info.outcome, KILN_OUTCOME_RESET);
	assert_string_equal(d, "guest reset");

	/* isa-debug-exit: (value << 1) | 1 */
	tcg_map_exit(exited((21 << 1) | 1), true, false, "", &info, d,
		     sizeof(d));
	assert_int_equal(info.outcome, KILN_OUTCOME_DEBUG_EXIT);
	assert_int_equal(info.debug_exit_code, 21);
	tcg_map_exit(exited(1), true, false, "", &info, d, sizeof(d));
	assert_int_equal(info.outcome, KILN_OUTCOME_DEBUG_EXIT);
	assert_int_equal(info.debug_exit_code, 0);

	/* exit 1 with an error on stderr is QEMU's failure, not the guest's */
	tcg_map_exit(exited(1), true, true, "qemu-system-x86_64: no kernel",
		     &info, d, sizeof(d));
	assert_int_equal(info.outcome, KILN_OUTCOME_VMM_ERROR);
	assert_non_null(strstr(d, "exit status 1"));
	assert_non_null(strstr(d, "no kernel"));
	tcg_map_exit(exited(3), false, false, "", &info, d, sizeof(d));
	assert_int_equal(info.outcome, KILN_OUTCOME_VMM_ERROR);

	tcg_map_exit(SIGSEGV, false, false, "boom", &info, d, sizeof(d));
	assert_int_equal(info.outcome, KILN_OUTCOME_VMM_ERROR);
	assert_non_null(strstr(d, "signal 11"));
	assert_non_null(strstr(d, "boom"));
	tcg_map_exit(SIGKILL, false, false, NULL, &info, d, sizeof(d));
	assert_int_equal(info.outcome, KILN_OUTCOME_VMM_ERROR);
	assert_null(strstr(d, "(null)"));
}

static void test_tcg_create_errors(void **state)
{
	struct kiln_config *cfg = kiln_config_new();
	struct kiln_vm *vm = NULL;
	char dir[] = "/tmp/kiln-engine-XXXXXX", k[128];
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(k, sizeof(k), "%s/kernel", dir);
	f = fopen(k, "w");
	fputs("not a kernel", f);
	fclose(f);
	kiln_config_set_log(cfg, NULL, NULL, KILN_LOG_ERROR);
	kiln_config_set_kernel(cfg, k);
	/* no QEMU: --accel tcg is refused, never silently KVM */
	setenv("KILN_QEMU", "/nonexistent/qemu", 1);
	kiln_config_set_accel(cfg, KILN_ACCEL_TCG);
	assert_int_equal(kiln_vm_create(cfg, &vm), -ENOENT);
	assert_null(vm);
	/* with a "QEMU", the kernel is still checked first, as on KVM */
	setenv("KILN_QEMU", "/bin/true", 1);
	assert_int_equal(kiln_vm_create(cfg, &vm), -ENOEXEC);
	assert_null(vm);
	kiln_config_set_console(cfg, KILN_CONSOLE_VIRTIO);
	assert_int_equal(kiln_vm_create(cfg, &vm), -ENOTSUP);
	unsetenv("KILN_QEMU");
	unlink(k);
	rmdir(dir);
	kiln_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auto_prefers_hardware_kvm),
		cmocka_unit_test(test_auto_falls_back_with_reason),
		cmocka_unit_test(test_auto_without_qemu_names_the_package),
		cmocka_unit_test(test_kvm_never_falls_back),
		cmocka_unit_test(test_tcg_needs_qemu),
		cmocka_unit_test(test_find_qemu),
		cmocka_unit_test(test_accel_names),
		cmocka_unit_test(test_map_exit),
		cmocka_unit_test(test_tcg_create_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
