/* SPDX-License-Identifier: MIT */
/*
 * KVM-tier test of snapshots on the "prompt" tiny guest (it polls its UART
 * with IN instructions, so the snapshot lands on an IN exit):
 *
 *   snapshot_check GUEST DIR          snapshot a running VM into DIR, which
 *                                     goes on; restore 3 clones here (one
 *                                     eager), independent; the memory file
 *                                     never written; every refusal
 *   snapshot_check --restore DIR      restore DIR in this (new) process
 *   snapshot_check --vsock VSOCKRESET DIR
 *                                     a vsock driver snapshotted: its
 *                                     clone's driver gets TRANSPORT_RESET
 *                                     on its event queue, the original not
 *   snapshot_check --pool DIR         a pool of VMs restored from DIR: 10
 *                                     claims, each a fresh clone that
 *                                     answers; refill; refusals
 *   snapshot_check --rounds SNAPCHECK DISK DIR
 *                                     the snapcheck guest (RAM nonce,
 *                                     counters, LAPIC and PIT interrupts,
 *                                     virtio-console output, disk reads)
 *                                     snapshotted mid-run, two clones: the
 *                                     output before the snapshot followed
 *                                     by each clone's is one unbroken run
 *
 * Prints ok/not ok lines; exit 0 when all passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <kiln/kiln.h>

static int failures;

static void check(int cond, const char *name, const char *detail)
{
	const char *cpus = getenv("SNAPSHOT_CHECK_CPUS");

	if (cond) {
		printf("ok - snapshot%s%s%s: %s\n", cpus ? " (" : "",
		       cpus ? cpus : "", cpus ? " vCPUs)" : "", name);
	} else {
		printf("not ok - snapshot%s%s%s: %s: %s\n", cpus ? " (" : "",
		       cpus ? cpus : "", cpus ? " vCPUs)" : "", name,
		       detail ? detail : "");
		failures++;
	}
	fflush(stdout);
}

static long long ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

static void log_stderr(void *opaque, enum kiln_log_level level, const char *msg)
{
	(void)opaque, (void)level;
	fprintf(stderr, "kiln: %s\n", msg);
}

static struct kiln_config *base_config(void)
{
	struct kiln_config *cfg = kiln_config_new();

	/* refusals are expected here: their messages go to stderr */
	kiln_config_set_log(cfg, log_stderr, NULL, KILN_LOG_WARN);

	kiln_config_set_accel(cfg, KILN_ACCEL_KVM);
	kiln_config_set_console_capture(cfg, 1);
	kiln_config_set_console_fds(cfg, -1, -1);
	kiln_config_set_debug_exit(cfg, 1);
	return cfg;
}

/* Sends line, expects "you said: line\n" before the next prompt. */
static int says(struct kiln_vm *vm, const char *line)
{
	char want[128], *out = NULL;
	int r;

	snprintf(want, sizeof(want), "you said: %s\n", line);
	r = kiln_vm_console_exec(vm, line, "kiln$ ", 20000, &out);
	if (r == 0 && (!out || strcmp(out, want)))
		r = -EBADMSG;
	free(out);
	return r;
}

static int restore(const char *dir, unsigned flags, struct kiln_vm **vm)
{
	struct kiln_config *cfg = base_config();
	int r = kiln_vm_restore(cfg, dir, flags, vm);

	kiln_config_free(cfg);
	if (r == 0) {
		r = kiln_vm_start(*vm);
		if (r < 0) {
			kiln_vm_destroy(*vm);
			*vm = NULL;
		}
	}
	return r;
}

static uint32_t file_crc(const char *path, off_t *size)
{
	uint8_t buf[65536];
	uint32_t crc = 0;
	int fd = open(path, O_RDONLY);
	ssize_t n;

	*size = 0;
	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		crc = (uint32_t)crc32(crc, buf, (uInt)n);
		*size += n;
	}
	close(fd);
	return crc;
}

static int copy_dir(const char *from, const char *to)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", to, from,
		 to);
	return system(cmd);
}

/* Rewrites DIR/state's CRC after an edit, so only the edit is wrong. */
static void fix_crc(uint8_t *b, size_t len)
{
	uint32_t crc = (uint32_t)crc32(0L, b, (uInt)(len - 4));

	memcpy(b + len - 4, &crc, 4);
}

static int edit_state(const char *dir, void (*edit)(uint8_t *, size_t *),
		      bool keep_crc)
{
	char path[512];
	uint8_t *b = malloc(1 << 22);
	size_t len;
	FILE *f;

	snprintf(path, sizeof(path), "%s/state", dir);
	f = fopen(path, "rb");
	len = fread(b, 1, 1 << 22, f);
	fclose(f);
	edit(b, &len);
	if (keep_crc)
		fix_crc(b, len);
	f = fopen(path, "wb");
	fwrite(b, 1, len, f);
	fclose(f);
	free(b);
	return 0;
}

static void flip_byte(uint8_t *b, size_t *len)
{
	b[*len / 2] ^= 0x40;
}

static void newer_major(uint8_t *b, size_t *len)
{
	(void)len;
	b[8] = 99;
}

static void truncate_half(uint8_t *b, size_t *len)
{
	(void)b;
	*len /= 2;
}

/* An unknown mandatory record (tag 77) before END. */
static void unknown_record(uint8_t *b, size_t *len)
{
	uint8_t end[20];
	uint8_t rec[16] = {77, 0, 0, 0, 1, 0, 0, 0, 0};

	memcpy(end, b + *len - 20, 20);
	memcpy(b + *len - 20, rec, 16);
	memcpy(b + *len - 4, end, 20);
	*len += 16;
}

/* Another host: this kernel's release string in the HOST record, changed. */
static void other_kernel(uint8_t *b, size_t *len)
{
	struct utsname u;
	size_t n;

	uname(&u);
	n = strlen(u.release);
	for (size_t i = 0; i + n <= *len; i++)
		if (!memcmp(b + i, u.release, n)) {
			b[i] = b[i] == 'X' ? 'Y' : 'X';
			return;
		}
}

static int refused(const char *dir, const char *name, int want)
{
	struct kiln_config *cfg = base_config();
	struct kiln_vm *vm = NULL;
	char msg[160];
	int r = kiln_vm_restore(cfg, dir, 0, &vm);

	kiln_config_free(cfg);
	snprintf(msg, sizeof(msg), "got %d (%s), want %d", r, strerror(-r),
		 want);
	check(r == want && !vm, name, msg);
	kiln_vm_destroy(vm);
	return 0;
}

static int restore_only(const char *dir)
{
	struct kiln_vm *vm = NULL;
	long long t0 = ms_now();
	int r = restore(dir, 0, &vm);

	check(r == 0, "restored in a new process", strerror(-r));
	if (r)
		return 1;
	printf("# restore + start took %lld ms\n", ms_now() - t0);
	r = says(vm, "new process");
	check(r == 0, "the restored guest answers in a new process",
	      strerror(-r));
	kiln_vm_destroy(vm);
	return failures ? 1 : 0;
}

/* ---- the snapcheck guest ---- */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n;

	*len = 0;
	if (!f)
		return NULL;
	for (;;) {
		if (*len + 4096 + 1 > cap) {
			cap = (cap ? cap * 2 : 65536);
			buf = realloc(buf, cap);
		}
		n = fread(buf + *len, 1, cap - *len - 1, f);
		if (n == 0)
			break;
		*len += n;
	}
	fclose(f);
	if (buf)
		buf[*len] = 0;
	return buf;
}

static int count_rounds(const char *path)
{
	size_t len;
	char *t = slurp(path, &len);
	int n = 0;

	/* "SNAP round=" at a line's start (not inside "VSNAP round=") */
	for (char *p = t; p && *p; p++) {
		if (!strncmp(p, "SNAP round=", 11))
			n++;
		p = strchr(p, '\n');
		if (!p)
			break;
	}
	free(t);
	return n;
}

static bool wait_rounds(const char *path, int want, int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		if (count_rounds(path) >= want)
			return true;
		usleep(50000);
	}
	return false;
}

/* The output before the snapshot and a clone's after it, as one text:
 * one start, rounds 1.. consecutive, each "SNAP" line followed by its
 * "VSNAP" line, one nonce, both timers moving, one disk read a round.
 * NULL if so, else what is wrong (static). */
static const char *one_run(const char *text, int *rounds)
{
	static char why[300];
	unsigned long long nonce = 0, lapic = 0, pit = 0;
	int starts = 0, expect = 1;
	bool want_v = false;
	const char *p = text;

	*rounds = 0;
	while (*p) {
		const char *nl = strchr(p, '\n');
		char l[120];
		size_t n;
		unsigned long long r, nn, la, pi, b;

		if (!nl)
			break; /* a last line still being written */
		n = (size_t)(nl - p) < sizeof(l) - 1 ? (size_t)(nl - p)
						     : sizeof(l) - 1;
		memcpy(l, p, n);
		l[n] = 0;
		p = nl + 1;
		if (strstr(l, "FAIL")) {
			snprintf(why, sizeof(why), "the guest says: %s", l);
			return why;
		}
		if (sscanf(l, "SNAP start nonce=%llx", &nn) == 1) {
			starts++;
			nonce = nn;
			continue;
		}
		if (sscanf(l,
			   "SNAP round=%llu nonce=%llx lapic=%llu pit=%llu "
			   "blk=%llu",
			   &r, &nn, &la, &pi, &b) == 5) {
			if (want_v || r != (unsigned long long)expect ||
			    nn != nonce || la <= lapic || pi <= pit || b != r) {
				snprintf(why, sizeof(why),
					 "round line out of step at round %d: "
					 "%s",
					 expect, l);
				return why;
			}
			lapic = la;
			pit = pi;
			want_v = true;
			*rounds = expect;
			continue;
		}
		if (sscanf(l, "VSNAP round=%llu", &r) == 1) {
			if (!want_v || r != (unsigned long long)expect) {
				snprintf(why, sizeof(why),
					 "virtio-console line out of step at "
					 "round %d: %s",
					 expect, l);
				return why;
			}
			want_v = false;
			expect++;
			continue;
		}
		snprintf(why, sizeof(why), "unexpected line: %s", l);
		return why;
	}
	if (starts != 1)
		return starts ? "the guest started twice" : "no start line";
	return NULL;
}

static int rounds_test(const char *guest, const char *disk, const char *dir)
{
	struct kiln_config *cfg = base_config();
	struct kiln_vm *vm = NULL;
	char a_path[600], b_path[600], detail[320];
	size_t a_len;
	char *a_text;
	int a_fd, r, rounds, before = 0;

	snprintf(a_path, sizeof(a_path), "%s.orig.out", dir);
	a_fd = open(a_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	kiln_config_set_console_capture(cfg, 0);
	kiln_config_set_console_fds(cfg, -1, a_fd);
	kiln_config_set_kernel(cfg, guest);
	kiln_config_set_memory_mib(cfg, 16);
	kiln_config_add_disk_with(cfg, disk, KILN_DISK_READ_ONLY, "raw");
	r = kiln_vm_create(cfg, &vm);
	kiln_config_free(cfg);
	if (r < 0 || kiln_vm_start(vm) < 0) {
		printf("not ok - snapshot: cannot start the snapcheck guest "
		       "(%d)\n",
		       r);
		return 1;
	}
	check(wait_rounds(a_path, 3, 20000), "the snapcheck guest runs rounds",
	      NULL);
	/* paused, its output drained: what the snapshot has printed */
	kiln_vm_pause(vm);
	usleep(300000);
	r = kiln_vm_snapshot(vm, dir);
	check(r == 0, "snapshot of the snapcheck guest mid-run", strerror(-r));
	a_text = slurp(a_path, &a_len);
	before = count_rounds(a_path);
	kiln_vm_resume(vm);
	check(wait_rounds(a_path, count_rounds(a_path) + 2, 10000),
	      "the original goes on after its snapshot", NULL);
	for (int k = 0; k < 2 && r == 0; k++) {
		struct kiln_vm *c = NULL;
		int b_fd;
		size_t b_len;
		char *b_text, *all;
		const char *why;

		snprintf(b_path, sizeof(b_path), "%s.clone%d.out", dir, k);
		b_fd = open(b_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		cfg = base_config();
		kiln_config_set_console_capture(cfg, 0);
		kiln_config_set_console_fds(cfg, -1, b_fd);
		r = kiln_vm_restore(cfg, dir, 0, &c);
		kiln_config_free(cfg);
		if (r == 0)
			r = kiln_vm_start(c);
		check(r == 0, "restore of the snapcheck guest", strerror(-r));
		if (r == 0)
			check(wait_rounds(b_path, 3, 20000),
			      "the clone runs rounds", NULL);
		kiln_vm_destroy(c);
		close(b_fd);
		b_text = slurp(b_path, &b_len);
		all = malloc(a_len + b_len + 1);
		memcpy(all, a_text ? a_text : "", a_len);
		memcpy(all + a_len, b_text ? b_text : "", b_len);
		all[a_len + b_len] = 0;
		why = one_run(all, &rounds);
		snprintf(detail, sizeof(detail), "%s", why ? why : "");
		check(!why && rounds >= before + 2,
		      k ? "a second clone of the same snapshot continues the "
			  "same way"
			: "the output before the snapshot and the clone's are "
			  "one run: same nonce, next round, timers (LAPIC, "
			  "PIT) ticking, console and disk answering, no line "
			  "lost or doubled",
		      detail);
		printf("# clone %d: rounds 1..%d before the snapshot, %d..%d "
		       "after\n",
		       k, before, before + 1, rounds);
		free(all);
		free(b_text);
	}
	free(a_text);
	kiln_vm_destroy(vm);
	close(a_fd);
	return failures ? 1 : 0;
}

static int vsock_test(const char *guest, const char *dir)
{
	struct kiln_config *cfg = base_config();
	struct kiln_vm *vm = NULL, *clone = NULL;
	struct kiln_exit_info info;
	char uds[600], *out = NULL;
	int r;

	snprintf(uds, sizeof(uds), "%s.orig.sock", dir);
	kiln_config_set_kernel(cfg, guest);
	kiln_config_set_memory_mib(cfg, 16);
	kiln_config_set_vsock(cfg, 3, uds);
	r = kiln_vm_create(cfg, &vm);
	kiln_config_free(cfg);
	if (r == 0)
		r = kiln_vm_start(vm);
	if (r == 0)
		r = kiln_vm_console_wait_for(vm, "VSOCK ready\n", 20000, &out);
	free(out);
	out = NULL;
	check(r == 0, "the vsock guest is up", strerror(-r));
	if (r)
		return 1;
	r = kiln_vm_snapshot(vm, dir);
	check(r == 0, "snapshot of a VM with a vsock device (no connection)",
	      strerror(-r));
	cfg = base_config();
	snprintf(uds, sizeof(uds), "%s.clone.sock", dir);
	kiln_config_set_vsock(cfg, 3, uds);
	r = r ? r : kiln_vm_restore(cfg, dir, 0, &clone);
	kiln_config_free(cfg);
	if (r == 0)
		r = kiln_vm_start(clone);
	check(r == 0, "restore with the clone's own vsock socket",
	      strerror(-r));
	if (r == 0) {
		r = kiln_vm_console_wait_for(clone, "VSOCK event id=0 len=4",
					     20000, &out);
		free(out);
		out = NULL;
		kiln_vm_wait(clone, 10000, &info);
		check(r == 0 && info.outcome == KILN_OUTCOME_DEBUG_EXIT &&
			      info.debug_exit_code == 0,
		      "the clone's vsock driver gets TRANSPORT_RESET (event "
		      "id 0) on its event queue",
		      strerror(-r));
	}
	r = kiln_vm_console_wait_for(vm, "VSOCK event", 500, &out);
	free(out);
	check(r == -ETIMEDOUT, "the original gets no event", NULL);
	kiln_vm_destroy(clone);
	kiln_vm_destroy(vm);
	return failures ? 1 : 0;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

static int pool_test(const char *dir)
{
	struct kiln_config *cfg = base_config();
	struct kiln_pool_opts o;
	struct kiln_pool_stats st;
	struct kiln_pool *p = NULL;
	struct kiln_sandbox *sb = NULL;
	long long us[10];
	char line[32];
	int r, ok = 1;

	kiln_pool_opts_init(&o);
	o.target = 3;
	r = kiln_pool_create_from_snapshot(cfg, "/nonexistent-snapshot", &o,
					   &p);
	check(r == -ENOENT && !p,
	      "a pool of a missing snapshot fails at create", strerror(-r));
	r = kiln_pool_create_from_snapshot(cfg, dir, &o, &p);
	kiln_config_free(cfg);
	check(r == 0, "a pool of restored VMs", strerror(-r));
	if (r)
		return 1;
	check(kiln_pool_acquire(p, 0, &sb) == -EINVAL && !sb,
	      "acquiring a sandbox from a pool of VMs: EINVAL", NULL);
	for (int i = 0; i < 10 && ok; i++) {
		struct kiln_vm *vm = NULL;
		struct timespec a, b;

		/* let it refill: what is timed is the claim itself */
		for (int k = 0; k < 200; k++) {
			kiln_pool_stats(p, &st);
			if (st.ready == 3 && !st.releasing)
				break;
			usleep(10000);
		}
		clock_gettime(CLOCK_MONOTONIC, &a);
		r = kiln_pool_acquire_vm(p, 10000, &vm);
		clock_gettime(CLOCK_MONOTONIC, &b);
		us[i] = (b.tv_sec - a.tv_sec) * 1000000ll +
			(b.tv_nsec - a.tv_nsec) / 1000;
		snprintf(line, sizeof(line), "claim %d", i);
		if (r < 0 || says(vm, line) < 0)
			ok = 0;
		kiln_pool_release_vm(p, vm);
	}
	check(ok, "10 claims, each a started clone that answers", NULL);
	qsort(us, 10, sizeof(us[0]), cmp_ll);
	printf("# snapshot pool claim (take + start): p50 %lld us, max %lld "
	       "us\n",
	       us[5], us[9]);
	for (int k = 0; k < 300; k++) {
		kiln_pool_stats(p, &st);
		if (st.ready == 3)
			break;
		usleep(10000);
	}
	check(st.ready == 3 && st.acquired == 10 && st.failures == 0,
	      "the pool refills, no failures", NULL);
	kiln_pool_destroy(p);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct kiln_config *cfg;
	struct kiln_vm *vm, *clones[3] = {0};
	char path[1100], bad[512], *out = NULL;
	struct stat st;
	uint32_t crc_before, crc_after;
	off_t size_before, size_after;
	long long t0;
	int r;

	if (argc == 3 && !strcmp(argv[1], "--restore"))
		return restore_only(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "--vsock"))
		return vsock_test(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "--pool"))
		return pool_test(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "--rounds"))
		return rounds_test(argv[2], argv[3], argv[4]);
	if (argc != 3)
		return 2;
	cfg = base_config();
	kiln_config_set_kernel(cfg, argv[1]);
	kiln_config_set_memory_mib(cfg, 16);
	/* SNAPSHOT_CHECK_CPUS=N: the same with N vCPUs (the APs parked in
	 * their wait-for-SIPI state across the snapshot) */
	if (getenv("SNAPSHOT_CHECK_CPUS"))
		kiln_config_set_cpus(
			cfg, (unsigned)atoi(getenv("SNAPSHOT_CHECK_CPUS")));
	r = kiln_vm_create(cfg, &vm);
	kiln_config_free(cfg);
	if (r < 0 || kiln_vm_start(vm) < 0) {
		printf("not ok - snapshot: cannot start VM (%d)\n", r);
		return 1;
	}
	r = kiln_vm_console_wait_for(vm, "kiln$ ", 20000, &out);
	free(out);
	check(r == 0 && says(vm, "before") == 0, "the guest is up", NULL);

	t0 = ms_now();
	r = kiln_vm_snapshot(vm, argv[2]);
	check(r == 0, "snapshot of a running VM", strerror(-r));
	printf("# snapshot took %lld ms\n", ms_now() - t0);
	check(kiln_vm_paused(vm) == 0, "the VM runs on after its snapshot",
	      NULL);
	r = says(vm, "after");
	check(r == 0, "the original answers after the snapshot", strerror(-r));
	snprintf(path, sizeof(path), "%s/memory", argv[2]);
	r = stat(path, &st);
	check(r == 0 && st.st_size == 16 << 20 &&
		      st.st_blocks * 512 < (16 << 20) / 2,
	      "the memory file has the guest's size with its zero pages as "
	      "holes",
	      NULL);
	crc_before = file_crc(path, &size_before);

	/* three clones at once, one eager; each its own VM */
	for (int i = 0; i < 3; i++) {
		t0 = ms_now();
		r = restore(argv[2], i == 2 ? KILN_RESTORE_EAGER : 0,
			    &clones[i]);
		check(r == 0, i == 2 ? "restore (eager copy)" : "restore",
		      strerror(-r));
		printf("# restore + start took %lld ms\n", ms_now() - t0);
	}
	if (clones[0] && clones[1] && clones[2]) {
		check(says(clones[0], "one") == 0 &&
			      says(clones[1], "two") == 0 &&
			      says(clones[2], "three") == 0,
		      "every clone answers (the IN it was paused on is not "
		      "repeated)",
		      NULL);
		/* what one clone is told, the others never see */
		r = kiln_vm_console_wait_for(clones[1], "one", 300, &out);
		free(out);
		out = NULL;
		check(r == -ETIMEDOUT, "clones are independent", NULL);
		check(says(vm, "original") == 0,
		      "the original still answers beside its clones", NULL);
	}
	for (int i = 0; i < 3; i++)
		kiln_vm_destroy(clones[i]);
	crc_after = file_crc(path, &size_after);
	check(crc_before == crc_after && size_before == size_after,
	      "the memory file is never written by its clones", NULL);

	/* refusals, each on a copy */
	snprintf(bad, sizeof(bad), "%s.bad", argv[2]);
	copy_dir(argv[2], bad);
	edit_state(bad, flip_byte, false);
	refused(bad, "a corrupt state file is refused (checksum)", -EBADMSG);
	copy_dir(argv[2], bad);
	edit_state(bad, newer_major, true);
	refused(bad, "a newer major version is refused", -EPROTONOSUPPORT);
	copy_dir(argv[2], bad);
	edit_state(bad, unknown_record, true);
	refused(bad, "an unknown mandatory record is refused",
		-EPROTONOSUPPORT);
	copy_dir(argv[2], bad);
	edit_state(bad, other_kernel, true);
	refused(bad, "a snapshot of another host (kernel) is refused", -EXDEV);
	copy_dir(argv[2], bad);
	edit_state(bad, truncate_half, false);
	refused(bad, "a truncated state file is refused", -EINVAL);
	copy_dir(argv[2], bad);
	snprintf(path, sizeof(path), "%s/memory", bad);
	r = truncate(path, 8 << 20);
	refused(bad, "a truncated memory file is refused", -EINVAL);
	copy_dir(argv[2], bad);
	snprintf(path, sizeof(path), "%s/memory", bad);
	unlink(path);
	refused(bad, "a missing memory file is refused", -ENOENT);
	snprintf(path, sizeof(path), "rm -rf '%s'", bad);
	r = system(path);

	kiln_vm_stop(vm);
	kiln_vm_wait(vm, 10000, NULL);
	check(kiln_vm_snapshot(vm, argv[2]) == -EINVAL,
	      "an ended VM cannot be snapshotted", NULL);
	kiln_vm_destroy(vm);
	return failures ? 1 : 0;
}
