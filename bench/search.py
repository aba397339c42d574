#!/usr/bin/env python
"""Nearest-neighbour search with :class:`gluon_triplet.search.index.Index`: build time, queries/s,
recall against exact search, and peak memory.

Vectors. Fashion-MNIST's 60,000 training images as 128-d unit vectors: by default the
first 128 PCA components of the pixels, L2-normalised (the default recipe's embeddings are
128-d and unit-norm too); ``--run RUN_DIR`` embeds them with a trained run's net instead.
The 10,000 test images, embedded the same way, are the queries.

Sections:

60k   the 60k training vectors; exact (flat) search, and HNSW / IVF with their defaults.
1M    1,000,000 vectors: the 60k plus jittered copies (each copy = a training vector plus
      Gaussian noise whose norm is about the median nearest-neighbour distance among the
      originals, renormalised), so near-duplicates do not make the neighbours trivial.
      Exact vs HNSW vs IVF, with their default parameters.

Each (section, kind) runs in a fresh subprocess, so its peak RSS (``resource.getrusage``)
is its own: the vectors it loaded plus the index. Recall@10 is the mean fraction of the
exact top 10 that the approximate top 10 contains; the speed-up is the approximate kind's
queries/s over the exact one's, measured in the same run.

Target (set when the index was built): at 1M, the approximate default reaches recall@10 >=
0.95 at >= 10x the exact queries/s. A missed target prints MISS; the exit status is still 0.

Usage::

    python bench/search.py                  # both sections, minutes
    python bench/search.py --only 60k       # seconds
    python bench/search.py --quick          # 20k vectors, a smoke test
    python bench/search.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

KINDS = ("flat", "hnsw", "ivf")
K = 10
TARGET_RECALL = 0.95
TARGET_SPEEDUP = 10.0


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fashion_vectors(run_dir, dim):
    from gluon_triplet import load_dataset

    data = load_dataset("fashion-mnist")
    if run_dir:
        from gluon_triplet import embed, load_run

        net, _ = load_run(run_dir)
        return embed(net, data.x_train), embed(net, data.x_test), f"embeddings of {run_dir}"
    from sklearn.decomposition import PCA

    x = data.x_train.reshape(len(data.x_train), -1)
    q = data.x_test.reshape(len(data.x_test), -1)
    pca = PCA(dim, random_state=0).fit(x)

    def unit(a):
        a = pca.transform(a).astype(np.float32)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    return unit(x), unit(q), f"PCA-{dim} of the pixels, L2-normalised"


def jittered(base, total, seed=0):
    """``base`` plus jittered copies up to ``total`` rows, renormalised to unit length."""
    from gluon_triplet.search.index import Index

    # Noise norm ~ the median distance from a vector to its nearest other vector.
    sample = base[np.random.default_rng(seed).choice(len(base), 2000, replace=False)]
    d, _ = Index.from_embeddings(base).search_embeddings(sample, 2)
    scale = float(np.median(np.sqrt(d[:, 1])))
    rng = np.random.default_rng(seed)
    out = np.empty((total, base.shape[1]), dtype=np.float32)
    out[: len(base)] = base
    for start in range(len(base), total, len(base)):
        stop = min(total, start + len(base))
        src = base[: stop - start]
        noise = rng.standard_normal(src.shape, dtype=np.float32) * (scale / np.sqrt(base.shape[1]))
        copy = src + noise
        out[start:stop] = copy / np.linalg.norm(copy, axis=1, keepdims=True)
    return out, scale


def _peak_rss() -> int:
    """This process's peak resident bytes since it started: ``VmHWM`` on Linux, where
    ``ru_maxrss`` of a forked child starts from its parent's resident size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args):
    """One index: build, search, report JSON on stdout (runs in its own process)."""
    from gluon_triplet.search.index import Index

    base = np.load(args.base)
    queries = np.load(args.queries)
    rss_inputs = _peak_rss()
    params = json.loads(args.params)
    t0 = time.perf_counter()
    index = Index.from_embeddings(base, kind=args.kind, **params)
    build = time.perf_counter() - t0
    del base
    index.search_embeddings(queries[:10], K)  # warm-up (thread pool, caches)
    t0 = time.perf_counter()
    _, ids = index.search_embeddings(queries, K)
    search = time.perf_counter() - t0
    np.save(args.ids_out, ids)
    row = {
        "kind": args.kind,
        "params": dict(index.params),
        "build_s": build,
        "search_s": search,
        "qps": len(queries) / search,
        "peak_rss": _peak_rss(),
        "rss_inputs": rss_inputs,
        "sweep": [],
    }
    # Search-time parameters change nothing built: measure other values on the same index.
    for key, values in json.loads(args.sweep or "{}").items():
        default = index.params[key]
        for value in values:
            if value == default:
                continue
            index.set_search_params(**{key: value})
            t0 = time.perf_counter()
            _, other = index.search_embeddings(queries, K)
            seconds = time.perf_counter() - t0
            path = f"{args.ids_out[:-4]}-{key}{value}.npy"
            np.save(path, other)
            row["sweep"].append(
                {"params": dict(index.params), "qps": len(queries) / seconds, "ids": path}
            )
    print(json.dumps(row))


def run_child(kind, base_path, queries_path, ids_path, params, sweep):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--kind",
        kind,
        "--base",
        base_path,
        "--queries",
        queries_path,
        "--ids-out",
        ids_path,
        "--params",
        json.dumps(params),
        "--sweep",
        json.dumps(sweep),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def recall_at_k(ids, exact):
    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ids, exact)]
    return float(np.mean(hits)) / exact.shape[1]


def section(name, base, queries, workdir, params_by_kind, sweeps, kinds=KINDS):
    base_path = os.path.join(workdir, f"{name}-base.npy")
    queries_path = os.path.join(workdir, f"{name}-queries.npy")
    np.save(base_path, base)
    np.save(queries_path, queries)
    rows, exact = [], None
    for kind in ("flat",) + tuple(k for k in kinds if k != "flat"):
        ids_path = os.path.join(workdir, f"{name}-{kind}-ids.npy")
        log(f"[{name}] {kind}: building over {len(base):,} x {base.shape[1]} ...")
        row = run_child(
            kind,
            base_path,
            queries_path,
            ids_path,
            params_by_kind.get(kind, {}),
            sweeps.get(kind, {}) if kind != "flat" else {},
        )
        ids = np.load(ids_path)
        if kind == "flat":
            exact = ids
            row["recall_at_10"] = 1.0
        else:
            row["recall_at_10"] = recall_at_k(ids, exact)
        exact_qps = rows[0]["qps"] if rows else row["qps"]
        row["speedup"] = row["qps"] / exact_qps
        row.update(section=name, n=len(base), queries=len(queries), default=True)
        log(
            f"[{name}] {kind}: build {row['build_s']:.1f}s, {row['qps']:,.0f} q/s, "
            f"recall@10 {row['recall_at_10']:.4f}, peak RSS {row['peak_rss'] / 2**20:,.0f} MiB"
        )
        rows.append(row)
        for extra in row.pop("sweep"):
            rows.append(
                dict(
                    row,
                    params=extra["params"],
                    qps=extra["qps"],
                    speedup=extra["qps"] / exact_qps,
                    recall_at_10=recall_at_k(np.load(extra["ids"]), exact),
                    default=False,
                )
            )
    return rows


def table(rows):
    head = (
        f"{'vectors':>9} {'index':<5} {'parameters (* default)':<38} {'build s':>8} "
        f"{'queries/s':>10} {'x exact':>8} {'recall@10':>9} {'peak RSS MiB':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        params = ("* " if r.get("default", True) else "  ") + params
        build = f"{r['build_s']:>8.1f}" if r.get("default", True) else f"{'':>8}"
        lines.append(
            f"{r['n']:>9,} {r['kind']:<5} {params:<38} {build} {r['qps']:>10,.0f} "
            f"{r['speedup']:>8.1f} {r['recall_at_10']:>9.4f} {r['peak_rss'] / 2**20:>12,.0f}"
        )
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        p = argparse.ArgumentParser()
        for flag in ("--kind", "--base", "--queries", "--ids-out", "--params", "--sweep"):
            p.add_argument(flag)
        p.add_argument("--child", action="store_true")
        return child(p.parse_args(argv))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=("60k", "1M"), default=["60k", "1M"])
    p.add_argument("--quick", action="store_true", help="20k vectors only, a smoke test")
    p.add_argument("--run", metavar="RUN_DIR", help="embed with a trained run instead of PCA")
    p.add_argument("--queries", type=int, default=1000, help="queries per section (default 1000)")
    p.add_argument("--size", type=int, default=1_000_000, help="rows of the large section")
    p.add_argument("--hnsw", default="{}", help='HNSW parameters as JSON, e.g. {"ef_search": 64}')
    p.add_argument("--ivf", default="{}", help='IVF parameters as JSON, e.g. {"nprobe": 32}')
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also measure other search-time settings on the same indexes "
        "(HNSW ef_search, IVF nprobe): the recall / speed trade-off",
    )
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="index kinds to measure (flat, the reference, always runs)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    params = {"hnsw": json.loads(args.hnsw), "ivf": json.loads(args.ivf)}
    sweeps = {}
    if args.sweep:
        sweeps = {
            "hnsw": {"ef_search": [16, 32, 64, 128, 256]},
            "ivf": {"nprobe": [4, 8, 16, 32, 64]},
        }

    import faiss

    t0 = time.perf_counter()
    train, test, source = fashion_vectors(args.run, 128)
    queries = test[: args.queries]
    log(f"vectors: Fashion-MNIST, {source} ({time.perf_counter() - t0:.1f}s)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-search-") as workdir:
        if args.quick:
            rows += section("20k", train[:20_000], queries, workdir, params, sweeps, args.kinds)
        else:
            if "60k" in args.only:
                rows += section("60k", train, queries, workdir, params, sweeps, args.kinds)
            if "1M" in args.only:
                big, scale = jittered(train, args.size)
                log(f"1M: {len(big):,} vectors, jitter norm ~ {scale:.3f}")
                rows += section("1M", big, queries, workdir, params, sweeps, args.kinds)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(faiss threads {faiss.omp_get_max_threads()}), Python {platform.python_version()}, "
        f"faiss {faiss.__version__}; {len(queries)} queries, k={K}; vectors: {source}"
    )
    print(table(rows))
    big = [r for r in rows if r["n"] == max(r2["n"] for r2 in rows) and r["default"]]
    for r in big:
        if r["kind"] == "flat":
            continue
        ok = r["recall_at_10"] >= TARGET_RECALL and r["speedup"] >= TARGET_SPEEDUP
        print(
            f"target {r['kind']} at {r['n']:,}: recall@10 {r['recall_at_10']:.4f} >= "
            f"{TARGET_RECALL} and {r['speedup']:.1f}x >= {TARGET_SPEEDUP:g}x exact: "
            f"{'OK' if ok else 'MISS'}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
