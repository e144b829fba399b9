#!/usr/bin/env bash
# Pinned behaviour: the trace hashes of seeds 1-20 must be those in testdata/trace_hashes.txt.
# A trace hash covers every event of a run (each message delivered, with its request id, key and
# version; each bridge call; each client outcome), so any change in what the core sends, in what
# order, or with what version changes it. Such a change must be meant: say why in the commit,
# and rewrite the file with
#   tests/pinned_hashes.sh build/bin/kvsim --rewrite
#
# usage: pinned_hashes.sh KVSIM [--rewrite]
set -euo pipefail
kvsim=$1
pinned="$(cd "$(dirname "$0")" && pwd)/testdata/trace_hashes.txt"
seeds=1-20

actual=$("$kvsim" run --seeds "$seeds" --hashes --quiet | grep '^trace-hash ')
if [ "${2:-}" = "--rewrite" ]; then
  { grep '^#' "$pinned"; echo "$actual"; } > "$pinned.new" && mv "$pinned.new" "$pinned"
  echo "pinned_hashes: rewrote $(basename "$pinned")"
  exit 0
fi
if ! diff <(grep '^trace-hash ' "$pinned") <(echo "$actual") > /dev/null; then
  echo "pinned_hashes: the behaviour of these seeds changed (< pinned, > this build):"
  diff <(grep '^trace-hash ' "$pinned") <(echo "$actual") || true
  echo "pinned_hashes: if the change is meant, say why in the commit and run"
  echo "  tests/pinned_hashes.sh $kvsim --rewrite"
  exit 1
fi
echo "pinned_hashes: seeds $seeds behave as pinned"
