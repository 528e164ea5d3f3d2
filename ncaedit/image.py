"""Reading and writing photos.

A photo in memory is a `Photo`: float32 RGB in [0, 1] of shape (H, W, 3), an optional alpha
plane of shape (H, W), and the bit depth it came in with, so that a 16-bit input can be written
back as 16-bit. EXIF orientation is applied on load; writes go to a temporary file in the same
folder and are renamed into place, so a crash never leaves a half-written image.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncaedit.errors import NcaError
from ncaedit.png16 import png_bit_depth, read_png16, write_png16

READ_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
WRITE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}
MIN_SIDE = 8
DEFAULT_MAX_PIXELS = 200_000_000  # refuse decompression bombs above this many pixels


@dataclass
class Photo:
    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1]
    alpha: np.ndarray | None = None  # float32 (H, W) in [0, 1]
    bit_depth: int = 8

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow says it."""
        return self.rgb.shape[1], self.rgb.shape[0]


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
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
    return photo


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
        return _from_float(np.clip(arr / top, 0, 1)[:, :, None], 16)
    if mode == "F":
        return _from_float(np.clip(np.asarray(img, np.float32), 0, 1)[:, :, None], 16)
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if has_alpha else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return _from_float(arr, 8)


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
        return _from_float(arr.astype(np.float32) / 255.0, 8)
    if arr.dtype == np.uint16:
        return _from_float(arr.astype(np.float32) / 65535.0, 16)
    if arr.dtype.kind == "f":
        return _from_float(np.nan_to_num(arr.astype(np.float32)).clip(0, 1), 16)
    if arr.dtype == bool:
        return _from_float(arr.astype(np.float32), 8)
    raise NcaError(f"unsupported sample type {arr.dtype}")


def _from_float(arr: np.ndarray, bit_depth: int) -> Photo:
    channels = arr.shape[2]
    if channels not in (1, 2, 3, 4):
        raise NcaError(f"unsupported image with {channels} channels")
    colour = arr[:, :, :1].repeat(3, axis=2) if channels in (1, 2) else arr[:, :, :3]
    alpha = arr[:, :, -1] if channels in (2, 4) else None
    return Photo(np.ascontiguousarray(colour, dtype=np.float32), alpha, bit_depth)


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
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def encode_image(photo: Photo, suffix: str, quality: int = 95) -> bytes:
    import io

    channels = [photo.rgb] if photo.alpha is None else [photo.rgb, photo.alpha[:, :, None]]
    arr = np.clip(np.concatenate(channels, axis=2), 0, 1)
    sixteen = photo.bit_depth == 16 and suffix in (".png", ".tif", ".tiff")
    if suffix in (".tif", ".tiff"):
        import tifffile

        out = (arr * 65535 + 0.5).astype(np.uint16) if sixteen else (arr * 255 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        tifffile.imwrite(buf, out, photometric="rgb", compression="zlib", extrasamples=("unassalpha",) if out.shape[2] == 4 else None)
        return buf.getvalue()
    if sixteen:
        return write_png16((arr * 65535 + 0.5).astype(np.uint16))
    from PIL import Image

    img = Image.fromarray((arr * 255 + 0.5).astype(np.uint8), "RGBA" if arr.shape[2] == 4 else "RGB")
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
