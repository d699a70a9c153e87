import io

import numpy as np
import pytest
from PIL import Image

from emocloak.data import images
from emocloak.data.images import as_rgb, list_images, load_rgb
from emocloak.errors import ImageError


def _save(tmp_path, name, im, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello")
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        load_rgb(p)


def test_truncated_jpeg(tmp_path, astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.jpg: damaged or truncated"):
        load_rgb(p)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.full((10, 12), 65535 // 2, np.uint16)
    p = _save(tmp_path, "deep.png", Image.fromarray(a))
    rgb = load_rgb(p)
    assert rgb.shape == (10, 12, 3) and rgb.dtype == np.uint8 and abs(int(rgb[0, 0, 0]) - 128) <= 1


def test_rgba_and_palette_png(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, ..., 3] = 255  # top half opaque red, bottom half transparent
    rgb = load_rgb(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[3, 0].tolist() == [255, 255, 255]
    pal = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4)).convert("P")
    assert load_rgb(_save(tmp_path, "p.png", pal)).shape == (4, 4, 3)


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    rgb = load_rgb(_save(tmp_path, "r.jpg", im, exif=exif))
    assert rgb.shape == (40, 20, 3)
    assert rgb[2, 10].mean() > 200 and rgb[37, 10].mean() < 50  # white half is now on top


def test_pixel_limit(tmp_path, monkeypatch):
    p = _save(tmp_path, "big.png", Image.new("RGB", (300, 200)))
    monkeypatch.setattr(images, "MAX_PIXELS", 50_000)
    with pytest.raises(ImageError, match="300x200 is larger than"):
        load_rgb(p)
    with pytest.raises(ImageError, match="exceeds"):
        as_rgb(np.zeros((300, 200, 3), np.uint8))


def test_as_rgb_accepts_common_arrays():
    assert as_rgb(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)
    assert as_rgb(np.ones((5, 6, 3), np.float32))[0, 0, 0] == 255
    assert as_rgb(Image.new("L", (6, 5))).shape == (5, 6, 3)
    with pytest.raises(ImageError, match="shape"):
        as_rgb(np.zeros((5, 6, 2), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        as_rgb(np.full((5, 6), np.nan))


def test_list_images(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    assert list_images([tmp_path]) == [tmp_path / "sub" / "a.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no image files"):
        list_images([tmp_path / "empty"])
    with pytest.raises(ImageError, match="no such file"):
        list_images([tmp_path / "missing.jpg"])


def test_max_pixels_can_be_raised_past_pillows_own_limit(monkeypatch, tmp_path):
    """Pillow refuses images over twice its MAX_IMAGE_PIXELS; a user who raised ours must get past it.

    (Scaled down: Pillow's limit set to 1,000 pixels stands for its ~179 MP, a 100x100 photo for 225 MP.)
    """
    p = _save(tmp_path, "scan.png", Image.new("RGB", (100, 100), (9, 9, 9)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    monkeypatch.setattr(images, "MAX_PIXELS", 5_000)
    with pytest.raises(ImageError, match="100x100 is larger than the 5,000-pixel limit"):
        load_rgb(p)
    monkeypatch.setenv("EMOCLOAK_MAX_PIXELS", "20000")
    assert load_rgb(p).shape == (100, 100, 3)
    assert Image.MAX_IMAGE_PIXELS == 1_000  # Pillow's own setting is left as it was
    monkeypatch.setenv("EMOCLOAK_MAX_PIXELS", "lots")
    with pytest.raises(ImageError, match="EMOCLOAK_MAX_PIXELS='lots'"):
        load_rgb(p)
