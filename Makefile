# Thin wrapper over CMake presets. `make test` is what CI runs; `make sim` runs the seeds.
.PHONY: all deps build test sim soak bench restore-bench clean help sanitize cluster fuzz fuzz-build

JOBS ?= $(shell nproc)
SEEDS ?= 1-1000
FUZZ_SECONDS ?= 180
FUZZ_SAVE ?= 0

all: build

help:
	@echo "make deps      install the Debian packages the project needs (idempotent)"
	@echo "make build     configure and build everything into build/ (binaries in build/bin/)"
	@echo "make cluster   deps, build, and a 3-node cluster on loopback (Ctrl-C stops it)"
	@echo "make test      deps, build, then unit, property, simulation and teeth tests; then make"
	@echo "               sanitize, and every fuzz target for 8 s (make fuzz FUZZ_SECONDS=8)"
	@echo "make sim       kvsim run --seeds \$$(SEEDS) (default 1-1000)"
	@echo "make soak      kvsim run --seeds 1-100000 (or SEEDS=A-B): the long run before a release"
	@echo "make bench     redis-server and a 3-node cluster under the same load, side by side, and"
	@echo "               write-through to PostgreSQL beside pgbench"
	@echo "make restore-bench  a node of a 3-node cluster wiped and refilled by anti-entropy alone:"
	@echo "               100,000 keys (or KEYS=N), time and bytes"
	@echo "make sanitize  the unit tests and 100 seeds under AddressSanitizer + UBSan"
	@echo "make fuzz      every libFuzzer target for \$$(FUZZ_SECONDS) s (default 180) on a copy of"
	@echo "               fuzz/corpus/; FUZZ_SAVE=1 merges what it found back into the corpus"
	@echo "make clean     remove the build trees"

deps:
	@./scripts/deps.sh

build: deps
	@cmake --preset default > /dev/null
	@cmake --build --preset default -j $(JOBS)

cluster: build
	@./scripts/cluster.sh

test: build
	@cd build && ctest --output-on-failure --timeout 1500 -j 1
	@$(MAKE) --no-print-directory sanitize
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=8 FUZZ_SAVE=0

sim: build
	@build/bin/kvsim run --seeds $(SEEDS)

# The nightly-style soak: 100,000 seeds unless SEEDS is given on the command line.
soak: build
	@build/bin/kvsim run --seeds $(if $(filter command line,$(origin SEEDS)),$(SEEDS),1-100000)

bench: build
	@python3 scripts/bench.py --bin build/bin

KEYS ?= 100000
restore-bench: build
	@python3 tests/integration/test_anti_entropy.py --bin build/bin --keys $(KEYS) --deadline 600

# Only what runs here is built: the servers and the benchmark would double the build time.
sanitize: deps
	@cmake --preset sanitize > /dev/null
	@cmake --build --preset sanitize -j $(JOBS) --target core_tests net_tests kvsim
	@build-sanitize/bin/core_tests
	@build-sanitize/bin/net_tests
	@build-sanitize/bin/kvsim run --seeds 1-100 --quiet

fuzz-build: deps
	@cmake --preset fuzz > /dev/null
	@cmake --build --preset fuzz -j $(JOBS)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SAVE=$(FUZZ_SAVE) ./fuzz/run.sh

clean:
	rm -rf build build-debug build-sanitize build-fuzz
