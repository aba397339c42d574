#!/usr/bin/env python
"""``gluon-triplet serve`` under load: requests/s, latency, errors and memory, against a loop
that runs ``gluon-triplet search`` once per query.

Starts ``gluon-triplet serve INDEX_DIR -q`` on 127.0.0.1 (a free port; nothing else is ever
contacted), sends ``--warmup`` requests, then ``--requests`` more from ``--clients``
concurrent clients (threads, one keep-alive connection each), each a POST /search?k=K of
a picture of the queries. Then ``--cli-queries`` runs of ``gluon-triplet search INDEX_DIR
--query FILE -k K --json``, one process per query, as a user scripting the CLI would.

Printed: requests/s (wall), requests per CPU-second of the server process (user + system,
from /proc), p50/p99/max latency, the count of non-200 answers or failed connections, the
server's RSS after start, after warm-up and at the end (growth after warm-up in %), and the
same rates for the CLI loop (CPU of the child processes). The queries are test pictures of
the index's dataset written as PNGs (``--dataset``, default fashion-mnist).

Targets: 0 errors, p99 < 100 ms, RSS growth after warm-up < 10%, and
requests per CPU-second >= 5x the CLI loop's. A miss prints MISS; the exit status is 0.

Usage::

    python bench/serve.py fashion-index                     # 2,000 requests, 8 clients
    python bench/serve.py fashion-index --requests 200 --cli-queries 2   # a smoke test
"""

import argparse
import http.client
import io
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HOST = "127.0.0.1"  # the only address this benchmark talks to


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("index_dir")
    p.add_argument("--requests", type=int, default=2000, help="timed requests (default 2000)")
    p.add_argument("--warmup", type=int, default=200, help="requests before timing (200)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("-k", type=int, default=10, help="neighbours per request (default 10)")
    p.add_argument("--dataset", default="fashion-mnist", help="queries: its test pictures")
    p.add_argument("--queries", type=int, default=200, help="distinct query pictures (200)")
    p.add_argument("--cli-queries", type=int, default=5, help="runs of `search` (default 5)")
    p.add_argument("--workers", type=int, default=1, help="serve --workers (default 1)")
    args = p.parse_args()
    if not (0 < args.requests <= 100_000 and 0 < args.clients <= 64 and args.warmup >= 0):
        p.error("--requests must be 1..100000 and --clients 1..64")
    return args


def query_pictures(dataset, n):
    """PNG bytes of the first ``n`` test samples of ``dataset``."""
    from PIL import Image

    from gluon_triplet import load_dataset

    x = load_dataset(dataset).x_test[:n]
    out = []
    for sample in x:
        a = (np.asarray(sample) * 255).round().astype(np.uint8)
        a = a[0] if a.ndim == 3 and a.shape[0] == 1 else a
        a = np.moveaxis(a, 0, -1) if a.ndim == 3 else a
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def multipart(data):
    boundary = "benchserveboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def process_tree(pid):
    """``pid`` and its descendants (uvicorn's workers)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    children = [int(p) for p in out.stdout.split()]
    return [pid] + [q for c in children for q in process_tree(c)]


def rss_mib(pid):
    total = 0
    for p in process_tree(pid):
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pid):
    total = 0.0
    for p in process_tree(pid):
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def start_server(index_dir, workers):
    port = free_port()
    cmd = [sys.executable, "-m", "gluon_triplet", "serve", index_dir, "--host", HOST]
    cmd += ["--port", str(port), "--workers", str(workers), "-q"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("serve did not start within 10 minutes")


def load(port, bodies, total, clients, k):
    """Send ``total`` requests from ``clients`` threads; returns (latencies s, errors)."""
    latencies, errors, lock = [], [0], threading.Lock()
    counter = iter(range(total))

    def client():
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body, boundary = bodies[i % len(bodies)]
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
            t = time.perf_counter()
            try:
                conn.request("POST", f"/search?k={k}", body, headers)
                response = conn.getresponse()
                answer = response.read()
                ok = response.status == 200 and len(json.loads(answer)["neighbours"]) == k
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                errors[0] += not ok
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return np.array(latencies), errors[0]


def cli_loop(index_dir, pictures, n, k):
    """``n`` runs of `gluon-triplet search` on one picture each: (wall s, CPU s)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, data in enumerate(pictures[:n]):
            files.append(os.path.join(tmp, f"q{i}.png"))
            with open(files[-1], "wb") as f:
                f.write(data)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        for path in files:
            cmd = [sys.executable, "-m", "gluon_triplet", "search", index_dir, "--query", path]
            subprocess.run([*cmd, "-k", str(k), "--json", "-q"], check=True, capture_output=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    args = parse_args()
    pictures = query_pictures(args.dataset, args.queries)
    bodies = [multipart(p) for p in pictures]
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"CPUs usable: {len(os.sched_getaffinity(0))}", flush=True)  # fmt: skip
    proc, port = start_server(args.index_dir, args.workers)
    try:
        rss_start = rss_mib(proc.pid)
        load(port, bodies, args.warmup, args.clients, args.k)
        rss_warm = rss_mib(proc.pid)
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        latencies, errors = load(port, bodies, args.requests, args.clients, args.k)
        wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        rss_end = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    cli_wall, cli_cpu = cli_loop(args.index_dir, pictures, args.cli_queries, args.k)

    p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
    growth = (rss_end - rss_warm) / rss_warm * 100
    per_cpu, cli_per_cpu = args.requests / cpu, args.cli_queries / cli_cpu
    rows = [
        ("requests", f"{args.requests} from {args.clients} clients, k={args.k}"),
        ("requests/s (wall)", f"{args.requests / wall:.1f}"),
        ("requests per server CPU-second", f"{per_cpu:.1f}"),
        ("latency p50 / p99 / max ms", f"{p50:.1f} / {p99:.1f} / {latencies.max() * 1000:.1f}"),
        ("errors", f"{errors}"),
        ("server RSS MiB: start / warm / end", f"{rss_start:.0f} / {rss_warm:.0f} / {rss_end:.0f}"),
        ("RSS growth after warm-up", f"{growth:+.1f}%"),
        ("CLI loop queries/s (wall)", f"{args.cli_queries / cli_wall:.3f}"),
        ("CLI loop queries per CPU-second", f"{cli_per_cpu:.3f}"),
        ("server / CLI per CPU-second", f"{per_cpu / cli_per_cpu:.0f}x"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    checks = [
        ("0 errors", errors == 0),
        ("p99 < 100 ms", p99 < 100),
        ("RSS growth < 10%", growth < 10),
        (">= 5x the CLI loop per CPU", per_cpu >= 5 * cli_per_cpu),
    ]
    print("targets: " + ", ".join(f"{name} {'met' if ok else 'MISS'}" for name, ok in checks))


if __name__ == "__main__":
    main()
