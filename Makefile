# kiln: top-level build. `make` builds the binaries, `make check` runs every test suite.
# Out-of-tree outputs go to build/ (normal) and build/asan/ (ASan+UBSan, for tests and fuzzers).

CC      ?= gcc
CLANG   ?= clang
B       := build
A       := $(B)/asan

WARN    := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wvla -Wconversion -Wno-sign-conversion \
           -Wstrict-prototypes -Wmissing-prototypes -Wundef
HARDEN  := -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fstack-clash-protection \
           -fcf-protection=full -fPIE -ftrivial-auto-var-init=zero
CSTD    := -std=gnu11 -D_GNU_SOURCE
INC     := -I. -Icommon
CFLAGS  ?= -O2 -g
ALL_CFLAGS := $(CSTD) $(WARN) $(HARDEN) $(INC) $(CFLAGS) -MMD -MP
LDHARDEN := -pie -Wl,-z,relro,-z,now,-z,noexecstack
SAN_CFLAGS := $(CSTD) $(WARN) $(INC) -O1 -g -fno-omit-frame-pointer \
              -fsanitize=address,undefined -fno-sanitize-recover=all -MMD -MP
SAN_LDFLAGS := -fsanitize=address,undefined

# Library code: everything but the programs' main files.
LIB_SRCS   := $(wildcard common/*.c) $(wildcard devices/*.c) $(filter-out vmm/main.c,$(wildcard vmm/*.c))
LIB_SRCS   += $(filter-out jailer/main.c,$(wildcard jailer/*.c))
LIB_SRCS   += $(filter-out runner/main.c,$(wildcard runner/*.c))
VMM_MAIN   := vmm/main.c
LIB_OBJS   := $(LIB_SRCS:%.c=$(B)/%.o)
SAN_OBJS   := $(LIB_SRCS:%.c=$(A)/%.o)
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(A)/tests/%)

PROGS := $(B)/kiln-vmm $(B)/kiln-jailer $(B)/kiln
# seccomp policy tables (policy/) and the debug-only trigger build (see below)
POL_SRCS := policy/policy.c policy/loop.c policy/vcpu.c
POL_OBJS := $(POL_SRCS:%.c=$(B)/%.o)
ST       := $(B)/seccomp-trigger

.PHONY: all check unit e2e seccomp-trigger fuzz fuzz-short bench demo deps guest guest-kernel initramfs clean distclean
all: $(PROGS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(A)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -c $< -o $@

$(B)/libkiln.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(A)/libkiln.a: $(SAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/kiln-vmm: $(B)/vmm/main.o $(POL_OBJS) $(B)/policy/filters.o $(B)/libkiln.a
	$(CC) -static-pie -Wl,-z,relro,-z,now,-z,noexecstack -o $@ $^ -lpthread

# ---- seccomp: policy/*.c compiled to BPF at build time ---------------------
# policy/gen (linked with libseccomp, runs on the build machine) writes the BPF of each thread
# class into build/policy/filters.c; kiln-vmm embeds it and does not link libseccomp.
# `make seccomp-trigger` builds build/seccomp-trigger/kiln-vmm, a debug-only VMM in which exit
# status 0x5c (92) makes a vCPU thread call execve (tests/e2e/seccomp.bats); never ship it.

$(B)/policy/gen: policy/gen.c $(POL_SRCS) policy/policy.h vmm/seccomp_bpf.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(INC) -O2 -o $@ policy/gen.c $(POL_SRCS) -lseccomp

$(B)/policy/filters.c: $(B)/policy/gen
	$< $@

$(B)/policy/filters.o: $(B)/policy/filters.c vmm/seccomp_bpf.h
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(ST)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DKILN_SECCOMP_TRIGGER -c $< -o $@

$(ST)/kiln-vmm: $(B)/vmm/main.o $(ST)/vmm/vm.o $(ST)/vmm/seccomp.o $(POL_OBJS) $(B)/policy/filters.o \
		$(B)/libkiln.a
	$(CC) -static-pie -Wl,-z,relro,-z,now,-z,noexecstack -o $@ $^ -lpthread

seccomp-trigger: $(ST)/kiln-vmm

# The per-rule seccomp test: real filters, no sanitizer (its runtime makes syscalls of its own).
$(B)/tests/test_seccomp: tests/seccomp/test_seccomp.c $(B)/vmm/seccomp.o $(POL_OBJS) \
		$(B)/policy/filters.o $(B)/common/util.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter %.c %.o,$^) -lcmocka

# The jailer is static (static-pie): LD_PRELOAD and friends cannot reach it, and it needs no
# libraries from the host at run time. jail-probe is the static stand-in VMM of tests/e2e/jailer.bats.
# Only its own objects: the jailer builds even while other modules are broken.
$(B)/kiln-jailer: $(patsubst %.c,$(B)/%.o,$(wildcard jailer/*.c) common/util.c)
	$(CC) -static-pie -Wl,-z,relro,-z,now,-z,noexecstack -o $@ $^ -lcap-ng

# kiln (the runner): static-pie too (no dynamic loading at each start); it runs on the host, never in a jail.
# It links the jailer's --cleanup (jailer/jail.c, hence libcap-ng) to run it without an exec.
$(B)/kiln: $(B)/runner/main.o $(B)/libkiln.a
	$(CC) -static-pie -Wl,-z,relro,-z,now,-z,noexecstack -o $@ $^ -lcap-ng

$(B)/jail-probe: tests/e2e/helpers/jail-probe.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -O2 -static -o $@ $< -lpthread
e2e: $(B)/jail-probe $(ST)/kiln-vmm

$(A)/tests/test_%: $(A)/tests/unit/test_%.o $(A)/libkiln.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN_LDFLAGS) -o $@ $^ -lcmocka -lpthread

# ---- tests ---------------------------------------------------------------
unit: $(UNIT_BINS) $(B)/tests/test_seccomp
	@tests/run-unit.sh $(UNIT_BINS) $(B)/tests/test_seccomp

include guest/guest.mk
include tests/tests.mk
include bench/bench.mk

demo:
	@tests/deps.sh
	@$(MAKE) --no-print-directory all guest-kernel guest-image
	@tests/demo.sh

deps:
	@tests/deps.sh

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' -type f 2>/dev/null)
