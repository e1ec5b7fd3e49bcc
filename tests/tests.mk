# tests/tests.mk: test targets (included by the top Makefile).
#   check       deps -> all -> unit -> fuzz-short -> guest -> e2e; last line "N passed, N failed"
#   fuzz        build every libFuzzer harness tests/fuzz/fuzz_*.c into build/fuzz/
#   fuzz-short  run each harness for FUZZ_SECONDS (default 20) with its corpus
#   e2e         bats end-to-end tests (directly if /dev/kvm runs guests, else in tests/kvmhost.sh)

FZ          := $(B)/fuzz
FUZZ_SRCS   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS   := $(FUZZ_SRCS:tests/fuzz/%.c=$(FZ)/%)
FUZZ_OBJS   := $(LIB_SRCS:%.c=$(FZ)/obj/%.o)
FUZZ_CFLAGS := $(CSTD) $(filter-out -Werror,$(WARN)) $(INC) -O1 -g -fno-omit-frame-pointer \
               -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -MMD -MP
FUZZ_LDFLAGS := -fsanitize=fuzzer,address,undefined
FUZZ_LIBS   ?= -lpthread
FUZZ_SECONDS ?= 20

.PHONY: fuzz-short
# Keep the objects of the harnesses and unit tests (make would delete them as intermediates).
.SECONDARY: $(FUZZ_SRCS:tests/fuzz/%.c=$(FZ)/obj/tests/fuzz/%.o) $(UNIT_SRCS:tests/unit/%.c=$(A)/tests/unit/%.o)

$(FZ)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(FZ)/libkiln.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FZ)/fuzz_%: $(FZ)/obj/tests/fuzz/fuzz_%.o $(FZ)/libkiln.a
	$(CLANG) $(FUZZ_LDFLAGS) -o $@ $^ $(FUZZ_LIBS)

fuzz: $(FUZZ_BINS)

fuzz-short: $(FUZZ_BINS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run-fuzz.sh $(FUZZ_BINS)

e2e: all guest $(B)/jail-probe
	@tests/run-e2e.sh

# Every stage runs even if an earlier one failed; a stage that produces no summary line
# (build failure) counts as one failure. Logs: build/check-*.log.
check:
	@tests/deps.sh
	@mkdir -p $(B); pass=0; fail=0; \
	stage() { name=$$1; shift; "$$@" 2>&1 | tee $(B)/check-$$name.log; \
	  s=$$(sed -n 's/^'"$$name"': \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' $(B)/check-$$name.log | tail -1); \
	  [ -n "$$s" ] || { echo "check: stage $$name failed"; s="0 1"; }; \
	  set -- $$s; pass=$$((pass + $$1)); fail=$$((fail + $$2)); }; \
	if $(MAKE) --no-print-directory all; then \
	  stage unit $(MAKE) --no-print-directory unit; \
	  stage fuzz $(MAKE) --no-print-directory fuzz-short; \
	  if $(MAKE) --no-print-directory guest; then stage e2e $(MAKE) --no-print-directory e2e; \
	  else echo "check: guest artifacts failed"; fail=$$((fail + 1)); fi; \
	else echo "check: build failed"; fail=$$((fail + 1)); fi; \
	echo "$$pass passed, $$fail failed"; [ $$fail = 0 ]

# Host-side test client of the guest agent (tests/e2e/agent.bats); shares common/agent_proto.c.
AGENT_CLIENT_SRCS := tests/e2e/helpers/agent-client.c common/agent_proto.c common/util.c
$(B)/agent-client: $(AGENT_CLIENT_SRCS) common/agent_proto.h common/util.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(HARDEN) $(INC) $(CFLAGS) $(LDHARDEN) -o $@ $(AGENT_CLIENT_SRCS)
e2e: $(B)/agent-client guest-image guest-image-python
