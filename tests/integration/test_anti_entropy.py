#!/usr/bin/env python3
"""Anti-entropy on a real 3-node cluster: a node whose disk is wiped gets every key back with no
client read.

KEYS keys are written through n1 (RESP, pipelined), and the test waits until n3 holds them all.
Then n3 is killed, its data directory deleted, and it is started again, empty. From then on no
client sends anything: only anti-entropy can bring the keys back. The test polls n3's kv_keys
gauge until it reaches KEYS, within --deadline seconds (30 by default, the figure the product
promises for 3,000 keys), and prints the time it took and the bytes the other two nodes pushed
(kv_ae_bytes_pushed_total). Then n1 and n2 are stopped, and every key is read through n3 alone
with r=1: each value must be the one written, so n3 holds the data itself, not just the count.

    python3 tests/integration/test_anti_entropy.py --bin build/bin [--keys 3000] [--deadline 30]

Before that, tombstone collection: GC_KEYS keys are written and deleted; with a short
--tombstone-grace-ms, every node must drop every tombstone (kv_keys back to 0, each drop counted
as collected or reaped), every key must still read as not found, and a restarted node must not
bring one back from its log.

`make restore-bench` runs it with 100,000 keys for the README's figure.
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as kc  # noqa: E402

PIPELINE_BATCH = 500
POLL_S = 0.2
FILL_TIMEOUT_S = 120.0   # for n3 to hold every key before the wipe (writes reach all three)
GRACE_MS = 6000          # --tombstone-grace-ms for the whole cluster (at least 2x the request timeout)
GC_KEYS = 1000
GC_TIMEOUT_S = 90.0      # for every tombstone to be collected, after the grace
READ_BATCH = 500


def metrics(node):
    """The node's /metrics as {name: value} for unlabelled samples."""
    status, _, body = kc.http_call(node.http_port, "GET", "/metrics", timeout_s=5.0)
    kc.check_eq(status, 200, "%s /metrics" % node.name)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, _, value = line.rpartition(" ")
        if "{" not in name:
            out[name] = float(value)
    return out


def keys_of(node):
    return int(metrics(node).get("kv_keys", 0))


def value_of(i):
    return "value-%d-%s" % (i, "x" * (i % 64))


def wait_keys(node, want, timeout_s):
    """Polls the node's kv_keys until it reaches want; returns the seconds it took or None."""
    started = time.monotonic()
    last = -1
    while time.monotonic() - started < timeout_s:
        held = keys_of(node)
        if held >= want:
            return time.monotonic() - started
        if held != last:
            last = held
        time.sleep(POLL_S)
    print("  %s holds %d of %d keys after %.0f s" % (node.name, last, want, timeout_s), flush=True)
    return None


def wait_all(nodes, pred, timeout_s):
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if all(pred(n) for n in nodes):
            return time.monotonic() - started
        time.sleep(POLL_S)
    return None


def tombstones_collected(ctx):
    """Deleted keys' tombstones are dropped on every replica once all hold them and the grace has
    passed; the keys stay deleted, also across a restart."""
    c = ctx["cluster"]
    nodes = [c.node(i) for i in (1, 2, 3)]
    with kc.RespClient(c.node(1).resp_port, timeout_s=30.0) as r:
        for reply in r.pipeline([("SET", "gc:%d" % i, "v%d" % i) for i in range(GC_KEYS)]):
            kc.check_eq(reply, "OK", "SET")
        kc.check(wait_all(nodes, lambda n: keys_of(n) == GC_KEYS, FILL_TIMEOUT_S) is not None,
                 "the written keys never reached every node")
        for reply in r.pipeline([("DEL", "gc:%d" % i) for i in range(GC_KEYS)]):
            kc.check_eq(reply, 1, "DEL")
    deleted = time.monotonic()
    took = wait_all(nodes, lambda n: keys_of(n) == 0, GRACE_MS / 1000 + GC_TIMEOUT_S)
    kc.check(took is not None, "tombstones still held %.0f s after the deletes: %s" % (
        GRACE_MS / 1000 + GC_TIMEOUT_S, [keys_of(n) for n in nodes]))
    drops = sum(metrics(n).get("kv_tombstones_collected_total", 0) + metrics(n).get("kv_tombstones_reaped_total", 0)
                for n in nodes)
    kc.check_eq(int(drops), 3 * GC_KEYS, "tombstones collected or reaped over the three nodes")
    print("  %d tombstones gone from all 3 nodes %.1f s after the deletes (grace %.0f s)"
          % (GC_KEYS, time.monotonic() - deleted, GRACE_MS / 1000), flush=True)
    c.restart_node(c.node(2))
    kc.check_eq(keys_of(c.node(2)), 0, "keys n2 holds after a restart")
    for i in range(0, GC_KEYS, 50):
        status, _, _ = kc.http_call(c.node(3).http_port, "GET", "/v1/gc:%d" % i, timeout_s=5.0)
        kc.check_eq(status, 404, "GET gc:%d after its tombstone was collected" % i)


def wiped_node_restored(ctx):
    """A node whose data directory was deleted gets every key back through anti-entropy alone,
    with no client read, within the deadline; afterwards it alone serves every value."""
    c, keys, deadline = ctx["cluster"], ctx["keys"], ctx["deadline"]
    n1, n3 = c.node(1), c.node(3)
    started = time.monotonic()
    with kc.RespClient(n1.resp_port, timeout_s=30.0) as r:
        for base in range(0, keys, PIPELINE_BATCH):
            batch = [("SET", "ae:%d" % i, value_of(i)) for i in range(base, min(keys, base + PIPELINE_BATCH))]
            for i, reply in enumerate(r.pipeline(batch)):
                kc.check_eq(reply, "OK", "SET %s" % batch[i][1])
    print("  wrote %d keys in %.1f s" % (keys, time.monotonic() - started), flush=True)
    kc.check(wait_keys(n3, keys, FILL_TIMEOUT_S) is not None, "n3 never held every key before the wipe")

    c.kill_node(n3)
    shutil.rmtree(n3.data_dir)
    pushed_before = sum(metrics(n).get("kv_ae_bytes_pushed_total", 0) for n in c.others(n3))
    c.start_node(n3)
    took = wait_keys(n3, keys, deadline)
    pushed = sum(metrics(n).get("kv_ae_bytes_pushed_total", 0) for n in c.others(n3)) - pushed_before
    kc.check(took is not None, "n3 did not get its %d keys back within %.0f s" % (keys, deadline))
    data = sum(len("ae:%d" % i) + len(value_of(i)) for i in range(keys))
    print("  restored %d keys in %.1f s; peers pushed %.1f MB (%.1f MB/s), %.2fx the %.1f MB of keys "
          "and values; n3 applied %d records"
          % (keys, took, pushed / 1e6, pushed / 1e6 / max(took, 0.001), pushed / data, data / 1e6,
             metrics(n3).get("kv_ae_records_applied_total", 0)), flush=True)

    # n3 alone: every value must be the one written.
    for n in c.others(n3):
        c.stop_node(n)
    # Over HTTP, where r=1 can be asked for; of many keys, every k-th (3,000 reads at most).
    wrong = []
    step = max(1, keys // 3000)
    for i in range(0, keys, step):
        status, _, body = kc.http_call(n3.http_port, "GET", "/v1/ae:%d?r=1" % i, timeout_s=5.0)
        if status != 200 or value_of(i) not in body.decode("utf-8", "replace"):
            wrong.append((i, status, body[:80]))
    kc.check(not wrong, "n3 alone served %d wrong reads, first: %r" % (len(wrong), wrong[:3]))
    print("  n3 alone served %d of %d keys correctly" % (len(range(0, keys, step)), keys), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="directory holding kvnode")
    ap.add_argument("--keys", type=int, default=3000, help="keys written before the wipe")
    ap.add_argument("--deadline", type=float, default=30.0, help="seconds the restore may take")
    args = ap.parse_args()
    with kc.Cluster(args.bin, size=3, extra_args=["--tombstone-grace-ms", str(GRACE_MS)]) as c:
        ctx = {"cluster": c, "keys": args.keys, "deadline": args.deadline}
        ok = kc.run_test(ctx, tombstones_collected) and kc.run_test(ctx, wiped_node_restored)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
