"""idx: IDX files of any header, payload and length read as an array or one DataError."""

import gzip

from helpers import idx_bytes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gluon_triplet.data.datasets import DataError
from gluon_triplet.data.idx import read_idx


@given(
    dims=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 6), min_size=0, max_size=5),
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF]),
    payload=st.binary(max_size=200),
    cut=st.integers(0, 300),
    gz=st.booleans(),
)
# Found by this test: an empty array whose other dimensions NumPy cannot represent.
@example(dims=[0, 58786, 12523302, 12528439], code=8, payload=b"", cut=20, gz=False)
@settings(
    max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzz_read_idx_headers_and_truncations(tmp_path, dims, code, payload, cut, gz):
    """Any header (huge or zero dims, bad type codes), any payload, cut anywhere: an array
    of the declared shape or a one-line DataError; never a hang or a huge allocation."""

    content = idx_bytes(dims, code, payload)[:cut]
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(content) if gz else content)
    try:
        arr = read_idx(path)
    except DataError as e:
        assert "\n" not in str(e) and str(path) in str(e)
    else:
        assert arr.shape == tuple(dims) and arr.nbytes == len(content) - 4 - 4 * len(dims)
