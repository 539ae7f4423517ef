# The two commands of the README: `make demo` and `make test`. Both install
# what is missing (scripts/deps) first.
JOBS ?= 2
PYTHON ?= python3
# Seconds each libFuzzer harness runs in `make fuzz` and in `make test` (smoke).
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 3
FUZZ_CC ?= clang

.PHONY: all deps build build-asan build-fuzz fuzz fuzz-smoke test unit e2e test-asan demo bench format clean

all: build

deps:
	@scripts/deps

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j$(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)

# libFuzzer harnesses (tests/fuzz): clang, coverage + ASan + UBSan.
build-fuzz: deps
	@CC=$(FUZZ_CC) cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j$(JOBS)

# Each harness for $(FUZZ_SECONDS) s on a copy of its seed corpus; fails on
# any crash, leak, timeout or sanitizer report (reproducers: build-fuzz/artifacts/).
fuzz: build-fuzz
	@tests/fuzz/run.sh $(FUZZ_SECONDS) build-fuzz

# A few seconds each: keeps the harnesses compiling and alive (part of `make test`).
fuzz-smoke: build-fuzz
	@tests/fuzz/run.sh $(FUZZ_SMOKE_SECONDS) build-fuzz

# Every suite twice: the normal build, then under AddressSanitizer+UBSan;
# then each fuzz harness for a few seconds.
test: build build-asan
	@echo "== unit tests (normal build)"
	@cd build && ctest --output-on-failure
	@echo "== e2e tests (normal build)"
	@$(PYTHON) tests/e2e/run.py --bin build/sluice
	@echo "== unit tests (asan+ubsan build)"
	@cd build-asan && ctest --output-on-failure
	@echo "== e2e tests (asan+ubsan build)"
	@SLUICE_SANITIZED=1 $(PYTHON) tests/e2e/run.py --bin build-asan/sluice
	@echo "== fuzz harnesses (3 s each)"
	@$(MAKE) --no-print-directory fuzz-smoke

unit: build
	@cd build && ctest --output-on-failure

e2e: build
	@$(PYTHON) tests/e2e/run.py --bin build/sluice

demo: build
	@scripts/demo

# wrk against sluice and nginx (proxy, rate-limited route), then the
# microbenchmark of one rate-limit decision.
bench: build
	@bench/run.sh proxy limit cache auth redis upload
	@build/limit_bench

format:
	@clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/fuzz/*.c' 'tools/*.c')

clean:
	@rm -rf build build-asan build-fuzz
