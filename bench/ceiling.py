#!/usr/bin/env python
"""What the CPU can do for the default nets: kernel ceilings against the training step.

In ONE process (so one machine load hits every figure alike), round after round:

kernels  GEMM GFLOP/s (``nd.dot`` and ``FullyConnected``, 1024^3 and the net's Dense
         shape) and convolution GFLOP/s at every convolution of the net (forward, and
         forward + both backward products), in float32 and in bfloat16 (oneDNN; the
         operands cast once beforehand with ``amp_cast``).
train    the bare training step of each default net (forward, ``TripletLoss`` over fixed
         triplets, backward, Adam step; one hybridized ``static_alloc`` graph, as
         bench/loop.py): samples/s and achieved GFLOP/s, float32 against bfloat16 mixed
         precision (``mx.contrib.amp.init(target_dtype="bfloat16")``: Convolution and
         FullyConnected in bf16, float32 master weights, the rest float32).
embed    inference samples/s of each net: float32 against
         ``amp.convert_hybrid_block(net, target_dtype="bfloat16")``.

The nets: ``cnn`` for 28 x 28 grey pictures (pooled 3x3 blocks 16/32/128, BatchNorm on the
last, flatten) and for 64 x 64 RGB ones (strided 5x5 blocks 32/64/128, BatchNorm, global
average pooling), P x K = 10 x 16 = 160 samples a batch, as the default recipe.

FLOPs count 2 per multiply-add of the convolutions and Dense layers only (BatchNorm, ReLU,
pooling and the loss are left out): forward, weight gradient, and input gradient for every
layer but the first.

envs     (``--only envs``) the bare step under oneDNN, MXNet engine and OpenMP run-time
         settings (:data:`SETTINGS`), each in its own process, settings interleaved.

Usage::

    python bench/ceiling.py                          # 5-20 min, depending on the load
    python bench/ceiling.py --rounds 3 --only kernels
    DNNL_MAX_CPU_ISA=AVX512_CORE_AMX python bench/ceiling.py --amx   # oneDNN's AMX kernels
    python bench/ceiling.py --only envs --rounds 3 --step-reps 10
    python bench/ceiling.py --evaluate RUN_DIR       # a trained run's test split, fp32 vs bf16
    python bench/ceiling.py --cli --dataset fashion-mnist --epochs 3   # train under bf16 AMP

Results: bench/results/speed-ceiling.md.

oneDNN 2.4 (MXNet 1.9.1) uses AMX only when ``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX`` is set,
and Linux then needs the process to ask for the AMX tile state first (``--amx`` does, with
``arch_prctl(ARCH_REQ_XCOMP_PERM)``); without that request the first AMX instruction
kills the process with SIGILL. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np  # noqa: E402

SECTIONS = ("kernels", "train", "embed", "envs")
NETS = {"28px": (1, 28, 28), "64px": (3, 64, 64)}


def request_amx() -> str:
    """Ask Linux for the AMX tile state (XTILEDATA): ``arch_prctl(ARCH_REQ_XCOMP_PERM, 18)``."""
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(158, 0x1023, 18)  # SYS_arch_prctl on x86-64, ARCH_REQ_XCOMP_PERM
    return "granted" if rc == 0 else f"refused (errno {ctypes.get_errno()})"


def _np_dtype(dtype):
    """``amp_cast`` takes bfloat16 as the structured NumPy dtype MXNet defines for it."""
    from mxnet.contrib.amp.amp import bfloat16

    return bfloat16 if dtype == "bfloat16" else np.dtype(dtype)


def _waitall():
    import mxnet as mx

    mx.nd.waitall()


def _median_rounds(fns: Dict[str, Callable[[], None]], rounds: int, reps: int):
    """Median seconds per call of each fn; every round runs them all, order alternating."""
    names = list(fns)
    for name in names:  # warm-up: graphs, primitives, memory
        for _ in range(3):
            fns[name]()
    _waitall()  # a step returns before its queued backward and update: not the next one's
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            for _ in range(reps):
                fns[name]()
            # A step returns when its loss is ready; its backward and update may still
            # be queued, and would otherwise be charged to whatever is timed next.
            _waitall()
            times[name].append((time.perf_counter() - start) / reps)
    return {name: statistics.median(v) for name, v in times.items()}


def _table(headers, rows):
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


# --------------------------------------------------------------------------- the nets


def build_net(mx, gt, shape, ctx):
    from gluon_triplet.config import Config
    from gluon_triplet.nets.zoo import model_from_config

    net, _ = model_from_config(Config(seed=0), shape, ctx=[ctx])
    return net


def layer_flops(mx, net, shape, batch):
    """The net's Convolution and FullyConnected layers: name, op, shapes, FLOPs per sample."""
    data = mx.sym.var("data")
    sym = net(data)
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=(batch, *shape))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    layers = []
    for node in nodes:
        if node["op"] not in ("Convolution", "FullyConnected"):
            continue
        src = nodes[node["inputs"][0][0]]
        in_name = src["name"] if src["op"] == "null" else f"{src['name']}_output"
        in_shape = shapes[in_name]
        w_shape = shapes[nodes[node["inputs"][1][0]]["name"]]
        out_shape = shapes[f"{node['name']}_output"]
        macs = int(np.prod(out_shape[1:])) * int(np.prod(w_shape[1:]))
        layers.append(
            {
                "name": node["name"],
                "op": node["op"],
                "attrs": node.get("attrs", {}),
                "in": tuple(in_shape),
                "weight": tuple(w_shape),
                "out": tuple(out_shape),
                "first": src["op"] == "null" and src["name"] == "data",
                "fwd_flops": 2 * macs,
            }
        )
    return layers


def train_flops_per_sample(layers) -> int:
    return sum(layer["fwd_flops"] * (2 if layer["first"] else 3) for layer in layers)


# --------------------------------------------------------------------------- kernels


def _kernel_call(mx, layer, dtype, backward):
    """A closure running one layer's op on random operands cast to ``dtype`` beforehand."""
    from mxnet import autograd

    nd = mx.nd
    conv, fc = nd.Convolution, nd.FullyConnected  # bound now: amp.init rebinds the module's
    dtype, _, layout = dtype.partition("-")
    in_shape, w_shape = layer["in"], layer["weight"]
    if layout == "NHWC":  # channels last: (B, H, W, C) data, (O, kh, kw, I) weights
        in_shape, w_shape = (
            (in_shape[0], *in_shape[2:], in_shape[1]),
            (w_shape[0], *w_shape[2:], w_shape[1]),
        )
    x = nd.amp_cast(nd.random.uniform(-1, 1, shape=in_shape), dtype=_np_dtype(dtype))
    w = nd.amp_cast(nd.random.uniform(-0.1, 0.1, shape=w_shape), dtype=_np_dtype(dtype))
    attrs = dict(layer["attrs"])
    for key in ("kernel", "stride", "pad", "dilate"):
        if key in attrs:
            attrs[key] = tuple(int(v) for v in attrs[key].strip("()").split(",") if v.strip())
    for key in ("num_filter", "num_hidden", "num_group"):
        if key in attrs:
            attrs[key] = int(attrs[key])
    attrs = {
        k: v
        for k, v in attrs.items()
        if k in ("kernel", "stride", "pad", "num_filter", "num_hidden", "num_group", "layout")
    }
    attrs["no_bias"] = True
    if layout:
        attrs["layout"] = layout
    op = conv if layer["op"] == "Convolution" else fc
    if layer["op"] == "FullyConnected":
        x = x.reshape((x.shape[0], -1))
    if not backward:
        return lambda: op(x, w, **attrs).wait_to_read()
    if not layer["first"]:
        x.attach_grad()
    w.attach_grad()

    def step():
        with autograd.record():
            y = op(x, w, **attrs)
        y.backward()
        w.grad.wait_to_read()

    return step


def _first_error(e):
    """The line of an MXNetError that says what failed."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = [ln for ln in lines if "Check failed" in ln or "MXNetError" in ln or "could not" in ln]
    return (said or lines or [type(e).__name__])[-1][:150]


def _gemm_call(mx, m, k, n, dtype, kind):
    nd = mx.nd
    dot, fc = nd.dot, nd.FullyConnected
    a = nd.amp_cast(nd.random.uniform(-1, 1, shape=(m, k)), dtype=_np_dtype(dtype))
    b = nd.amp_cast(nd.random.uniform(-1, 1, shape=(n, k)), dtype=_np_dtype(dtype))
    if kind == "dot":
        return lambda: dot(a, b, transpose_b=True).wait_to_read()
    return lambda: fc(a, b, no_bias=True, num_hidden=n).wait_to_read()


def bench_kernels(mx, nets, dtypes, args):
    print("\n## kernels (median seconds per call over rounds; GFLOP/s)\n")
    fns, flops = {}, {}
    gemms = [(1024, 1024, 1024)]
    for _net, _shape, layers in nets.values():
        dense = [layer for layer in layers if layer["op"] == "FullyConnected"]
        gemms += [(args.batch, layer["weight"][1], layer["weight"][0]) for layer in dense]
    for m, k, n in dict.fromkeys(gemms):
        for kind in ("dot", "FC"):
            for dt in dtypes:
                key = (f"GEMM {kind} {m}x{k}x{n}", dt, "fwd")
                try:
                    fn = _gemm_call(mx, m, k, n, dt, kind)
                    fn()
                except Exception as e:  # nd.dot has no bf16 kernel in 1.9.1
                    print(f"  {key[0]} {dt}: unsupported ({_first_error(e)})")
                    continue
                fns[key], flops[key] = fn, 2 * m * k * n
    for label, (_net, _shape, layers) in nets.items():
        for layer in layers:
            for mode in ("fwd", "fwd+bwd"):
                for dt in dtypes:
                    key = (f"{label} {layer['name']} {layer['in']}->{layer['out'][1]}", dt, mode)
                    fns[key] = _kernel_call(mx, layer, dt, mode == "fwd+bwd")
                    mult = 1 if mode == "fwd" else (2 if layer["first"] else 3)
                    flops[key] = layer["fwd_flops"] * args.batch * mult
    named = {"|".join(k): fn for k, fn in fns.items()}
    secs = _median_rounds(named, args.rounds, args.kernel_reps)
    out = []
    for key in fns:
        s = secs["|".join(key)]
        out.append(
            {
                "kernel": key[0],
                "dtype": key[1],
                "mode": key[2],
                "seconds": s,
                "gflops": flops[key] / s / 1e9,
            }
        )
    rows = {}
    for r in out:
        rows.setdefault((r["kernel"], r["mode"]), {})[r["dtype"]] = r
    table, cols = [], list(dtypes)
    for (kernel, mode), by in rows.items():
        f32 = by.get("float32")
        cells = [kernel, mode]
        for dt in cols:
            cells.append(f"{by[dt]['gflops']:.1f}" if dt in by else "n/a")
        ratio = (
            f"{f32['seconds'] / by['bfloat16']['seconds']:.2f}x"
            if f32 and "bfloat16" in by
            else "n/a"
        )
        table.append(cells + [ratio])
    _table(["kernel", "pass"] + [f"{dt} GFLOP/s" for dt in cols] + ["bf16 speed-up"], table)
    return out


def probe_channels_last(mx, nets, args):
    """Each convolution of the nets forward in NHWC, last (a failure may upset later ops)."""
    print("\n## channels-last (NHWC) convolutions, forward, float32\n")
    out = []
    for label, (_net, _shape, layers) in nets.items():
        for layer in layers:
            if layer["op"] != "Convolution":
                continue
            name = f"{label} {layer['name']} {layer['in']}->{layer['out'][1]}"
            try:
                fn = _kernel_call(mx, layer, "float32-NHWC", False)
                fn()
                secs = _median_rounds({"NHWC": fn}, args.rounds, args.kernel_reps)["NHWC"]
                result = f"{layer['fwd_flops'] * args.batch / secs / 1e9:.1f} GFLOP/s"
            except Exception as e:
                result = f"fails: {_first_error(e)}"
            print(f"- {name}: {result}")
            out.append({"kernel": name, "result": result})
    return out


def mix_ceiling(kernels, label, dtype):
    """GFLOP/s of the net's own layers run alone, forward + backward, summed like the step."""
    mine = [
        k
        for k in kernels
        if k["kernel"].startswith(label + " ") and k["dtype"] == dtype and k["mode"] == "fwd+bwd"
    ]
    total = sum(k["gflops"] * k["seconds"] for k in mine)
    return total / sum(k["seconds"] for k in mine) if mine else None


# --------------------------------------------------------------------------- train


def _bare_step(mx, net, shape, batch, ctx, cast_out):
    """bench/loop.py's bare step for a synthetic P x K batch: (step fn, trainer)."""
    from loop import BareStep, fixed_triplets
    from mxnet import autograd, gluon

    class Out32(gluon.HybridBlock):
        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def hybrid_forward(self, F, x):
            return F.amp_cast(self.inner(x), dtype="float32")

    body = Out32(net) if cast_out else net
    step = BareStep(body, gluon.loss.TripletLoss(margin=1.0))
    step.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(0, 1, shape=(batch, *shape), ctx=ctx)
    triplets = [mx.nd.array(t, ctx=ctx, dtype=np.int32) for t in fixed_triplets(10, batch // 10)]
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-3})

    def run():
        with autograd.record():
            loss = step(x, *triplets)
        loss.backward()
        trainer.step(1)
        loss.wait_to_read()

    return run


def _embed_call(mx, net, shape, batch, ctx):
    x = mx.nd.random.uniform(0, 1, shape=(batch, *shape), ctx=ctx)
    return lambda: net(x).wait_to_read()


def bench_steps(mx, nets, ctx, args, kernels, amp_ok):
    """train and embed sections: fp32 graphs first, then amp.init and the bf16 graphs."""
    from mxnet.contrib import amp

    from gluon_triplet.training.trainer import set_seed

    fns = {}
    for label, (net, shape, _layers) in nets.items():
        if "train" in args.sections:
            fns[("train", label, "float32")] = _bare_step(mx, net, shape, args.batch, ctx, False)
        if "embed" in args.sections:
            inf = build_net(mx, None, shape, ctx)
            inf.hybridize(static_alloc=True, static_shape=True)
            fns[("embed", label, "float32")] = _embed_call(mx, inf, shape, args.embed_batch, ctx)
            if amp_ok:
                inf(mx.nd.zeros((1, *shape), ctx=ctx))
                lp = amp.convert_hybrid_block(inf, target_dtype="bfloat16", ctx=ctx)
                lp.hybridize(static_alloc=True, static_shape=True)
                fns[("embed", label, "bfloat16")] = _embed_call(
                    mx, lp, shape, args.embed_batch, ctx
                )
    for fn in fns.values():
        fn()  # build every float32 graph before amp.init patches the operators
    if amp_ok and "train" in args.sections:
        amp_init_bf16()
        for label, (_net, shape, _layers) in nets.items():
            set_seed(0)
            lp = build_net(mx, None, shape, ctx)
            fns[("train", label, "bfloat16")] = _bare_step(mx, lp, shape, args.batch, ctx, True)
    named = {"|".join(k): fn for k, fn in fns.items()}
    secs = _median_rounds(named, args.rounds, args.step_reps)
    out = []
    for section, label, dt in fns:
        s = secs[f"{section}|{label}|{dt}"]
        n = args.batch if section == "train" else args.embed_batch
        per = (
            train_flops_per_sample(nets[label][2])
            if section == "train"
            else sum(layer["fwd_flops"] for layer in nets[label][2])
        )
        row = {
            "section": section,
            "net": label,
            "dtype": dt,
            "seconds": s,
            "samples_per_s": n / s,
            "gflops": n * per / s / 1e9,
        }
        if section == "train":
            ceil = mix_ceiling(kernels, label, dt) if kernels else None
            row["mix_ceiling_gflops"] = ceil
        out.append(row)
    return out


def print_steps(rows, peak):
    print("\n## training step and inference (median over rounds)\n")
    base = {(r["section"], r["net"]): r for r in rows if r["dtype"] == "float32"}
    table = []
    for r in rows:
        f32 = base[(r["section"], r["net"])]
        ceil = r.get("mix_ceiling_gflops")
        pk = peak.get(r["dtype"])
        table.append(
            [
                r["section"],
                r["net"],
                r["dtype"],
                f"{r['samples_per_s']:,.0f}",
                f"{r['gflops']:.1f}",
                f"{r['gflops'] / ceil:.0%}" if ceil else "-",
                f"{r['gflops'] / pk:.0%}" if pk else "-",
                f"{f32['seconds'] / r['seconds']:.2f}x",
            ]
        )
    _table(
        [
            "what",
            "net",
            "dtype",
            "samples/s",
            "GFLOP/s",
            "of layer-mix ceiling",
            "of GEMM peak",
            "speed vs fp32",
        ],
        table,
    )


# --------------------------------------------------------------------------- envs

#: Run-time settings of MXNet 1.9.1 (libmxnet.so's getenv names), oneDNN and GNU OpenMP
#: (the wheel links libgomp: KMP_* variables do nothing). Each runs in its own process.
SETTINGS = {
    "default": {},
    "OMP_WAIT_POLICY=ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    "OMP_PROC_BIND=close": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
    "MXNET_ENGINE_TYPE=NaiveEngine": {"MXNET_ENGINE_TYPE": "NaiveEngine"},
    "MXNET_EXEC_BULK_EXEC_TRAIN=0": {"MXNET_EXEC_BULK_EXEC_TRAIN": "0"},
    "MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN=64": {"MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN": "64"},
    "MXNET_MKLDNN_ENABLED=0": {"MXNET_MKLDNN_ENABLED": "0"},
    "MXNET_USE_OPERATOR_TUNING=0": {"MXNET_USE_OPERATOR_TUNING": "0"},
    "DNNL_MAX_CPU_ISA=AVX512_CORE_AMX": {"_amx": "1", "DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"},
    "bf16": {"_dtype": "bfloat16"},
    "bf16+AMX": {"_dtype": "bfloat16", "_amx": "1", "DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"},
}


def step_worker(mx, args):
    """One process, one setting: the bare step's samples/s of one net (``--worker``)."""
    label, dtype = args.worker.split(":")
    if dtype == "bfloat16":
        amp_init_bf16()
    net = build_net(mx, None, NETS[label], mx.cpu())
    run = _bare_step(mx, net, NETS[label], args.batch, mx.cpu(), dtype == "bfloat16")
    for _ in range(5):
        run()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.step_reps):
        run()
    _waitall()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "samples_per_s": args.step_reps * args.batch / wall,
        "cpu_s_per_step": cpu / args.step_reps,
    }


def _run_worker(name, label, args):
    env = {k: v for k, v in os.environ.items()}
    extra = dict(SETTINGS[name])
    dtype = extra.pop("_dtype", "float32")
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        f"{label}:{dtype}",
        "--batch",
        str(args.batch),
        "--step-reps",
        str(args.step_reps),
    ]
    if extra.pop("_amx", None):
        cmd.append("--amx")
    env.update(extra)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"rc {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_envs(args):
    """Each setting in its own process, settings interleaved round after round."""
    names = args.settings or list(SETTINGS)
    print("\n## run-time settings: bare training step, one process per setting and round\n")
    print(f"load average at start {os.getloadavg()}")
    results = {}
    for label in args.nets:
        got = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                got[name].append(_run_worker(name, label, args))
        results[label] = got
    rows = []
    for label, got in results.items():
        base = (
            statistics.median(x["samples_per_s"] for x in got["default"] if "error" not in x)
            if "default" in got
            else None
        )
        for name, runs in got.items():
            ok = [x for x in runs if "error" not in x]
            if not ok:
                rows.append([label, name, "failed: " + runs[0]["error"][:80], "", "", ""])
                continue
            sps = statistics.median(x["samples_per_s"] for x in ok)
            cpu = statistics.median(x["cpu_s_per_step"] for x in ok)
            rows.append(
                [
                    label,
                    name,
                    f"{sps:,.0f}",
                    f"{min(x['samples_per_s'] for x in ok):,.0f}"
                    f"-{max(x['samples_per_s'] for x in ok):,.0f}",
                    f"{1e3 * cpu:.1f}",
                    f"{sps / base:.2f}x" if base else "-",
                ]
            )
    _table(["net", "setting", "samples/s (median)", "range", "CPU ms/step", "vs default"], rows)
    print(f"\nload average at end {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


# --------------------------------------------------------------------------- quality


#: Operators with no inputs: MXNet 1.9.1's AMP wraps them in its FP32 list all the same,
#: and its symbol wrapper then fails on them (``TypeError: 'NoneType' object is not
#: iterable`` in ``amp.py``, from ``F.arange`` in the miner's graph).
_NO_INPUT = ("_arange", "_linspace", "_eye", "_full", "_ones", "_zeros", "_zeros_without_dtype")


def amp_init_bf16():
    """``amp.init(target_dtype="bfloat16")`` minus the input-less operators it breaks."""
    from mxnet.contrib import amp
    from mxnet.contrib.amp.lists import symbol_bf16

    fp32 = [
        op
        for op in symbol_bf16.FP32_FUNCS
        if op not in _NO_INPUT and not (op.startswith("_random_") and not op.endswith("_like"))
    ]
    amp.init(target_dtype="bfloat16", fp32_ops=fp32)


def evaluate_run(mx, args):
    """A trained run's test split embedded in float32 and in bf16: speed and metrics.

    bf16 is ``amp.convert_hybrid_block`` of the run's net (Convolution and FullyConnected
    in bf16, the parameters they read cast once); both nets embed the whole test split
    round after round, then the package's ``evaluate`` scores each embedding.
    """
    from mxnet.contrib import amp

    from gluon_triplet.data.datasets import load_dataset
    from gluon_triplet.runs.api import evaluate, load_run

    net, config = load_run(args.evaluate)
    data = load_dataset(config.dataset, data_dir=config.data_dir)
    x = net.prepare_input(data.x_test) if hasattr(net, "prepare_input") else data.x_test
    x = mx.nd.array(np.asarray(x, dtype=np.float32))
    net.hybridize(static_alloc=True, static_shape=True)
    net(x[:2])
    nets = {
        "float32": net,
        "bfloat16": amp.convert_hybrid_block(net, target_dtype="bfloat16", ctx=mx.cpu()),
    }
    nets["bfloat16"].hybridize(static_alloc=True, static_shape=True)
    batch = args.embed_batch

    def embedder(block):
        def run():
            outs = [block(x[i : i + batch]) for i in range(0, len(x), batch)]
            return mx.nd.concat(*outs, dim=0).astype("float32").asnumpy()

        return run

    fns = {name: embedder(block) for name, block in nets.items()}
    secs = _median_rounds(fns, args.rounds, 1)
    rows = []
    for name, fn in fns.items():
        m = evaluate(fn(), data.y_test, margin=config.margin, seed=config.seed)
        rows.append(
            [
                name,
                f"{len(x) / secs[name]:,.0f}",
                f"{secs['float32'] / secs[name]:.2f}x",
                f"{m['precision_at_1']:.4f}",
                f"{m['map_at_r']:.4f}",
                f"{m['triplet_accuracy']:.4f}",
            ]
        )
    print(f"\n## {args.evaluate}: test split ({len(x):,} samples), batch {batch}\n")
    _table(["dtype", "samples/s", "vs fp32", "test P@1", "test MAP@R", "triplet acc"], rows)
    print(f"\nload average {os.getloadavg()}")
    return 0


def cli_run(args):
    """``gluon-triplet ARGS`` with bf16 mixed precision switched on process-wide first."""
    from gluon_triplet.cli import main as cli_main

    amp_init_bf16()
    print(f"bench/ceiling.py: amp.init(bfloat16), AMX {args.amx}", file=sys.stderr)
    return cli_main(args.cli)


# --------------------------------------------------------------------------- main


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=SECTIONS, dest="sections", default=SECTIONS[:3])
    p.add_argument("--nets", nargs="+", choices=tuple(NETS), default=tuple(NETS))
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    p.add_argument("--batch", type=int, default=160, help="training batch (P x K)")
    p.add_argument("--embed-batch", type=int, default=1024)
    p.add_argument("--kernel-reps", type=int, default=20, help="calls per kernel per round")
    p.add_argument("--step-reps", type=int, default=20, help="steps per net per round")
    p.add_argument("--amx", action="store_true", help="request the AMX tile state first")
    p.add_argument("--no-bf16", action="store_true", help="float32 only")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--settings", nargs="+", metavar="NAME", help="envs: these settings only")
    p.add_argument("--worker", metavar="NET:DTYPE", help=argparse.SUPPRESS)
    p.add_argument("--evaluate", metavar="RUN_DIR", help="bf16 inference of a trained run")
    p.add_argument(
        "--cli",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="quality run: amp.init(bfloat16) (with --amx, AMX), then the package's CLI "
        "with ARGS in this process (e.g. --cli train --dataset fashion-mnist --epochs 3)",
    )
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    amx = request_amx() if args.amx else "not requested"
    # gluon_triplet first: it sets the OpenMP defaults MXNet reads when it loads.
    gt = importlib.import_module("gluon_triplet")
    mx = importlib.import_module("mxnet")
    set_seed = gt.set_seed

    if args.worker:
        print(json.dumps(step_worker(mx, args)))
        return 0
    if args.cli is not None:
        return cli_run(args)
    if args.evaluate:
        return evaluate_run(mx, args)
    if "envs" in args.sections:
        return bench_envs(args)

    ctx = mx.cpu()
    flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split()
    env = {
        "cpu": next(
            line.split(":")[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        "cpus": os.cpu_count(),
        "cpu_bf16_flags": [f for f in flags if "bf16" in f or f.startswith("amx")],
        "mxnet": mx.__version__,
        "onednn": mx.runtime.Features().is_enabled("MKLDNN"),
        "gluon_triplet": gt.__version__,
        "loadavg_start": os.getloadavg(),
        "amx_request": amx,
        **{
            k: v
            for k, v in os.environ.items()
            if k.startswith(("MXNET_", "DNNL_", "ONEDNN_", "KMP_", "OMP_"))
        },
    }
    print("## environment\n")
    for k, v in env.items():
        print(f"- {k}: {v}")
    dtypes = ["float32"] if args.no_bf16 else ["float32", "bfloat16"]
    nets = {}
    for label in args.nets:
        set_seed(0)
        net = build_net(mx, gt, NETS[label], ctx)
        layers = layer_flops(mx, net, NETS[label], args.batch)
        nets[label] = (net, NETS[label], layers)
        print(
            f"- {label} net: {len(layers)} conv/dense layers, "
            f"{train_flops_per_sample(layers) / 1e6:.2f} MFLOP per training sample, "
            f"{sum(layer['fwd_flops'] for layer in layers) / 1e6:.2f} forward"
        )
    results = {"env": env, "argv": sys.argv[1:]}
    kernels = bench_kernels(mx, nets, dtypes, args) if "kernels" in args.sections else []
    results["kernels"] = kernels
    peak = {}
    for dt in dtypes:
        big = [k["gflops"] for k in kernels if k["dtype"] == dt and k["kernel"].startswith("GEMM")]
        if big:
            peak[dt] = max(big)
    if kernels:
        print(f"\nGEMM peak measured: {', '.join(f'{d} {g:.1f} GFLOP/s' for d, g in peak.items())}")
    if set(args.sections) & {"train", "embed"}:
        steps = bench_steps(mx, nets, ctx, args, kernels, "bfloat16" in dtypes)
        print_steps(steps, peak)
        results["steps"] = steps
    if "kernels" in args.sections:
        results["channels_last"] = probe_channels_last(mx, nets, args)
    env["loadavg_end"] = os.getloadavg()
    print(f"\nload average at start {env['loadavg_start']}, at end {env['loadavg_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
