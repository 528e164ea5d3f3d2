"""Reading and writing photos.

A photo in memory is a `Photo`: float32 RGB in [0, 1] of shape (H, W, 3), an optional alpha
plane of shape (H, W), and the bit depth it came in with, so that a 16-bit input can be written
back as 16-bit. Loaded with `keep_samples=True`, a photo keeps the file's uint8/uint16 samples
instead: a quarter or half of float32's memory, which big photos need (see `to_float`).
EXIF orientation is applied on load; writes go to a temporary file in the same folder and are
renamed into place, so a crash never leaves a half-written image.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncaedit.config import DEFAULT_MAX_PIXELS
from ncaedit.errors import NcaError
from ncaedit.paths import open_regular, write_atomic
from ncaedit.png16 import png_bit_depth, png_size, read_png16, write_png16

READ_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
WRITE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}
MIN_SIDE = 8


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


def load_image(path: str | Path, max_pixels: int | None = None, keep_samples: bool = False) -> Photo:
    """Read a photo; every problem with the file is an NcaError that names the file.

    Images larger than `max_pixels` (None: DEFAULT_MAX_PIXELS) are refused from their header, before
    any pixel is decoded, so a tiny file that claims a huge size (a decompression bomb) costs nothing.
    With `keep_samples`, the photo keeps the file's uint8/uint16 samples (see `to_float`).
    """
    path, max_pixels = Path(path), max_pixels or DEFAULT_MAX_PIXELS
    with open_regular(path, "an image file") as fh:  # the decoders read from this file: no device, no FIFO
        try:
            head = fh.read(26)
            fh.seek(0)
        except OSError as exc:
            raise NcaError(f"{path}: cannot read ({exc.strerror})") from exc
        if not head:
            raise NcaError(f"{path}: file is empty")
        photo = _decode(fh, head, path, max_pixels)
    h, w = photo.rgb.shape[:2]
    _check_size(w, h, max_pixels, path)
    return photo if keep_samples else photo.as_float()


def _decode(fh, head: bytes, path: Path, max_pixels: int) -> Photo:
    try:
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _load_tiff(fh, max_pixels)
        if png_bit_depth(head) == 16:
            _check_size(*png_size(head), max_pixels)
            return _from_array(read_png16(fh.read()))
        return _load_pillow(fh, max_pixels)
    except NcaError as exc:
        raise NcaError(f"{path}: {exc}") from exc
    except MemoryError as exc:
        raise NcaError(f"{path}: not enough memory to decode this image; try a smaller one") from exc


def check_image_size(width: int, height: int, max_pixels: int | None = None, path: Path | None = None) -> None:
    """Refuse a size above `max_pixels` (None: DEFAULT_MAX_PIXELS) or with a side under MIN_SIDE."""
    _check_size(width, height, max_pixels or DEFAULT_MAX_PIXELS, path)


def _check_size(width: int, height: int, max_pixels: int, path: Path | None = None) -> None:
    where = f"{path}: " if path else ""
    if width * height > max_pixels:
        raise NcaError(f"{where}{width}x{height} is above the {max_pixels:,}-pixel limit (raise it with --max-pixels)")
    if min(width, height) < MIN_SIDE:
        raise NcaError(f"{where}{width}x{height} is too small (each side needs at least {MIN_SIDE} pixels)")


@contextmanager
def _pillow_reading(max_pixels: int):
    """Pillow has its own decompression-bomb limit (a warning, then an error at twice it): make it
    ours for the duration of one read, so --max-pixels alone decides. Its warnings about damaged
    files are dropped too: the outcome is reported once, as an image or an NcaError."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


@contextmanager
def _quiet_c_stderr():
    """libtiff, inside Pillow, prints its complaints about odd or damaged TIFFs straight to file
    descriptor 2, around Python; point that at /dev/null while it runs."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr to protect
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _load_pillow(path, max_pixels: int, tiff: bool = False) -> Photo:
    """`path`: a file name or an open binary file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with _pillow_reading(max_pixels), _quiet_c_stderr() if tiff else nullcontext(), Image.open(path) as img:
            _check_size(img.width, img.height, max_pixels)
            img = ImageOps.exif_transpose(img)
            img.load()
    except NcaError:
        raise
    except Image.DecompressionBombError as exc:
        raise NcaError(f"image is above the {max_pixels:,}-pixel limit (raise it with --max-pixels)") from exc
    except UnidentifiedImageError as exc:
        raise NcaError("not a readable image (not an image file, or a format ncaedit cannot read)") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise NcaError(f"not a readable image; it is damaged or truncated ({type(exc).__name__}: {exc})") from exc
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode != "I" or arr.max() > 255 else 255.0
        return _split_channels(np.clip(arr / top, 0, 1).astype(np.float32)[:, :, None], 16)
    if mode == "F":
        return _split_channels(np.clip(np.nan_to_num(np.asarray(img, np.float32)), 0, 1)[:, :, None], 16)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    target = "RGBA" if has_alpha else "RGB"
    try:  # 1-bit, palette, CMYK, YCbCr, LAB, HSV, ...: Pillow's own conversion
        if img.mode != target:  # convert() to the same mode would copy a big image for nothing
            img = img.convert(target)
    except (ValueError, OSError) as exc:
        raise NcaError(f"colour mode {mode} is not supported; convert the image to RGB first") from exc
    return _split_channels(np.asarray(img), 8)


_TIFFFILE_PHOTOMETRICS = ("MINISBLACK", "RGB")  # read directly; others (CMYK, palette, white-is-zero, Lab) via Pillow


def _load_tiff(path, max_pixels: int) -> Photo:
    """`path`: a file name or an open binary file (left open)."""
    import tifffile

    try:
        with _quiet_logger("tifffile"), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            _check_size(int(page.imagewidth), int(page.imagelength), max_pixels)
            photometric = getattr(page.photometric, "name", str(page.photometric))
            if photometric not in _TIFFFILE_PHOTOMETRICS or page.axes not in ("YX", "YXS", "SYX"):
                return _load_pillow(path, max_pixels, tiff=True)
            arr = page.asarray()
            if page.axes == "SYX":  # separate colour planes
                arr = np.moveaxis(arr, 0, -1)
    except (NcaError, MemoryError):
        raise
    except Exception:  # compressions tifffile can't decode without extra codecs (JPEG, ...), odd layouts
        return _load_pillow(path, max_pixels, tiff=True)
    return _from_array(arr)


@contextmanager
def _quiet_logger(name: str):
    """tifffile logs its complaints about damaged files; we report them once, as an NcaError."""
    logger = logging.getLogger(name)
    old = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = old


def _from_array(arr: np.ndarray) -> Photo:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise NcaError(f"unsupported image layout (an array of shape {arr.shape})")
    if arr.dtype in (np.uint8, np.uint16):
        return _split_channels(arr, 8 if arr.dtype == np.uint8 else 16)
    if arr.dtype == bool:
        return _split_channels(arr.astype(np.uint8) * 255, 8)
    if arr.dtype.kind == "u":  # 32-bit unsigned: scale by the type's range
        return _split_channels((arr.astype(np.float64) / np.iinfo(arr.dtype).max).astype(np.float32), 16)
    if arr.dtype.kind == "f":
        return _split_channels(np.nan_to_num(arr.astype(np.float32)).clip(0, 1), 16)
    raise NcaError(f"{arr.dtype} samples are not supported; convert the image to 8- or 16-bit unsigned integers or float")


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
    return write_atomic(path, encode_image(photo, suffix, quality))


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
