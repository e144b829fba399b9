#!/usr/bin/env python3
"""make bench: the store beside Redis on this machine, in one run, with the same load.

Runs, one after another on loopback:
  redis-server without persistence, and again with appendonly + appendfsync always,
  a 3-node kvnode cluster (N=3, R=2, W=2, --fsync always),
each loaded with `redis-benchmark -c 50 -n REQUESTS -d 128 -r 100000 -t set,get` against one
server/node, then kvbench spreading the same load (all SETs, then all GETs) over the three nodes.
Then the write-through section: a real PostgreSQL (tests/integration/pg.py) and a 3-node cluster
with --postgres (sync mode: a SET is acknowledged once two replicas and PostgreSQL have it),
loaded with redis-benchmark SET from C clients for about --pg-seconds; then pgbench, with the same
C clients (-j 2, -n, -M prepared, -T --pg-seconds), running the same version-guarded upsert into a
table of the same shape on the same server: what PostgreSQL alone does with that load.
Prints a table of throughput and p50/p99 with ratios: GET against Redis without persistence, SET
against Redis with appendfsync always, the write-through SET against pgbench. Every server is
stopped by its PID.
"""
import argparse, csv, glob, io, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def wait_port(port, timeout_s=20):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")

def wait_ready(http_port, timeout_s=20):
    import http.client
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=1)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"node on http {http_port} not ready after {timeout_s} s")

def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

def redis_benchmark(port, requests, tests="set,get", clients=50):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-n", str(requests),
                          "-d", "128", "-r", "100000", "-t", tests, "--csv"],
                         capture_output=True, text=True, timeout=900, check=True).stdout
    rows = {}
    for row in csv.DictReader(io.StringIO(out)):
        rows[row["test"].lower()] = (float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"]))
    return rows

def kvbench(bin_dir, targets, requests, read_ratio):
    out = subprocess.run([os.path.join(bin_dir, "kvbench"), "--targets", ",".join(f"127.0.0.1:{p}" for p in targets),
                          "--clients", "50", "--requests", str(requests), "--value-size", "128",
                          "--keyspace", "100000", "--read-ratio", str(read_ratio), "--json", "--quiet"],
                         capture_output=True, text=True, timeout=900).stdout
    r = json.loads(out)
    op = r["get" if read_ratio == 1 else "set"]
    return (op["ops_per_s"], op["latency_ms"]["p50"], op["latency_ms"]["p99"], op["errors"])

def run_redis(tmp, persist):
    port = free_port()
    d = tempfile.mkdtemp(dir=tmp)
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", d]
    args += ["--appendonly", "yes", "--appendfsync", "always"] if persist else ["--appendonly", "no"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return p, port
    except Exception:
        stop([p])
        raise

def run_cluster(bin_dir, tmp, extra_args=()):
    peers, resps, https = [free_port() for _ in range(3)], [free_port() for _ in range(3)], [free_port() for _ in range(3)]
    cluster = ",".join(f"n{i+1}@127.0.0.1:{peers[i]}" for i in range(3))
    procs = []
    for i in range(3):
        log = open(os.path.join(tmp, f"n{i+1}.log"), "w")
        procs.append(subprocess.Popen([os.path.join(bin_dir, "kvnode"), "--id", f"n{i+1}", "--cluster", cluster,
                                       "--resp-addr", f"127.0.0.1:{resps[i]}", "--http-addr", f"127.0.0.1:{https[i]}",
                                       "--data-dir", os.path.join(tmp, f"n{i+1}"), "--fsync", "always", *extra_args],
                                      stdout=log, stderr=log))
    try:
        for h in https:
            wait_ready(h)
    except Exception:
        stop(procs)
        raise
    return procs, resps

# The version-guarded upsert kvnode's PostgreSQL bridge sends for each write (node/pg_bridge.cc),
# with a random key of the same keyspace and a 128-byte value, one per transaction.
PGBENCH_SCRIPT = """\\set k random(0, 99999)
\\set counter random(0, 1000000)
insert into {table} as t (key, value, version_physical, version_counter, version_node, tombstone)
values (convert_to('key:' || lpad(:k::text, 12, '0'), 'UTF8'), convert_to('{value}', 'UTF8'),
        (extract(epoch from clock_timestamp()) * 1000)::bigint, :counter, 1, false)
on conflict (key) do update set value = excluded.value, version_physical = excluded.version_physical,
    version_counter = excluded.version_counter, version_node = excluded.version_node,
    tombstone = excluded.tombstone, updated_at = now()
where (t.version_physical, t.version_counter, t.version_node)
    < (excluded.version_physical, excluded.version_counter, excluded.version_node);
"""

def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else 0.0

def pgbench(db, tmp, table, clients, seconds):
    """pgbench running PGBENCH_SCRIPT: (tps, p50 ms, p99 ms, failed transactions)."""
    script = os.path.join(tmp, "upsert.sql")
    with open(script, "w") as f:
        f.write(PGBENCH_SCRIPT.format(table=table, value="x" * 128))
    prefix = os.path.join(tmp, "pgbench_log")
    done = subprocess.run([db.tool("pgbench"), "-h", "127.0.0.1", "-p", str(db.port), "-U", "postgres", "-n",
                           "-M", "prepared", "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", script,
                           "--log", "--log-prefix", prefix, "postgres"],
                          capture_output=True, text=True, timeout=seconds + 120, cwd=tmp)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench exited {done.returncode}: {done.stderr}{done.stdout}")
    tps = float(next(l for l in done.stdout.splitlines() if l.startswith("tps =")).split()[2])
    failed = next((int(l.split()[-2]) for l in done.stdout.splitlines()
                   if l.startswith("number of failed transactions")), 0)
    latencies = []  # per transaction: client, transaction, latency in us, ...
    for path in glob.glob(prefix + "*"):
        with open(path) as f:
            latencies += [int(line.split()[2]) / 1000.0 for line in f if line.strip()]
    latencies.sort()
    return tps, percentile(latencies, 0.5), percentile(latencies, 0.99), failed

def write_through_section(bin_dir, tmp, clients, seconds):
    """Rows: the cluster with --postgres (sync) under redis-benchmark SET, then pgbench."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
    import pg
    rows = []
    with pg.Postgres() as db:
        procs, resps = run_cluster(bin_dir, tempfile.mkdtemp(dir=tmp), ["--postgres", db.url])
        try:
            calibration = redis_benchmark(resps[0], 5000, "set", clients)["set"][0]
            requests = max(5000, min(2000000, int(calibration * seconds)))
            r = redis_benchmark(resps[0], requests, "set", clients)["set"]
        finally:
            stop(procs)
        stored = int(db.scalar("select count(*) from kv"))
        print(f"bench: write-through: {requests} SETs (-c {clients}, sized from a calibration run at "
              f"{calibration:.0f}/s), {stored} distinct keys in PostgreSQL", file=sys.stderr)
        rows.append(("kv 3 nodes + postgres sync", f"redis-benchmark -c {clients}", "set", *r, 0))
        db.sql("create table kv_pgbench (like kv including all)")
        tps, p50, p99, failed = pgbench(db, tmp, "kv_pgbench", clients, seconds)
        rows.append(("postgres alone", f"pgbench upsert -c {clients}", "set", tps, p50, p99, failed))
    return rows

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--sections", default="redis,kv,pg",
                    help="which to run: redis, kv (the cluster alone), pg (write-through against pgbench)")
    ap.add_argument("--pg-clients", type=int, default=50, help="clients of the write-through section")
    ap.add_argument("--pg-seconds", type=int, default=15, help="length of each write-through run")
    a = ap.parse_args()
    sections = set(a.sections.split(","))
    for tool in ("redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing; run make deps")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for persist in (False, True) if "redis" in sections else ():
            p, port = run_redis(tmp, persist)
            try:
                name = "redis (appendfsync always)" if persist else "redis (no persistence)"
                r = redis_benchmark(port, a.requests)
                rows += [(name, "redis-benchmark", op, *r[op], 0) for op in ("set", "get")]
            finally:
                stop([p])
        if "kv" in sections:
            procs, resps = run_cluster(a.bin, tempfile.mkdtemp(dir=tmp))
            try:
                r = redis_benchmark(resps[0], a.requests)
                rows += [("kv 3 nodes, fsync always", "redis-benchmark, one node", op, *r[op], 0) for op in ("set", "get")]
                rows.append(("kv 3 nodes, fsync always", "kvbench, all nodes", "set", *kvbench(a.bin, resps, a.requests, 0)))
                rows.append(("kv 3 nodes, fsync always", "kvbench, all nodes", "get", *kvbench(a.bin, resps, a.requests, 1)))
            finally:
                stop(procs)
        if "pg" in sections:
            rows += write_through_section(a.bin, tmp, a.pg_clients, a.pg_seconds)
    base = {op: next((r[3] for r in rows if r[0] == name and r[2] == op), None)
            for op, name in (("get", "redis (no persistence)"), ("set", "redis (appendfsync always)"))}
    pgbench_tps = next((r[3] for r in rows if r[0] == "postgres alone"), None)
    print(f"{'system':28} {'load':26} {'op':4} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  ratio")
    for system, load, op, rps, p50, p99, errors in rows:
        ratio = ""
        if system.startswith("kv 3 nodes + postgres") and pgbench_tps:
            ratio = f"{rps / pgbench_tps:.2f} of pgbench upsert"
        elif system.startswith("kv") and base[op]:
            ratio = f"{rps / base[op]:.2f} of redis {'no persistence' if op == 'get' else 'appendfsync always'}"
        print(f"{system:28} {load:26} {op.upper():4} {rps:10.0f} {p50:8.3f} {p99:8.3f} {errors:7d}  {ratio}")

if __name__ == "__main__":
    main()
