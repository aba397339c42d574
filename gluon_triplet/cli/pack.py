"""``gluon-triplet pack folder:DIR --out PREFIX``: an image folder as MXNet RecordIO.

Writes ``PREFIX.rec`` + ``PREFIX.idx`` (the layout of MXNet's ``tools/im2rec.py``) and the
sidecar ``PREFIX.json`` with the class names, for ``--dataset rec:PREFIX``; see
:func:`~gluon_triplet.data.recordio.pack_folder`. Nothing is written on an error.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from ..data.headers import MAX_PIXELS
from .common import add_common_flags, run_command

__all__ = ["HELP", "build_parser", "main"]

HELP = "pack a folder of class sub-folders of images into RecordIO (rec:PREFIX)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gluon-triplet pack",
        description="Pack DIR/<class>/<images> (or DIR/train/<class> and DIR/test/<class>) "
        "into PREFIX.rec + PREFIX.idx + PREFIX.json, for --dataset rec:PREFIX. JPEG and PNG "
        "files are stored as they are unless --resize is given; corrupt files are skipped "
        "with one warning (--strict: an error). Existing outputs are refused.",
    )
    p.add_argument("source", metavar="folder:DIR", help="the image folder (folder: is optional)")
    p.add_argument("--out", required=True, metavar="PREFIX", help="output path without extension")
    p.add_argument(
        "--quality",
        type=int,
        default=95,
        help="JPEG quality 1-100 (PNG: compression 0-9) when re-encoding (default: 95)",
    )
    p.add_argument(
        "--resize",
        type=int,
        default=0,
        metavar="N",
        help="resize the shorter side to N pixels (default: 0 = keep the size)",
    )
    p.add_argument(
        "--encoding",
        choices=(".jpg", ".png"),
        default=".jpg",
        help="format of re-encoded pictures (default: .jpg)",
    )
    p.add_argument("--strict", action="store_true", help="corrupt images are an error")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        metavar="N",
        help="skip (like a corrupt one) any picture whose header declares more pixels, "
        f"before decoding it (default: {MAX_PIXELS}, Pillow's Image.MAX_IMAGE_PIXELS)",
    )
    add_common_flags(p)
    return p


def _pack(args: argparse.Namespace) -> None:
    from ..data.recordio import pack_folder

    if args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    info = pack_folder(
        args.source,
        args.out,
        quality=args.quality,
        resize=args.resize,
        encoding=args.encoding,
        strict=args.strict,
        progress=not args.quiet,
        max_pixels=args.max_pixels,
    )
    splits = info["splits"]
    split = f" (train {splits['train']}, test {splits['test']})" if splits else ""
    print(
        f"packed {info['records']} images{split} of {len(info['classes'])} classes into "
        f"{args.out}.rec + .idx + .json"
        + (f"; skipped {info['skipped']} unreadable or unresizable" if info["skipped"] else ""),
        flush=True,
    )


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet pack ...``; returns the exit status."""
    return run_command(build_parser(), _pack, argv)
