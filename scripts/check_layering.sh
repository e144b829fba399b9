#!/usr/bin/env bash
# core/ is pure logic and sim/ is deterministic: neither may include Asio/Beast, threads, clocks,
# files or the standard random library, nor net/ (except the peer codec in sim/). sim/cli/ (the kvsim command line: files, worker threads,
# the terminal) is the one exception in sim/. Fails the build with the offending lines.
set -euo pipefail
root=${1:-.}
banned='^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](boost/asio|boost/beast|thread|mutex|condition_variable|future|chrono|random|fstream|filesystem|ctime|time\.h|unistd\.h|sys/)'
bad=$(grep -rnE "$banned" "$root/core" "$root/sim" --include='*.h' --include='*.cc' \
      | grep -v "^$root/sim/cli/" || true)
if [ -n "$bad" ]; then
  echo "layering: core/ and sim/ must stay free of I/O, threads, clocks and std randomness:" >&2
  echo "$bad" >&2
  exit 1
fi
# Of net/, the simulator takes only the peer codec (pure; messages travel through it), and the
# core nothing at all.
net_bad=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"net/' "$root/core" "$root/sim" \
          --include='*.h' --include='*.cc' | grep -v "^$root/sim/cli/" \
          | grep -v "^$root/sim/[^:]*:[0-9]*:[[:space:]]*#[[:space:]]*include[[:space:]]*\"net/peer_codec.h\"" || true)
if [ -n "$net_bad" ]; then
  echo "layering: core/ may not include net/, and sim/ only net/peer_codec.h:" >&2
  echo "$net_bad" >&2
  exit 1
fi
