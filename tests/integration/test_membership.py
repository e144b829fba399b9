#!/usr/bin/env python3
"""Membership on a real 3-node cluster: the members table spreads by gossip, the failure detector
finds a killed node down and up again after its restart, and the coordinator fails at once what a
down node leaves out of reach.

    python3 tests/integration/test_membership.py --bin build/bin

It prints how long gossip took to spread every member's addresses, how long the survivors took to
find a killed node down (with the defaults, --heartbeat-interval-ms 200 and --phi-threshold 8,
about 3.7 s of silence), how long a write that could not reach its quorum took to fail, and how
long the restarted node took to be up again everywhere. Nothing is asserted about time: the
machine may be busy.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as kc  # noqa: E402

POLL_S = 0.1
SPREAD_TIMEOUT_S = 20.0   # for gossip to spread every member's entry
DOWN_TIMEOUT_S = 30.0     # for the failure detector to find a killed node down
UP_TIMEOUT_S = 30.0       # for a restarted node to be up again everywhere


def cluster_of(node):
    status, _, body = kc.http_call(node.http_port, "GET", "/cluster", timeout_s=5.0)
    kc.check_eq(status, 200, "%s /cluster" % node.name)
    return json.loads(body)


def member(view, name):
    for m in view["members"]:
        if m["name"] == name:
            return m
    raise kc.CheckFailed("no member %s in %r" % (name, view["members"]))


def wait_until(pred, timeout_s):
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if pred():
            return time.monotonic() - started
        time.sleep(POLL_S)
    return None


def kvctl(bin_dir, node, *args):
    out = subprocess.run([os.path.join(bin_dir, "kvctl"), "--node", "127.0.0.1:%d" % node.http_port] + list(args),
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


def spread(nodes):
    """Every node holds the same table, with every member normal, up and its HTTP address known."""
    views = [cluster_of(n) for n in nodes]
    for v in views:
        if v["members_hash"] != views[0]["members_hash"]:
            return False
        for m in v["members"]:
            if m["state"] != "normal" or m["status"] != "up" or not m["http_addr"]:
                return False
    return True


def table_spreads(ctx):
    """Each node starts knowing only its own addresses; gossip gives every node every member's
    entry, and kvctl members prints them with their state, status, share of the ring and keys."""
    c = ctx["cluster"]
    took = wait_until(lambda: spread(c.nodes), SPREAD_TIMEOUT_S)
    kc.check(took is not None, "members tables never agreed: %r" % [cluster_of(n)["members"] for n in c.nodes])
    print("  every node holds every member's entry %.1f s after all were ready" % took, flush=True)
    view = cluster_of(c.node(1))
    kc.check_eq(member(view, "n2")["http_addr"], "127.0.0.1:%d" % c.node(2).http_port, "n2's HTTP address as n1 holds it")
    total = sum(m["share"] for m in view["members"])
    kc.check(abs(total - 1.0) < 1e-6, "shares of the ring add up to %r" % total)
    code, out, err = kvctl(ctx["bin"], c.node(1), "members")
    kc.check_eq(code, 0, "kvctl members exit code (stderr %r)" % err)
    print("  " + out.replace("\n", "\n  ").rstrip(), flush=True)
    lines = out.splitlines()
    kc.check(lines[0].split()[:6] == ["NAME", "STATE", "STATUS", "PHI", "SHARE", "KEYS"], "header %r" % lines[0])
    for name in ("n1", "n2", "n3"):
        row = [line.split() for line in lines if line.startswith(name + " ")]
        kc.check(len(row) == 1 and row[0][1:3] == ["normal", "up"], "kvctl members row for %s: %r" % (name, row))
    kc.check("3 of the 3 members that answered hold the same members table" in out, "agreement line in %r" % out)


def killed_node_found_down(ctx):
    """A node killed with SIGKILL is found down by both survivors; a write that needs it fails at
    once, saying which node is down, and one that does not need it succeeds."""
    c = ctx["cluster"]
    n1, n2, n3 = c.node(1), c.node(2), c.node(3)
    ctx["generation"] = member(cluster_of(n1), "n3")["generation"]
    c.kill_node(n3)
    killed = time.monotonic()
    took = wait_until(lambda: all(member(cluster_of(n), "n3")["status"] == "down" for n in (n1, n2)), DOWN_TIMEOUT_S)
    kc.check(took is not None, "n3 still up for the survivors %.0f s after it was killed" % DOWN_TIMEOUT_S)
    print("  n1 and n2 took n3 as down %.1f s after it was killed (phi %.1f on n1)"
          % (time.monotonic() - killed, member(cluster_of(n1), "n3")["phi"]), flush=True)

    started = time.monotonic()
    status, body = kc.http_json(n1.http_port, "PUT", "/v1/fd:all?w=3", "v")
    failed_in = time.monotonic() - started
    kc.check(status >= 500, "a w=3 write with n3 down answered %d %r" % (status, body))
    kc.check("n3 is down (failure detector)" in json.dumps(body), "the error names the down node: %r" % body)
    kc.check("nothing written" in json.dumps(body), "the error says nothing was written: %r" % body)
    print("  a w=3 write failed in %.0f ms (request timeout 2000 ms): %d %s"
          % (failed_in * 1000, status, body.get("error", body)), flush=True)
    status, body = kc.http_json(n1.http_port, "PUT", "/v1/fd:two?w=2", "v")
    kc.check_eq(status, 200, "a w=2 write with n3 down (%r)" % body)
    metrics = kc.http_call(n1.http_port, "GET", "/metrics", timeout_s=5.0)[2].decode()
    kc.check('kv_peer_up{peer="n3"} 0' in metrics, "kv_peer_up for n3 on n1 is not 0")
    kc.check("kv_requests_failed_fast_total 1" in metrics, "kv_requests_failed_fast_total on n1 is not 1")
    code, out, _ = kvctl(ctx["bin"], n1, "members")
    kc.check_eq(code, 0, "kvctl members exit code")
    row = [line.split() for line in out.splitlines() if line.startswith("n3 ")]
    kc.check(len(row) == 1 and row[0][2] == "down" and row[0][5] == "-", "kvctl members row for n3: %r" % row)


def restarted_node_up_again(ctx):
    """The restarted node is up again for both survivors, with a new generation in every table,
    and a w=3 write succeeds."""
    c = ctx["cluster"]
    n1, n2, n3 = c.node(1), c.node(2), c.node(3)
    started = time.monotonic()
    c.start_node(n3)
    took = wait_until(lambda: spread(c.nodes), UP_TIMEOUT_S)
    kc.check(took is not None, "n3 not up again everywhere %.0f s after its restart" % UP_TIMEOUT_S)
    print("  n3 up again in every table %.1f s after its start" % (time.monotonic() - started), flush=True)
    kc.check(member(cluster_of(n2), "n3")["generation"] > ctx["generation"], "n3's generation did not grow")
    status, body = kc.http_json(n1.http_port, "PUT", "/v1/fd:all?w=3", "v")
    kc.check_eq(status, 200, "a w=3 write with n3 back (%r)" % body)


REMOVE_KEYS = 2000
REMOVE_TIMEOUT_S = 60.0


def load(port, stop, tally):
    """A verifying load: puts and gets of its own keys through one node until stopped; every
    acknowledged put is remembered, every get checked against the last acknowledged put."""
    acked = {}
    i = 0
    while not stop.is_set():
        key = "load:%d:%d" % (port, i % 200)
        if i % 2 == 0:
            value = "v%d" % i
            status, _ = kc.http_json(port, "PUT", "/v1/%s" % key, value)
            tally["ops"] += 1
            if status == 200:
                acked[key] = value
                tally["ok"] += 1
        else:
            status, body = kc.http_json(port, "GET", "/v1/%s" % key)
            tally["ops"] += 1
            if status in (200, 404):
                tally["ok"] += 1
                got = body.get("value") if status == 200 else None
                if key in acked and got != acked[key]:
                    tally["stale"].append((key, acked[key], got))
        i += 1
    tally["acked"].update(acked)


def dead_member_removed(ctx):
    """Four nodes; n4 is killed and, once taken as down, removed with kvctl remove while a load
    runs through the other three. Every node ends with n4 left, each of the three holds every
    key (N=3 of 3), and every acknowledged write reads back; kvctl refuses to remove a live node."""
    c = ctx["cluster"]
    n1, n4 = c.node(1), c.node(4)
    code, _, err = kvctl(ctx["bin"], n1, "remove", "n4")
    kc.check(code == 1 and "n4 is up" in err, "removing a live node: want a refusal, got %d %r" % (code, err))
    with kc.RespClient(n1.resp_port, timeout_s=30.0) as r:
        for base in range(0, REMOVE_KEYS, 500):
            for reply in r.pipeline([("SET", "rm:%d" % i, "value-%d" % i) for i in range(base, base + 500)]):
                kc.check_eq(reply, "OK", "SET")
    c.kill_node(n4)
    took = wait_until(lambda: all(member(cluster_of(n), "n4")["status"] == "down" for n in c.nodes[:3]), DOWN_TIMEOUT_S)
    kc.check(took is not None, "n4 never taken as down")
    import threading
    stop = threading.Event()
    tallies = [{"ops": 0, "ok": 0, "stale": [], "acked": {}} for _ in range(3)]
    threads = [threading.Thread(target=load, args=(c.node(i + 1).http_port, stop, tallies[i])) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    started = time.monotonic()
    code, out, err = kvctl(ctx["bin"], n1, "remove", "n4")
    kc.check_eq(code, 0, "kvctl remove n4 (%s %s)" % (out, err))
    done = wait_until(lambda: all(member(cluster_of(n), "n4")["state"] == "left" for n in c.nodes[:3]), REMOVE_TIMEOUT_S)
    removal_s = time.monotonic() - started
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    kc.check(done is not None, "n4 not left everywhere %.0f s after kvctl remove: %r"
             % (REMOVE_TIMEOUT_S, [member(cluster_of(n), "n4") for n in c.nodes[:3]]))
    ops = sum(t["ops"] for t in tallies)
    ok = sum(t["ok"] for t in tallies)
    stale = [s for t in tallies for s in t["stale"]]
    print("  n4 removed (left on every node) %.1f s after kvctl remove; during it %d operations, %d "
          "succeeded (%.1f%%), %d stale reads" % (removal_s, ops, ok, 100.0 * ok / max(ops, 1), len(stale)), flush=True)
    kc.check(not stale, "stale reads during the removal: %r" % stale[:3])
    kc.check(ok >= 0.99 * ops, "only %d of %d operations succeeded during the removal" % (ok, ops))
    code, out, _ = kvctl(ctx["bin"], n1, "members")
    print("  " + out.replace("\n", "\n  ").rstrip(), flush=True)
    row = [line.split() for line in out.splitlines() if line.startswith("n4 ")]
    kc.check(len(row) == 1 and row[0][1] == "left", "kvctl members row for n4: %r" % row)
    # N = 3 on the three that are left: each holds every key, which only the removal's pulls and
    # anti-entropy can have given the one that was not a replica.
    for n in c.nodes[:3]:
        status, _, body = kc.http_call(n.http_port, "GET", "/metrics", timeout_s=5.0)
        keys = [float(line.split()[1]) for line in body.decode().splitlines() if line.startswith("kv_keys ")]
        kc.check(keys and keys[0] >= REMOVE_KEYS, "%s holds %r keys, fewer than the %d written" % (n.name, keys, REMOVE_KEYS))
    wrong = []
    for i in range(0, REMOVE_KEYS, 7):
        status, body = kc.http_json(n1.http_port, "GET", "/v1/rm:%d?r=3" % i)
        if status != 200 or body.get("value") != "value-%d" % i:
            wrong.append((i, status, body))
    for t in tallies:
        for key, value in t["acked"].items():
            status, body = kc.http_json(n1.http_port, "GET", "/v1/%s?r=3" % key)
            if status != 200 or body.get("value") != value:
                wrong.append((key, status, body))
    kc.check(not wrong, "%d keys read back wrong with r=3, first %r" % (len(wrong), wrong[:3]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="directory holding kvnode and kvctl")
    args = ap.parse_args()
    with kc.Cluster(args.bin, size=3) as c:
        ctx = {"cluster": c, "bin": args.bin}
        ok = all(kc.run_test(ctx, t) for t in (table_spreads, killed_node_found_down, restarted_node_up_again))
    with kc.Cluster(args.bin, size=4) as c:
        ctx = {"cluster": c, "bin": args.bin}
        ok = kc.run_test(ctx, dead_member_removed) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
