# SPDX-License-Identifier: MIT
#
# kiln-agent, the guest agent: one static binary built from
# guest/agent/kiln-agent.c and the protocol codec the library uses too.
# Included by the top-level Makefile, or run alone from the repository root:
#
#   make -f guest/agent/agent.mk      builds build/guest-agent/kiln-agent
#
# The binary runs in the guest (x86_64 Linux, as PID 1 or started by /init)
# and, with --unix, on the build host for tests/agent/run.sh.
# CPPFLAGS, CFLAGS and LDFLAGS are honoured; WERROR=0 drops -Werror.

AGENT_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

AGENT_OUTDIR := $(or $(BUILD),build)/guest-agent
AGENT_BIN := $(AGENT_OUTDIR)/kiln-agent
AGENT_SRCS := guest/agent/kiln-agent.c src/agent/codec.c
AGENT_DEPS := $(AGENT_SRCS) include/kiln/agent_proto.h guest/agent/agent.mk
AGENT_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra \
	$(if $(filter 0,$(WERROR)),,-Werror) -Wshadow \
	-Wstrict-prototypes -Wmissing-prototypes -Iinclude

.PHONY: guest-agent
guest-agent: $(AGENT_BIN)

$(AGENT_BIN): $(AGENT_DEPS)
	@mkdir -p $(dir $@)
	$(if $(Q),@printf '  %-7s %s\n' AGENT $@)
	$(Q)$(CC) -static -O2 $(AGENT_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(AGENT_SRCS)

.DEFAULT_GOAL := $(or $(AGENT_SAVED_DEFAULT_GOAL),guest-agent)
