"""The kinds of image the Python API takes and gives back: a path, a PIL image, a numpy array
(H, W) or (H, W, C) of uint8, uint16 or float samples, or a torch tensor (C, H, W) or (N, C, H, W).

Everything becomes an image.Photo on the way in; `Converted.restore` turns an edited Photo back
into the kind (type, dtype, layout, device) that came in, so `rule.apply(x)` returns what it got.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ncaedit.errors import NcaError
from ncaedit.image import Photo, load_image


@dataclass
class Converted:
    """An input image as Photos (a batched tensor gives several), and the way back to its kind."""

    photos: list[Photo]
    restore: Callable[[list[Photo]], Any]  # edited photos -> the caller's kind
    path: Path | None = None  # the file it was read from, if any
    name: str = "image"  # the file's stem: a default output name part

    def sha256(self) -> str:
        """What the image is, for rule metadata: the file's bytes, or the samples of an in-memory image."""
        if self.path is not None:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        return hashlib.sha256(np.ascontiguousarray(self.photos[0].rgb).tobytes()).hexdigest()


def convert(image: Any, max_pixels: int | None = None, keep_samples: bool = False) -> Converted:
    """`image` as Photos; `keep_samples` keeps integer samples (as `ncaedit apply` reads files)."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        photo = load_image(path, max_pixels, keep_samples=keep_samples)
        return Converted([photo], lambda out: out[0], path, path.stem)
    if type(image).__module__.startswith("PIL."):
        return _from_pil(image, keep_samples)
    if type(image).__module__.startswith("torch"):
        return _from_tensor(image, keep_samples)
    if isinstance(image, np.ndarray):
        return _from_numpy(image, keep_samples)
    raise NcaError(f"image: expected a path, a PIL image, a numpy array or a torch tensor, got {type(image).__name__}")


def _photo(arr: np.ndarray, keep_samples: bool) -> Photo:
    from ncaedit.image import MIN_SIDE, _from_array

    if arr.ndim not in (2, 3) or min(arr.shape[:2]) < MIN_SIDE:
        raise NcaError(f"image: expected (H, W) or (H, W, C) of at least {MIN_SIDE} pixels a side, got shape {arr.shape}")
    photo = _from_array(arr)
    return photo if keep_samples else photo.as_float()


def _samples(photo: Photo, dtype) -> np.ndarray:
    """The photo's RGB(A) as (H, W, 3 or 4) of `dtype`."""
    from ncaedit.image import to_samples

    planes = [photo.rgb] if photo.alpha is None else [photo.rgb, photo.alpha[:, :, None]]
    return np.concatenate([to_samples(p, dtype) for p in planes], axis=2) if len(planes) > 1 else to_samples(photo.rgb, dtype)


def _from_numpy(arr: np.ndarray, keep_samples: bool) -> Converted:
    dtype = arr.dtype if arr.dtype in (np.uint8, np.uint16) or arr.dtype.kind == "f" else np.float32
    return Converted([_photo(arr, keep_samples)], lambda out: _samples(out[0], dtype))


def _from_pil(img, keep_samples: bool) -> Converted:
    from PIL import Image

    has_alpha = "A" in img.getbands() or "transparency" in img.info
    if img.mode not in ("RGB", "RGBA", "L", "LA", "I;16"):
        img = img.convert("RGBA" if has_alpha else "RGB")

    def restore(out: list[Photo]) -> Image.Image:
        return Image.fromarray(_samples(out[0], np.uint8))  # PIL has no 16-bit RGB: 8-bit RGB(A)

    return Converted([_photo(np.asarray(img), keep_samples)], restore)


def _from_tensor(t, keep_samples: bool) -> Converted:
    import torch

    if t.ndim not in (3, 4) or t.shape[-3] not in (1, 3, 4):
        raise NcaError(f"image: a tensor must be (C, H, W) or (N, C, H, W) with 1, 3 or 4 channels, got shape {tuple(t.shape)}")
    batch = t.detach().cpu()[None] if t.ndim == 3 else t.detach().cpu()
    if batch.dtype.is_floating_point:
        batch = batch.float()
    photos = [_photo(x.permute(1, 2, 0).numpy(), keep_samples) for x in batch]
    dtype = np.uint8 if t.dtype == torch.uint8 else np.float32

    def restore(out: list[Photo]):
        edited = torch.stack([torch.from_numpy(_samples(p, dtype)).permute(2, 0, 1) for p in out])
        edited = edited.to(device=t.device, dtype=t.dtype)
        return edited[0] if t.ndim == 3 else edited

    return Converted(photos, restore)
