#!/usr/bin/env bash
# kvsim replay --html, checked in a real browser: headless Chromium loads the page, runs its
# script and hands back the DOM it built. Every lane, message, crash, client operation and
# violation that kvsim says the run had must be drawn, counted both from the SVG's own tally and
# from the elements themselves; a run that fails must show at least one violation.
#
# usage: timeline_check.sh KVSIM WORK_DIR (--seed S | --scenario FILE)
set -euo pipefail
kvsim=$1
work=$2
shift 2
mkdir -p "$work"
page="$work/timeline.html"

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "timeline_check: no chromium (make deps installs it)" >&2
  exit 1
fi

set +e
"$kvsim" replay "$@" --html "$page" > "$work/replay.log" 2>&1
replay_rc=$?
set -e
if [ $replay_rc -gt 1 ]; then
  echo "timeline_check: kvsim replay $* failed (exit $replay_rc):" >&2
  cat "$work/replay.log" >&2
  exit 1
fi
summary=$(grep -m1 '^timeline: wrote ' "$work/replay.log")
want() { echo "$summary" | { grep -o "$1 [0-9]*" || true; } | awk '{print $2}'; }

# A profile of its own (nothing read from or left in the home directory); no sandbox, since
# tests may run as root.
profile="$work/chromium-profile"
rm -rf "$profile"
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
  --user-data-dir="$profile" --dump-dom "file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")" \
  > "$work/dom.html" 2> "$work/chromium.log" || {
  echo "timeline_check: chromium could not load the page (see $work/chromium.log)" >&2
  exit 1
}
svg=$(grep -o '<svg id="timeline"[^>]*>' "$work/dom.html" || true)
if ! echo "$svg" | grep -q 'data-ready="1"'; then
  echo "timeline_check: the page's script did not finish drawing" >&2
  exit 1
fi
drawn() { echo "$svg" | { grep -o "data-$1=\"[0-9]*\"" || true; } | { grep -o '[0-9]*' || true; }; }
elements() { { grep -o "<$1 class=\"$2\"" "$work/dom.html" || true; } | wc -l; }

failed=0
check() {  # what, expected, drawn (tally), drawn (elements)
  if [ "$2" != "$3" ] || [ "$2" != "$4" ]; then
    echo "timeline_check: $1: kvsim counted $2, the page tallied $3 and drew $4" >&2
    failed=1
  fi
}
check lanes "$(want lanes)" "$(drawn lanes)" "$(elements line lane)"
msgs=$(( $(elements line msg) + $(elements line 'msg lost') + $(elements line 'msg inflight') ))
check messages "$(want messages)" "$(drawn messages)" "$msgs"
check lost "$(want lost)" "$(drawn lost)" "$(elements line 'msg lost')"
check crashes "$(want crashes)" "$(drawn crashes)" "$(elements text crash)"
ops=$({ grep -o '<rect class="op [a-z]*"' "$work/dom.html" || true; } | wc -l)
check ops "$(want ops)" "$(drawn ops)" "$ops"
check violations "$(want violations)" "$(drawn violations)" "$(elements line violation)"
if [ $replay_rc -eq 1 ] && [ "$(drawn violations)" -lt 1 ]; then
  echo "timeline_check: the run failed but the page shows no violation" >&2
  failed=1
fi
if [ "$(want messages)" -lt 1 ] || [ "$(want ops)" -lt 1 ]; then
  echo "timeline_check: the run drew no messages or no operations: $summary" >&2
  failed=1
fi
[ $failed -eq 0 ] && echo "timeline_check: $* drawn whole: ${summary#timeline: wrote *: }"
exit $failed
