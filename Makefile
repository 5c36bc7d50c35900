# kiln — build, test and install. `make V=1` shows full commands.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man

CC ?= cc
AR ?= ar
BUILD ?= build
SOVERSION := 0
VERSION := 0.1.0

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2)
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude -Isrc -pthread
CFLAGS ?=
LIB_CFLAGS := $(BASE_CFLAGS) -fPIC -fvisibility=hidden $(CFLAGS)
LDLIBS := -pthread

LIB_SRCS := $(wildcard src/*/*.c src/*/*/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB_A := $(BUILD)/libkiln.a
LIB_SO := $(BUILD)/libkiln.so.$(SOVERSION)
KILN := $(BUILD)/kiln

.PHONY: all check unit fuzzers guest guests install clean format bench
all: $(LIB_A) $(LIB_SO) $(BUILD)/libkiln.so $(KILN) $(BUILD)/kiln.pc

$(BUILD)/obj/%.o: %.c
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

# the library finds the installed default guest under DATADIR
$(BUILD)/obj/src/vm/config.o: LIB_CFLAGS += -DKILN_DATADIR='"$(DATADIR)/kiln"'

$(LIB_A): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIB_SO): $(LIB_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,libkiln.so.$(SOVERSION) -o $@ $^ $(LDLIBS)

$(BUILD)/libkiln.so: $(LIB_SO)
	$(Q)ln -sf libkiln.so.$(SOVERSION) $@

$(BUILD)/tools/kiln.o: tools/kiln.c tools/commands.h tools/cli.h include/kiln/kiln.h
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/tools/cli.o: tools/cli.c tools/cli.h include/kiln/kiln.h
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

# Subcommands in their own files; they may use libkiln's internal headers.
TOOL_OBJS := $(BUILD)/tools/cli.o $(BUILD)/tools/cmd_vhost_user.o \
	$(BUILD)/tools/cmd_sandbox.o
$(BUILD)/tools/cmd_%.o: tools/cmd_%.c tools/commands.h tools/cli.h
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(KILN): $(BUILD)/tools/kiln.o $(TOOL_OBJS) $(LIB_A)
	$(call msg,LD,$@)
	$(Q)$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/kiln.pc: kiln.pc.in Makefile
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# --- tests ---
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_OBJS := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)
UNIT_SAN_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/san/tests/unit/%)
TEST_CFLAGS := $(BASE_CFLAGS) -Wno-missing-prototypes

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB_A)
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TEST_CFLAGS) -o $@ $< $(LIB_A) -lcmocka $(LDLIBS)

$(BUILD)/san/%.o: %.c
	$(call msg,CC-SAN,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(BASE_CFLAGS) $(SAN_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/san/tests/unit/%: tests/unit/%.c $(SAN_OBJS)
	$(call msg,CC-SAN,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TEST_CFLAGS) $(SAN_FLAGS) -o $@ $< $(SAN_OBJS) -lcmocka $(LDLIBS)

$(BUILD)/tests/fakekvm.so: tests/support/fakekvm.c
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TEST_CFLAGS) -fPIC -shared -o $@ $< -ldl

$(BUILD)/tests/fnv1a: tests/support/fnv1a.c
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TEST_CFLAGS) -o $@ $<

# KVM-tier programs written against the public API.
KVM_TEST_BINS := $(BUILD)/tests/multi_vm $(BUILD)/tests/console_api \
	$(BUILD)/tests/agent_probe
$(BUILD)/tests/%: tests/support/%.c $(LIB_A)
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TEST_CFLAGS) -o $@ $< $(LIB_A) $(LDLIBS)

# libFuzzer harnesses: fuzz/fuzz_*.c, each linked with the library sources.
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_CC ?= clang
$(BUILD)/fuzz/%: fuzz/%.c $(LIB_SRCS)
	$(call msg,FUZZ,$<)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc -pthread \
		-fsanitize=fuzzer,address,undefined -o $@ $< $(LIB_SRCS)
fuzzers: $(FUZZ_BINS)

unit: $(UNIT_BINS) $(UNIT_SAN_BINS)

-include tests/guests/guests.mk
include guest/agent/agent.mk

# The default guest: cached kernel + busybox initramfs, with the agent added.
guest: $(AGENT_BIN)
	$(Q)KILN_AGENT_BIN=$(AGENT_BIN) scripts/build-guest.sh $(BUILD)/guest

check: all guest guest-agent unit fuzzers guests $(BUILD)/tests/fakekvm.so $(BUILD)/tests/fnv1a $(KVM_TEST_BINS)
	$(Q)BUILD=$(BUILD) tests/run-all.sh

bench: all guests
	$(Q)BUILD=$(BUILD) bench/boot.sh
	$(Q)BUILD=$(BUILD) bench/blk.sh
	$(Q)BUILD=$(BUILD) bench/vhost-user-blk.sh
	$(Q)BUILD=$(BUILD) bench/fuse.sh

format:
	$(Q)clang-format -i $(LIB_SRCS) $(wildcard src/*/*.h src/*/*/*.h) include/kiln/*.h tools/*.c tests/unit/*.c

# --- install ---
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
		$(DESTDIR)$(INCLUDEDIR)/kiln $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(KILN) $(DESTDIR)$(BINDIR)/kiln
	install -m 0644 $(LIB_A) $(DESTDIR)$(LIBDIR)/libkiln.a
	install -m 0755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libkiln.so.$(SOVERSION)
	ln -sf libkiln.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libkiln.so
	install -m 0644 include/kiln/kiln.h $(DESTDIR)$(INCLUDEDIR)/kiln/kiln.h
	install -m 0644 $(BUILD)/kiln.pc $(DESTDIR)$(LIBDIR)/pkgconfig/kiln.pc
	install -m 0644 doc/kiln.1 $(DESTDIR)$(MANDIR)/man1/kiln.1
	if [ -f $(BUILD)/guest/initramfs.cpio.gz ]; then \
		install -d $(DESTDIR)$(DATADIR)/kiln/guest && \
		install -m 0644 $(BUILD)/guest/* $(DESTDIR)$(DATADIR)/kiln/guest/; fi

clean:
	rm -rf $(BUILD)

# sanitizer objects are reused between test builds, not intermediates
.SECONDARY: $(SAN_OBJS)

-include $(LIB_OBJS:.o=.d) $(SAN_OBJS:.o=.d) $(TOOL_OBJS:.o=.d)
