#!/usr/bin/env python3
"""The bridges on real processes: PostgreSQL write-through and the legacy API read-through.

One real PostgreSQL (tests/integration/pg.py, initdb in a temporary directory) and one stand-in
for the legacy HTTP API (tests/integration/legacy_server.py, in this process) serve two 3-node
clusters in turn:

  sync   --postgres (sync mode) and --legacy-url: rows written through, the whole cluster losing
         its disks, a PostgreSQL outage and its recovery, and every read-through case (hit, miss,
         errors and timeout, negative cache, coalescing, circuit breaker, hydration racing a
         client write, PostgreSQL consulted before legacy);
  async  --postgres-mode async with a small --postgres-queue-max: writes go on while PostgreSQL
         is down, the backlog shows in /metrics and drains when it is back; past the bound,
         writes are refused and nothing acknowledged is dropped.

Tests of one cluster share it and use key names of their own. Runs as a script: prints each
check, exits 0 if all passed and 1 otherwise.
    python3 tests/integration/test_bridges.py --bin build/bin
"""

import argparse
import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as kc  # noqa: E402
from cluster import CheckFailed, check, check_eq  # noqa: E402,F401
import pg  # noqa: E402
from legacy_server import LegacyServer  # noqa: E402

SYNC_TABLE = "kv_sync"
ASYNC_TABLE = "kv_async"
PG_TIMEOUT_MS = 1000           # below the request deadline (2 s), so PostgreSQL's error shows
LEGACY_TIMEOUT_MS = 500
LEGACY_NEGATIVE_TTL_MS = 2000
LEGACY_BREAKER_FAILURES = 3
LEGACY_BREAKER_OPEN_MS = 1500
ASYNC_QUEUE_MAX = 10
ASYNC_NEW_KEYS = 3             # written while PostgreSQL is down (5 rewrites besides)
RECOVERY_DEADLINE_S = 30.0     # PostgreSQL back: writes work again / the backlog drains
LOSS_KEYS = 30
COALESCE_CONNECTIONS = 50
COALESCE_PIPELINE = 20
COALESCE_DELAY_S = 0.3
RACE_LEGACY_DELAY_S = 0.4      # under --legacy-timeout-ms: the fetch succeeds, after the write
FAST_FAILURE_S = 0.3           # "at once": well under --legacy-timeout-ms
POSTGRES_WORDS = re.compile(r"postgres", re.I)
LEGACY_WORDS = re.compile(r"legacy", re.I)
BREAKER_WORDS = re.compile(r"breaker|circuit", re.I)


# ---- the world the clusters talk to ----


class World:
    """What every test gets: the cluster under test, PostgreSQL, the legacy stand-in, the table."""

    def __init__(self, db, legacy):
        self.db = db
        self.legacy = legacy
        self.c = None
        self.table = None

    def heal(self):
        """PostgreSQL up, the stand-in up and well, every node running."""
        if not self.db.running():
            self.db.start()
        if not self.legacy.running():
            self.legacy.start()
        self.legacy.heal()
        if self.c is not None:
            for node in self.c.nodes:
                if not node.running():
                    self.c.start_node(node, wait_ready=False)
            self.c.wait_all_ready()


def sync_flags(w):
    return ["--postgres", w.db.url, "--postgres-table", SYNC_TABLE,
            "--postgres-timeout-ms", str(PG_TIMEOUT_MS),
            "--legacy-url", w.legacy.url_template,
            "--legacy-timeout-ms", str(LEGACY_TIMEOUT_MS),
            "--legacy-negative-ttl-ms", str(LEGACY_NEGATIVE_TTL_MS),
            "--legacy-breaker-failures", str(LEGACY_BREAKER_FAILURES),
            "--legacy-breaker-open-ms", str(LEGACY_BREAKER_OPEN_MS)]


def async_flags(w):
    return ["--postgres", w.db.url, "--postgres-mode", "async", "--postgres-table", ASYNC_TABLE,
            "--postgres-timeout-ms", str(PG_TIMEOUT_MS),
            "--postgres-queue-max", str(ASYNC_QUEUE_MAX)]


# ---- client helpers ----


def key_path(key, query=""):
    return "/v1/" + urllib.parse.quote(key, safe="") + query


def http_put(node, key, value, timeout_s=10.0):
    """PUT /v1/key: (status, parsed body)."""
    return kc.http_json(node.http_port, "PUT", key_path(key), value, timeout_s=timeout_s)


def http_get(node, key, query="", timeout_s=10.0):
    return kc.http_json(node.http_port, "GET", key_path(key, query), timeout_s=timeout_s)


def http_delete(node, key, timeout_s=10.0):
    return kc.http_json(node.http_port, "DELETE", key_path(key), timeout_s=timeout_s)


def put_ok(node, key, value):
    status, body = http_put(node, key, value)
    check_eq(status, 200, "PUT %s on %s (%s)" % (key, node.name, body))
    return body


def get_value(node, key, query=""):
    """The value, or None on 404; any other status fails the check."""
    status, body = http_get(node, key, query)
    if status == 404:
        return None
    check_eq(status, 200, "GET %s%s on %s (%s)" % (key, query, node.name, body))
    return body["value"]


def resp_call(node, *args, timeout_s=10.0):
    """One RESP command on a fresh connection: the reply (errors as RespError values)."""
    with kc.RespClient(node.resp_port, timeout_s=timeout_s) as r:
        r.send(args)
        return r.read_reply()


def error_text(body):
    return json.dumps(body) if not isinstance(body, str) else body


def check_unavailable_http(status, body, words, what):
    """A bridge failure over HTTP: 503 with a detail naming the service."""
    check(status == 503 and isinstance(body, dict) and body.get("detail"),
          "%s: want 503 with a detail, got %d %s" % (what, status, error_text(body)))
    check(words.search(body.get("detail", "") + " " + str(body.get("error", ""))),
          "%s: the error does not name the service (%s): %s" % (what, words.pattern, error_text(body)))


def check_unavailable_resp(reply, words, what):
    """A bridge failure over RESP: -UNAVAILABLE <detail naming the service>."""
    check(isinstance(reply, kc.RespError) and reply.code == "UNAVAILABLE",
          "%s: want an -UNAVAILABLE error, got %r" % (what, reply))
    check(words.search(str(reply)), "%s: the error does not name the service (%s): %r"
          % (what, words.pattern, str(reply)))


def metrics(node):
    status, _, data = kc.http_call(node.http_port, "GET", "/metrics")
    check_eq(status, 200, "/metrics of %s" % node.name)
    return data.decode("utf-8", "replace")


def metric(text, name):
    """The sum of a metric's samples (all label sets), or None if it is not exported."""
    values = re.findall(r"^%s(?:\{[^}]*\})? ([-+0-9.eE]+|NaN|[+-]Inf)$" % re.escape(name), text, re.M)
    return sum(float(v) for v in values) if values else None


def poll(fn, deadline_s, interval_s=0.1):
    """Calls fn until it returns something true or the deadline passes; returns the last result."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = fn()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval_s)


# ---- SQL helpers ----


def pg_row(w, key, table=None):
    """The row for key: {value, tombstone, version (physical, counter, node)}, or None."""
    rows = w.db.sql("select encode(value, 'hex'), tombstone, version_physical, version_counter, "
                    "version_node from %s where key = %s" % (table or w.table, pg.bytea_literal(key)))
    if not rows:
        return None
    value_hex, tombstone, physical, counter, node = rows[0]
    return {"value": bytes.fromhex(value_hex or "").decode("utf-8", "surrogateescape"),
            "tombstone": tombstone == "t",
            "version": (int(physical), int(counter), int(node))}


def pg_rows(w, keys, table=None):
    return {k: pg_row(w, k, table) for k in keys}


def check_row(w, key, value, what, table=None):
    """The row holds value (None: a tombstone). Returns the row."""
    row = pg_row(w, key, table)
    check(row is not None, "%s: no row for %r in PostgreSQL" % (what, key))
    if value is None:
        check(row["tombstone"] and row["value"] == "", "%s: want a tombstone row for %r, got %r"
              % (what, key, row))
    else:
        check(not row["tombstone"] and row["value"] == value, "%s: want value %r for %r, got %r"
              % (what, value, key, row))
    return row


# ---- write-through ----


def test_write_through_rows(w):
    """Writes and deletes (RESP and HTTP) are rows in PostgreSQL when acknowledged (sync)."""
    c = w.c
    n1, n2, n3 = c.nodes
    cols = dict(w.db.sql("select column_name, data_type from information_schema.columns "
                         "where table_name = %s" % pg.quote_literal(w.table)))
    want_cols = {"key": "bytea", "value": "bytea", "version_physical": "bigint",
                 "version_counter": "bigint", "version_node": "bigint", "tombstone": "boolean",
                 "updated_at": "timestamp with time zone"}
    check_eq(cols, want_cols, "columns of table %s" % w.table)
    pk = w.db.sql("select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
                  "and a.attnum = any(i.indkey) where i.indrelid = %s::regclass and i.indisprimary"
                  % pg.quote_literal(w.table))
    check_eq(pk, [("key",)], "primary key of %s" % w.table)

    check_eq(resp_call(n1, "SET", "wt_resp", "r1"), "OK", "RESP SET wt_resp")
    r1 = check_row(w, "wt_resp", "r1", "after RESP SET (sync: the row is there at the ack)")
    put_ok(n2, "wt_http", "h1")
    h1 = check_row(w, "wt_http", "h1", "after HTTP PUT")
    check_eq(resp_call(n3, "SET", "wt_resp", "r2"), "OK", "RESP SET wt_resp again")
    r2 = check_row(w, "wt_resp", "r2", "after the RESP rewrite")
    check(r2["version"] > r1["version"], "version grew on rewrite: %r then %r" % (r1, r2))
    status, body = kc.http_json(n1.http_port, "POST", key_path("wt_http"), "h2")
    check_eq(status, 200, "HTTP POST wt_http (%s)" % body)
    h2 = check_row(w, "wt_http", "h2", "after the HTTP rewrite")
    check(h2["version"] > h1["version"], "version grew on rewrite: %r then %r" % (h1, h2))
    check_eq(resp_call(n2, "DEL", "wt_resp"), 1, "RESP DEL wt_resp")
    r3 = check_row(w, "wt_resp", None, "after RESP DEL")
    check(r3["version"] > r2["version"], "the tombstone is newer: %r then %r" % (r2, r3))
    status, body = http_delete(n3, "wt_http")
    check_eq(status, 200, "HTTP DELETE wt_http (%s)" % body)
    h3 = check_row(w, "wt_http", None, "after HTTP DELETE")
    check(h3["version"] > h2["version"], "the tombstone is newer: %r then %r" % (h2, h3))
    unicode_value = "h\u00e9llo \u2603 \"quoted\" \\ back"
    put_ok(n1, "wt unicode/\u00e4", unicode_value)
    check_row(w, "wt unicode/\u00e4", unicode_value, "a UTF-8 key and value, byte for byte")
    check_eq(get_value(n2, "wt_resp"), None, "wt_resp reads as deleted")
    check_eq(get_value(n3, "wt unicode/\u00e4"), unicode_value, "the UTF-8 value reads back")


def test_miss_consults_postgres_first(w):
    """A key only PostgreSQL holds is read from it (value or tombstone); legacy is not asked."""
    c = w.c
    legacy = w.legacy
    w.db.sql("insert into %s (key, value, version_physical, version_counter, version_node, "
             "tombstone, updated_at) values (%s, %s, 1000, 0, 1, false, now()), "
             "(%s, ''::bytea, 1000, 0, 2, true, now())"
             % (w.table, pg.bytea_literal("pgonly_value"), pg.bytea_literal("stored in pg"),
                pg.bytea_literal("pgonly_tombstone")))
    legacy.set("pgonly_value", "LEGACY must not win")
    legacy.set("pgonly_tombstone", "LEGACY must not resurrect")
    check_eq(get_value(c.node(1), "pgonly_value"), "stored in pg", "GET of a key only in PostgreSQL")
    check_eq(get_value(c.node(2), "pgonly_tombstone"), None,
             "GET of a key PostgreSQL holds as deleted")
    check_eq(resp_call(c.node(3), "GET", "pgonly_tombstone"), None, "RESP GET of it on n3")
    check_eq((legacy.requests("pgonly_value"), legacy.requests("pgonly_tombstone")), (0, 0),
             "legacy requests for keys PostgreSQL answered")
    # Hydrated: every replica has it now, a quorum of all three reads it.
    check_eq(get_value(c.node(3), "pgonly_value", "?r=3"), "stored in pg", "GET ?r=3 after hydration")


def test_whole_cluster_loss(w):
    """Every node loses its disk at once: each acknowledged write reads back from PostgreSQL."""
    c = w.c
    expected = {}
    keys = ["loss_%d" % i for i in range(LOSS_KEYS)]
    # The stand-in knows every key too: PostgreSQL's answer must win, tombstones included.
    w.legacy.set_many({k: "LEGACY " + k for k in keys})
    for i, key in enumerate(keys):
        node = c.nodes[i % 3]
        if i % 2:
            check_eq(resp_call(node, "SET", key, "first %d" % i), "OK", "RESP SET %s" % key)
        else:
            put_ok(node, key, "first %d" % i)
        expected[key] = "first %d" % i
    for i in range(0, 10):
        key = keys[i]
        if i % 2:
            put_ok(c.nodes[(i + 1) % 3], key, "second %d" % i)
        else:
            check_eq(resp_call(c.nodes[(i + 1) % 3], "SET", key, "second %d" % i), "OK", "rewrite")
        expected[key] = "second %d" % i
    for i in range(20, LOSS_KEYS):
        key = keys[i]
        if i % 2:
            check_eq(resp_call(c.nodes[i % 3], "DEL", key), 1, "RESP DEL %s" % key)
        else:
            status, body = http_delete(c.nodes[i % 3], key)
            check_eq(status, 200, "HTTP DELETE %s (%s)" % (key, body))
        expected[key] = None
    before = pg_rows(w, keys)

    for node in c.nodes:
        check_eq(c.stop_node(node), 0, "exit code of %s after SIGTERM" % node.name)
    for node in c.nodes:
        shutil.rmtree(node.data_dir)
    for node in c.nodes:
        c.start_node(node, wait_ready=False)
    c.wait_all_ready()
    print("      3 nodes restarted on empty data directories")

    wrong = []
    for i, key in enumerate(keys):
        node = c.nodes[(i + 2) % 3]
        if i % 3 == 0:
            got = resp_call(node, "GET", key)
        else:
            status, body = http_get(node, key)
            got = body.get("value") if status == 200 else None if status == 404 else \
                ("status %d" % status, body)
        if got != expected[key]:
            wrong.append((key, expected[key], got))
    check(not wrong, "%d of %d keys read back wrong after the loss (key, want, got): %r"
          % (len(wrong), len(keys), wrong[:5]))
    rows = pg_rows(w, keys)
    check_eq(rows, before, "rows after the reads (hydration wrote nothing older)")
    for key in keys:
        check_row(w, key, expected[key], "row of %s" % key)
    asked = {k: w.legacy.requests(k) for k in keys if w.legacy.requests(k)}
    check(not asked, "the legacy API was asked for keys PostgreSQL holds: %r" % asked)
    # A write after the loss is newer than what PostgreSQL had (the coordinator stamps past it).
    put_ok(c.node(1), "loss_0", "after the loss")
    row = check_row(w, "loss_0", "after the loss", "row of loss_0 rewritten after the loss")
    check(row["version"] > before["loss_0"]["version"],
          "a write after the loss is stamped past the stored version: %r then %r"
          % (before["loss_0"], row))
    check_eq(get_value(c.node(2), "loss_0", "?r=3"), "after the loss", "loss_0 read with r=3")
    put_ok(c.node(3), "loss_25", "revived by a client")
    check_eq(get_value(c.node(1), "loss_25"), "revived by a client", "a deleted key written again")


def test_pg_outage_sync(w):
    """PostgreSQL stops: sync writes fail naming it and none is acknowledged; reads go on;
    it starts again: writes work again without restarting the nodes."""
    c = w.c
    n1, n2, n3 = c.nodes
    put_ok(n1, "outage_stable", "before")
    put_ok(n2, "outage_rewritten", "before")
    put_ok(n3, "outage_deleted", "before")
    w.db.stop()
    acked, refusals = {}, []
    try:
        for i in range(4):
            key = "outage_http_%d" % i
            started = time.monotonic()
            status, body = http_put(c.nodes[i % 3], key, "during")
            if status == 200:
                acked[key] = "during"
                continue
            check_unavailable_http(status, body, POSTGRES_WORDS, "PUT %s while PostgreSQL is down" % key)
            refusals.append((time.monotonic() - started, body.get("detail")))
        for i in range(4):
            key = "outage_resp_%d" % i
            started = time.monotonic()
            reply = resp_call(c.nodes[i % 3], "SET", key, "during")
            if reply == "OK":
                acked[key] = "during"
                continue
            check_unavailable_resp(reply, POSTGRES_WORDS, "SET %s while PostgreSQL is down" % key)
            refusals.append((time.monotonic() - started, str(reply)))
        status, body = http_put(n3, "outage_rewritten", "during")
        if status == 200:
            acked["outage_rewritten"] = "during"
        else:
            check_unavailable_http(status, body, POSTGRES_WORDS, "rewrite while PostgreSQL is down")
            refusals.append((0.0, body.get("detail")))
        reply = resp_call(n1, "DEL", "outage_deleted")
        if isinstance(reply, kc.RespError):
            check_unavailable_resp(reply, POSTGRES_WORDS, "DEL while PostgreSQL is down")
            refusals.append((0.0, str(reply)))
        else:
            acked["outage_deleted"] = None
        print("      writes while PostgreSQL is down: %d refused (first after %.2f s: %s), "
              "%d acknowledged" % (len(refusals), refusals[0][0] if refusals else 0,
                                   refusals[0][1] if refusals else "-", len(acked)))
        for node in c.nodes:
            check_eq(get_value(node, "outage_stable"), "before", "GET of an existing key on %s while "
                     "PostgreSQL is down" % node.name)
        check_eq(resp_call(n2, "GET", "outage_stable"), "before", "RESP GET while PostgreSQL is down")
        status, body = http_get(n1, "outage_never_written")
        check(status != 404, "GET of a key the cluster does not hold, while PostgreSQL is down: a "
              "false not-found (PostgreSQL may hold it): %d %s" % (status, error_text(body)))
        check_unavailable_http(status, body, POSTGRES_WORDS, "GET of an unknown key while PostgreSQL is down")
    finally:
        w.db.start()
    restarted = time.monotonic()

    def write_works(node, key):
        try:
            return http_put(node, key, "after", timeout_s=10)[0] == 200
        except OSError:
            return False
    check(poll(lambda: write_works(n1, "outage_after"), RECOVERY_DEADLINE_S, 0.2),
          "writes still fail %.0f s after PostgreSQL came back" % RECOVERY_DEADLINE_S)
    print("      writes work again %.1f s after PostgreSQL came back" % (time.monotonic() - restarted))
    check_row(w, "outage_after", "after", "the first write after the outage")
    for node in c.nodes:
        key = "outage_after_" + node.name
        check(poll(lambda: write_works(node, key), 10, 0.2), "writes through %s after the outage" % node.name)
        check_row(w, key, "after", "a write through %s after the outage" % node.name)
    missing = {k: v for k, v in acked.items() if pg_row(w, k) is None}
    check(not missing, "writes acknowledged during the outage and not in PostgreSQL: %r" % missing)
    check(not acked, "writes were acknowledged while PostgreSQL was down (sync mode): %r" % acked)
    check_eq(get_value(n3, "outage_stable"), "before", "outage_stable after the outage")


# ---- read-through ----


def test_legacy_hit(w):
    """A key only the legacy API has is served, then stays in the cluster without it."""
    c = w.c
    legacy = w.legacy
    key = "legacy hit/\u00e4?&%"
    legacy.set(key, "from legacy \u2603")
    check_eq(get_value(c.node(1), key), "from legacy \u2603", "GET of a key only legacy has")
    check_eq(legacy.requests(key), 1, "legacy requests for the key (percent-encoded, decoded)")
    legacy.set("legacy_hit_resp", "resp legacy")
    check_eq(resp_call(c.node(2), "GET", "legacy_hit_resp"), "resp legacy", "RESP GET of a legacy key")
    legacy.stop()
    try:
        for node in c.nodes:
            check_eq(get_value(node, key), "from legacy \u2603", "GET on %s with legacy down" % node.name)
        check_eq(get_value(c.node(3), key, "?r=3"), "from legacy \u2603", "GET ?r=3 with legacy down")
        check_eq(resp_call(c.node(3), "GET", "legacy_hit_resp"), "resp legacy",
                 "RESP GET on n3 with legacy down")
    finally:
        legacy.start()
    check_eq(legacy.requests(key), 1, "legacy requests for the key after the reads")


def test_legacy_miss(w):
    """A key neither the cluster, PostgreSQL nor legacy has is not found (HTTP 404, RESP nil)."""
    c = w.c
    status, body = http_get(c.node(1), "legacy_miss_http")
    check_eq((status, body.get("error")), (404, "not found"), "HTTP GET of an unknown key")
    check_eq(resp_call(c.node(2), "GET", "legacy_miss_resp"), None, "RESP GET of an unknown key")
    check_eq(resp_call(c.node(3), "EXISTS", "legacy_miss_exists"), 0, "RESP EXISTS of an unknown key")
    check_eq((w.legacy.requests("legacy_miss_http"), w.legacy.requests("legacy_miss_resp")), (1, 1),
             "the legacy API was asked once for each")


def test_legacy_errors(w):
    """Timeout, 5xx, a dropped connection, a body that is not JSON: a clear error, never a
    false not-found; once the API is well again the key is served."""
    c = w.c
    legacy = w.legacy
    n2 = c.node(2)
    for mode in ("timeout", "500", "close", "garbage"):
        key = "legacy_err_" + mode
        legacy.set(key, "value " + mode)
        if mode == "timeout":
            legacy.delay(LEGACY_TIMEOUT_MS / 1000.0 * 3, key=key)
        else:
            legacy.fail(mode, key=key)
        started = time.monotonic()
        status, body = http_get(n2, key)
        took = time.monotonic() - started
        check_unavailable_http(status, body, LEGACY_WORDS, "GET with legacy failing (%s)" % mode)
        if mode == "timeout":
            check(took >= LEGACY_TIMEOUT_MS / 1000.0 * 0.9 and took < 2.0,
                  "the timeout error came after %.2f s (--legacy-timeout-ms %d)" % (took, LEGACY_TIMEOUT_MS))
            print("      timeout: %.2f s, %s" % (took, body.get("detail")))
            reply = resp_call(n2, "GET", key)
            check_unavailable_resp(reply, LEGACY_WORDS, "RESP GET with legacy timing out")
        legacy.delay(0, key=key)
        legacy.fail(None, key=key)
        # A failure is not remembered as a not-found: the next read asks again and gets it.
        check_eq(get_value(n2, key), "value " + mode, "GET after legacy recovered (%s)" % mode)


def test_legacy_negative_cache(w):
    """A 404 is remembered for --legacy-negative-ttl-ms (no new request), and a write of the
    key is visible at once."""
    c = w.c
    legacy = w.legacy
    n1 = c.node(1)
    key = "neg_cached"
    started = time.monotonic()
    check_eq(get_value(n1, key), None, "first GET of a key legacy does not have")
    for _ in range(3):
        check_eq(get_value(n1, key), None, "GET again within the TTL")
        check_eq(resp_call(n1, "GET", key), None, "RESP GET again within the TTL")
    within = time.monotonic() - started
    check(within < LEGACY_NEGATIVE_TTL_MS / 1000.0, "the reads took %.2f s, longer than the TTL" % within)
    check_eq(legacy.requests(key), 1, "legacy requests within the TTL")
    put_ok(c.node(2), key, "written")
    check_eq(get_value(n1, key), "written", "GET on n1 right after a write through n2")
    check_eq(resp_call(n1, "GET", key), "written", "RESP GET on n1 right after the write")
    # The same through the node that remembers the miss.
    check_eq(get_value(n1, "neg_cached_here"), None, "GET of another key legacy does not have")
    put_ok(n1, "neg_cached_here", "written here")
    check_eq(get_value(n1, "neg_cached_here"), "written here", "GET right after a write through n1")
    # After the TTL the API is asked again (and a value that appeared meanwhile is found).
    key2 = "neg_expires"
    check_eq(get_value(n1, key2), None, "GET of another unknown key")
    legacy.set(key2, "appeared later")
    check_eq(get_value(n1, key2), None, "GET within the TTL (remembered not-found)")
    check_eq(legacy.requests(key2), 1, "legacy requests within the TTL")
    time.sleep(LEGACY_NEGATIVE_TTL_MS / 1000.0 + 0.5)
    check_eq(get_value(n1, key2), "appeared later", "GET after the TTL")
    check_eq(legacy.requests(key2), 2, "legacy requests after the TTL")


def _burst(port, key, count, barrier, out, index):
    try:
        with kc.RespClient(port, timeout_s=20) as r:
            barrier.wait(timeout=20)
            out[index] = r.pipeline([("GET", key)] * count)
    except Exception as e:  # noqa: BLE001 - recorded and reported by the test
        out[index] = e


def test_legacy_coalescing(w):
    """1,000 concurrent GETs of one missing key on one node make one legacy request."""
    c = w.c
    legacy = w.legacy
    key = "coalesced_key"
    legacy.set(key, "one answer")
    legacy.delay(COALESCE_DELAY_S, key=key)
    n2 = c.node(2)
    out = [None] * COALESCE_CONNECTIONS
    barrier = threading.Barrier(COALESCE_CONNECTIONS)
    threads = [threading.Thread(target=_burst, args=(n2.resp_port, key, COALESCE_PIPELINE, barrier, out, i))
               for i in range(COALESCE_CONNECTIONS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    failures = [o for o in out if isinstance(o, Exception)]
    check(not failures, "%d connections failed, first: %r" % (len(failures), failures[:1]))
    replies = [r for o in out for r in o]
    wrong = [r for r in replies if r != "one answer"]
    check_eq(len(replies), COALESCE_CONNECTIONS * COALESCE_PIPELINE, "replies")
    check(not wrong, "%d of %d GETs did not return the value, first: %r" % (len(wrong), len(replies), wrong[:3]))
    print("      %d GETs in %.2f s, legacy requests: %d" % (len(replies), took, legacy.requests(key)))
    check_eq(legacy.requests(key), 1, "legacy requests for %d concurrent GETs" % len(replies))


def test_hydration_races_write(w):
    """A client write that lands while a legacy fetch of the key is under way wins, on every
    replica and in PostgreSQL, whatever the fetch brings back."""
    c = w.c
    legacy = w.legacy
    key = "race_key"
    legacy.set(key, "LEGACY value")
    legacy.delay(RACE_LEGACY_DELAY_S, key=key)  # answered, but late
    result = {}

    def reader():
        try:
            result["get"] = http_get(c.node(1), key, timeout_s=10)
        except Exception as e:  # noqa: BLE001
            result["get"] = e
    t = threading.Thread(target=reader)
    t.start()
    check(poll(lambda: legacy.requests(key) >= 1, 2.0, 0.005), "the read did not reach the legacy API")
    asked = time.monotonic()
    put_ok(c.node(2), key, "client value")
    written = time.monotonic() - asked
    t.join()
    status, body = result["get"] if isinstance(result["get"], tuple) else (None, result["get"])
    print("      the write was acknowledged %.3f s after the fetch began (legacy answers after %.1f s); "
          "the racing GET answered %s %s" % (written, RACE_LEGACY_DELAY_S, status, error_text(body)))
    check(written < RACE_LEGACY_DELAY_S, "the write took %.2f s: it did not race the fetch" % written)
    check(status == 200 and body.get("value") in ("LEGACY value", "client value"),
          "the GET concurrent with the write: %s %r" % (status, body))
    time.sleep(0.3)  # let the hydration's writes reach the replicas, if any were sent
    for node in c.nodes:
        check_eq(get_value(node, key, "?r=1"), "client value", "GET ?r=1 on %s (its own copy)" % node.name)
        check_eq(get_value(node, key, "?r=3"), "client value", "GET ?r=3 on %s" % node.name)
        check_eq(resp_call(node, "GET", key), "client value", "RESP GET on %s" % node.name)
    check_row(w, key, "client value", "row of the raced key")


def test_legacy_breaker(w):
    """After --legacy-breaker-failures failures in a row, reads of unknown keys fail at once and
    the API is left alone; after --legacy-breaker-open-ms one probe closes it again."""
    c = w.c
    legacy = w.legacy
    n3 = c.node(3)
    put_ok(n3, "breaker_known", "known")
    legacy.fail("500")
    for i in range(LEGACY_BREAKER_FAILURES):
        status, body = http_get(n3, "breaker_fail_%d" % i)
        check_unavailable_http(status, body, LEGACY_WORDS, "GET %d with legacy answering 500" % i)
    seen = legacy.total()
    opened = time.monotonic()
    text = metrics(n3)
    check_eq(metric(text, "kv_legacy_breaker_open"), 1.0, "kv_legacy_breaker_open on n3")
    for i in range(5):
        key = "breaker_open_%d" % i
        started = time.monotonic()
        if i % 2:
            reply = resp_call(n3, "GET", key)
            took = time.monotonic() - started
            check_unavailable_resp(reply, BREAKER_WORDS, "RESP GET with the breaker open")
        else:
            status, body = http_get(n3, key)
            took = time.monotonic() - started
            check_unavailable_http(status, body, BREAKER_WORDS, "GET with the breaker open")
            if i == 0:
                print("      breaker open: %s" % body.get("detail"))
        check(took < FAST_FAILURE_S, "a read with the breaker open took %.2f s" % took)
    check_eq(get_value(n3, "breaker_known"), "known", "a key the cluster holds, breaker open")
    check_eq(legacy.total(), seen, "legacy requests while the breaker is open")
    legacy.fail(None)
    legacy.set("breaker_probe", "served again")

    def probe():
        status, body = http_get(n3, "breaker_probe")
        return body.get("value") if status == 200 else None
    check_eq(poll(probe, LEGACY_BREAKER_OPEN_MS / 1000.0 + 10, 0.1), "served again",
             "a read after the breaker's open time")
    closed_after = time.monotonic() - opened
    print("      served again %.2f s after the breaker opened (--legacy-breaker-open-ms %d)"
          % (closed_after, LEGACY_BREAKER_OPEN_MS))
    check(closed_after >= LEGACY_BREAKER_OPEN_MS / 1000.0 * 0.8,
          "the breaker let a request through after %.2f s" % closed_after)
    check_eq(metric(metrics(n3), "kv_legacy_breaker_open"), 0.0, "kv_legacy_breaker_open after recovery")
    check_eq(get_value(n3, "breaker_after_unknown"), None, "an unknown key after recovery: not found")
    hydrations = metric(metrics(n3), "kv_hydrations_total")
    check(hydrations is not None and hydrations >= 1, "kv_hydrations_total on n3: %r" % hydrations)


# ---- async write-behind ----


def test_async_outage_backlog(w):
    """Async: writes go on while PostgreSQL is down, the backlog shows in /metrics, past
    --postgres-queue-max writes are refused; when it is back every acknowledged write arrives."""
    c = w.c
    n1 = c.node(1)
    pre = ["async_pre_%d" % i for i in range(5)]
    for key in pre:
        put_ok(n1, key, "pre")
    check(poll(lambda: all(pg_row(w, k) for k in pre), 10), "async rows did not arrive while "
          "PostgreSQL was up: %r" % pg_rows(w, pre))
    text = metrics(n1)
    for name in ("kv_pg_queue_keys", "kv_pg_queue_lag_seconds"):
        check(metric(text, name) is not None, "/metrics lacks %s" % name)
    check(poll(lambda: metric(metrics(n1), "kv_pg_queue_keys") == 0, 10), "the queue did not empty")

    w.db.stop()
    acked, refused, problems = {}, [], []
    try:
        for key in pre:  # rewrites of keys the cluster holds
            status, body = http_put(n1, key, "during")
            (acked.__setitem__(key, "during") if status == 200 else problems.append((key, status, body)))
        new_started = time.monotonic()
        for i in range(ASYNC_NEW_KEYS):  # keys the cluster does not hold yet
            key = "async_new_%d" % i
            if i % 2:
                reply = resp_call(n1, "SET", key, "new %d" % i)
                ok, detail = reply == "OK", reply
            else:
                status, body = http_put(n1, key, "new %d" % i)
                ok, detail = status == 200, (status, body)
            (acked.__setitem__(key, "new %d" % i) if ok else problems.append((key, detail)))
        check(not problems, "writes refused while PostgreSQL is down in async mode: %r" % problems[:4])
        print("      %d writes of new keys with PostgreSQL down took %.2f s"
              % (ASYNC_NEW_KEYS, time.monotonic() - new_started))
        status, body = http_delete(n1, "async_new_0")
        check_eq(status, 200, "DELETE while PostgreSQL is down (%s)" % body)
        acked["async_new_0"] = None
        queued = len(acked)
        time.sleep(1.0)
        text = metrics(n1)
        keys_q, lag = metric(text, "kv_pg_queue_keys"), metric(text, "kv_pg_queue_lag_seconds")
        print("      backlog: kv_pg_queue_keys %s, kv_pg_queue_lag_seconds %s" % (keys_q, lag))
        check_eq(keys_q, float(queued), "kv_pg_queue_keys on n1 with PostgreSQL down")
        check(lag is not None and lag >= 1.0, "kv_pg_queue_lag_seconds %r: want >= 1" % lag)
        # Up to the bound more keys are taken, past it they are refused: nothing is dropped.
        for i in range(ASYNC_QUEUE_MAX - queued + 4):
            key = "async_over_%d" % i
            if i % 2:
                reply = resp_call(n1, "SET", key, "over")
                if reply == "OK":
                    acked[key] = "over"
                else:
                    check(isinstance(reply, kc.RespError) and reply.code == "BUSY",
                          "SET past the queue bound: want -BUSY, got %r" % reply)
                    refused.append((key, str(reply)))
            else:
                status, body = http_put(n1, key, "over")
                if status == 200:
                    acked[key] = "over"
                else:
                    check(status == 503 and body.get("error") == "overloaded",
                          "PUT past the queue bound: want 503 overloaded, got %d %s" % (status, body))
                    refused.append((key, body.get("detail")))
        print("      past the bound: %d taken, %d refused (%s)"
              % (len(acked) - queued, len(refused), refused[0][1] if refused else ""))
        check_eq(len(acked), ASYNC_QUEUE_MAX, "keys taken with --postgres-queue-max %d" % ASYNC_QUEUE_MAX)
        check_eq(metric(metrics(n1), "kv_pg_queue_keys"), float(ASYNC_QUEUE_MAX), "kv_pg_queue_keys when full")
        # A key already queued is coalesced: rewriting it takes no room.
        status, body = http_put(n1, "async_pre_1", "rewritten while full")
        check_eq(status, 200, "rewrite of a queued key with the queue full (%s)" % body)
        acked["async_pre_1"] = "rewritten while full"
    finally:
        w.db.start()
    restarted = time.monotonic()

    def drained():
        return metric(metrics(n1), "kv_pg_queue_keys") == 0 and \
            all((pg_row(w, k) or {}).get("tombstone") if v is None else
                (pg_row(w, k) or {}).get("value") == v for k, v in acked.items())
    check(poll(drained, RECOVERY_DEADLINE_S, 0.3),
          "the backlog did not reach PostgreSQL within %.0f s: queue %s, rows %r"
          % (RECOVERY_DEADLINE_S, metric(metrics(n1), "kv_pg_queue_keys"),
             {k: (v, pg_row(w, k)) for k, v in list(acked.items())[:5]}))
    print("      %d acknowledged keys in PostgreSQL %.1f s after it came back"
          % (len(acked), time.monotonic() - restarted))
    for key, value in acked.items():
        check_row(w, key, value, "row of %s after the backlog drained" % key)
    check_eq(metric(metrics(n1), "kv_pg_queue_lag_seconds"), 0.0, "kv_pg_queue_lag_seconds when empty")
    for key, _ in refused:
        check(pg_row(w, key) is None, "a refused write has a row: %s %r" % (key, pg_row(w, key)))
        check_eq(get_value(c.node(2), key), None, "GET of a refused write's key")
    check_eq(get_value(c.node(3), "async_pre_1"), "rewritten while full", "the coalesced rewrite")


# ---- running ----

GROUPS = [
    ("sync", SYNC_TABLE, sync_flags, [
        test_write_through_rows,
        test_miss_consults_postgres_first,
        test_legacy_hit,
        test_legacy_miss,
        test_legacy_errors,
        test_legacy_negative_cache,
        test_legacy_coalescing,
        test_hydration_races_write,
        test_legacy_breaker,
        test_whole_cluster_loss,
        test_pg_outage_sync,
    ]),
    ("async", ASYNC_TABLE, async_flags, [
        test_async_outage_backlog,
    ]),
]




def print_logs(w):
    if w.c is not None:
        for node in w.c.nodes:
            print("---- log of %s (tail) ----\n%s" % (node.name, node.log_tail(3000)))
    print("---- PostgreSQL log (tail) ----\n%s" % w.db.log_tail(2000))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="build/bin", help="directory holding kvnode")
    parser.add_argument("--keep-data", action="store_true", help="keep data dirs and logs")
    parser.add_argument("-k", "--only", help="run the tests whose name contains this")
    args = parser.parse_args()
    if not pg.available():
        print("PostgreSQL server binaries are not installed (scripts/deps.sh installs them)")
        return 1
    started = time.monotonic()
    failed, ran = [], 0
    with pg.Postgres() as db, LegacyServer() as legacy:
        print("postgres: %s; legacy stand-in: %s" % (db.url, legacy.url_template), flush=True)
        w = World(db, legacy)
        for name, table, flags, tests in GROUPS:
            tests = [t for t in tests if not args.only or args.only in t.__name__]
            if not tests:
                continue
            w.table = table
            try:
                cluster = kc.Cluster(args.bin, extra_args=flags(w), keep_data=args.keep_data)
                w.c = cluster.__enter__()
            except kc.ClusterError as e:
                print("cluster %s did not start: %s" % (name, e), flush=True)
                failed += [t.__name__ for t in tests]
                ran += len(tests)
                w.c = None
                continue
            group_failed = False
            try:
                print("cluster %s: %s in %s" % (name, w.c.nodes, w.c.workdir), flush=True)
                for test in tests:
                    ran += 1
                    if not kc.run_test(w, test):
                        failed.append(test.__name__)
                        group_failed = True
                    try:
                        w.heal()  # a test may leave PostgreSQL, the stand-in or a node down
                    except (kc.ClusterError, pg.PgError) as e:
                        print("could not heal after %s: %s" % (test.__name__, e), flush=True)
                        group_failed = True
                        rest = tests[tests.index(test) + 1:]
                        failed += [t.__name__ for t in rest]
                        ran += len(rest)
                        break
                if group_failed:
                    print_logs(w)
            finally:
                cluster.close()  # the logs of a failure are printed; --keep-data keeps them too
                w.c = None
    print("%d passed, %d failed%s (%.0f s)" % (ran - len(failed), len(failed),
                                                ": " + ", ".join(failed) if failed else "",
                                                time.monotonic() - started))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
