"""Whole-run wall time against training time, for a default run.

Runs ``gluon-triplet --dataset DATASET --epochs N`` in a child process for each source
tree given (``--root``, default this one; pass another checkout to compare, e.g. the
code before a change), all at the same time when ``--together`` (so that they share the
machine's load), and reports for each: the wall time from start to exit, the training
time (the sum of ``metrics.json``'s epoch times, which exclude evaluation), their ratio,
the child's CPU time, and the time of each phase from the time-stamped stderr lines
(until the epoch-0 line, after which the first epoch trains; the evaluations after the
epochs; from the last epoch line to the exit; when the raw-pixel line appeared). Usage::

    python bench/overhead.py --epochs 10
    python bench/overhead.py --epochs 10 --root . --root /path/to/old/checkout --together
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(root: str, args, out: dict) -> None:
    logdir = tempfile.mkdtemp(prefix="overhead-")
    argv = [sys.executable, "-m", "gluon_triplet", "--dataset", args.dataset, "--logdir", logdir]
    argv += ["--epochs", str(args.epochs), *args.extra]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(root))
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=logdir
    )
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
    # wait4: this child's own CPU time, also when several run at once
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    returncode = os.waitstatus_to_exitcode(status)
    run_dir = os.path.join(logdir, os.listdir(logdir)[0])
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    train = sum(r["time"] for r in metrics["history"])
    at = lambda text: next((t for t, line in lines if text in line), None)  # noqa: E731
    # The first line of each epoch (its validation line, if any, follows it).
    epoch_lines = []
    for e in range(len(metrics["history"])):
        epoch_lines.append(next(t for t, line in lines if re.match(rf"epoch +{e}\b", line)))
    # After epoch e's training ends, evaluation (and checkpoints, projector snapshots) runs
    # until its line: the time between consecutive epoch lines less the epoch's training.
    times = [r["time"] for r in metrics["history"]]
    evals = [b - a - t for a, b, t in zip(epoch_lines, epoch_lines[1:], times[1:])]
    out[root] = {
        "root": root,
        "returncode": returncode,
        "wall_s": round(wall, 1),
        "train_s": round(train, 1),
        "wall_over_train": round(wall / train, 3) if train else None,
        "child_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "raw_pixels_line_s": at("raw pixels") and round(at("raw pixels"), 1),
        "epoch_0_line_s": round(epoch_lines[0], 1) if epoch_lines else None,
        "evaluation_after_epochs_s": round(sum(evals), 1),
        "after_last_epoch_s": round(wall - epoch_lines[-1], 1) if epoch_lines else None,
        "final_test_p1": metrics["final"]["test"].get("precision_at_1"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--root", action="append", help="source tree to run (repeatable)")
    p.add_argument("--together", action="store_true", help="run the trees at the same time")
    p.add_argument("extra", nargs="*", help="more training options, after --")
    args = p.parse_args()
    roots = args.root or [HERE]
    out: dict = {}
    if args.together:
        threads = [threading.Thread(target=run, args=(r, args, out)) for r in roots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for r in roots:
            run(r, args, out)
    print(f"load average at the end: {os.getloadavg()}", file=sys.stderr)
    for r in roots:
        print(json.dumps(out.get(r)), flush=True)


if __name__ == "__main__":
    main()
