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


def read_png16(data: bytes) -> np.ndarray:
    """Decode a 16-bit PNG into a uint16 array of shape (H, W, C)."""
    pos, idat, header = 8, [], None
    try:
        while pos < len(data):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            kind = data[pos + 4 : pos + 8]
            body = data[pos + 8 : pos + 8 + length]
            if len(body) != length:
                raise NcaError("truncated PNG file")
            pos += 12 + length
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
        if header is None:
            raise NcaError("PNG file has no header")
        width, height, depth, colour, _, _, interlace = header
        if depth != 16 or colour not in _CHANNELS or interlace:
            raise NcaError("unsupported 16-bit PNG variant (interlaced or palette)")
        channels = _CHANNELS[colour]
        raw = zlib.decompress(b"".join(idat))
    except (struct.error, zlib.error) as exc:
        raise NcaError(f"corrupt PNG data ({exc})") from None
    stride = width * channels * 2
    if len(raw) < height * (stride + 1):
        raise NcaError("truncated PNG image data")
    rows = np.frombuffer(raw, np.uint8)[: height * (stride + 1)].reshape(height, stride + 1)
    samples = _unfilter(rows[:, 0], rows[:, 1:], bpp=channels * 2).view(np.uint16)
    if np.little_endian:
        samples.byteswap(inplace=True)  # PNG samples are big-endian; in place, so a big photo is not copied
    return samples.reshape(height, width, channels)


def _unfilter(filters: np.ndarray, rows: np.ndarray, bpp: int) -> np.ndarray:
    """uint8 rows in, uint8 rows out; one row at a time in int32, so a big photo needs no int32 copy."""
    out = np.zeros(rows.shape, np.uint8)
    prev = np.zeros(rows.shape[1], np.int32)
    for y, kind in enumerate(filters):
        row = rows[y].astype(np.int32)
        if kind == 0:
            cur = row
        elif kind == 2:
            cur = (row + prev) & 0xFF
        elif kind in (1, 3, 4):
            # These depend on the byte bpp to the left in the same output row, so go bpp at a time.
            cur = np.zeros_like(row)
            for start in range(0, row.size, bpp):
                left = cur[start - bpp : start] if start else np.zeros(bpp, np.int32)
                up = prev[start : start + bpp]
                x = row[start : start + bpp]
                if kind == 1:
                    cur[start : start + bpp] = (x + left) & 0xFF
                elif kind == 3:
                    cur[start : start + bpp] = (x + ((left + up) >> 1)) & 0xFF
                else:
                    ul = prev[start - bpp : start] if start else np.zeros(bpp, np.int32)
                    cur[start : start + bpp] = (x + _paeth(left, up, ul)) & 0xFF
        else:
            raise NcaError(f"corrupt PNG data (unknown row filter {kind})")
        out[y] = cur
        prev = cur
    return out


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
