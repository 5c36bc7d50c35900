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
/* --disk PATH|URL[,ro|,rw][,snapshot][,format=raw|qcow2|auto][,insecure]:
 * options are taken from the end, so a path may hold commas. */
static int disk_option(struct kiln_config *cfg, const char *arg)
{
	char *path = strdup(arg), *comma;
	const char *format = NULL;
	unsigned flags = 0;
	int r;

	if (!path)
		return EXIT_KILN_FAILED;
	while ((comma = strrchr(path, ','))) {
		if (!strcmp(comma, ",ro"))
			flags |= KILN_DISK_READ_ONLY;
		else if (!strcmp(comma, ",snapshot"))
			flags |= KILN_DISK_SNAPSHOT;
		else if (!strcmp(comma, ",insecure"))
			flags |= KILN_DISK_INSECURE;
		else if (!strncmp(comma, ",format=", 8))
			format = comma + 8;
		else if (strcmp(comma, ",rw"))
			break;
		*comma = 0;
	}
	if (!*path) {
		free(path);
		cli_usage_error("--disk: missing path");
		return EXIT_USAGE;
	}
	r = kiln_config_add_disk_with(cfg, path, flags, format);
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

/* Hands --net user[,KEY=VALUE...] to the library. */
static int net_user(struct kiln_config *cfg, const char *spec)
{
	enum kiln_egress egress = KILN_EGRESS_PUBLIC;
	char buf[256], *save = NULL, *mac = NULL, *subnet = NULL;

	if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
		goto bad;
	for (char *kv = strtok_r(buf + 4, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');

		if (!v)
			goto bad;
		*v++ = 0;
		if (!strcmp(kv, "egress") && !strcmp(v, "public"))
			egress = KILN_EGRESS_PUBLIC;
		else if (!strcmp(kv, "egress") && !strcmp(v, "all"))
			egress = KILN_EGRESS_ALL;
		else if (!strcmp(kv, "egress") && !strcmp(v, "none"))
			egress = KILN_EGRESS_NONE;
		else if (!strcmp(kv, "mac"))
			mac = v;
		else if (!strcmp(kv, "net"))
			subnet = v;
		else
			goto bad;
	}
	if (kiln_config_set_net_user(cfg, egress) < 0 ||
	    ((mac || subnet) &&
	     kiln_config_set_net_address(cfg, mac, subnet) < 0))
		return EXIT_USAGE; /* logged */
	return 0;
bad:
	cli_usage_error("--net: expected user[,egress=public|all|none]"
			"[,mac=MAC][,net=A.B.C.D/N], got '%s'",
			spec);
	return EXIT_USAGE;
}

int cli_vm_net(struct kiln_config *cfg, const struct cli_vm *vm)
{
	int r;

	/* the library logs what is wrong with a value (as a usage error) */
	for (unsigned i = 0; i < vm->nr_networks; i++)
		if (kiln_config_add_network(cfg, vm->networks[i]) < 0)
			return EXIT_USAGE;
	if (!vm->net) {
		if (vm->nr_rules || vm->nr_forwards || vm->nr_domains ||
		    vm->dns) {
			cli_usage_error(
				"--allow, --deny, --allow-domain, --dns "
				"and -p need --net user");
			return EXIT_USAGE;
		}
		return 0;
	}
	r = net_user(cfg, vm->net);
	for (unsigned i = 0; r == 0 && i < vm->nr_rules; i++)
		if (kiln_config_add_net_rule(cfg, vm->rules[i].allow,
					     vm->rules[i].spec) < 0)
			r = EXIT_USAGE;
	for (unsigned i = 0; r == 0 && i < vm->nr_forwards; i++)
		if (kiln_config_add_port_forward(cfg, vm->forwards[i]) < 0)
			r = EXIT_USAGE;
	for (unsigned i = 0; r == 0 && i < vm->nr_domains; i++)
		if (kiln_config_add_allowed_domain(cfg, vm->domains[i]) < 0)
			r = EXIT_USAGE;
	if (r == 0 && vm->dns && kiln_config_set_dns(cfg, vm->dns) < 0)
		r = EXIT_USAGE;
	return r;
}

/* Keeps a repeatable option's value; false when there are too many. */
static bool keep(const char **list, unsigned *n, unsigned cap, const char *arg,
		 const char *what)
{
	if (*n == cap) {
		cli_usage_error("%s: at most %u", what, cap);
		return false;
	}
	list[(*n)++] = arg;
	return true;
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
	case OPT_ALLOW:
	case OPT_DENY:
		if (vm->nr_rules == sizeof(vm->rules) / sizeof(vm->rules[0])) {
			cli_usage_error("--allow/--deny: at most %zu rules",
					sizeof(vm->rules) /
						sizeof(vm->rules[0]));
			return EXIT_USAGE;
		}
		vm->rules[vm->nr_rules].allow = c == OPT_ALLOW;
		vm->rules[vm->nr_rules++].spec = arg;
		return 0;
	case OPT_PUBLISH:
		return keep(vm->forwards, &vm->nr_forwards, 16, arg, "-p")
			       ? 0
			       : EXIT_USAGE;
	case OPT_ALLOW_DOMAIN:
		return keep(vm->domains, &vm->nr_domains, 32, arg,
			    "--allow-domain")
			       ? 0
			       : EXIT_USAGE;
	case OPT_NETWORK:
		return keep(vm->networks, &vm->nr_networks, 4, arg, "--network")
			       ? 0
			       : EXIT_USAGE;
	case OPT_DNS: vm->dns = arg; return 0;
	case OPT_ACCEL:
		vm->accel_set = true;
		return accel_option(cfg, "--accel", arg);
	}
	return EXIT_USAGE;
}

int cli_vm_engine(struct kiln_config *cfg, const struct cli_vm *vm)
{
	const char *kvm = getenv("KILN_KVM_DEVICE");
	const char *accel = getenv("KILN_ACCEL");
	int r;

	if (!vm->accel_set && accel && *accel) {
		r = accel_option(cfg, "KILN_ACCEL", accel);
		if (r)
			return r;
	}
	if (kvm && kiln_config_set_kvm_path(cfg, kvm) < 0)
		return EXIT_KILN_FAILED;
	return 0;
}

int cli_vm_finish(struct kiln_config *cfg, const struct cli_vm *vm)
{
	int r = cli_vm_net(cfg, vm);

	if (r)
		return r;
	r = cli_vm_engine(cfg, vm);
	if (r)
		return r;
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

const char *cli_option_word(char **argv, int next)
{
	/* "--cpus=2" or "-p8080:80" is one word; "--cpus 2" two */
	if (next >= 2 && argv[next - 1][0] != '-')
		return argv[next - 2];
	return argv[next - 1];
}
