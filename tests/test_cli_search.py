"""End to end: train (tiny) -> index -> search -> export -> onnxruntime, and the bad input
of each subcommand: one ``error:`` line, exit 2, nothing overwritten."""

import json
import os
import shutil

import numpy as np
import pytest

# the digit folders of test_images (real MNIST digits, PNG and JPEG, some RGB, two corrupt)
from test_images import digits, write_digits  # noqa: F401

from gluon_triplet import embed, load_dataset, load_run
from gluon_triplet.cli import main
from gluon_triplet.data.recordio import pack_folder
from gluon_triplet.evaluation.retrieval import gallery_retrieval_metrics


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def fails(capsys, argv, message):
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = error_lines(err)
    assert len(lines) == 1 and message in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("use")
    argv = ["--dataset", "mnist-5k", "--model", "mlp", "--hidden", "32", "--embedding-size", "16"]
    argv += ["--epochs", "1", "--logdir", str(root / "logs"), "--run-name", "r"]
    argv += ["--projector-samples", "0", "--no-plots", "-q"]
    assert main(argv) == 0
    run_dir = str(root / "logs" / "r")
    assert main(["index", run_dir, "--dataset", "mnist-5k", "--out", str(root / "ix"), "-q"]) == 0
    data = load_dataset("mnist-5k")
    net, _ = load_run(run_dir)
    return {
        "root": root,
        "run": run_dir,
        "ix": str(root / "ix"),
        "data": data,
        "gallery": embed(net, data.x_train),
        "queries": embed(net, data.x_test),
    }


def test_index_manifest_names_the_run(trained):
    doc = json.loads(open(os.path.join(trained["ix"], "manifest.json")).read())
    assert doc["run_dir"] == os.path.abspath(trained["run"])
    assert doc["params_file"] == "model-best.params" and len(doc["params_sha256"]) == 64
    assert (doc["dataset"], doc["split"], doc["count"]) == ("mnist-5k", "train", 4000)
    assert (doc["metric"], doc["embedding_size"], doc["index"]["kind"]) == (
        "squared_l2",
        16,
        "flat",
    )
    assert doc["sample_shape"] == [28, 28]


def test_search_json_is_brute_force_nearest(trained, capsys):
    capsys.readouterr()
    argv = ["search", trained["ix"], "--query", "mnist-5k", "--limit", "3", "-k", "4", "--json"]
    assert main(argv + ["-q"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    g, q, y = trained["gallery"], trained["queries"], trained["data"].y_train
    names = trained["data"].class_names  # labels are shown by name when the data has names
    for i, line in enumerate(lines):
        row = json.loads(line)
        assert set(row) == {"query", "label", "neighbours"} and row["query"] == i
        assert row["label"] == names[trained["data"].y_test[i]]
        d = ((g.astype(np.float64) - q[i]) ** 2).sum(axis=1)
        want = np.argsort(d, kind="stable")[:4]
        assert [n["id"] for n in row["neighbours"]] == want.tolist()
        for n in row["neighbours"]:
            assert n["label"] == names[y[n["id"]]] and n["path"] is None
            assert n["distance"] == pytest.approx(d[n["id"]], abs=1e-4)


def test_search_picture_files_table_and_montage(trained, capsys):
    from PIL import Image

    root = trained["root"]
    x = trained["data"].x_test
    files = []
    for i in range(2):
        path = str(root / f"digit{i}.png")
        Image.fromarray((x[i] * 255).round().astype(np.uint8)).save(path)
        files.append(path)
    capsys.readouterr()
    montage = str(root / "m.png")
    argv = ["search", trained["ix"], "--query", *files, "-k", "3", "--montage", montage, "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "digit0.png" in out and "digit1.png" in out and f"montage: {montage}" in out
    with Image.open(montage) as im:
        assert im.size[0] > 300 and im.size[1] > 100
    # The same files as JSON: the query is the path, no label is known.
    assert main(["search", trained["ix"], "--query", files[0], "-k", "2", "--json", "-q"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["query"] == files[0] and "label" not in row and len(row["neighbours"]) == 2
    # --montage refuses to overwrite
    fails(capsys, argv, "already exists")


def test_export_onnx_embeds_like_the_run(trained, capsys):
    from gluon_triplet.nets.export import load_onnx_session

    out = str(trained["root"] / "served")
    assert main(["export", trained["run"], "--format", "onnx", "--out", out, "-q"]) == 0
    session = load_onnx_session(os.path.join(out, "model.onnx"))
    x = trained["data"].x_test[:50]
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, trained["queries"][:50], atol=1e-4)
    # an existing --out is refused and left alone
    before = sorted(os.listdir(out))
    fails(capsys, ["export", trained["run"], "--out", out], "already exists")
    assert sorted(os.listdir(out)) == before


def test_evaluate_query_against_gallery(trained, capsys):
    capsys.readouterr()
    argv = ["evaluate", trained["run"], "--query", "mnist-5k", "--gallery", "mnist-5k", "--json"]
    assert main(argv + ["-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    want = gallery_retrieval_metrics(
        trained["queries"], trained["data"].y_test, trained["gallery"], trained["data"].y_train
    )
    assert doc["query"] == {"dataset": "mnist-5k", "split": "test", "samples": 1000}
    assert doc["gallery"] == {"dataset": "mnist-5k", "split": "train", "samples": 4000}
    assert {k: doc["metrics"][k] for k in want} == pytest.approx(want, rel=1e-9)


def test_bad_input_one_error_line_exit_2(trained, capsys, tmp_path):
    ix, run = trained["ix"], trained["run"]
    before = {f: os.path.getmtime(os.path.join(ix, f)) for f in os.listdir(ix)}
    fails(capsys, ["index", run, "--dataset", "mnist-5k", "--out", ix], "already exists")
    assert {f: os.path.getmtime(os.path.join(ix, f)) for f in os.listdir(ix)} == before
    fails(capsys, ["search", ix, "--query", "mnist-5k", "-k", "4001"], "larger than the index")
    fails(capsys, ["search", ix, "--query", "nope.png"], "neither a file nor a dataset")
    fails(capsys, ["search", str(tmp_path), "--query", "mnist-5k"], "not an index directory")
    fails(
        capsys,
        [
            "index",
            run,
            "--dataset",
            "mnist-5k",
            "--out",
            str(tmp_path / "i2"),
            "--param",
            "nprobe=3",
        ],
        "unknown parameter(s) nprobe for a flat index",
    )
    # Queries of another shape: an npz of 5-d vectors.
    np.savez(tmp_path / "v.npz", x=np.zeros((20, 5), np.float32), y=np.repeat([0, 1], 10))
    fails(capsys, ["search", ix, "--query", f"npz:{tmp_path / 'v.npz'}"], "queries are shaped (5,)")
    # A corrupt index file.
    broken = str(tmp_path / "broken")
    shutil.copytree(ix, broken)
    with open(os.path.join(broken, "labels.npy"), "ab") as f:
        f.write(b"x")
    fails(capsys, ["search", broken, "--query", "mnist-5k"], "labels.npy is corrupt")
    # A run whose parameters changed since the index was built.
    moved = str(tmp_path / "run2")
    shutil.copytree(run, moved)
    with open(os.path.join(moved, "model-best.params"), "ab") as f:
        f.write(b"\0")
    fails(capsys, ["search", ix, "--query", "mnist-5k", "--run", moved], "changed since the index")


def test_index_of_a_folder_records_each_pictures_path(
    tmp_path,
    digits,  # noqa: F811
    capsys,
    monkeypatch,
):
    """index --dataset folder:DIR (streamed: --max-memory 0) keeps each picture's file;
    search --json names it, and a picture of the index finds itself at distance ~0;
    search --montage draws the neighbours from those files (rec: from the dataset)."""
    folder = write_digits(tmp_path / "digits", digits, per_class=12)  # with 2 corrupt files
    logs, ix = tmp_path / "logs", str(tmp_path / "ix")
    argv = ["--dataset", f"folder:{folder}", "--epochs", "1", "-P", "4", "-K", "4"]
    argv += ["--embedding-size", "8", "--max-memory", "0", "--logdir", str(logs)]
    assert main([*argv, "--run-name", "r", "--projector-samples", "0", "--no-plots", "-q"]) == 0
    run = str(logs / "r")
    capsys.readouterr()
    assert main(["index", run, "--dataset", f"folder:{folder}", "--split", "all", "--out", ix]) == 0
    assert "streaming them" in capsys.readouterr().err  # embedded batch by batch
    readable = {
        os.path.join(here, f)
        for here, _, files in os.walk(folder)
        for f in files
        if f not in ("broken.png", "zz-truncated.jpg")
    }
    paths = json.loads(open(os.path.join(ix, "paths.json")).read())
    assert len(paths) == len(readable) == 48 and set(paths) == readable
    assert json.loads(open(os.path.join(ix, "manifest.json")).read())["paths"] is True

    queries = [os.path.join(folder, "two", "05.png"), os.path.join(folder, "zero", "10.jpg")]
    argv = ["search", ix, "--query", *queries, "-k", "5", "--json", "-q"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["query"] for row in rows] == queries
    for q, row in zip(queries, rows):
        first = row["neighbours"][0]
        assert first["path"] == os.path.abspath(q) and first["distance"] == pytest.approx(
            0, abs=1e-5
        )
        for n in row["neighbours"]:  # each path is the file of that id: its folder is its label
            assert n["label"] == os.path.basename(os.path.dirname(n["path"]))

    # RecordIO records have no file of their own: no paths, and search says null
    pack_folder(folder, str(tmp_path / "p"), progress=False)
    rec_ix = str(tmp_path / "rec-ix")
    assert main(["index", run, "--dataset", f"rec:{tmp_path / 'p'}", "--out", rec_ix, "-q"]) == 0
    assert not os.path.exists(os.path.join(rec_ix, "paths.json"))
    capsys.readouterr()
    assert main(["search", rec_ix, "--query", queries[0], "-k", "2", "--json", "-q"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert [n["path"] for n in row["neighbours"]] == [None, None]

    # --montage reads the neighbours from paths.json's files, not from the dataset: it
    # works with folder: datasets refused, and names a file gone since in one warning
    import gluon_triplet.data.datasets

    real_load, loaded = gluon_triplet.data.datasets.load_dataset, []

    def load_dataset(spec, *args, **kwargs):
        loaded.append(spec)
        assert not spec.startswith("folder:"), "montage reloaded the folder dataset"
        return real_load(spec, *args, **kwargs)

    monkeypatch.setattr(gluon_triplet.data.datasets, "load_dataset", load_dataset)
    argv = ["search", ix, "--query", *queries, "-k", "5", "--json", "-q"]
    capsys.readouterr()
    assert main([*argv, "--montage", str(tmp_path / "m1.png")]) == 0
    assert os.path.getsize(tmp_path / "m1.png") > 0
    out, err = capsys.readouterr()
    assert "WARNING" not in err
    gone = json.loads(out.splitlines()[0])["neighbours"][1]["path"]
    os.remove(gone)
    assert main([*argv, "--montage", str(tmp_path / "m2.png")]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and gone in warnings[0], err
    assert "1 neighbour picture(s) recorded in" in warnings[0]
    assert os.path.join(ix, "paths.json") in warnings[0]
    assert os.path.getsize(tmp_path / "m2.png") > 0
    assert all(spec.startswith("image:") for spec in loaded), loaded  # the queries only

    # rec: has no paths: its montage reads the pictures back from the .rec
    loaded.clear()
    argv = ["search", rec_ix, "--query", queries[0], "-k", "2", "-q"]
    assert main([*argv, "--montage", str(tmp_path / "m3.png")]) == 0
    assert loaded[-1] == f"rec:{tmp_path / 'p'}" and os.path.getsize(tmp_path / "m3.png") > 0
