import json
import os

import numpy as np
import pytest

from gluon_triplet import build_model, embed
from gluon_triplet.search.index import Index, IndexFileError, metric_for_distance


def brute_force_knn(base, queries, k):
    """Squared L2 neighbours by a plain loop; ties broken by the lower row."""
    out_d, out_i = [], []
    for q in queries.astype(np.float64):
        d = [float(((q - b) ** 2).sum()) for b in base.astype(np.float64)]
        order = sorted(range(len(d)), key=lambda j: (d[j], j))[:k]
        out_d.append([d[j] for j in order])
        out_i.append(order)
    return np.array(out_d), np.array(out_i)


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    # Distinct distances (no ties): continuous values.
    return rng.normal(size=(200, 16)).astype(np.float32), rng.integers(0, 5, 200)


def test_exact_search_equals_brute_force(vectors):
    x, y = vectors
    index = Index.from_embeddings(x, y)
    q = x[:7] + 0.01
    dist, ids = index.search(q, k=5)
    bd, bi = brute_force_knn(x, q, 5)
    np.testing.assert_array_equal(ids, bi)
    np.testing.assert_allclose(dist, bd, rtol=1e-4, atol=1e-4)
    assert dist.dtype == np.float32 and ids.dtype == np.int64
    np.testing.assert_array_equal(index.labels_of(ids), y[bi])


def test_exact_search_by_hand():
    base = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    dist, ids = Index.from_embeddings(base).search([[0.0, 2.0]], k=3)
    assert ids.tolist() == [[2, 0, 1]]
    assert dist.tolist() == [[1.0, 4.0, 13.0]]


def test_cosine_metric_ranks_by_angle_and_reports_one_minus_cos():
    base = np.array([[10.0, 0.0], [0.0, 0.1], [1.0, 1.0]])
    index = Index.from_embeddings(base, metric="cosine")
    dist, ids = index.search([[0.0, 5.0]], k=3)
    assert ids.tolist() == [[1, 2, 0]]
    np.testing.assert_allclose(dist[0], [0.0, 1 - np.sqrt(0.5), 1.0], atol=1e-6)
    assert metric_for_distance("euclidean") == "squared_l2"
    assert metric_for_distance("cosine") == "cosine"


def test_build_embeds_with_the_net_and_search_takes_samples(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((60, 6, 6), dtype=np.float32)
    y = np.repeat(np.arange(3), 20)
    net = build_model("mlp", hidden=(8,), embedding_size=4, normalize=True, output="linear")
    index = Index.build(net, x, y, class_names=["a", "b", "c"], batch_size=16)
    emb = embed(net, x)
    dist, ids = index.search(x[:3], k=4)
    bd, bi = brute_force_knn(emb, emb[:3], 4)
    np.testing.assert_array_equal(ids[:, 0], [0, 1, 2])  # each sample finds itself
    np.testing.assert_allclose(dist, bd, atol=1e-5)
    np.testing.assert_array_equal(index.search_embeddings(emb[:3], 4)[1], ids)
    index.save(str(tmp_path / "ix"))
    loaded = Index.load(str(tmp_path / "ix"), net=net)
    np.testing.assert_array_equal(loaded.search(x[:3], k=4)[1], ids)
    assert loaded.class_names == ["a", "b", "c"]


def test_save_load_round_trip_and_manifest(tmp_path, vectors):
    x, y = vectors
    paths = [f"img/{i}.png" for i in range(len(x))]
    info = {"run_dir": "logs/run", "params_sha256": "ab" * 32, "dataset": "npz:x.npz"}
    index = Index.from_embeddings(x, y, class_names=list("vwxyz"), paths=paths, info=info)
    out = tmp_path / "ix"
    index.save(str(out))
    assert sorted(os.listdir(out)) == sorted(
        ["index.faiss", "ids.npy", "labels.npy", "class_names.json", "paths.json", "manifest.json"]
    )
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["metric"] == "squared_l2" and doc["embedding_size"] == 16 and doc["count"] == 200
    assert doc["index"] == {"kind": "flat", "params": {}}
    assert doc["run_dir"] == "logs/run" and doc["dataset"] == "npz:x.npz"
    assert set(doc["files"]) == set(os.listdir(out)) - {"manifest.json"}
    loaded = Index.load(str(out))
    assert len(loaded) == 200 and loaded.dim == 16
    assert loaded.paths == paths and loaded.class_names == list("vwxyz")
    np.testing.assert_array_equal(loaded.labels, y)
    assert loaded.info["params_sha256"] == "ab" * 32
    q = x[10:20]
    for a, b in zip(index.search(q, 7), loaded.search(q, 7)):
        np.testing.assert_array_equal(a, b)


def test_add_continues_ids_and_is_searchable(tmp_path, vectors):
    x, y = vectors
    index = Index.from_embeddings(x[:150], y[:150])
    new = index.add(x[150:], y[150:])
    np.testing.assert_array_equal(new, np.arange(150, 200))
    full = Index.from_embeddings(x, y)
    for a, b in zip(index.search(x[140:160], 6), full.search(x[140:160], 6)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(index.labels, y)
    with pytest.raises(ValueError, match="the index has labels"):
        index.add(x[:2])
    index.save(str(tmp_path / "ix"))
    assert Index.load(str(tmp_path / "ix")).search(x[199:], 1)[1].tolist() == [[199]]


def test_hnsw_and_ivf_recall_on_a_small_set(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 24)).astype(np.float32)
    q = rng.normal(size=(100, 24)).astype(np.float32)
    _, exact = Index.from_embeddings(x).search(q, 10)
    for kind, params in (("hnsw", {}), ("ivf", {"nprobe": 28})):
        index = Index.from_embeddings(x, kind=kind, **params)
        _, ids = index.search(q, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
        assert recall >= 0.9, (kind, recall)
        index.save(str(tmp_path / kind))
        loaded = Index.load(str(tmp_path / kind))
        assert loaded.kind == kind and loaded.params == index.params
        np.testing.assert_array_equal(loaded.search(q, 10)[1], ids)
    # Search-time settings change results without a rebuild; the highest is exhaustive.
    ivf = Index.from_embeddings(x, kind="ivf", nprobe=1)
    ivf.set_search_params(nprobe=1000)
    assert ivf.params["nprobe"] == ivf.params["nlist"]
    np.testing.assert_array_equal(ivf.search(q, 10)[1], exact)
    with pytest.raises(ValueError, match="ef_search is not a search-time parameter of ivf indexes"):
        ivf.set_search_params(ef_search=3)
    assert Index.from_embeddings(x, kind="ivf").params == {"nlist": 55, "nprobe": 8}
    assert Index.from_embeddings(x[:100], kind="ivf").params == {"nlist": 2, "nprobe": 2}


def test_bad_input_raises_value_error(vectors):
    x, y = vectors
    index = Index.from_embeddings(x, y)
    with pytest.raises(ValueError, match="embedding size 8, but the index holds size-16"):
        index.search(np.zeros((2, 8)), 3)
    with pytest.raises(ValueError, match="k=201 is larger than the index"):
        index.search(x[:1], 201)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(x[:1], 0)
    with pytest.raises(ValueError, match=r"queries must be 2-D"):
        index.search(x[0], 3)
    with pytest.raises(ValueError, match="finite"):
        index.search(np.full((1, 16), np.nan), 3)
    with pytest.raises(
        ValueError, match="unknown index kind 'lsh'; choose one of: flat, hnsw, ivf"
    ):
        Index.from_embeddings(x, kind="lsh")
    with pytest.raises(ValueError, match="unknown parameter.* nprobe for a hnsw index"):
        Index.from_embeddings(x, kind="hnsw", nprobe=3)
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(200,\)"):
        Index.from_embeddings(x, y[:5])
    with pytest.raises(ValueError, match="embedding size 4"):
        index.add(np.zeros((1, 4)), [1])


def test_save_refuses_an_existing_directory(tmp_path, vectors):
    x, _ = vectors
    out = tmp_path / "ix"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        Index.from_embeddings(x).save(str(out))
    assert os.listdir(out) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["ix"]  # no temporary directory left behind


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: os.unlink(d / "labels.npy"), "labels.npy is missing"),
        (lambda d: os.unlink(d / "manifest.json"), "not an index directory: it has no manifest"),
        (lambda d: (d / "manifest.json").write_text("{"), "manifest.json is corrupt"),
        (lambda d: (d / "index.faiss").write_bytes(b"\0" * 40), "index.faiss is corrupt"),
        (lambda d: (d / "ids.npy").write_bytes(b"garbage"), "ids.npy is corrupt"),
    ],
)
def test_missing_or_corrupt_files_raise_index_file_error(tmp_path, vectors, damage, message):
    x, y = vectors
    out = tmp_path / "ix"
    Index.from_embeddings(x, y).save(str(out))
    damage(out)
    with pytest.raises(IndexFileError, match=message):
        Index.load(str(out))


def test_unreadable_faiss_file_with_matching_checksum(tmp_path, vectors):
    # A manifest that vouches for a truncated index: faiss's own error, in one line.
    x, _ = vectors
    out = tmp_path / "ix"
    Index.from_embeddings(x).save(str(out))
    blob = (out / "index.faiss").read_bytes()[:100]
    (out / "index.faiss").write_bytes(blob)
    doc = json.loads((out / "manifest.json").read_text())
    from gluon_triplet.io import sha256_file

    doc["files"]["index.faiss"] = sha256_file(str(out / "index.faiss"))
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(IndexFileError, match="index.faiss is not a faiss index"):
        Index.load(str(out))
    with pytest.raises(IndexFileError, match="does not exist"):
        Index.load(str(tmp_path / "nowhere"))
