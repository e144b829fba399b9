#!/usr/bin/env bash
# A 3-node cluster on loopback, data under ./data/, in the foreground: Ctrl-C stops all three.
# Ports: peers 7001-7003, RESP 6381-6383, HTTP 8001-8003 (override with KV_BASE_* below).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin/kvnode
peer=${KV_BASE_PEER:-7000}
resp=${KV_BASE_RESP:-6380}
http=${KV_BASE_HTTP:-8000}
cluster="n1@127.0.0.1:$((peer+1)),n2@127.0.0.1:$((peer+2)),n3@127.0.0.1:$((peer+3))"
mkdir -p data
pids=()
stop() {
  trap - INT TERM
  echo; echo "cluster: stopping ${pids[*]}"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  exit 0
}
trap stop INT TERM
for i in 1 2 3; do
  "$bin" --id "n$i" --cluster "$cluster" --resp-addr "127.0.0.1:$((resp+i))" \
         --http-addr "127.0.0.1:$((http+i))" --data-dir "data/n$i" 2> >(sed "s/^/[n$i] /" >&2) &
  pids+=($!)
done
sleep 1
cat <<MSG

cluster: 3 nodes running (pids ${pids[*]}), data in ./data/
  n1  RESP 127.0.0.1:$((resp+1))   HTTP http://127.0.0.1:$((http+1))
  n2  RESP 127.0.0.1:$((resp+2))   HTTP http://127.0.0.1:$((http+2))
  n3  RESP 127.0.0.1:$((resp+3))   HTTP http://127.0.0.1:$((http+3))

try:
  curl -X POST 127.0.0.1:$((http+1))/v1/my_key -H 'Content-Type: application/json' -d '{"value": "my_value"}'
  curl 127.0.0.1:$((http+2))/v1/my_key
  redis-cli -p $((resp+3)) GET my_key
  build/bin/kvctl --node 127.0.0.1:$((http+1)) status

Ctrl-C stops the cluster.
MSG
wait
