"""Real kvnode processes on loopback for the integration tests, and tiny clients to talk to them.

A Cluster starts N kvnode processes with free loopback ports and data directories in a temporary
directory, waits until each answers /ready, and stops (SIGTERM), kills (SIGKILL) or restarts any
one of them by PID. Each node's stderr goes to its own log file, appended across restarts, so
that a failure can show what the node said.

The clients are deliberately small: http_call speaks HTTP/1.1 with http.client, RespClient
speaks RESP2 over a plain socket (pipelining included). Neither retries anything: the tests
decide what an error means.

Standard library only.
"""

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback

HOST = "127.0.0.1"
READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 10.0
START_ATTEMPTS_MAX = 4
LOG_TAIL_BYTES_MAX = 6000
CURL_USER_AGENT = "curl/7.88.1"


def file_tail(path, bytes_max):
    """The last bytes_max bytes of a log file, from its first whole line, for error messages."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - bytes_max))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(no log: %s)" % e
    if size > bytes_max:
        text = text.partition("\n")[2]
    return text


# ---- checks and the test runner, shared by the integration tests ----


class CheckFailed(Exception):
    """A check of a test did not hold."""


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def check_eq(actual, expected, what):
    check(actual == expected, "%s: expected %r, got %r" % (what, expected, actual))


def run_test(ctx, test, after=None):
    """Runs one test, then `after` (a check every test must leave true); prints the test's name
    and what it proves (its docstring), then ok or the failure. True if it passed."""
    doc = " ".join(line.strip() for line in (test.__doc__ or "").strip().splitlines())
    print("%s: %s" % (test.__name__, doc), flush=True)
    started = time.monotonic()
    try:
        test(ctx)
        if after:
            after(ctx)
    except CheckFailed as e:
        print("  FAIL %s" % e, flush=True)
        return False
    except Exception:  # noqa: BLE001 - a crashed test is a failed test, with its traceback
        print("  FAIL with an exception:\n%s" % traceback.format_exc(), flush=True)
        return False
    print("  ok (%.1f s)" % (time.monotonic() - started), flush=True)
    return True


class ClusterError(Exception):
    """A node did not start, did not become ready, or did not stop."""


# ---- Ports ----


def free_ports(count):
    """Returns `count` distinct loopback ports that were free a moment ago.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out one port
    twice; they are closed before returning, which leaves a short window in which another
    process may take one (Cluster.start retries on that).
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# ---- Nodes ----


class Node:
    """One kvnode: its ports, data directory, log file and (while it runs) its process."""

    def __init__(self, index, workdir):
        self.index = index
        self.name = "n%d" % index
        self.data_dir = os.path.join(workdir, self.name)
        self.log_path = os.path.join(workdir, self.name + ".log")
        self.peer_port = 0
        self.resp_port = 0
        self.http_port = 0
        self.proc = None
        self.starts = 0

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, bytes_max=LOG_TAIL_BYTES_MAX):
        """The end of this node's stderr log, for error messages."""
        return file_tail(self.log_path, bytes_max)

    def __repr__(self):
        return "%s(pid=%s, resp=%d, http=%d)" % (self.name, self.pid, self.resp_port, self.http_port)


class Cluster:
    """N kvnode processes on loopback; use as a context manager so every process is stopped.

    extra_args are passed to every node (e.g. ["--request-timeout-ms", "1000"]).
    """

    def __init__(self, bin_dir, size=3, extra_args=(), keep_data=False, log=print):
        self.kvnode = os.path.join(bin_dir, "kvnode")
        if not os.access(self.kvnode, os.X_OK):
            raise ClusterError("no kvnode executable at %s" % self.kvnode)
        self.size = size
        self.extra_args = list(extra_args)
        self.keep_data = keep_data
        self.log = log
        self.workdir = tempfile.mkdtemp(prefix="kv-it-")
        self.nodes = [Node(i + 1, self.workdir) for i in range(size)]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(failed=exc_type is not None)
        return False

    # -- whole cluster --

    def start(self):
        """Starts every node on fresh ports and waits until all are ready; retries port clashes."""
        for attempt in range(1, START_ATTEMPTS_MAX + 1):
            self._assign_ports()
            for node in self.nodes:
                self._spawn(node)
            clash = self._wait_all_ready_or_clash()
            if not clash:
                return
            self.log("cluster: port taken (%s), retrying with new ports (attempt %d)" % (clash, attempt))
            for node in self.nodes:
                self.stop_node(node)
        raise ClusterError("could not find free ports in %d attempts" % START_ATTEMPTS_MAX)

    def close(self, failed=False):
        """Stops every node; removes the data unless asked to keep it or something failed."""
        for node in self.nodes:
            if node.running():
                self.stop_node(node)
        if self.keep_data or failed:
            self.log("cluster: data and logs kept in %s" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cluster_flag(self):
        return ",".join("%s@%s:%d" % (n.name, HOST, n.peer_port) for n in self.nodes)

    def wait_all_ready(self, timeout_s=READY_TIMEOUT_S):
        for node in self.nodes:
            self.wait_ready(node, timeout_s)

    # -- one node --

    def node(self, which):
        """A node by index (1-based), name or Node."""
        if isinstance(which, Node):
            return which
        if isinstance(which, str):
            return self.nodes[int(which.lstrip("n")) - 1]
        return self.nodes[which - 1]

    def others(self, which):
        me = self.node(which)
        return [n for n in self.nodes if n is not me]

    def start_node(self, which, wait_ready=True, timeout_s=READY_TIMEOUT_S):
        """Starts a stopped node on its data directory; new client ports only on a clash."""
        node = self.node(which)
        if node.running():
            raise ClusterError("%s is already running (pid %d)" % (node.name, node.pid))
        for _ in range(START_ATTEMPTS_MAX):
            self._spawn(node)
            clash = self._wait_listening_or_clash(node, timeout_s)
            if not clash:
                break
            self.log("cluster: %s could not bind (%s); retrying" % (node.name, clash))
            self._reassign_client_ports(node)
            time.sleep(0.5)  # a peer port held by a closing connection frees itself shortly
        else:
            raise ClusterError("%s could not bind its ports:\n%s" % (node.name, node.log_tail()))
        if wait_ready:
            self.wait_ready(node, timeout_s)
        return node

    def stop_node(self, which, grace_s=STOP_GRACE_S):
        """SIGTERM, wait up to grace_s, then SIGKILL. Returns the exit code."""
        node = self.node(which)
        if not node.running():
            return self._reap(node)
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.log("cluster: %s ignored SIGTERM for %.0f s, sending SIGKILL" % (node.name, grace_s))
            node.proc.kill()
            node.proc.wait()
        return self._reap(node)

    def kill_node(self, which):
        """SIGKILL: the process gets no chance to flush or drain anything."""
        node = self.node(which)
        if node.running():
            node.proc.kill()
            node.proc.wait()
        return self._reap(node)

    def restart_node(self, which, hard=False, wait_ready=True):
        """Stops (SIGTERM, or SIGKILL if hard) and starts the node again on the same data."""
        node = self.node(which)
        if hard:
            self.kill_node(node)
        else:
            self.stop_node(node)
        return self.start_node(node, wait_ready=wait_ready)

    def wait_ready(self, which, timeout_s=READY_TIMEOUT_S):
        """Polls /ready until it answers 200; raises with the node's log on timeout or exit."""
        node = self.node(which)
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not node.running():
                raise ClusterError("%s exited with code %s before it was ready; its log:\n%s"
                                   % (node.name, node.proc.returncode if node.proc else None,
                                      node.log_tail()))
            try:
                status, _, body = http_call(node.http_port, "GET", "/ready", timeout_s=1.0)
                if status == 200:
                    return
                last = "%d %s" % (status, body.decode("utf-8", "replace"))
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise ClusterError("%s not ready after %.0f s (last /ready: %s); its log:\n%s"
                           % (node.name, timeout_s, last, node.log_tail()))

    # -- internals --

    def _assign_ports(self):
        ports = free_ports(3 * self.size)
        for i, node in enumerate(self.nodes):
            node.peer_port, node.resp_port, node.http_port = ports[3 * i:3 * i + 3]

    def _reassign_client_ports(self, node):
        node.resp_port, node.http_port = free_ports(2)

    def _command(self, node):
        return [self.kvnode, "--id", node.name, "--cluster", self.cluster_flag(),
                "--resp-addr", "%s:%d" % (HOST, node.resp_port),
                "--http-addr", "%s:%d" % (HOST, node.http_port),
                "--data-dir", node.data_dir] + self.extra_args

    def _spawn(self, node):
        os.makedirs(node.data_dir, exist_ok=True)
        node.starts += 1
        with open(node.log_path, "ab") as log:
            log.write(("==== start %d of %s at %.3f: %s\n"
                       % (node.starts, node.name, time.time(), " ".join(self._command(node))))
                      .encode())
            log.flush()
            node.proc = subprocess.Popen(self._command(node), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, close_fds=True)

    def _reap(self, node):
        code = node.proc.returncode if node.proc else None
        if node.proc is not None:
            with open(node.log_path, "ab") as log:
                log.write(("==== %s (pid %d) exited with %s at %.3f\n"
                           % (node.name, node.proc.pid, code, time.time())).encode())
        node.proc = None
        return code

    def _bind_failure(self, node):
        """The listener that failed to bind, if the node died of a port clash."""
        if node.running():
            return None
        for line in node.log_tail().splitlines()[::-1]:
            if "cannot listen" in line:
                return line.strip()
            if line.startswith("==== start"):
                break
        return None

    def _wait_listening_or_clash(self, node, timeout_s):
        """Waits until the node answers /health; returns the clash if it died of one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not node.running():
                clash = self._bind_failure(node)
                self._reap(node)
                if clash:
                    return clash
                raise ClusterError("%s exited at start; its log:\n%s" % (node.name, node.log_tail()))
            try:
                if http_call(node.http_port, "GET", "/health", timeout_s=1.0)[0] == 200:
                    return None
            except OSError:
                pass
            time.sleep(0.05)
        raise ClusterError("%s did not answer /health within %.0f s; its log:\n%s"
                           % (node.name, timeout_s, node.log_tail()))

    def _wait_all_ready_or_clash(self):
        for node in self.nodes:
            clash = self._wait_listening_or_clash(node, READY_TIMEOUT_S)
            if clash:
                return clash
        self.wait_all_ready()
        return None


# ---- HTTP ----


def http_call(port, method, path, body=None, headers=None, timeout_s=5.0, curl_like=False):
    """One HTTP/1.1 request on a fresh connection. Returns (status, headers dict, body bytes).

    With curl_like, the request carries the header set curl sends (User-Agent, Accept: */*, no
    Accept-Encoding), so it is byte for byte what the seed project's curl examples send.
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.putrequest(method, path, skip_accept_encoding=curl_like)
        if curl_like:
            conn.putheader("User-Agent", CURL_USER_AGENT)
            conn.putheader("Accept", "*/*")
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        res = conn.getresponse()
        data = res.read()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, data
    finally:
        conn.close()


def http_json(port, method, path, value=None, timeout_s=5.0):
    """A /v1 call with a {"value": ...} body when value is given. Returns (status, parsed JSON)."""
    body = None if value is None else json.dumps({"value": value})
    headers = {"Content-Type": "application/json"} if body is not None else None
    status, _, data = http_call(port, method, path, body, headers, timeout_s)
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        return status, {"unparsed": data.decode("utf-8", "replace")}


class HttpClient:
    """A keep-alive HTTP connection to one port that reopens itself when the server closed it.

    Before each request the socket is checked for a pending close, so that a request is not
    written into a connection the server already dropped (which would make its outcome look
    unknown when it was never sent).
    """

    def __init__(self, port, timeout_s=5.0):
        self.port = port
        self.timeout_s = timeout_s
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def connect(self):
        """Opens the connection if needed; raises ConnectionRefusedError if nobody listens."""
        if self.conn is not None and self.conn.sock is not None and not _peer_closed(self.conn.sock):
            return
        self.close()
        self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
        self.conn.connect()

    def request(self, method, path, body=None, headers=None):
        """Sends one request on the open connection. Returns (status, body bytes)."""
        hdrs = dict(headers or {})
        try:
            self.conn.request(method, path, body=body, headers=hdrs)
            res = self.conn.getresponse()
            return res.status, res.read()
        except BaseException:
            self.close()
            raise


# ---- RESP ----


class RespError(Exception):
    """An error reply (-ERR ..., -QUORUM ...). Returned as a value by read_reply, raised by call."""

    @property
    def code(self):
        return str(self).split(" ", 1)[0]

    def __eq__(self, other):
        return isinstance(other, RespError) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


class RespProtocolError(Exception):
    """The server sent bytes that are not RESP2."""


def encode_command(*args):
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespClient:
    """A RESP2 connection. Bulk strings come back as str (utf-8, surrogateescape), nil as None,
    integers as int, simple strings as str, arrays as lists, errors as RespError values."""

    def __init__(self, port, timeout_s=5.0, host=HOST):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def peer_closed(self):
        return _peer_closed(self.sock)

    def send(self, *commands):
        """Writes several commands at once (a pipeline); each command is a tuple of arguments."""
        self.sock.sendall(b"".join(encode_command(*c) for c in commands))

    def call(self, *args):
        """One command, one reply; an error reply is raised as RespError."""
        self.send(args)
        reply = self.read_reply()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def pipeline(self, commands):
        """Sends every command, then reads as many replies, in order (errors as values)."""
        self.send(*commands)
        return [self.read_reply() for _ in commands]

    def read_reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "surrogateescape")
        if kind == b"-":
            return RespError(rest.decode("utf-8", "surrogateescape"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exactly(n + 2)
            if data[-2:] != b"\r\n":
                raise RespProtocolError("bulk string not ended by CRLF")
            return data[:-2].decode("utf-8", "surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise RespProtocolError("unexpected reply type %r in %r" % (kind, line[:80]))

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("server closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill()

    def _exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


def _peer_closed(sock):
    """True if the peer closed or reset the connection (readable with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


# ---- redis-cli ----


def redis_cli(port, *args, stdin=None, timeout_s=30.0):
    """Runs the real redis-cli against a node. Returns (exit code, stdout, stderr) as text."""
    cmd = ["redis-cli", "-h", HOST, "-p", str(port)] + [str(a) for a in args]
    done = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout_s)
    return (done.returncode, done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"))
