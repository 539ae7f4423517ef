# The two commands of the README: `make demo` and `make test`. Both install
# what is missing (scripts/deps) first.
JOBS ?= 2
PYTHON ?= python3

.PHONY: all deps build build-asan test unit e2e test-asan demo bench format clean

all: build

deps:
	@scripts/deps

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j$(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)

# Every suite twice: the normal build, then under AddressSanitizer+UBSan.
test: build build-asan
	@echo "== unit tests (normal build)"
	@cd build && ctest --output-on-failure
	@echo "== e2e tests (normal build)"
	@$(PYTHON) tests/e2e/run.py --bin build/sluice
	@echo "== unit tests (asan+ubsan build)"
	@cd build-asan && ctest --output-on-failure
	@echo "== e2e tests (asan+ubsan build)"
	@SLUICE_SANITIZED=1 $(PYTHON) tests/e2e/run.py --bin build-asan/sluice

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
	@clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c')

clean:
	@rm -rf build build-asan
