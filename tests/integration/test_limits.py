#!/usr/bin/env python3
"""Named limits and bad input on a real 3-node cluster over loopback.

The nodes run with small limits (LIMIT_ARGS) so that every limit is cheap to reach. Each test
sends one kind of bad input and then checks, besides its own outcome, that clients opened before
the bad input are still served on their connections (Bystanders) and that the data written at
the start is intact on every node (check_intact):

- oversized keys and values are refused with the limit named, over RESP and HTTP, and the
  connection stays usable; requests exactly at the limits are accepted;
- malformed RESP and HTTP requests get an error and only that connection is closed;
- a request left half-sent (or trickled) is closed after the read timeout;
- seeded random bytes on the peer, RESP and HTTP ports change nothing, and the node's log of
  refused peer connections stays bounded;
- connections beyond --connections-max are refused while the open ones keep working;
- peer handshakes with the wrong cluster id, an unknown node or another protocol version, from a
  fake peer and from a real kvnode started with another --cluster-id, are refused and logged with
  the remote address; that node also shows the idle timeout.

Runs as a script: prints each check, exits 0 if all passed and 1 otherwise.
    python3 tests/integration/test_limits.py --bin build/bin
"""

import argparse
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as kc  # noqa: E402
from cluster import CheckFailed, check, check_eq  # noqa: E402,F401

HOST = kc.HOST

# The limits every node of the test cluster runs with.
KEY_MAX = 64
VALUE_MAX = 4096
RESP_BULK_MAX = 8192
RESP_ARRAY_MAX = 16
HTTP_HEADER_MAX = 2048
HTTP_BODY_MAX = 16384
CONNECTIONS_MAX = 8
IN_FLIGHT_PER_CONNECTION_MAX = 4
READ_TIMEOUT_MS = 1000
IDLE_TIMEOUT_MS = 20000
FRAME_MAX = 65536
LIMIT_ARGS = [
    "--key-bytes-max", str(KEY_MAX),
    "--value-bytes-max", str(VALUE_MAX),
    "--resp-bulk-bytes-max", str(RESP_BULK_MAX),
    "--resp-array-max", str(RESP_ARRAY_MAX),
    "--http-header-bytes-max", str(HTTP_HEADER_MAX),
    "--http-body-bytes-max", str(HTTP_BODY_MAX),
    "--connections-max", str(CONNECTIONS_MAX),
    "--requests-in-flight-per-connection-max", str(IN_FLIGHT_PER_CONNECTION_MAX),
    "--read-timeout-ms", str(READ_TIMEOUT_MS),
    "--idle-timeout-ms", str(IDLE_TIMEOUT_MS),
    "--frame-bytes-max", str(FRAME_MAX),
]
# The node started with another cluster id closes idle clients after this, and coordinates at
# most one request at a time (each waits out its deadline, since no peer accepts the node).
ROGUE_IDLE_TIMEOUT_MS = 1000
ROGUE_REQUESTS_IN_FLIGHT_MAX = 1
ROGUE_REQUEST_TIMEOUT_MS = 500

# Generous bounds: the machine is shared and noisy, and none of these is a timing assertion.
CLOSE_WAIT_S = 15.0       # for the node to close a connection it should close
LOG_WAIT_S = 10.0         # for a line to appear in a node's log
REPLY_TIMEOUT_S = 10.0

RANDOM_SEED = 20261123
# Spread over many connections: the first bad byte usually ends a connection, so many short
# ones reach more of the parsers' states than a few long ones.
RANDOM_BYTES_PER_PORT = 256 * 1024
RANDOM_CONNECTIONS_PER_PORT = 64
GARBAGE_CONNECTIONS = 100
# Log lines about refused peer links and closed clients are rate limited: a burst of 20, then 5
# per second (net/log_limit.h); 100 refusals within a few seconds leave far fewer lines.
REFUSAL_LINES_MAX = 60

BASE_KEYS = {"base_%02d" % i: "value %02d %s" % (i, "x" * (i * 7)) for i in range(12)}


# ---- sockets ----


def connect(port, timeout_s=REPLY_TIMEOUT_S):
    s = socket.create_connection((HOST, port), timeout=timeout_s)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_quietly(sock, data):
    """Sends what the server will take; the server may close the connection halfway."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def read_until_closed(sock, timeout_s=CLOSE_WAIT_S):
    """Reads until the server closes. Returns (bytes, closed); closed is False on timeout."""
    deadline = time.monotonic() + timeout_s
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(data), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return bytes(data), False
        except ConnectionResetError:
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk


def read_some(sock, timeout_s=REPLY_TIMEOUT_S):
    """The first bytes the server sends (b"" if it closed first)."""
    sock.settimeout(timeout_s)
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def is_closed(sock):
    """True once the server closed (or reset) the connection; never blocks."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(65536, socket.MSG_PEEK) == b""
    except OSError:
        return True


# ---- HTTP on a kept-alive connection ----


class KeepAlive:
    """One HTTP/1.1 connection that must stay the same connection: a request on it fails the
    check if the server closed it (http.client would silently reconnect)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=REPLY_TIMEOUT_S)
        self.conn.connect()
        self.sock = self.conn.sock

    def request(self, method, path, body=None, what=""):
        check(self.conn.sock is self.sock, "%s: the server closed the kept-alive connection" % what)
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        res = self.conn.getresponse()
        data = res.read()
        check(self.conn.sock is self.sock and not res.will_close,
              "%s: the server closed the connection after answering %d %r"
              % (what, res.status, data[:200]))
        try:
            return res.status, json.loads(data) if data else None
        except ValueError:
            return res.status, {"unparsed": data.decode("utf-8", "replace")}

    def close(self):
        self.conn.close()


# ---- what must survive every test ----


def write_base(c):
    """The data every later test checks: written with w=3, so every replica holds it."""
    for i, (key, value) in enumerate(sorted(BASE_KEYS.items())):
        node = c.nodes[i % len(c.nodes)]
        status, body = kc.http_json(node.http_port, "PUT", "/v1/%s?w=3" % key, value)
        check_eq(status, 200, "PUT %s on %s (%s)" % (key, node.name, body))


def test_base_data(c):
    """The data every test checks afterwards is written with w=3 and readable everywhere."""
    write_base(c)


def check_intact(c):
    """Every node runs, answers a fresh RESP and HTTP client, and holds the base data."""
    keys = sorted(BASE_KEYS)
    for node in c.nodes:
        check(node.running(), "%s is no longer running; its log:\n%s" % (node.name, node.log_tail()))
        with kc.RespClient(node.resp_port, timeout_s=REPLY_TIMEOUT_S) as r:
            check_eq(r.pipeline([("GET", k) for k in keys]), [BASE_KEYS[k] for k in keys],
                     "base data read over RESP from %s" % node.name)
        key = keys[node.index]
        status, body = kc.http_json(node.http_port, "GET", "/v1/" + key, timeout_s=REPLY_TIMEOUT_S)
        check_eq((status, (body or {}).get("value")), (200, BASE_KEYS[key]),
                 "base key %s read over HTTP from %s" % (key, node.name))


class Bystanders:
    """A RESP and a kept-alive HTTP client of a node, opened before a test's bad input and used
    after it: the node must go on serving them on the same connections."""

    def __init__(self, node):
        self.node = node
        self.resp = kc.RespClient(node.resp_port, timeout_s=REPLY_TIMEOUT_S)
        check_eq(self.resp.call("PING"), "PONG", "bystander RESP PING on %s" % node.name)
        self.http = KeepAlive(node.http_port)
        check_eq(self.http.request("GET", "/health", what="bystander /health")[0], 200,
                 "bystander /health on %s" % node.name)

    def check(self):
        name = self.node.name
        check(not self.resp.peer_closed(), "the bystander RESP connection to %s was closed" % name)
        check_eq(self.resp.call("GET", "base_00"), BASE_KEYS["base_00"],
                 "bystander RESP GET on %s" % name)
        status, body = self.http.request("GET", "/v1/base_01", what="bystander HTTP GET")
        check_eq((status, (body or {}).get("value")), (200, BASE_KEYS["base_01"]),
                 "bystander HTTP GET on %s" % name)

    def close(self):
        self.resp.close()
        self.http.close()


class LogWatch:
    """What a node wrote to its log (stderr) after this object was made."""

    def __init__(self, node):
        self.path = node.log_path
        self.offset = os.path.getsize(self.path)

    def text(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, what, timeout_s=LOG_WAIT_S):
        """Waits for a line matching `pattern` (a regular expression); returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            m = re.search(pattern, self.text(), re.MULTILINE)
            if m:
                return m.group(0)
            if time.monotonic() > deadline:
                raise CheckFailed("%s: no log line matching %r within %.0f s; new log:\n%s"
                                  % (what, pattern, timeout_s, self.text()[-3000:]))
            time.sleep(0.05)


# ---- peer frames ----


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def peer_protocol_version():
    """The version kvnode speaks, read from the source it was built from (net/peer_codec.h)."""
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "net", "peer_codec.h")
    with open(header) as f:
        return int(re.search(r"peer_protocol_version = (\d+);", f.read()).group(1))


PEER_PROTOCOL_VERSION = peer_protocol_version()


def handshake_frame(cluster_id, node_id, protocol_version=PEER_PROTOCOL_VERSION):
    """A peer link's first frame (net/peer_codec.h): u32 length, u32 CRC-32C, kv.pb.Handshake."""
    cid = cluster_id.encode()
    payload = (b"\x0a" + varint(len(cid)) + cid + b"\x10" + varint(node_id) +
               b"\x18" + varint(protocol_version))
    return struct.pack("<II", len(payload), crc32c(payload)) + payload


# ---- oversized keys and values ----


def test_oversized_resp(c):
    """RESP: a key or value over its limit is refused by name; the connection goes on."""
    node = c.node(1)
    by = Bystanders(node)
    with kc.RespClient(node.resp_port, timeout_s=REPLY_TIMEOUT_S) as r:
        reply = r.pipeline([("SET", "k" * (KEY_MAX + 1), "v")])[0]
        check(isinstance(reply, kc.RespError) and "key_bytes_max" in str(reply),
              "SET with a key of %d bytes: want an error naming key_bytes_max, got %r"
              % (KEY_MAX + 1, reply))
        check_eq(r.call("PING"), "PONG", "PING on the same connection after the refused key")
        reply = r.pipeline([("SET", "limits_resp", "v" * (VALUE_MAX + 1))])[0]
        check(isinstance(reply, kc.RespError) and "value_bytes_max" in str(reply),
              "SET with a value of %d bytes: want an error naming value_bytes_max, got %r"
              % (VALUE_MAX + 1, reply))
        check_eq(r.call("GET", "limits_resp"), None, "GET of the refused value (nothing written)")
        # An argument over --resp-bulk-bytes-max arrives with its data, as a client library sends
        # it: the node reads the whole command, throws it away and answers an error naming the
        # limit; the connection stays, so the client reads the error, not a broken pipe.
        reply = r.pipeline([("SET", "limits_bulk", "z" * (RESP_BULK_MAX + 1)), ("PING",)])
        check(isinstance(reply[0], kc.RespError) and "bulk_bytes_max" in str(reply[0]) and
              "discarded" in str(reply[0]),
              "SET with an argument of %d bytes: want an error naming bulk_bytes_max, got %r"
              % (RESP_BULK_MAX + 1, reply[0]))
        check_eq(reply[1], "PONG", "PING pipelined after the discarded command")
        check_eq(r.call("GET", "limits_bulk"), None, "GET of the discarded command's key (nothing written)")
        reply = r.pipeline([("GET", "g" * (KEY_MAX + 1))])[0]
        check(isinstance(reply, kc.RespError) and "key_bytes_max" in str(reply),
              "GET with a key of %d bytes: got %r" % (KEY_MAX + 1, reply))
        # Exactly at the limits is allowed.
        key, value = "r" * KEY_MAX, "V" * VALUE_MAX
        check_eq(r.call("SET", key, value), "OK", "SET at the key and value limits")
        check_eq(r.call("GET", key), value, "GET at the limits")
        # A command that needs more requests than one connection may have in flight.
        reply = r.pipeline([("MGET",) + tuple("m%d" % i for i in range(IN_FLIGHT_PER_CONNECTION_MAX + 1))])[0]
        check(isinstance(reply, kc.RespError) and
              "requests_in_flight_per_connection_max" in str(reply),
              "MGET of %d keys: got %r" % (IN_FLIGHT_PER_CONNECTION_MAX + 1, reply))
        # A pipeline longer than that limit only waits, it is not refused.
        replies = r.pipeline([("GET", "base_02")] * (IN_FLIGHT_PER_CONNECTION_MAX * 4))
        check(all(v == BASE_KEYS["base_02"] for v in replies), "a long pipeline: %r" % replies[:3])
    by.check()
    by.close()


def test_oversized_http(c):
    """HTTP: a key or value over its limit is refused by name on a kept-alive connection;
    a body or header over its limit gets 413 or 431 and that connection is closed."""
    node = c.node(1)
    by = Bystanders(node)
    ka = KeepAlive(node.http_port)
    status, body = ka.request("PUT", "/v1/" + "k" * (KEY_MAX + 1), json.dumps({"value": "v"}),
                              "PUT with a long key")
    check(status == 400 and "key_bytes_max" in json.dumps(body),
          "PUT with a key of %d bytes: want 400 naming key_bytes_max, got %d %r"
          % (KEY_MAX + 1, status, body))
    status, body = ka.request("PUT", "/v1/limits_http", json.dumps({"value": "v" * (VALUE_MAX + 1)}),
                              "PUT with a large value")
    check(status == 413 and "value_bytes_max" in json.dumps(body),
          "PUT with a value of %d bytes: want 413 naming value_bytes_max, got %d %r"
          % (VALUE_MAX + 1, status, body))
    status, _ = ka.request("GET", "/v1/limits_http", what="GET of the refused value")
    check_eq(status, 404, "GET of the refused value (nothing written)")
    key, value = "h" * KEY_MAX, "W" * VALUE_MAX
    status, body = ka.request("PUT", "/v1/" + key, json.dumps({"value": value}), "PUT at the limits")
    check_eq(status, 200, "PUT at the key and value limits (%r)" % body)
    status, body = ka.request("GET", "/v1/" + key, what="GET at the limits")
    check_eq((status, body.get("value")), (200, value), "GET at the limits")
    ka.close()

    # A body over http-body-bytes-max: 413 at once (from Content-Length), then closed.
    s = connect(node.http_port)
    body_bytes = b'{"value": "' + b"b" * (HTTP_BODY_MAX + 1) + b'"}'
    request = (b"PUT /v1/limits_body HTTP/1.1\r\nHost: kv\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body_bytes)) + body_bytes
    send_quietly(s, request)
    data, closed = read_until_closed(s)
    s.close()
    check(data.startswith(b"HTTP/1.1 413") and b"body_bytes_max" in data and closed,
          "an oversized body: want 413 naming body_bytes_max and a close, got closed=%s %r"
          % (closed, data[:300]))
    # Headers over http-header-bytes-max: 431, then closed.
    s = connect(node.http_port)
    send_quietly(s, b"GET /v1/base_00 HTTP/1.1\r\nHost: kv\r\nX-Pad: " + b"p" * (HTTP_HEADER_MAX + 10)
                 + b"\r\n\r\n")
    data, closed = read_until_closed(s)
    s.close()
    check(data.startswith(b"HTTP/1.1 431") and b"header_bytes_max" in data and closed,
          "oversized headers: want 431 naming header_bytes_max and a close, got closed=%s %r"
          % (closed, data[:300]))
    check_eq(kc.http_json(node.http_port, "GET", "/v1/limits_body")[0], 404,
             "GET of the refused body's key (nothing written)")
    by.check()
    by.close()


# ---- malformed requests ----

MALFORMED_RESP = [
    # (what, bytes sent, text the error must contain)
    ("bad array length", b"*x1\r\n", b"invalid multibulk length"),
    ("negative bulk length", b"*2\r\n$3\r\nGET\r\n$-5\r\n", b"invalid bulk length"),
    ("bulk header without '$'", b"*1\r\n:5\r\n", b"expected '$'"),
    ("bulk not ended by CRLF", b"*1\r\n$4\r\nPINGxx\r\n", b"expected CRLF"),
    ("unbalanced quotes", b'SET "a b\r\n', b"unbalanced quotes"),
    ("array over resp-array-max", b"*%d\r\n" % (RESP_ARRAY_MAX + 1), b"array_len_max"),
]


def test_malformed_resp(c):
    """RESP: each malformed request gets a protocol error naming what was wrong, then only
    that connection is closed; commands before it on the connection were answered."""
    node = c.node(2)
    by = Bystanders(node)
    for what, payload, expected in MALFORMED_RESP:
        s = connect(node.resp_port)
        send_quietly(s, b"PING\r\n" + payload)
        data, closed = read_until_closed(s)
        s.close()
        check(data.startswith(b"+PONG\r\n-ERR Protocol error") and expected in data and closed,
              "%s: want +PONG, a protocol error naming %r, then a close; got closed=%s %r"
              % (what, expected, closed, data[:300]))
        by.check()
    by.close()


def test_protocol_error_while_sending(c):
    """RESP: a client that gets a protocol error while it is still sending (its bytes keep coming
    after the bad one) reads the error and then the end of the stream, never a reset: the node
    shuts its write side and reads on, throwing the rest away, before it closes."""
    node = c.node(2)
    s = connect(node.resp_port)
    junk = b"x" * (4 << 20)
    sent = send_quietly(s, b"*1\r\n$4\r\nPINGxx\r\n" + junk)
    data, closed = read_until_closed(s)
    reset = False
    try:
        s.settimeout(1.0)
        s.recv(1)
    except ConnectionResetError:
        reset = True
    except OSError:
        pass
    s.close()
    check(sent, "sending 4 MiB after the bad command failed: the node did not read it away")
    check(data.startswith(b"-ERR Protocol error: expected CRLF") and closed and not reset,
          "want the protocol error, then end of stream; got closed=%s reset=%s %r" % (closed, reset, data[:200]))


MALFORMED_HTTP = [
    ("garbage request line", b"HELLO THERE\r\n\r\n"),
    ("header line without a colon", b"GET /v1/base_00 HTTP/1.1\r\nHost kv\r\n\r\n"),
    ("bad Content-Length", b"PUT /v1/bad HTTP/1.1\r\nHost: kv\r\nContent-Length: 12abc\r\n\r\n"),
    ("bad chunk size",
     b"PUT /v1/bad HTTP/1.1\r\nHost: kv\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"),
    ("bad version", b"GET /health HTTP/9.Q\r\n\r\n"),
]


def test_malformed_http(c):
    """HTTP: a malformed request, after a good one on the same connection, gets 400 and only
    that connection is closed."""
    node = c.node(2)
    by = Bystanders(node)
    good = b"GET /v1/base_03 HTTP/1.1\r\nHost: kv\r\n\r\n"
    for what, payload in MALFORMED_HTTP:
        s = connect(node.http_port)
        send_quietly(s, good + payload)
        data, closed = read_until_closed(s)
        s.close()
        first, _, rest = data.partition(b"HTTP/1.1 400")
        check(first.startswith(b"HTTP/1.1 200") and BASE_KEYS["base_03"].encode() in first and
              b"HTTP/1.1 400" in data and b"malformed request" in rest and closed,
              "%s: want 200 for the good request, 400 naming it malformed, then a close; "
              "got closed=%s %r" % (what, closed, data[:600]))
        by.check()
    check_eq(kc.http_json(node.http_port, "GET", "/v1/bad")[0], 404, "nothing written by them")
    by.close()


# ---- stalled clients ----


def test_stalled_requests(c):
    """A request left half-sent, or trickled a byte at a time, is closed after the read
    timeout (RESP and HTTP); an idle client is not, and nothing half-sent is written."""
    node = c.node(3)
    by = Bystanders(node)
    log = LogWatch(node)
    half = {
        "RESP half command": (node.resp_port, b"*3\r\n$3\r\nSET\r\n$7\r\nstalled\r\n$5\r\nab"),
        "HTTP half header": (node.http_port, b"PUT /v1/stalled HTTP/1.1\r\nHost: kv\r\n"),
        "HTTP half body": (node.http_port, b"PUT /v1/stalled HTTP/1.1\r\nHost: kv\r\n"
                           b"Content-Length: 100\r\n\r\n{\"value\": \"ab"),
    }
    trickle = {
        "RESP trickled command": (node.resp_port, b"*2\r\n$3\r\nGET\r\n$4000\r\n"),
        "HTTP trickled header": (node.http_port, b"GET /v1/base_00 HTTP/1.1\r\nX-Slow: "),
    }
    open_ = {}
    for what, (port, start) in list(half.items()) + list(trickle.items()):
        s = connect(port)
        s.sendall(start)
        open_[what] = s
    started = time.monotonic()
    closed_after = {}
    while open_ and time.monotonic() - started < CLOSE_WAIT_S:
        for what, s in list(open_.items()):
            if what in trickle and not send_quietly(s, b"t"):
                pass  # the node closed it; is_closed sees that next
            if is_closed(s):
                closed_after[what] = time.monotonic() - started
                s.close()
                del open_[what]
        time.sleep(0.2)
    for s in open_.values():
        s.close()
    check(not open_, "still open %.0f s after a %d ms read timeout: %s"
          % (CLOSE_WAIT_S, READ_TIMEOUT_MS, ", ".join(sorted(open_))))
    print("      closed after: %s" % ", ".join("%s %.1f s" % kv for kv in sorted(closed_after.items())))
    log.wait_for(r"resp: [0-9.:]+: read timeout[^\n]*read_timeout", "RESP read timeout logged")
    check_eq(kc.http_json(node.http_port, "GET", "/v1/stalled")[0], 404, "the half-sent write")
    by.check()
    by.close()


# ---- peer handshakes ----


def fake_peer(node, frame):
    """Connects to the node's peer port as a peer, sends `frame`, and waits for the node to
    close the link. Returns the local address the node saw."""
    s = connect(node.peer_port)
    local = "%s:%d" % s.getsockname()
    send_quietly(s, frame)
    data, closed = read_until_closed(s)
    s.close()
    check(closed and data == b"", "%s: a refused handshake must be answered by a close, got "
          "closed=%s %r" % (node.name, closed, data[:100]))
    return local


def test_handshake_refused(c):
    """A fake peer with the wrong cluster id, an unknown node id or another protocol version is
    refused and the node logs each with the remote address and the reason."""
    node = c.node(1)
    by = Bystanders(node)
    log = LogWatch(node)
    cases = [
        (handshake_frame("intruders", 2), r"cluster id 'intruders' != 'kv'"),
        (handshake_frame("kv", 99), r"node 99 is not a peer of this node"),
        (handshake_frame("kv", 2, protocol_version=7), r"protocol version 7 != %d" % PEER_PROTOCOL_VERSION),
        (b"\x08\x00\x00\x00\xde\xad\xbe\xef" + b"\x00" * 8, r"checksum mismatch"),
    ]
    for frame, reason in cases:
        local = fake_peer(node, frame)
        log.wait_for(r"peer: [^\n]*link from %s[^\n]*%s" % (re.escape(local), reason),
                     "refusal of %s logged" % local)
    by.check()
    by.close()
    # The real peers' links were not disturbed.
    for n in c.nodes:
        kc_status = kc.http_call(n.http_port, "GET", "/ready")[0]
        check_eq(kc_status, 200, "/ready on %s" % n.name)


def start_rogue(c):
    """A real kvnode that claims to be n2 of a cluster with another id, at a fresh peer port,
    with a short idle timeout. Returns (process, resp port, http port, log path)."""
    peer, resp, http_port = kc.free_ports(3)
    rogue_dir = tempfile.mkdtemp(prefix="rogue-", dir=c.workdir)
    members = ",".join("%s@%s:%d" % (n.name, HOST, peer if n.index == 2 else n.peer_port)
                       for n in c.nodes)
    cmd = [c.kvnode, "--id", "n2", "--cluster", members, "--cluster-id", "other",
           "--resp-addr", "%s:%d" % (HOST, resp), "--http-addr", "%s:%d" % (HOST, http_port),
           "--data-dir", os.path.join(rogue_dir, "data"),
           "--idle-timeout-ms", str(ROGUE_IDLE_TIMEOUT_MS),
           "--requests-in-flight-max", str(ROGUE_REQUESTS_IN_FLIGHT_MAX),
           "--request-timeout-ms", str(ROGUE_REQUEST_TIMEOUT_MS)]
    log_path = os.path.join(rogue_dir, "rogue.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                close_fds=True)
    deadline = time.monotonic() + kc.READY_TIMEOUT_S
    while True:
        check(proc.poll() is None, "the rogue node exited with %s; its log:\n%s"
              % (proc.returncode, open(log_path, errors="replace").read()[-3000:]))
        try:
            if kc.http_call(http_port, "GET", "/health", timeout_s=1.0)[0] == 200:
                return proc, resp, http_port, log_path
        except OSError:
            pass
        check(time.monotonic() < deadline, "the rogue node did not answer /health")
        time.sleep(0.05)


def stop_process(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=kc.STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_other_cluster_id(c):
    """A real kvnode started with another --cluster-id is refused by every node it links to,
    which log it; it never becomes ready. It also shows its limit on requests in flight and
    closes idle clients after its idle timeout."""
    logs = {n.name: LogWatch(n) for n in (c.node(1), c.node(3))}
    proc, resp, http_port, _ = start_rogue(c)
    try:
        for name, log in logs.items():
            log.wait_for(r"peer: refused link from 127\.0\.0\.1:\d+: cluster id 'other' != 'kv'",
                         "%s logs the refusal of the node with another cluster id" % name)
        check_eq(kc.http_call(http_port, "GET", "/ready")[0], 503,
                 "/ready of the node that no peer accepts")
        # The first request waits for replicas that never answer; the second finds the node
        # coordinating all it may.
        with kc.RespClient(resp, timeout_s=REPLY_TIMEOUT_S) as r:
            first, second = r.pipeline([("GET", "a"), ("GET", "b")])
        check(isinstance(first, kc.RespError) and first.code == "QUORUM",
              "a read on the node alone: %r" % first)
        check(isinstance(second, kc.RespError) and second.code == "BUSY" and
              "requests_in_flight_max (%d)" % ROGUE_REQUESTS_IN_FLIGHT_MAX in str(second),
              "a second read while one is in flight: want BUSY naming requests_in_flight_max, "
              "got %r" % second)
        # Idle clients of that node are closed after its idle timeout (a generous bound here).
        idle_resp = connect(resp)
        idle_resp.sendall(b"PING\r\n")
        check_eq(read_some(idle_resp), b"+PONG\r\n", "PING before idling")
        idle_http = KeepAlive(http_port)
        check_eq(idle_http.request("GET", "/health", what="/health before idling")[0], 200,
                 "/health before idling")
        for what, s in (("RESP", idle_resp), ("HTTP", idle_http.sock)):
            data, closed = read_until_closed(s)
            check(closed, "an idle %s client still open %.0f s after a %d ms idle timeout"
                  % (what, CLOSE_WAIT_S, ROGUE_IDLE_TIMEOUT_MS))
        idle_resp.close()
        idle_http.close()
    finally:
        stop_process(proc)
    for n in c.nodes:
        check_eq(kc.http_call(n.http_port, "GET", "/ready")[0], 200, "/ready on %s" % n.name)


# ---- random bytes ----


def count_lines(text, pattern):
    return sum(1 for line in text.splitlines() if re.search(pattern, line))


def test_random_bytes(c):
    """Seeded random bytes on the peer, RESP and HTTP ports of a node change nothing; the
    node's log of refused connections stays bounded (rate limited)."""
    node = c.node(3)
    by = Bystanders(node)
    log = LogWatch(node)
    rng = random.Random(RANDOM_SEED)
    chunk = RANDOM_BYTES_PER_PORT // RANDOM_CONNECTIONS_PER_PORT
    # Every other connection starts well, so that the random bytes reach the parsers' later
    # states: a command's arguments, a request's headers, a peer's frames after its handshake
    # (claiming to be n2: the node replaces n2's link by this one, closes it at the garbage,
    # and n2 reconnects).
    prefixes = {
        node.peer_port: handshake_frame("kv", 2),
        node.resp_port: b"*3\r\n$3\r\nSET\r\n",
        node.http_port: b"PUT /v1/random HTTP/1.1\r\nHost: kv\r\n",
    }
    for port in (node.peer_port, node.resp_port, node.http_port):
        for i in range(RANDOM_CONNECTIONS_PER_PORT):
            s = connect(port, timeout_s=2.0)
            send_quietly(s, (prefixes[port] if i % 2 else b"") + rng.randbytes(chunk))
            # Whatever the node answers, if it answers: a RESP connection may stay open (random
            # lines read as unknown commands), so do not wait long for the close.
            read_until_closed(s, timeout_s=0.2)
            s.close()
        by.check()
    # Many garbage connections: each is refused, but the log gets a bounded share of them.
    for port, garbage in ((node.peer_port, lambda: rng.randbytes(64)),
                          (node.resp_port, lambda: b"*x\r\n")):
        for _ in range(GARBAGE_CONNECTIONS):
            s = connect(port, timeout_s=2.0)
            send_quietly(s, garbage())
            read_until_closed(s, timeout_s=2.0)
            s.close()
    for proto, line, summary in (
            ("peer", r"^peer: [^\n]*link from", r"^peer: \d+ more line\(s\) about inbound"),
            ("RESP", r"^resp: [0-9.:]+: Protocol error", r"^resp: \d+ more line\(s\) about client")):
        log.wait_for(summary, "the count of %s log lines over the rate" % proto)
        lines = count_lines(log.text(), line)
        check(lines <= REFUSAL_LINES_MAX, "%d garbage %s connections left %d log lines (want at "
              "most %d)" % (GARBAGE_CONNECTIONS, proto, lines, REFUSAL_LINES_MAX))
        print("      %d log lines for %d garbage %s connections" % (lines, GARBAGE_CONNECTIONS, proto))
    by.check()
    by.close()
    c.wait_ready(node)


# ---- connection limit ----


def fill_resp(node):
    """Opens RESP connections until one is refused. Returns (accepted sockets, refusal bytes)."""
    accepted = []
    for _ in range(CONNECTIONS_MAX + 1):
        s = connect(node.resp_port)
        send_quietly(s, b"PING\r\n")
        reply = read_some(s)
        if reply == b"+PONG\r\n":
            accepted.append(s)
            continue
        data, closed = read_until_closed(s)
        s.close()
        check(closed, "a refused RESP connection must be closed")
        return accepted, reply + data
    return accepted, None


def fill_http(node):
    """Opens kept-alive HTTP connections until one is refused. Returns (accepted, refusal)."""
    accepted = []
    for _ in range(CONNECTIONS_MAX + 1):
        s = connect(node.http_port)
        send_quietly(s, b"GET /health HTTP/1.1\r\nHost: kv\r\n\r\n")
        reply = read_some(s)
        if reply.startswith(b"HTTP/1.1 200"):
            accepted.append(s)
            continue
        data, closed = read_until_closed(s)
        s.close()
        check(closed, "a refused HTTP connection must be closed")
        return accepted, reply + data
    return accepted, None


def test_connections_max(c):
    """Connections beyond --connections-max are refused at once with an error (RESP and
    HTTP each), the open ones keep working, and a closed one frees its place."""
    node = c.node(2)
    for proto, fill, want in (("RESP", fill_resp, b"-ERR max number of clients reached"),
                              ("HTTP", fill_http, b"connections_max reached")):
        # Connections of earlier tests may still be closing: retry until all places are free.
        deadline = time.monotonic() + CLOSE_WAIT_S
        while True:
            accepted, refusal = fill(node)
            if len(accepted) == CONNECTIONS_MAX or time.monotonic() > deadline:
                break
            for s in accepted:
                s.close()
            time.sleep(0.5)
        try:
            check_eq(len(accepted), CONNECTIONS_MAX, "%s connections accepted" % proto)
            check(refusal is not None and want in refusal,
                  "%s connection %d: want a refusal with %r, got %r"
                  % (proto, CONNECTIONS_MAX + 1, want, refusal))
            for s in accepted:  # the open ones still work
                if proto == "RESP":
                    s.sendall(b"GET base_04\r\n")
                    check_eq(read_some(s), b"$%d\r\n%s\r\n" % (len(BASE_KEYS["base_04"]),
                                                               BASE_KEYS["base_04"].encode()),
                             "GET on an open RESP connection at the limit")
                else:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: kv\r\n\r\n")
                    check(read_some(s).startswith(b"HTTP/1.1 200"),
                          "GET on an open HTTP connection at the limit")
            accepted.pop().close()
            # The place it held frees once the node has seen the close.
            deadline = time.monotonic() + CLOSE_WAIT_S
            while True:
                more, refusal = fill(node)
                accepted.extend(more)
                if more or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            check_eq(len(more), 1, "%s connections accepted after one closed" % proto)
        finally:
            for s in accepted:
                s.close()


BAD_FLAGS = [
    # (flags, environment, text the error must contain)
    (["--key-bytes-max", "0"], {}, "--key-bytes-max must be a whole number from 1"),
    (["--connections-max", "-1"], {}, "--connections-max must be a whole number"),
    (["--read-timeout-ms", "0"], {}, "--read-timeout-ms must be a whole number from 10"),
    (["--value-bytes-max", "1k"], {}, "--value-bytes-max must be a whole number"),
    (["--frame-bytes-max", "1000"], {}, "must fit in a frame"),
    (["--resp-bulk-bytes-max", "100"], {}, "at least the larger of --key-bytes-max"),
    (["--resp-array-max", "2"], {}, "SET key value takes 3"),
    (["--key-bytes-max", "40000000", "--value-bytes-max", "40000000"], {}, "a log record holds both"),
    ([], {"KV_IDLE_TIMEOUT_MS": "0"}, "--idle-timeout-ms must be a whole number from 10"),
]


def test_bad_flags(c):
    """Nonsense limits (zero, negative, a frame too small for a value, ...) stop kvnode at
    start with exit code 2 and an error naming the flag, from flags and KV_ variables alike."""
    data_dir = tempfile.mkdtemp(prefix="bad-flags-", dir=c.workdir)
    base = [c.kvnode, "--id", "n1", "--cluster", "n1@%s:1" % HOST, "--replicas", "1",
            "--read-quorum", "1", "--write-quorum", "1", "--data-dir", data_dir]
    for flags, env, expected in BAD_FLAGS:
        done = subprocess.run(base + flags, env=dict(os.environ, **env), capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=REPLY_TIMEOUT_S)
        err = done.stderr.decode("utf-8", "replace")
        check(done.returncode == 2 and expected in err,
              "kvnode %s %s: want exit 2 and %r, got %d %r"
              % (" ".join(flags), env, expected, done.returncode, err[:300]))
    # A listen address whose name does not resolve stops it at start (exit 1), naming the name.
    done = subprocess.run(base + ["--http-addr", "no-such-host.invalid:8001"], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=30)
    err = done.stderr.decode("utf-8", "replace")
    check(done.returncode == 1 and "cannot listen for HTTP on no-such-host.invalid:8001: cannot resolve" in err,
          "kvnode --http-addr no-such-host.invalid:8001: want exit 1 naming the name, got %d %r"
          % (done.returncode, err[-300:]))


TESTS = [
    test_bad_flags,
    test_oversized_resp,
    test_oversized_http,
    test_malformed_resp,
    test_protocol_error_while_sending,
    test_malformed_http,
    test_stalled_requests,
    test_handshake_refused,
    test_other_cluster_id,
    test_random_bytes,
    test_connections_max,
]


def run_test(c, test):
    """Runs one test and then the intact-data check."""
    return kc.run_test(c, test, after=check_intact)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="build/bin", help="directory holding kvnode")
    parser.add_argument("--keep-data", action="store_true", help="keep data dirs and logs")
    parser.add_argument("-k", "--only", help="run the tests whose name contains this")
    args = parser.parse_args()
    tests = [t for t in TESTS if not args.only or args.only in t.__name__]
    failed = []
    started = time.monotonic()
    with kc.Cluster(args.bin, extra_args=LIMIT_ARGS, keep_data=args.keep_data) as c:
        print("cluster: %s in %s" % (c.nodes, c.workdir), flush=True)
        if not run_test(c, test_base_data):
            failed.append(test_base_data.__name__)
        else:
            for test in tests:
                if not run_test(c, test):
                    failed.append(test.__name__)
        if failed:
            for node in c.nodes:
                print("---- log of %s (tail) ----\n%s" % (node.name, node.log_tail(3000)))
    print("%d of %d passed in %.0f s%s" % (len(tests) - len(failed), len(tests),
                                          time.monotonic() - started,
                                          "; failed: " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
