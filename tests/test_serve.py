"""``gluon-triplet serve``: the export's recorded preprocessing, the endpoints (in process,
through Starlette's TestClient), their bad requests, the item pictures' confinement to the
dataset, no MXNet in the request path, and the real command on a socket."""

import errno
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image
from test_serve_helpers import encode, picture

from gluon_triplet.cli import main

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from gluon_triplet.data.decoding import ImageOptions  # noqa: E402
from gluon_triplet.nets.preprocess import preprocess  # noqa: E402
from gluon_triplet.search.index import Index  # noqa: E402
from gluon_triplet.search.serve import create_app  # noqa: E402

CLASSES = {"red": (220, 40, 30), "green": (40, 200, 60), "blue": (30, 60, 220)}
PER_CLASS = 10
ITEMS = 3 * PER_CLASS


def write_pictures(root, seed=0):
    """``root/<colour>/NN.png|jpg``: 10 pictures of each of 3 colours, 18 to 40 pixels."""
    rng = np.random.default_rng(seed)
    for name, colour in CLASSES.items():
        os.makedirs(os.path.join(root, name))
        for j in range(PER_CLASS):
            size = (int(rng.integers(18, 41)), int(rng.integers(18, 41)))
            fmt = "PNG" if j % 2 else "JPEG"
            path = os.path.join(root, name, f"{j:02d}.{fmt.lower().replace('jpeg', 'jpg')}")
            picture(rng, colour, size).save(path, format=fmt)
    return str(root)


def make_served_index(root):
    """A 1-epoch run on tiny colour pictures, an index of all of them, and its export."""
    folder = write_pictures(root / "pics")
    argv = ["--dataset", f"folder:{folder}", "--image-size", "16", "--image-channels", "3"]
    argv += ["--model", "mlp", "--hidden", "16", "--embedding-size", "8", "--epochs", "1"]
    argv += ["--batch-size", "6", "--workers", "0", "--projector-samples", "0", "--no-plots"]
    assert main([*argv, "--logdir", str(root / "logs"), "--run-name", "r", "-q"]) == 0
    run, ix = str(root / "logs" / "r"), str(root / "ix")
    index_argv = ["index", run, "--dataset", f"folder:{folder}", "--split", "all", "--out", ix]
    assert main([*index_argv, "-q"]) == 0
    return {"root": root, "folder": folder, "run": run, "ix": ix}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    out = make_served_index(tmp_path_factory.mktemp("serve"))
    out["app"] = create_app(out["ix"])  # exports the run into ix/onnx
    out["client"] = TestClient(out["app"])
    out["export"] = os.path.join(out["ix"], "onnx")
    return out


def post(client, data, name="q.png", k=5, **kw):
    return client.post(f"/search?k={k}", files={"image": (name, data, "image/png")}, **kw)


def test_export_records_preprocessing_and_its_samples(served):
    doc = json.load(open(os.path.join(served["export"], "export.json")))
    spec = doc["preprocess"]
    assert (spec["size"], spec["channels"], spec["upscale"]) == ([16, 16], 3, True)
    assert spec["input_shape"] == doc["input"]["shape"][1:] == [3, 16, 16]
    assert doc["info"]["verified_with"] == f"folder:{served['folder']} test"


def test_preprocess_is_the_embed_image_path(served, tmp_path):
    """A picture through preprocess() is what `embed image:FILE` feeds the net."""
    from gluon_triplet import load_dataset

    rng = np.random.default_rng(1)
    for i, (size, mode, fmt) in enumerate(
        [((40, 20), "RGB", "JPEG"), ((9, 30), "L", "PNG"), ((64, 64), "RGBA", "PNG")]
    ):
        path = str(tmp_path / f"p{i}.{fmt.lower()}")
        picture(rng, (200, 100, 0), size, mode).save(path, format=fmt)
        got = preprocess(open(path, "rb").read(), served["export"])
        data = load_dataset(f"image:{path}", images=ImageOptions(size=(16, 16), channels=3))
        assert got.dtype == np.float32 and got.shape == (1, 3, 16, 16)
        assert np.array_equal(got[0], data.x_test[0])


def test_search_answers_like_the_cli(served, capsys):
    files = [
        os.path.join(served["folder"], c, n) for c, n in [("red", "00.jpg"), ("blue", "03.png")]
    ]
    odd = str(served["root"] / "odd.png")
    Image.fromarray(np.full((50, 13), 90, np.uint8), "L").save(odd)  # grey, not square
    for path in [*files, odd]:
        response = post(served["client"], open(path, "rb").read(), os.path.basename(path), k=6)
        assert response.status_code == 200, response.text
        got = response.json()
        capsys.readouterr()
        assert main(["search", served["ix"], "--query", path, "-k", "6", "--json", "-q"]) == 0
        want = json.loads(capsys.readouterr().out)
        assert got["query"] == os.path.basename(path) and set(got) == set(want)
        for g, w in zip(got["neighbours"], want["neighbours"]):
            assert set(g) == {"id", "label", "distance", "path"}
            assert (g["id"], g["label"], g["path"]) == (w["id"], w["label"], w["path"])
            assert g["distance"] == pytest.approx(w["distance"], abs=1e-4)


def test_search_is_the_brute_force_nearest(served):
    """Distances and order against every indexed picture embedded one by one."""
    service = served["app"].state.service
    paths = service.index.paths
    gallery = np.concatenate([service.embed(open(p, "rb").read()) for p in paths])
    query = open(os.path.join(served["folder"], "green", "01.png"), "rb").read()
    d = ((gallery.astype(np.float64) - service.embed(query)) ** 2).sum(axis=1)
    got = post(served["client"], query, k=len(paths)).json()["neighbours"]
    assert [n["path"] for n in got] == [paths[i] for i in np.argsort(d, kind="stable")]
    assert [n["distance"] for n in got] == pytest.approx(np.sort(d), abs=1e-4)


def test_health(served):
    h = served["client"].get("/health").json()
    assert (h["status"], h["size"], h["dimension"], h["metric"]) == ("ok", ITEMS, 8, "squared_l2")
    assert h["run"] == os.path.abspath(served["run"])
    assert h["input"] == {"size": [16, 16], "channels": 3}


def png_claiming(width, height):
    """A valid 2x2 PNG whose header says ``width`` x ``height`` (a decompression bomb's
    header, without the bomb)."""
    data = bytearray(encode(Image.new("L", (2, 2))))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


BAD = {
    "text, not a picture": (lambda c: post(c, b"hello, world"), 400, "no format Pillow reads"),
    "truncated picture": (lambda c: post(c, encode(Image.new("RGB", (30, 30)))[:60]), 400, ""),
    "empty file": (lambda c: post(c, b""), 400, "empty"),
    "decompression bomb": (lambda c: post(c, png_claiming(10000, 10000)), 400, "above the limit"),
    "bomb past Pillow's limit": (lambda c: post(c, png_claiming(60000, 60000)), 400, "above the"),
    "no image field": (lambda c: c.post("/search", files={"picture": ("a.png", b"x")}), 422, ""),
    "image as text": (lambda c: c.post("/search", data={"image": "a.png"}), 422, "file"),
    "not multipart": (lambda c: c.post("/search", content=b"\x89PNG"), 422, "image"),
    "k = 0": (lambda c: post(c, encode(Image.new("L", (9, 9))), k=0), 400, "k must"),
    "k too large": (lambda c: post(c, encode(Image.new("L", (9, 9))), k=ITEMS + 1), 400, "items"),
    "k not a number": (lambda c: post(c, encode(Image.new("L", (9, 9))), k="x"), 400, "k must"),
    "unknown item": (lambda c: c.get(f"/items/{ITEMS}/thumbnail"), 404, "no item"),
    "negative item": (lambda c: c.get("/items/-1/image"), 404, ""),
    "unknown path": (lambda c: c.get("/nothing-here"), 404, ""),
    "wrong method": (lambda c: c.get("/search"), 405, ""),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_get_a_4xx_and_the_server_stays_healthy(served, case):
    send, status, words = BAD[case]
    response = send(served["client"])
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert served["client"].get("/health").status_code == 200
    assert post(served["client"], encode(Image.new("RGB", (20, 20)))).status_code == 200


def test_upload_over_the_limit_gets_413(served):
    app = create_app(served["ix"], max_upload_mb=0.01)
    client = TestClient(app)
    big = encode(picture(np.random.default_rng(0), (1, 2, 3), (200, 200)))
    assert len(big) > 0.01 * 2**20
    response = post(client, big)
    assert response.status_code == 413 and "MiB" in response.json()["error"]
    assert client.get("/health").status_code == 200
    assert post(client, encode(Image.new("RGB", (20, 20)))).status_code == 200


def test_token(served):
    client = TestClient(create_app(served["ix"], token="s3cret"))
    assert client.get("/health").status_code == 401
    wrong = {"Authorization": "Bearer guess"}
    assert client.get("/health", headers=wrong).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert client.get("/health", headers=good).status_code == 200
    assert post(client, encode(Image.new("L", (9, 9)))).status_code == 401
    assert post(client, encode(Image.new("L", (9, 9))), headers=good).status_code == 200
    assert client.get("/items/0/thumbnail").status_code == 401
    page = client.get("/")  # the page holds no data; it asks for the token
    assert page.status_code == 200 and "<script" in page.text


def test_thumbnails_and_pictures(served):
    client, folder = served["client"], served["folder"]
    service = served["app"].state.service
    for item in range(0, ITEMS, 7):
        response = client.get(f"/items/{item}/thumbnail")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(response.content)) as im:
            assert max(im.size) <= 128
        original = client.get(f"/items/{item}/image")
        assert original.content == open(service.index.paths[item], "rb").read()
    assert client.get("/static/app.js").status_code == 200
    assert all(p.startswith(folder) for p in service.index.paths)


def test_item_pictures_never_leave_the_dataset(served, tmp_path):
    """Recorded paths that leave the manifest's folder are refused, even when edited into
    a consistent index (checksums updated)."""
    folder = served["folder"]
    secret = tmp_path / "secret.png"
    Image.new("RGB", (20, 20), (255, 0, 0)).save(secret)
    os.symlink(secret, os.path.join(folder, "red", "link.png"))
    index = Index.load(served["ix"])
    escaped = os.path.join(
        folder, "red", "..", "..", os.path.relpath(secret, os.path.dirname(folder))
    )
    assert os.path.isfile(escaped)
    index.paths[:4] = [escaped, str(secret), os.path.join(folder, "red", "link.png"), "/etc/passwd"]
    crafted = str(tmp_path / "crafted")
    index.save(crafted)
    client = TestClient(create_app(crafted, export_dir=served["export"]))
    for item in range(4):
        for what in ("thumbnail", "image"):
            response = client.get(f"/items/{item}/{what}")
            assert response.status_code == 403, (item, what)
            assert "outside the dataset" in response.json()["error"]
    assert client.get("/items/4/thumbnail").status_code == 200
    assert client.get("/health").status_code == 200
    os.unlink(os.path.join(folder, "red", "link.png"))


def test_answering_needs_no_mxnet(served):
    """With an export at hand, starting and answering import no MXNet."""
    query = os.path.join(served["folder"], "blue", "02.jpg")
    code = f"""
import sys
from starlette.testclient import TestClient
from gluon_triplet.search.serve import create_app
client = TestClient(create_app({served["ix"]!r}))
with open({query!r}, "rb") as f:
    r = client.post("/search?k=3", files={{"image": ("q.jpg", f.read())}})
assert r.status_code == 200, r.text
for path in ("/health", "/items/1/thumbnail", "/items/2/image", "/"):
    assert client.get(path).status_code == 200, path
print("mxnet" in sys.modules, len(r.json()["neighbours"]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "3"]


def test_missing_framework_is_one_line_naming_the_extra(served):
    code = f"""
import sys
sys.modules["starlette"] = None  # as if it were not installed
from gluon_triplet.cli import main
sys.exit(main(["serve", {served["ix"]!r}]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "gluon-triplet[serve]" in lines[0]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--port", "70000"], "--port"),
        (["--workers", "0"], "--workers"),
        (["--max-upload-mb", "0"], "positive"),
    ],
)
def test_bad_options_are_one_error_line(served, capsys, argv, words):
    capsys.readouterr()
    assert main(["serve", served["ix"], *argv, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]


def test_a_missing_index_or_a_port_in_use_is_one_error_line(served, capsys, tmp_path):
    capsys.readouterr()
    assert main(["serve", str(tmp_path / "nope"), "-q"]) == 2
    assert capsys.readouterr().err.startswith("error: index directory")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", served["ix"], "--port", str(port), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on 127.0.0.1:{port}" in err[0]
    assert os.strerror(errno.EADDRINUSE) in err[0]  # the OS's reason, not a guess


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ix, *extra):
    """``gluon-triplet serve`` in a subprocess; returns it and its base URL once up."""
    port = free_port()
    cmd = [sys.executable, "-m", "gluon_triplet", "serve", ix, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            urllib.request.urlopen(url + "/", timeout=1).read()
            return proc, url
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not start")


def multipart(field, filename, data):
    boundary = "gluontripletboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_the_command_serves_on_a_socket_with_workers_and_a_token(served):
    """All interfaces (a WARNING), two worker processes, a token; stopped by SIGINT."""
    proc, url = start_server(served["ix"], "--host", "0.0.0.0", "--workers", "2", "--token", "t")
    try:
        auth = {"Authorization": "Bearer t"}
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/health")
        assert e.value.code == 401
        health = json.load(
            urllib.request.urlopen(urllib.request.Request(url + "/health", headers=auth))
        )
        assert health["size"] == ITEMS
        query = open(os.path.join(served["folder"], "red", "03.png"), "rb").read()
        body, kind = multipart("image", "q.png", query)
        request = urllib.request.Request(url + "/search?k=4", body, {**auth, "Content-Type": kind})
        got = json.load(urllib.request.urlopen(request))
        want = post(served["client"], query, k=4).json()
        assert [n["id"] for n in got["neighbours"]] == [n["id"] for n in want["neighbours"]]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0] and "Traceback" not in err
