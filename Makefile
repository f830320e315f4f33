# SPDX-License-Identifier: MIT
# gmem: make, make check, make check-asan, make check-tsan, make install

VERSION   := 0.1.0
PREFIX    ?= /usr/local
CC        ?= cc
O         ?= build
SAN       ?=
OPT       ?= -O2 -g
WARN      := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wno-unused-parameter $(EXTRA_WARN)
CFLAGS    += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SAN) -Iinclude -pthread
LDFLAGS   += $(SAN) -pthread

LIB_SRC   := $(wildcard src/*.c src/arch/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(O)/%.o)
TEST_SRC  := $(wildcard tests/test_*.c)
TESTS     := $(TEST_SRC:tests/%.c=$(O)/tests/%)
HARNESS   := tests/harness.c tools/lib/util.c

KVM_SRC   := $(wildcard kvm/*.c)
KVM_OBJ   := $(KVM_SRC:%.c=$(O)/%.o)

all: $(O)/libgmem.a $(O)/libgmem.so $(O)/libgmem-kvm.so $(O)/gmem $(TESTS)

$(O)/%.o: %.c include/gmem.h $(wildcard src/*.h) $(wildcard kvm/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(O)/libgmem.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(O)/libgmem.so: $(LIB_OBJ) src/libgmem.map
	$(CC) -shared -Wl,--version-script=src/libgmem.map -Wl,-soname,libgmem.so.0 \
		-o $@ $(LIB_OBJ) $(LDFLAGS)

# The KVM layer: an LD_PRELOAD interposer on the public header, with the
# engine linked in and every symbol but the C library calls it takes over
# kept local (kvm/libgmem-kvm.map).
$(O)/libgmem-kvm.so: $(KVM_OBJ) $(O)/libgmem.a kvm/libgmem-kvm.map
	$(CC) -shared -Wl,--version-script=kvm/libgmem-kvm.map -o $@ $(KVM_OBJ) \
		$(O)/libgmem.a -ldl $(LDFLAGS)

# The command: tools/gmem.c and one folder per subcommand, tools/lib/ shared.
TOOLS_SRC := $(wildcard tools/*.c tools/*/*.c)
$(O)/gmem: $(TOOLS_SRC) $(wildcard tools/*.h tools/*/*.h) kvm/uapi.h $(O)/libgmem.a $(O)/tools/vm/guest/image.o
	$(CC) $(CFLAGS) -Itools -I. -DGMEM_VERSION='"$(VERSION)"' -o $@ $(TOOLS_SRC) \
		$(O)/tools/vm/guest/image.o $(O)/libgmem.a $(LDFLAGS)

# The guest of gmem vm: freestanding 32-bit code, always built by gcc, linked
# into the gmem binary as data.
GUEST_CC     ?= gcc
GUEST_CFLAGS := -m32 -march=i686 -O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector \
	-mno-sse -mno-mmx -fno-asynchronous-unwind-tables -Wall -Wextra -Werror \
	-nostdlib -static -no-pie -Wl,-T,tools/vm/guest/guest.ld -Wl,--build-id=none
# Without a compiler for 32-bit x86 the image is empty and gmem vm says so.
$(O)/guest/guest.bin: $(wildcard tools/vm/guest/*.[chS] tools/vm/guest/*.ld)
	@mkdir -p $(dir $@)
	@if echo 'int x;' | $(GUEST_CC) -m32 -c -x c -o /dev/null - 2>/dev/null; then \
		echo "$(GUEST_CC) $(GUEST_CFLAGS) -o $(O)/guest/guest.elf tools/vm/guest/entry.S tools/vm/guest/guest.c"; \
		$(GUEST_CC) $(GUEST_CFLAGS) -o $(O)/guest/guest.elf tools/vm/guest/entry.S tools/vm/guest/guest.c && \
		objcopy -O binary $(O)/guest/guest.elf $@; \
	else \
		echo "note: $(GUEST_CC) cannot build 32-bit x86 code: gmem vm will have no guest"; \
		: > $@; \
	fi

$(O)/tools/vm/guest/image.o: tools/vm/guest/image.S $(O)/guest/guest.bin
	@mkdir -p $(dir $@)
	$(CC) -c -DGUEST_BIN='"$(O)/guest/guest.bin"' -o $@ $<

# Tests link the archive: white-box tests may reach internal symbols.
$(O)/tests/%: tests/%.c $(HARNESS) $(wildcard tests/*.h) tools/lib/util.h $(O)/libgmem.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -Itools -o $@ $< $(HARNESS) $(TEST_EXTRA) $(O)/libgmem.a $(LDFLAGS)

# gmem bench's verdicts are unit-tested on samples, beside the command's runs.
$(O)/tests/test_cli_bench: TEST_EXTRA := tools/bench/verdict.c
$(O)/tests/test_cli_bench: tools/bench/verdict.c tools/bench/verdict.h

check: all
	O=$(O) tests/run.sh $(TESTS_ONLY)

# The main job: the arch contract checked on every backend, every scenario
# in examples/, then a real KVM guest on gmem memory under every backend,
# once through gmem.h and once through KVM's own UAPI under the KVM layer
# (skipped, exit 77, where /dev/kvm is not usable).
run: $(O)/gmem $(O)/libgmem-kvm.so
	$(O)/gmem check
	@$(MAKE) --no-print-directory examples
	@$(O)/gmem vm --arch all --quiet; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]
	@$(O)/gmem vm --kvm --arch all --quiet; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]

# The benchmark suite (docs/PERFORMANCE.md); BENCH_ARGS=--quick for ~30 s.
bench: $(O)/gmem
	$(O)/gmem bench $(BENCH_ARGS)

# Everything CI runs; the last line reads "N passed, N failed".
test:
	tests/all.sh

# The SPIN model of the invalidation protocol (src/invalidate.pml): the
# correct protocol and each broken variant; MODEL_ARGS=--deep for larger bounds.
model:
	O=$(O) tests/model.sh $(MODEL_ARGS)

# Address and undefined-behaviour sanitizers over the whole suite.
check-asan:
	$(MAKE) O=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" check

# Thread sanitizer over the threaded tests.
check-tsan:
	$(MAKE) O=build-tsan SAN="-fsanitize=thread" TESTS_ONLY="$(TSAN_TESTS)" check

TSAN_TESTS := test_brlock test_check test_threads_fault test_threads_convert test_threads_mapping \
	test_threads_lifetime test_stress test_vmm test_vmm_views test_vmm_any_view test_huge \
	test_huge_arch test_huge_race test_kvm_layer test_kvm_files test_kvm_guest test_fork \
	test_security test_errno test_lock_assert test_invalidate test_stage2 test_chunk_fence

stress: all
	GMEM_STRESS_SECONDS=60 $(O)/tests/test_stress

# Man pages: section 3 from the comments of include/gmem.h, section 1 from
# each command's --help (tests/man.sh checks every exported call has one).
man: $(O)/gmem include/gmem.h man/man3.awk man/man1.sh
	@rm -rf $(O)/man && mkdir -p $(O)/man/man3
	awk -v out=$(O)/man/man3 -v version=$(VERSION) -f man/man3.awk include/gmem.h
	man/man1.sh $(O)/gmem $(O)/man/man1 $(VERSION)

install: $(O)/libgmem.a $(O)/libgmem.so $(O)/libgmem-kvm.so $(O)/gmem man
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/lib/gmem
	install -m 755 $(O)/libgmem-kvm.so $(DESTDIR)$(PREFIX)/lib/gmem/
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3
	install -m 644 $(O)/man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 $(O)/man/man3/*.3 $(DESTDIR)$(PREFIX)/share/man/man3/
	install -m 644 include/gmem.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(O)/libgmem.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(O)/libgmem.so $(DESTDIR)$(PREFIX)/lib/libgmem.so.0
	ln -sf libgmem.so.0 $(DESTDIR)$(PREFIX)/lib/libgmem.so
	install -m 755 $(O)/gmem $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' gmem.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/gmem.pc

# Every scenario in examples/ through gmem run: one line each, then a summary.
examples: $(O)/gmem
	@pass=0; fail=0; for f in examples/*.gmem; do \
		if $(O)/gmem run $$f >/dev/null 2>$(O)/examples.err; then \
			echo "pass $$f"; pass=$$((pass + 1)); \
		else \
			echo "FAIL $$f: $$(head -1 $(O)/examples.err)"; fail=$$((fail + 1)); \
		fi; \
	done; echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# libFuzzer over the scenario parser and executor, corpus seeded from examples/.
FUZZ_SECONDS ?= 60
FUZZ_DIR     := build-fuzz
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer
fuzz:
	$(MAKE) -j2 O=$(FUZZ_DIR) CC=clang SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" $(FUZZ_DIR)/libgmem.a
	clang -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(FUZZ_SAN) -Iinclude -Itools -Itools/run -pthread \
		-I. -o $(FUZZ_DIR)/fuzz_scenario fuzz/fuzz_scenario.c tools/run/parse.c tools/run/lex.c tools/run/execute.c \
		tools/run/trace.c tools/lib/util.c tools/lib/json.c $(FUZZ_DIR)/libgmem.a
	@mkdir -p $(FUZZ_DIR)/corpus
	cp examples/*.gmem $(FUZZ_DIR)/corpus/
	$(FUZZ_DIR)/fuzz_scenario -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -dict=fuzz/scenario.dict \
		-timeout=20 $(FUZZ_DIR)/corpus

# libFuzzer over the public API (fuzz/fuzz_api.c): calls with arbitrary
# arguments on every backend and contract, the checker after each, a failed
# call compared against a snapshot; then the same with a second thread
# faulting and accessing while the first converts. FUZZ_SECONDS each. The
# library is built with libFuzzer's coverage too (its own build directory),
# so inputs that reach new code in gmem, not only in the target, are kept.
FUZZ_LIB_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
FUZZ_API_DIR := $(FUZZ_DIR)/corpus-api
fuzz-api:
	$(MAKE) -j2 O=$(FUZZ_DIR)-api CC=clang SAN="$(FUZZ_LIB_SAN)" $(FUZZ_DIR)-api/libgmem.a
	@mkdir -p $(FUZZ_DIR)
	clang -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(FUZZ_SAN) -Iinclude -pthread \
		-o $(FUZZ_DIR)/fuzz_api fuzz/fuzz_api.c $(FUZZ_DIR)-api/libgmem.a
	clang -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(FUZZ_SAN) -Iinclude -pthread -DFUZZ_THREADS \
		-o $(FUZZ_DIR)/fuzz_api_threads fuzz/fuzz_api.c $(FUZZ_DIR)-api/libgmem.a
	@mkdir -p $(FUZZ_API_DIR) $(FUZZ_API_DIR)-threads
	cp fuzz/corpus-api/* $(FUZZ_API_DIR)/
	cp fuzz/corpus-api/* $(FUZZ_API_DIR)-threads/
	$(FUZZ_DIR)/fuzz_api -max_total_time=$(FUZZ_SECONDS) -max_len=1024 -dict=fuzz/api.dict \
		-timeout=20 $(FUZZ_API_DIR)
	$(FUZZ_DIR)/fuzz_api_threads -max_total_time=$(FUZZ_SECONDS) -max_len=1024 -dict=fuzz/api.dict \
		-timeout=20 $(FUZZ_API_DIR)-threads

clean:
	rm -rf build build-asan build-tsan build-clang build-fuzz build-fuzz-api

.PHONY: all run bench check test check-asan check-tsan stress install clean examples fuzz fuzz-api man model
