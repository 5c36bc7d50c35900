/* SPDX-License-Identifier: MIT */
/* Subcommands of the kiln CLI that live in files of their own. */
#ifndef KILN_TOOLS_COMMANDS_H
#define KILN_TOOLS_COMMANDS_H

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

/* `kiln network create|ls|inspect|rm` (tools/cmd_network.c). */
int kiln_cmd_network(int argc, char **argv);

#endif
