import numpy as np
import pytest
from PIL import Image

from ncaedit.errors import NcaError
from ncaedit.image import Photo, load_image, save_image

from helpers import smooth_photo


LOSSLESS = [(".png", 8, 1 / 255), (".png", 16, 1 / 65535), (".tif", 8, 1 / 255), (".tif", 16, 1 / 65535)]


@pytest.mark.parametrize("suffix,depth,tol", LOSSLESS + [(".jpg", 8, None), (".webp", 8, None)])
def test_round_trip(tmp_path, suffix, depth, tol):
    rgb = smooth_photo(40, 56)
    path = save_image(Photo(rgb, None, depth), tmp_path / f"x{suffix}")
    back = load_image(path)
    assert back.rgb.shape == rgb.shape
    assert back.bit_depth == (depth if suffix in (".png", ".tif") else 8)
    err = np.abs(back.rgb - rgb)
    if tol is None:  # lossy: chroma subsampling smears sharp colour edges, so judge the mean
        assert err.mean() < 0.02
    else:
        assert err.max() <= tol + 1e-6


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_alpha_passes_through(tmp_path, suffix):
    rgb = smooth_photo(20, 30)
    alpha = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    back = load_image(save_image(Photo(rgb, alpha, 16), tmp_path / f"a{suffix}"))
    assert back.alpha is not None and np.abs(back.alpha - alpha).max() < 1e-4


def test_sixteen_bit_png_keeps_precision(tmp_path):
    ramp = np.linspace(0, 1, 4096, dtype=np.float32).reshape(64, 64)
    rgb = np.stack([ramp] * 3, axis=2)
    back = load_image(save_image(Photo(rgb, None, 16), tmp_path / "r.png"))
    assert len(np.unique(back.rgb[..., 0])) > 1000  # 8 bits would give at most 256 levels


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "o.jpg", exif=exif, quality=95)
    photo = load_image(tmp_path / "o.jpg")
    assert photo.rgb.shape[:2] == (40, 20)
    assert photo.rgb[:20].mean() > 0.9 and photo.rgb[20:].mean() < 0.1  # white is now on top


def test_greyscale_and_palette_become_rgb(tmp_path):
    Image.fromarray((np.arange(400).reshape(20, 20) % 256).astype(np.uint8), "L").save(tmp_path / "g.png")
    Image.fromarray((np.arange(400).reshape(20, 20) % 256).astype(np.uint8), "L").convert("P").save(tmp_path / "p.png")
    for name in ("g.png", "p.png"):
        assert load_image(tmp_path / name).rgb.shape == (20, 20, 3)


def test_bad_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, not an image")
    good = save_image(Photo(smooth_photo(40, 40)), tmp_path / "good.png")
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:100])
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    for name, pattern in [("empty.png", "empty"), ("text.jpg", "not a readable"), ("trunc.png", "not a readable"), ("tiny.png", "too small"), ("missing.png", "no such")]:
        with pytest.raises(NcaError, match=pattern):
            load_image(tmp_path / name)
    with pytest.raises(NcaError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(NcaError, match="limit"):
        load_image(good, max_pixels=100)


def test_save_refuses_unknown_format_and_missing_folder(tmp_path):
    with pytest.raises(NcaError, match="format"):
        save_image(Photo(smooth_photo()), tmp_path / "x.gif")
    with pytest.raises(NcaError, match="does not exist"):
        save_image(Photo(smooth_photo()), tmp_path / "nope" / "x.png")
