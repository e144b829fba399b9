#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 180) on a temporary copy of its corpus in
# fuzz/corpus/, so a run never changes the committed corpus, and prints per target what
# libFuzzer's final stats say: executions per second, corpus size, coverage (cov: edges, ft:
# features). FUZZ_SAVE=1 merges what a run found back into fuzz/corpus/ (-merge=1 keeps only
# inputs that add coverage). A crash is kept under build-fuzz/artifacts/ and fails the run.
#
# Usage: fuzz/run.sh [target...]      (default: every target; built by `make fuzz`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${FUZZ_BIN:-$root/build-fuzz/bin}
seconds=${FUZZ_SECONDS:-180}
save=${FUZZ_SAVE:-0}
artifacts=$root/build-fuzz/artifacts
all=(fuzz_peer_frame fuzz_replica_messages fuzz_resp fuzz_http fuzz_wal_recovery fuzz_legacy_json
     fuzz_config)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

work=$(mktemp -d "${TMPDIR:-/tmp}/kv-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"

declare -A dicts=([fuzz_resp]=resp.dict [fuzz_http]=http.dict)
rows=()
failed=()
field() { sed -nE "s/.* $1: ([^ ]+).*/\\1/p" <<<"$status"; }
for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || { echo "fuzz: no $bin/$t (make fuzz builds it)" >&2; exit 2; }
  corpus=$work/$t
  mkdir -p "$corpus"
  seeds=$root/fuzz/corpus/$t
  [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
  flags=(-max_total_time="$seconds" -timeout=25 -print_final_stats=1
         -artifact_prefix="$artifacts/$t-")
  [ -n "${dicts[$t]:-}" ] && flags+=(-dict="$root/fuzz/dict/${dicts[$t]}")
  echo "fuzz: $t for ${seconds}s ($(ls "$corpus" | wc -l) seeds)"
  rc=0
  "$bin/$t" "${flags[@]}" "$corpus" > "$work/$t.log" 2>&1 || rc=$?

  # The last status line (DONE, or the line before a crash) has cov:, ft: and corp:.
  status=$(grep -E '^#[0-9]+.*cov: ' "$work/$t.log" | tail -n 1 || true)
  execs=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$work/$t.log" | tail -n 1)
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$work/$t.log" | tail -n 1)
  files=$(ls "$corpus" | wc -l)
  bytes=$(du -sb "$corpus" | cut -f1)
  rows+=("$(printf '%-22s %8s %10s %6s %7s %12s %6s %9s' "$t" "${execs:-?}" "${runs:-?}" \
            "$(field cov)" "$(field ft)" "$(field corp)" "$files" "$bytes")")
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); the end of its log:" >&2
    grep -vE '^(#[0-9]+|INFO:|MS:|stat::)' "$work/$t.log" | tail -n 40 >&2
    continue
  fi
  if [ "$save" = 1 ]; then
    mkdir -p "$seeds"
    "$bin/$t" -merge=1 "$seeds" "$corpus" > "$work/$t.merge.log" 2>&1 ||
      { echo "fuzz: merging $t failed:" >&2; tail -n 20 "$work/$t.merge.log" >&2; failed+=("$t"); }
  fi
done

echo
printf '%-22s %8s %10s %6s %7s %12s %6s %9s\n' target exec/s runs cov ft corp files bytes
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in $artifacts/)" >&2
  exit 1
fi
[ "$save" = 1 ] && echo "fuzz: new inputs merged into fuzz/corpus/"
exit 0
