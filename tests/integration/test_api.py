#!/usr/bin/env python3
"""The node's client interfaces on a real 3-node cluster over loopback.

HTTP: every call of the seed project's curl examples, sent as curl sends it (and through the
real curl binary when it is installed), status routes, per-request quorums and bad input.
RESP: the commands redis-cli users rely on, through the real redis-cli binary, and pipelining.
Durability: data survives a SIGTERM restart, and every write acknowledged with w=3 survives a
SIGKILL that lands right after it.

Runs as a script: prints each check, exits 0 if all passed and 1 otherwise.
    python3 tests/integration/test_api.py --bin build/bin
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as kc  # noqa: E402
from cluster import CheckFailed, check, check_eq  # noqa: E402,F401

SEED_KEY = "my_key"
SEED_VALUE = "my_value"
SEED_BODY = '{"value": "my_value"}'
JSON_HEADERS = {"Content-Type": "application/json"}
PIPELINE_COMMANDS = 1000
RESTART_KEYS = 50
KILL_BATCH_WRITES = 200
KILL_WRITER_THREADS = 4


# ---- helpers ----


def curl_call(node, method, key_path, body=None):
    """A seed-project curl command, sent with curl's own header set."""
    headers = JSON_HEADERS if body is not None else None
    return kc.http_call(node.http_port, method, key_path, body, headers, curl_like=True)


def json_body(data, what):
    try:
        return json.loads(data)
    except ValueError:
        raise CheckFailed("%s: body is not JSON: %r" % (what, data[:200]))


def put_value(node, key, value, w=None):
    """PUT /v1/key[?w=] and require 200. Returns the version the node reports."""
    path = "/v1/%s" % key + ("?w=%d" % w if w else "")
    status, body = kc.http_json(node.http_port, "PUT", path, value)
    check_eq(status, 200, "PUT %s on %s (%s)" % (path, node.name, body))
    return body["version"]


def get_value(node, key, r=None, timeout_s=5.0):
    """GET /v1/key[?r=]: the value, or None on 404; any other status fails the check."""
    path = "/v1/%s" % key + ("?r=%d" % r if r else "")
    status, body = kc.http_json(node.http_port, "GET", path, timeout_s=timeout_s)
    if status == 404:
        return None
    check_eq(status, 200, "GET %s on %s (%s)" % (path, node.name, body))
    return body["value"]


def cli(node, *args, stdin=None):
    """redis-cli against the node's RESP port; a non-zero exit or stderr text fails the check."""
    code, out, err = kc.redis_cli(node.resp_port, *args, stdin=stdin)
    check(code == 0, "redis-cli %s exited %d: %s%s" % (" ".join(map(str, args)), code, out, err))
    return out


def cli_lines(node, *args):
    return cli(node, *args).rstrip("\n").split("\n")


def stop_others(c, node):
    for other in c.others(node):
        check_eq(c.stop_node(other), 0, "exit code of %s after SIGTERM" % other.name)


def start_others(c, node):
    for other in c.others(node):
        c.start_node(other, wait_ready=False)
    c.wait_all_ready()


# ---- HTTP ----


def test_seed_post_get_delete(c):
    """The seed project's curl examples: POST, GET, DELETE, then GET answers 404."""
    n1 = c.node(1)
    status, headers, data = curl_call(n1, "POST", "/v1/" + SEED_KEY, SEED_BODY)
    check_eq(status, 200, "POST status")
    check(headers.get("content-type", "").startswith("application/json"), "POST content type")
    body = json_body(data, "POST")
    check_eq(body.get("key"), SEED_KEY, "POST reply key")
    check("version" in body, "POST reply names the version written: %r" % body)

    status, _, data = curl_call(n1, "GET", "/v1/" + SEED_KEY)
    check_eq(status, 200, "GET status")
    check_eq(json_body(data, "GET").get("value"), SEED_VALUE, "GET value")

    status, _, data = curl_call(n1, "DELETE", "/v1/" + SEED_KEY)
    check_eq(status, 200, "DELETE status")
    check_eq(json_body(data, "DELETE").get("deleted"), True, "DELETE reply")

    status, _, data = curl_call(n1, "GET", "/v1/" + SEED_KEY)
    check_eq(status, 404, "GET after DELETE")
    check_eq(json_body(data, "GET 404").get("error"), "not found", "404 body")


def test_seed_with_real_curl(c):
    """The same examples through the curl binary itself, byte for byte as a user types them."""
    if shutil.which("curl") is None:
        print("      (curl not installed: skipped)")
        return
    base = "127.0.0.1:%d/v1/%s" % (c.node(2).http_port, "curl_key")

    def curl(*args):
        done = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}"] + list(args),
                              capture_output=True, timeout=20)
        check(done.returncode == 0, "curl %s failed: %s" % (args, done.stderr))
        body, _, code = done.stdout.decode().rpartition("\n")
        return int(code), body

    code, body = curl("-X", "POST", base, "-H", "Content-Type: application/json", "-d", SEED_BODY)
    check_eq(code, 200, "curl POST (%s)" % body)
    code, body = curl(base)
    check_eq((code, json.loads(body)["value"]), (200, SEED_VALUE), "curl GET")
    code, body = curl("-X", "DELETE", base)
    check_eq(code, 200, "curl DELETE (%s)" % body)
    code, body = curl(base)
    check_eq(code, 404, "curl GET after DELETE (%s)" % body)


def test_put(c):
    """PUT writes like POST, and a second PUT replaces the value."""
    n2 = c.node(2)
    for value in ("first", "second"):
        status, _, _ = curl_call(n2, "PUT", "/v1/put_key", json.dumps({"value": value}))
        check_eq(status, 200, "PUT %s" % value)
    check_eq(get_value(n2, "put_key"), "second", "value after two PUTs")


def test_health_and_ready(c):
    """/health and /ready answer 200 with JSON on every node of a healthy cluster."""
    for node in c.nodes:
        status, _, data = kc.http_call(node.http_port, "GET", "/health")
        check_eq((status, json_body(data, "/health")), (200, {"status": "ok"}), "%s /health" % node.name)
        status, _, data = kc.http_call(node.http_port, "GET", "/ready")
        check_eq((status, json_body(data, "/ready")), (200, {"ready": True}), "%s /ready" % node.name)


def test_metrics(c):
    """/metrics is Prometheus text with request counters, latency histograms, fsync and links."""
    n1 = c.node(1)
    put_value(n1, "metrics_key", "v")
    get_value(n1, "metrics_key")
    status, headers, data = kc.http_call(n1.http_port, "GET", "/metrics")
    check_eq(status, 200, "/metrics status")
    check(headers.get("content-type", "").startswith("text/plain"), "/metrics content type")
    text = data.decode()
    for needle in ("# TYPE kv_requests_total counter",
                   'kv_requests_total{op="put",result="ok"}',
                   'kv_requests_total{op="get",result="ok"}',
                   "# TYPE kv_request_duration_seconds histogram",
                   'kv_request_duration_seconds_bucket{op="put",le="+Inf"}',
                   'kv_request_duration_seconds_count{op="get"}',
                   "# TYPE kv_wal_fsync_duration_seconds histogram",
                   "kv_wal_fsync_duration_seconds_count",
                   "# TYPE kv_peer_link_up gauge"):
        check(needle in text, "/metrics lacks %r" % needle)
    links = dict(re.findall(r'^kv_peer_link_up\{peer="(n\d+)"\} (\d)$', text, re.M))
    check_eq(links, {"n2": "1", "n3": "1"}, "kv_peer_link_up of n1")
    fsyncs = re.search(r"^kv_wal_fsync_duration_seconds_count (\d+)", text, re.M)
    check(fsyncs and int(fsyncs.group(1)) > 0, "a write was fsynced: %r" % (fsyncs and fsyncs.group(0)))


def test_cluster_json(c):
    """/cluster is JSON listing the three members, this node as self and the others connected."""
    for node in c.nodes:
        status, _, data = kc.http_call(node.http_port, "GET", "/cluster")
        check_eq(status, 200, "/cluster status on %s" % node.name)
        doc = json_body(data, "/cluster")
        check_eq(doc.get("self"), node.name, "/cluster self")
        members = {m["name"]: m for m in doc.get("members", [])}
        check_eq(sorted(members), ["n1", "n2", "n3"], "/cluster members on %s" % node.name)
        for name, m in members.items():
            want = "self" if name == node.name else "connected"
            check_eq(m.get("link"), want, "link of %s seen from %s" % (name, node.name))


def test_quorum_parameters(c):
    """?w=3 and ?r=3 work; an impossible quorum is a 400 naming the quorum, and writes nothing."""
    n1, n3 = c.node(1), c.node(3)
    put_value(n1, "quorum_key", "all three", w=3)
    check_eq(get_value(n3, "quorum_key", r=3), "all three", "GET ?r=3")
    status, body = kc.http_json(n1.http_port, "PUT", "/v1/quorum_key?w=9", "nine")
    check_eq(status, 400, "PUT ?w=9 status (%s)" % body)
    text = json.dumps(body)
    check("quorum" in text and "9" in text, "the ?w=9 error names the quorum: %s" % text)
    check_eq(get_value(n1, "quorum_key", r=3), "all three", "value after the refused ?w=9")
    for path in ("/v1/quorum_key?r=9", "/v1/quorum_key?r=0", "/v1/quorum_key?r=x",
                 "/v1/quorum_key?w=3"):
        status, body = kc.http_json(n1.http_port, "GET", path)
        check(status == 400 and "error" in body, "GET %s: want 400 with an error, got %d %s"
              % (path, status, body))


def test_bad_json(c):
    """Bodies that are not {"value": "<string>"} are a 400 with a JSON error; nothing is written."""
    n2 = c.node(2)
    for body in ('{"value": "unterminated', "not json", '{"val": "x"}', '{"value": 3}',
                 '["value"]', ""):
        status, _, data = kc.http_call(n2.http_port, "POST", "/v1/bad_json_key", body, JSON_HEADERS)
        check_eq(status, 400, "POST body %r" % body)
        check("error" in json_body(data, "400 body"), "400 for %r has an error field" % body)
    check_eq(get_value(n2, "bad_json_key"), None, "key after refused bodies")


def test_http_across_nodes(c):
    """A value written through one node is read through each of the others."""
    for writer in c.nodes:
        key = "across_http_%s" % writer.name
        put_value(writer, key, "from " + writer.name)
        for reader in c.others(writer):
            check_eq(get_value(reader, key), "from " + writer.name, "%s read by %s" % (key, reader.name))


# ---- RESP through redis-cli ----


def test_cli_basics(c):
    """redis-cli PING, ECHO, SET, GET, DEL (an integer), EXISTS, MSET and MGET."""
    n1 = c.node(1)
    check_eq(cli_lines(n1, "PING"), ["PONG"], "PING")
    check_eq(cli_lines(n1, "ECHO", "hello world"), ["hello world"], "ECHO")
    check_eq(cli_lines(n1, "SET", "cli_a", "alpha"), ["OK"], "SET")
    check_eq(cli_lines(n1, "GET", "cli_a"), ["alpha"], "GET")
    check_eq(cli_lines(n1, "EXISTS", "cli_a", "cli_none"), ["1"], "EXISTS")
    check_eq(cli_lines(n1, "DEL", "cli_a", "cli_none"), ["1"], "DEL")
    check_eq(cli_lines(n1, "EXISTS", "cli_a"), ["0"], "EXISTS after DEL")
    check_eq(cli(n1, "GET", "cli_a"), "\n", "GET after DEL (nil)")
    check_eq(cli_lines(n1, "MSET", "cli_m1", "one", "cli_m2", "two"), ["OK"], "MSET")
    check_eq(cli_lines(n1, "MGET", "cli_m1", "cli_missing", "cli_m2"), ["one", "", "two"], "MGET")
    with kc.RespClient(n1.resp_port) as r:
        check_eq(r.call("DEL", "cli_m1", "cli_m2", "cli_missing"), 2, "DEL reply as a RESP integer")
        check_eq(r.call("GET", "cli_m1"), None, "GET after DEL is a nil bulk")
        check_eq(r.call("MGET", "cli_m1", "cli_m2"), [None, None], "MGET of deleted keys")


def test_cli_set_nx_xx(c):
    """SET NX writes only an absent key and SET XX only a present one (nil when they do not)."""
    n2 = c.node(2)
    check_eq(cli(n2, "SET", "cli_nx", "first", "NX"), "OK\n", "SET NX on an absent key")
    check_eq(cli(n2, "SET", "cli_nx", "second", "NX"), "\n", "SET NX on a present key (nil)")
    check_eq(cli_lines(n2, "GET", "cli_nx"), ["first"], "value after the refused NX")
    check_eq(cli(n2, "SET", "cli_xx", "first", "XX"), "\n", "SET XX on an absent key (nil)")
    check_eq(cli(n2, "EXISTS", "cli_xx"), "0\n", "key after the refused XX")
    check_eq(cli(n2, "SET", "cli_nx", "third", "XX"), "OK\n", "SET XX on a present key")
    check_eq(cli_lines(n2, "GET", "cli_nx"), ["third"], "value after XX")


def test_cli_info_and_unknown(c):
    """INFO describes the node; an unknown command gets Redis's error and the connection lives on."""
    n3 = c.node(3)
    info = cli(n3, "INFO")
    for needle in ("redis_version:", "kv_node:n3", "members:n1,n2,n3", "connected_peers:2"):
        check(needle in info, "INFO lacks %r:\n%s" % (needle, info))
    out = cli(n3, "NOSUCHCOMMAND", "arg")
    check(out.startswith("ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'arg'"),
          "unknown command reply: %r" % out)
    with kc.RespClient(n3.resp_port) as r:
        replies = r.pipeline([("NOSUCHCOMMAND",), ("PING",)])
        check(isinstance(replies[0], kc.RespError) and replies[0].code == "ERR",
              "unknown command as an error reply: %r" % replies[0])
        check_eq(replies[1], "PONG", "PING after the error on the same connection")


def test_cli_pipe(c):
    """redis-cli --pipe: 1000 SETs in one stream, no errors, all applied."""
    n1 = c.node(1)
    stream = b"".join(kc.encode_command("SET", "pipe_%d" % i, "value_%d" % i)
                      for i in range(PIPELINE_COMMANDS))
    out = cli(n1, "--pipe", stdin=stream)
    m = re.search(r"errors: (\d+), replies: (\d+)", out)
    check(m is not None, "redis-cli --pipe summary: %r" % out)
    check_eq((int(m.group(1)), int(m.group(2))), (0, PIPELINE_COMMANDS), "--pipe errors, replies")
    with kc.RespClient(c.node(2).resp_port) as r:
        got = r.pipeline([("GET", "pipe_%d" % i) for i in range(PIPELINE_COMMANDS)])
    check_eq(got, ["value_%d" % i for i in range(PIPELINE_COMMANDS)], "values read back in order")


def test_raw_pipeline_order(c):
    """1000 pipelined commands on one socket (SETs and GETs of other keys): replies in order."""
    n3 = c.node(3)
    half = PIPELINE_COMMANDS // 2
    with kc.RespClient(n3.resp_port, timeout_s=30) as r:
        preload = r.pipeline([("SET", "raw_get_%d" % i, "pre%d" % i) for i in range(half)])
        check(all(x == "OK" for x in preload), "preload SETs: %r" % preload[:3])
        commands, expected = [], []
        for i in range(half):
            commands += [("SET", "raw_set_%d" % i, "v%d" % i), ("GET", "raw_get_%d" % i)]
            expected += ["OK", "pre%d" % i]
        replies = r.pipeline(commands)
    bad = [(i, commands[i], replies[i], expected[i]) for i in range(len(commands))
           if replies[i] != expected[i]]
    check(not bad, "%d replies out of order or wrong, first: %r" % (len(bad), bad[:3]))


def test_pipeline_reads_its_own_writes(c):
    """A pipeline runs in order, as in Redis: a GET sees the SET before it and DEL counts it.

    Also: of 200 pipelined SETs of one key, the last one wins.
    """
    commands, expected = [], []
    for i in range(PIPELINE_COMMANDS // 4):
        key = "ryw_%d" % i
        commands += [("SET", key, "a%d" % i), ("GET", key), ("DEL", key), ("GET", key)]
        expected += ["OK", "a%d" % i, 1, None]
    with kc.RespClient(c.node(1).resp_port, timeout_s=30) as r:
        replies = r.pipeline(commands)
        last = r.pipeline([("SET", "ryw_last", "v%d" % i) for i in range(200)] + [("PING",)])
        final = r.call("GET", "ryw_last")
    bad = [(i, commands[i], replies[i], expected[i]) for i in range(len(commands))
           if replies[i] != expected[i]]
    check_eq(final, "v199", "value after 200 pipelined SETs of one key (%r)" % last[-1])
    check(not bad, "%d of %d pipelined replies do not follow request order, first (index, "
          "command, got, expected): %r" % (len(bad), len(commands), bad[:4]))


def test_cross_protocol(c):
    """RESP writes are read over HTTP on another node, and HTTP writes over RESP."""
    n1, n2, n3 = c.nodes
    check_eq(cli_lines(n1, "SET", "xproto_resp", "via resp"), ["OK"], "SET on n1")
    check_eq(get_value(n2, "xproto_resp"), "via resp", "HTTP GET on n2")
    put_value(n3, "xproto_http", "via http")
    check_eq(cli_lines(n2, "GET", "xproto_http"), ["via http"], "redis-cli GET on n2")


# ---- restarts ----


def check_alone(node):
    """With its peers stopped, a node is alive but not ready, and says its links are down."""
    check_eq(kc.http_call(node.http_port, "GET", "/health")[0], 200, "/health of %s alone" % node.name)
    check_eq(kc.http_call(node.http_port, "GET", "/ready")[0], 503, "/ready of %s alone" % node.name)
    doc = json_body(kc.http_call(node.http_port, "GET", "/cluster")[2], "/cluster")
    links = sorted(m["link"] for m in doc["members"])
    check_eq(links, ["down", "down", "self"], "/cluster links of %s alone" % node.name)
    text = kc.http_call(node.http_port, "GET", "/metrics")[2].decode()
    up = re.findall(r'^kv_peer_link_up\{peer="n\d+"\} (\d)$', text, re.M)
    check_eq(up, ["0", "0"], "kv_peer_link_up of %s alone" % node.name)


def test_sigterm_restart_keeps_data(c):
    """After SIGTERM and a restart on the same data dir, a node alone serves its w=3 writes."""
    n2 = c.node(2)
    keys = {"restart_%d" % i: "kept_%d" % i for i in range(RESTART_KEYS)}
    for i, (key, value) in enumerate(keys.items()):
        put_value(c.nodes[i % 3], key, value, w=3)
    check_eq(c.stop_node(n2), 0, "exit code of n2 after SIGTERM (drained)")
    c.start_node(n2)
    stop_others(c, n2)
    try:
        check_alone(n2)
        for key, value in keys.items():
            check_eq(get_value(n2, key, r=1), value, "%s read from n2 alone with r=1" % key)
        with kc.RespClient(n2.resp_port) as r:
            reply = r.pipeline([("GET", "restart_0")])[0]
        check(isinstance(reply, kc.RespError) and reply.code == "QUORUM",
              "RESP GET (r=2) on n2 alone is a QUORUM error: %r" % reply)
    finally:
        start_others(c, n2)


def in_flight_resp_set(node, key, results):
    """SET through RESP and wait for the reply; stores the reply or the connection error."""
    try:
        with kc.RespClient(node.resp_port, timeout_s=15) as r:
            r.send(("SET", key, "v"))
            results["resp"] = r.read_reply()
    except OSError as e:
        results["resp"] = e


def in_flight_http_put(node, key, results):
    """PUT over HTTP and wait for the reply; stores (status, body) or the connection error."""
    try:
        results["http"] = kc.http_json(node.http_port, "PUT", "/v1/" + key, "v", timeout_s=15)
    except Exception as e:  # noqa: BLE001 - http.client raises several unrelated types
        results["http"] = e


def test_sigterm_answers_requests_in_flight(c):
    """SIGTERM drains: a request in flight when the signal arrives still gets its reply.

    The two other nodes are stopped first, so that a write on n1 waits for its 2 s deadline and
    is certainly in flight when n1 gets SIGTERM; the reply due is QUORUM (HTTP 503).
    """
    n1 = c.node(1)
    stop_others(c, n1)
    results = {}
    try:
        threads = [threading.Thread(target=in_flight_resp_set, args=(n1, "drain_resp", results)),
                   threading.Thread(target=in_flight_http_put, args=(n1, "drain_http", results))]
        for t in threads:
            t.start()
        time.sleep(0.5)
        check_eq(c.stop_node(n1), 0, "exit code of n1 after SIGTERM")
        for t in threads:
            t.join()
    finally:
        for node in c.nodes:
            c.start_node(node, wait_ready=False)
        c.wait_all_ready()
    problems = []
    if not isinstance(results.get("resp"), kc.RespError):
        problems.append("RESP SET in flight got %r instead of a reply" % results.get("resp"))
    if not isinstance(results.get("http"), tuple):
        problems.append("HTTP PUT in flight got %r instead of a reply" % results.get("http"))
    check(not problems, "; ".join(problems))


def write_batch(c, prefix, count, acked, lock):
    """Writes count keys with w=3 from several threads spread over the nodes; records the acks."""
    def writer(t):
        for i in range(t, count, KILL_WRITER_THREADS):
            key, value = "%s_%d" % (prefix, i), "durable_%d" % i
            node = c.nodes[i % 3]
            status, _ = kc.http_json(node.http_port, "PUT", "/v1/%s?w=3" % key, value)
            if status == 200:
                with lock:
                    acked[key] = value
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(KILL_WRITER_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def stream_writes(c, target, acked, lock, stop):
    """Keeps writing with w=3 through the nodes other than target until stop is set."""
    i = 0
    while not stop.is_set():
        key, value = "kill_stream_%d" % i, "streamed_%d" % i
        node = c.others(target)[i % 2]
        try:
            status, _ = kc.http_json(node.http_port, "PUT", "/v1/%s?w=3" % key, value, timeout_s=10)
        except OSError:
            status = None
        if status == 200:
            with lock:
                acked[key] = value
        i += 1


def test_sigkill_keeps_acknowledged_writes(c):
    """Every write acknowledged with w=3 survives a SIGKILL of a replica right after the ack."""
    n3 = c.node(3)
    acked, lock, stop = {}, threading.Lock(), threading.Event()
    write_batch(c, "kill_batch", KILL_BATCH_WRITES, acked, lock)
    check_eq(len(acked), KILL_BATCH_WRITES, "acknowledged writes of the batch")
    streamer = threading.Thread(target=stream_writes, args=(c, n3, acked, lock, stop))
    streamer.start()
    time.sleep(0.3)
    c.kill_node(n3)  # lands while the stream is in flight
    time.sleep(0.3)
    stop.set()
    streamer.join()
    print("      %d acknowledged w=3 writes (%d of them streamed around the kill)"
          % (len(acked), len(acked) - KILL_BATCH_WRITES))
    c.start_node(n3)
    stop_others(c, n3)
    try:
        missing = [(k, v, get_value(n3, k, r=1)) for k, v in sorted(acked.items())]
        missing = [m for m in missing if m[1] != m[2]]
        check(not missing, "%d acknowledged writes missing on n3 after SIGKILL, first: %r"
              % (len(missing), missing[:5]))
    finally:
        start_others(c, n3)


TESTS = [
    test_seed_post_get_delete,
    test_seed_with_real_curl,
    test_put,
    test_health_and_ready,
    test_metrics,
    test_cluster_json,
    test_quorum_parameters,
    test_bad_json,
    test_http_across_nodes,
    test_cli_basics,
    test_cli_set_nx_xx,
    test_cli_info_and_unknown,
    test_cli_pipe,
    test_raw_pipeline_order,
    test_pipeline_reads_its_own_writes,
    test_cross_protocol,
    test_sigterm_restart_keeps_data,
    test_sigkill_keeps_acknowledged_writes,
    test_sigterm_answers_requests_in_flight,
]




def heal(c):
    """Starts every node that is not running and waits until all are ready."""
    for node in c.nodes:
        if not node.running():
            c.start_node(node, wait_ready=False)
    c.wait_all_ready()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="build/bin", help="directory holding kvnode")
    parser.add_argument("--keep-data", action="store_true", help="keep data dirs and logs")
    parser.add_argument("-k", "--only", help="run the tests whose name contains this")
    args = parser.parse_args()
    if shutil.which("redis-cli") is None:
        print("redis-cli is not installed")
        return 1
    tests = [t for t in TESTS if not args.only or args.only in t.__name__]
    failed = []
    with kc.Cluster(args.bin, keep_data=args.keep_data) as c:
        print("cluster: %s in %s" % (c.nodes, c.workdir), flush=True)
        for test in tests:
            if not kc.run_test(c, test):
                failed.append(test.__name__)
                heal(c)  # a failed test may have left nodes stopped
        if failed:  # the logs are printed; --keep-data keeps the directory too
            for node in c.nodes:
                print("---- log of %s (tail) ----\n%s" % (node.name, node.log_tail(3000)))
    print("%d of %d passed%s" % (len(tests) - len(failed), len(tests),
                                 "; failed: " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
