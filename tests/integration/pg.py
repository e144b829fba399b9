"""A real PostgreSQL server for the integration tests and the benchmark, on a throwaway directory.

    with pg.Postgres() as db:          # initdb in a temporary directory, then start
        db.url                         # postgresql://postgres@127.0.0.1:PORT/postgres
        db.sql("select 1")             # [("1",)]: rows of strings (None for NULL), through psql
        db.stop()                      # fast shutdown, by the postmaster's PID
        db.start()                     # again, on the same data directory and port

The server listens on 127.0.0.1 only, on a port that was free, with its unix socket in the
temporary directory; loopback connections are trusted (no password), fsync stays on. initdb
refuses to run as root: when this process is root, initdb and the server run as the `postgres`
system user that Debian's package creates (through runuser), on a directory handed to that
user; otherwise they run as the current user. The binaries are found under
/usr/lib/postgresql/<version>/bin (the newest version there), or on PATH.

The directory is removed and the server stopped at close(), at exit of the Python process, and,
should that process be killed, the server shuts itself down (parent-death signal).

Standard library only. Run this file to try it: it starts a server, runs a query, restarts it
and cleans up.
"""

import atexit
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import cluster  # noqa: E402 - beside this file

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DATABASE = "postgres"
OS_USER_WHEN_ROOT = "postgres"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
SQL_TIMEOUT_S = 60.0
NULL_MARK = "\x1a"    # how psql shows NULL here (an ASCII control that SQL text never holds)
FIELD_SEP = "\x1f"
RECORD_SEP = "\x1e"
LOG_TAIL_BYTES_MAX = 4000
PR_SET_PDEATHSIG = 1


class PgError(Exception):
    """PostgreSQL did not start or stop, or a statement failed (the message holds psql's)."""


def bin_dir():
    """The directory holding initdb, postgres and psql: the newest /usr/lib/postgresql/N/bin."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", d)
        if m and os.access(os.path.join(d, "initdb"), os.X_OK) \
                and os.access(os.path.join(d, "postgres"), os.X_OK):
            found.append(((int(m.group(1)), int(m.group(2) or 0)), d))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    raise PgError("no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin "
                  "nor on PATH; run scripts/deps.sh")


def available():
    """True if a PostgreSQL server can be started here (binaries, and the user when root)."""
    try:
        bin_dir()
        if os.geteuid() == 0:
            pwd.getpwnam(OS_USER_WHEN_ROOT)
        return True
    except (PgError, KeyError):
        return False


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM when the process that started it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def quote_literal(text):
    """A SQL string literal (standard_conforming_strings is on: only quotes are doubled)."""
    return "'" + text.replace("'", "''") + "'"


def bytea_literal(data):
    """A bytea literal for a str (UTF-8) or bytes value, safe for any byte."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return "'\\x%s'::bytea" % data.hex()


class Postgres:
    """One PostgreSQL server on loopback, in its own temporary directory.

    settings: extra server settings, name -> value, passed as -c name=value at every start.
    """

    def __init__(self, port=None, settings=None, log=print):
        self.bin = bin_dir()
        self.log = log
        self.settings = dict(settings or {})
        self.port = port or free_port()
        self.root = os.geteuid() == 0
        self.owner = pwd.getpwnam(OS_USER_WHEN_ROOT) if self.root else None
        self.workdir = tempfile.mkdtemp(prefix="kv-pg-")
        if self.owner:
            os.chown(self.workdir, self.owner.pw_uid, self.owner.pw_gid)
        self.data_dir = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "postgres.log")
        self.proc = None      # the process started (runuser when root, else the postmaster)
        self.pid = None       # the postmaster's PID while it runs
        self.initialised = False
        self.closed = False
        atexit.register(self.close)

    # -- life cycle --

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def url(self):
        return "postgresql://%s@%s:%d/%s" % (SUPERUSER, HOST, self.port, DATABASE)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s=START_TIMEOUT_S):
        """initdb on first use, then starts the server and waits until it accepts connections."""
        if self.closed:
            raise PgError("this server was closed")
        if self.running():
            raise PgError("PostgreSQL is already running (postmaster pid %s)" % self.pid)
        if not self.initialised:
            self._initdb()
        cmd = [os.path.join(self.bin, "postgres"), "-D", self.data_dir, "-p", str(self.port),
               "-k", self.workdir, "-c", "listen_addresses=" + HOST]
        for name, value in self.settings.items():
            cmd += ["-c", "%s=%s" % (name, value)]
        with open(self.log_path, "ab") as log:
            log.write(("==== start at %.3f: %s\n" % (time.time(), " ".join(cmd))).encode())
            log.flush()
            self.proc = subprocess.Popen(self._as_owner(cmd), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, cwd=self.workdir, close_fds=True,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode
                self.proc = None
                raise PgError("postgres exited with %s at start; its log:\n%s" % (code, self.log_tail()))
            if self._accepting():
                self.pid = self._postmaster_pid()
                return self
            time.sleep(0.05)
        self.stop(mode="immediate")
        raise PgError("postgres not ready after %.0f s; its log:\n%s" % (timeout_s, self.log_tail()))

    def stop(self, mode="fast", timeout_s=STOP_TIMEOUT_S):
        """Shuts the server down by signalling the postmaster: fast (SIGINT: clients are
        disconnected, then a clean checkpoint), smart (SIGTERM) or immediate (SIGQUIT: like a
        crash, recovery at the next start). Waits until the postmaster has exited."""
        if not self.running():
            self.proc, self.pid = None, None
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        pid = self.pid or self._postmaster_pid()
        try:
            if pid:
                os.kill(pid, sig)
            else:
                self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout_s)
        except ProcessLookupError:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.log("pg: postmaster %s ignored %s for %.0f s; SIGKILL" % (pid, mode, timeout_s))
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()
        if pid:
            _wait_gone(pid, timeout_s)
        self.proc, self.pid = None, None

    def restart(self, mode="fast"):
        self.stop(mode=mode)
        return self.start()

    def close(self):
        """Stops the server (fast) and removes its directory. Safe to call more than once."""
        if self.closed:
            return
        try:
            self.stop()
        finally:
            self.closed = True
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- SQL --

    def sql(self, statement, timeout_s=SQL_TIMEOUT_S, dbname=DATABASE):
        """Runs SQL through psql; returns the rows of the last statement as tuples of strings
        (None for NULL). Raises PgError with psql's message when it fails."""
        cmd = [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t",
               "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", dbname,
               "-v", "ON_ERROR_STOP=1", "-F", FIELD_SEP, "-R", RECORD_SEP,
               "-P", "null=" + NULL_MARK, "-f", "-"]
        try:
            done = subprocess.run(cmd, input=statement.encode(), capture_output=True,
                                  timeout=timeout_s, cwd=self.workdir,
                                  env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        except subprocess.TimeoutExpired:
            raise PgError("psql did not finish within %.0f s: %s" % (timeout_s, statement[:200]))
        if done.returncode != 0:
            raise PgError("psql exited %d: %s (statement: %s)"
                          % (done.returncode, done.stderr.decode("utf-8", "replace").strip(),
                             statement[:300]))
        out = done.stdout.decode("utf-8", "surrogateescape")
        if out.endswith("\n"):
            out = out[:-1]
        if not out:
            return []
        return [tuple(None if f == NULL_MARK else f for f in rec.split(FIELD_SEP))
                for rec in out.split(RECORD_SEP) if rec != ""]

    def scalar(self, statement):
        """The single value of a one-row, one-column query (None for NULL or no row)."""
        rows = self.sql(statement)
        return rows[0][0] if rows else None

    def table_exists(self, table):
        return self.scalar("select to_regclass(%s) is not null" % quote_literal(table)) == "t"

    # -- tools --

    def tool(self, name):
        """The path of one of this PostgreSQL's client programs (pgbench, pg_isready, ...)."""
        return os.path.join(self.bin, name)

    def log_tail(self, bytes_max=LOG_TAIL_BYTES_MAX):
        return cluster.file_tail(self.log_path, bytes_max)

    # -- internals --

    def _as_owner(self, cmd):
        """cmd as run by the data directory's owner: through runuser when this process is root."""
        return (["runuser", "-u", self.owner.pw_name, "--"] + cmd) if self.owner else cmd

    def _initdb(self):
        cmd = [os.path.join(self.bin, "initdb"), "-D", self.data_dir, "-U", SUPERUSER,
               "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
        done = subprocess.run(self._as_owner(cmd), stdin=subprocess.DEVNULL, capture_output=True,
                              cwd=self.workdir, timeout=120)
        if done.returncode != 0:
            raise PgError("initdb exited %d:\n%s%s" % (done.returncode,
                                                       done.stdout.decode("utf-8", "replace"),
                                                       done.stderr.decode("utf-8", "replace")))
        # Connections only over loopback TCP and the private socket, both trusted.
        with open(os.path.join(self.data_dir, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n"
                    "host all all 127.0.0.1/32 trust\n"
                    "host all all ::1/128 trust\n")
        self.initialised = True

    def _accepting(self):
        done = subprocess.run([self.tool("pg_isready"), "-q", "-h", HOST, "-p", str(self.port),
                               "-U", SUPERUSER, "-d", DATABASE, "-t", "1"],
                              stdin=subprocess.DEVNULL, capture_output=True, cwd=self.workdir)
        return done.returncode == 0

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None


def _wait_gone(pid, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.02)
    raise PgError("postmaster %d still there %.0f s after it was told to stop" % (pid, timeout_s))


def _self_test():
    started = time.monotonic()
    with Postgres() as db:
        print("pg: %s (postmaster %d) in %s, up in %.1f s" % (db.url, db.pid, db.workdir,
                                                               time.monotonic() - started))
        db.sql("create table t (k bytea primary key, v text); "
               "insert into t values (%s, 'a|b\nc'), (%s, null)" % (bytea_literal("k1"), bytea_literal(b"\xff")))
        rows = db.sql("select encode(k, 'hex'), v from t order by k")
        assert rows == [("6b31", "a|b\nc"), ("ff", None)], rows
        first = db.pid
        db.stop()
        try:
            db.sql("select 1", timeout_s=10)
            raise AssertionError("a query worked while the server was stopped")
        except PgError as e:
            print("pg: while stopped: %s" % str(e).splitlines()[0][:120])
        db.start()
        assert db.scalar("select count(*) from t") == "2"
        print("pg: restarted (postmaster %d, was %d); rows kept" % (db.pid, first))
        workdir = db.workdir
    assert not os.path.exists(workdir)
    print("pg: stopped and removed; ok (%.1f s)" % (time.monotonic() - started))


if __name__ == "__main__":
    sys.exit(_self_test())
