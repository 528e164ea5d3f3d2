"""Judges of an edit that share nothing with the training losses (used by the benchmarks):

- colour: sliced Wasserstein-1 distance between RGB distributions (lower is closer)
- texture: L1 distance between multi-scale texture statistics (lower is closer): gradient-orientation
  and gradient-energy histograms, and histograms of local binary patterns (which of a pixel's 8
  neighbours are brighter than it: edges, corners, spots, lines) at four pyramid levels, so motifs
  from a few pixels to ~40 px count, not only the mix of edge directions
- structure: luminance SSIM between two images (higher keeps more of the photo), also split by how
  busy the photo is (`by_detail`), to show where an edit loses it

Images are float RGB arrays in [0, 1] of shape (H, W, 3).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter
from skimage.feature import local_binary_pattern
from skimage.metrics import structural_similarity

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def colour_distance(a, b, n=64):
    d = np.random.default_rng(0).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q = np.linspace(0, 1, 512)
    qa = np.quantile(a.reshape(-1, 3) @ d.T, q, axis=0)
    qb = np.quantile(b.reshape(-1, 3) @ d.T, q, axis=0)
    return float(np.abs(qa - qb).mean())


def texture_stats(rgb, scales=3, bins=8, lbp_levels=4):
    """The statistics by name, level 0 finest: "orientation<level>", "energy<level>", "lbp<level>"."""
    grey = rgb @ LUMA
    stats = {}
    for s in range(max(scales, lbp_levels)):
        if s < scales:
            gy, gx = np.gradient(grey)
            mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
            stats[f"orientation{s}"] = np.histogram(ang, bins=bins, range=(0, np.pi), weights=mag)[0] / mag.size * 10
            stats[f"energy{s}"] = np.histogram(mag, bins=bins, range=(0, 0.5))[0] / mag.size
        if s < lbp_levels and min(grey.shape) >= 8:
            # quantised so flat areas and sensor noise below 1/64 read as flat (pattern "all equal")
            codes = local_binary_pattern(np.round(grey * 64).astype(np.int32), 8, 1, method="uniform")
            stats[f"lbp{s}"] = np.bincount(codes.astype(np.int64).ravel(), minlength=10)[:10] / codes.size
        grey = grey[: grey.shape[0] // 2 * 2, : grey.shape[1] // 2 * 2].reshape(grey.shape[0] // 2, 2, grey.shape[1] // 2, 2).mean((1, 3))
    return stats


def texture_parts(a, b):
    """texture_distance split by statistic and level: where, and at which scale, two textures differ."""
    sa, sb = texture_stats(a), texture_stats(b)
    return {k: float(np.abs(sa[k] - sb[k]).sum()) for k in sa if k in sb}


def texture_distance(a, b):
    return sum(texture_parts(a, b).values())


def ssim(a, b):
    return float(structural_similarity(a @ LUMA, b @ LUMA, data_range=1.0))


def local_spread(grey, size=7):
    """The standard deviation of `grey` in the size x size window around each pixel."""
    mean = uniform_filter(grey, size)
    return np.sqrt(np.maximum(uniform_filter(grey * grey, size) - mean * mean, 0))


def by_detail(photo, out):
    """SSIM and the result's local spread (7 x 7 standard deviation of luminance), each averaged over
    the photo's flattest, middle and busiest thirds (by the photo's own local spread): an edit that
    keeps flat parts flat and puts its texture where the photo is busy keeps SSIM, which reads texture
    over a flat part as lost structure."""
    p, o = photo @ LUMA, out @ LUMA
    detail = local_spread(p)
    ssim_map = structural_similarity(p, o, data_range=1.0, full=True)[1]
    inner = (slice(3, -3), slice(3, -3))  # without the 7 x 7 window's border, as `ssim` averages it
    detail, ssim_map, spread = detail[inner], ssim_map[inner], local_spread(o)[inner]
    thirds = np.array_split(np.argsort(detail.ravel(), kind="stable"), 3)  # by rank: ties (flat parts) split too
    return {"ssim": [float(ssim_map.ravel()[t].mean()) for t in thirds], "spread": [float(spread.ravel()[t].mean()) for t in thirds]}
