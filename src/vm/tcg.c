/* SPDX-License-Identifier: MIT */
/*
 * The emulating engine: the guest runs under QEMU's TCG emulator
 * (qemu-system-x86_64 -M microvm -accel tcg), a child process of the one
 * that owns the VM, and every virtio device is kiln's own — the same ops
 * tables as on KVM — served to QEMU over vhost-user from this process.
 *
 *   kiln process                                   QEMU child
 *   device thread per device: vhost_user_server  <--socketpair--> vhost-user-*
 *   supervisor thread: spawns QEMU, reads its     <--socketpair--> serial
 * (ttyS0) serial output and stderr, ends it, maps its <--pipe-------- stderr
 *     exit onto kiln's outcomes
 *   console thread (vm.c): input --> serial socket
 *
 * No socket file exists: QEMU gets connected sockets (chardev fd=N). Guest
 * RAM is a shared memfd (memory-backend-memfd,share=on) that QEMU maps and
 * passes to each device's server in the vhost-user memory table. QEMU dies
 * with the thread that spawned it (PR_SET_PDEATHSIG), so also when the kiln
 * process is killed; it runs in its own session (a terminal's ^C is the
 * guest's, not QEMU's) and under its own seccomp filter (-sandbox on).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "vhost_user/server.h"
#include "vm/tcg.h"
#include "vm/vm_internal.h"

/* How long QEMU gets to exit after SIGTERM before SIGKILL. */
#define TCG_STOP_GRACE_MS 3000
/* How much of QEMU's stderr is kept for the outcome's detail. */
#define TCG_STDERR_TAIL 1024
#define TCG_MAX_ARGS	128

struct tcg_server {
	struct vhost_user_server *srv;
	pthread_t thread;
	bool started;
	int peer_fd; /* QEMU's end of the vhost-user socket */
	char *path;  /* or the socket QEMU connects to (network devices) */
};

struct tcg_engine {
	struct kiln_vm *vm;
	/* the servers' log: their connect/disconnect lines are routine here */
	struct kiln_log server_log;
	char *qemu;
	char *argv[TCG_MAX_ARGS + 1];
	unsigned argc;
	bool debug_exit;
	int serial_fd, serial_peer; /* ours, QEMU's */
	int err_rd, err_wr;	    /* QEMU's stderr */
	struct tcg_server servers[VM_VIRTIO_MAX_DEVICES];
	unsigned nr_servers;
	char *sock_dir; /* private (0700) directory of those sockets */

	pthread_t thread;
	bool thread_started;
	pid_t pid;
	int spawn_state; /* under vm->lock: 0 pending, 1 running, < 0 failed */

	char tail[TCG_STDERR_TAIL + 1]; /* last bytes of QEMU's stderr */
	size_t tail_len;
	char line[256]; /* the stderr line being assembled */
	size_t line_len;
	bool stderr_error; /* QEMU printed something other than a warning */
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Keeps fds handed to QEMU clear of 0..2, which the child replaces. */
static int fd_above_stdio(int fd)
{
	int nfd;

	if (fd < 0 || fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

/* QEMU's vhost-user netdev refuses a chardev given as fd= ("does not
 * support FD passing"): that server listens on a socket in a private
 * directory instead, which only this user can reach. */
static int listen_private(struct tcg_engine *t, struct tcg_server *s,
			  unsigned n)
{
	const char *base = getenv("XDG_RUNTIME_DIR");
	char path[256];

	if (!t->sock_dir) {
		/* sun_path holds 108 bytes: "BASE/kiln-tcg-XXXXXX/devN.sock" */
		if (!base || base[0] != '/' || strlen(base) > 64)
			base = "/tmp";
		snprintf(path, sizeof(path), "%s/kiln-tcg-XXXXXX", base);
		if (!mkdtemp(path))
			return -errno;
		t->sock_dir = strdup(path);
		if (!t->sock_dir) {
			rmdir(path);
			return -ENOMEM;
		}
	}
	snprintf(path, sizeof(path), "%s/dev%u.sock", t->sock_dir, n);
	s->path = strdup(path);
	if (!s->path)
		return -ENOMEM;
	return vhost_user_server_listen(s->srv, path);
}

static int socket_pair(int *ours, int *theirs)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	*ours = fd_above_stdio(sv[0]);
	*theirs = fd_above_stdio(sv[1]);
	if (*ours < 0 || *theirs < 0) {
		close_fd(ours);
		close_fd(theirs);
		return -EMFILE;
	}
	return 0;
}

static int add_arg(struct tcg_engine *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int add_arg(struct tcg_engine *t, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (t->argc >= TCG_MAX_ARGS)
		return -E2BIG;
	va_start(ap, fmt);
	r = vasprintf(&t->argv[t->argc], fmt, ap);
	va_end(ap);
	if (r < 0) {
		t->argv[t->argc] = NULL;
		return -ENOMEM;
	}
	t->argc++;
	return 0;
}

/* QEMU's -device for one of kiln's devices (its chardev is vuN): the
 * type's vhost-user front end and the device's own properties. */
static int add_device_args(struct tcg_engine *t, const struct virtio_dev *d,
			   unsigned n)
{
	const struct virtio_dev_ops *ops = d->ops;
	char props[128] = "";
	int r = 0;

	if (!ops->vhost_user_frontend)
		return -ENOTSUP;
	if (ops->frontend_props) {
		props[0] = ',';
		r = ops->frontend_props(d, props + 1, sizeof(props) - 1);
	}
	if (r >= 0)
		r = add_arg(t, "-chardev");
	if (r == 0 && t->servers[n].path)
		r = add_arg(t, "socket,id=vu%u,path=%s", n, t->servers[n].path);
	else if (r == 0)
		r = add_arg(t, "socket,id=vu%u,fd=%d", n,
			    t->servers[n].peer_fd);
	if (r == 0 && ops->vhost_user_netdev) {
		r = add_arg(t, "-netdev");
		if (r == 0)
			r = add_arg(t, "vhost-user,id=net%u,chardev=vu%u", n,
				    n);
		if (r == 0)
			r = add_arg(t, "-device");
		if (r == 0)
			r = add_arg(t, "%s,netdev=net%u%s",
				    ops->vhost_user_frontend, n,
				    props[0] ? props : "");
		return r;
	}
	if (r == 0)
		r = add_arg(t, "-device");
	if (r == 0)
		r = add_arg(t, "%s,chardev=vu%u%s", ops->vhost_user_frontend, n,
			    props[0] ? props : "");
	return r;
}

static int build_argv(struct tcg_engine *t, const struct kiln_config *cfg)
{
	struct kiln_vm *vm = t->vm;
	int r = 0;

#define ARG(...)                                                               \
	do {                                                                   \
		if (r == 0)                                                    \
			r = add_arg(t, __VA_ARGS__);                           \
	} while (0)
	ARG("%s", t->qemu);
	/* acpi=off: the guest kernel has no ACPI, and QEMU then announces the
	 * virtio-mmio devices on the command line itself; rtc=on saves the
	 * guest a second of waiting for a missing RTC. */
	ARG("-M");
	ARG("microvm,acpi=off,x-option-roms=off,rtc=on,isa-serial=on,"
	    "memory-backend=mem");
	ARG("-accel");
	ARG(vm->ncpus > 1 ? "tcg,thread=multi" : "tcg");
	ARG("-cpu");
	ARG("max");
	ARG("-smp");
	ARG("%u", vm->ncpus);
	ARG("-m");
	ARG("%" PRIu64 "M", cfg->memory_mib);
	/* shared so the device servers can map it (vhost-user memory table) */
	ARG("-object");
	ARG("memory-backend-memfd,id=mem,size=%" PRIu64 "M,share=on",
	    cfg->memory_mib);
	/* vhost-user back-ends speak virtio 1.x only */
	ARG("-global");
	ARG("virtio-mmio.force-legacy=false");
	ARG("-nodefaults");
	ARG("-no-user-config");
	ARG("-display");
	ARG("none");
	ARG("-no-reboot");
	ARG("-sandbox");
	ARG("on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
	    "resourcecontrol=deny");
	ARG("-chardev");
	ARG("socket,id=ser0,fd=%d", t->serial_peer);
	ARG("-serial");
	ARG("chardev:ser0");
	if (cfg->debug_exit) {
		ARG("-device");
		ARG("isa-debug-exit,iobase=%#x,iosize=1", KILN_DEBUG_EXIT_PORT);
	}
	ARG("-kernel");
	ARG("%s", cfg->kernel_path);
	if (cfg->initrd_path) {
		ARG("-initrd");
		ARG("%s", cfg->initrd_path);
	}
	ARG("-append");
	ARG("%s", vm->cmdline);
#undef ARG
	for (unsigned i = 0; r == 0 && i < vm->nr_vdevs; i++)
		r = add_device_args(t, &vm->vdevs[i].mmio.dev, i);
	if (r < 0)
		return kiln_errorf(&vm->log, r,
				   "cannot build QEMU's arguments");
	return 0;
}

int tcg_create(struct kiln_vm *vm, const struct kiln_config *cfg,
	       const char *qemu)
{
	struct tcg_engine *t = calloc(1, sizeof(*t));
	int r;

	if (!t)
		return -ENOMEM;
	vm->tcg = t;
	t->vm = vm;
	t->serial_fd = t->serial_peer = t->err_rd = t->err_wr = -1;
	t->pid = -1;
	t->debug_exit = cfg->debug_exit;
	t->server_log = vm->log;
	if (t->server_log.max_level == KILN_LOG_INFO)
		t->server_log.max_level = KILN_LOG_WARN;
	t->qemu = strdup(qemu);
	if (!t->qemu)
		return -ENOMEM;
	if (cfg->console == KILN_CONSOLE_VIRTIO)
		return kiln_errorf(&vm->log, -ENOTSUP,
				   "the virtio console is not available on "
				   "the emulating engine (tcg): use the serial "
				   "console, or --accel kvm");
	r = vm_check_guest_files(vm, cfg);
	if (r < 0)
		return r;
	r = vm_create_vdevs(vm, cfg, false);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < vm->nr_vdevs; i++) {
		struct tcg_server *s = &t->servers[i];
		struct virtio_dev *dev = &vm->vdevs[i].mmio.dev;
		int ours = -1;

		s->peer_fd = -1;
		t->nr_servers = i + 1;
		r = vhost_user_server_create(dev, &t->server_log, &s->srv);
		if (r < 0)
			return r;
		if (dev->ops->vhost_user_netdev)
			r = listen_private(t, s, i);
		else
			r = socket_pair(&ours, &s->peer_fd);
		if (r == 0 && !s->path)
			r = vhost_user_server_attach(s->srv, ours);
		if (r < 0)
			return kiln_errorf(&vm->log, r,
					   "cannot serve %s to QEMU: %s",
					   dev->ops->name, strerror(-r));
	}
	r = socket_pair(&t->serial_fd, &t->serial_peer);
	if (r == 0 && fcntl(t->serial_fd, F_SETFL, O_NONBLOCK) < 0)
		r = -errno;
	if (r == 0) {
		int p[2];

		if (pipe2(p, O_CLOEXEC) < 0) {
			r = -errno;
		} else {
			t->err_rd = fd_above_stdio(p[0]);
			t->err_wr = fd_above_stdio(p[1]);
			if (t->err_rd < 0 || t->err_wr < 0 ||
			    fcntl(t->err_rd, F_SETFL, O_NONBLOCK) < 0)
				r = -EMFILE;
		}
	}
	if (r < 0)
		return kiln_errorf(&vm->log, r,
				   "cannot make QEMU's channels: %s",
				   strerror(-r));
	/* reboot=t: microvm has no keyboard controller to reset through;
	 * QEMU ends (-no-reboot) on the guest's triple fault. */
	vm->cmdline = config_build_cmdline(cfg, "reboot=t");
	if (!vm->cmdline)
		return -ENOMEM;
	return build_argv(t, cfg);
}

/* --- QEMU's stderr --- */

static void stderr_line(struct tcg_engine *t)
{
	t->line[t->line_len] = 0;
	if (t->line_len) {
		bool warning = strstr(t->line, "warning:") != NULL;

		if (!warning)
			t->stderr_error = true;
		kiln_logf(&t->vm->log, warning ? KILN_LOG_INFO : KILN_LOG_WARN,
			  "qemu: %s", t->line);
	}
	t->line_len = 0;
}

static void stderr_bytes(struct tcg_engine *t, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || t->line_len == sizeof(t->line) - 1)
			stderr_line(t);
		if (buf[i] != '\n')
			t->line[t->line_len++] = buf[i];
	}
	if (n >= TCG_STDERR_TAIL) {
		memcpy(t->tail, buf + n - TCG_STDERR_TAIL, TCG_STDERR_TAIL);
		t->tail_len = TCG_STDERR_TAIL;
	} else {
		size_t keep = t->tail_len + n > TCG_STDERR_TAIL
				      ? TCG_STDERR_TAIL - n
				      : t->tail_len;

		memmove(t->tail, t->tail + t->tail_len - keep, keep);
		memcpy(t->tail + keep, buf, n);
		t->tail_len = keep + n;
	}
	t->tail[t->tail_len] = 0;
}

/* Reads what is there; false at EOF or error (QEMU gone). */
static bool drain_stderr(struct tcg_engine *t)
{
	char buf[1024];

	for (;;) {
		ssize_t n = read(t->err_rd, buf, sizeof(buf));

		if (n > 0) {
			stderr_bytes(t, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;
	}
}

static bool drain_serial(struct tcg_engine *t)
{
	uint8_t buf[4096];

	for (;;) {
		ssize_t n = read(t->serial_fd, buf, sizeof(buf));

		if (n > 0) {
			vm_console_output(t->vm, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;
	}
}

/* --- spawning and supervising QEMU --- */

/* The child between fork and exec: async-signal-safe calls only. */
static void child_exec(struct tcg_engine *t, pid_t parent, int devnull,
		       int status_fd)
{
	struct sigaction dfl;
	sigset_t none;
	int err;

	setsid();
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127); /* the spawning thread is already gone */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL); /* fails harmlessly for some */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 ||
	    dup2(t->err_wr, 2) < 0)
		goto fail;
#ifdef SYS_close_range
	/* Whatever else the application left open stays out of QEMU. */
	syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
#endif
	fcntl(status_fd, F_SETFD, FD_CLOEXEC);
	if (fcntl(t->serial_peer, F_SETFD, 0) < 0)
		goto fail;
	for (unsigned i = 0; i < t->nr_servers; i++)
		if (t->servers[i].peer_fd >= 0 &&
		    fcntl(t->servers[i].peer_fd, F_SETFD, 0) < 0)
			goto fail;
	execv(t->qemu, t->argv);
fail:
	err = errno;
	if (write(status_fd, &err, sizeof(err)) < 0) {
	}
	_exit(127);
}

/* Forks and execs QEMU; 0 once exec succeeded, or -errno. */
static int spawn_qemu(struct tcg_engine *t)
{
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	int st[2], err = 0;
	pid_t parent = getpid(), pid;
	ssize_t n;

	if (devnull < 0)
		return -errno;
	if (pipe2(st, O_CLOEXEC) < 0) {
		err = -errno;
		close(devnull);
		return err;
	}
	pid = fork();
	if (pid == 0)
		child_exec(t, parent, devnull, st[1]);
	close(st[1]);
	close(devnull);
	if (pid < 0) {
		err = -errno;
		close(st[0]);
		return err;
	}
	t->pid = pid;
	do
		n = read(st[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(st[0]);
	if (n == (ssize_t)sizeof(err)) {
		waitpid(pid, NULL, 0);
		t->pid = -1;
		return -err;
	}
	/* QEMU holds its ends now; ours would keep dead connections open */
	close_fd(&t->serial_peer);
	close_fd(&t->err_wr);
	for (unsigned i = 0; i < t->nr_servers; i++)
		close_fd(&t->servers[i].peer_fd);
	return 0;
}

static void set_spawn_state(struct tcg_engine *t, int state)
{
	pthread_mutex_lock(&t->vm->lock);
	t->spawn_state = state;
	pthread_cond_broadcast(&t->vm->cond);
	pthread_mutex_unlock(&t->vm->lock);
}

void tcg_map_exit(int wstatus, bool debug_exit, bool stderr_error,
		  const char *tail, struct kiln_exit_info *info, char *detail,
		  size_t size)
{
	const char *sep = tail && *tail ? ": " : "";

	memset(info, 0, sizeof(*info));
	if (!tail)
		tail = "";
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
		/* -no-reboot: a guest reboot (or triple fault) ends QEMU */
		info->outcome = KILN_OUTCOME_RESET;
		snprintf(detail, size, "guest reset");
	} else if (WIFEXITED(wstatus) && (WEXITSTATUS(wstatus) & 1) &&
		   debug_exit && !stderr_error) {
		/* isa-debug-exit: QEMU exits with (value << 1) | 1 */
		info->outcome = KILN_OUTCOME_DEBUG_EXIT;
		info->debug_exit_code = WEXITSTATUS(wstatus) >> 1;
		snprintf(detail, size, "guest debug-exit %d",
			 info->debug_exit_code);
	} else if (WIFEXITED(wstatus)) {
		info->outcome = KILN_OUTCOME_VMM_ERROR;
		snprintf(detail, size, "QEMU failed (exit status %d)%s%s",
			 WEXITSTATUS(wstatus), sep, tail);
	} else if (WIFSIGNALED(wstatus)) {
		info->outcome = KILN_OUTCOME_VMM_ERROR;
		snprintf(detail, size, "QEMU was killed by signal %d (%s)%s%s",
			 WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)), sep,
			 tail);
	} else {
		info->outcome = KILN_OUTCOME_VMM_ERROR;
		snprintf(detail, size, "QEMU ended (wait status %#x)", wstatus);
	}
}

/* The last line of QEMU's stderr that says something, for messages. */
static void tail_summary(const struct tcg_engine *t, char *out, size_t size)
{
	char copy[TCG_STDERR_TAIL + 1];
	char *last = NULL, *save = NULL;

	snprintf(copy, sizeof(copy), "%s", t->tail);
	for (char *l = strtok_r(copy, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save))
		if (*l)
			last = l;
	snprintf(out, size, "%s", last ? last : "");
}

static void *supervisor_main(void *arg)
{
	struct tcg_engine *t = arg;
	struct kiln_vm *vm = t->vm;
	struct kiln_exit_info info;
	char detail[512], tail[300];
	int64_t kill_at = -1;
	bool term_sent = false, serial_open = true, err_open = true;
	int r = spawn_qemu(t), wstatus = 0;

	if (r < 0) {
		kiln_errorf(&vm->log, r, "cannot start QEMU (%s): %s", t->qemu,
			    strerror(-r));
		set_spawn_state(t, r);
		return NULL;
	}
	set_spawn_state(t, 1);
	for (;;) {
		struct pollfd fds[3] = {
			{.fd = serial_open ? t->serial_fd : -1,
			 .events = POLLIN},
			{.fd = err_open ? t->err_rd : -1, .events = POLLIN},
			{.fd = term_sent ? -1 : vm->wake_fd, .events = POLLIN},
		};
		int timeout = 200;
		pid_t w;

		if (!term_sent && atomic_load(&vm->stopping)) {
			/* the clean request; QEMU exits on SIGTERM */
			kill(t->pid, SIGTERM);
			term_sent = true;
			kill_at = now_ms() + TCG_STOP_GRACE_MS;
			continue;
		}
		if (kill_at >= 0 && now_ms() >= kill_at) {
			log_warn(&vm->log,
				 "QEMU did not stop within %d ms: killing it",
				 TCG_STOP_GRACE_MS);
			kill(t->pid, SIGKILL);
			kill_at = -1;
		}
		w = waitpid(t->pid, &wstatus, WNOHANG);
		if (w == t->pid)
			break;
		if (w < 0 && errno != EINTR) {
			wstatus = 0;
			break;
		}
		/* Both pipes at EOF: QEMU is exiting; poll only for waitpid. */
		if (!serial_open && !err_open)
			timeout = 10;
		if (poll(fds, 3, timeout) < 0 && errno != EINTR)
			break;
		if (fds[0].revents)
			serial_open = drain_serial(t);
		if (fds[1].revents)
			err_open = drain_stderr(t);
	}
	if (serial_open)
		drain_serial(t);
	if (err_open)
		drain_stderr(t);
	stderr_line(t);
	t->pid = -1;
	tail_summary(t, tail, sizeof(tail));
	tcg_map_exit(wstatus, t->debug_exit, t->stderr_error, tail, &info,
		     detail, sizeof(detail));
	/* A stop we asked for keeps its own outcome (first one wins). */
	vm_finish_info(vm, &info, detail);
	return NULL;
}

static void *server_main(void *arg)
{
	struct tcg_server *s = arg;

	vhost_user_server_run(s->srv);
	return NULL;
}

int tcg_start(struct kiln_vm *vm)
{
	struct tcg_engine *t = vm->tcg;
	int r = 0;

	for (unsigned i = 0; i < t->nr_servers && r == 0; i++) {
		r = -pthread_create(&t->servers[i].thread, NULL, server_main,
				    &t->servers[i]);
		t->servers[i].started = r == 0;
	}
	if (r == 0) {
		r = -pthread_create(&t->thread, NULL, supervisor_main, t);
		t->thread_started = r == 0;
	}
	if (r < 0)
		return r;
	pthread_mutex_lock(&vm->lock);
	while (t->spawn_state == 0)
		pthread_cond_wait(&vm->cond, &vm->lock);
	r = t->spawn_state < 0 ? t->spawn_state : 0;
	pthread_mutex_unlock(&vm->lock);
	return r;
}

void tcg_join(struct kiln_vm *vm)
{
	struct tcg_engine *t = vm->tcg;

	if (t->thread_started) {
		pthread_join(t->thread, NULL);
		t->thread_started = false;
	}
	for (unsigned i = 0; i < t->nr_servers; i++)
		if (t->servers[i].started) {
			vhost_user_server_stop(t->servers[i].srv);
			pthread_join(t->servers[i].thread, NULL);
			t->servers[i].started = false;
		}
}

void tcg_destroy(struct kiln_vm *vm)
{
	struct tcg_engine *t = vm->tcg;

	if (!t)
		return;
	tcg_join(vm);
	for (unsigned i = 0; i < t->nr_servers; i++) {
		vhost_user_server_destroy(t->servers[i].srv);
		close_fd(&t->servers[i].peer_fd);
		if (t->servers[i].path)
			unlink(t->servers[i].path);
		free(t->servers[i].path);
	}
	if (t->sock_dir)
		rmdir(t->sock_dir);
	free(t->sock_dir);
	close_fd(&t->serial_fd);
	close_fd(&t->serial_peer);
	close_fd(&t->err_rd);
	close_fd(&t->err_wr);
	for (unsigned i = 0; i < t->argc; i++)
		free(t->argv[i]);
	free(t->qemu);
	free(t);
	vm->tcg = NULL;
}

/* --- console input --- */

size_t tcg_console_room(struct kiln_vm *vm)
{
	struct pollfd p = {.fd = vm->tcg->serial_fd, .events = POLLOUT};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) ? 64 : 0;
}

size_t tcg_console_push(struct kiln_vm *vm, const uint8_t *buf, size_t len)
{
	ssize_t n =
		send(vm->tcg->serial_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n < 0 && errno == EPIPE) {
		/* QEMU is gone; the supervisor ends the VM. Drop input. */
		return len;
	}
	return n > 0 ? (size_t)n : 0;
}

void tcg_wait_console_room(struct kiln_vm *vm)
{
	struct pollfd p = {.fd = vm->tcg->serial_fd, .events = POLLOUT};

	pthread_mutex_unlock(&vm->lock);
	poll(&p, 1, 50);
	pthread_mutex_lock(&vm->lock);
}
