"""Text for the user: the summary table, and commands that work as printed."""

import os
import shutil
import subprocess
import sys

from gluon_triplet.runs import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(os.path.dirname(sys.executable), "gluon-triplet")


def test_command_is_the_bare_name_when_path_finds_this_installation(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: SCRIPT)
    assert report.command("view", "logs/my run") == "gluon-triplet view 'logs/my run'"


def test_command_names_the_script_when_it_is_not_on_path(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(SCRIPT))))
    assert report.command("view", "logs") == f"{os.path.relpath(SCRIPT)} view logs"
    monkeypatch.chdir(tmp_path)  # the script is not below: its absolute path
    assert report.command("view") == f"{SCRIPT} view"


def test_printed_commands_run_from_where_they_were_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no virtualenv on PATH, as after make install
    monkeypatch.chdir(tmp_path)  # elsewhere: an absolute path, which works from anywhere
    assert report.command("--version") == f"{SCRIPT} --version"
    monkeypatch.chdir(ROOT)  # the project directory, where `make run` prints it
    line = report.command("--version")
    proc = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("gluon-triplet 0."), (line, proc)


def test_done_line_tells_how_to_view_the_run(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(SCRIPT))))
    metrics = {"triplet_accuracy": 0.9, "precision_at_1": 0.8, "map_at_r": 0.5}
    line = report.done_line(2, 3.25, "cpu(0)", metrics, {"precision_at_1": 0.7}, "logs/r")
    assert line.startswith(
        "done: 2 epochs in 3.2s on cpu(0) | test (last epoch) triplet-acc 0.9000 P@1 0.8000"
    )
    view = os.path.relpath(SCRIPT)
    board = os.path.join(os.path.dirname(view), "tensorboard")
    assert line.endswith(f"| run: logs/r | view: {view} view logs/r (or {board} --logdir logs)")


def test_summary_table_shows_the_epoch_chosen_on_validation_and_the_last():
    # Epoch 1 has the best validation MAP@R and the worse test P@1: it is chosen all the same.
    history = [
        {"epoch": 0, "train": {}, "test": {"precision_at_1": 0.1}, "val": {"map_at_r": 0.1}},
        {
            "epoch": 1,
            "train": {"loss": 0.5},
            "test": {"precision_at_1": 0.7},
            "val": {"map_at_r": 0.9},
        },
        {
            "epoch": 2,
            "train": {"loss": 0.4},
            "test": {"precision_at_1": 0.9},
            "val": {"map_at_r": 0.8},
        },
    ]
    lines = report.summary_table(history, {"precision_at_1": 0.05}).splitlines()
    assert lines[0] == "summary:" and [line.split()[0] for line in lines[2:]] == [
        "raw",
        "epoch",
        "epoch",
        "epoch",
    ]
    assert "val MAP@R" in lines[1] and "test P@1" in lines[1]
    assert "epoch 1 (chosen on validation)" in lines[4] and "0.7000" in lines[4]
    assert "epoch 2 (last)" in lines[5] and "0.9000" in lines[5]


def test_summary_table_without_validation_keeps_the_last_epoch():
    history = [
        {"epoch": 0, "train": {}, "test": {"precision_at_1": 0.1}},
        {"epoch": 1, "train": {"loss": 0.5}, "test": {"precision_at_1": 0.9}},
        {"epoch": 2, "train": {"loss": 0.4}, "test": {"precision_at_1": 0.8}},
    ]
    lines = report.summary_table(history).splitlines()
    assert "val MAP@R" not in lines[1]
    assert [line.split()[:2] for line in lines[2:]] == [["epoch", "0"], ["epoch", "2"]]
    assert "(last)" in lines[3] and "chosen" not in lines[3]


def test_done_line_names_the_epoch_chosen_on_validation():
    chosen = {
        "epoch": 3,
        "val": {"map_at_r": 0.5},
        "test": {"precision_at_1": 0.8, "map_at_r": 0.4},
    }
    metrics = {"triplet_accuracy": 0.9, "precision_at_1": 0.7, "map_at_r": 0.3}
    line = report.done_line(5, 1.0, "cpu(0)", metrics, {"precision_at_1": 0.5}, "logs/r", chosen)
    assert "| best: epoch 3, chosen on validation MAP@R (test P@1 0.8000 MAP@R 0.4000) |" in line


def test_evaluation_plan_says_what_is_scored_when():
    from gluon_triplet.runs.report import evaluation_plan

    plan = evaluation_plan(0, 2000, 6000, 10000)
    assert plan == {
        "validation": "before training and after every epoch, a fixed sample of 2000 of 6000 "
        "(see each record's evaluated_on); chooses the best",
        "test": "after the last epoch, all 10000",
        "raw_pixels": "on the test split, beside the last epoch or after it",
    }
    plan = evaluation_plan(2, 2000, 0, 1000)
    assert plan["validation"] == "none: the best epoch is the last"
    assert plan["test"] == (
        "after the last epoch, all 1000; before training and every 2 epochs, all 1000"
    )
