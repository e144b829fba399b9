#!/usr/bin/env bash
# Installs the Debian packages the project builds and tests with, and nothing else.
# Idempotent: when every package is already installed it changes nothing and prints one line.
# postgresql brings the server (initdb, postgres, pgbench under /usr/lib/postgresql/*/bin), used
# by the integration tests and the benchmark on a throwaway data directory of their own;
# postgresql-client brings psql. clang and libclang-rt-14-dev build the fuzz targets (libFuzzer);
# llvm brings llvm-symbolizer, which names files and lines in sanitizer and fuzzer reports.
# chromium (headless) draws kvsim's HTML timeline in a test.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config patch
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev libboost-url1.81-dev
  libprotobuf-dev protobuf-compiler
  libpq-dev libcurl4-openssl-dev
  librapidcheck-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev llvm
  redis-tools redis-server curl procps python3
  postgresql postgresql-client
  chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
