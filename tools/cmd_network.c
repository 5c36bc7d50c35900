/* SPDX-License-Identifier: MIT */
/* `kiln network create|ls|rm|inspect`: cluster networks (kiln.h's
 * kiln_network_*), which sandboxes join with --network NAME. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kiln/kiln.h>

#include "cli.h"
#include "commands.h"

static void print_help(void)
{
	printf("Usage: kiln network create NAME [--subnet A.B.C.D/N]\n"
	       "       kiln network ls\n"
	       "       kiln network inspect NAME\n"
	       "       kiln network rm [--force] NAME...\n"
	       "\n"
	       "A cluster network is a virtual Ethernet segment of this "
	       "user's: its\n"
	       "switch runs as a small background process. Sandboxes join "
	       "it with\n"
	       "'kiln run/start --network NAME': each gets an address of the "
	       "subnet\n"
	       "(default: the first free 10.89.N.0/24) and reaches the other "
	       "members\n"
	       "on any port, by their names (kiln start --name, kiln run "
	       "--name).\n"
	       "Egress policy (--net user) applies to the NAT, not inside "
	       "the network.\n"
	       "\n"
	       "rm refuses a network with members unless --force (they lose "
	       "it).\n");
}

static int create(int argc, char **argv)
{
	static const struct option opts[] = {
		{"subnet", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *subnet = NULL;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 's')
			subnet = optarg;
		else if (c == 'h') {
			print_help();
			return 0;
		} else
			return EXIT_USAGE;
	}
	if (optind != argc - 1) {
		cli_usage_error("network create: expected one NAME");
		return EXIT_USAGE;
	}
	r = kiln_network_create(argv[optind], subnet, cli_log, NULL);
	if (r == -EINVAL)
		return EXIT_USAGE;
	if (r < 0)
		return EXIT_KILN_FAILED;
	printf("%s\n", argv[optind]);
	return 0;
}

static int list(int argc)
{
	struct kiln_network_info *nets;
	size_t n;
	int r;

	if (argc > 1) {
		cli_usage_error("network ls: takes no arguments");
		return EXIT_USAGE;
	}
	r = kiln_network_list(&nets, &n);
	if (r < 0) {
		cli_error("network ls: %s", strerror(-r));
		return EXIT_KILN_FAILED;
	}
	printf("%-20s %-18s %7s  %s\n", "NAME", "SUBNET", "MEMBERS", "STATE");
	for (size_t i = 0; i < n; i++)
		printf("%-20s %-18s %7u  %s\n", nets[i].name, nets[i].subnet,
		       nets[i].members,
		       nets[i].running ? "running"
				       : "switch gone (kiln network rm)");
	free(nets);
	return 0;
}

static int inspect(int argc, char **argv)
{
	char *text;
	int r;

	if (argc != 2) {
		cli_usage_error("network inspect: expected one NAME");
		return EXIT_USAGE;
	}
	r = kiln_network_members(argv[1], &text);
	if (r == -ENOENT || r == -EINVAL) {
		cli_error("no network named '%s' (kiln network ls)", argv[1]);
		return EXIT_KILN_FAILED;
	}
	if (r < 0) {
		cli_error("network %s: its switch does not answer: %s", argv[1],
			  strerror(-r));
		return EXIT_KILN_FAILED;
	}
	printf("%-20s %-15s %-17s  %s\n", "MEMBER", "ADDRESS", "MAC",
	       "COUNTERS");
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char name[64], addr[16], mac[18];
		int used = 0;

		if (sscanf(line, "%63s %15s %17s %n", name, addr, mac, &used) ==
		    3)
			printf("%-20s %-15s %-17s  %s\n", name, addr, mac,
			       line + used);
	}
	free(text);
	return 0;
}

static int remove_networks(int argc, char **argv)
{
	static const struct option opts[] = {
		{"force", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c, code = 0, force = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		if (c == 'f')
			force = 1;
		else if (c == 'h') {
			print_help();
			return 0;
		} else
			return EXIT_USAGE;
	}
	if (optind == argc) {
		cli_usage_error("network rm: expected NAME...");
		return EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		int r = kiln_network_remove(argv[i], force, cli_log, NULL);

		if (r == -EINVAL && !code)
			code = EXIT_USAGE;
		else if (r < 0)
			code = EXIT_KILN_FAILED;
	}
	return code;
}

int kiln_cmd_network(int argc, char **argv)
{
	if (argc < 2) {
		cli_usage_error("network: expected create, ls, inspect or rm");
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		print_help();
		return 0;
	}
	if (!strcmp(argv[1], "create"))
		return create(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ls"))
		return list(argc - 1);
	if (!strcmp(argv[1], "inspect"))
		return inspect(argc - 1, argv + 1);
	if (!strcmp(argv[1], "rm"))
		return remove_networks(argc - 1, argv + 1);
	cli_usage_error("network: unknown command '%s' (create, ls, inspect, "
			"rm)",
			argv[1]);
	return EXIT_USAGE;
}
