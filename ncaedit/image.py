"""Reading and writing photos.

A photo in memory is a `Photo`: float32 RGB in [0, 1] of shape (H, W, 3), an optional alpha
plane of shape (H, W), and the bit depth it came in with, so that a 16-bit input can be written
back as 16-bit. Loaded with `keep_samples=True`, a photo keeps the file's uint8/uint16 samples
instead: a quarter or half of float32's memory, which big photos need (see `to_float`).
EXIF orientation is applied on load; writes go to a temporary file in the same folder and are
renamed into place, so a crash never leaves a half-written image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncaedit.errors import NcaError
from ncaedit.paths import atomic_output
from ncaedit.png16 import png_bit_depth, read_png16, write_png16

READ_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
WRITE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}
MIN_SIDE = 8
DEFAULT_MAX_PIXELS = 200_000_000  # refuse decompression bombs above this many pixels


@dataclass
class Photo:
    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1], or uint8/uint16 samples
    alpha: np.ndarray | None = None  # (H, W), same type as rgb
    bit_depth: int = 8

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow says it."""
        return self.rgb.shape[1], self.rgb.shape[0]

    def as_float(self) -> Photo:
        if self.rgb.dtype == np.float32:
            return self
        return Photo(to_float(self.rgb), None if self.alpha is None else to_float(self.alpha), self.bit_depth)


def to_float(samples: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from uint8/uint16 samples (float input passes through as float32)."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    out = samples.astype(np.float32)
    out /= np.iinfo(samples.dtype).max
    return out


def to_samples(values: np.ndarray, dtype) -> np.ndarray:
    """`values` (float in [0, 1] or samples) as `dtype`: uint8/uint16 samples, rounded, or float32 in
    [0, 1]. Converted in row blocks, so that big photos need no big temporaries."""
    dtype = np.dtype(dtype)
    if values.dtype == dtype:
        return values
    if dtype.kind == "f":
        return np.clip(to_float(values), 0, 1).astype(dtype, copy=False)
    top = np.iinfo(dtype).max
    out = np.empty(values.shape, dtype)
    for r in range(0, values.shape[0], 256):
        out[r : r + 256] = np.clip(to_float(values[r : r + 256]), 0, 1) * top + 0.5
    return out


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, keep_samples: bool = False) -> Photo:
    path = Path(path)
    if not path.exists():
        raise NcaError(f"{path}: no such file")
    if path.is_dir():
        raise NcaError(f"{path}: is a folder, expected an image file")
    try:
        head = path.open("rb").read(26)
    except OSError as exc:
        raise NcaError(f"{path}: cannot read ({exc.strerror})") from None
    if not head:
        raise NcaError(f"{path}: file is empty")
    try:
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            photo = _load_tiff(path, max_pixels)
        elif png_bit_depth(head) == 16:
            photo = _from_array(read_png16(path.read_bytes()), path)
        else:
            photo = _load_pillow(path, max_pixels)
    except NcaError as exc:
        raise NcaError(f"{path}: {exc}") from None
    h, w = photo.rgb.shape[:2]
    if h * w > max_pixels:
        raise NcaError(f"{path}: {w}x{h} is above the {max_pixels:,}-pixel limit (raise it with --max-pixels)")
    if min(h, w) < MIN_SIDE:
        raise NcaError(f"{path}: {w}x{h} is too small (each side needs at least {MIN_SIDE} pixels)")
    return photo if keep_samples else photo.as_float()


def _load_pillow(path: Path, max_pixels: int) -> Photo:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                raise NcaError(f"{img.width}x{img.height} is above the {max_pixels:,}-pixel limit (raise it with --max-pixels)")
            img = ImageOps.exif_transpose(img)
            img.load()
    except NcaError:
        raise
    except Image.DecompressionBombError:
        raise NcaError(f"image is above the {max_pixels:,}-pixel limit (raise it with --max-pixels)") from None
    except Exception as exc:  # Pillow raises many types for broken files
        raise NcaError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode != "I" or arr.max() > 255 else 255.0
        return _split_channels(np.clip(arr / top, 0, 1)[:, :, None], 16)
    if mode == "F":
        return _split_channels(np.clip(np.asarray(img, np.float32), 0, 1)[:, :, None], 16)
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
    target = "RGBA" if has_alpha else "RGB"
    if img.mode != target:  # convert() to the same mode would copy a big image for nothing
        img = img.convert(target)
    return _split_channels(np.asarray(img), 8)


def _load_tiff(path: Path, max_pixels: int) -> Photo:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            shape = page.shape
            if int(np.prod(shape[:2])) > max_pixels:
                raise NcaError(f"{shape[1]}x{shape[0]} is above the {max_pixels:,}-pixel limit (raise it with --max-pixels)")
            photometric = getattr(page.photometric, "name", str(page.photometric))
            arr = page.asarray()
    except NcaError:
        raise
    except Exception as exc:
        raise NcaError(f"not a readable TIFF ({type(exc).__name__}: {exc})") from None
    if photometric in ("SEPARATED", "PALETTE") or arr.ndim not in (2, 3):
        # CMYK and palette TIFFs: Pillow knows how to convert those.
        return _load_pillow(path, max_pixels)
    return _from_array(arr, path)


def _from_array(arr: np.ndarray, path: Path) -> Photo:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint8:
        return _split_channels(arr, 8)
    if arr.dtype == np.uint16:
        return _split_channels(arr, 16)
    if arr.dtype.kind == "f":
        return _split_channels(np.nan_to_num(arr.astype(np.float32)).clip(0, 1), 16)
    if arr.dtype == bool:
        return _split_channels(arr.astype(np.uint8) * 255, 8)
    raise NcaError(f"unsupported sample type {arr.dtype}")


def _split_channels(arr: np.ndarray, bit_depth: int) -> Photo:
    channels = arr.shape[2]
    if channels not in (1, 2, 3, 4):
        raise NcaError(f"unsupported image with {channels} channels")
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)
    colour = arr[:, :, :1].repeat(3, axis=2) if channels in (1, 2) else arr[:, :, :3]
    alpha = arr[:, :, -1] if channels in (2, 4) else None
    return Photo(np.ascontiguousarray(colour), None if alpha is None else np.ascontiguousarray(alpha), bit_depth)


def save_image(photo: Photo, path: str | Path, quality: int = 95) -> Path:
    """Write atomically; the bit depth follows `photo.bit_depth` where the format allows it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise NcaError(f"{path}: unknown output format {suffix!r} (use one of {', '.join(sorted(WRITE_SUFFIXES))})")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise NcaError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise NcaError(f"{path}: output folder {folder} is not writable")
    data = encode_image(photo, suffix, quality)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def encode_image(photo: Photo, suffix: str, quality: int = 95) -> bytes:
    import io

    sixteen = photo.bit_depth == 16 and suffix in (".png", ".tif", ".tiff")
    dtype = np.uint16 if sixteen else np.uint8
    arr = to_samples(photo.rgb, dtype)
    if photo.alpha is not None:
        arr = np.concatenate([arr, to_samples(photo.alpha, dtype)[:, :, None]], axis=2)
    if suffix in (".tif", ".tiff"):
        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(buf, arr, photometric="rgb", compression="zlib", extrasamples=("unassalpha",) if arr.shape[2] == 4 else None)
        return buf.getvalue()
    if sixteen:
        return write_png16(arr)
    from PIL import Image

    img = Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB")
    buf = io.BytesIO()
    if suffix in (".jpg", ".jpeg"):
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    elif suffix == ".webp":
        img.save(buf, "WEBP", quality=quality)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased resize of float RGB to (width, height)."""
    from PIL import Image

    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    planes = [Image.fromarray(np.ascontiguousarray(rgb[:, :, c]), "F").resize(size, Image.Resampling.LANCZOS) for c in range(rgb.shape[2])]
    return np.clip(np.stack([np.asarray(p) for p in planes], axis=2), 0, 1).astype(np.float32)


def fit_long_side(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Resize so the longer side is `long_side`, keeping the aspect ratio."""
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    return resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))))
