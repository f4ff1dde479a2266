# Eventloom developer entry points (GNU make). `make help` lists them.
#
# Database: targets that need one use LOOM_DATABASE_URL if set, else a
# throwaway PostgreSQL 15 cluster in build/pg (scripts/pg.sh), stopped again
# afterwards. Extra arguments reach the scripts through the environment:
#   make test  CTEST_ARGS='-R append'
#   make demo  DEMO_ARGS='...'
#   make bench BENCH_ARGS='...'
#   make fuzz  FUZZ_SECONDS=60 FUZZ_TARGETS='pb_json headers'
#   make faults FAULT_SAGAS=10000 FAULT_KILLS=50 FAULT_SEED=42

SHELL := /bin/bash
.DEFAULT_GOAL := build
NPROC := $(shell nproc 2>/dev/null || echo 2)

.PHONY: help deps build build-asan test fuzz faults demo bench format format-check clean

help:
	@echo "make deps          install missing Debian packages (scripts/deps.sh)"
	@echo "make build         RelWithDebInfo build in build/ (default)"
	@echo "make build-asan    Debug build with ASan/UBSan in build-asan/"
	@echo "make test          both builds, format check, all tests, a short"
	@echo "                   libFuzzer run of each fuzz target (what CI runs)"
	@echo "make fuzz          long libFuzzer runs in build-fuzz/ (clang):"
	@echo "                   FUZZ_SECONDS per target (300), FUZZ_TARGETS"
	@echo "make faults        the fault campaign (docs/reliability.md):"
	@echo "                   FAULT_SAGAS (10000), FAULT_KILLS (50), FAULT_SEED,"
	@echo "                   FAULT_TRANSPORT=both|topics|nats"
	@echo "make demo          the order-saga demo (DEMO_ARGS=--processes, --transport nats[://H:P])"
	@echo "make bench         benchmarks: append, read, rebuild, live, topics, relay, saga"
	@echo "make format        clang-format the C sources in place"
	@echo "make format-check  fail if any C source is not clang-formatted"
	@echo "make clean         delete build/, build-asan/, build-fuzz/ (and the test cluster)"

deps:
	@scripts/deps.sh

# $(call cmake_build,DIR,CONFIGURE-ARGS): configure DIR, then build.
# Configuring every time is cheap (a second or so) and makes the options
# here win over whatever an older configure left in the cache (a build/
# configured with tests off would otherwise make `make test` find none).
define cmake_build
	@echo "==> building in $(1)/"
	@cmake -S . -B $(1) -DLOOM_BUILD_TESTS=ON $(2) >/dev/null
	@cmake --build $(1) -j$(NPROC)
endef

build: deps
	$(call cmake_build,build,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_VALGRIND=ON)

build-asan: deps
	$(call cmake_build,build-asan,-DCMAKE_BUILD_TYPE=Debug -DLOOM_SANITIZE=ON)

test: deps build build-asan format-check
	@scripts/test.sh

fuzz: deps
	@scripts/fuzz.sh $(FUZZ_TARGETS)

faults: deps build
	@scripts/faults.sh

demo: deps build
	@scripts/demo.sh

bench: deps build
	@scripts/bench.sh

format:
	@scripts/format.sh fix

format-check:
	@scripts/format.sh check

# Stop (and delete) the test cluster first: it may be running, and it may
# live under /tmp (see scripts/pg.sh), which rm -rf build would orphan.
# The same for the test nats-server.
clean:
	@if [ -e build/pg ] || [ -e build/pg.path ]; then \
	    scripts/pg.sh destroy build/pg; \
	fi
	@if [ -e build/nats ]; then scripts/nats.sh destroy build/nats; fi
	rm -rf build build-asan build-fuzz
