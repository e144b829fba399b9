#!/usr/bin/env python3
"""make bench: the store beside Redis on this machine, in one run, with the same load.

Runs, one after another on loopback:
  redis-server without persistence, and again with appendonly + appendfsync always,
  a 3-node kvnode cluster (N=3, R=2, W=2, --fsync always),
each loaded with `redis-benchmark -c 50 -n REQUESTS -d 128 -r 100000 -t set,get` against one
server/node, then kvbench spreading the same load (all SETs, then all GETs) over the three nodes.
Prints a table of throughput and p50/p99 with ratios to Redis: GET against Redis without
persistence, SET against Redis with appendfsync always. Every server is stopped by its PID.
"""
import argparse, csv, io, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

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

def redis_benchmark(port, requests):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-n", str(requests),
                          "-d", "128", "-r", "100000", "-t", "set,get", "--csv"],
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

def run_cluster(bin_dir, tmp):
    peers, resps, https = [free_port() for _ in range(3)], [free_port() for _ in range(3)], [free_port() for _ in range(3)]
    cluster = ",".join(f"n{i+1}@127.0.0.1:{peers[i]}" for i in range(3))
    procs = []
    for i in range(3):
        log = open(os.path.join(tmp, f"n{i+1}.log"), "w")
        procs.append(subprocess.Popen([os.path.join(bin_dir, "kvnode"), "--id", f"n{i+1}", "--cluster", cluster,
                                       "--resp-addr", f"127.0.0.1:{resps[i]}", "--http-addr", f"127.0.0.1:{https[i]}",
                                       "--data-dir", os.path.join(tmp, f"n{i+1}"), "--fsync", "always"],
                                      stdout=log, stderr=log))
    try:
        for h in https:
            wait_ready(h)
    except Exception:
        stop(procs)
        raise
    return procs, resps

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--requests", type=int, default=200000)
    a = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing; run make deps")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for persist in (False, True):
            p, port = run_redis(tmp, persist)
            try:
                name = "redis (appendfsync always)" if persist else "redis (no persistence)"
                r = redis_benchmark(port, a.requests)
                rows += [(name, "redis-benchmark", op, *r[op], 0) for op in ("set", "get")]
            finally:
                stop([p])
        procs, resps = run_cluster(a.bin, tmp)
        try:
            r = redis_benchmark(resps[0], a.requests)
            rows += [("kv 3 nodes, fsync always", "redis-benchmark, one node", op, *r[op], 0) for op in ("set", "get")]
            rows.append(("kv 3 nodes, fsync always", "kvbench, all nodes", "set", *kvbench(a.bin, resps, a.requests, 0)))
            rows.append(("kv 3 nodes, fsync always", "kvbench, all nodes", "get", *kvbench(a.bin, resps, a.requests, 1)))
        finally:
            stop(procs)
    base = {("get"): next(r for r in rows if r[0] == "redis (no persistence)" and r[2] == "get")[3],
            ("set"): next(r for r in rows if r[0] == "redis (appendfsync always)" and r[2] == "set")[3]}
    print(f"{'system':28} {'load':26} {'op':4} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  ratio")
    for system, load, op, rps, p50, p99, errors in rows:
        ratio = "" if system.startswith("redis") else f"{rps / base[op]:.2f} of redis {'no persistence' if op == 'get' else 'appendfsync always'}"
        print(f"{system:28} {load:26} {op.upper():4} {rps:10.0f} {p50:8.3f} {p99:8.3f} {errors:7d}  {ratio}")

if __name__ == "__main__":
    main()
