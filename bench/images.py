#!/usr/bin/env python
"""Image sets on disk: streamed epochs vs in memory, RecordIO, peak memory, colour quality.

Sections (all by default; pick some with ``--only``):

folder   Fashion-MNIST written as PNG files (``train/<class>``, ``test/<class>``): one epoch
         of the default recipe streamed from the folder (``max_memory 0``: decoded batch
         by batch by DataLoader workers) against the same epoch from the in-memory
         arrays. Target: ratio <= 1.25.
rec      The same folder packed with ``pack_folder``: pack time, and the streamed epoch
         from the ``.rec`` against the in-memory one. Target: ratio <= 1.25.
         Both run ``--rounds`` interleaved rounds (each source once a round, the order
         rotating) and report each epoch's wall and CPU seconds (training process and
         decoding workers apart), the training process's voluntary context switches
         ("sleeps": few of them beside much CPU mean threads that spin), the CPU of its
         Python thread, the machine's interrupts and disk reads in the epoch, the medians, and
         the median of the per-round ratios (the target's check). ``--spinning`` adds every
         source again with GNU OpenMP's spinning waits instead of the passive waits the
         package sets (see bench/results/images-streaming.md), in the same rounds.
         ``--warm`` adds the folder again with every file read just before its run
         (untimed): the folder's epoch with its files in the page cache, against the same
         folder as the rounds leave it.
cpu      CPU seconds per training picture of one epoch (``--cpu-pictures`` of the 60k),
         in memory and streamed from the folder and the .rec: the training process and
         the decoding workers apart, independent of other jobs' load.
large    A RecordIO of ``--n-large`` 64x64 RGB pictures made from Fashion-MNIST with random
         tints and crops: decode images/s with 1 and 2 workers, and one streamed epoch
         with the peak memory of the whole process tree (PSS, target < 2 GiB).
quality  A colour folder made from Fashion-MNIST (tinted, resized to 32-44 px): test P@1 of
         the default recipe against raw pixels, without and with ``--augment photos``.

Usage::

    python bench/images.py --workdir /tmp/bench-images              # everything
    python bench/images.py --only folder rec --rounds 3             # the epoch ratios
    python bench/images.py --only folder rec --rounds 3 --spinning  # and without PASSIVE
    python bench/images.py --only folder rec --rounds 3 --warm      # and the folder cached
    python bench/images.py --only folder rec --n-train 20000        # smaller
    python bench/images.py --only large --n-large 200000

A benchmark, not a test: a missed target prints MISS and still exits 0. Speeds are quoted
as ratios measured in one run; the machine is shared, absolute times vary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SECTIONS = ("folder", "rec", "cpu", "large", "quality")
FASHION = "/usr/share/datasets/fashion-mnist"
EPOCH_RATIO_TARGET = 1.25
RSS_TARGET = 2 << 30


def fashion(n_train=None, n_test=None):
    from gluon_triplet.data.datasets import load_dataset

    b = load_dataset("fashion-mnist")
    to8 = lambda x: (x * 255).round().astype(np.uint8)  # noqa: E731
    n_train = n_train or len(b.y_train)
    n_test = n_test or len(b.y_test)
    return (
        to8(b.x_train[:n_train]),
        b.y_train[:n_train],
        to8(b.x_test[:n_test]),
        b.y_test[:n_test],
        b.class_names,
    )


def write_folder(root, x_train, y_train, x_test, y_test, names, transform=None, fmt="png"):
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.png``; returns seconds."""
    from PIL import Image

    if os.path.isdir(root):
        return 0.0
    t0 = time.perf_counter()
    tmp = root + ".partial"
    rng = np.random.default_rng(0)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        for name in names:
            os.makedirs(os.path.join(tmp, split, _safe(name)), exist_ok=True)
        for i, (img, label) in enumerate(zip(x, y)):
            pic = Image.fromarray(img, "L")
            if transform is not None:
                pic = transform(pic, rng)
            pic.save(os.path.join(tmp, split, _safe(names[label]), f"{i:06d}.{fmt}"))
    os.rename(tmp, root)
    return time.perf_counter() - t0


def _safe(name):
    return name.replace("/", "-").replace(" ", "_")


def tint_and_resize(pic, rng, sizes=(32, 44)):
    from PIL import Image

    grey = np.asarray(pic, dtype=np.float32) / 255
    colour = rng.uniform(0.3, 1.0, size=3)
    background = rng.uniform(0.0, 0.3, size=3)
    rgb = grey[..., None] * colour + (1 - grey[..., None]) * background
    side = int(rng.integers(sizes[0], sizes[1] + 1))
    out = Image.fromarray((rgb * 255).round().astype(np.uint8), "RGB")
    return out.resize((side, side), Image.BILINEAR)


def tint_and_crop_64(pic, rng):
    from PIL import Image

    big = tint_and_resize(pic, rng, sizes=(72, 80))
    w, h = big.size
    left, top = int(rng.integers(0, w - 63)), int(rng.integers(0, h - 63))
    return (
        big.crop((left, top, left + 64, top + 64)).convert("RGB").resize((64, 64), Image.BILINEAR)
    )


def write_large_rec(prefix, n_train, batch=1000):
    """A RecordIO in pack_folder's layout (train records first, sidecar with the splits) of
    Fashion-MNIST pictures, each tinted (random colour on a random background), enlarged
    to 64-80 pixels (nearest) and randomly cropped to 64x64; JPEG quality 90."""
    import io

    from mxnet import recordio
    from PIL import Image

    x_tr, y_tr, x_te, y_te, names = fashion()
    n_test = min(len(y_te), max(n_train // 20, 100))
    rng = np.random.default_rng(0)
    tmp = [prefix + ".rec.partial", prefix + ".idx.partial"]
    writer = recordio.MXIndexedRecordIO(tmp[1], tmp[0], "w")
    key = 0
    for x, y, n in ((x_tr, y_tr, n_train), (x_te, y_te, n_test)):
        for start in range(0, n, batch):
            src = (np.arange(start, min(start + batch, n)) % len(y)).astype(np.int64)
            grey = x[src].astype(np.float32) / 255  # (b, 28, 28)
            b = len(src)
            colour = rng.uniform(0.3, 1.0, (b, 1, 1, 3)).astype(np.float32)
            back = rng.uniform(0.0, 0.3, (b, 1, 1, 3)).astype(np.float32)
            rgb = grey[..., None] * colour + (1 - grey[..., None]) * back
            side = int(rng.integers(64, 81))  # one enlargement per batch
            grid = (np.arange(side) * 28 // side).astype(np.int64)
            big = rgb[:, grid][:, :, grid]  # (b, side, side, 3)
            off = rng.integers(0, side - 63, size=(b, 2))
            rows = off[:, :1] + np.arange(64)
            cols = off[:, 1:] + np.arange(64)
            crops = big[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
            crops = (crops * 255).round().astype(np.uint8)
            for img, label in zip(crops, y[src]):
                buf = io.BytesIO()
                Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=90)
                header = recordio.IRHeader(0, float(label), key, 0)
                writer.write_idx(key, recordio.pack(header, buf.getvalue()))
                key += 1
    writer.close()
    meta = {
        "format": "gluon-triplet-rec",
        "version": 1,
        "classes": list(names),
        "channels": 3,
        "splits": {"train": n_train, "test": n_test},
    }
    with open(prefix + ".json", "w") as f:
        json.dump(meta, f)
    os.replace(tmp[0], prefix + ".rec")
    os.replace(tmp[1], prefix + ".idx")
    return n_test


class TreeRSS:
    """Peak memory of a process and all its descendants, polled from /proc.

    ``peak`` sums PSS (``smaps_rollup``: each shared page divided among the processes
    sharing it), so the forked DataLoader workers' copy-on-write pages are not counted
    once per worker; ``peak_rss`` sums plain RSS, which counts them every time.
    """

    def __init__(self, pid, every=0.1, trace=None, trace_every=10.0):
        self.pid, self.every, self.peak, self.peak_rss = pid, every, 0, 0
        self.peak_at = 0.0
        # Optional timeline: one line per ``trace_every`` seconds (elapsed s, PSS MiB,
        # RSS MiB, processes), to see memory over a long run, not only its peak.
        self.trace, self.trace_every = trace, trace_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _tree(self, pid):
        pids = [pid]
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    for child in f.read().split():
                        pids.extend(self._tree(int(child)))
        except OSError:
            pass
        return pids

    def _poll(self):
        t0 = last = time.perf_counter()
        sink = open(self.trace, "w") if self.trace else None  # noqa: SIM115
        while not self._stop.is_set():
            pss = rss = 0
            tree = self._tree(self.pid)
            for pid in tree:
                pss += _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")
                rss += _proc_kib(f"/proc/{pid}/status", "VmRSS:")
            now = time.perf_counter()
            if pss * 1024 > self.peak:
                self.peak, self.peak_at = pss * 1024, now - t0
            self.peak_rss = max(self.peak_rss, rss * 1024)
            if sink is not None and now - last >= self.trace_every:
                sink.write(f"{now - t0:.0f} {pss >> 10} {rss >> 10} {len(tree)}\n")
                sink.flush()
                last = now
            time.sleep(self.every)
        if sink is not None:
            sink.close()

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def _proc_kib(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# Run in the training subprocess: record each epoch's CPU seconds (this process and its
# reaped children: the decoding workers, which the streamed feed stops and joins after the
# epoch's last batch) beside the wall time the run's metrics give.
_EPOCH_CPU_HOOK = """
import json, resource, sys
from gluon_triplet.training import trainer as _t

_inner = _t.TripletTrainer._train_epoch
_cpu = []

import time

def _machine():
    # Machine-wide counters (other jobs' share included): all interrupts, IPIs too, and
    # KiB read from disk. On an idle machine an interrupt is charged to whichever thread
    # it interrupts, often a training thread (this kernel has no IRQ time accounting).
    with open("/proc/stat") as f:
        intr = next(int(line.split()[1]) for line in f if line.startswith("intr "))
    with open("/proc/vmstat") as f:
        read = next(int(line.split()[1]) for line in f if line.startswith("pgpgin "))
    return intr, read

def _tree():
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return (
        me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, me.ru_nvcsw,
        time.thread_time(), *_machine(),
    )

def _train_epoch(self):
    m0, k0, v0, p0, i0, r0 = _tree()
    try:
        return _inner(self)
    finally:
        m1, k1, v1, p1, i1, r1 = _tree()
        _cpu.append({
            "main": m1 - m0, "workers": k1 - k0, "sleeps": v1 - v0, "python": p1 - p0,
            "interrupts": i1 - i0, "disk_kib": r1 - r0,
        })
        with open(CPU_OUT, "w") as f:
            json.dump(_cpu, f)

_t.TripletTrainer._train_epoch = _train_epoch
"""


def train(
    workdir, name, settings, measure_rss=False, budget=None, log=None, epoch_cpu=False, env=None
):
    """One run of ``run_train.py --config`` in a subprocess; returns its metrics and RSS.

    ``budget``: seconds after which the run is stopped with SIGTERM (its graceful
    interrupt); the metrics are then None. ``log``: a file that gets the run's INFO log
    (otherwise it runs with ``-q``); the run then also dumps every thread's stack there on
    SIGUSR1 (``faulthandler``), to see where a long run spends its time. ``epoch_cpu``:
    each history record of the metrics gets ``cpu`` (seconds of the training process) and
    ``cpu_workers`` (its decoding workers) spent in the epoch, and ``sleeps`` (the training
    process's voluntary context switches in it: few of them with much CPU means threads that
    spin instead of sleeping), ``python`` (the CPU of its Python thread: the rest of
    ``cpu`` is MXNet's engine and OpenMP threads and the worker pool's helper threads), and
    the machine's ``interrupts`` and ``disk_kib`` read during the epoch. ``env``: the run's
    environment (default: this process's)."""
    logs = os.path.join(workdir, "logs")
    os.makedirs(logs, exist_ok=True)
    settings = dict(settings, logdir=logs, run_name=f"{name}-{int(time.time() * 1000)}")
    settings.setdefault("plots", False)
    settings.setdefault("projector_samples", 0)
    cfg = os.path.join(workdir, f"{name}.json")
    with open(cfg, "w") as f:
        json.dump(settings, f)
    script = os.path.join(REPO, "run_train.py")
    cpu_out = os.path.join(workdir, f"{name}-epoch-cpu.json")
    argv = [script, "--config", cfg] + ([] if log else ["-q"])
    hook = ""
    if log is not None:
        hook += (
            "import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1, all_threads=True)\n"
        )
    if epoch_cpu:
        hook += f"CPU_OUT = {cpu_out!r}\n" + _EPOCH_CPU_HOOK
    if hook:
        # the checkout this bench belongs to, not whatever gluon_triplet is installed
        hook = f"import sys\nsys.path.insert(0, {REPO!r})\n" + hook
        hook += f"import runpy, sys\nsys.argv = {argv!r}\n"
        hook += f"runpy.run_path({script!r}, run_name='__main__')"
        cmd = [sys.executable, "-c", hook]
    else:
        cmd = [sys.executable, *argv]
    sink = None if log is None else open(log, "w")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=sink or subprocess.PIPE,
        stderr=sink or subprocess.PIPE,
        text=True,
        env=env,
    )
    trace = None if log is None else os.path.splitext(log)[0] + "-memory.txt"
    rss = TreeRSS(proc.pid, trace=trace) if measure_rss else None
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate()
        if rss:
            rss.stop()
        return None, time.perf_counter() - t0, rss
    finally:
        if sink is not None:
            sink.close()
    if rss:
        rss.stop()
    peak = rss
    wall = time.perf_counter() - t0
    if proc.returncode:
        if sink is not None:
            with open(log) as f:
                err = f.read()
        raise RuntimeError(f"{name} failed ({proc.returncode}): {err.strip()[-800:]}")
    with open(os.path.join(logs, settings["run_name"], "metrics.json")) as f:
        metrics = json.load(f)
    if epoch_cpu:
        with open(cpu_out) as f:
            cpu = json.load(f)
        for record, used in zip((r for r in metrics["history"] if r["epoch"] > 0), cpu):
            record["cpu"], record["cpu_workers"] = used["main"], used["workers"]
            for key in ("sleeps", "python", "interrupts", "disk_kib"):
                record[key] = used[key]
    return metrics, wall, peak


def epoch_seconds(metrics):
    return [r["time"] for r in metrics["history"] if r["epoch"] > 0]


def report(label, value, target=None, ok=None):
    mark = "" if ok is None else ("  OK" if ok else "  MISS")
    tgt = f"  (target {target})" if target else ""
    print(f"{label:<58} {value}{tgt}{mark}", flush=True)


# Short recipe: the default recipe (semi-hard P x K, CNN, Adam + cosine), one epoch.
RECIPE = {"epochs": 1}


def _fashion_sources(args, what):
    """The in-memory npz and the streamed sources ``what`` (``folder``, ``rec``): specs."""
    x_tr, y_tr, x_te, y_te, names = fashion(args.n_train, args.n_test)
    root = os.path.join(args.workdir, f"fashion-png-{len(y_tr)}")
    secs = write_folder(root, x_tr, y_tr, x_te, y_te, names)
    if secs:
        report(f"wrote {len(y_tr) + len(y_te)} PNG files", f"{secs:.1f} s")
    mem = os.path.join(args.workdir, f"mem-{len(y_tr)}.npz")
    if not os.path.exists(mem):
        np.savez(mem + ".partial.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
        os.replace(mem + ".partial.npz", mem)
    specs = {"memory": f"npz:{mem}"}
    if "folder" in what:
        specs["folder"] = f"folder:{root}"
    if "rec" in what:
        from gluon_triplet.data.recordio import pack_folder

        prefix = os.path.join(args.workdir, f"fashion-{len(y_tr)}")
        if not os.path.exists(prefix + ".rec"):
            t0 = time.perf_counter()
            pack_folder(root, prefix, progress=False)
            report(
                f"pack_folder {len(y_tr) + len(y_te)} PNG -> .rec",
                f"{time.perf_counter() - t0:.1f} s",
            )
        specs["rec"] = f"rec:{prefix}"
    return specs, len(y_tr)


def section_streamed(args, what):
    """Epochs in memory and streamed (``what``: ``folder`` and/or ``rec``), interleaved.

    One round runs each source once; the order rotates from round to round (memory,
    folder, rec; then folder, rec, memory; ...), so a drift of the machine's load does not
    favour one source. Reported: per round, each epoch's wall and process-tree CPU
    seconds; then the medians over rounds and the median of the per-round ratios, which
    is what the target is checked on: on a shared machine a single pair of runs is noise.
    """
    specs, n_train = _fashion_sources(args, what)
    # Each streamed source once per worker count asked for (--workers 1 2: both in the
    # same rounds, to choose a default on the same machine state).
    runs = {"memory": dict(RECIPE, dataset=specs["memory"], workers=args.workers[0])}
    for source in what:
        for w in args.workers:
            label = source if len(args.workers) == 1 else f"{source}, {w} workers"
            runs[label] = dict(RECIPE, dataset=specs[source], workers=w, max_memory=0.0)
    envs = {name: None for name in runs}
    if args.spinning:
        # The same runs with GNU OpenMP's own waiting (spin, then sleep) instead of the
        # passive waits the package sets: what the spinning costs, in the same rounds.
        spin_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        spin_env["GOMP_SPINCOUNT"] = "300000"  # libgomp's default without a wait policy
        for name in list(runs):
            runs[f"{name}, spinning"] = runs[name]
            envs[f"{name}, spinning"] = spin_env
    if args.warm and "folder" in runs:
        runs["folder, warm"] = runs["folder"]
        envs["folder, warm"] = envs["folder"]
    names = list(runs)
    rows = {name: [] for name in names}  # (wall, cpu main, cpu workers, sleeps) per round
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name.endswith(", warm"):
                report(f"round {r + 1}: read every file of the folder", f"{_warm(specs):.1f} s")
            m, _, _ = train(
                args.workdir, name.split(",")[0], runs[name], epoch_cpu=True, env=envs[name]
            )
            first = next(rec for rec in m["history"] if rec["epoch"] > 0)
            rows[name].append((first["time"], first["cpu"], first["cpu_workers"], first["sleeps"]))
            p1 = m["history"][-1]["test"]["precision_at_1"]
            report(
                f"round {r + 1}: {name}: epoch wall / CPU main + workers",
                f"{first['time']:.1f} s / {first['cpu']:.1f} + {first['cpu_workers']:.1f} s"
                f"  (P@1 {p1:.4f}, {first['sleeps']} sleeps, load {os.getloadavg()[0]:.1f})",
            )
            report(
                "    Python thread CPU; machine: interrupts, disk read",
                f"{first['python']:.1f} s; {first['interrupts']}, {first['disk_kib'] >> 10} MiB",
            )
    for base in [n for n in names if n.startswith("memory")]:
        mem = np.array(rows[base])
        report(
            f"{base} ({n_train} train): median epoch wall / CPU main + workers",
            f"{np.median(mem[:, 0]):.1f} s / {np.median(mem[:, 1]):.1f} + 0 s"
            f" ({np.median(mem[:, 3]):.0f} sleeps)",
        )
    for name in names:
        if name.startswith("memory"):
            continue
        spinning = name.endswith(", spinning")
        mem = np.array(rows["memory, spinning" if spinning else "memory"])
        got = np.array(rows[name])
        workers = runs[name]["workers"]
        where = "the .rec" if name.startswith("rec") else "the PNG folder"
        report(
            f"{name}: streamed from {where} ({workers or 'default'} workers): median wall /"
            " CPU main + workers",
            f"{np.median(got[:, 0]):.1f} s / {np.median(got[:, 1]):.1f}"
            f" + {np.median(got[:, 2]):.1f} s ({np.median(got[:, 3]):.0f} sleeps)",
        )
        wall_ratios = got[:, 0] / mem[:, 0]
        cpu_ratios = (got[:, 1] + got[:, 2]) / (mem[:, 1] + mem[:, 2])
        report(f"  per-round wall ratios ({name})", " ".join(f"{v:.2f}" for v in wall_ratios))
        ratio = float(np.median(wall_ratios))
        report(
            f"  median wall ratio streamed / in memory ({name}, {args.rounds} rounds)",
            f"{ratio:.2f}",
            f"<= {EPOCH_RATIO_TARGET}",
            ratio <= EPOCH_RATIO_TARGET,
        )
        report(f"  median CPU ratio streamed / in memory ({name})", f"{np.median(cpu_ratios):.2f}")
    report("load average (1, 5, 15 min) at the end", " ".join(f"{v:.1f}" for v in os.getloadavg()))


def _warm(specs):
    """Read every file of the folder (its page cache), returning the seconds it took."""
    t0 = time.perf_counter()
    for top, _, files in os.walk(specs["folder"].split(":", 1)[1]):
        for f in files:
            with open(os.path.join(top, f), "rb") as fh:
                fh.read()
    return time.perf_counter() - t0


def _tree_cpu():
    """CPU seconds of this process and of its reaped children (the decoding workers)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def section_cpu(args):
    """CPU seconds per training picture of one epoch: in memory, and streamed from the PNG
    folder and the .rec (training process and decoding workers apart). Load-independent
    where wall-clock ratios are not: the machine is shared."""
    import mxnet as mx

    from gluon_triplet.config import Config
    from gluon_triplet.data.datasets import load_dataset
    from gluon_triplet.data.decoding import ImageOptions
    from gluon_triplet.data.triplets import TripletDataset
    from gluon_triplet.nets.zoo import model_from_config
    from gluon_triplet.training.trainer import TripletTrainer, set_seed

    total = min(args.n_train or 60_000, 60_000)  # what the folder and rec sections wrote
    root = os.path.join(args.workdir, f"fashion-png-{total}")
    prefix = os.path.join(args.workdir, f"fashion-{total}")
    if not (os.path.isdir(root) and os.path.exists(prefix + ".rec")):
        sys.exit(
            f"run --only folder rec first with the same --n-train (the cpu section reuses "
            f"their folder and .rec of {total:,} pictures)"
        )
    n = args.cpu_pictures
    rows = {}
    sources = (("memory", f"folder:{root}"), ("folder", f"folder:{root}"), ("rec", f"rec:{prefix}"))
    for what, spec in sources:
        config = Config.from_dict(
            {"dataset": spec, "epochs": 1, "workers": args.workers[0], "max_memory": 0.0}
        )
        data = load_dataset(spec, images=ImageOptions.from_config(config))
        # the same random pictures from both sources (train records come in folder order)
        pick = np.sort(np.random.default_rng(0).permutation(len(data.y_train))[:n])
        x, y = data.x_train.subset(pick), data.y_train[pick]
        if what == "memory":
            x = x[:]  # decoded once, held as float32
        set_seed(0)
        net, _ = model_from_config(config, x.shape[1:], ctx=[mx.cpu()])
        trainer = TripletTrainer(net, TripletDataset(x, y, seed=0), config, [mx.cpu()])
        main0, kids0 = _tree_cpu()
        t0 = time.perf_counter()
        trainer.fit()
        wall = time.perf_counter() - t0
        trainer.strategy.feed.close()  # the workers exit: their CPU time is counted
        main1, kids1 = _tree_cpu()
        rows[what] = (wall, main1 - main0, kids1 - kids0)
        report(
            f"{what}: {n} pictures, wall / training-process CPU / worker CPU",
            f"{wall:.1f} s / {main1 - main0:.1f} s / {kids1 - kids0:.1f} s",
        )
    train_us = rows["memory"][1] / n * 1e6
    report("training CPU per picture, in memory", f"{train_us:.0f} us")
    for what in ("folder", "rec"):
        wall, main, kids = rows[what]
        extra = (main - rows["memory"][1]) / n * 1e6
        report(
            f"streamed from the {what}: decoding CPU per picture (workers)",
            f"{kids / n * 1e6:.0f} us",
        )
        report("  training-process CPU per picture beyond in memory", f"{extra:+.0f} us")
        total = (main + kids) / rows["memory"][1]
        report(f"  CPU ratio streamed / in memory ({what})", f"{total:.2f}")
    report("load average (1, 5, 15 min) at the end", " ".join(f"{v:.1f}" for v in os.getloadavg()))


def section_large(args):
    from gluon_triplet.data import decoding, recordio
    from gluon_triplet.data.streaming import stream_batches

    prefix = os.path.join(args.workdir, f"large-{args.n_large}")
    if not os.path.exists(prefix + ".rec"):
        t0 = time.perf_counter()
        n_test = write_large_rec(prefix, args.n_large)
        report(
            f"wrote {args.n_large} + {n_test} tinted, cropped 64x64 RGB JPEG records",
            f"{time.perf_counter() - t0:.1f} s",
        )
    size = os.path.getsize(prefix + ".rec")
    reader, labels, meta = recordio.open_rec(prefix)
    n = len(labels)
    report(
        f"RecordIO: {n} records, {size / 2**20:.0f} MiB on disk",
        f"{n * 3 * 64 * 64 * 4 / 2**30:.1f} GiB as float32",
    )
    ds = decoding.DecodedImages(reader, (64, 64), 3)
    count = min(n, args.decode_count)
    order = np.random.default_rng(0).permutation(n)[:count]
    batches = np.array_split(order, max(1, count // 256))
    for w in (1, 2):
        t0 = time.perf_counter()
        for _ in stream_batches(ds, batches, workers=w):
            pass
        rate = count / (time.perf_counter() - t0)
        report(f"decode 64x64 RGB from .rec, {w} worker(s), random order", f"{rate:.0f} images/s")
    metrics, wall, peak = train(
        args.workdir,
        "large",
        dict(RECIPE, dataset=f"rec:{prefix}", image_size="64", workers=args.workers[0]),
        measure_rss=True,
        budget=args.large_seconds,
        log=os.path.join(args.workdir, "large-train.log"),
    )
    if metrics is None:
        report(
            f"streamed epoch (default recipe, CNN 64x64 RGB) stopped after {wall:.0f} s",
            "(--large-seconds)",
        )
    else:
        seconds = epoch_seconds(metrics)[0]
        report("one streamed epoch (default recipe, CNN 64x64 RGB)", f"{seconds:.0f} s")
        report("whole run (load, epoch 0 and 1 evaluation, outputs)", f"{wall:.0f} s")
        p1 = metrics["history"][-1]["test"]["precision_at_1"]
        report("test P@1 after the epoch", f"{p1:.4f}")
    report(
        "peak memory of the process tree (PSS sum)",
        f"{peak.peak / 2**30:.2f} GiB at {peak.peak_at:.0f} s",
        "< 2 GiB",
        peak.peak < RSS_TARGET,
    )
    report(
        "  (plain RSS sum, shared pages counted per process)", f"{peak.peak_rss / 2**30:.2f} GiB"
    )


def section_quality(args):
    x_tr, y_tr, x_te, y_te, names = fashion(args.n_train, args.n_test)
    root = os.path.join(args.workdir, f"fashion-colour-{len(y_tr)}")
    write_folder(root, x_tr, y_tr, x_te, y_te, names, tint_and_resize)
    base = dict(
        dataset=f"folder:{root}", epochs=args.epochs, workers=args.workers[0], image_size="32"
    )
    rows = []
    for augment in ("none", "photos"):
        m, wall, _ = train(args.workdir, f"colour-{augment}", dict(base, augment=augment))
        rows.append((augment, m))
    raw = rows[0][1]["raw_pixels"]["precision_at_1"]
    report(
        f"colour Fashion folder ({len(y_tr)} train, {len(y_te)} test, 32x32): raw pixels P@1",
        f"{raw:.4f}",
    )
    for augment, m in rows:
        # The test split is scored after the last epoch only; the best epoch is chosen on
        # the validation split, never on test.
        last = m["history"][-1]["test"]["precision_at_1"]
        chosen = m.get("selection", {}).get("epoch")
        report(
            f"default recipe, {args.epochs} epochs, --augment {augment}: test P@1 (last "
            "epoch); epoch chosen on validation",
            f"{last:.4f}; {chosen}",
        )


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--workdir", default="/tmp/bench-images")
    p.add_argument(
        "--n-train", type=int, default=None, help="Fashion train images (default: all 60k)"
    )
    p.add_argument(
        "--n-test", type=int, default=None, help="Fashion test images (default: all 10k)"
    )
    p.add_argument("--n-large", type=int, default=200_000)
    p.add_argument("--decode-count", type=int, default=20_000)
    p.add_argument(
        "--large-seconds",
        type=float,
        default=None,
        help="stop the large run after this many seconds (default: the whole epoch)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="folder/rec: interleaved rounds of in-memory and streamed epochs (default 3)",
    )
    p.add_argument("--epochs", type=int, default=5, help="quality section epochs (default 5)")
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[None],
        help="DataLoader workers (default: the run's default); folder/rec take several "
        "(e.g. 1 2) and measure each in the same rounds; other sections use the first",
    )
    p.add_argument(
        "--cpu-pictures", type=int, default=20_000, help="training pictures of the cpu section"
    )
    p.add_argument(
        "--spinning",
        action="store_true",
        help="folder/rec: also run every source with GNU OpenMP's spinning waits "
        "(GOMP_SPINCOUNT=300000) instead of the package's OMP_WAIT_POLICY=PASSIVE",
    )
    p.add_argument(
        "--warm",
        action="store_true",
        help="folder: also run it with every file read just before (in the page cache)",
    )
    args = p.parse_args(argv)
    if not os.path.isdir(FASHION):
        sys.exit(f"needs Fashion-MNIST in {FASHION}: apt-get install -y dataset-fashion-mnist")
    os.makedirs(args.workdir, exist_ok=True)
    print(f"machine: {_cpu_model()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')}")
    from gluon_triplet.data import fastpng

    # importing the package chose them (unless set before): the training runs inherit them
    print(
        "OpenMP: "
        + ", ".join(
            f"{k}={os.environ.get(k, '(unset)')}"
            for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
        )
    )
    if fastpng.available():
        import cv2

        print(f"plain PNGs decoded by OpenCV {cv2.__version__} (gluon_triplet.data.fastpng)")
    else:
        print("plain PNGs decoded by Pillow: opencv-python-headless is not installed")
    for name in args.only:
        if name == "rec" and "folder" in args.only:
            continue  # measured in the folder's rounds
        print(f"--- {name}", flush=True)
        if name in ("folder", "rec"):
            section_streamed(args, [w for w in ("folder", "rec") if w in args.only])
        elif name == "cpu":
            section_cpu(args)
        elif name == "large":
            section_large(args)
        else:
            section_quality(args)


if __name__ == "__main__":
    main()
