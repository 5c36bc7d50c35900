# kiln — build, test and install. `make V=1` shows full commands.
#
# The usual variables are honoured: CC, CPPFLAGS, CFLAGS and LDFLAGS are
# added to every host compile and link (after kiln's own flags, so they can
# override), PREFIX/DESTDIR and the *DIR variables to install/uninstall.
# WERROR=0 builds without -Werror (the default keeps it).
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
# where Debian's python3 finds packages: /usr/lib/python3/dist-packages for
# PREFIX=/usr, PREFIX/lib/python3.X/dist-packages otherwise
PYTHON ?= /usr/bin/python3
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3)
PYTHONDIR ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/python3/dist-packages,$(PREFIX)/lib/python$(PYTHON_VERSION)/dist-packages)

CC ?= cc
AR ?= ar
LD ?= ld
OBJCOPY ?= objcopy
NM ?= nm
BUILD ?= build
WERROR ?= 1

# The version lives in one place, include/kiln/kiln.h; the soname follows
# its major number.
KILN_H := include/kiln/kiln.h
kiln_h_num = $(shell sed -n 's/^\#define KILN_VERSION_$(1)[[:space:]]*\([0-9][0-9]*\).*/\1/p' $(KILN_H))
VERSION_MAJOR := $(call kiln_h_num,MAJOR)
VERSION_MINOR := $(call kiln_h_num,MINOR)
VERSION_PATCH := $(call kiln_h_num,PATCH)
VERSION := $(shell sed -n 's/^\#define KILN_VERSION_STRING[[:space:]]*"\(.*\)".*/\1/p' $(KILN_H))
ifneq ($(VERSION),$(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH))
$(error $(KILN_H): KILN_VERSION_STRING "$(VERSION)" does not match MAJOR.MINOR.PATCH $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH))
endif
SOVERSION := $(VERSION_MAJOR)

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2)
endif

# WERROR=0 drops -Werror here and in agent.mk and guests.mk.
KILN_WERROR := $(if $(filter 0,$(WERROR)),,-Werror)
WARN := -Wall -Wextra $(KILN_WERROR) -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude -Isrc -pthread
CPPFLAGS ?=
CFLAGS ?=
LDFLAGS ?=
# What every host object is compiled with: kiln's flags, then the user's.
HOST_CFLAGS = $(BASE_CFLAGS) $(CPPFLAGS) $(CFLAGS)
LIB_CFLAGS = $(BASE_CFLAGS) -fPIC -fvisibility=hidden $(CPPFLAGS) $(CFLAGS)
LDLIBS := -pthread -lslirp -lz -lcurl -luring

LIB_SRCS := $(wildcard src/*/*.c src/*/*/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
# libkiln.a is what gets installed: one relocatable object whose hidden
# (non-KILN_API) symbols are made local, so it exports only kiln_*.
# libkiln-internal.a holds the raw objects for the CLI, unit tests, test
# programs and fuzzers, which use the library's internal functions.
LIB_A := $(BUILD)/libkiln.a
LIB_INTERNAL_A := $(BUILD)/libkiln-internal.a
LIB_RELOC := $(BUILD)/libkiln.o
LIB_SO := $(BUILD)/libkiln.so.$(SOVERSION)
KILN := $(BUILD)/kiln

.PHONY: all check check-unit check-nm unit fuzzers guest guests install uninstall clean format bench
all: $(LIB_A) $(LIB_SO) $(BUILD)/libkiln.so $(KILN) $(BUILD)/kiln.pc

$(BUILD)/obj/%.o: %.c
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LIB_CFLAGS) -MMD -MP -c $< -o $@

# the library finds the installed default guest under DATADIR
$(BUILD)/obj/src/vm/config.o: LIB_CFLAGS += -DKILN_DATADIR='"$(DATADIR)/kiln"'

$(LIB_INTERNAL_A): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIB_RELOC): $(LIB_OBJS)
	$(call msg,LD-R,$@)
	$(Q)$(LD) -r -o $@.tmp $^ && $(OBJCOPY) --localize-hidden $@.tmp $@ && rm -f $@.tmp

$(LIB_A): $(LIB_RELOC)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIB_SO): $(LIB_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,libkiln.so.$(SOVERSION) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libkiln.so: $(LIB_SO)
	$(Q)ln -sf libkiln.so.$(SOVERSION) $@

# The CLI is a client of the installed library like any other: public
# headers only (no -Isrc), linked against libkiln.so. Its RUNPATH finds the
# library beside it (build tree) or in ../lib (installed).
TOOL_CFLAGS = -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude -pthread \
	$(CPPFLAGS) $(CFLAGS)
TOOL_OBJS := $(BUILD)/tools/kiln.o $(BUILD)/tools/cli.o \
	$(BUILD)/tools/cmd_vhost_user.o $(BUILD)/tools/cmd_sandbox.o \
	$(BUILD)/tools/cmd_network.o $(BUILD)/tools/cmd_pool.o
$(BUILD)/tools/%.o: tools/%.c
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TOOL_CFLAGS) -MMD -MP -c $< -o $@

$(KILN): $(TOOL_OBJS) $(LIB_SO) $(BUILD)/libkiln.so
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJS) -L$(BUILD) -lkiln \
		-Wl,-rpath,'$$ORIGIN:$$ORIGIN/../lib' $(LDLIBS)

$(BUILD)/kiln.pc: kiln.pc.in Makefile $(KILN_H)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# --- tests ---
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_OBJS := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)
UNIT_SAN_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/san/tests/unit/%)
TEST_CFLAGS = $(HOST_CFLAGS) -Wno-missing-prototypes
UNIT_DEPS := $(wildcard tests/unit/*.h)

# Test binaries are removed before they are rebuilt: one that no longer
# builds is missing, and tests/run-all.sh reports it, instead of running a
# stale copy.
$(BUILD)/tests/unit/%: tests/unit/%.c $(UNIT_DEPS) $(LIB_INTERNAL_A)
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && $(CC) $(TEST_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_INTERNAL_A) -lcmocka $(LDLIBS)

$(BUILD)/san/%.o: %.c
	$(call msg,CC-SAN,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(HOST_CFLAGS) $(SAN_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/san/tests/unit/%: tests/unit/%.c $(UNIT_DEPS) $(SAN_OBJS)
	$(call msg,CC-SAN,$<)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && $(CC) $(TEST_CFLAGS) $(SAN_FLAGS) $(LDFLAGS) -o $@ $< $(SAN_OBJS) -lcmocka $(LDLIBS)

$(BUILD)/tests/fakekvm.so: tests/support/fakekvm.c
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TEST_CFLAGS) -fPIC -shared $(LDFLAGS) -o $@ $< -ldl

$(BUILD)/tests/fnv1a: tests/support/fnv1a.c
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TEST_CFLAGS) $(LDFLAGS) -o $@ $<

# KVM-tier programs. multi_vm and console_api are written against the
# public API and link the installed archive (so it is exercised);
# agent_probe uses the agent client inside the library.
KVM_TEST_BINS := $(BUILD)/tests/multi_vm $(BUILD)/tests/console_api \
	$(BUILD)/tests/agent_probe $(BUILD)/tests/pause_resume \
	$(BUILD)/tests/snapshot_check
TEST_LIB = $(LIB_INTERNAL_A)
$(BUILD)/tests/multi_vm $(BUILD)/tests/console_api \
	$(BUILD)/tests/pause_resume $(BUILD)/tests/snapshot_check: TEST_LIB = $(LIB_A)
$(BUILD)/tests/%: tests/support/%.c $(LIB_A) $(LIB_INTERNAL_A)
	$(call msg,CC,$<)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(TEST_CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_LIB) $(LDLIBS)

# libFuzzer harnesses: fuzz/fuzz_*.c, each linked with the library built
# once by clang with coverage and sanitizers (fuzzer-no-link).
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_CC ?= clang
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc -pthread \
	$(CPPFLAGS) $(CFLAGS)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/fuzzobj/%.o)
$(BUILD)/fuzzobj/%.o: %.c
	$(call msg,CC-FUZZ,$<)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined \
		-MMD -MP -c $< -o $@
$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_LIB_OBJS)
	$(call msg,FUZZ,$<)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined \
		$(LDFLAGS) -o $@ $< $(FUZZ_LIB_OBJS) -lslirp -lz -lcurl -luring
fuzzers: $(FUZZ_BINS)

unit: $(UNIT_BINS) $(UNIT_SAN_BINS)

# Offline: the cmocka unit tests only (plain and ASan/UBSan), with gcc; no
# clang, kernel build or /dev/kvm. A test that does not build is reported
# as a failure in the summary, not dropped.
check-unit:
	-$(Q)$(MAKE) --no-print-directory -k unit
	$(Q)BUILD=$(BUILD) tests/run-all.sh unit

# The installed archive and shared library export only kiln_* symbols.
check-nm: $(LIB_A) $(LIB_SO)
	$(Q)BUILD=$(BUILD) NM=$(NM) CC=$(CC) bash tests/abi/exports.sh

-include tests/guests/guests.mk
include guest/agent/agent.mk

# The default guest: cached kernel + busybox initramfs, with the agent added.
guest: $(AGENT_BIN)
	$(Q)KILN_AGENT_BIN=$(AGENT_BIN) scripts/build-guest.sh $(BUILD)/guest

# What the test tiers need; `make -k` so that one test that does not build
# still lets the others run (tests/run-all.sh counts it as failed).
CHECK_DEPS := all guest guest-agent unit fuzzers guests $(BUILD)/tests/fakekvm.so \
	$(BUILD)/tests/fnv1a $(KVM_TEST_BINS) $(BUILD)/tests/blktool
check:
	-$(Q)$(MAKE) --no-print-directory -k $(CHECK_DEPS)
	$(Q)BUILD=$(BUILD) tests/run-all.sh

bench: all guests guest $(BUILD)/tests/agent_probe
	$(Q)BUILD=$(BUILD) bench/boot.sh
	$(Q)BUILD=$(BUILD) bench/blk.sh
	$(Q)BUILD=$(BUILD) bench/vhost-user-blk.sh
	$(Q)BUILD=$(BUILD) bench/fuse.sh
	$(Q)BUILD=$(BUILD) bash bench/sandbox.sh
	$(Q)BUILD=$(BUILD) bash bench/pool.sh
	$(Q)BUILD=$(BUILD) bash bench/snapshot.sh

format:
	$(Q)clang-format -i $(LIB_SRCS) $(wildcard src/*/*.h src/*/*/*.h) include/kiln/*.h tools/*.c tests/unit/*.c

# --- install ---
# uninstall removes exactly these files, then the directories that are
# kiln's own (kiln/ under INCLUDEDIR and DATADIR) once empty.
GUEST_FILES := vmlinux bzImage initramfs.cpio.gz
PY_FILES := __init__.py _lib.py aio.py errors.py sandbox.py py.typed
INSTALLED := $(BINDIR)/kiln $(LIBDIR)/libkiln.a $(LIBDIR)/libkiln.so.$(SOVERSION) \
	$(LIBDIR)/libkiln.so $(INCLUDEDIR)/kiln/kiln.h $(LIBDIR)/pkgconfig/kiln.pc \
	$(MANDIR)/man1/kiln.1 $(GUEST_FILES:%=$(DATADIR)/kiln/guest/%) \
	$(PY_FILES:%=$(PYTHONDIR)/kiln/%)

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
		$(DESTDIR)$(INCLUDEDIR)/kiln $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(KILN) $(DESTDIR)$(BINDIR)/kiln
	install -m 0644 $(LIB_A) $(DESTDIR)$(LIBDIR)/libkiln.a
	install -m 0644 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libkiln.so.$(SOVERSION)
	ln -sf libkiln.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libkiln.so
	install -m 0644 include/kiln/kiln.h $(DESTDIR)$(INCLUDEDIR)/kiln/kiln.h
	install -m 0644 $(BUILD)/kiln.pc $(DESTDIR)$(LIBDIR)/pkgconfig/kiln.pc
	install -m 0644 doc/kiln.1 $(DESTDIR)$(MANDIR)/man1/kiln.1
	if [ -f $(BUILD)/guest/initramfs.cpio.gz ]; then \
		install -d $(DESTDIR)$(DATADIR)/kiln/guest && \
		install -m 0644 $(GUEST_FILES:%=$(BUILD)/guest/%) $(DESTDIR)$(DATADIR)/kiln/guest/; fi
	install -d $(DESTDIR)$(PYTHONDIR)/kiln
	install -m 0644 $(PY_FILES:%=python/kiln/%) $(DESTDIR)$(PYTHONDIR)/kiln/

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rm -rf $(DESTDIR)$(PYTHONDIR)/kiln/__pycache__
	rmdir $(DESTDIR)$(DATADIR)/kiln/guest $(DESTDIR)$(DATADIR)/kiln \
		$(DESTDIR)$(INCLUDEDIR)/kiln $(DESTDIR)$(PYTHONDIR)/kiln 2>/dev/null || true

clean:
	rm -rf $(BUILD)

# sanitizer objects are reused between test builds, not intermediates
.SECONDARY: $(SAN_OBJS)
# a recipe that fails leaves no half-written target behind
.DELETE_ON_ERROR:

-include $(LIB_OBJS:.o=.d) $(SAN_OBJS:.o=.d) $(TOOL_OBJS:.o=.d) \
	$(FUZZ_LIB_OBJS:.o=.d)
