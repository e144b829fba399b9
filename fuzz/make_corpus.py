#!/usr/bin/env python3
"""Regenerates the seed corpora of fuzz/corpus/ from real traffic and real files.

A 3-node cluster of kvnode runs on loopback (free ports, data in a temporary directory) with a
recording proxy in front of every peer port and of node 1's RESP and HTTP ports. Then:

  fuzz_resp              the bytes redis-cli and redis-benchmark send, one file per connection
  fuzz_http              the bytes curl sends, one file per connection
  fuzz_peer_frame        the frames one node sends another (handshake, then messages), cut to
                         a few KiB, under the target's modes (see fuzz_peer_frame.cc)
  fuzz_replica_messages  programs that feed the captured message payloads to a replica, beside
                         client requests and ticks (the op codes of fuzz_replica_messages.cc)
  fuzz_wal_recovery      the log and snapshot files of the nodes' data directories after the
                         workload, whole, torn and with a damaged byte
  fuzz_legacy_json       the answers of the legacy API stand-in (tests/integration), and the
                         JSON bodies of the node's own GET replies
  fuzz_config            the command lines scripts/cluster.sh and the integration tests use

Files named regress-* are inputs that once found a bug; they are kept as they are.

Usage: fuzz/make_corpus.py [--bin build/bin] [--out fuzz/corpus]
Needs kvnode (make build), redis-cli, redis-benchmark and curl.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
FILE_BYTES_MAX = 4096  # corpus files stay small: libFuzzer mutates short inputs best


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Recorder:
    """A TCP proxy on a free port that records what clients send, one entry per connection."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = []  # bytearrays, in the order connections were accepted
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.upstream_port))
            except OSError:
                client.close()
                continue
            sent = bytearray()
            with self.lock:
                self.connections.append(sent)
                self.open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, sent), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(src, dst, record):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record is not None:
                    record += data
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def take(self):
        """The connections recorded so far, and forget them."""
        time.sleep(0.2)  # let the pumps see the last bytes
        with self.lock:
            out = [bytes(c) for c in self.connections]
            self.connections = []
        return out

    def close(self):
        self.sock.close()
        with self.lock:
            for s in self.open:
                try:
                    s.close()
                except OSError:
                    pass


class Cluster:
    def __init__(self, bin_dir, tmp):
        self.kvnode = os.path.join(bin_dir, "kvnode")
        self.tmp = tmp
        self.peer_real = [free_port() for _ in range(3)]
        self.peer_proxy = [Recorder(p) for p in self.peer_real]
        self.resp = [free_port() for _ in range(3)]
        self.http = [free_port() for _ in range(3)]
        self.cluster = ",".join("n%d@%s:%d" % (i + 1, HOST, r.port)
                                for i, r in enumerate(self.peer_proxy))
        self.procs = []
        self.argvs = []

    def argv(self, i):
        return [self.kvnode, "--id", "n%d" % (i + 1), "--cluster", self.cluster,
                "--peer-addr", "%s:%d" % (HOST, self.peer_real[i]),
                "--resp-addr", "%s:%d" % (HOST, self.resp[i]),
                "--http-addr", "%s:%d" % (HOST, self.http[i]),
                "--data-dir", os.path.join(self.tmp, "n%d" % (i + 1)),
                # Small, so that the workload leaves a snapshot beside the log.
                "--snapshot-wal-bytes", "6000"]

    def start(self):
        for i in range(3):
            argv = self.argv(i)
            self.argvs.append(argv)
            log = open(os.path.join(self.tmp, "n%d.log" % (i + 1)), "wb")
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with urllib.request.urlopen("http://%s:%d/ready" % (HOST, self.http[0]), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the cluster did not become ready; see the logs in " + self.tmp)

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def write(out_dir, target, name, data):
    d = os.path.join(out_dir, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames(stream):
    """Splits a peer stream into whole frames (length + crc + payload)."""
    out, at = [], 0
    while len(stream) - at >= 8:
        n = struct.unpack_from("<I", stream, at)[0]
        if len(stream) - at - 8 < n:
            break
        out.append(stream[at:at + 8 + n])
        at += 8 + n
    return out


def run(cmd, **kw):
    return subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


# ---- traffic ----

def resp_traffic(port):
    cli = ["redis-cli", "-h", HOST, "-p", str(port)]
    commands = [
        ["PING"], ["ECHO", "hello world"], ["SET", "greeting", "hello"], ["GET", "greeting"],
        ["SET", "k1", "v1", "NX"], ["SET", "k1", "v2", "XX"], ["SET", "k2", "v", "GET"],
        ["MSET", "a", "1", "b", "2", "c", "3"], ["MGET", "a", "b", "c", "missing"],
        ["EXISTS", "a", "b", "nope"], ["DEL", "a", "b"], ["GET", "a"], ["INFO"],
        ["GET", "bin"], ["SET", "utf8", "h\u00e9llo \u2603"],
        ["CLIENT", "SETNAME", "fuzz"], ["CLIENT", "ID"], ["HELLO", "2"], ["HELLO", "3"],
        ["SELECT", "0"], ["COMMAND", "COUNT"], ["CONFIG", "GET", "save"],
        ["NOSUCHCOMMAND", "x"], ["GET"], ["SET", "k"], ["QUIT"],
    ]
    for c in commands:
        run(cli + c)
    # Several commands on one connection, as redis-cli sends a piped script.
    run(cli, input=b"SET p1 one\nGET p1\nDEL p1\nGET p1\nMGET p1 p2\n")
    run(cli + ["-x", "SET", "from_stdin"], input=b"a value read from stdin")
    run(cli + ["-x", "SET", "bin"], input=b"\x00\x01\xff tab\t crlf\r\n")
    bench = ["redis-benchmark", "-h", HOST, "-p", str(port), "-c", "1", "-d", "16", "-r", "50"]
    run(bench + ["-n", "6", "-t", "ping,set,get,mset"])
    run(bench + ["-n", "12", "-P", "4", "-t", "set,get"])


def http_traffic(port):
    base = "http://%s:%d" % (HOST, port)
    curl = ["curl", "-s", "-o", "/dev/null"]
    requests = [
        ["-X", "POST", base + "/v1/my_key", "-H", "Content-Type: application/json",
         "-d", '{"value": "my_value"}'],
        [base + "/v1/my_key"],
        ["-X", "PUT", base + "/v1/k2?w=3", "-d", '{"value": "caf\u00e9 \\u00e9 \\ud83d\\ude00"}'],
        [base + "/v1/my_key?r=3"],
        ["-X", "DELETE", base + "/v1/my_key"],
        [base + "/v1/my_key"],
        [base + "/v1/key%20with%2Fslash%00nul"],
        ["-X", "POST", base + "/v1/bad", "-d", "not json"],
        ["-X", "POST", base + "/v1/bad", "-d", '{"other": 1}'],
        ["-X", "POST", base + "/v1/bad", "-d", '{"value": 42}'],
        ["-X", "POST", base + "/v1/q?w=0", "-d", '{"value": "x"}'],
        [base + "/v1/q?w=2"],
        [base + "/v1/"],
        ["-X", "PATCH", base + "/v1/x"],
        ["-I", base + "/v1/greeting"],
        [base + "/health"], [base + "/ready"], [base + "/metrics"], [base + "/cluster"],
        [base + "/nowhere"],
        ["-X", "POST", base + "/v1/chunked", "-H", "Transfer-Encoding: chunked",
         "-d", '{"value": "sent in chunks"}'],
        ["-X", "POST", base + "/v1/expect", "-H", "Expect: 100-continue",
         "-d", '{"value": "' + "e" * 1100 + '"}'],
        # Two requests on one kept-alive connection.
        [base + "/v1/greeting", base + "/health"],
        ["--http1.0", base + "/v1/greeting"],
    ]
    for r in requests:
        run(curl + r)


def workload(http_port):
    """Writes, overwrites and deletes through HTTP, enough to make the nodes snapshot."""
    base = "http://%s:%d/v1/" % (HOST, http_port)
    for i in range(60):
        key = "key:%02d" % (i % 20)
        body = json.dumps({"value": "value %d %s" % (i, "x" * (i % 7) * 10)}).encode()
        req = urllib.request.Request(base + key, data=body, method="PUT")
        urllib.request.urlopen(req, timeout=5).read()
        if i % 9 == 4:
            urllib.request.urlopen(urllib.request.Request(base + key, method="DELETE"), timeout=5)


def get_body(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---- corpora ----

def legacy_answers(out):
    """Real answers of the legacy API stand-in: a value, unicode, not found, 500, garbage."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    from legacy_server import LegacyServer  # noqa: E402 (the tests' own stand-in)

    def seed(status, body, limit=0):
        # Byte 0 picks the status (fuzz_legacy_json.cc): <160 is 200, 160-199 is 404, else
        # 100 + 4 * the byte after the limit byte.
        if status == 200:
            head = bytes([0, limit])
        elif status == 404:
            head = bytes([160, limit])
        else:
            head = bytes([200, limit, (status - 100) // 4])
        return head + body

    n = 0
    with LegacyServer() as legacy:
        url = legacy.url_template
        for key, value in [("k", "v"), ("u", "h\u00e9llo \u2603 \U0001F600"), ("e", ""),
                           ("q", 'quotes " and \\ and \n newline'), ("long", "L" * 300)]:
            legacy.set(key, value)
            status, body = get_body(url.replace("{key}", key))
            write(out, "fuzz_legacy_json", "legacy-%s" % key, seed(status, body))
            n += 1
        long_body = get_body(url.replace("{key}", "long"))[1]
        write(out, "fuzz_legacy_json", "legacy-limit", seed(200, long_body, 8))
        status, body = get_body(url.replace("{key}", "absent"))
        write(out, "fuzz_legacy_json", "legacy-404", seed(status, body))
        for mode in ("500", "garbage"):
            legacy.fail(mode)
            status, body = get_body(url.replace("{key}", "k"))
            write(out, "fuzz_legacy_json", "legacy-%s" % mode, seed(status, body))
            n += 1
        legacy.fail(None)
    return n + 2


def peer_seeds(out, streams):
    """Frame streams (mode byte 1: a handshake first; 3: checksums recomputed) and the messages
    in them as replica programs."""
    payloads = []
    written = 0
    for i, stream in enumerate(s for s in streams if s):
        fs = frames(stream)
        if not fs:
            continue
        cut, size = [], 0
        for f in fs:
            if size + len(f) > FILE_BYTES_MAX:
                break
            cut.append(f)
            size += len(f)
        if written < 6:
            write(out, "fuzz_peer_frame", "link-%d" % i, b"\x01" + b"".join(cut))
            write(out, "fuzz_peer_frame", "link-%d-fixcrc" % i, b"\x03" + b"".join(cut))
            written += 1
        payloads += [f[8:] for f in fs[1:] if len(f) - 8 <= 255]
    # One message alone, of each kind seen (the body's field number is the first byte after
    # from/to; a few distinct payload shapes are enough).
    seen = set()
    for p in payloads:
        shape = p[:6]
        if shape in seen or len(seen) >= 8:
            continue
        seen.add(shape)
        frame = struct.pack("<II", len(p), 0) + p
        write(out, "fuzz_peer_frame", "message-%d" % len(seen), b"\x02" + frame)

    # Replica programs: config bytes (self n1, N=3, R=2, W=2; then with the bridges), client
    # requests and ticks around the captured messages (op 0: u8 length, payload).
    def frame_op(p):
        return b"\x00" + bytes([len(p)]) + p
    client_put = b"\x04\x01\x00\x05hello\x00"   # put "a" = "hello", default quorums
    client_get = b"\x04\x00\x00\x00"            # get "a"
    client_del = b"\x04\x02\x01\x00"            # del "b"
    tick = b"\x03\x64\x00"                      # 100 ms
    answer = b"\x01\x00\x02\x00\x10\x00\x02hi"  # answer the first message sent, with a value
    configs = {"plain": b"\x00\x08", "pg-sync": b"\x08\x08", "pg-async-legacy": b"\x28\x08",
               "sloppy-n2": b"\x04\x01", "tiny-limits": b"\x40\x08"}
    chunks = [payloads[i:i + 12] for i in range(0, min(len(payloads), 96), 12)]
    n = 0
    for name, config in configs.items():
        for j, chunk in enumerate(chunks[:3]):
            prog = config + client_put + b"".join(frame_op(p) for p in chunk) + tick + client_get
            prog += answer + answer + tick + client_del + b"".join(frame_op(p) for p in chunk[:4])
            prog += b"\x05\x00\x00" + tick + b"\x06" + tick  # a bridge reply, a restart
            write(out, "fuzz_replica_messages", "traffic-%s-%d" % (name, j), prog)
            n += 1
    return n


def read_file(path):
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def wal_seeds(out, tmp):
    n = 0
    for node in ("n1", "n2", "n3"):
        d = os.path.join(tmp, node)
        wal = read_file(os.path.join(d, "wal")) or b""
        snap = read_file(os.path.join(d, "snapshot"))
        wal = wal[:FILE_BYTES_MAX]
        write(out, "fuzz_wal_recovery", "%s-wal" % node, b"\x00" + wal)
        if wal:
            write(out, "fuzz_wal_recovery", "%s-wal-torn" % node, b"\x00" + wal[:len(wal) * 2 // 3])
            damaged = bytearray(wal)
            damaged[len(damaged) // 2] ^= 0x40
            write(out, "fuzz_wal_recovery", "%s-wal-damaged" % node, b"\x00" + bytes(damaged))
            write(out, "fuzz_wal_recovery", "%s-wal-fixcrc" % node, b"\x04" + bytes(damaged))
            n += 3
        if snap is not None and len(snap) <= FILE_BYTES_MAX:
            write(out, "fuzz_wal_recovery", "%s-snapshot" % node, b"\x01" + snap)
            write(out, "fuzz_wal_recovery", "%s-snapshot-and-wal" % node,
                  b"\x02" + struct.pack("<I", len(snap)) + snap + wal[:1024])
            write(out, "fuzz_wal_recovery", "%s-snapshot-fixcrc" % node, b"\x05" + snap)
            n += 3
        n += 1
    return n


def config_seeds(out, argvs, tmp):
    n = 0
    for i, argv in enumerate(argvs):
        args = [a.replace(tmp, "data") for a in argv[1:]]  # no path of this machine in a seed
        write(out, "fuzz_config", "argv-n%d" % (i + 1), b"\x00".join(a.encode() for a in args))
        n += 1
    # scripts/cluster.sh's command line, and one given through the environment (KV_*).
    cluster = "n1@127.0.0.1:7001,n2@127.0.0.1:7002,n3@127.0.0.1:7003"
    seeds = {
        "cluster-sh": ["--id", "n1", "--cluster", cluster, "--resp-addr", "127.0.0.1:6381",
                       "--http-addr", "127.0.0.1:8001", "--data-dir", "data/n1"],
        "env": ["KV_ID=n2", "KV_CLUSTER=" + cluster, "KV_DATA_DIR=data/n2", "KV_FSYNC=batch",
                "--replicas", "3", "--read-quorum", "1", "--write-quorum", "3"],
        "bridges": ["--id", "n1", "--cluster", cluster, "--postgres",
                    "postgresql://kv@127.0.0.1:5432/kv", "--postgres-mode", "async",
                    "--legacy-url", "http://127.0.0.1:9000/items/{key}", "--legacy-field", "value"],
        "limits": ["--id", "n3", "--cluster", cluster, "--key-bytes-max", "16",
                   "--value-bytes-max", "1024", "--frame-bytes-max", "70000", "--vnodes", "8",
                   "--sloppy-quorum", "1", "--requests-in-flight-max", "4"],
        "help": ["--help"],
    }
    for name, args in seeds.items():
        write(out, "fuzz_config", name, b"\x00".join(a.encode() for a in args))
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--out", default=os.path.join(ROOT, "fuzz", "corpus"))
    args = ap.parse_args()

    # Regression inputs stay; everything else is regenerated.
    if os.path.isdir(args.out):
        for target in os.listdir(args.out):
            for name in os.listdir(os.path.join(args.out, target)):
                if not name.startswith("regress-"):
                    os.remove(os.path.join(args.out, target, name))

    tmp = tempfile.mkdtemp(prefix="kv-corpus-")
    cluster = Cluster(args.bin, tmp)
    try:
        cluster.start()
        resp = Recorder(cluster.resp[0])
        http = Recorder(cluster.http[0])
        workload(cluster.http[1])
        resp_traffic(resp.port)
        http_traffic(http.port)
        for i, conn in enumerate(c for c in resp.take() if c):
            write(args.out, "fuzz_resp", "redis-%02d" % i, conn[:FILE_BYTES_MAX])
        for i, conn in enumerate(c for c in http.take() if c):
            write(args.out, "fuzz_http", "curl-%02d" % i, conn[:FILE_BYTES_MAX])
        # The node's own JSON bodies, as legacy answers (status byte 0: 200, limit byte 0).
        for i, path in enumerate(["/v1/greeting", "/v1/utf8", "/v1/bin", "/v1/key:03",
                                  "/cluster", "/health"]):
            status, body = get_body("http://%s:%d%s" % (HOST, cluster.http[0], path))
            write(args.out, "fuzz_legacy_json", "kvnode-%d" % i,
                  bytes([0 if status == 200 else 160, 0]) + body)
        resp.close()
        http.close()
    finally:
        cluster.stop()
    streams = [s for r in cluster.peer_proxy for s in r.take()]
    for r in cluster.peer_proxy:
        r.close()

    counts = {
        "peer/replica": peer_seeds(args.out, streams),
        "wal": wal_seeds(args.out, tmp),
        "legacy": legacy_answers(args.out),
        "config": config_seeds(args.out, cluster.argvs, tmp),
    }
    shutil.rmtree(tmp)
    total = 0
    for target in sorted(os.listdir(args.out)):
        files = os.listdir(os.path.join(args.out, target))
        size = sum(os.path.getsize(os.path.join(args.out, target, f)) for f in files)
        total += size
        print("%-24s %3d files %7d bytes" % (target, len(files), size))
    print("total %d bytes" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
