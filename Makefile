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
VMM_MAIN   := vmm/main.c
LIB_OBJS   := $(LIB_SRCS:%.c=$(B)/%.o)
SAN_OBJS   := $(LIB_SRCS:%.c=$(A)/%.o)
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(A)/tests/%)

PROGS := $(B)/kiln-vmm $(B)/kiln-jailer

.PHONY: all check unit e2e fuzz fuzz-short bench demo deps guest guest-kernel initramfs clean distclean
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

$(B)/kiln-vmm: $(B)/vmm/main.o $(B)/libkiln.a
	$(CC) -static-pie -Wl,-z,relro,-z,now,-z,noexecstack -o $@ $^ -lpthread

# The jailer is static (static-pie): LD_PRELOAD and friends cannot reach it, and it needs no
# libraries from the host at run time. jail-probe is the static stand-in VMM of tests/e2e/jailer.bats.
# Only its own objects: the jailer builds even while other modules are broken.
$(B)/kiln-jailer: $(patsubst %.c,$(B)/%.o,$(wildcard jailer/*.c) common/util.c)
	$(CC) -static-pie -Wl,-z,relro,-z,now,-z,noexecstack -o $@ $^ -lcap-ng

$(B)/jail-probe: tests/e2e/helpers/jail-probe.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -O2 -static -o $@ $< -lpthread
e2e: $(B)/jail-probe

$(A)/tests/test_%: $(A)/tests/unit/test_%.o $(A)/libkiln.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN_LDFLAGS) -o $@ $^ -lcmocka -lpthread

# ---- tests ---------------------------------------------------------------
unit: $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

include guest/guest.mk
include tests/tests.mk
include bench/bench.mk

demo:
	@tests/deps.sh
	@$(MAKE) --no-print-directory all guest-kernel initramfs
	@tests/demo.sh

deps:
	@tests/deps.sh

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' -type f 2>/dev/null)
