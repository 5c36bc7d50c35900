# SPDX-License-Identifier: MIT
#
# Test guests for kiln's KVM test tier.  Included by the top-level Makefile;
# all paths are relative to the repository root.
#
#   make guests        build every guest image and the mkbzimage host tool
#   make guests-pvh    also build PVH ELF variants of the bzImage-only guests
#                      (<name>.pvh.elf; for debugging under QEMU, not tests)
#   make guests-clean  remove $(BUILD)/tests/guests
#
# The guests are freestanding x86 images, not host programs: CPPFLAGS,
# CFLAGS and LDFLAGS apply only to the mkbzimage host tool. WERROR=0 drops
# -Werror for both.
#
# Outputs ($(BUILD)/tests/guests/, build/ by default):
#   bootcheck.bzimage bootcheck.elf smp.bzimage triplefault.bzimage
#   badio.bzimage clihlt.bzimage spin.bzimage reset.bzimage echo.bzimage
#   exit0.elf mkbzimage

# Keep whatever default goal the including Makefile had (or will have).
GUESTS_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

GUESTS_SRCDIR := tests/guests
GUESTS_OUTDIR := $(or $(BUILD),build)/tests/guests
GUESTS_OBJDIR := $(GUESTS_OUTDIR)/obj

GUESTS_CC = $(CC)
GUESTS_WERROR := $(if $(filter 0,$(WERROR)),,-Werror)
GUESTS_HOSTCC ?= cc
GUESTS_OBJCOPY ?= objcopy
GUESTS_NM ?= nm

GUESTS_CFLAGS := -std=c11 -ffreestanding -nostdlib -fno-pic -fno-pie -no-pie \
	-mno-red-zone -mgeneral-regs-only -fno-stack-protector -O2 \
	-Wall -Wextra $(GUESTS_WERROR) \
	-mcmodel=small -fno-asynchronous-unwind-tables -fno-unwind-tables \
	-fcf-protection=none -fno-tree-loop-distribute-patterns -fno-common \
	-MMD -MP
GUESTS_ASFLAGS := $(GUESTS_CFLAGS)
GUESTS_LDFLAGS := -ffreestanding -nostdlib -static -no-pie \
	-Wl,--build-id=none -Wl,-z,max-page-size=4096 -Wl,-z,noexecstack \
	-Wl,--no-warn-rwx-segments
GUESTS_HOSTCFLAGS ?= -std=c11 -O2 -Wall -Wextra $(GUESTS_WERROR)

GUESTS_MKBZIMAGE := $(GUESTS_OUTDIR)/mkbzimage

# bzImage guests: name -> extra objects besides head64.o and lib.o.
GUESTS_BZ_NAMES := bootcheck smp triplefault badio clihlt spin reset echo prompt
GUESTS_BZ_NAMES += virtio_blk virtio_hostile virtio_console virtio_net snapcheck
GUESTS_BZ_NAMES += vsockreset
GUESTS_bootcheck_OBJS := bootcheck.o
GUESTS_smp_OBJS := smp.o smp_tramp.o
GUESTS_triplefault_OBJS := triplefault.o
GUESTS_badio_OBJS := badio.o
GUESTS_clihlt_OBJS := clihlt.o
GUESTS_spin_OBJS := spin.o
GUESTS_reset_OBJS := reset.o
GUESTS_echo_OBJS := echo.o
GUESTS_prompt_OBJS := prompt.o
GUESTS_virtio_blk_OBJS := virtio_blk.o virtio_lib.o virtio_isr.o
GUESTS_virtio_hostile_OBJS := virtio_hostile.o virtio_lib.o virtio_isr.o
GUESTS_virtio_console_OBJS := virtio_console.o virtio_lib.o virtio_isr.o
GUESTS_virtio_net_OBJS := virtio_net.o virtio_lib.o virtio_isr.o
GUESTS_snapcheck_OBJS := snapcheck.o virtio_lib.o virtio_isr.o
GUESTS_vsockreset_OBJS := vsockreset.o virtio_lib.o virtio_isr.o

GUESTS_BZIMAGES := $(foreach g,$(GUESTS_BZ_NAMES),$(GUESTS_OUTDIR)/$(g).bzimage)
GUESTS_ELFS := $(GUESTS_OUTDIR)/bootcheck.elf $(GUESTS_OUTDIR)/exit0.elf
GUESTS_ALL := $(GUESTS_BZIMAGES) $(GUESTS_ELFS) $(GUESTS_MKBZIMAGE)
GUESTS_PVH_VARIANTS := $(foreach g,$(filter-out bootcheck,$(GUESTS_BZ_NAMES)),$(GUESTS_OUTDIR)/$(g).pvh.elf)

GUESTS_BZ_LD := $(GUESTS_SRCDIR)/bzimage.ld
GUESTS_PVH_LD := $(GUESTS_SRCDIR)/pvh.ld
GUESTS_BZ_HEAD := $(GUESTS_OBJDIR)/head64.o
GUESTS_PVH_HEAD := $(GUESTS_OBJDIR)/head_pvh.o $(GUESTS_OBJDIR)/pvh_note.o
GUESTS_LIB := $(GUESTS_OBJDIR)/lib.o

.PHONY: guests guests-pvh guests-clean
guests: $(GUESTS_ALL)
guests-pvh: $(GUESTS_ALL) $(GUESTS_PVH_VARIANTS)
guests-clean:
	rm -rf $(GUESTS_OUTDIR)

$(GUESTS_OBJDIR) $(GUESTS_OUTDIR):
	$(Q)mkdir -p $@

$(GUESTS_OBJDIR)/%.o: $(GUESTS_SRCDIR)/%.c | $(GUESTS_OBJDIR)
	$(Q)$(GUESTS_CC) $(GUESTS_CFLAGS) -c -o $@ $<

$(GUESTS_OBJDIR)/%.o: $(GUESTS_SRCDIR)/%.S | $(GUESTS_OBJDIR)
	$(Q)$(GUESTS_CC) $(GUESTS_ASFLAGS) -c -o $@ $<

$(GUESTS_MKBZIMAGE): $(GUESTS_SRCDIR)/mkbzimage.c | $(GUESTS_OUTDIR)
	$(Q)$(GUESTS_HOSTCC) $(GUESTS_HOSTCFLAGS) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $<

# $(1) = guest name.  ELF (linked at 0x100000, entry at +0x200) -> flat
# payload -> bzImage with init_size from the linker symbol _init_size.
define GUESTS_BZ_RULES
$(GUESTS_OUTDIR)/$(1).bz.elf: $(GUESTS_BZ_HEAD) $(GUESTS_LIB) $(addprefix $(GUESTS_OBJDIR)/,$(GUESTS_$(1)_OBJS)) $(GUESTS_BZ_LD)
	$$(Q)$$(GUESTS_CC) $$(GUESTS_LDFLAGS) -T $(GUESTS_BZ_LD) -o $$@ $$(filter %.o,$$^)

$(GUESTS_OUTDIR)/$(1).bin: $(GUESTS_OUTDIR)/$(1).bz.elf
	$$(Q)$$(GUESTS_OBJCOPY) -O binary $$< $$@

$(GUESTS_OUTDIR)/$(1).bzimage: $(GUESTS_OUTDIR)/$(1).bin $(GUESTS_OUTDIR)/$(1).bz.elf $(GUESTS_MKBZIMAGE)
	$$(Q)init_size=$$$$($$(GUESTS_NM) $(GUESTS_OUTDIR)/$(1).bz.elf | awk '$$$$3 == "_init_size" { print "0x" $$$$1 }'); \
	test -n "$$$$init_size" && $(GUESTS_MKBZIMAGE) --init-size $$$$init_size $$< $$@

$(GUESTS_OUTDIR)/$(1).pvh.elf: $(GUESTS_PVH_HEAD) $(GUESTS_LIB) $(addprefix $(GUESTS_OBJDIR)/,$(GUESTS_$(1)_OBJS)) $(GUESTS_PVH_LD)
	$$(Q)$$(GUESTS_CC) $$(GUESTS_LDFLAGS) -T $(GUESTS_PVH_LD) -o $$@ $$(filter %.o,$$^)
endef
$(foreach g,$(GUESTS_BZ_NAMES),$(eval $(call GUESTS_BZ_RULES,$(g))))

$(GUESTS_OUTDIR)/bootcheck.elf: $(GUESTS_OUTDIR)/bootcheck.pvh.elf
	$(Q)cp $< $@

$(GUESTS_OUTDIR)/exit0.elf: $(GUESTS_OBJDIR)/exit0.o $(GUESTS_OBJDIR)/pvh_note.o $(GUESTS_PVH_LD)
	$(Q)$(GUESTS_CC) $(GUESTS_LDFLAGS) -T $(GUESTS_PVH_LD) -o $@ $(filter %.o,$^)

-include $(wildcard $(GUESTS_OBJDIR)/*.d)

.DEFAULT_GOAL := $(GUESTS_SAVED_DEFAULT_GOAL)
