#!/usr/bin/env python
"""Speed of gluon_triplet's fast paths against the package's own seed-compatible path.

The *seed-compatible path* is how the original seed scripts trained: a per-sample
``mx.gluon.data.DataLoader(TripletDataset, batch_size=B, shuffle=True)``, three separate
forward passes of the net (anchor, positive, negative) inside ``autograd.record()``,
``gluon.loss.TripletLoss`` and ``trainer.step(B)``.

Sections (all by default; pick some with ``--only``):

pairs   ``create_pairs`` wall time and peak extra memory at N = 60k / 1M / 10M random labels,
        each size in a fresh subprocess; plus, at 60k, the seed-style per-triple Python loop.
train   triples/s of the seed-compatible path and of ``TripletTrainer._train_epoch``.
gemm    NumPy sgemm and MXNet ``FullyConnected`` GFLOP/s at the MLP's shapes, and the
        triples/s ceiling they imply for one training step of the default MLP.
embed   ``embed(net, x, batch_size)`` samples/s with the hybridized default MLP.

Usage::

    python bench/speed.py                          # full run: minutes, on a quiet machine
    python bench/speed.py --quick                  # seconds: CI smoke test / development
    python bench/speed.py --only pairs --sizes 60k 1M 10M:1000
    python bench/speed.py --only train gemm --json bench.json

A benchmark, not a test: a missed target prints MISS and still exits 0; the exit status is 1
only when a section fails with an error.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
import tracemalloc
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("pairs", "train", "gemm", "embed")
# OMP_NUM_THREADS as the caller set it, before gluon_triplet fills in its default.
_OMP_AT_START = os.environ.get("OMP_NUM_THREADS")

# Targets (see the summary table).
PAIRS_TARGET_N = 10_000_000
PAIRS_TARGET_SECONDS = 5.0
PAIRS_TARGET_BYTES = 1 << 30
SEED_LOOP_N = 60_000
SEED_LOOP_TARGET_RATIO = 200.0
TRAIN_TARGET_RATIO = 2.0
CEILING_TARGET_FRACTION = 0.70
EMBED_TARGET = 150_000.0

# Full run / --quick.
PROFILES = {
    "full": {
        "sizes": ["60k", "1M", "10M"],
        "repeat": 3,
        "seed_loop_triples": 3000,
        "train_samples": None,  # all 60,000
        "seed_warmup": 3,
        "seed_batches": 30,
        "gemm_reps": 20,
        "embed_samples": 60_000,
        "embed_reps": 3,
    },
    "quick": {
        "sizes": ["60k", "200k"],
        "repeat": 2,
        "seed_loop_triples": 300,
        "train_samples": 10_240,
        "seed_warmup": 1,
        "seed_batches": 5,
        "gemm_reps": 5,
        "embed_samples": 20_000,
        "embed_reps": 2,
    },
}

mx = None  # MXNet and gluon_triplet, imported by _import_stack() once the arguments parse
gt = None


def _import_stack():
    """Import gluon_triplet, then MXNet: the package sets its OMP_NUM_THREADS default first."""
    global gt, mx
    if REPO not in sys.path:
        sys.path.insert(0, REPO)  # benchmark this checkout, not some installed copy
    gt = importlib.import_module("gluon_triplet")
    mx = importlib.import_module("mxnet")


# --------------------------------------------------------------------------- helpers


def _fmt_n(n: float) -> str:
    """12,345 / 1.2M / 10M, for table cells."""
    if n >= 1e6:
        return f"{n / 1e6:.3g}M"
    return f"{n:,.0f}"


def _mb(nbytes: Optional[float]) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:,.1f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain aligned table: the first column left-aligned, the others right."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        parts = [row[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  " + "  ".join(parts).rstrip()

    print(line(cells[0]))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _heading(title: str) -> None:
    print(f"\n== {title} " + "=" * max(3, 76 - len(title)))


def _parse_size(text: str) -> Tuple[int, int]:
    """``60k``, ``1M``, ``10_000_000`` or ``N:C`` (C classes) -> (N, C).

    Without ``:C``: 10 classes up to 100k samples, else 1,000.
    """
    size, _, classes = text.partition(":")
    mult = {"k": 10**3, "m": 10**6}.get(size[-1:].lower(), 1)
    try:
        n = int(float(size[:-1] if mult > 1 else size.replace("_", "")) * mult)
        c = int(classes) if classes else (10 if n <= 100_000 else 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad size {text!r}; e.g. 60000, 60k, 1M, 10M:1000"
        ) from None
    if n < 4 or c < 2 or n < 2 * c:
        raise argparse.ArgumentTypeError(f"size {text!r}: need N >= 2 * C and C >= 2")
    return n, c


def _random_labels(n: int, classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=n)


def _rss_now() -> Optional[int]:
    """Resident set size now, in bytes (Linux /proc), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _rss_peak() -> Optional[int]:
    """Peak resident set size of this process so far, in bytes (``getrusage``), or None."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _waitall() -> None:
    if mx is not None:
        mx.nd.waitall()


# --------------------------------------------------------------------------- environment


def _cpu_info() -> Dict[str, object]:
    model, cores = None, set()
    physical = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model is None:
                    model = value
                elif key == "physical id":
                    physical = value
                elif key == "core id":
                    cores.add((physical, value))
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "usable_cpus": usable,
    }


def environment() -> Dict[str, object]:
    env: Dict[str, object] = dict(_cpu_info())
    features = mx.runtime.Features()
    wanted = ("MKLDNN", "OPENMP", "BLAS_OPEN", "BLAS_MKL", "BLAS_ATLAS", "BLAS_APPLE", "CUDA")
    env["mxnet"] = mx.__version__
    env["mxnet_features"] = {k: features.is_enabled(k) for k in wanted if k in features}
    env["numpy"] = np.__version__
    env["python"] = platform.python_version()
    env["platform"] = platform.platform()
    env["gluon_triplet"] = f"{gt.__version__} ({os.path.dirname(gt.__file__)})"
    omp = os.environ.get("OMP_NUM_THREADS")
    env["OMP_NUM_THREADS"] = omp if _OMP_AT_START is not None else f"{omp} (gluon_triplet default)"
    thread_vars = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "KMP_AFFINITY", "OMP_PROC_BIND")
    for name in sorted(os.environ):
        if name.startswith("MXNET_") or name in thread_vars:
            env[name] = os.environ[name]
    try:
        from threadpoolctl import threadpool_info

        env["thread_pools"] = [
            f"{p.get('internal_api')} {p.get('version') or ''} x{p.get('num_threads')} "
            f"({os.path.basename(p.get('filepath', ''))})"
            for p in threadpool_info()
        ]
    except Exception:  # threadpoolctl is optional
        pass
    if hasattr(os, "getloadavg"):
        env["loadavg_at_start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return env


def print_environment(env: Dict[str, object]) -> None:
    _heading("environment")
    for key, value in env.items():
        if key == "mxnet_features":
            value = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in value.items())
        elif key == "thread_pools":
            for i, pool in enumerate(value):
                print(f"  {'thread pools' if i == 0 else '':<18} {pool}")
            continue
        print(f"  {key:<18} {value}")


# --------------------------------------------------------------------------- 1. pairs

# ---- SEED-STYLE REFERENCE (not package code) -------------------------------------------
# How the original seed scripts built triples: one Python iteration per triple, the pixel
# rows copied into a list, then np.array(pairs). Kept here only as the baseline of the
# "create_pairs >= 200x seed loop" target.


def seed_style_digit_indices(labels: np.ndarray, num_classes: int) -> List[List[int]]:
    """The seeds' ``digit_indices``: each class's sample indices, as Python lists."""
    return [np.flatnonzero(labels == d).tolist() for d in range(num_classes)]


def seed_style_create_pairs(x, digit_indices, num_classes, per_class=None):
    """Seed-style triples of pixel rows; ``per_class`` caps the anchors of every class.

    For each anchor class ``d`` and ``i in range(n)``: anchor and positive are
    ``digit_indices[d][i], digit_indices[d][i + 1]``; the negative's class is a random
    other class, whose index list is ``random.shuffle``d in place, and its first element
    is the negative. The three pixel rows are copied into a list.
    """
    n = min(len(idx) for idx in digit_indices) - 1
    if per_class is not None:
        n = min(n, per_class)
    pairs = []
    for d in range(num_classes):
        for i in range(n):
            z1, z2 = digit_indices[d][i], digit_indices[d][i + 1]
            dn = (d + random.randrange(1, num_classes)) % num_classes
            random.shuffle(digit_indices[dn])
            z3 = digit_indices[dn][0]
            pairs.append([x[z1].copy(), x[z2].copy(), x[z3].copy()])
    return pairs


# ---- end of the seed-style reference --------------------------------------------------


def _pairs_worker(spec: str, repeat: int) -> Dict[str, object]:
    """Run in a fresh subprocess: time and memory of create_pairs at one size.

    Memory, two ways: (1) ``tracemalloc`` peak over one call (NumPy reports its buffers to
    tracemalloc), (2) ``getrusage`` peak RSS after the first call minus the RSS just before
    it -- an upper bound on the extra memory, since it includes any earlier peak.
    """
    _import_stack()
    from gluon_triplet.data.triplets import create_pairs

    n, classes = _parse_size(spec)
    labels = _random_labels(n, classes)
    create_pairs(np.arange(64) % 4, seed=0, warn=False)  # warm the code paths
    gc.collect()

    rss_before = _rss_now()
    start = time.perf_counter()
    out = create_pairs(labels, seed=1, warn=False)
    times = [time.perf_counter() - start]
    rss_peak = _rss_peak()
    triples = len(out[0])
    assert all(len(o) == triples for o in out) and triples > 0, "create_pairs: bad output"
    out_bytes = sum(o.nbytes for o in out)
    del out
    for r in range(repeat - 1):
        gc.collect()
        start = time.perf_counter()
        out = create_pairs(labels, seed=2 + r, warn=False)
        times.append(time.perf_counter() - start)
        del out
    gc.collect()
    tracemalloc.start()
    out = create_pairs(labels, seed=1, warn=False)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del out
    rss_delta = None if rss_before is None or rss_peak is None else rss_peak - rss_before
    return {
        "n": n,
        "classes": classes,
        "triples": triples,
        "times_s": times,
        "best_s": min(times),
        "tracemalloc_peak_bytes": traced_peak,
        "rss_peak_delta_bytes": rss_delta,
        "output_bytes": out_bytes,
    }


def _run_pairs_worker(spec: str, repeat: int) -> Dict[str, object]:
    cmd = [sys.executable, os.path.abspath(__file__), "--_pairs-worker", spec]
    cmd += ["--repeat", str(repeat)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"create_pairs worker for {spec} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_pairs(args, prof) -> Dict[str, object]:
    _heading("1. create_pairs: wall time and peak extra memory (fresh subprocess per size)")
    sizes = args.sizes or [_parse_size(s) for s in prof["sizes"]]
    runs = []
    for n, c in sizes:
        runs.append(_run_pairs_worker(f"{n}:{c}", args.repeat or prof["repeat"]))
    rows = []
    for r in runs:
        rows.append(
            [
                _fmt_n(r["n"]),
                f"{r['classes']:,}",
                f"{r['triples']:,}",
                f"{r['best_s']:.3f}",
                f"{sum(r['times_s']) / len(r['times_s']):.3f}",
                _mb(r["tracemalloc_peak_bytes"]),
                _mb(r["rss_peak_delta_bytes"]),
                _mb(r["output_bytes"]),
            ]
        )
    _table(
        ["N", "classes", "triples", "best s", "mean s", "traced MB", "RSS+ MB", "output MB"],
        rows,
    )
    print(
        "  random int labels; best/mean of "
        f"{len(runs[0]['times_s']) if runs else 0} calls. traced = tracemalloc peak of one call"
        " (NumPy buffers);\n  RSS+ = getrusage peak RSS minus RSS before the first call (an"
        " upper bound). Both include the output."
    )
    result: Dict[str, object] = {"sizes": runs}

    ref_size = next((r for r in runs if r["n"] == SEED_LOOP_N), None)
    if ref_size is None:
        print(f"  seed-style loop: skipped (only measured at N = {SEED_LOOP_N:,})")
        return result
    result["seed_loop"] = _bench_seed_loop(args, prof, ref_size)
    return result


def _bench_seed_loop(args, prof, ref) -> Dict[str, object]:
    n, classes = ref["n"], ref["classes"]
    labels = _random_labels(n, classes)  # the same labels the worker used
    x = np.random.default_rng(1).random((n, 28, 28), dtype=np.float32)
    random.seed(0)

    start = time.perf_counter()
    digit_indices = seed_style_digit_indices(labels, classes)
    setup_s = time.perf_counter() - start
    full_per_class = min(len(idx) for idx in digit_indices) - 1
    full_triples = full_per_class * classes
    limit = args.seed_loop_triples
    if limit is None:
        limit = prof["seed_loop_triples"]
    per_class = full_per_class if limit <= 0 else max(1, min(full_per_class, limit // classes))

    start = time.perf_counter()
    pairs = seed_style_create_pairs(x, digit_indices, classes, per_class)
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    arr = np.array(pairs)
    array_s = time.perf_counter() - start
    measured = len(pairs)
    assert arr.shape == (measured, 3, 28, 28), arr.shape
    assert measured == per_class * classes
    assert full_triples == ref["triples"], (full_triples, ref["triples"])
    del pairs, arr, x

    scale = full_triples / measured
    total_s = setup_s + (loop_s + array_s) * scale
    ratio = total_s / ref["best_s"]
    how = "measured" if scale == 1 else f"extrapolated x{scale:.1f} from {measured:,} triples"
    print(
        f"\n  SEED-STYLE REFERENCE at N = {n:,} ({classes} classes), per-triple Python loop +"
        " random.shuffle\n  of the negative class's index list + pixel-row copies +"
        " np.array(pairs):"
    )
    _table(
        ["", "triples", "seconds"],
        [
            ["digit_indices (once)", "", f"{setup_s:.3f}"],
            ["loop + np.array(pairs), measured", f"{measured:,}", f"{loop_s + array_s:.3f}"],
            [f"seed-style total ({how})", f"{full_triples:,}", f"{total_s:.2f}"],
            ["gluon_triplet.create_pairs (best)", f"{ref['triples']:,}", f"{ref['best_s']:.4f}"],
        ],
    )
    print(
        f"  speed-up create_pairs / seed loop: {ratio:,.0f}x"
        f" (target >= {SEED_LOOP_TARGET_RATIO:.0f}x)"
    )
    return {
        "n": n,
        "classes": classes,
        "setup_s": setup_s,
        "measured_triples": measured,
        "measured_s": loop_s + array_s,
        "full_triples": full_triples,
        "extrapolated": scale != 1,
        "total_s": total_s,
        "create_pairs_s": ref["best_s"],
        "speedup": ratio,
    }


# --------------------------------------------------------------------------- 2. train


def _training_data(limit: Optional[int]):
    """Fashion-MNIST train split when available, else random data of the same shape."""
    try:
        bundle = gt.load_dataset("fashion-mnist")
        x, y = bundle.x_train, bundle.y_train
        source = f"Fashion-MNIST train split ({bundle.source})"
    except Exception as e:  # DataError, or anything else that makes it unavailable
        rng = np.random.default_rng(0)
        x = rng.random((60_000, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, size=60_000)
        source = f"RANDOM data, 10 classes (Fashion-MNIST unavailable: {type(e).__name__})"
    if limit is not None and limit < len(x):
        x, y = x[:limit], y[:limit]
        source += f", first {limit:,} samples"
    return np.ascontiguousarray(x, dtype=np.float32), y, source


def _seed_path(x, y, batch_size, warmup, batches, hybridize) -> Dict[str, object]:
    """The seed-compatible path: per-sample DataLoader, three forward passes, TripletLoss."""
    autograd, gluon = mx.autograd, mx.gluon
    gt.set_seed(0)
    net = gt.build_model(ctx=mx.cpu())
    if hybridize:
        net.hybridize()
    dataset = gt.TripletDataset(x, y, seed=0)
    loader = gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    loss_fn = gluon.loss.TripletLoss(margin=1.0)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.05})

    def batches_forever():
        while True:
            yield from loader

    stream = batches_forever()
    triples, data_s, loss = 0, 0.0, None
    for step in range(warmup + batches):
        if step == warmup:
            mx.nd.waitall()
            triples, data_s = 0, 0.0
            start = time.perf_counter()
        t0 = time.perf_counter()
        data, _ = next(stream)
        data_s += time.perf_counter() - t0
        with autograd.record():
            a = net(data[:, 0])
            p = net(data[:, 1])
            n = net(data[:, 2])
            loss = loss_fn(a, p, n)
        loss.backward()
        trainer.step(data.shape[0])
        triples += data.shape[0]
    mx.nd.waitall()
    elapsed = time.perf_counter() - start
    mean_loss = float(loss.mean().asscalar())
    assert math.isfinite(mean_loss), "seed path: non-finite loss"
    return {
        "batches": batches,
        "triples": triples,
        "seconds": elapsed,
        "dataloader_s": data_s,
        "triples_per_s": triples / elapsed,
        "last_loss": mean_loss,
    }


def _package_path(x, y, batch_size) -> Dict[str, object]:
    """TripletTrainer._train_epoch over one full epoch, after a warm-up epoch."""
    gt.set_seed(0)
    net = gt.build_model(ctx=mx.cpu())
    dataset = gt.TripletDataset(x, y, seed=0)
    config = gt.Config(**{**gt.PRESETS["reference"], "batch_size": batch_size})
    trainer = gt.TripletTrainer(net, dataset, config, [mx.cpu()])
    trainer.epoch = 1
    trainer._train_epoch()  # warm-up: graph build, static memory
    mx.nd.waitall()
    dataset.resample()
    trainer.epoch = 2
    start = time.perf_counter()
    stats = trainer._train_epoch()
    mx.nd.waitall()
    elapsed = time.perf_counter() - start
    assert math.isfinite(stats["loss"]), "package path: non-finite loss"
    processed = trainer.num_batches * min(batch_size, len(dataset))
    return {
        "batches": trainer.num_batches,
        "triples": processed,
        "epoch_triples": stats["triplets"],
        "seconds": elapsed,
        "triples_per_s": processed / elapsed,
        "loss": stats["loss"],
    }


def bench_train(args, prof) -> Dict[str, object]:
    _heading("2. training triples/s: seed-compatible path vs TripletTrainer")
    x, y, source = _training_data(prof["train_samples"])
    bsz = args.batch_size
    print(f"  data: {len(x):,} x {'x'.join(map(str, x.shape[1:]))} float32\n        {source}")
    print(f"  batch size B = {bsz}; SGD lr 0.05; TripletLoss margin 1; default MLP 784-256-128")
    warmup, batches = prof["seed_warmup"], args.batches or prof["seed_batches"]
    seed = _seed_path(x, y, bsz, warmup, batches, hybridize=False)
    seed_h = _seed_path(x, y, bsz, warmup, batches, hybridize=True)
    pkg = _package_path(x, y, bsz)

    def row(name, r, note):
        return [
            name,
            r["batches"],
            f"{r['triples']:,}",
            f"{r['seconds']:.3f}",
            f"{r['triples_per_s']:,.0f}",
            note,
        ]

    _table(
        ["path", "batches", "triples", "seconds", "triples/s", "notes"],
        [
            row("seed-compatible", seed, f"DataLoader {seed['dataloader_s']:.2f} s of it"),
            row(
                "seed-compatible, hybridize()", seed_h, f"DataLoader {seed_h['dataloader_s']:.2f} s"
            ),
            row("TripletTrainer._train_epoch", pkg, "1 epoch after a warm-up epoch"),
        ],
    )
    ratio = pkg["triples_per_s"] / seed["triples_per_s"]
    ratio_h = pkg["triples_per_s"] / seed_h["triples_per_s"]
    print(
        f"  seed-compatible = per-sample DataLoader(TripletDataset, shuffle=True) + 3 forward"
        f" passes\n  + TripletLoss + trainer.step(B), net as build_model returns it; timed over"
        f" {batches} batches after {warmup} warm-up."
    )
    print(f"  speed-up package / seed-compatible: {ratio:.2f}x (target >= {TRAIN_TARGET_RATIO:g}x)")
    print(f"  speed-up package / seed-compatible with net.hybridize(): {ratio_h:.2f}x (info)")
    return {
        "data": source,
        "samples": len(x),
        "batch_size": bsz,
        "seed_path": seed,
        "seed_path_hybridized": seed_h,
        "package_path": pkg,
        "speedup": ratio,
        "speedup_vs_hybridized_seed": ratio_h,
    }


# --------------------------------------------------------------------------- 3. gemm


def _mlp_dims() -> List[int]:
    cfg = gt.Config(**gt.PRESETS["reference"])
    return [28 * 28, *cfg.hidden, cfg.embedding_size]


def flops_per_triple(dims: Sequence[int]) -> Tuple[int, str]:
    """FLOPs of one training step per triple of an MLP with layer widths ``dims``.

    3 samples x (forward 2*sum(in*out) + weight grads 2*sum(in*out) + input grads of every
    layer but the first 2*sum(in*out over layers 2..)).
    """
    pairs = list(zip(dims[:-1], dims[1:]))
    mac = sum(i * o for i, o in pairs)
    dgrad = sum(i * o for i, o in pairs[1:])
    total = 3 * (2 * mac + 2 * mac + 2 * dgrad)
    terms = " + ".join(f"{i}*{o}" for i, o in pairs)
    dterms = " + ".join(f"{i}*{o}" for i, o in pairs[1:]) or "0"
    later = "layer 2 only" if len(pairs) == 2 else f"layers 2-{len(pairs)}"
    formula = (
        f"3 samples x [forward 2*({terms}) + weight grads 2*({terms})\n"
        f"                 + input grad of {later} 2*({dterms})]\n"
        f"    = 3 x ({2 * mac:,} + {2 * mac:,} + {2 * dgrad:,}) = {total:,} FLOP per triple"
    )
    return total, formula


def _best_of(fn, reps: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_gemm(args, prof, train_result=None) -> Dict[str, object]:
    _heading("3. the sgemm ceiling")
    dims = _mlp_dims()
    m = 3 * args.batch_size
    reps = prof["gemm_reps"]
    rng = np.random.default_rng(0)
    rows, shapes = [], []
    for k, n in zip(dims[:-1], dims[1:]):
        a = rng.random((m, k), dtype=np.float32)
        w = rng.random((k, n), dtype=np.float32)
        out = np.empty((m, n), dtype=np.float32)
        t_np = _best_of(lambda a=a, w=w, out=out: np.matmul(a, w, out=out), reps)

        a_nd = mx.nd.array(a)
        w_nd = mx.nd.array(w.T)  # FullyConnected weights are (out, in)
        b_nd = mx.nd.zeros((n,))

        def fc(a_nd=a_nd, w_nd=w_nd, b_nd=b_nd, n=n):
            mx.nd.FullyConnected(a_nd, w_nd, b_nd, num_hidden=n).wait_to_read()

        t_mx = _best_of(fc, reps)
        flops = 2 * m * k * n
        shapes.append(
            {"shape": f"({m}x{k})@({k}x{n})", "flops": flops, "numpy_s": t_np, "mxnet_fc_s": t_mx}
        )
        rows.append(
            [
                f"({m}x{k}) @ ({k}x{n})",
                f"{flops / 1e9:.3f}",
                f"{flops / t_np / 1e9:.1f}",
                f"{flops / t_mx / 1e9:.1f}",
            ]
        )
    total_flops = sum(s["flops"] for s in shapes)
    np_gflops = total_flops / sum(s["numpy_s"] for s in shapes) / 1e9
    mx_gflops = total_flops / sum(s["mxnet_fc_s"] for s in shapes) / 1e9
    rows.append(
        ["both (the MLP's mix)", f"{total_flops / 1e9:.3f}", f"{np_gflops:.1f}", f"{mx_gflops:.1f}"]
    )
    _table([f"shape (B = {args.batch_size})", "GFLOP", "NumPy GFLOP/s", "MXNet FC GFLOP/s"], rows)
    print(f"  float32, best of {reps} after a warm-up; MXNet FC includes the bias add.")

    per_triple, formula = flops_per_triple(dims)
    ceiling = np_gflops * 1e9 / per_triple
    ceiling_mx = mx_gflops * 1e9 / per_triple
    print(f"  FLOPs per triple, one training step of the MLP {'-'.join(map(str, dims))}:")
    print(f"    {formula}")
    print(f"  triples/s ceiling = NumPy sgemm GFLOP/s / FLOP per triple = {ceiling:,.0f}")
    print(f"  (with MXNet FullyConnected's GFLOP/s instead: {ceiling_mx:,.0f})")
    result: Dict[str, object] = {
        "shapes": shapes,
        "numpy_gflops": np_gflops,
        "mxnet_fc_gflops": mx_gflops,
        "flops_per_triple": per_triple,
        "flops_formula": formula,
        "ceiling_triples_per_s": ceiling,
        "ceiling_triples_per_s_mxnet_fc": ceiling_mx,
    }
    if train_result:
        tps = train_result["package_path"]["triples_per_s"]
        result["package_fraction_of_ceiling"] = tps / ceiling
        print(
            f"  package path {tps:,.0f} triples/s = {tps / ceiling:.0%} of the NumPy sgemm"
            f" ceiling (target >= {CEILING_TARGET_FRACTION:.0%}); {tps / ceiling_mx:.0%} of"
            " the MXNet FC one"
        )
    else:
        print("  (run the train section too for the package path's fraction of the ceiling)")
    return result


# --------------------------------------------------------------------------- 4. embed


def bench_embed(args, prof) -> Dict[str, object]:
    _heading("4. inference: embed(net, x, batch_size)")
    n = prof["embed_samples"]
    x = np.random.default_rng(0).random((n, 28, 28), dtype=np.float32)
    gt.set_seed(0)
    net = gt.build_model(ctx=mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    rows, runs = [], []
    for bsz in (1024, 4096):
        emb = gt.embed(net, x, batch_size=bsz)  # warm-up: every batch shape of this run
        assert emb.shape == (n, gt.Config().embedding_size), emb.shape
        assert np.isfinite(emb).all()

        def run(bsz=bsz):
            gt.embed(net, x, batch_size=bsz)
            mx.nd.waitall()

        best = _best_of(run, prof["embed_reps"])
        runs.append({"batch_size": bsz, "samples": n, "best_s": best, "samples_per_s": n / best})
        rows.append([bsz, f"{n:,}", f"{best:.3f}", f"{n / best:,.0f}"])
    _table(["batch size", "samples", "best s", "samples/s"], rows)
    print(
        f"  default MLP, hybridize(static_alloc, static_shape); numpy float32 input; best of"
        f" {prof['embed_reps']} after a warm-up call.\n  Target >= {EMBED_TARGET:,.0f} samples/s."
    )
    return {"runs": runs}


# --------------------------------------------------------------------------- summary


def _check(value, ok) -> str:
    return "n/a" if value is None else ("PASS" if ok else "MISS")


def summary(results: Dict[str, object]) -> List[Dict[str, object]]:
    pairs = results.get("pairs") or {}  # {"error": ...} when the section failed
    big = next((r for r in pairs.get("sizes", []) if r["n"] == PAIRS_TARGET_N), None)
    big_mem = None
    if big:
        mems = [big["tracemalloc_peak_bytes"], big["rss_peak_delta_bytes"]]
        big_mem = max(m for m in mems if m is not None)
    loop = pairs.get("seed_loop")  # absent, or a result dict
    train = results.get("train") or {}
    gemm = results.get("gemm") or {}
    embed_runs = (results.get("embed") or {}).get("runs", [])

    rows = [
        (
            "create_pairs 10M: time",
            "< 5 s",
            None if big is None else big["best_s"],
            lambda v: f"{v:.2f} s",
            lambda v: v < PAIRS_TARGET_SECONDS,
        ),
        (
            "create_pairs 10M: extra memory",
            "< 1 GB (max of traced, RSS+)",
            big_mem,
            lambda v: f"{v / 2**20:,.0f} MB",
            lambda v: v < PAIRS_TARGET_BYTES,
        ),
        (
            "create_pairs 60k vs seed loop",
            ">= 200x",
            None if loop is None else loop["speedup"],
            lambda v: f"{v:,.0f}x",
            lambda v: v >= SEED_LOOP_TARGET_RATIO,
        ),
        (
            "training vs seed-compatible path",
            ">= 2x",
            train.get("speedup"),
            lambda v: f"{v:.2f}x",
            lambda v: v >= TRAIN_TARGET_RATIO,
        ),
        (
            "training vs sgemm ceiling",
            ">= 70%",
            gemm.get("package_fraction_of_ceiling"),
            lambda v: f"{v:.0%}",
            lambda v: v >= CEILING_TARGET_FRACTION,
        ),
    ]
    for r in embed_runs:
        rows.append(
            (
                f"embed, batch {r['batch_size']}",
                ">= 150k samples/s",
                r["samples_per_s"],
                lambda v: f"{v:,.0f}/s",
                lambda v: v >= EMBED_TARGET,
            )
        )
    if not embed_runs:
        rows.append(("embed", ">= 150k samples/s", None, str, bool))

    table, out = [], []
    for name, target, value, fmt, ok in rows:
        verdict = _check(value, value is not None and ok(value))
        table.append([name, target, "-" if value is None else fmt(value), verdict])
        out.append({"target": name, "goal": target, "value": value, "result": verdict})
    _heading("summary")
    _table(["target", "goal", "measured", "result"], table)
    if results.get("quick"):
        print("  --quick: tiny sizes, figures are a smoke test, not the benchmark.")
    return out


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark gluon_triplet's fast paths against its seed-compatible path.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "sections: pairs (create_pairs + seed-style loop), train (triples/s), gemm (sgemm\n"
            "ceiling), embed (inference). Full run: minutes; run it on a quiet machine."
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (60k/200k pairs, a handful of batches): seconds",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        type=_parse_size,
        metavar="N[:C]",
        help="create_pairs sizes, e.g. 60k 1M 10M:1000 (C classes; default 10 up"
        " to 100k samples, else 1000)",
    )
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    p.add_argument(
        "--repeat",
        type=int,
        metavar="R",
        help="create_pairs calls per size, best taken (default 3; --quick 2)",
    )
    p.add_argument(
        "--seed-loop-triples",
        type=int,
        metavar="K",
        help="triples the seed-style loop really runs before extrapolating to all"
        " (default 3000; --quick 300; 0 = all, minutes)",
    )
    p.add_argument(
        "--batches",
        type=int,
        metavar="K",
        help="timed batches of the seed-compatible path (default 30; --quick 5)",
    )
    p.add_argument("--batch-size", type=int, default=1024, metavar="B", help="default 1024")
    p.add_argument("--_pairs-worker", metavar="N:C", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args._pairs_worker:
        print(json.dumps(_pairs_worker(args._pairs_worker, max(1, args.repeat or 1))))
        return 0
    for name in ("repeat", "batches", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            _parser().error(f"--{name.replace('_', '-')} must be >= 1")
    prof = PROFILES["quick" if args.quick else "full"]
    sections = [s for s in SECTIONS if not args.only or s in args.only]

    _import_stack()
    env = environment()
    results: Dict[str, object] = {"quick": args.quick, "argv": sys.argv[1:], "env": env}
    print(f"gluon_triplet speed benchmark ({'--quick' if args.quick else 'full run'})")
    print_environment(env)

    failed = []
    for section in sections:
        try:
            if section == "pairs":
                results["pairs"] = bench_pairs(args, prof)
            elif section == "train":
                results["train"] = bench_train(args, prof)
            elif section == "gemm":
                train = results.get("train") or {}
                results["gemm"] = bench_gemm(args, prof, train if "package_path" in train else None)
            else:
                results["embed"] = bench_embed(args, prof)
        except Exception as e:  # report, carry on with the other sections
            failed.append(section)
            results[section] = {"error": f"{type(e).__name__}: {e}"}
            print(f"  !! section {section} failed: {type(e).__name__}: {e}")
        _waitall()
        gc.collect()

    results["summary"] = summary(results)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, default=str)
            f.write("\n")
        print(f"  figures written to {args.json}")
    if failed:
        print(f"  failed sections: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
