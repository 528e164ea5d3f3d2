"""Motion between consecutive video frames: dense optical flow (OpenCV's DIS, on the CPU) with a
forward-backward consistency check for occlusions, and moving arrays along it.

The flow is estimated both ways, previous -> current and current -> previous. A pixel of the current
frame was visible in the previous one when following the backward flow and then the forward flow
brings it back to where it started (Sundaram et al. 2010; used for video style transfer by Ruder et
al. 2016); where it does not, the pixel was uncovered (or the flow is wrong there), and where the
backward flow points outside the frame, it is new.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ncaedit.errors import NcaError

# Flow is estimated on frames shrunk to at most this long side and scaled back up: DIS's cost grows
# with the pixels, and motion is smooth at this scale (a 4K frame costs what a 1024-px one does).
FLOW_SIDE = 1024
# Consistency: occluded where |b + f|^2 > ALPHA (|b|^2 + |f|^2) + BETA (pixels^2 at flow scale).
ALPHA, BETA = 0.01, 0.5


def have_opencv() -> bool:
    """Whether OpenCV is installed, without importing it (about 0.2 s, which a batch of photos would pay)."""
    import importlib.util

    try:
        return importlib.util.find_spec("cv2") is not None
    except ValueError:  # cv2 in sys.modules without a spec: blocked or stubbed
        return False


def _cv2():
    try:
        import cv2
    except ImportError:
        raise NcaError("flow needs OpenCV, and it did not import: pip install 'ncaedit[video]' (or opencv-python-headless)", param="temporal") from None
    return cv2


@dataclass
class Motion:
    back: np.ndarray  # (H, W, 2) float32: for each pixel of the current frame, the (dx, dy) to where it was in the previous frame
    valid: np.ndarray  # (H, W) bool: seen in the previous frame (not uncovered, not new at an edge)

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean())


def _gray(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    cv2 = _cv2()
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return gray if gray.shape[::-1] == size else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _grid(height: int, width: int, top: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(width, dtype=np.float32)[None, :], np.arange(top, top + height, dtype=np.float32)[:, None]


def estimate_motion(previous: np.ndarray, current: np.ndarray) -> Motion:
    """The motion from `previous` to `current` (uint8 RGB (H, W, 3) frames of one size)."""
    cv2 = _cv2()
    height, width = current.shape[:2]
    scale = min(1.0, FLOW_SIDE / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))  # DIS needs a few pixels
    g0, g1 = _gray(previous, size), _gray(current, size)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    forward = dis.calc(g0, g1, None)
    back = dis.calc(g1, g0, None)
    xs, ys = _grid(size[1], size[0])
    forward_there = cv2.remap(forward, xs + back[..., 0], ys + back[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mismatch = ((back + forward_there) ** 2).sum(2)
    consistent = mismatch <= ALPHA * ((back**2).sum(2) + (forward_there**2).sum(2)) + BETA
    if size != (width, height):
        back = cv2.resize(back, (width, height), interpolation=cv2.INTER_LINEAR) * np.float32([width / size[0], height / size[1]])
        consistent = cv2.resize(consistent.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).view(bool)
    xs, ys = _grid(height, width)
    x0, y0 = xs + back[..., 0], ys + back[..., 1]
    inside = (x0 >= -0.5) & (x0 <= width - 0.5) & (y0 >= -0.5) & (y0 <= height - 0.5)
    return Motion(back, consistent & inside)


def _source_rows(back: np.ndarray, top: int, bottom: int, height: int, width: int):
    """Sampling positions (x, y) of rows top..bottom and the rows lo..hi of the source they reach."""
    xs, ys = _grid(bottom - top, width, top)
    x, y = xs + back[top:bottom, :, 0], ys + back[top:bottom, :, 1]
    lo = int(np.clip(np.floor(y.min()) - 2, 0, height - 1))
    hi = int(np.clip(np.ceil(y.max()) + 3, lo + 1, height))
    return x, y, lo, hi


WARP_BAND = 64  # rows warped at a time: only a band of the source is converted to float32 at once


def warp(source: np.ndarray, back: np.ndarray, nearest: bool = False) -> np.ndarray:
    """`source` (H, W, C), any dtype, moved along the backward flow: out[y, x] = source at (x, y) +
    back[y, x], bilinear (or the nearest pixel), clamped at the edges. Same dtype as `source`; works
    in bands of rows, so a float16 4K state never needs a float32 copy of itself."""
    cv2 = _cv2()
    height, width = source.shape[:2]
    out = np.empty_like(source)
    for top in range(0, height, WARP_BAND):
        bottom = min(height, top + WARP_BAND)
        x, y, lo, hi = _source_rows(back, top, bottom, height, width)
        if nearest:
            iy = np.clip(np.rint(y), 0, height - 1).astype(np.intp)
            ix = np.clip(np.rint(x), 0, width - 1).astype(np.intp)
            out[top:bottom] = source[iy, ix]
            continue
        part = source[lo:hi].astype(np.float32)
        moved = cv2.remap(part, x, y - lo, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if np.issubdtype(out.dtype, np.integer):
            moved = np.rint(moved)
        out[top:bottom] = moved.reshape(out[top:bottom].shape)
    return out


def warped_error(previous: np.ndarray, current: np.ndarray, motion: Motion) -> float:
    """Mean |current - previous moved along the motion| over the pixels seen in both, in [0, 1]:
    the usual temporal-consistency measure of video stylisation (uint8 RGB frames)."""
    moved = warp(previous.astype(np.float32), motion.back)
    diff = np.abs(current.astype(np.float32) - moved).mean(2)
    return float(diff[motion.valid].mean()) / 255 if motion.valid.any() else 0.0
