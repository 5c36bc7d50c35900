/* SPDX-License-Identifier: MIT */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

const char *cli_progname = "kiln";

void cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n",
		cli_progname);
}

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cli_log(void *opaque, enum kiln_log_level level, const char *msg)
{
	(void)opaque;
	fprintf(stderr, "%s: %s%s\n", cli_progname,
		level == KILN_LOG_WARN ? "warning: " : "", msg);
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

bool cli_parse_seconds(const char *opt, const char *s, int *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 2000000) {
		cli_usage_error("%s: '%s' is not a positive number of seconds",
				opt, s);
		return false;
	}
	*ms = (int)(v * 1000);
	if (*ms < 1)
		*ms = 1;
	return true;
}

/* guest/ beside the executable (the build tree), unless $KILN_GUEST_DIR
 * says otherwise; NULL lets the library look ($KILN_GUEST_DIR, then the
 * installed data directory). */
static const char *build_tree_guest_dir(char *dir, size_t len)
{
	const char *env = getenv("KILN_GUEST_DIR");
	char exe[PATH_MAX - 16];
	char *slash;
	ssize_t n;

	if (env && *env)
		return NULL;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	snprintf(dir, len, "%s/guest", exe);
	return access(dir, R_OK) == 0 ? dir : NULL;
}

/* Shares hold one host fd per guest inode: allow as many as we may. */
static void raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* --disk PATH[,ro|,rw] */
static int disk_option(struct kiln_config *cfg, const char *arg)
{
	char *path = strdup(arg), *comma;
	bool ro = false;
	int r;

	if (!path)
		return EXIT_KILN_FAILED;
	comma = strrchr(path, ',');
	if (comma && !strcmp(comma, ",ro")) {
		*comma = 0;
		ro = true;
	} else if (comma && !strcmp(comma, ",rw")) {
		*comma = 0;
	}
	if (!*path) {
		free(path);
		cli_usage_error("--disk: missing path");
		return EXIT_USAGE;
	}
	r = kiln_config_add_disk(cfg, path, ro);
	free(path);
	return r < 0 ? EXIT_USAGE : 0;
}

/* --share HOST_DIR:TAG[:ro|:rw][:/GUEST/PATH] */
static int share_option(struct kiln_config *cfg, const char *arg)
{
	char *spec = strdup(arg), *field[4] = {NULL};
	const char *guest = NULL;
	bool ro = false, ok = true;
	unsigned n = 0;
	int r;

	if (!spec)
		return EXIT_KILN_FAILED;
	for (char *p = spec; p && ok; n++) {
		char *colon = strchr(p, ':');

		if (n == 4) {
			ok = false;
			break;
		}
		field[n] = p;
		if (colon)
			*colon++ = 0;
		p = colon;
	}
	ok = ok && n >= 2 && *field[0] && *field[1];
	for (unsigned i = 2; ok && i < n; i++) {
		if (!strcmp(field[i], "ro") && i == 2)
			ro = true;
		else if (!strcmp(field[i], "rw") && i == 2)
			ro = false;
		else if (field[i][0] == '/' && i == n - 1)
			guest = field[i];
		else
			ok = false;
	}
	if (!ok) {
		cli_usage_error(
			"--share: expected HOST_DIR:TAG[:ro][:/GUEST/PATH], "
			"got '%s'",
			arg);
		free(spec);
		return EXIT_USAGE;
	}
	r = kiln_config_add_share_at(cfg, field[0], field[1], ro, guest);
	free(spec);
	if (r < 0)
		return EXIT_USAGE;
	raise_nofile_limit();
	return 0;
}

/* --accel / $KILN_ACCEL: auto, kvm or tcg. */
static int accel_option(struct kiln_config *cfg, const char *what,
			const char *arg)
{
	enum kiln_accel a;

	if (kiln_accel_parse(arg, &a) < 0) {
		cli_usage_error("%s: '%s' is not an engine (auto, kvm or tcg)",
				what, arg);
		return EXIT_USAGE;
	}
	return kiln_config_set_accel(cfg, a) < 0 ? EXIT_KILN_FAILED : 0;
}

/* --net none | user[,egress=public|all|none][,mac=MAC][,net=A.B.C.D/N]:
 * user-mode NAT behind a virtio-net device (none: no NIC at all). */
static int net_option(struct cli_vm *vm, const char *arg)
{
	if (!strcmp(arg, "none")) {
		vm->net = NULL;
		return 0;
	}
	if (strcmp(arg, "user") && strncmp(arg, "user,", 5)) {
		cli_usage_error("--net: expected none or "
				"user[,egress=public|all|none][,mac=MAC]"
				"[,net=A.B.C.D/N], got '%s'",
				arg);
		return EXIT_USAGE;
	}
	vm->net = arg;
	return 0;
}

/* Appends item to a ';'-separated list; false if it does not fit or has
 * a character the device option syntax would split on. */
static bool list_add(char *list, size_t cap, const char *item)
{
	size_t used = strlen(list);
	int r;

	if (strpbrk(item, ";,"))
		return false;
	r = snprintf(list + used, cap - used, "%s%s", used ? ";" : "", item);
	return r > 0 && (size_t)r < cap - used;
}

/* -p [tcp:|udp:][HOSTIP:]HOSTPORT:GUESTPORT or ...:GUESTPORT/udp, the host
 * address 127.0.0.1 unless given. */
static int publish_option(struct cli_vm *vm, const char *arg)
{
	char buf[128], item[160];
	const char *proto = "tcp";
	char *p = buf, *slash, *c1, *c2;

	if (snprintf(buf, sizeof(buf), "%s", arg) >= (int)sizeof(buf))
		goto bad;
	slash = strrchr(buf, '/');
	if (slash && (!strcmp(slash, "/tcp") || !strcmp(slash, "/udp"))) {
		proto = slash + 1;
		*slash = 0;
	}
	c1 = strchr(p, ':');
	c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || (c2 && strchr(c2 + 1, ':')))
		goto bad;
	if (c2)
		snprintf(item, sizeof(item), "%s:%s", proto, p);
	else
		snprintf(item, sizeof(item), "%s:127.0.0.1:%s", proto, p);
	if (!list_add(vm->forwards, sizeof(vm->forwards), item))
		goto bad;
	return 0;
bad:
	cli_usage_error("-p: expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp], "
			"got '%s'",
			arg);
	return EXIT_USAGE;
}

static int rule_option(struct cli_vm *vm, bool allow, const char *arg)
{
	char item[160];

	snprintf(item, sizeof(item), "%s:%s", allow ? "allow" : "deny", arg);
	if (strlen(arg) > 120 ||
	    !list_add(vm->rules, sizeof(vm->rules), item)) {
		cli_usage_error("--%s: '%s' is not a rule (CIDR[:PORT[-PORT]]"
				"[/tcp|/udp], [IPV6CIDR]:PORT, host:PORT)",
				allow ? "allow" : "deny", arg);
		return EXIT_USAGE;
	}
	return 0;
}

int cli_vm_net(struct kiln_config *cfg, const struct cli_vm *vm)
{
	char spec[6144];
	int n;

	if (!vm->net) {
		if (vm->rules[0] || vm->forwards[0] || vm->domains[0] ||
		    vm->dns) {
			cli_usage_error(
				"--allow, --deny, --allow-domain, --dns "
				"and -p need --net user");
			return EXIT_USAGE;
		}
		return 0;
	}
	n = snprintf(spec, sizeof(spec), "net%s%s%s%s%s%s%s%s%s", vm->net + 4,
		     vm->rules[0] ? ",rules=" : "", vm->rules,
		     vm->forwards[0] ? ",forward=" : "", vm->forwards,
		     vm->domains[0] ? ",domains=" : "", vm->domains,
		     vm->dns ? ",dns=" : "", vm->dns ? vm->dns : "");
	if (n < 0 || (size_t)n >= sizeof(spec)) {
		cli_usage_error("--net: too many rules");
		return EXIT_USAGE;
	}
	/* bad values are explained by the device's check (logged) */
	return kiln_config_add_device(cfg, spec) < 0 ? EXIT_USAGE : 0;
}

int cli_vm_option(struct kiln_config *cfg, struct cli_vm *vm, int c,
		  const char *arg)
{
	uint64_t v;

	switch (c) {
	case OPT_KERNEL: vm->kernel = arg; return 0;
	case OPT_INITRD: vm->initrd = arg; return 0;
	case OPT_CPUS:
		if (!cli_parse_u64(arg, &v) || v > UINT_MAX) {
			cli_usage_error("--cpus: '%s' is not a number", arg);
			return EXIT_USAGE;
		}
		if (kiln_config_set_cpus(cfg, (unsigned)v) < 0)
			return EXIT_USAGE;
		vm->cpus = (unsigned)v;
		return 0;
	case OPT_MEMORY:
		if (!cli_parse_u64(arg, &v)) {
			cli_usage_error("--memory: '%s' is not a number of MiB",
					arg);
			return EXIT_USAGE;
		}
		if (kiln_config_set_memory_mib(cfg, v) < 0)
			return EXIT_USAGE;
		vm->memory_mib = v;
		return 0;
	case OPT_CMDLINE:
		return kiln_config_append_cmdline(cfg, arg) < 0
			       ? EXIT_KILN_FAILED
			       : 0;
	case OPT_DISK: return disk_option(cfg, arg);
	case OPT_SHARE: return share_option(cfg, arg);
	case OPT_DEVICE:
		/* bad keys or values, or too many devices: logged */
		if (kiln_config_add_device(cfg, arg) < 0)
			return EXIT_USAGE;
		if (!strncmp(arg, "fs,", 3))
			raise_nofile_limit();
		return 0;
	case OPT_NET: return net_option(vm, arg);
	case OPT_ALLOW: return rule_option(vm, true, arg);
	case OPT_DENY: return rule_option(vm, false, arg);
	case OPT_PUBLISH: return publish_option(vm, arg);
	case OPT_ALLOW_DOMAIN:
		if (!*arg || !list_add(vm->domains, sizeof(vm->domains), arg)) {
			cli_usage_error("--allow-domain: '%s' is not a name",
					arg);
			return EXIT_USAGE;
		}
		return 0;
	case OPT_DNS:
		if (!*arg || strpbrk(arg, ",;")) {
			cli_usage_error("--dns: expected IP[:PORT], got '%s'",
					arg);
			return EXIT_USAGE;
		}
		vm->dns = arg;
		return 0;
	case OPT_ACCEL:
		vm->accel_set = true;
		return accel_option(cfg, "--accel", arg);
	}
	return EXIT_USAGE;
}

int cli_vm_finish(struct kiln_config *cfg, const struct cli_vm *vm)
{
	const char *kvm = getenv("KILN_KVM_DEVICE");
	const char *accel = getenv("KILN_ACCEL");
	int r = cli_vm_net(cfg, vm);

	if (r)
		return r;
	if (!vm->accel_set && accel && *accel) {
		r = accel_option(cfg, "KILN_ACCEL", accel);
		if (r)
			return r;
	}

	if (kvm && kiln_config_set_kvm_path(cfg, kvm) < 0)
		return EXIT_KILN_FAILED;
	if (!vm->kernel) {
		char dir[PATH_MAX];

		if (kiln_config_set_guest_dir(
			    cfg, build_tree_guest_dir(dir, sizeof(dir))) < 0) {
			cli_error(
				"no --kernel given and kiln's default guest "
				"was not found ($KILN_GUEST_DIR, guest/ beside "
				"the kiln binary, or the installed one); run "
				"'make guest' or pass --kernel");
			return EXIT_KILN_FAILED;
		}
		if (vm->initrd && kiln_config_set_initrd(cfg, vm->initrd) < 0)
			return EXIT_KILN_FAILED;
		return 0;
	}
	if (kiln_config_set_kernel(cfg, vm->kernel) < 0 ||
	    (vm->initrd && kiln_config_set_initrd(cfg, vm->initrd) < 0))
		return EXIT_KILN_FAILED;
	return 0;
}

static struct termios saved_tty;
static bool tty_raw;

void cli_tty_restore(void)
{
	if (tty_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
	tty_raw = false;
}

void cli_tty_raw(bool keep_output_processing)
{
	struct termios t;

	if (tcgetattr(STDIN_FILENO, &saved_tty) < 0)
		return;
	t = saved_tty;
	cfmakeraw(&t);
	if (keep_output_processing)
		t.c_oflag |= OPOST | ONLCR;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
		tty_raw = true;
}
