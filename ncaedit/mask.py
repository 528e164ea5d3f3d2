"""Masks that limit an edit to part of a photo: white edits fully, black keeps the source, grey blends."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ncaedit.errors import NcaError
from ncaedit.paths import open_regular


def load_mask(path: Path, size: tuple[int, int], feather: float = 0.0) -> np.ndarray:
    """The mask's luminance as uint8 (H, W), stretched to `size` (width, height) and blurred by
    `feather` pixels for soft edges. uint8, not float: a mask for a 48-MP photo stays at 48 MB."""
    from PIL import Image, ImageFilter, ImageOps

    try:
        with open_regular(path, "an image file") as fh, Image.open(fh) as img:
            img = ImageOps.exif_transpose(img).convert("L")
    except NcaError as exc:
        raise NcaError(f"--mask {exc}") from None
    except Exception as exc:  # Pillow raises many types for broken files
        raise NcaError(f"--mask {path}: not a readable image ({type(exc).__name__})") from None
    if img.size != tuple(size):
        img = img.resize(size, Image.Resampling.BILINEAR)
    if feather > 0:
        img = img.filter(ImageFilter.GaussianBlur(feather))
    return np.asarray(img)
