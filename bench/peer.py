#!/usr/bin/env python
"""The default recipe against PyTorch + pytorch-metric-learning, side by side in one run.

What a user would pick instead of this project is PyTorch with pytorch-metric-learning
(PML). This script trains the same recipe on both, alternating in one run (project, peer,
project, peer, ... for ``--rounds``), and scores both sides' test embeddings with this
project's metric code (``gluon_triplet.evaluate_embeddings``). It reports per side and
round: training seconds (the sum of the epochs' times, evaluation excluded), whole-run wall
seconds (the process from start to exit: interpreter, imports, data load, training, and
whatever evaluation and output the side does), the process's CPU seconds, test P@1, MAP@R
and strict triplet accuracy, the load averages before and after, then medians and the
ratios peer / project::

    .venv/bin/python bench/peer.py                    # 2 rounds of 3 epochs; installs the peer
    .venv/bin/python bench/peer.py --quick            # smoke run: 1 epoch on a subset
    .venv/bin/python bench/peer.py --no-install --rounds 3 --save

Run it with the project's Python (it imports ``gluon_triplet`` from this checkout). The peer
runs in its own virtualenv, outside the repository (``--venv``, default
``~/.cache/gluon-triplet/peer-venv``), into which the script installs ``torch==2.13.0``
(the CPU wheel; a plain ``torch`` would pull a CUDA build of several GB) and
``pytorch-metric-learning==2.9.0``; neither is a dependency of the project.
``--no-install`` reuses the virtualenv as it is. The same file runs there as the peer's
training process (``--worker``, internal).

The two sides
-------------
Project: ``run_train.py --dataset fashion-mnist --epochs E --seed S --val-fraction 0``
with every other setting at its default, in a subprocess with this checkout on PYTHONPATH
and OMP_NUM_THREADS = ``--threads``: no validation split, so that both sides train on the
same 60,000 pictures in the same 375 batches an epoch. Its training time is the sum of the
epoch times in the run's ``metrics.json``; its wall time is the whole process, which also
scores the test split after the last epoch (and raw pixels), and writes pictures, the
projector files and checkpoints. Its test embeddings (``--params last``) come from
``run_train.py embed`` afterwards, outside the timed run.

Peer: this file under the bench virtualenv, ``torch.set_num_threads(--threads)``. It
builds its net from the project's default net layer by layer (the script reads the layers
from ``gluon_triplet.model_from_config(Config(), (28, 28))``, prints both, and stops when
the parameter counts differ), reads the same IDX (or ``--quick`` npz) files, trains, embeds
the test split once at the end and writes the embeddings to an npz.

Same on both sides: the pooled CNN (3x3 conv 16 ReLU, 2x2 max-pool; conv 32 ReLU, pool;
conv 128 without bias, BatchNorm, ReLU, pool with ceil; flatten 2048; Dense 128; L2
normalisation), its initialisation (weights Uniform(-0.1, 0.1), biases 0, BatchNorm 1/0,
running-average momentum 0.1 in PyTorch terms = 0.9 in MXNet's), P x K = 10 x 16 batches
that serve every training sample once per epoch (each class shuffled and cut into chunks
of K; 375 batches per epoch on Fashion-MNIST), triplets mined on the batch's squared L2
distances of the normalised embeddings with margin 0.2, the hinge
``max(d(a,p) - d(a,n) + 0.2, 0)`` averaged over the mined triplets (PML's MeanReducer,
the project's ``mined_loss``), Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8, no weight
decay), the learning rate decayed by a cosine to 0 over all steps, counted as MXNet's
CosineScheduler counts them (step s of 0..T-1 gets ``lr (1 + cos(pi (s+1)/T)) / 2``), no
warm-up (the default has none), ``--threads`` threads.

Where the two still differ
--------------------------
* Miner (``--peer-miner``). ``pml`` (default, what a PML user picks):
  ``TripletMarginMiner(margin=0.2, type_of_triplets="semihard")`` keeps *every* triplet
  with ``0 < d(a,n) - d(a,p) <= 0.2`` (tens of thousands per batch, changing with
  training) and nothing for a pair without a semi-hard negative. The project's semi-hard
  miner is FaceNet's: *one* triplet per positive pair (all 2,400 of a 10 x 16 batch), its
  nearest negative with ``d(a,p) < d(a,n) < d(a,p) + 0.2``, else the hardest (nearest)
  negative. ``--peer-miner facenet`` gives the peer that rule (a few lines of PyTorch
  here, fed to PML's loss as ``indices_tuple``); ties go to the lowest index on both sides.
* Distances: PML's ``LpDistance(power=2)`` re-normalises the (already unit-length)
  embeddings and squares ``torch.cdist``; the project computes ``|a|^2 + |b|^2 - 2 a.b``.
  Same values up to float32 rounding.
* Numerics: Adam's epsilon is added to ``sqrt(v)`` after bias correction in PyTorch and
  before it in MXNet (``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``); L2 normalisation
  divides by ``max(|x|, 1e-12)`` in PyTorch and ``sqrt(|x|^2 + 1e-10)`` in MXNet.
* Random streams: the same seed draws different initial weights and batches on each
  side (different generators).
* Engines: the project hybridizes the step (gather, net, miner, loss) into one MXNet
  graph; the peer runs PyTorch eagerly (no ``torch.compile``). The peer holds the training
  set in one tensor and indexes batches from it (no per-sample DataLoader), as the
  project holds it in one NDArray.
* OpenMP: importing ``gluon_triplet`` sets ``OMP_WAIT_POLICY=PASSIVE`` (its documented
  default); PyTorch keeps its OpenMP defaults.
* Whole run: the project's wall time includes its per-epoch evaluations and outputs; the
  peer's only one final embedding of the test split. Both are each library's default
  behaviour; the training time is the like-for-like figure.
* Versions: PyTorch 2.13.0 (the CPU wheel this machine has; 2.14.1 exists here only as a
  CUDA build).

The machine is shared and has 2 cores, so timings swing with other jobs: the sides
alternate so that both see the same conditions, the medians are over rounds, and each side
records the load average before and after. A benchmark, not a test: exit status 0 unless a
step fails.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "DEFAULT_VENV",
    "PML_PIN",
    "TORCH_PIN",
    "main",
    "net_spec",
    "read_data",
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")
DEFAULT_VENV = os.path.join("~", ".cache", "gluon-triplet", "peer-venv")
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
TORCH_PIN = "torch==2.13.0"
PML_PIN = "pytorch-metric-learning==2.9.0"
# The environment as the caller gave it, before gluon_triplet fills in its OpenMP defaults.
BASE_ENV = dict(os.environ)
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# --quick: a stratified subset whose classes are whole chunks of K = 16 (50 batches).
QUICK_TRAIN_PER_CLASS = 800
QUICK_TEST_PER_CLASS = 200


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message is the one line printed."""


# --------------------------------------------------------------------------- data (both sides)


def _read_idx(path: str):
    import numpy as np

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if raw[2] != 0x08:
        raise BenchError(f"{path}: not an unsigned-byte IDX file")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_data(spec: str) -> Dict[str, Any]:
    """``idx:DIR`` (the four Fashion-MNIST IDX files, gzipped or not) or ``npz:FILE``
    (``x_train, y_train, x_test, y_test``) as uint8 pictures and int64 labels."""
    import numpy as np

    kind, _, where = spec.partition(":")
    if kind == "npz":
        with np.load(where, allow_pickle=False) as z:
            arrays = {k: z[k] for k in IDX_FILES}
    elif kind == "idx":
        arrays = {}
        for key, name in IDX_FILES.items():
            path = os.path.join(where, name)
            path = path + ".gz" if os.path.exists(path + ".gz") else path
            if not os.path.exists(path):
                raise BenchError(f"{path}: missing (apt-get install -y dataset-fashion-mnist)")
            arrays[key] = _read_idx(path)
    else:
        raise BenchError(f"data spec {spec!r}: expected idx:DIR or npz:FILE")
    for key in ("y_train", "y_test"):
        arrays[key] = arrays[key].astype(np.int64)
    return arrays


def _write_quick_subset(data_dir: str, path: str, seed: int) -> None:
    import numpy as np

    arrays = read_data(f"idx:{data_dir}")
    rng = np.random.default_rng(seed)
    out = {}
    for split, per_class in (("train", QUICK_TRAIN_PER_CLASS), ("test", QUICK_TEST_PER_CLASS)):
        y = arrays[f"y_{split}"]
        keep = np.sort(
            np.concatenate(
                [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
            )
        )
        out[f"x_{split}"], out[f"y_{split}"] = arrays[f"x_{split}"][keep], y[keep]
    np.savez(path, **out)


# --------------------------------------------------------------------------- the peer (torch)


def _torch_net(spec: Dict[str, Any]):
    """The PyTorch twin of the layers :func:`net_spec` read from the project's net."""
    import torch
    from torch import nn

    layers: List[Any] = []
    for layer in spec["layers"]:
        kind = layer["type"]
        if kind == "conv":
            layers.append(
                nn.Conv2d(
                    layer["in"],
                    layer["out"],
                    layer["kernel"],
                    stride=layer["stride"],
                    padding=layer["pad"],
                    bias=layer["bias"],
                )
            )
        elif kind == "batchnorm":
            # MXNet keeps momentum * running + (1 - momentum) * batch; PyTorch the opposite.
            layers.append(
                nn.BatchNorm2d(
                    layer["channels"], eps=layer["eps"], momentum=round(1 - layer["momentum"], 6)
                )
            )
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "maxpool":
            layers.append(nn.MaxPool2d(layer["kernel"], layer["stride"], ceil_mode=layer["ceil"]))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "dense":
            layers.append(nn.Linear(layer["in"], layer["out"], bias=layer["bias"]))
        else:
            raise BenchError(f"peer: no PyTorch layer for {kind!r}")

    class Embedding(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            emb = self.body(x)
            return nn.functional.normalize(emb, dim=1) if spec["normalize"] else emb

    net = Embedding()
    scale = spec["init_scale"]
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.uniform_(-scale, scale)  # MXNet's init.Uniform(scale)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # gamma 1, beta 0, running mean 0, variance 1
    return net


def _facenet_semi_hard(dist, labels, margin):
    """The project's semi-hard rule: for every positive pair (a, p), the nearest negative
    with d(a,p) < d(a,n) < d(a,p) + margin, else the nearest negative; ties to the lowest
    index (``argmin`` returns the first minimum)."""
    import torch

    same = labels[:, None] == labels[None, :]
    pairs = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    anchor, positive = torch.where(pairs)
    d_ap = dist[anchor, positive][:, None]
    d_an = dist[anchor]
    negative = ~same[anchor]
    inf = torch.full_like(d_an, float("inf"))
    semi = negative & (d_an > d_ap) & (d_an < d_ap + margin)
    nearest_semi = torch.where(semi, d_an, inf).argmin(dim=1)
    nearest = torch.where(negative, d_an, inf).argmin(dim=1)
    keep = negative.any(dim=1)
    chosen = torch.where(semi.any(dim=1), nearest_semi, nearest)
    return anchor[keep], positive[keep], chosen[keep]


def _pk_epoch(labels, p: int, k: int, rng):
    """One epoch of P x K batches covering every sample: each class shuffled and cut into
    chunks of K (a short last chunk topped up from the class), each batch one chunk of
    each of the P classes with the most chunks left (ties in random order)."""
    import numpy as np

    chunks = {}
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        short = -len(members) % k
        if short:
            members = np.concatenate([members, rng.choice(members, short)])
        chunks[int(c)] = list(members.reshape(-1, k))
    batches = []
    while any(chunks.values()):
        order = sorted(chunks, key=lambda c: (-len(chunks[c]), rng.random()))
        take = [c for c in order[:p] if chunks[c]]
        if len(take) < 2:
            break  # a lone class has no negatives
        batches.append(np.concatenate([chunks[c].pop() for c in take]))
    return batches


def _describe_torch_net(spec: Dict[str, Any]) -> Dict[str, Any]:
    net = _torch_net(spec)
    return {
        "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "running_statistics": sum(b.numel() for n, b in net.named_buffers() if "running" in n),
        "layers": [repr(m) for m in net.body],
    }


def _peer_main(args) -> int:
    if args.describe:
        with open(args.spec) as f:
            print(json.dumps(_describe_torch_net(json.load(f))))
        return 0
    start = time.perf_counter()
    import numpy as np
    import pytorch_metric_learning
    import torch
    from pytorch_metric_learning import distances, losses, miners, reducers

    torch.set_num_threads(args.threads)
    imported = time.perf_counter()
    with open(args.spec) as f:
        spec = json.load(f)
    recipe = spec["recipe"]
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = read_data(args.data)
    x_train = torch.from_numpy(data["x_train"].astype(np.float32) / 255)[:, None]
    y_train = torch.from_numpy(data["y_train"])
    loaded = time.perf_counter()

    net = _torch_net(spec)
    distance = distances.LpDistance(p=2, power=2)  # squared L2
    loss_fn = losses.TripletMarginLoss(
        margin=recipe["margin"], distance=distance, reducer=reducers.MeanReducer()
    )
    pml_miner = miners.TripletMarginMiner(
        margin=recipe["margin"], type_of_triplets="semihard", distance=distance
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe["lr"], betas=(0.9, 0.999), eps=1e-8)
    classes = len(np.unique(data["y_train"]))
    p = recipe["pk_classes"] or min(10, classes)
    k = recipe["pk_samples"]
    batches_per_epoch = len(_pk_epoch(data["y_train"], p, k, np.random.default_rng(0)))
    total = args.epochs * batches_per_epoch
    warmup = int(round(recipe["warmup_epochs"] * batches_per_epoch))

    def lr_factor(step: int) -> float:
        update = step + 1  # MXNet's schedulers see the update count, from 1
        if update < warmup:
            return update / warmup
        if recipe["lr_schedule"] == "constant":
            return 1.0
        return (1 + math.cos(math.pi * min(update - warmup, total - warmup) / (total - warmup))) / 2

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    epochs = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        loss_sum = torch.zeros(())
        mined = 0
        batches = _pk_epoch(data["y_train"], p, k, rng)
        for batch in batches:
            idx = torch.from_numpy(batch)
            xb, yb = x_train[idx], y_train[idx]
            emb = net(xb)
            if args.peer_miner == "facenet":
                with torch.no_grad():
                    triplets = _facenet_semi_hard(distance(emb.detach()), yb, recipe["margin"])
            else:
                triplets = pml_miner(emb, yb)
            loss = loss_fn(emb, yb, triplets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
            mined += len(triplets[0])
        seconds = time.perf_counter() - t0
        epochs.append(
            {
                "epoch": epoch,
                "time": seconds,
                "batches": len(batches),
                "loss": float(loss_sum) / len(batches),
                "triplets_per_batch": mined / len(batches),
                "lr_end": scheduler.get_last_lr()[0],
            }
        )
        print(
            f"peer epoch {epoch} | loss {epochs[-1]['loss']:.4f} | "
            f"{epochs[-1]['triplets_per_batch']:.0f} triplets/batch | {seconds:.1f}s",
            flush=True,
        )
    trained = time.perf_counter()
    net.eval()
    x_test = data["x_test"].astype(np.float32) / 255
    with torch.no_grad():
        emb = np.concatenate(
            [
                net(torch.from_numpy(x_test[i : i + 4096])[:, None]).numpy()
                for i in range(0, len(x_test), 4096)
            ]
        )
    np.savez(args.out + ".npz", embeddings=emb.astype(np.float32), labels=data["y_test"])
    report = {
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "miner": args.peer_miner,
        **_describe_torch_net(spec),
        "batches_per_epoch": batches_per_epoch,
        "epochs": epochs,
        "seconds": {
            "import": imported - start,
            "data": loaded - imported,
            "train": sum(e["time"] for e in epochs),
            "embed_test": time.perf_counter() - trained,
        },
    }
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    return 0


# --------------------------------------------------------------------------- the project side


def net_spec(epochs: int, sample_shape=(28, 28)) -> Dict[str, Any]:
    """The default net of ``gluon_triplet`` (public API) as a list of layers, its parameter
    counts and the recipe settings the peer needs, from ``Config()``'s defaults (the
    learning rate and warm-up resolved for a run of ``epochs``, as the project's run does)."""
    import dataclasses

    import mxnet as mx

    from gluon_triplet import Config, model_from_config
    from gluon_triplet.config import resolve_schedule

    config = Config()
    lr, warmup = resolve_schedule(config.lr, config.warmup_epochs, epochs)
    config = dataclasses.replace(config, lr=lr, warmup_epochs=warmup)
    net, name = model_from_config(config, sample_shape, ctx=[mx.cpu()])
    net(mx.nd.zeros((2, *sample_shape)))  # finishes deferred shapes
    if name != "cnn":
        raise BenchError(f"the default model for {sample_shape} is {name!r}, not the CNN")
    channels = 1 if len(sample_shape) == 2 else sample_shape[0]
    layers: List[Dict[str, Any]] = []

    def act(block):
        if block is None:
            return
        if block._act_type != "relu":
            raise BenchError(f"activation {block._act_type!r} is not mirrored")
        layers.append({"type": "relu"})

    for block in net.body._children.values():
        kind = type(block).__name__
        kw = getattr(block, "_kwargs", {})
        if kind == "Conv2D":
            out, cin, kh, kw_ = block.weight.shape
            if kh != kw_ or len(set(kw["stride"])) != 1 or len(set(kw["pad"])) != 1:
                raise BenchError("non-square convolutions are not mirrored")
            layers.append(
                {
                    "type": "conv",
                    "in": cin,
                    "out": out,
                    "kernel": kh,
                    "stride": kw["stride"][0],
                    "pad": kw["pad"][0],
                    "bias": not kw["no_bias"],
                }
            )
            act(block.act)
            channels = out
        elif kind == "BatchNorm":
            if kw["fix_gamma"] or kw["use_global_stats"]:
                raise BenchError("BatchNorm with fixed gamma or global statistics")
            layers.append(
                {
                    "type": "batchnorm",
                    "channels": channels,
                    "eps": kw["eps"],
                    "momentum": kw["momentum"],
                }
            )
        elif kind == "Activation":
            act(block)
        elif kind == "MaxPool2D":
            if kw["pad"] not in ((0, 0), 0) or len(set(kw["kernel"])) != 1:
                raise BenchError("padded or non-square pooling is not mirrored")
            layers.append(
                {
                    "type": "maxpool",
                    "kernel": kw["kernel"][0],
                    "stride": kw["stride"][0],
                    "ceil": kw["pooling_convention"] == "full",
                }
            )
        elif kind == "Flatten":
            layers.append({"type": "flatten"})
        elif kind == "Dense":
            units, units_in = block.weight.shape
            layers.append(
                {"type": "dense", "in": units_in, "out": units, "bias": block.bias is not None}
            )
            act(block.act)
        else:
            raise BenchError(f"layer {kind} of the project's net is not mirrored")
    params = list(net.collect_params().values())
    recipe = {
        key: getattr(config, key)
        for key in (
            "margin",
            "lr",
            "lr_schedule",
            "warmup_epochs",
            "pk_classes",
            "pk_samples",
            "optimizer",
            "distance",
            "miner",
            "weight_decay",
            "soft_margin",
            "ema_decay",
            "augment",
        )
    }
    expected = {
        "optimizer": "adam",
        "distance": "squared",
        "miner": "semi-hard",
        "weight_decay": 0.0,
        "soft_margin": False,
        "ema_decay": 0.0,
        "augment": "none",
    }
    changed = {k: recipe[k] for k, v in expected.items() if recipe[k] != v}
    if changed:
        raise BenchError(f"the default recipe changed ({changed}); the peer does not mirror it")
    return {
        "model": repr(net),
        "layers": layers,
        "normalize": bool(config.normalize),
        "init_scale": config.init_scale,
        "recipe": recipe,
        "trainable_parameters": sum(p.data().size for p in params if p.grad_req != "null"),
        "running_statistics": sum(p.data().size for p in params if p.grad_req == "null"),
    }


def _params_file_size(path: str) -> int:
    import mxnet as mx

    return sum(a.size for a in mx.nd.load(path).values())


# --------------------------------------------------------------------------- running the sides


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: Sequence[str], env: Dict[str, str], log: str, what: str) -> Tuple[float, float]:
    """Run ``cmd`` with output to ``log``; its wall and CPU seconds."""
    cpu0, t0 = _child_cpu(), time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    if code != 0:
        with open(log) as f:
            lines = [line.strip() for line in f if line.strip()]
        last = lines[-1] if lines else "no output"
        raise BenchError(f"{what} failed (exit {code}): {last} (log: {log})")
    return wall, cpu


def _loads() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _project_side(args, work: str, dataset: List[str], round_: int) -> Dict[str, Any]:
    name = f"project-r{round_}"
    env = {**BASE_ENV, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": REPO}
    python = sys.executable
    cmd = [python, "run_train.py", *dataset, "--epochs", str(args.epochs), "--val-fraction", "0"]
    cmd += ["--seed"]
    cmd += [str(args.seed), "--logdir", os.path.join(work, "logs"), "--run-name", name]
    load_before = _loads()
    wall, cpu = _run(cmd, env, os.path.join(work, name + ".log"), f"project round {round_}")
    load_after = _loads()
    run_dir = os.path.join(work, "logs", name)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    epochs = [h for h in metrics["history"] if h["epoch"] > 0]
    out = os.path.join(work, name + ".npz")
    embed = [python, "run_train.py", "embed", run_dir, "--params", "last", "--out", out, "-q"]
    _run(embed, env, os.path.join(work, name + "-embed.log"), f"project round {round_} embed")
    return {
        "side": "project",
        "round": round_,
        "train_s": sum(h["time"] for h in epochs),
        "epoch_s": [h["time"] for h in epochs],
        "wall_s": wall,
        "cpu_s": cpu,
        "load_before": load_before,
        "load_after": load_after,
        "embeddings": out,
        "own_test_p1": metrics["final"]["test"]["precision_at_1"],
        "saved_parameters": _params_file_size(os.path.join(run_dir, "model-last.params")),
        "command": " ".join(cmd),
    }


def _peer_side(args, work: str, python: str, spec: str, data: str, round_: int):
    name = f"peer-r{round_}"
    env = {k: v for k, v in BASE_ENV.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out = os.path.join(work, name)
    cmd = [python, os.path.abspath(__file__), "--worker", "--spec", spec, "--data", data]
    cmd += ["--epochs", str(args.epochs), "--seed", str(args.seed), "--out", out]
    cmd += ["--threads", str(args.threads), "--peer-miner", args.peer_miner]
    load_before = _loads()
    wall, cpu = _run(cmd, env, out + ".log", f"peer round {round_}")
    load_after = _loads()
    with open(out + ".json") as f:
        report = json.load(f)
    return {
        "side": "peer",
        "round": round_,
        "train_s": report["seconds"]["train"],
        "epoch_s": [e["time"] for e in report["epochs"]],
        "wall_s": wall,
        "cpu_s": cpu,
        "load_before": load_before,
        "load_after": load_after,
        "embeddings": out + ".npz",
        "worker": report,
    }


def _score(row: Dict[str, Any], labels_ref, triplets, margin: float) -> None:
    import numpy as np

    from gluon_triplet import evaluate_embeddings

    with np.load(row["embeddings"], allow_pickle=False) as z:
        emb, labels = z["embeddings"], z["labels"]
    if not np.array_equal(labels, labels_ref):
        raise BenchError(f"{row['embeddings']}: test labels differ from the other side's")
    scores = evaluate_embeddings(emb, labels, triplets=triplets, margin=margin)
    row["test"] = {
        k: scores[k]
        for k in ("precision_at_1", "map_at_r", "recall_at_2", "recall_at_8", "triplet_accuracy")
    }


# --------------------------------------------------------------------------- the bench venv


def _ensure_venv(path: str, install: bool) -> Tuple[str, Dict[str, str]]:
    python = os.path.join(path, "bin", "python")
    if install:
        log = os.path.join(tempfile.gettempdir(), "gluon-triplet-peer-install.log")
        steps = []
        if not os.path.exists(python):
            steps.append([shutil.which("python3") or "python3", "-m", "venv", path])
        steps.append([python, "-m", "pip", "install", "-q", TORCH_PIN, PML_PIN])
        print(f"installing {TORCH_PIN} {PML_PIN} into {path} ...", flush=True)
        open(log, "w").close()
        for step in steps:
            with open(log, "a") as out:
                code = subprocess.call(step, stdout=out, stderr=subprocess.STDOUT)
            if code != 0:
                with open(log) as f:
                    lines = [line.strip() for line in f if line.strip()]
                last = lines[-1] if lines else "no output"
                raise BenchError(
                    f"installing the peer into {path} failed ({os.path.basename(step[0])} "
                    f"{' '.join(step[1:3])}: exit {code}): {last} (log: {log})"
                )
    elif not os.path.exists(python):
        raise BenchError(f"--no-install: no virtualenv at {path} (run once without it)")
    probe = (
        "import json, numpy, torch, pytorch_metric_learning as p; print(json.dumps({"
        "'torch': torch.__version__, 'pytorch_metric_learning': p.__version__, "
        "'numpy': numpy.__version__, 'python': '%d.%d.%d' % __import__('sys').version_info[:3]}))"
    )
    try:
        out = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        last = (getattr(e, "stderr", "") or str(e)).strip().splitlines()
        raise BenchError(
            f"the peer virtualenv {path} cannot import torch and pytorch_metric_learning "
            f"({last[-1] if last else e}); run without --no-install"
        ) from None
    return python, json.loads(out)


# --------------------------------------------------------------------------- report


def _machine() -> Dict[str, Any]:
    model = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _median(rows, key, sub=None):
    values = [r[key][sub] if sub else r[key] for r in rows]
    return statistics.median(values)


def _table(rows: List[Dict[str, Any]]) -> str:
    head = (
        "| side | round | train s | wall s | CPU s | test P@1 | MAP@R | triplet acc "
        "| load before | load after |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        t = r["test"]
        lines.append(
            f"| {r['side']} | {r['round']} | {r['train_s']:.1f} | {r['wall_s']:.1f} "
            f"| {r['cpu_s']:.1f} | {t['precision_at_1']:.4f} | {t['map_at_r']:.4f} "
            f"| {t['triplet_accuracy']:.4f} | {' '.join(f'{x:.2f}' for x in r['load_before'])} "
            f"| {' '.join(f'{x:.2f}' for x in r['load_after'])} |"
        )
    summary = _summary(rows)
    for side in ("project", "peer"):
        m = summary[side]
        lines.append(
            f"| **{side}** | median | **{m['train_s']:.1f}** | **{m['wall_s']:.1f}** "
            f"| {m['cpu_s']:.1f} | **{m['precision_at_1']:.4f}** | {m['map_at_r']:.4f} "
            f"| {m['triplet_accuracy']:.4f} | | |"
        )
    p, q = summary["project"], summary["peer"]
    cells = [f"{q[k] / p[k]:.2f}x" for k in ("train_s", "wall_s", "cpu_s")]
    cells += [
        f"{q[k] / p[k]:.3f}x ({q[k] - p[k]:+.4f})"
        for k in ("precision_at_1", "map_at_r", "triplet_accuracy")
    ]
    lines.append(f"| peer / project | | {' | '.join(cells)} | | |")
    return "\n".join(lines)


def _summary(rows):
    out = {}
    for side in ("project", "peer"):
        mine = [r for r in rows if r["side"] == side]
        out[side] = {
            "train_s": _median(mine, "train_s"),
            "wall_s": _median(mine, "wall_s"),
            "cpu_s": _median(mine, "cpu_s"),
            **{k: _median(mine, "test", k) for k in mine[0]["test"]},
        }
    out["ratio_peer_over_project"] = {
        k: out["peer"][k] / out["project"][k]
        for k in ("train_s", "wall_s", "cpu_s", "precision_at_1", "map_at_r", "triplet_accuracy")
    }
    return out


def _write_markdown(path: str, result: Dict[str, Any], table: str) -> None:
    m, v = result["machine"], result["versions"]
    text = f"""# The default recipe against PyTorch + pytorch-metric-learning

Written by `bench/peer.py --save` on {result["date"]}; the JSON beside this file has every
epoch's time and the peer's per-epoch loss. Medians over {result["rounds"]} rounds, the
sides alternating (project, peer, ...). Train s: the epochs only; wall s: the whole process
(start, imports, data, training, and each side's own evaluation and output); CPU s: the
process's user + system seconds. P@1, MAP@R and strict triplet accuracy on the test split
({result["test_samples"]} samples), both sides scored by `gluon_triplet.evaluate_embeddings`.
The last row gives the ratios peer / project (for scores also the difference).

{table}

- Command: `{result["command"]}`
- Data: {result["data"]}; {result["epochs"]} epochs, {result["batches_per_epoch"]} P x K
  batches of 10 x 16 per epoch, seed {result["seed"]}, {result["threads"]} threads per side.
- Nets: {result["parameters"]["project"]:,} trainable parameters on both sides
  (+ {result["parameters"]["running_statistics"]} BatchNorm running statistics).
- Peer: torch {v["torch"]}, pytorch-metric-learning {v["pytorch_metric_learning"]},
  numpy {v["numpy"]}, miner `{result["peer_miner"]}`; project: mxnet {v["mxnet"]},
  numpy {v["project_numpy"]}, Python {m["python"]}.
- Machine: {m["cpu"]}, {m["cpus"]} CPUs, {m["memory_gib"]} GiB, no GPU; shared with other
  engineers' jobs (load averages, 1/5/15 min, before and after each side are in the table;
  {result["load"]["start"]} at the start, {result["load"]["end"]} at the end).
- Where the recipes still differ: the docstring of `bench/peer.py` (miner: PML's semihard
  keeps every triplet with 0 < d(a,n) - d(a,p) <= margin, the project's FaceNet rule one
  per positive pair; `--peer-miner facenet` gives the peer the project's rule).
"""
    with open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="project, peer pairs (default: 2)")
    p.add_argument("--epochs", type=int, help="epochs per side (default: 3; 1 with --quick)")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_TRAIN_PER_CLASS * 10:,} training samples (50 batches), "
        f"{QUICK_TEST_PER_CLASS * 10:,} test, 1 epoch",
    )
    p.add_argument(
        "--venv", default=DEFAULT_VENV, help="the peer's virtualenv (default: %(default)s)"
    )
    p.add_argument("--no-install", action="store_true", help="reuse --venv as it is")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="Fashion-MNIST IDX files")
    p.add_argument("--threads", type=int, default=2, help="threads per side (default: 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--peer-miner",
        choices=("pml", "facenet"),
        default="pml",
        help="pml: TripletMarginMiner semihard (default); facenet: the project's rule",
    )
    p.add_argument("--save", action="store_true", help="write bench/results/peer-<date>.json")
    p.add_argument("--workdir", help="keep runs and logs here (default: a temporary directory)")
    # The peer's own process, inside the bench virtualenv.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)
    return p


def _bench(args, work: str) -> int:
    if REPO not in sys.path:
        sys.path.insert(0, REPO)  # benchmark this checkout
    try:
        import mxnet
        import numpy as np

        from gluon_triplet import create_pairs
    except ImportError as e:
        raise BenchError(
            f"run this with the project's Python, e.g. .venv/bin/python ({e})"
        ) from None

    venv = os.path.abspath(os.path.expanduser(args.venv))
    if venv == REPO or venv.startswith(REPO + os.sep):
        raise BenchError(f"--venv {venv} is inside the repository; put it outside")
    python, versions = _ensure_venv(venv, not args.no_install)
    import gluon_triplet

    versions.update(mxnet=mxnet.__version__, project_numpy=np.__version__)
    print(f"project: {os.path.dirname(gluon_triplet.__file__)}", flush=True)
    print("peer: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)

    spec = net_spec(args.epochs)
    spec_path = os.path.join(work, "net.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    if args.quick:
        npz = os.path.join(work, "fashion-mnist-quick.npz")
        _write_quick_subset(args.data_dir, npz, args.seed)
        dataset, peer_data = ["--dataset", f"npz:{npz}"], f"npz:{npz}"
    else:
        dataset = ["--dataset", "fashion-mnist", "--data-dir", args.data_dir]
        peer_data = f"idx:{args.data_dir}"
    describe = [python, os.path.abspath(__file__), "--worker", "--describe", "--spec", spec_path]
    try:
        peer_net = json.loads(subprocess.run(describe, capture_output=True, text=True).stdout)
    except ValueError:
        raise BenchError("the peer could not build its net (run --worker --describe)") from None
    _compare_nets(spec, peer_net)
    total = spec["trainable_parameters"] + spec["running_statistics"]
    y_test = read_data(peer_data)["y_test"]
    triplets = create_pairs(y_test, seed=args.seed)

    start_load = _loads()
    rows = []
    for round_ in range(1, args.rounds + 1):
        for side in ("project", "peer"):
            if side == "project":
                row = _project_side(args, work, dataset, round_)
            else:
                row = _peer_side(args, work, python, spec_path, peer_data, round_)
            _score(row, y_test, triplets, spec["recipe"]["margin"])
            rows.append(row)
            print(
                f"round {round_} {side:7s}: train {row['train_s']:6.1f} s  wall "
                f"{row['wall_s']:6.1f} s  CPU {row['cpu_s']:6.1f} s  P@1 "
                f"{row['test']['precision_at_1']:.4f}  MAP@R {row['test']['map_at_r']:.4f}  "
                f"load {row['load_before'][0]:.2f} -> {row['load_after'][0]:.2f}",
                flush=True,
            )
            if side == "project" and abs(row["own_test_p1"] - row["test"]["precision_at_1"]) > 1e-6:
                raise BenchError(
                    f"project round {round_}: the run reported P@1 {row['own_test_p1']}, its "
                    f"embeddings score {row['test']['precision_at_1']} here"
                )
            if side == "project" and row["saved_parameters"] != total:
                raise BenchError(
                    f"project round {round_}: the run saved {row['saved_parameters']:,} "
                    f"values, the default net has {total:,}: not the net the peer mirrors"
                )

    peer = rows[1]["worker"]
    table = _table(rows)
    print()
    print(table)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python bench/peer.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "versions": versions,
        "data": "Fashion-MNIST subset (--quick)" if args.quick else "Fashion-MNIST",
        "test_samples": len(y_test),
        "epochs": args.epochs,
        "rounds": args.rounds,
        "seed": args.seed,
        "threads": args.threads,
        "peer_miner": args.peer_miner,
        "batches_per_epoch": peer["batches_per_epoch"],
        "parameters": {
            "project": spec["trainable_parameters"],
            "peer": peer["trainable_parameters"],
            "running_statistics": spec["running_statistics"],
        },
        "net": {"project": spec["model"], "peer": peer["layers"]},
        "recipe": spec["recipe"],
        "load": {"start": start_load, "end": _loads()},
        "rows": [{k: v for k, v in r.items() if k != "embeddings"} for r in rows],
        "summary": _summary(rows),
    }
    if args.save:
        os.makedirs(RESULTS, exist_ok=True)
        path = os.path.join(RESULTS, f"peer-{result['date']}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        _write_markdown(os.path.join(RESULTS, "peer.md"), result, table)
        print(f"\nwrote {os.path.relpath(path, REPO)} and bench/results/peer.md")
    return 0


def _compare_nets(spec: Dict[str, Any], peer: Dict[str, Any]) -> None:
    """Print both nets layer by layer; stop when their parameter counts differ."""
    print("nets, layer by layer (project | peer):")
    for mine, theirs in zip(spec["layers"], peer["layers"]):
        desc = ", ".join(f"{k}={v}" for k, v in mine.items() if k != "type")
        print(f"  {mine['type']:9s} {desc:50s} | {theirs}")
    print(
        f"trainable parameters: project {spec['trainable_parameters']:,}, peer "
        f"{peer['trainable_parameters']:,}; BatchNorm running statistics: project "
        f"{spec['running_statistics']:,}, peer {peer['running_statistics']:,}",
        flush=True,
    )
    counts = ("trainable_parameters", "running_statistics")
    if [spec[k] for k in counts] != [peer[k] for k in counts]:
        raise BenchError("the two nets' parameter counts differ")
    if len(spec["layers"]) != len(peer["layers"]):
        raise BenchError("the two nets have different numbers of layers")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        return _peer_main(args)
    if args.epochs is None:
        args.epochs = 1 if args.quick else 3
    if args.rounds < 1 or args.epochs < 1 or args.threads < 1:
        print("error: --rounds, --epochs and --threads must be >= 1", file=sys.stderr)
        return 2
    work = args.workdir or tempfile.mkdtemp(prefix="gluon-triplet-peer-")
    os.makedirs(work, exist_ok=True)
    try:
        code = _bench(args, work)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1  # the work directory stays, with the logs the message names
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
