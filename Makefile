# Thin wrapper over CMake presets. `make test` is what CI runs; `make sim` runs the seeds.
.PHONY: all deps build test sim bench clean help sanitize cluster

JOBS ?= $(shell nproc)
SEEDS ?= 1-1000

all: build

help:
	@echo "make deps      install the Debian packages the project needs (idempotent)"
	@echo "make build     configure and build everything into build/ (binaries in build/bin/)"
	@echo "make cluster   deps, build, and a 3-node cluster on loopback (Ctrl-C stops it)"
	@echo "make test      deps, build, then unit, property, simulation and teeth tests"
	@echo "make sim       kvsim run --seeds \$$(SEEDS) (default 1-1000)"
	@echo "make bench     redis-server and a 3-node cluster under the same load, side by side"
	@echo "make sanitize  the unit tests and 300 seeds under AddressSanitizer + UBSan"
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

sim: build
	@build/bin/kvsim run --seeds $(SEEDS)

bench: build
	@python3 scripts/bench.py --bin build/bin

sanitize: deps
	@cmake --preset sanitize > /dev/null
	@cmake --build --preset sanitize -j $(JOBS)
	@build-sanitize/bin/core_tests
	@build-sanitize/bin/kvsim run --seeds 1-300

clean:
	rm -rf build build-debug build-sanitize
