"""A stand-in for the legacy HTTP API that kvnode reads through (--legacy-url), for the tests.

A real HTTP/1.1 server (http.server's ThreadingHTTPServer, keep-alive) on 127.0.0.1:
    GET /items/<percent-encoded key>  ->  200 {"value": "..."}  or  404 {"error": "not found"}
The JSON member is "value" unless another field name is given (kvnode's --legacy-field).

Driven from Python when it runs in the test's process, in a thread:

    with LegacyServer() as legacy:
        legacy.url_template            # http://127.0.0.1:PORT/items/{key}, for --legacy-url
        legacy.set("k", "v")           # GET /items/k answers 200 {"value": "v"}
        legacy.delay(0.3)              # every answer waits 300 ms (delay(0.3, key="k"): one key)
        legacy.fail("500")             # answers 500; "close": drops the connection unanswered;
                                       # "garbage": 200 with a body that is not JSON; None: heals
        legacy.requests("k")           # GET requests seen for k (counted on arrival)
        legacy.stop(); legacy.start()  # down (connections closed, port refused) and up again

or from anything else through control routes when run as a program
(`python3 legacy_server.py --port 8089`):
    PUT    /_control/items/<key>   body: the value        DELETE /_control/items/<key>
    POST   /_control/behaviour     {"delay_ms": 300, "fail": "500"|"close"|"garbage"|null,
                                    "key": "<only this key>" (optional)}
    GET    /_control/stats         {"requests": {key: count}, "total": n, "in_flight_max": n}
    POST   /_control/reset         values, behaviour and counters cleared

Standard library only.
"""

import argparse
import json
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
ITEMS_PREFIX = "/items/"
CONTROL_PREFIX = "/_control/"
IDLE_TIMEOUT_S = 30
FAIL_MODES = (None, "500", "close", "garbage")


def decode_key(path_part):
    return urllib.parse.unquote(path_part, errors="surrogateescape")


class _State:
    """Values, behaviour and counters, shared by the handler threads (one lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.values = {}
        self.delay_s = 0.0
        self.key_delay_s = {}
        self.fail_mode = None
        self.key_fail_mode = {}
        self.counts = {}
        self.total = 0
        self.in_flight = 0
        self.in_flight_max = 0

    def reset(self):
        with self.lock:
            self.values.clear()
            self.delay_s, self.fail_mode = 0.0, None
            self.key_delay_s.clear()
            self.key_fail_mode.clear()
            self.counts.clear()
            self.total = self.in_flight_max = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl uses it
    timeout = IDLE_TIMEOUT_S
    server_version = "legacy-stand-in/1"

    # -- items --

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path.startswith(CONTROL_PREFIX):
            return self._control("GET", path[len(CONTROL_PREFIX):])
        if not path.startswith(ITEMS_PREFIX):
            return self._send(404, {"error": "no such route"})
        key = decode_key(path[len(ITEMS_PREFIX):])
        owner = self.server.owner
        st = owner.state
        with st.lock:
            st.counts[key] = st.counts.get(key, 0) + 1
            st.total += 1
            st.in_flight += 1
            st.in_flight_max = max(st.in_flight_max, st.in_flight)
            delay = st.key_delay_s.get(key, st.delay_s)
            mode = st.key_fail_mode.get(key, st.fail_mode)
        try:
            if delay > 0 and owner.stopping.wait(delay):
                self.close_connection = True  # shutting down: answer nothing
                return None
            with st.lock:
                value = st.values.get(key)
            if mode == "close":
                self.close_connection = True
                return None
            if mode == "500":
                return self._send(500, {"error": "legacy stand-in told to fail"})
            if mode == "garbage":
                return self._send_raw(200, b"<html>not json</html>", "text/html")
            if value is None:
                return self._send(404, {"error": "not found"})
            return self._send(200, {owner.field: value})
        finally:
            with st.lock:
                st.in_flight -= 1

    # -- control (for use from another process) --

    def do_PUT(self):  # noqa: N802
        self._control("PUT", self.path.split("?", 1)[0][len(CONTROL_PREFIX):])

    def do_POST(self):  # noqa: N802
        self._control("POST", self.path.split("?", 1)[0][len(CONTROL_PREFIX):])

    def do_DELETE(self):  # noqa: N802
        self._control("DELETE", self.path.split("?", 1)[0][len(CONTROL_PREFIX):])

    def _control(self, method, route):
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.startswith(CONTROL_PREFIX):
            return self._send(405, {"error": "read-only route"})
        if route.startswith("items/") and method in ("PUT", "DELETE"):
            key = decode_key(route[len("items/"):])
            if method == "PUT":
                owner.set(key, body.decode("utf-8", "surrogateescape"))
            else:
                owner.remove(key)
            return self._send(200, {"ok": True})
        if route == "behaviour" and method == "POST":
            try:
                doc = json.loads(body or b"{}")
                owner.delay(doc.get("delay_ms", 0) / 1000.0, key=doc.get("key"))
                owner.fail(doc.get("fail"), key=doc.get("key"))
            except (ValueError, TypeError, AttributeError) as e:
                return self._send(400, {"error": str(e)})
            return self._send(200, {"ok": True})
        if route == "stats" and method == "GET":
            return self._send(200, owner.stats())
        if route == "reset" and method == "POST":
            owner.state.reset()
            return self._send(200, {"ok": True})
        return self._send(404, {"error": "no such control route"})

    # -- plumbing --

    def _send(self, status, doc):
        return self._send_raw(status, json.dumps(doc).encode(), "application/json")

    def _send_raw(self, status, data, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def setup(self):
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, fmt, *args):  # quiet: the tests print what matters
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A client that resets or abandons its connection is routine here, not worth a trace.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class LegacyServer:
    """The stand-in, served from a thread of this process. A context manager."""

    def __init__(self, port=0, field="value"):
        self.port = port
        self.field = field
        self.state = _State()
        self.stopping = threading.Event()
        self.httpd = None
        self.thread = None
        self._conns = set()
        self._conns_lock = threading.Lock()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def url_template(self):
        return "http://%s:%d%s{key}" % (HOST, self.port, ITEMS_PREFIX)

    def running(self):
        return self.httpd is not None

    def start(self):
        """Starts serving (again, on the same port after a stop). Values and counters are kept."""
        if self.httpd is not None:
            return self
        self.stopping.clear()
        self.httpd = _Server((HOST, self.port), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="legacy-stand-in", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stops listening and closes every open connection (kept-alive ones included), so that
        the next request anyone makes is refused. Delayed answers are abandoned."""
        if self.httpd is None:
            return
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(timeout=10)
        self.httpd, self.thread = None, None

    # -- what it serves --

    def set(self, key, value):
        with self.state.lock:
            self.state.values[key] = value

    def set_many(self, items):
        with self.state.lock:
            self.state.values.update(items)

    def remove(self, key):
        with self.state.lock:
            self.state.values.pop(key, None)

    def delay(self, seconds, key=None):
        """Every answer (or only key's, with key) waits this long; 0 removes the delay."""
        with self.state.lock:
            if key is None:
                self.state.delay_s = float(seconds)
            elif seconds:
                self.state.key_delay_s[key] = float(seconds)
            else:
                self.state.key_delay_s.pop(key, None)

    def fail(self, mode, key=None):
        """"500", "close" (drop the connection without an answer), "garbage" (200, not JSON),
        or None to answer normally again; for every key, or only key."""
        if mode not in FAIL_MODES:
            raise ValueError("fail mode must be one of %r" % (FAIL_MODES,))
        with self.state.lock:
            if key is None:
                self.state.fail_mode = mode
            elif mode:
                self.state.key_fail_mode[key] = mode
            else:
                self.state.key_fail_mode.pop(key, None)

    def heal(self):
        """No delay and no failure, for every key."""
        with self.state.lock:
            self.state.delay_s, self.state.fail_mode = 0.0, None
            self.state.key_delay_s.clear()
            self.state.key_fail_mode.clear()

    # -- what it saw --

    def requests(self, key):
        with self.state.lock:
            return self.state.counts.get(key, 0)

    def total(self):
        with self.state.lock:
            return self.state.total

    def reset_counts(self):
        with self.state.lock:
            self.state.counts.clear()
            self.state.total = self.state.in_flight_max = 0

    def stats(self):
        with self.state.lock:
            return {"requests": dict(self.state.counts), "total": self.state.total,
                    "in_flight_max": self.state.in_flight_max}

    def _track(self, conn, add):
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)


def _self_test():
    import http.client

    def get(port, path, timeout=5):
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    with LegacyServer() as legacy:
        port = legacy.port
        legacy.set("a b/ä", "hello")
        assert get(port, "/items/" + urllib.parse.quote("a b/ä", safe="")) == (200, b'{"value": "hello"}')
        assert get(port, "/items/missing")[0] == 404
        assert legacy.requests("a b/ä") == 1 and legacy.requests("missing") == 1
        legacy.fail("500")
        assert get(port, "/items/x")[0] == 500
        legacy.fail("close")
        try:
            get(port, "/items/x")
            raise AssertionError("the connection was not closed")
        except http.client.RemoteDisconnected:
            pass
        legacy.fail(None)
        legacy.delay(0.3, key="slow")
        t = time.monotonic()
        assert get(port, "/items/slow")[0] == 404 and time.monotonic() - t >= 0.3
        # a kept-alive connection is closed by stop(), and the port refuses afterwards
        keep = http.client.HTTPConnection(HOST, port, timeout=5)
        keep.request("GET", "/items/" + urllib.parse.quote("a b/ä", safe=""))
        keep.getresponse().read()
        legacy.stop()
        try:
            keep.request("GET", "/items/x")
            keep.getresponse()
            raise AssertionError("a kept-alive connection survived stop()")
        except (ConnectionError, http.client.HTTPException, OSError):
            pass
        try:
            get(port, "/items/x", timeout=2)
            raise AssertionError("port still served after stop()")
        except ConnectionRefusedError:
            pass
        legacy.start()
        assert legacy.port == port and get(port, "/items/" + urllib.parse.quote("a b/ä", safe=""))[0] == 200
        c = http.client.HTTPConnection(HOST, port, timeout=5)
        c.request("POST", "/_control/behaviour", body=json.dumps({"fail": "garbage"}))
        assert c.getresponse().read() == b'{"ok": true}'
        assert get(port, "/items/anything") == (200, b"<html>not json</html>")
        print("legacy stand-in: ok, stats %s" % legacy.stats())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--field", default="value", help="the JSON member holding the value")
    ap.add_argument("--self-test", action="store_true", help="check the stand-in itself and exit")
    args = ap.parse_args()
    if args.self_test:
        return _self_test()
    server = LegacyServer(port=args.port, field=args.field).start()
    print("legacy stand-in on %s (Ctrl-C stops it)" % server.url_template, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
