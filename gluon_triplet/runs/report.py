"""Text a run shows its user: the summary table, the ``done:`` line, commands to type next
(:func:`command`, as they work pasted into the user's shell)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = [
    "class_name",
    "command",
    "done_line",
    "evaluation_plan",
    "shape_text",
    "summary_table",
]


def shape_text(shape: Sequence[int]) -> str:
    """``(28, 28)`` -> ``"28 x 28"``."""
    return " x ".join(str(int(s)) for s in shape)


def class_name(class_names: Optional[Sequence[str]], label: Any) -> Any:
    """The name of integer ``label`` when the dataset has names, else the label itself."""
    names = class_names
    return names[label] if names and isinstance(label, int) and 0 <= label < len(names) else label


def evaluation_plan(eval_every: int, eval_samples: int, val: int, test: int) -> Dict[str, str]:
    """What a run scores when (logged at its start, ``metrics.json``'s ``evaluation``), for
    ``val`` validation and ``test`` test samples."""

    def sample(n: int) -> str:
        if eval_samples and eval_samples < n:
            return f"a fixed sample of {eval_samples} of {n} (see each record's evaluated_on)"
        return f"all {n}"

    plan = {
        "validation": f"before training and after every epoch, {sample(val)}; chooses the best"
        if val
        else "none: the best epoch is the last",
        "test": f"after the last epoch, all {test}",
        "raw_pixels": "on the test split, beside the last epoch or after it",
    }
    if eval_every:
        plan["test"] += f"; before training and every {eval_every} epochs, {sample(test)}"
    return plan


def _script(name: str) -> Optional[str]:
    """How to run this installation's console script ``name`` from here: its bare name
    when ``PATH`` finds it, else its (relative if below here) path, None if not installed."""
    bindir = os.path.dirname(sys.executable)
    here = os.path.join(bindir, name)
    found = shutil.which(name)
    if found and (not os.path.exists(here) or os.path.samefile(found, here)):
        return name
    if not os.path.exists(here):
        return None
    rel = os.path.relpath(here)
    return rel if not rel.startswith(os.pardir) else here


def command(*args: str, program: str = "gluon-triplet") -> str:
    """A shell command line running ``program`` (``gluon-triplet`` or ``tensorboard``) with
    ``args`` from here; ``python -m ...`` when the script is not installed."""
    exe = _script(program)
    if exe is None:
        module = "gluon_triplet" if program == "gluon-triplet" else "tensorboard.main"
        head = [sys.executable, "-m", module]
    else:
        head = [exe]
    return " ".join(shlex.quote(a) for a in [*head, *args])


def summary_table(
    history: List[Dict[str, Any]],
    baseline: Optional[Mapping[str, float]] = None,
    margin: Optional[float] = None,
) -> str:
    """A small text table of test figures: raw pixels, the untrained net, the epoch chosen
    on validation and the last epoch (with the validation MAP@R it was chosen by).

    Parameters
    ----------
    history : list of dict
        ``TripletTrainer.history``.
    baseline : dict, optional
        Test metrics of the raw pixels.
    margin : float, optional
        The run's margin: epochs whose validation metrics look collapsed are not chosen.
    """
    from ..training.callbacks import best_record

    trained = [r for r in history if r["epoch"] > 0]
    rows: List[Any] = []
    if baseline:
        rows.append(("raw pixels", {"test": baseline}))
    for record in history:
        if record["epoch"] == 0:
            rows.append(("epoch 0 (untrained)", record))
    if trained:
        best, last = best_record(history, margin), trained[-1]
        validated = bool(best.get("val"))
        if best is not last:
            rows.append((f"epoch {best['epoch']} (chosen on validation)", best))
        tag = " (last, chosen on validation)" if best is last and validated else " (last)"
        rows.append((f"epoch {last['epoch']}{tag}", last))
    columns = [
        ("loss", "train", "loss", "{:.4f}"),
        ("active", "train", "active_fraction", "{:.3f}"),
        ("val MAP@R", "val", "map_at_r", "{:.4f}"),
        ("test triplet-acc", "test", "triplet_accuracy", "{:.4f}"),
        ("test P@1", "test", "precision_at_1", "{:.4f}"),
        ("test MAP@R", "test", "map_at_r", "{:.4f}"),
    ]
    if not any(record.get("val") for record in history):
        columns.pop(2)
    table = [[""] + [c[0] for c in columns]]
    for name, record in rows:
        cells = [name]
        for _, split, key, fmt in columns:
            value = (record.get(split) or {}).get(key)
            cells.append("-" if value is None else fmt.format(value))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in table
    ]
    return "\n".join(["summary:"] + ["  " + line.rstrip() for line in lines])


def done_line(
    epochs: int,
    seconds: float,
    contexts: str,
    final: Mapping[str, float],
    raw: Mapping[str, float],
    run_dir: str,
    chosen: Optional[Mapping[str, Any]] = None,
) -> str:
    """The last line of a training run: what it reached, where it is, how to look at it.

    ``final`` is the last epoch's test metrics, said to be the last epoch's; ``chosen``,
    the record of the epoch chosen on validation (saved as ``model-best.params``), adds its
    epoch, and its test figures when that epoch scored the test split (``--eval-every``)."""
    logdir = os.path.dirname(os.path.normpath(run_dir)) or os.curdir
    pick = ""
    if chosen is not None and chosen.get("val"):
        test = chosen.get("test") or {}
        pick = f"best: epoch {chosen['epoch']}, chosen on validation MAP@R"
        if "precision_at_1" in test:
            pick += f" (test P@1 {test['precision_at_1']:.4f} MAP@R {test['map_at_r']:.4f})"
        pick += " | "
    return (
        f"done: {epochs} epochs in {seconds:.1f}s on {contexts} | "
        f"test (last epoch) triplet-acc {final['triplet_accuracy']:.4f} "
        f"P@1 {final['precision_at_1']:.4f} "
        f"MAP@R {final['map_at_r']:.4f} (raw pixels P@1 {raw['precision_at_1']:.4f}) | {pick}"
        f"run: {run_dir} | view: {command('view', run_dir)} "
        f"(or {command('--logdir', logdir, program='tensorboard')})"
    )
