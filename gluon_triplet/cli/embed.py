"""``gluon-triplet embed RUN_DIR --out FILE``: embed a dataset with a trained run's net."""

from __future__ import annotations

import argparse
import os
from typing import List, Sequence

import numpy as np

from ..io import atomic_save
from ..runs.report import command
from .common import add_common_flags, check_new_path, run_command
from .inference import add_inference_flags, embed_checked, load_for_inference

__all__ = ["HELP", "build_parser", "main"]

HELP = "embed a dataset with a trained run's net (.npy / .npz, projector)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gluon-triplet embed",
        description="Embed a dataset with a trained run's net. FILE.npy writes the (N, D) "
        "float32 embeddings there and the (N,) int64 labels to FILE-labels.npy; FILE.npz "
        "writes one archive with arrays 'embeddings', 'labels' (and 'class_names' when known).",
    )
    add_inference_flags(p)
    p.add_argument("--out", required=True, metavar="FILE.npy|FILE.npz", help="output file")
    p.add_argument(
        "--projector",
        metavar="DIR",
        help="also write a TensorBoard projector run (tensor 'embedding', labels, sprite) "
        "into DIR, which must be new or empty; see it with `gluon-triplet view DIR`",
    )
    p.add_argument(
        "--projector-samples",
        type=int,
        default=1000,
        help="samples in the projector, drawn with the run's seed: -1 = all; 0 (none, as in "
        "training) is refused with --projector (default: 1000)",
    )
    add_common_flags(p)
    return p


def _outputs(out: str) -> List[str]:
    if out.endswith(".npy"):
        return [out, out[: -len(".npy")] + "-labels.npy"]
    if out.endswith(".npz"):
        return [out]
    raise ValueError(f"--out must end in .npy or .npz, got {out!r}")


def _embed(args: argparse.Namespace) -> None:
    outputs = _outputs(args.out)
    for path in outputs:
        check_new_path(path, "--out")
    if args.projector is not None:
        if os.path.isdir(args.projector) and os.listdir(args.projector):
            raise FileExistsError(f"--projector directory {args.projector!r} is not empty")
        if os.path.exists(args.projector) and not os.path.isdir(args.projector):
            raise FileExistsError(f"--projector {args.projector!r} exists and is not a directory")
    if args.projector_samples < -1:
        raise ValueError(
            f"--projector-samples must be -1 (all), 0 (none) or a count, got "
            f"{args.projector_samples}"
        )
    if args.projector is not None and args.projector_samples == 0:
        raise ValueError(
            "--projector-samples 0 means no projector points; with --projector give a count, "
            "or -1 for all"
        )
    net, config, (data,) = load_for_inference(args, args.dataset)
    x, y = data.split(args.split)
    emb = embed_checked(net, x, config, args.run_dir)
    if args.out.endswith(".npy"):
        atomic_save(outputs[0], lambda p: np.save(p, emb))
        atomic_save(outputs[1], lambda p: np.save(p, y))
    else:
        arrays = {"embeddings": emb, "labels": y}
        if data.class_names:
            arrays["class_names"] = np.array(data.class_names)
        atomic_save(outputs[0], lambda p: np.savez(p, **arrays))
    print(
        f"embedded {len(emb)} {args.split} samples of {data.name} with {args.run_dir} "
        f"({args.params}): {emb.shape} float32 -> {', '.join(outputs)}",
        flush=True,
    )
    if args.projector is not None:
        from mxboard import SummaryWriter

        from ..runs.board import write_projector
        from ..runs.sprites import sprite_images

        n = len(emb) if args.projector_samples == -1 else min(args.projector_samples, len(emb))
        pick = np.sort(np.random.default_rng(config.seed).choice(len(emb), size=n, replace=False))
        names = data.class_names
        labels = [names[int(v)] if names else str(v) for v in y[pick]]
        os.makedirs(args.projector, exist_ok=True)
        writer = SummaryWriter(logdir=args.projector, verbose=False)
        try:
            write_projector(writer, "embedding", emb[pick], labels, sprite_images(x[pick]))
        finally:
            writer.close()
        print(
            f"projector: {n} points in {args.projector} | view: {command('view', args.projector)}",
            flush=True,
        )


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet embed ...``; returns the exit status."""
    return run_command(build_parser(), _embed, argv)
