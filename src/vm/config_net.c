/* SPDX-License-Identifier: MIT */
/*
 * The networking part of the config builder: the NAT card's posture,
 * rules, published ports, allowed domains and resolver, and cards on
 * cluster networks. Each call rebuilds the NAT card's device entry and
 * checks it through the device table, so a bad value fails the call that
 * brought it, and the config is left as it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "net/network.h"
#include "vm/config.h"
#include "virtio/net.h"

#define MAX_NETWORKS (NET_MAX_CARDS - 1)

static const char *const egress_names[] = {"public", "all", "none"};

/* The NAT card's device entry: index or -1. */
static int nat_card(const struct kiln_config *cfg)
{
	for (unsigned i = 0; i < cfg->nr_devices; i++)
		if (cfg->devices[i].type == &virtio_net_ops &&
		    !virtio_dev_opts_find(&cfg->devices[i], "switch", NULL))
			return (int)i;
	return -1;
}

/* Rebuilds the NAT card from cfg->net; on failure cfg->net is set back to
 * old and the device list is untouched. */
static int sync_nat(struct kiln_config *cfg, const struct config_net *old)
{
	const struct config_net *n = &cfg->net;
	const char *kv[16];
	struct virtio_dev_opts o, prev = {0};
	unsigned k = 0;
	int at = nat_card(cfg), err = 0;

	kv[k++] = "egress";
	kv[k++] = egress_names[n->egress];
	if (n->mac[0])
		kv[k++] = "mac", kv[k++] = n->mac;
	if (n->subnet[0])
		kv[k++] = "net", kv[k++] = n->subnet;
	if (n->rules[0])
		kv[k++] = "rules", kv[k++] = n->rules;
	if (n->forwards[0])
		kv[k++] = "forward", kv[k++] = n->forwards;
	if (n->domains[0])
		kv[k++] = "domains", kv[k++] = n->domains;
	if (n->dns[0])
		kv[k++] = "dns", kv[k++] = n->dns;
	kv[k] = NULL;
	err = config_opts_build(cfg, &virtio_net_ops, kv, &o);
	if (err == 0 && at >= 0) {
		/* in place: the card keeps its position among the devices */
		prev = cfg->devices[at];
		cfg->devices[at] = o;
		virtio_dev_opts_free(&prev);
	} else if (err == 0) {
		err = config_add_device(cfg, &o);
	}
	if (err < 0)
		cfg->net = *old;
	return err;
}

static int need_nat(struct kiln_config *cfg, const char *what)
{
	if (!cfg->net.on)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "%s needs the user-mode NAT card "
				   "(kiln_config_set_net_user, --net user)",
				   what);
	return 0;
}

/* Appends item to a ';'-separated list; -EINVAL for characters the
 * option syntax splits on, -E2BIG when full. */
static int list_add(struct kiln_config *cfg, char *list, size_t cap,
		    const char *item, const char *what)
{
	size_t used = strlen(list);
	int r;

	if (!item || !*item || strpbrk(item, ";, \t\n"))
		return kiln_errorf(&cfg->log, -EINVAL, "%s: '%s' is not valid",
				   what, item ? item : "(null)");
	r = snprintf(list + used, cap - used, "%s%s", used ? ";" : "", item);
	if (r < 0 || (size_t)r >= cap - used) {
		list[used] = 0;
		return kiln_errorf(&cfg->log, -E2BIG, "%s: too many", what);
	}
	return 0;
}

KILN_API int kiln_config_set_net_user(struct kiln_config *cfg,
				      enum kiln_egress egress)
{
	struct config_net old = cfg->net;

	if (egress != KILN_EGRESS_PUBLIC && egress != KILN_EGRESS_ALL &&
	    egress != KILN_EGRESS_NONE)
		return kiln_errorf(&cfg->log, -EINVAL, "unknown egress %d",
				   (int)egress);
	cfg->net.on = true;
	cfg->net.egress = egress;
	return sync_nat(cfg, &old);
}

KILN_API int kiln_config_set_net_address(struct kiln_config *cfg,
					 const char *mac, const char *subnet)
{
	struct config_net old = cfg->net;
	int err = need_nat(cfg, "a NAT address");

	if (err < 0)
		return err;
	if ((mac && strlen(mac) >= sizeof(cfg->net.mac)) ||
	    (subnet && strlen(subnet) >= sizeof(cfg->net.subnet)) ||
	    (mac && strpbrk(mac, ",;")) || (subnet && strpbrk(subnet, ",;")))
		return kiln_errorf(&cfg->log, -EINVAL,
				   "net: mac '%s' or network '%s' is not valid",
				   mac ? mac : "", subnet ? subnet : "");
	snprintf(cfg->net.mac, sizeof(cfg->net.mac), "%s", mac ? mac : "");
	snprintf(cfg->net.subnet, sizeof(cfg->net.subnet), "%s",
		 subnet ? subnet : "");
	return sync_nat(cfg, &old);
}

KILN_API int kiln_config_add_net_rule(struct kiln_config *cfg, int allow,
				      const char *rule)
{
	struct config_net old = cfg->net;
	char item[192];
	int err = need_nat(cfg, allow ? "an --allow rule" : "a --deny rule");

	if (err < 0)
		return err;
	if (!rule || strlen(rule) > 160)
		return kiln_errorf(&cfg->log, -EINVAL, "net: rule too long");
	snprintf(item, sizeof(item), "%s:%s", allow ? "allow" : "deny", rule);
	err = list_add(cfg, cfg->net.rules, sizeof(cfg->net.rules), item,
		       "net: rule");
	return err < 0 ? err : sync_nat(cfg, &old);
}

KILN_API int kiln_config_add_port_forward(struct kiln_config *cfg,
					  const char *spec)
{
	struct config_net old = cfg->net;
	char buf[128], item[160];
	const char *proto = "tcp";
	char *slash, *c1, *c2;
	int err = need_nat(cfg, "a published port");

	if (err < 0)
		return err;
	if (!spec || snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
		goto bad;
	slash = strrchr(buf, '/');
	if (slash && (!strcmp(slash, "/tcp") || !strcmp(slash, "/udp"))) {
		proto = slash + 1;
		*slash = 0;
	}
	c1 = strchr(buf, ':');
	c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || (c2 && strchr(c2 + 1, ':')))
		goto bad;
	if (c2)
		snprintf(item, sizeof(item), "%s:%s", proto, buf);
	else
		snprintf(item, sizeof(item), "%s:127.0.0.1:%s", proto, buf);
	err = list_add(cfg, cfg->net.forwards, sizeof(cfg->net.forwards), item,
		       "net: published port");
	if (err < 0)
		return err;
	return sync_nat(cfg, &old); /* bad ports: logged by the card */
bad:
	return kiln_errorf(&cfg->log, -EINVAL,
			   "-p: expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]"
			   ", got '%s'",
			   spec ? spec : "(null)");
}

KILN_API int kiln_config_add_allowed_domain(struct kiln_config *cfg,
					    const char *name)
{
	struct config_net old = cfg->net;
	int err = need_nat(cfg, "an allowed domain");

	if (err == 0)
		err = list_add(cfg, cfg->net.domains, sizeof(cfg->net.domains),
			       name, "--allow-domain");
	return err < 0 ? err : sync_nat(cfg, &old);
}

KILN_API int kiln_config_set_dns(struct kiln_config *cfg, const char *server)
{
	struct config_net old = cfg->net;
	int err = need_nat(cfg, "a DNS server");

	if (err < 0)
		return err;
	if (server && (!*server || strlen(server) >= sizeof(cfg->net.dns) ||
		       strpbrk(server, ",; ")))
		return kiln_errorf(&cfg->log, -EINVAL,
				   "--dns: expected IP[:PORT] or [IPV6]:PORT, "
				   "got '%s'",
				   server);
	snprintf(cfg->net.dns, sizeof(cfg->net.dns), "%s",
		 server ? server : "");
	return sync_nat(cfg, &old);
}

KILN_API int kiln_config_set_hostname(struct kiln_config *cfg, const char *name)
{
	if (name && !sw_name_valid(name))
		return kiln_errorf(&cfg->log, -EINVAL,
				   "'%s' is not a host name (1..63 of A-Z a-z "
				   "0-9 _ - ., not starting with . or -)",
				   name);
	snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", name ? name : "");
	return 0;
}

KILN_API int kiln_config_add_network(struct kiln_config *cfg, const char *name)
{
	char path[4096], mac[18];
	const char *kv[] = {"switch", path, "mac", mac, NULL};
	uint8_t m[6];
	unsigned cards = 0;
	int err = network_socket_path(name, path, sizeof(path), &cfg->log);

	if (err < 0)
		return err;
	for (unsigned i = 0; i < cfg->nr_devices; i++)
		cards += cfg->devices[i].type == &virtio_net_ops &&
			 virtio_dev_opts_find(&cfg->devices[i], "switch", NULL);
	if (cards == MAX_NETWORKS)
		return kiln_errorf(&cfg->log, -E2BIG,
				   "at most %d cluster networks per VM",
				   MAX_NETWORKS);
	/* every card its own MAC: random, locally administered, unicast */
	if (getrandom(m, sizeof(m), 0) != (ssize_t)sizeof(m))
		return kiln_errorf(&cfg->log, -EIO, "network: no random MAC");
	m[0] = (uint8_t)((m[0] & 0xfc) | 0x02);
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1],
		 m[2], m[3], m[4], m[5]);
	return config_add_typed(cfg, &virtio_net_ops, kv);
}
