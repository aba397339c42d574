"""``gluon_triplet.preprocess``: picture bytes to a graph's input, for every layout."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_serve_helpers import encode, picture

from gluon_triplet.nets.preprocess import preprocess, preprocess_spec


@settings(max_examples=20, deadline=None)
@given(
    w=st.integers(4, 60),
    h=st.integers(4, 60),
    mode=st.sampled_from(["L", "RGB", "RGBA", "P"]),
    graph=st.sampled_from(["grey", "grey-cnn", "rgb", "grey-into-rgb"]),
)
def test_preprocess_layout_matches_the_graph(w, h, mode, graph):
    """Every sample layout becomes the graph's input: values in [0, 1], the decoded pixels."""
    sample, inp = {
        "grey": ((12, 10), (12, 10)),
        "grey-cnn": ((12, 10), (1, 12, 10)),
        "rgb": ((3, 12, 10), (3, 12, 10)),
        "grey-into-rgb": ((12, 10), (3, 12, 10)),  # a backbone fed grey pictures
    }[graph]
    spec = preprocess_spec(sample, inp)
    img = picture(np.random.default_rng(w * h), (250, 10, 120), (w, h), mode)
    x = preprocess(encode(img), spec)
    assert x.shape == (1, *inp) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    channels = 1 if len(sample) == 2 else 3
    want = img.convert("L" if channels == 1 else "RGB")
    scale = max(12 / h, 10 / w)
    nw, nh = max(10, round(w * scale)), max(12, round(h * scale))
    if (nw, nh) != (w, h):
        want = want.resize((nw, nh), Image.BILINEAR, reducing_gap=None if scale > 0.5 else 2.0)
    left, top = (nw - 10) // 2, (nh - 12) // 2
    want = np.asarray(want.crop((left, top, left + 10, top + 12)), np.float32) / 255
    if channels == 3:
        want = want.transpose(2, 0, 1)
    if graph == "grey-into-rgb":
        want = np.repeat(want[None], 3, axis=0)
    assert np.array_equal(x.reshape(np.shape(want)), want)
