/* SPDX-License-Identifier: MIT */
/*
 * fakekvm.so — an LD_PRELOAD shim that makes a real /dev/kvm look older or
 * less capable, so the CLI tests can check kiln's refusal messages:
 *
 *   KILN_FAKE_API_VERSION=N   KVM_GET_API_VERSION returns N
 *   KILN_FAKE_MISSING_CAP=N   KVM_CHECK_EXTENSION(N) returns 0 (absent)
 *
 * Every other ioctl goes to the real one (the next `ioctl` in link order).
 * Built by the Makefile as $(BUILD)/tests/fakekvm.so with -ldl.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

typedef int (*ioctl_fn)(int fd, unsigned long req, ...);

/* Reads an integer from the environment; 0 if unset or not a number. */
static int env_int(const char *name, long *out)
{
	const char *s = getenv(name);
	char *end;

	if (!s || !*s)
		return 0;
	*out = strtol(s, &end, 0);
	return *end == '\0';
}

/* Same prototype as glibc's. The third argument of every ioctl kiln makes
 * is an integer or a pointer, so one unsigned long carries either. */
int ioctl(int fd, unsigned long req, ...)
{
	static ioctl_fn real;
	unsigned long arg;
	va_list ap;
	long n;

	va_start(ap, req);
	arg = va_arg(ap, unsigned long);
	va_end(ap);

	if (req == KVM_GET_API_VERSION && env_int("KILN_FAKE_API_VERSION", &n))
		return (int)n;
	if (req == KVM_CHECK_EXTENSION &&
	    env_int("KILN_FAKE_MISSING_CAP", &n) && (long)(int)arg == n)
		return 0;

	if (!real)
		real = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	return real(fd, req, arg);
}
