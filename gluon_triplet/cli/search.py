"""``gluon-triplet search INDEX_DIR --query Q -k 10``: the nearest indexed items of queries
(picture files or a dataset), embedded with the run the index was built from."""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import add_common_flags, add_split_flag, check_new_path, run_command

__all__ = ["HELP", "build_parser", "main"]

HELP = "nearest neighbours of pictures or a dataset in an index (table, JSON, montage)"

logger = logging.getLogger("gluon_triplet")

_DATASET_PREFIXES = ("npz:", "idx:", "folder:", "rec:", "image:")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gluon-triplet search",
        description="Embed queries with the run an index was built from (refused if its "
        "parameters changed since) and print their k nearest indexed items: a table "
        "(query, rank, id, label, distance, path), or with --json one object per query per "
        'line: {"query": <index or path>, "label": <if known>, "neighbours": [{"id", '
        '"label", "distance", "path"}, ...]}.',
    )
    p.add_argument("index_dir", metavar="INDEX_DIR", help="written by `gluon-triplet index`")
    p.add_argument(
        "--query",
        nargs="+",
        required=True,
        metavar="Q",
        help="picture files, or one dataset (mnist, fashion-mnist, mnist-5k, idx:DIR, "
        "npz:FILE, folder:DIR, rec:PREFIX) whose --split is searched",
    )
    p.add_argument("-k", type=int, default=10, help="neighbours per query (default: 10)")
    add_split_flag(p, of="a query dataset")
    p.add_argument("--limit", type=int, help="only the first N queries (default: all)")
    p.add_argument("--data-dir", help="IDX files of a mnist / fashion-mnist query dataset")
    p.add_argument("--json", action="store_true", help="one JSON object per query per line")
    p.add_argument(
        "--montage",
        metavar="FILE.png",
        help="draw each query beside its neighbours (same-class ones framed green, others "
        "red, when the query's label is known), read from their recorded files when the "
        "index has paths (folder:/image: data), else from its dataset; the file must not exist",
    )
    p.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="embed the queries with this run directory instead of the one in the manifest "
        "(e.g. after moving it); its parameters must be the indexed ones",
    )
    p.add_argument("--ctx", default="cpu", help="context to run the net on (default: cpu)")
    add_common_flags(p)
    return p


def _check_run(index: Any, index_dir: str, run_dir: Optional[str]) -> Tuple[Any, Any, str]:
    """The run, its config and params file, checked to be those the index was built with."""
    from ..search.index import metric_for_distance
    from ..search.service import indexed_run

    run, path = indexed_run(index_dir, run_dir)
    config = run.load_config()
    if config.embedding_size != index.dim:
        raise ValueError(
            f"{run.path} embeds into {config.embedding_size} dimensions but the index holds "
            f"{index.dim}-d embeddings"
        )
    metric = metric_for_distance(config.distance)
    if metric != index.metric:
        raise ValueError(f"{run.path} ranks by {metric} but the index by {index.metric}")
    return run, config, path


def _queries(
    args: argparse.Namespace, index: Any, config: Any
) -> Tuple[np.ndarray, List[Any], Optional[np.ndarray], Any]:
    """``(x, names, labels, class_names)`` of the queries the flags name."""
    import dataclasses

    from ..data.datasets import load_dataset
    from ..data.decoding import ImageOptions
    from ..data.pictures import image_files_bundle

    # Pictures are decoded to the run's recorded size and channels, whatever the source.
    images = ImageOptions.from_config(config)

    shape = tuple(index.info.get("sample_shape") or ())
    named = ("mnist", "fashion-mnist", "mnist-5k")
    datasets = [q for q in args.query if q in named or q.startswith(_DATASET_PREFIXES)]
    if datasets:
        if len(args.query) > 1:
            raise ValueError(
                f"--query takes one dataset or picture files, not both: {' '.join(args.query)}"
            )
        data = load_dataset(datasets[0], args.data_dir, logger=logger, images=images)
        x, y = data.split(args.split)
        names: List[Any] = list(range(len(x)))
        labels: Optional[np.ndarray] = y
        class_names = data.class_names
    else:
        if len(shape) not in (2, 3):
            raise ValueError(
                f"the index's run takes samples shaped {shape}, not pictures; "
                "query it with a dataset (npz:FILE, idx:DIR, ...)"
            )
        channels = 1 if len(shape) == 2 else shape[0]
        options = dataclasses.replace(images, size=tuple(shape[-2:]), channels=channels, workers=0)
        for q in args.query:
            if not os.path.isfile(q):
                raise FileNotFoundError(f"--query {q!r} is neither a file nor a dataset spec")
        # the paths as given: a name may hold commas (no "image:" list to split)
        data = image_files_bundle(args.query, "image:" + ",".join(args.query), options)
        x = data.x_test
        names, labels, class_names = list(args.query), None, index.class_names
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        x, names = x[: args.limit], names[: args.limit]
        labels = None if labels is None else labels[: args.limit]
    if shape and tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"queries are shaped {tuple(x.shape[1:])} but the index's run takes {shape}"
        )
    return x, names, labels, class_names


def _search(args: argparse.Namespace) -> None:
    from ..runs.api import load_run
    from ..search.index import Index
    from ..search.results import result_rows
    from ..training.trainer import resolve_contexts
    from .inference import embed_checked

    if args.k < 1:
        raise ValueError(f"-k must be >= 1, got {args.k}")
    if args.montage is not None:
        check_new_path(args.montage, "--montage")
        if not args.montage.lower().endswith(".png"):
            raise ValueError(f"--montage must name a .png file, got {args.montage!r}")
    index = Index.load(args.index_dir)
    if args.k > len(index):
        raise ValueError(f"-k {args.k} is larger than the index ({len(index)} items)")
    run, config, params = _check_run(index, args.index_dir, args.run)
    x, names, qlabels, qclass_names = _queries(args, index, config)
    ctx = resolve_contexts(args.ctx)[0]
    net, config = load_run(run.path, params=params, ctx=ctx)
    emb = embed_checked(net, x, config, run.path)
    dist, ids = index.search_embeddings(emb, args.k)
    rows = result_rows(index, dist, ids, names, qlabels, qclass_names)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        _print_table(rows)
    if args.montage is not None:
        from ..data.decoding import ImageOptions

        _montage(args.montage, index, args.index_dir, x, rows, ImageOptions.from_config(config))
        print(f"montage: {args.montage}", flush=True)


def _print_table(rows: List[Dict[str, Any]]) -> None:
    lines = [f"{'query':<24} {'rank':>4} {'id':>8} {'label':<16} {'distance':>10}  path"]
    for row in rows:
        q = str(row["query"]) + (f" ({row['label']})" if "label" in row else "")
        q = q if len(q) <= 24 else "..." + q[-21:]
        for rank, n in enumerate(row["neighbours"], 1):
            label = "-" if n["label"] is None else str(n["label"])
            mark = "" if "label" not in row else (" *" if n["label"] == row["label"] else "")
            distance = "-" if n["distance"] is None else f"{n['distance']:.4f}"
            lines.append(
                f"{q if rank == 1 else '':<24} {rank:>4} {n['id']:>8} {label + mark:<16} "
                f"{distance:>10}  {n['path'] or '-'}"
            )
    print("\n".join(lines), flush=True)


def _gallery_pictures(
    index: Any, index_dir: str, ids: np.ndarray, images: Any, shape: Tuple[int, ...]
) -> Tuple[np.ndarray, np.ndarray]:
    """The indexed samples with these ids, ``(pictures, gone)``: ``(len(ids), *shape)``
    float32 and a ``(len(ids),)`` bool mask of those whose recorded file is gone (blank).

    Rows with a source file in the index's ``paths.json`` (``folder:`` and ``image:`` data)
    are decoded from that file to the run's size and channels; the others (``rec:`` data,
    arrays) are read back from the dataset in the manifest.
    """
    rows = index._rows_of(ids)
    out = np.zeros((len(rows), *shape), np.float32)
    gone = np.zeros(len(rows), bool)
    paths = [index.paths[r] if index.paths else None for r in rows]
    from_files = np.array([p is not None for p in paths], bool)
    if from_files.any():
        from ..data.decoding import DecodedImages
        from ..data.folder import FolderImages
        from ..errors import ImageFileError

        channels = 1 if len(shape) == 2 else shape[0]
        files = sorted({p for p in paths if p is not None})
        decoded = DecodedImages(
            FolderImages(files, max_pixels=images.max_pixels),
            shape[-2:],
            channels,
            images.upscale,
            max_pixels=images.max_pixels,
        )
        pictures: Dict[str, Optional[np.ndarray]] = {}
        for i, path in enumerate(files):
            try:
                pictures[path] = decoded.picture(i).astype(np.float32) / 255
            except (OSError, ImageFileError):  # gone since indexing, or no longer a picture
                pictures[path] = None
        missing = [p for p in files if pictures[p] is None]
        if missing:
            logger.warning(
                "%d neighbour picture(s) recorded in %s are gone or unreadable, drawn blank: %s",
                len(missing),
                os.path.join(index_dir, "paths.json"),
                ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else ""),
            )
        for j in np.flatnonzero(from_files):
            picture = pictures[paths[j]]
            if picture is None:
                gone[j] = True
            else:
                out[j] = picture
    if not from_files.all():
        from ..data.datasets import load_dataset

        info = index.info
        data = load_dataset(info["dataset"], info.get("data_dir"), logger=logger, images=images)
        x, _ = data.split(info.get("split", "train"))
        need = rows[~from_files]
        if need.max() >= len(x):
            raise ValueError(
                f"{info['dataset']} no longer has the indexed samples (ids beyond {len(x)})"
            )
        out[~from_files] = x[need]
    return out, gone


def _as_picture(sample: np.ndarray) -> np.ndarray:
    a = np.asarray(sample, dtype=np.float32)
    if a.ndim == 3:  # (C, H, W)
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _montage(
    path: str,
    index: Any,
    index_dir: str,
    x: np.ndarray,
    rows: List[Dict[str, Any]],
    images: Any,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_save

    if len(index.info.get("sample_shape") or ()) not in (2, 3):
        raise ValueError("--montage needs picture samples; the index's run takes vectors")
    k = len(rows[0]["neighbours"])
    ids = np.array([[n["id"] for n in row["neighbours"]] for row in rows])
    flat = np.where(ids < 0, 0, ids).ravel()
    gallery, gone = _gallery_pictures(index, index_dir, flat, images, x.shape[1:])
    gallery, gone = gallery.reshape(ids.shape + x.shape[1:]), gone.reshape(ids.shape)
    fig, axes = plt.subplots(
        len(rows), k + 1, figsize=(1.3 * (k + 1), 1.45 * len(rows)), squeeze=False
    )
    for i, row in enumerate(rows):
        ax = axes[i, 0]
        ax.imshow(_as_picture(x[i]), cmap="gray")
        title = str(row["query"])
        title = os.path.basename(title) if isinstance(row["query"], str) else f"query {title}"
        if "label" in row:
            title += f"\n{row['label']}"
        ax.set_title(title, fontsize=7)
        for r, n in enumerate(row["neighbours"], 1):
            ax = axes[i, r]
            if n["id"] < 0:
                ax.set_axis_off()
                continue
            ax.imshow(_as_picture(gallery[i, r - 1]), cmap="gray")
            ax.set_title(f"{n['label']}\n{n['distance']:.3f}", fontsize=7)
            if gone[i, r - 1]:
                ax.text(0.5, 0.5, "file gone", ha="center", va="center", fontsize=7,
                        color="white", transform=ax.transAxes)  # fmt: skip
            if "label" in row:
                color = "tab:green" if n["label"] == row["label"] else "tab:red"
                for spine in ax.spines.values():
                    spine.set_edgecolor(color)
                    spine.set_linewidth(3)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    try:
        atomic_save(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    finally:
        plt.close(fig)


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet search ...``; returns the exit status."""
    return run_command(build_parser(), _search, argv)
