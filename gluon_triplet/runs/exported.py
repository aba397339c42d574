"""Export a run directory's net (``gluon-triplet export``, and ``serve`` when it needs an
export): verified on the run's own test samples where they can be read, with the picture
preprocessing the run used recorded beside the model."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ["VERIFY_SAMPLES", "export_run", "verification_samples"]

#: How many samples an export is checked on.
VERIFY_SAMPLES = 16

logger = logging.getLogger("gluon_triplet")


def verification_samples(
    config: Any, dataset: Optional[str] = None, data_dir: Optional[str] = None
) -> Tuple[np.ndarray, str]:
    """``(samples, source)``: the first :data:`VERIFY_SAMPLES` test samples of ``dataset``
    (default: the run's own, never downloaded; uniform [0, 1) samples of its input shape
    when they cannot be read) and a description of them for messages."""
    from ..data.datasets import load_dataset
    from ..data.decoding import ImageOptions
    from ..errors import DataError

    images = ImageOptions.from_config(config)
    if dataset is not None:
        data = load_dataset(dataset, data_dir, logger=logger, images=images)
        return data.x_test[:VERIFY_SAMPLES], f"{data.name} test"
    try:
        data = load_dataset(
            config.dataset,
            data_dir or config.data_dir,
            logger=logger,
            images=images,
            download=False,
        )
        x = data.x_test if len(data.x_test) else data.x_train
        if len(x):
            return np.asarray(x[:VERIFY_SAMPLES], dtype=np.float32), f"{data.name} test"
        reason = "it has no samples"
    except (DataError, OSError, ValueError) as e:
        if config.input_shape is None:
            raise
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    if config.input_shape is None:
        raise DataError(f"cannot verify the export: {config.dataset} {reason}")
    rng = np.random.default_rng(0)
    samples = rng.random((VERIFY_SAMPLES, *config.input_shape), dtype=np.float32)
    return samples, f"random [0, 1) (the run's dataset {config.dataset} is not readable: {reason})"


def export_run(
    run_dir: str,
    out_dir: str,
    format: str = "onnx",
    params: str = "best",
    dataset: Optional[str] = None,
    data_dir: Optional[str] = None,
) -> Tuple[Dict[str, Any], str]:
    """Export a run's net to a new directory, verified; returns ``(export.json, source)``
    where ``source`` says which samples verified it.

    ``export.json`` gets ``"verified_with"`` (that description) and, for picture models,
    ``"preprocess"`` (:func:`~gluon_triplet.nets.preprocess.preprocess_spec`).
    """
    from ..io import sha256_file
    from ..nets.export import export_model
    from ..nets.preprocess import preprocess_spec
    from .api import load_run
    from .rundir import RunDir

    if os.path.exists(out_dir):
        raise FileExistsError(f"{out_dir} already exists; choose a new directory")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"directory {parent!r} does not exist")
    run = RunDir.open(run_dir)
    params_file = run.params_path(params)
    config = run.load_config()
    samples, source = verification_samples(config, dataset, data_dir)
    net, config = load_run(run.path, params=params)
    batch = getattr(net, "prepare_input", lambda a: a)(samples)
    info = {
        "run_dir": os.path.abspath(run.path),
        "params_file": os.path.basename(params_file),
        "params_sha256": sha256_file(params_file),
        "dataset": config.dataset,
        "model": config.model,
        "distance": config.distance,
        "normalize": config.normalize,
        "verified_with": source,
    }
    spec = preprocess_spec(samples.shape[1:], batch.shape[1:], upscale=config.upscale)
    doc = export_model(
        net, batch.shape[1:], out_dir, format=format, batch=batch, info=info, preprocess=spec
    )
    return doc, source
