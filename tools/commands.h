/* SPDX-License-Identifier: MIT */
/* Subcommands of the kiln CLI that live in files of their own. */
#ifndef KILN_TOOLS_COMMANDS_H
#define KILN_TOOLS_COMMANDS_H

/* `kiln vhost-user ...` with argv[0] == "vhost-user"; returns the exit
 * status (0 stopped by a signal, 2 usage error, 125 kiln failed). */
int kiln_cmd_vhost_user(int argc, char **argv);

#endif
