"""16-bit PNG reading and writing, which Pillow truncates to 8 bits.

A PNG is a zlib stream of filtered rows; only the parts 16-bit photos use are handled here
(colour types grey, grey+alpha, RGB, RGBA at bit depth 16, no interlacing). Everything else
goes through Pillow.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ncaedit.errors import NcaError

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}  # PNG colour type -> samples per pixel


def png_bit_depth(header: bytes) -> int | None:
    """Bit depth from the first 26 bytes of a file, or None when it is not a PNG."""
    if len(header) < 26 or not header.startswith(_SIGNATURE) or header[12:16] != b"IHDR":
        return None
    return header[24]


def png_size(header: bytes) -> tuple[int, int]:
    """(width, height) from the first 26 bytes of a PNG file."""
    return struct.unpack(">II", header[16:24])


def read_png16(data: bytes) -> np.ndarray:
    """Decode a 16-bit PNG into a uint16 array of shape (H, W, C). The decompressed stream is never
    allowed to grow past what the header's size needs (zlib bombs); callers check that size first."""
    pos, idat, header = 8, [], None
    try:
        while pos < len(data):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            kind = data[pos + 4 : pos + 8]
            body = data[pos + 8 : pos + 8 + length]
            if len(body) != length:
                raise NcaError("truncated PNG file")
            pos += 12 + length
            if kind == b"IHDR" and header is None:  # the first one is the one whose size was checked
                header = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
        if header is None:
            raise NcaError("PNG file has no header")
        width, height, depth, colour, _, _, interlace = header
        if depth != 16 or colour not in _CHANNELS or interlace:
            raise NcaError("unsupported 16-bit PNG variant (interlaced, or an invalid colour type); save it again without interlacing")
        channels = _CHANNELS[colour]
        raw = zlib.decompressobj().decompress(b"".join(idat), height * (width * channels * 2 + 1))
    except (struct.error, zlib.error) as exc:
        raise NcaError(f"corrupt PNG data ({exc})") from exc
    stride = width * channels * 2
    if len(raw) < height * (stride + 1):
        raise NcaError("truncated PNG image data")
    rows = np.frombuffer(raw, np.uint8)[: height * (stride + 1)].reshape(height, stride + 1)
    out = _unfilter(rows[:, 0], rows[:, 1:].astype(np.int32), bpp=channels * 2)
    return out.astype(np.uint8).view(">u2").reshape(height, width, channels).astype(np.uint16)


def _unfilter(filters: np.ndarray, rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG row filters (rows: int32 bytes, one row per image row)."""
    if filters.size and filters.max() > 4:
        raise NcaError(f"corrupt PNG data (unknown row filter {filters.max()})")
    height, length = rows.shape
    x = rows.reshape(height, length // bpp, bpp)
    if filters.size and filters.max() >= 3:
        return _unfilter_diagonals(filters, x).reshape(height, length)
    out, prev = np.zeros_like(x), np.zeros(x.shape[1:], x.dtype)
    for y, kind in enumerate(filters):  # none, sub (a running sum along the row) and up: whole rows at once
        out[y] = x[y] if kind == 0 else np.cumsum(x[y], axis=0) & 0xFF if kind == 1 else (x[y] + prev) & 0xFF
        prev = out[y]
    return out.reshape(height, length)


def _unfilter_diagonals(filters: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Average and Paeth rows: a byte depends on the byte one pixel to its left, the one above and
    the one above-left, so all pixels on an anti-diagonal (y + x constant) are independent; sweeping
    the diagonals costs height + width vector steps instead of height * width scalar ones."""
    height, width, bpp = x.shape
    kinds = filters.astype(np.int32)[:, None]
    out = np.zeros((height + 1, width + 1, bpp), np.int32)  # out[y + 1, j + 1] is pixel (y, j); zero borders
    for d in range(height + width - 1):
        ys = np.arange(max(0, d - width + 1), min(height - 1, d) + 1)
        js = d - ys
        a, b, c = out[ys + 1, js], out[ys, js + 1], out[ys, js]  # left, up, up-left
        kind = kinds[ys]
        pred = np.select([kind == 1, kind == 2, kind == 3, kind == 4], [a, b, (a + b) >> 1, _paeth(a, b, c)], 0)
        out[ys + 1, js + 1] = (x[ys, js] + pred) & 0xFF
    return out[1:, 1:]


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def write_png16(array: np.ndarray) -> bytes:
    """Encode a uint16 array (H, W) or (H, W, C) with C in 1..4 as a 16-bit PNG."""
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = array.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    return _SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
