#!/usr/bin/env bash
# Regression scenarios: failures the simulator found (by a soak, or by hand), shrunk with
# kvsim shrink and kept as scenario files in testdata/scenarios/. A scenario file does not
# depend on how seeds turn into scenarios, so each keeps testing its bug whatever later changes
# do to the seeds. Every one must replay without a violation; each file's comment says what it
# found.
#
# usage: regression_scenarios.sh KVSIM
set -uo pipefail
kvsim=$1
dir="$(cd "$(dirname "$0")" && pwd)/testdata/scenarios"
failed=0
count=0
for f in "$dir"/*.scenario; do
  count=$((count + 1))
  if ! out=$("$kvsim" replay --scenario "$f" --trace /dev/null 2>&1); then
    echo "regression: $(basename "$f") fails again:"
    echo "$out" | grep -E '^violation|^result' | cut -c1-400
    failed=1
  fi
done
[ $failed -eq 0 ] && echo "regression: $count scenario(s) replay clean"
exit $failed
