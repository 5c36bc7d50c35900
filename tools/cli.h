/* SPDX-License-Identifier: MIT */
/* Helpers shared by the kiln CLI's commands: messages, numbers, the VM
 * options every VM-making command takes, and exit codes. */
#ifndef KILN_TOOLS_CLI_H
#define KILN_TOOLS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include <kiln/kiln.h>

#define EXIT_USAGE	 2
#define EXIT_GUEST_CRASH 1
#define EXIT_TIMEOUT	 124
#define EXIT_KILN_FAILED 125

/* Long-option codes; the VM options come first. */
enum {
	OPT_KERNEL = 256,
	OPT_INITRD,
	OPT_CPUS,
	OPT_MEMORY,
	OPT_CMDLINE,
	OPT_DISK,
	OPT_SHARE,
	OPT_DEVICE,
	OPT_NET,
	OPT_ALLOW,
	OPT_DENY,
	OPT_PUBLISH,
	OPT_ALLOW_DOMAIN,
	OPT_DNS,
	OPT_NETWORK,
	OPT_ACCEL,
	OPT_VM_LAST = OPT_ACCEL,
	OPT_CONSOLE_LOG,
	OPT_TIMEOUT,
	OPT_DEBUG_EXIT,
	OPT_CONSOLE,
	OPT_SIZE,
	OPT_VSOCK,
	OPT_NAME,
	OPT_COPY_IN,
	OPT_COPY_OUT,
	OPT_GRACE,
	OPT_BOOT_TIMEOUT,
	OPT_ULIMIT,
	OPT_POOL,
	OPT_FROM,
};

/* getopt_long entries for the VM options (spread into an option table). */
#define CLI_VM_OPTIONS                                                         \
	{"kernel", required_argument, NULL, OPT_KERNEL},                       \
		{"initrd", required_argument, NULL, OPT_INITRD},               \
		{"cpus", required_argument, NULL, OPT_CPUS},                   \
		{"memory", required_argument, NULL, OPT_MEMORY},               \
		{"cmdline", required_argument, NULL, OPT_CMDLINE},             \
		{"disk", required_argument, NULL, OPT_DISK},                   \
		{"share", required_argument, NULL, OPT_SHARE},                 \
		{"device", required_argument, NULL, OPT_DEVICE},               \
		{"net", required_argument, NULL, OPT_NET},                     \
		{"allow", required_argument, NULL, OPT_ALLOW},                 \
		{"deny", required_argument, NULL, OPT_DENY},                   \
		{"publish", required_argument, NULL, OPT_PUBLISH},             \
		{"allow-domain", required_argument, NULL, OPT_ALLOW_DOMAIN},   \
		{"dns", required_argument, NULL, OPT_DNS},                     \
		{"network", required_argument, NULL, OPT_NETWORK},             \
	{                                                                      \
		"accel", required_argument, NULL, OPT_ACCEL                    \
	}

/* Kernel and initrd as given, until cli_vm_finish resolves the default. */
struct cli_vm {
	const char *kernel, *initrd;
	unsigned cpus;	     /* as set, for reports; 0: the default */
	uint64_t memory_mib; /* likewise */
	bool accel_set;	     /* --accel given (else $KILN_ACCEL applies) */
	/* the network options, kept until cli_vm_finish hands them to the
	 * library in an order it accepts (they may come in any order) */
	const char *net; /* --net user[,...] as given; NULL: none */
	struct {
		bool allow;
		const char *spec;
	} rules[64];		  /* --allow/--deny, in order */
	const char *forwards[16]; /* -p */
	const char *domains[32];  /* --allow-domain */
	const char *networks[4];  /* --network */
	unsigned nr_rules, nr_forwards, nr_domains, nr_networks;
	const char *dns; /* --dns IP[:PORT] */
};

/* The command's name for messages ("kiln"). */
extern const char *cli_progname;

/* "kiln: <message>" and a --help hint on stderr. */
void cli_usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* "kiln: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A kiln_log_fn printing "kiln: [warning: ]message" on stderr. */
void cli_log(void *opaque, enum kiln_log_level level, const char *msg);
/* Decimal without sign; false if s is not one or overflows. */
bool cli_parse_u64(const char *s, uint64_t *out);
/* Positive seconds (fractions allowed) into *ms; usage error if not. */
bool cli_parse_seconds(const char *opt, const char *s, int *ms);
/* Handles a VM option (c in OPT_KERNEL..OPT_VM_LAST): 0, or an exit code
 * after printing why. */
int cli_vm_option(struct kiln_config *cfg, struct cli_vm *vm, int c,
		  const char *arg);
/* Sets the kernel and initrd (kiln's default guest unless given), the
 * engine ($KILN_ACCEL unless --accel) and the KVM device ($KILN_KVM_DEVICE): 0
 * or EXIT_KILN_FAILED after a message. */
int cli_vm_finish(struct kiln_config *cfg, const struct cli_vm *vm);
/* The option getopt_long just handled, as written ("--cpus"), for
 * messages; next is optind after it. */
const char *cli_option_word(char **argv, int next);
/* The engine part of cli_vm_finish alone ($KILN_ACCEL unless --accel,
 * $KILN_KVM_DEVICE), for VMs restored from a snapshot: 0 or an exit code. */
int cli_vm_engine(struct kiln_config *cfg, const struct cli_vm *vm);
/* Adds --net's device with the --allow/--deny rules and --publish
 * forwards; 0, EXIT_USAGE after a message. */
int cli_vm_net(struct kiln_config *cfg, const struct cli_vm *vm);

/* Puts the terminal on stdin in raw mode (keeping the host's newline
 * handling if keep_output_processing), until cli_tty_restore. */
void cli_tty_raw(bool keep_output_processing);
/* Restores the terminal cli_tty_raw changed; harmless otherwise. */
void cli_tty_restore(void);

#endif
