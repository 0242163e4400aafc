# engaged — the two commands a newcomer needs:
#   make demo   install what is missing, build, and serve a demo shop on http://127.0.0.1:8080
#   make test   install what is missing, build, and run every test (unit, black-box, sanitizers)
# `make` alone builds build/engaged.

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
DEMO_DATA  ?= ./var
DEMO_LISTEN ?= 127.0.0.1:8080
FUZZ_SECONDS ?= 30

.PHONY: all deps deps-test build demo test test-unit test-e2e test-asan test-tsan fuzz bench format check-format clean

all: build

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

demo: build
	ENGAGED_WRITE_KEY=$${ENGAGED_WRITE_KEY:-wk_demo} ENGAGED_ADMIN_KEY=$${ENGAGED_ADMIN_KEY:-ak_demo} \
	  $(BUILD)/engaged demo --listen $(DEMO_LISTEN) --data $(DEMO_DATA)

# Everything CI runs: style, unit tests, black-box tests, the same under ASan+UBSan, the unit tests
# under TSan, short fuzz runs.
test: deps-test check-format build test-unit test-e2e test-asan test-tsan fuzz
	@echo "make test: all suites passed"

test-unit: build
	meson test -C $(BUILD) --print-errorlogs

test-e2e: build
	ENGAGED_BIN=$(CURDIR)/$(BUILD)/engaged tests/e2e/run.sh

$(ASAN_BUILD)/build.ninja:
	CC=clang meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

# The unit tests and the black-box suite again, on a binary built with AddressSanitizer + UBSan.
test-asan: deps-test $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(ASAN_BUILD) --print-errorlogs
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ENGAGED_BIN=$(CURDIR)/$(ASAN_BUILD)/engaged ENGAGED_E2E_SLOW=1 tests/e2e/run.sh

$(TSAN_BUILD)/build.ninja:
	CC=clang meson setup $(TSAN_BUILD) --buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false \
	  -Dallocator=system

# The unit tests under ThreadSanitizer: the committer's threads, the per-thread scratch, and the
# answer cache that concurrent queries share (meson builds only what the tests need). Without
# address randomisation (setarch -R): clang 14's TSan refuses kernels that randomise more bits.
test-tsan: deps-test $(TSAN_BUILD)/build.ninja
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  setarch $$(uname -m) -R meson test -C $(TSAN_BUILD) --print-errorlogs

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) --buildtype=debugoptimized -Dfuzz=true -Dtests=false -Db_lundef=false

# Each libFuzzer target for FUZZ_SECONDS from its seed corpus (a copy: the seeds stay as committed).
fuzz: deps-test $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	@set -e; for t in $(FUZZ_BUILD)/tests/fuzz/fuzz_*; do \
	  [ -f $$t ] && [ -x $$t ] || continue; \
	  name=$$(basename $$t | sed 's/^fuzz_//'); work=$$(mktemp -d); \
	  cp -r tests/fuzz/corpus/$$name/. $$work/ 2>/dev/null || true; \
	  echo "fuzz $$name: $(FUZZ_SECONDS) s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=0 $$work >$$work.log 2>&1 \
	    || { tail -50 $$work.log; exit 1; }; \
	  grep -E '^Done [0-9]+ runs' $$work.log | tail -1; rm -rf $$work $$work.log; \
	done

bench: build
	scripts/deps.sh bench
	bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	@out=$$(for f in $$(git ls-files '*.c' '*.h'); do clang-format --dry-run --Werror $$f 2>&1 >/dev/null || echo $$f; done); \
	  if [ -n "$$out" ]; then echo "not clang-formatted (run make format):"; echo "$$out"; exit 1; fi

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
