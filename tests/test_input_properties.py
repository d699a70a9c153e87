"""Property tests on the input side: whatever bytes, headers, modes or arrays users hand us, the answer
is an RGB uint8 photo, probabilities, a cloak, or an EmocloakError naming the file; never another exception.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from emocloak.data.images import as_rgb, load_rgb
from emocloak.errors import EmocloakError, ImageError

FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"]
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "HSV", "LAB"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _rgb_or_image_error(source) -> np.ndarray | None:
    try:
        out = load_rgb(source)
    except ImageError as exc:
        assert "\n" not in str(exc)
        return None
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8 and min(out.shape[:2]) >= 1
    return out


def _encoded(fmt: str, w: int, h: int, seed: int) -> bytes:
    px = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, fmt)
    return buf.getvalue()


def _png(w: int, h: int, depth: int, colour: int, body: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    _rgb_or_image_error(data)


@SETTINGS
@given(st.sampled_from(FORMATS), st.integers(1, 40), st.integers(1, 40), st.integers(0, 99), st.floats(0, 1))
def test_truncated_files(fmt, w, h, seed, keep):
    data = _encoded(fmt, w, h, seed)
    _rgb_or_image_error(data[: int(len(data) * keep)])


@SETTINGS
@given(st.sampled_from(FORMATS), st.sampled_from([".jpg", ".png", ".bmp", ".webp", ".tif"]), st.integers(0, 99))
def test_mislabelled_files_are_read_by_content(tmp_path_factory, fmt, suffix, seed):
    path = tmp_path_factory.mktemp("mislabelled") / f"photo{suffix}"
    path.write_bytes(_encoded(fmt, 17, 11, seed))
    assert _rgb_or_image_error(path).shape == (11, 17, 3)


@SETTINGS
@given(
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**31 - 1),
    st.sampled_from([1, 2, 4, 8, 16, 3, 7]),
    st.sampled_from([0, 2, 3, 4, 6, 1, 5]),
    st.binary(max_size=64),
)
def test_absurd_headers(w, h, depth, colour, body):
    """Claimed sizes up to 2^31 per side: refused by the pixel limit before any allocation, or read."""
    _rgb_or_image_error(_png(w, h, depth, colour, body))


@SETTINGS
@given(st.sampled_from(MODES), st.integers(1, 12), st.integers(1, 12), st.integers(0, 99))
def test_odd_modes_through_files_and_arrays(tmp_path_factory, mode, w, h, seed):
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode if mode != "I;16" else "I")
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    rgb = as_rgb(im)
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    path = tmp_path_factory.mktemp("modes") / "odd.tif"
    try:
        im.save(path)
    except (OSError, ValueError, KeyError):  # a mode TIFF cannot hold: nothing to read back
        return
    out = _rgb_or_image_error(path)
    assert out is None or out.shape == (h, w, 3)


ARRAYS = st.one_of(
    st.tuples(st.integers(0, 40), st.integers(0, 40)),
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 5)),
    st.tuples(st.integers(0, 3)),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
)


@pytest.fixture(scope="module")
def cnn(one_thread):
    from emocloak.recognizers.registry import load_recognizer

    return load_recognizer("cnn")


@SETTINGS
@given(ARRAYS, st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int64, np.bool_]), st.booleans())
def test_predict_proba_takes_any_array_or_says_why(cnn, shape, dtype, detect):
    rng = np.random.default_rng(0)
    a = (rng.random(shape) * (255 if dtype in (np.uint8, np.int64) else 1)).astype(dtype)
    if dtype == np.float32 and a.size:
        a.flat[0] = np.nan
    try:
        p = cnn.predict_proba([a], detect=detect, on_no_face="nan")
    except EmocloakError:
        return
    assert p.shape == (1, 8)
    assert np.isnan(p).all() or np.isclose(p.sum(), 1, atol=1e-4)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=512), st.sampled_from(FORMATS).map(lambda f: _encoded(f, 24, 24, 1))))
def test_protect_takes_any_file_or_says_why(tmp_path_factory, data):
    """No photo of ours has a face here: every one ends in a clear EmocloakError, nothing is written."""
    from emocloak.protection import protect_file

    folder = tmp_path_factory.mktemp("protect")
    (folder / "in.jpg").write_bytes(data)
    with pytest.raises(EmocloakError):
        protect_file(folder / "in.jpg", folder / "out", method="universal")
    assert not (folder / "out").exists() or not any((folder / "out").iterdir())
