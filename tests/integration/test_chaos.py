#!/usr/bin/env python3
"""Crash-restart chaos on a real 3-node cluster, with a verifying workload.

Several client threads, each speaking RESP to some nodes and HTTP to the others, SET unique
values to a small key space and GET them back, while every 3-6 s one random node is killed with
SIGKILL and restarted 1-3 s later (never two down at once). Every operation is recorded with its
start and end time and outcome:

    acknowledged  the node said the write is done (+OK, HTTP 200);
    failed        the write was definitely not applied: connection refused before anything was
                  sent, QUORUM / HTTP 503 (refused before a version was stamped), BUSY;
    unknown       anything else: TIMEOUT / HTTP 504, a connection dropped or timed out after
                  the request was sent.

Then every node is restarted, and every key is read with r=3 through the nodes in turn. The run
fails if an acknowledged write was lost (see lost_writes for the exact rule), if a read or the
final state shows a value nobody wrote, if a read was stale (C4), or if fewer than half of the
operations succeeded.

    python3 tests/integration/test_chaos.py --bin build/bin [--duration 60] [--seed 7]
"""

import argparse
import bisect
import collections
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as kc  # noqa: E402

OK, FAILED, UNKNOWN = "acknowledged", "failed", "unknown"
CLIENT_TIMEOUT_S = 6.0          # above the node's 2 s request deadline: a reply normally comes
REFUSED_COOLDOWN_S = 0.3        # a client avoids a node that refused it for this long
OP_PAUSE_S = 0.002              # keeps the load bounded (2 CPUs, three fsyncing nodes)
WARMUP_S = 2.0                  # workload before the first fault
SETTLE_S = 3.0                  # workload after the last restart, all nodes up
FINAL_READ_ATTEMPTS_MAX = 5
SUCCESS_RATIO_MIN = 0.5


# ---- history ----


class Op:
    """One client operation as the client saw it."""

    __slots__ = ("kind", "key", "value", "node", "proto", "start", "end", "outcome", "version",
                 "detail", "refused")

    def __init__(self, kind, key, value, node, proto):
        self.kind, self.key, self.value, self.node, self.proto = kind, key, value, node, proto
        self.start = time.monotonic()
        self.end = None
        self.outcome = None
        self.version = None   # parsed HLC stamp from HTTP replies, else None
        self.detail = ""
        self.refused = False


def parse_version(text):
    """'1795439518174.0@n1' -> (1795439518174, 0, 1), ordered as the store orders versions."""
    if not text:
        return None
    stamp, _, node = text.partition("@n")
    physical, _, counter = stamp.partition(".")
    return int(physical), int(counter), int(node)


# ---- clients ----


class RespStore:
    """SET/GET over one RESP connection to a node, reconnecting when the node went away."""

    proto = "resp"

    def __init__(self, node):
        self.node = node
        self.client = None

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def _connect(self, op):
        if self.client is not None and not self.client.peer_closed():
            return True
        self.close()
        try:
            self.client = kc.RespClient(self.node.resp_port, timeout_s=CLIENT_TIMEOUT_S)
            return True
        except OSError as e:
            op.outcome, op.refused, op.detail = FAILED, True, "connect: %s" % e
            return False

    def run(self, op):
        if not self._connect(op):
            return
        args = ("SET", op.key, op.value) if op.kind == "set" else ("GET", op.key)
        try:
            self.client.send(args)
            reply = self.client.read_reply()
        except (OSError, kc.RespProtocolError) as e:
            self.close()
            op.outcome, op.detail = UNKNOWN, "after send: %r" % e
            return
        if isinstance(reply, kc.RespError):
            op.detail = str(reply)
            definite = reply.code in ("QUORUM", "BUSY") or op.kind == "get"
            op.outcome = FAILED if definite else UNKNOWN
        elif op.kind == "set":
            op.outcome = OK if reply == "OK" else UNKNOWN
            op.detail = "" if reply == "OK" else "reply %r" % reply
        else:
            op.outcome, op.value = OK, reply


class HttpStore:
    """PUT/GET over one keep-alive HTTP connection to a node."""

    proto = "http"

    def __init__(self, node):
        self.node = node
        self.client = None

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def run(self, op):
        if self.client is None or self.client.port != self.node.http_port:
            self.close()
            self.client = kc.HttpClient(self.node.http_port, timeout_s=CLIENT_TIMEOUT_S)
        try:
            self.client.connect()
        except OSError as e:
            op.outcome, op.refused, op.detail = FAILED, True, "connect: %s" % e
            return
        path = "/v1/" + op.key
        try:
            if op.kind == "set":
                body = json.dumps({"value": op.value})
                status, data = self.client.request("PUT", path, body,
                                                   {"Content-Type": "application/json"})
            else:
                status, data = self.client.request("GET", path)
        except Exception as e:  # noqa: BLE001 - any failure after sending leaves the outcome open
            op.outcome, op.detail = UNKNOWN, "after send: %r" % e
            return
        self._classify(op, status, data)

    @staticmethod
    def _classify(op, status, data):
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            body = {"unparsed": data[:200]}
        if status == 200:
            op.outcome = OK
            op.version = parse_version(body.get("version"))
            if op.kind == "get":
                op.value = body.get("value")
        elif op.kind == "get" and status == 404:
            op.outcome, op.value = OK, None
        else:
            op.detail = "%d %s" % (status, body)
            op.outcome = FAILED if status == 503 or op.kind == "get" else UNKNOWN


# ---- workload ----


class Worker(threading.Thread):
    """One client thread: random SET or GET of a random key through a random live node."""

    def __init__(self, index, cluster, keys, seed, stop):
        super().__init__(name="worker-%d" % index, daemon=True)
        self.index = index
        self.cluster = cluster
        self.keys = keys
        self.rng = random.Random(seed * 1000 + index)
        self.stop = stop
        self.ops = []
        self.seq = 0
        # Both protocols on every node across the threads, and on every thread across the nodes.
        self.stores = [RespStore(n) if (index + n.index) % 2 == 0 else HttpStore(n)
                       for n in cluster.nodes]
        self.refused_until = [0.0] * len(self.stores)

    def pick_store(self):
        now = time.monotonic()
        usable = [i for i in range(len(self.stores)) if self.refused_until[i] <= now]
        return self.rng.choice(usable or range(len(self.stores)))

    def run(self):
        while not self.stop.is_set():
            i = self.pick_store()
            store = self.stores[i]
            key = self.rng.choice(self.keys)
            if self.rng.random() < 0.5:
                self.seq += 1
                op = Op("set", key, "w%d-%d" % (self.index, self.seq), store.node.name, store.proto)
            else:
                op = Op("get", key, None, store.node.name, store.proto)
            store.run(op)
            op.end = time.monotonic()
            self.ops.append(op)
            if op.refused:
                self.refused_until[i] = op.end + REFUSED_COOLDOWN_S
            time.sleep(OP_PAUSE_S)
        for store in self.stores:
            store.close()


# ---- faults ----


def fault_loop(c, rng, until, events, origin):
    """Kills a random node every 3-6 s and restarts it 1-3 s later, until `until`.

    Appends (kill_time, back_time, node name) to events: the interval the node was down.
    """
    while True:
        pause = rng.uniform(3.0, 6.0)
        if time.monotonic() + pause >= until:
            return
        time.sleep(pause)
        victim = rng.choice(c.nodes)
        killed_at = time.monotonic()
        c.kill_node(victim)
        time.sleep(rng.uniform(1.0, 3.0))
        c.start_node(victim, wait_ready=False)  # returns once it listens again
        back_at = time.monotonic()
        events.append((killed_at, back_at, victim.name))
        print("  t=%5.1f s: %s killed, back after %.1f s"
              % (killed_at - origin, victim.name, back_at - killed_at), flush=True)


# ---- checks ----


def by_key(ops, kind):
    out = collections.defaultdict(list)
    for op in ops:
        if op.kind == kind:
            out[op.key].append(op)
    return out


class AckIndex:
    """The acknowledged writes of one key, for 'which acknowledged write ended before t'."""

    def __init__(self, writes):
        acked = sorted((w for w in writes if w.outcome == OK), key=lambda w: w.end)
        self.ends = [w.end for w in acked]
        self.acked = acked
        # latest_start[i]: the latest start among the first i+1 acknowledged writes (by end).
        self.latest_start, self.latest_version = [], []
        start, version = float("-inf"), None
        for w in acked:
            start = max(start, w.start)
            if w.version is not None and (version is None or w.version > version):
                version = w.version
            self.latest_start.append(start)
            self.latest_version.append(version)

    def before(self, t):
        """(latest start, highest known version) of the writes acknowledged before t, or None."""
        i = bisect.bisect_left(self.ends, t)
        return None if i == 0 else (self.latest_start[i - 1], self.latest_version[i - 1])


def older_than(writer, start, version_seen, version_needed):
    """Whether a value written by `writer` (None: no value) is older than an acknowledged write
    that started at `start` with HTTP version `version_needed` (None if unknown).

    Older means: nothing at all (the workload never deletes), a write that definitely failed, a
    write acknowledged before that one started (C5: real-time order), or a version below the
    acknowledged one (C1).
    """
    if writer is None or writer.outcome == FAILED:
        return True
    if writer.outcome == OK and writer.end < start:
        return True
    return version_needed is not None and version_seen is not None and version_seen < version_needed


def lost_writes(writes, final_writer, final_version):
    """The acknowledged writes of one key that the key's final state lost.

    The rule. Let F be the write whose (unique) value the key finally holds. An acknowledged
    write A is lost iff A is not F and one of:
      - the key holds nothing, or F is a write that definitely failed;
      - F was acknowledged before A started: A is newer in real time, and C5 says the final
        state never prefers F over A;
      - A's reply named its version (HTTP) and the final version is lower (C1: the key holds the
        acknowledged write with the highest version, or a newer one).
    Writes that overlap A in time may win either way, and a write whose outcome is unknown may
    win over anything: its stamp can be newer than A's.
    """
    lost = []
    for a in writes:
        if a.outcome != OK or a is final_writer:
            continue
        if older_than(final_writer, a.start, final_version, a.version):
            lost.append(a)
    return lost


def stale_reads(reads, writes, writer_of):
    """Successful reads that returned a value older than a write acknowledged before they began
    (C4, strict quorum R+W>N), by the same notion of older as lost_writes."""
    index = AckIndex(writes)
    stale = []
    for g in reads:
        if g.outcome != OK:
            continue
        prior = index.before(g.start)
        if prior is None:
            continue
        latest_start, latest_version = prior
        if older_than(writer_of(g.value), latest_start, g.version, latest_version):
            stale.append(g)
    return stale


def check_the_checker():
    """The loss and staleness rules on hand-made histories: they must flag what they exist for
    and accept what the contract allows. Runs before the cluster starts; raises on a mistake."""
    def expect(condition):
        if not condition:
            raise RuntimeError("the history checker is wrong: see check_the_checker")

    def write(value, start, end, outcome, version=None):
        op = Op("set", "k", value, "n1", "http")
        op.start, op.end, op.outcome, op.version = start, end, outcome, version
        return op

    a = write("a", 0.0, 1.0, OK)
    b = write("b", 2.0, 3.0, OK)            # starts after a was acknowledged
    c = write("c", 0.5, 2.5, OK)            # overlaps both
    u = write("u", 0.2, 6.0, UNKNOWN)
    x = write("x", 0.1, 0.2, FAILED)
    writes = [a, b, c, u, x]
    expect(lost_writes(writes, b, None) == [])           # the newest wins
    expect(lost_writes(writes, c, None) == [])           # concurrent with a and b: may win
    expect(lost_writes(writes, u, None) == [])           # unknown: may be newer than anything
    expect(lost_writes(writes, a, None) == [b])          # a acknowledged before b started
    expect(lost_writes(writes, None, None) == [a, b, c])
    expect(lost_writes(writes, x, None) == [a, b, c])
    v1, v2 = write("v1", 0.0, 1.0, OK, (10, 0, 1)), write("v2", 0.5, 1.5, OK, (20, 0, 2))
    expect(lost_writes([v1, v2], v1, (10, 0, 1)) == [v2])  # C1 by versions, though concurrent

    def read(value, start, version=None):
        op = Op("get", "k", value, "n2", "http")
        op.start, op.end, op.outcome, op.version = start, start + 0.1, OK, version
        return op
    by_value = {w.value: w for w in writes}.get
    reads = [read("a", 1.5), read("a", 3.5), read("c", 3.5), read(None, 0.5), read(None, 1.5)]
    expect(stale_reads(reads, writes, by_value) == [reads[1], reads[4]])


# ---- final state ----


def read_final(c, key, i):
    """GET key?r=3 through node i % 3, retrying transient errors. Returns (status, value, version)."""
    last = None
    for attempt in range(FINAL_READ_ATTEMPTS_MAX):
        node = c.nodes[(i + attempt) % len(c.nodes)]
        try:
            status, body = kc.http_json(node.http_port, "GET", "/v1/%s?r=3" % key, timeout_s=10)
        except OSError as e:
            last = str(e)
            continue
        if status == 200:
            return body["value"], parse_version(body.get("version"))
        if status == 404:
            return None, None
        last = "%d %s" % (status, body)
        time.sleep(0.5)
    raise RuntimeError("final read of %s failed %d times, last: %s"
                       % (key, FINAL_READ_ATTEMPTS_MAX, last))


# ---- report ----


def success_stats(ops, t0, t1):
    during = [op for op in ops if t0 <= op.start < t1]
    ok = sum(op.outcome == OK for op in during)
    return len(during), ok


def window_stats(ops, events):
    """One-second windows that lie inside an interval with one node down: how many, how many
    had no successful operation at all."""
    ends = sorted(op.end for op in ops if op.outcome == OK)
    windows = empty = 0
    for killed, back, _ in events:
        t = killed
        while t + 1.0 <= back:
            windows += 1
            lo, hi = bisect.bisect_left(ends, t), bisect.bisect_left(ends, t + 1.0)
            empty += hi == lo
            t += 1.0
    return windows, empty


def describe(op, origin):
    return ("%s %s=%r via %s/%s [%.3f..%.3f] %s %s" % (
        op.kind.upper(), op.key, op.value, op.node, op.proto, op.start - origin,
        (op.end or 0) - origin, op.outcome, op.detail))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="build/bin", help="directory holding kvnode")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--threads", type=int, default=6, help="client threads")
    parser.add_argument("--keys", type=int, default=200, help="size of the key space")
    parser.add_argument("--seed", type=int, default=None, help="seed of faults and workload")
    parser.add_argument("--keep-data", action="store_true", help="keep data dirs and logs")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1 << 30)
    print("chaos: seed %d, %.0f s of faults, %d threads, %d keys (replay with --seed %d)"
          % (seed, args.duration, args.threads, args.keys, seed), flush=True)

    check_the_checker()
    with kc.Cluster(args.bin, keep_data=args.keep_data) as c:
        print("cluster: %s in %s" % (c.nodes, c.workdir), flush=True)
        failures = run_chaos(c, args, seed)
        if failures:
            c.keep_data = True
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("PASS")
    return 0


class Timeline:
    """When the run began, when faults were on, and which node was down when."""

    def __init__(self):
        self.origin = time.monotonic()
        self.fault_start = self.fault_end = self.origin
        self.down = []  # (killed at, back at, node name)


def run_workload_with_faults(c, keys, args, seed):
    """Runs the workers through warm-up, the fault phase and a quiet settle. Returns (ops,
    timeline)."""
    stop = threading.Event()
    workers = [Worker(i, c, keys, seed, stop) for i in range(args.threads)]
    timeline = Timeline()
    for w in workers:
        w.start()
    time.sleep(WARMUP_S)
    timeline.fault_start = time.monotonic()
    print("faults:", flush=True)
    fault_loop(c, random.Random(seed), timeline.fault_start + args.duration, timeline.down,
               timeline.origin)
    timeline.fault_end = time.monotonic()
    for node in c.nodes:
        if not node.running():
            c.start_node(node, wait_ready=False)
    c.wait_all_ready()
    time.sleep(SETTLE_S)
    stop.set()
    for w in workers:
        w.join(CLIENT_TIMEOUT_S * 3)
    return [op for w in workers for op in w.ops], timeline


def restart_and_read_all(c, keys):
    """Restarts every node (SIGTERM, start, wait ready) and reads every key with r=3, through
    the nodes in turn. Returns {key: (value or None, version)}."""
    print("restarting every node for the final reads", flush=True)
    for node in c.nodes:
        c.stop_node(node)
    for node in c.nodes:
        c.start_node(node, wait_ready=False)
    c.wait_all_ready()
    return {key: read_final(c, key, i) for i, key in enumerate(keys)}


def run_chaos(c, args, seed):
    """The workload, the faults, the final reads and the checks. Returns the failures found."""
    keys = ["chaos_%d" % i for i in range(args.keys)]
    ops, timeline = run_workload_with_faults(c, keys, args, seed)
    final = restart_and_read_all(c, keys)
    return report_availability(ops, timeline) + report_consistency(ops, final, timeline.origin)


def report_availability(ops, timeline):
    """Prints how many operations succeeded, overall and with faults on; fails below half."""
    origin, events = timeline.origin, timeline.down
    count = collections.Counter((op.kind, op.outcome) for op in ops)
    total, ok = len(ops), count["set", OK] + count["get", OK]
    f_total, f_ok = success_stats(ops, timeline.fault_start, timeline.fault_end)
    windows, empty_windows = window_stats(ops, events)
    elapsed = max(op.end for op in ops) - origin if ops else 0.0
    print("operations: %d in %.0f s, %d succeeded (%.1f%%); during faults %d, %d succeeded (%.1f%%)"
          % (total, elapsed, ok, 100.0 * ok / max(total, 1), f_total, f_ok,
             100.0 * f_ok / max(f_total, 1)))
    print("writes: %d acknowledged, %d failed, %d unknown; reads: %d ok, %d failed; "
          "%d refused connections (counted as failed)"
          % (count["set", OK], count["set", FAILED], count["set", UNKNOWN], count["get", OK],
             count["get", FAILED] + count["get", UNKNOWN], sum(op.refused for op in ops)))
    print("kills: %d; one-second windows with a node down: %d, %d of them without any success"
          % (len(events), windows, empty_windows))
    print_error_details(ops)
    if ok < SUCCESS_RATIO_MIN * total:
        return ["only %d of %d operations succeeded" % (ok, total)]
    return []


def check_final_state(sets, final, writer_by_value):
    """Per key: whether its final value was written to it, by whom, and which acknowledged
    writes it lost. Returns (lost, invented (key, value) pairs, failed writes applied, counts of
    the final values by the outcome of their write)."""
    lost, invented, failed_applied = [], [], []
    by_outcome = collections.Counter()
    for key, (value, version) in final.items():
        writer = writer_by_value.get(value) if value is not None else None
        if value is not None and (writer is None or writer.key != key):
            invented.append((key, value))
            continue
        by_outcome[writer.outcome if writer else "absent"] += 1
        if writer is not None and writer.outcome == FAILED:
            failed_applied.append(writer)
        lost += lost_writes(sets.get(key, []), writer, version)
    return lost, invented, failed_applied, by_outcome


def report_consistency(ops, final, origin):
    """Checks the reads and the final state against the history; prints and returns failures."""
    sets, gets = by_key(ops, "set"), by_key(ops, "get")
    writer_by_value = {op.value: op for op in ops if op.kind == "set"}
    invented_reads = [g for key, rs in gets.items() for g in rs
                      if g.outcome == OK and g.value is not None
                      and (g.value not in writer_by_value or writer_by_value[g.value].key != key)]
    stale = [g for key, rs in gets.items()
             for g in stale_reads(rs, sets.get(key, []), writer_by_value.get)]
    lost, invented_final, failed_applied, by_outcome = check_final_state(sets, final,
                                                                         writer_by_value)
    print("final state: %d keys read with r=3; their values come from writes that were %s"
          % (len(final), dict(by_outcome)))
    print("lost acknowledged writes: %d; stale reads: %d; invented values: %d read, %d final; "
          "failed writes applied: %d" % (len(lost), len(stale), len(invented_reads),
                                         len(invented_final), len(failed_applied)))
    show("lost", lost, origin, final, writer_by_value)
    show("stale read", stale, origin, final, writer_by_value)
    show("failed but applied", failed_applied, origin, final, writer_by_value)
    for g in invented_reads[:5]:
        print("  invented read: " + describe(g, origin))
    for key, value in invented_final[:5]:
        print("  invented final value of %s: %r" % (key, value))
    failures = []
    if lost:
        failures.append("%d acknowledged writes lost" % len(lost))
    if stale:
        failures.append("%d stale reads" % len(stale))
    if invented_reads or invented_final:
        failures.append("%d invented values" % (len(invented_reads) + len(invented_final)))
    if failed_applied:
        failures.append("%d definitely failed writes applied" % len(failed_applied))
    return failures


def show(what, ops, origin, final, writer_by_value, limit=5):
    """Prints the first few offending operations with the key's final value and its writer."""
    for op in ops[:limit]:
        value, version = final[op.key]
        writer = writer_by_value.get(value)
        print("  %s: %s\n    final %r version %s, written by %s"
              % (what, describe(op, origin), value, version,
                 describe(writer, origin) if writer else "nobody"))


def print_error_details(ops, limit=6):
    """The most frequent reasons of failed and unknown operations."""
    reasons = collections.Counter()
    for op in ops:
        if op.outcome != OK:
            reasons[(op.kind, op.outcome, op.proto, op.detail.split(":")[0][:60])] += 1
    for (kind, outcome, proto, why), n in reasons.most_common(limit):
        print("  %6d %s %s over %s: %s" % (n, kind, outcome, proto, why))


if __name__ == "__main__":
    sys.exit(main())
