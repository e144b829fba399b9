#!/usr/bin/env bash
# The checker's teeth: each *.patch here plants one realistic bug in a copy of the source tree
# (never in the tree itself). Every variant is built and `kvsim run --seeds 1-SEEDS` must find
# its bug, i.e. exit 1 with a violation. A bug that survives SEEDS seeds fails this test. The
# first failing seed is then shrunk, and the shrunk scenario must still fail when replayed
# (shrinks that do not finish within TEETH_SHRINK_SECONDS are reported, not failed). Each run
# stops at its first failing seed; TEETH_COUNT=1 runs all SEEDS and counts the failing ones
# (the figures in the README). The first
# shrunk failure is also drawn with kvsim replay --html and checked in headless Chromium
# (tests/timeline_check.sh): a failing run's page must show its violation.
#
# usage: run.sh SOURCE_DIR WORK_DIR [SEEDS=500] [PATCH_NAME...]
set -uo pipefail
src=$(cd "$1" && pwd)
work=$2
seeds=${3:-500}
# Shrinking a bug's first failing seed is checked where it finishes within this bound (most take
# seconds; a few need thousands of attempts, and the test must stay within make test's budget).
shrink_seconds=${TEETH_SHRINK_SECONDS:-6}
count_all=${TEETH_COUNT:-0}
shift 3 2>/dev/null || shift $#
mkdir -p "$work"

patches=()
if [ $# -gt 0 ]; then
  for n in "$@"; do patches+=("$src/tests/teeth/$n.patch"); done
else
  patches=("$src"/tests/teeth/*.patch)
fi

# One copy of the tree and one build, shared by every variant: each patch is applied, built
# (only what it touches recompiles) and reverted, so that a variant costs seconds, not a build.
tree="$work/src"
build="$work/build"
# The build starts afresh too: the copy keeps the source's file times, so objects left by an
# earlier run (of a patched file) would look newer than the sources and never be rebuilt.
rm -rf "$tree" "$build" && mkdir -p "$tree"
tar -C "$src" --exclude='./build*' --exclude='./data' --exclude='./.git' -cf - . | tar -C "$tree" -xf -

failed=0
timeline_checked=0
for patch in "${patches[@]}"; do
  name=$(basename "$patch" .patch)
  dir="$work/$name"
  rm -rf "$dir" && mkdir -p "$dir"
  if ! (cd "$tree" && patch -p1 --quiet --no-backup-if-mismatch < "$patch"); then
    echo "teeth: $name: the patch no longer applies; update it to the current source"
    failed=1; continue
  fi
  if ! { cmake -S "$tree" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_TESTS=OFF \
         && cmake --build "$build" --target kvsim && cp "$build/bin/kvsim" "$dir/kvsim"; } > "$dir/build.log" 2>&1; then
    echo "teeth: $name: the bugged variant does not build (see $dir/build.log)"
    tail -20 "$dir/build.log"
    (cd "$tree" && patch -R -p1 --quiet --no-backup-if-mismatch < "$patch")
    failed=1; continue
  fi
  (cd "$tree" && patch -R -p1 --quiet --no-backup-if-mismatch < "$patch")
  stop=(--first-failure)
  [ "$count_all" = 1 ] && stop=()
  "$dir/kvsim" run --seeds "1-$seeds" "${stop[@]}" > "$dir/run.log" 2>&1
  rc=$?
  first=$(grep -m1 '^FAIL' "$dir/run.log")
  failing=$(grep -m1 -o '[0-9]* failed' "$dir/run.log")
  if [ $rc -eq 1 ] && [ -n "$first" ]; then
    if [ "$count_all" = 1 ]; then
      echo "teeth: $name: found ($failing of $seeds seeds); first: ${first:0:300}"
    else
      echo "teeth: $name: found within $seeds seeds; first: ${first:0:300}"
    fi
    seed=$(echo "$first" | sed -E 's/^FAIL seed ([0-9]+):.*/\1/')
    timeout "$shrink_seconds" "$dir/kvsim" shrink --seed "$seed" --out "$dir/shrunk.scenario" \
      > "$dir/shrink.log" 2> "$dir/shrink.err"
    shrink_rc=$?
    if [ $shrink_rc -eq 124 ]; then
      echo "teeth: $name: seed $seed not shrunk within ${shrink_seconds} s; shrinking not checked for this bug"
    elif [ $shrink_rc -eq 0 ] && ! "$dir/kvsim" replay --scenario "$dir/shrunk.scenario" > "$dir/replay.log" 2>&1; then
      echo "teeth: $name: seed $seed $(grep -m1 '^shrunk' "$dir/shrink.log")"
      if [ $timeline_checked -eq 0 ]; then
        timeline_checked=1
        "$src/tests/timeline_check.sh" "$dir/kvsim" "$dir/timeline" --scenario "$dir/shrunk.scenario" \
          | sed "s/^/teeth: $name: /" || failed=1
      fi
    else
      echo "teeth: $name: shrinking seed $seed failed or its result replays clean (see $dir/shrink.log)"
      failed=1
    fi
  else
    echo "teeth: $name: NOT FOUND in $seeds seeds (exit $rc); see $dir/run.log"
    failed=1
  fi
done
exit $failed
