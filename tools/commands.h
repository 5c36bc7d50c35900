/* SPDX-License-Identifier: MIT */
/* Subcommands of the kiln CLI that live in files of their own. */
#ifndef KILN_TOOLS_COMMANDS_H
#define KILN_TOOLS_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <kiln/kiln.h>

/* `kiln vhost-user ...` with argv[0] == "vhost-user"; returns the exit
 * status (0 stopped by a signal, 2 usage error, 125 kiln failed). */
int kiln_cmd_vhost_user(int argc, char **argv);

/* Sandbox commands (tools/cmd_sandbox.c), argv[0] being the command's
 * name; each returns the exit status (see kiln(1)). */
int kiln_cmd_run(int argc, char **argv);
int kiln_cmd_start(int argc, char **argv);
int kiln_cmd_exec(int argc, char **argv);
int kiln_cmd_cp(int argc, char **argv);
int kiln_cmd_ps(int argc, char **argv);
int kiln_cmd_stop(int argc, char **argv);
/* `kiln snapshot NAME DIR`: a template of a started sandbox. */
int kiln_cmd_snapshot(int argc, char **argv);

/* `kiln pool start|ls|stop` (tools/cmd_pool.c). */
int kiln_cmd_pool(int argc, char **argv);
/* Claims a member of pool NAME for `kiln run --pool`: 0, *sb attached to
 * it and *claim_fd the connection that holds it (closing it releases the
 * member, which is then destroyed), or an exit code after a message. */
int cli_pool_claim(const char *name, int timeout_ms, struct kiln_sandbox **sb,
		   int *claim_fd);

/* Shared by the sandbox and pool commands (tools/cmd_sandbox.c). */
struct cli_vm;
/* $XDG_RUNTIME_DIR/kiln or /tmp/kiln-UID into buf, made if create (0700,
 * ours): 0, 1 (not there, !create), -1 after a message. */
int cli_state_root(char *buf, size_t len, bool create);
/* Whether name is a sandbox or pool name (1..32 of A-Z a-z 0-9 _ - .). */
bool cli_valid_name(const char *name);
/* When pid started (clock ticks since boot, /proc/PID/stat), or 0. */
unsigned long long cli_proc_start_ticks(pid_t pid);
/* A Unix stream socket connected to, or listening on, path; -1 + errno. */
int cli_unix_socket(const char *path, bool listening);
/* A line (without '\n') from fd within timeout_ms: 0 or -1. */
int cli_read_line(int fd, char *buf, size_t cap, int timeout_ms);
/* The VM options, --boot-timeout, --ulimit and -v: 0 (*handled says
 * whether c was one) or an exit code. */
int cli_boot_option(struct kiln_config *cfg, struct cli_vm *vm, int c,
		    const char *arg, int *boot_timeout_ms, bool *handled);
/* Forks the background process of a start command. The parent (*child
 * false) waits for it to be ready: 0, or its exit code (its message is on
 * the shared stderr already). The child (*child true, 0) runs in its own
 * session with the CLI's signal handling; *ready_fd is for
 * cli_background_ready. */
int cli_fork_background(bool *child, int *ready_fd);
/* The background process is ready: stdin/stdout to /dev/null, stderr to
 * log_fd (or /dev/null when -1), "ready" to the parent. 0, or -1 when the
 * parent is gone. */
int cli_background_ready(int ready_fd, int log_fd);
/* SIGINT/SIGTERM/SIGHUP recorded (cli_pending_signal), SIGPIPE ignored. */
void cli_catch_signals(void);
int cli_pending_signal(void);

/* `kiln network create|ls|inspect|rm` (tools/cmd_network.c). */
int kiln_cmd_network(int argc, char **argv);

#endif
