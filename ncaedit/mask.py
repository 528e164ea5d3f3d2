"""Masks that limit an edit to part of a photo: white edits fully, black keeps the source, grey blends."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ncaedit.errors import NcaError
from ncaedit.paths import open_regular


def load_mask(path: Path, size: tuple[int, int], feather: float = 0.0) -> np.ndarray:
    """The mask's luminance as uint8 (H, W), stretched to `size` (width, height) and blurred by
    `feather` pixels for soft edges. uint8, not float: a mask for a 48-MP photo stays at 48 MB."""
    from PIL import Image, ImageOps

    try:
        with open_regular(path, "an image file") as fh, Image.open(fh) as img:
            img = ImageOps.exif_transpose(img).convert("L")
    except NcaError as exc:
        raise NcaError(str(exc), param="mask") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise NcaError(f"{path}: not a readable image ({type(exc).__name__})", param="mask") from exc
    return _fit(img, size, feather)


def mask_array(rgb: np.ndarray, size: tuple[int, int], feather: float = 0.0) -> np.ndarray:
    """A mask given in memory (RGB samples or floats in [0, 1], (H, W, 3)) as load_mask gives it."""
    from PIL import Image

    from ncaedit.image import to_samples

    return _fit(Image.fromarray(to_samples(rgb, np.uint8)).convert("L"), size, feather)


def _fit(img, size: tuple[int, int], feather: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    if img.size != tuple(size):
        img = img.resize(size, Image.Resampling.BILINEAR)
    if feather > 0:
        img = img.filter(ImageFilter.GaussianBlur(feather))
    return np.asarray(img)
