"""``gluon-triplet serve INDEX_DIR``: a search service and a web page over an index, run by
uvicorn; queries are embedded by the run's ONNX export in onnxruntime (no MXNet)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Sequence

from .common import add_common_flags, bind_error, is_loopback, run_command

__all__ = ["HELP", "build_parser", "main"]

HELP = "serve an index: POST /search with a picture, a web page at /, GET /health"

logger = logging.getLogger("gluon_triplet")


def build_parser() -> argparse.ArgumentParser:
    from ..data.headers import MAX_PIXELS
    from ..search.serve import DEFAULT_MAX_UPLOAD_MB

    p = argparse.ArgumentParser(
        prog="gluon-triplet serve",
        description="Serve an index written by `gluon-triplet index`: a page at / (drop a "
        "picture, see its nearest items), POST /search?k=K with a multipart field 'image' "
        "(answers a line of `search --json`), GET /health, GET /items/ID/thumbnail. Queries "
        "are embedded by the ONNX export of the index's run in onnxruntime, without MXNet; "
        "the export is made once into INDEX_DIR/onnx when missing. Needs the serve extra: "
        "pip install 'gluon-triplet[serve]'.",
    )
    p.add_argument("index_dir", metavar="INDEX_DIR", help="written by `gluon-triplet index`")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; any other "
        "address lets the network search the index and see its pictures)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument(
        "--workers", type=int, default=1, help="server processes, each with the index (default: 1)"
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        metavar="MB",
        help=f"largest upload in MiB; larger ones get 413 (default: {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        metavar="N",
        help="pictures with more pixels get 400, read from their header before decoding "
        f"(default: {MAX_PIXELS:,})",
    )
    p.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on every request but the page "
        "(default: none); the page asks for it",
    )
    p.add_argument(
        "--export",
        metavar="DIR",
        help="the run's ONNX export to use, made there if missing (default: INDEX_DIR/onnx)",
    )
    p.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="export this run instead of the manifest's (e.g. after moving it); its "
        "parameters must be the indexed ones",
    )
    add_common_flags(p)
    return p


def _serve(args: argparse.Namespace) -> None:
    from ..search.serve import ENVIRON, _frameworks, create_app

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be from 0 to 65535, got {args.port}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if not args.max_upload_mb > 0 or args.max_pixels < 1:
        raise ValueError("--max-upload-mb and --max-pixels must be positive")
    _, uvicorn = _frameworks()
    kwargs = dict(max_upload_mb=args.max_upload_mb, token=args.token, max_pixels=args.max_pixels)
    # Built here, so that a bad index or export is one error line, not a worker's.
    app = create_app(args.index_dir, export_dir=args.export, run_dir=args.run, **kwargs)
    service = app.state.service
    reason = bind_error(args.host, args.port)  # one error line now, not uvicorn's exit
    if reason is not None:
        raise OSError(f"cannot listen on {args.host}:{args.port}: {reason}")
    if not is_loopback(args.host):
        logger.warning(
            "listening on %s: anyone who can reach this machine can search the index and see "
            "its pictures%s",
            args.host,
            "" if args.token else "; pass --token to require a bearer token",
        )
    logger.info(
        "serving %s (%d items, %d-d %s) with %s on http://%s:%d/ (Ctrl-C stops)",
        args.index_dir,
        len(service.index),
        service.index.dim,
        service.index.metric,
        os.path.join(service.export_dir, "model.onnx"),
        f"[{args.host}]" if ":" in args.host else args.host,
        args.port,
    )
    level = "warning" if args.quiet else "info"
    common = dict(host=args.host, port=args.port, log_level=level, access_log=not args.quiet)
    if args.workers == 1:
        uvicorn.run(app, **common)
        return
    kwargs.update(index_dir=args.index_dir, export_dir=service.export_dir)
    os.environ[ENVIRON] = json.dumps(kwargs)
    del app, service  # each worker process loads its own
    uvicorn.run(
        "gluon_triplet.search.serve:app_from_environ",
        factory=True,
        workers=args.workers,
        **common,
    )


def main(argv: Sequence[str]) -> int:
    """``gluon-triplet serve ...``; returns the exit status."""
    return run_command(build_parser(), _serve, argv)
