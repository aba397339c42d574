"""A run at scale: peak RSS, time to the first epoch, epoch time and evaluation time.

``npz``: an uncompressed ``.npz`` of N x D synthetic clustered float32 vectors (``x``, ``y``;
C classes, each a Gaussian around its own centre; the loader's stratified 80/20 split),
written in blocks through memory maps (the writer never holds the array), then one
epoch of ``gluon-triplet`` on it in a child process. ``rec``: a RecordIO of tinted,
cropped 64x64 Fashion-MNIST pictures (``bench/images.py``'s ``write_large_rec``), one
epoch streamed from it.

The child's stderr lines are time-stamped as they arrive: the first epoch starts when
the epoch-0 line appears (import, load and the epoch-0 evaluation are before it; so was
the raw-pixel baseline before it moved after training); the epoch's training time is
``metrics.json``'s; its evaluation is the time from the end of training to the epoch-1
line; the final part (per-class P@1, k-means, the raw-pixel baseline, summary) runs to
the exit. Peak RSS is the child's ``ru_maxrss``. A watchdog
stops the child if the machine's available memory falls under ``--min-free-gib``.
Usage::

    python bench/scale.py npz --n 2000000 --dim 256
    python bench/scale.py npz --n 200000 --dim 256 --classes 1000   # a quick check
    python bench/scale.py rec --n 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_npz(path: str, n: int, dim: int, classes: int, seed: int = 0) -> None:
    """x (n, dim) float32 and y (n,) int64, stored uncompressed, written block by block."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    tmp = path + ".parts"
    os.makedirs(tmp, exist_ok=True)
    xs = np.lib.format.open_memmap(os.path.join(tmp, "x.npy"), "w+", np.float32, (n, dim))
    ys = np.lib.format.open_memmap(os.path.join(tmp, "y.npy"), "w+", np.int64, (n,))
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        y = rng.integers(0, classes, m)
        x = centres[y] * 0.5
        x += rng.standard_normal((m, dim), dtype=np.float32)
        xs[start : start + m] = x
        ys[start : start + m] = y
    xs.flush()
    ys.flush()
    del xs, ys
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name in ("x", "y"):
            z.write(os.path.join(tmp, name + ".npy"), name + ".npy")
            os.remove(os.path.join(tmp, name + ".npy"))
    os.rmdir(tmp)


def available_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def run_child(argv, min_free_gib: float, root: str = ROOT, timeout: float = 0.0):
    """Run ``gluon-triplet`` with ``argv`` (the package of ``root``); its stderr lines with
    seconds since start. Stopped after ``timeout`` seconds when given."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(root))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gluon_triplet", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # with -m the working directory comes before PYTHONPATH
    )
    stopped = []

    def watch():
        while proc.poll() is None:
            if available_gib() < min_free_gib:
                stopped.append(f"available memory fell to {available_gib():.1f} GiB")
                proc.kill()
                return
            if timeout and time.perf_counter() - start > timeout:
                stopped.append(f"stopped after {timeout:.0f} s (--timeout)")
                proc.kill()
                return
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
        print(f"[{lines[-1][0]:7.1f}s] {line}", end="", file=sys.stderr, flush=True)
    out = proc.stdout.read() if proc.stdout else ""
    proc.wait()
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    return proc.returncode, lines, out, wall, peak, stopped


def at(lines, prefix):
    """Seconds at which the first stderr line containing ``prefix`` appeared."""
    return next((t for t, line in lines if prefix in line), None)


def measure(argv, logdir, args, what):
    code, lines, out, wall, peak, stopped = run_child(
        argv, args.min_free_gib, args.root, args.timeout
    )
    result = {
        "what": what,
        "returncode": code,
        "wall_seconds": round(wall, 1),
        "peak_rss_gib": round(peak, 2),
    }
    if stopped:
        result["stopped"] = stopped[0]
    runs = [os.path.join(logdir, d) for d in os.listdir(logdir)] if os.path.isdir(logdir) else []
    metrics_path = next((os.path.join(r, "metrics.json") for r in runs), None)
    first = at(lines, "epoch   0 |")
    done = at(lines, "epoch   1 |")
    result["first_epoch_starts_s"] = first and round(first, 1)
    result["raw_baseline_line_s"] = at(lines, "raw pixels") and round(at(lines, "raw pixels"), 1)
    if metrics_path and os.path.exists(metrics_path):
        with open(metrics_path) as f:
            metrics = json.load(f)
        epoch = metrics["history"][1]["time"] if len(metrics["history"]) > 1 else None
        result["epoch_train_s"] = epoch and round(epoch, 1)
        if epoch and first and done:
            result["epoch_1_evaluation_s"] = round(done - first - epoch, 1)
        if done:
            result["final_part_s"] = round(wall - done, 1)
        final = metrics["final"]["test"]
        result["final_test"] = {
            k: final.get(k)
            for k in ("precision_at_1", "map_at_r", "num_queries", "neighbours", "map_at_r_max_r")
        }
        result["final_clustering"] = {
            k: final.get(k) for k in ("nmi", "clustering_points", "clustering_skipped")
        }
        result["raw_pixels"] = {
            k: metrics["raw_pixels"].get(k) for k in ("precision_at_1", "num_queries", "neighbours")
        }
    if code:
        result["stderr_tail"] = [line for _, line in lines[-5:]]
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=("npz", "rec"))
    p.add_argument("--n", type=int, default=2_000_000, help="samples (npz) or pictures (rec)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--workdir", default=None, help="where the data goes (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the data for another run")
    p.add_argument("--min-free-gib", type=float, default=4.0)
    p.add_argument("--root", default=ROOT, help="the source tree to run (e.g. an older one)")
    p.add_argument("--timeout", type=float, default=0.0, help="stop the run after this many s")
    p.add_argument("extra", nargs="*", help="more training options, after --")
    args = p.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="scale-")
    os.makedirs(work, exist_ok=True)
    if args.kind == "npz":
        data = os.path.join(work, f"synthetic-{args.n}x{args.dim}.npz")
        if not os.path.exists(data):
            t0 = time.perf_counter()
            write_npz(data, args.n, args.dim, args.classes)
            print(f"wrote {data} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        spec = f"npz:{data}"
    else:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        from images import write_large_rec  # noqa: E402 - a sibling script

        data = os.path.join(work, f"large-{args.n}")
        if not os.path.exists(data + ".rec"):
            t0 = time.perf_counter()
            write_large_rec(data, args.n)
            print(f"wrote {data}.rec in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        spec = f"rec:{data}"
    logdir = os.path.join(work, f"logs-{time.strftime('%H%M%S')}")
    argv = ["--dataset", spec, "--epochs", "1", "--logdir", logdir, "--no-plots", *args.extra]
    if args.kind == "rec":
        argv += ["--image-size", "64"]
    measure(argv, logdir, args, f"{args.kind} {args.n}")
    if not args.keep and args.workdir is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
