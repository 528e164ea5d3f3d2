"""Texture statistics on a complex steerable pyramid, after Portilla & Simoncelli (2000).

Gram matrices of filter responses say which local features occur, not how they join up; the shapes
of a style (brush strokes, the outlines of mosaic cells) live in how oriented energy continues along
an edge, across orientations and across scales. These statistics measure exactly that:

- marginals of the luminance: variance, skewness, kurtosis (dark outlines make a heavy tail);
- per band: the mean oriented magnitude, and the spatial autocorrelation of the magnitude within a
  (2m+1)^2 window whose lags grow with the scale (how far an edge runs on);
- magnitude correlations across orientations and with the coarser scale (corners, junctions);
- correlations of each band with its coarser parent, phase-doubled (sharp edges vs soft gradients);
- autocorrelation of the low-passed image at every scale (blob size, spacing of cells).

The pyramid is undecimated and built in the Fourier domain, so every statistic is exactly invariant
to circular shifts of the image and works on any image size; a 128-px crop costs a few FFTs.
Own implementation written from the paper's description (plenoptic's is the reference one).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LUMA = (0.299, 0.587, 0.114)  # luminance weights of RGB (they sum to 1: a grey shift moves luminance by as much)


def _filters(h: int, w: int, scales: int, orientations: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Fourier-domain filters: oriented band-pass (scales, orientations, h, w) (one-sided, so the
    response is analytic: real part = even filter, magnitude = local energy) and the low-pass
    remaining below each scale (scales, h, w). Bands are one octave apart, raised-cosine in
    log-frequency, so their squares sum to one with the high- and low-pass residuals."""
    fy = torch.fft.fftfreq(h, device=device)[:, None] * 2 * math.pi
    fx = torch.fft.fftfreq(w, device=device)[None, :] * 2 * math.pi
    r = torch.sqrt(fy**2 + fx**2).clamp_min(1e-6)
    theta = torch.atan2(fy, fx)
    u = torch.log2(r / math.pi)  # 0 at Nyquist, -1 an octave below
    bands, lows = [], []
    for s in range(scales):
        t = (u + s + 1).clamp(-1, 1)  # band s is centred one octave below the previous
        radial = torch.cos(t * math.pi / 2) * ((u + s + 1).abs() < 1)
        below = (u + s + 1) < 0
        low = torch.where(below, torch.ones_like(r), torch.cos(t * math.pi / 2) * ((u + s + 1) < 1))  # what lies under band s's peak
        lows.append(low)
        per = []
        for k in range(orientations):
            d = torch.remainder(theta - math.pi * k / orientations + math.pi, 2 * math.pi) - math.pi
            angular = torch.cos(d).clamp_min(0) ** (orientations - 1)
            per.append(radial * angular * 2)
        bands.append(torch.stack(per))
    return torch.stack(bands), torch.stack(lows)


def _autocorr(x: torch.Tensor, lags: int, step: int) -> torch.Tensor:
    """Circular autocorrelation of zero-mean maps x (..., h, w) at lags -lags..lags times `step`
    (both axes), normalised by the pixel count -> (..., (2*lags+1)**2)."""
    h, w = x.shape[-2:]
    f = torch.fft.rfft2(x)
    ac = torch.fft.irfft2(f * f.conj(), s=(h, w)) / (h * w)
    idx_y = torch.tensor([(i * step) % h for i in range(-lags, lags + 1)], device=x.device)
    idx_x = torch.tensor([(i * step) % w for i in range(-lags, lags + 1)], device=x.device)
    return ac.index_select(-2, idx_y).index_select(-1, idx_x).flatten(-2)


def _centred(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=(-2, -1), keepdim=True)


def _corr(a: torch.Tensor, b: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    """a (B, K, h, w), b (B, L, h, w), both centred; sa (B, K), sb (B, L) their scales -> (B, K*L)
    covariances relative to the scales. Scales are mean magnitudes, not standard deviations, so a
    band whose magnitude hardly varies gives ~0, not a ratio of two small noisy numbers."""
    cov = torch.einsum("bkhw,blhw->bkl", a, b) / (a.shape[-1] * a.shape[-2])
    return (cov / (sa[:, :, None] * sb[:, None, :] + 1e-10)).flatten(1)


# Groups compared as log-ratios (energies: positive, any scale); the rest are correlations or
# shape measures, compared directly.
ENERGIES = ("energy",)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H, W)."""
    return torch.einsum("bchw,c->bhw", rgb, torch.tensor(LUMA, device=rgb.device, dtype=rgb.dtype))


def texture_statistics(rgb: torch.Tensor, scales: int = 4, orientations: int = 4, lags: int = 3, filters=None) -> dict[str, torch.Tensor]:
    """rgb (B, 3, H, W) in [0, 1] -> named groups of statistics, each (B, n). `filters`: this
    size's `_filters`, when the caller keeps them."""
    grey = luminance(rgb)
    h, w = grey.shape[-2:]
    bands_f, lows_f = filters or _filters(h, w, scales, orientations, rgb.device)
    g = _centred(grey)
    f = torch.fft.fft2(g)
    z = torch.fft.ifft2(f[:, None, None] * bands_f)  # (B, S, K, h, w) complex
    mag = torch.sqrt(z.real**2 + z.imag**2 + 1e-8)
    lows = _centred(torch.fft.ifft2(f[:, None] * lows_f).real)  # (B, S, h, w)
    var = (g**2).mean(dim=(-2, -1))
    sd = torch.sqrt(var + 1e-8)
    mean_mag = mag.mean(dim=(-2, -1))  # (B, S, K)
    m = mag - mean_mag[..., None, None]
    auto, lowauto, cross_o, cross_s, phase = [], [], [], [], []
    for s in range(scales):
        step = 2**s
        auto.append((_autocorr(m[:, s], lags, step) / (mean_mag[:, s, :, None] ** 2 + 1e-10)).flatten(1))
        lowauto.append(_autocorr(lows[:, s], lags, step) / (var[:, None] + 1e-8))
        cross_o.append(_corr(m[:, s], m[:, s], mean_mag[:, s], mean_mag[:, s]))
        if s + 1 < scales:
            cross_s.append(_corr(m[:, s], m[:, s + 1], mean_mag[:, s], mean_mag[:, s + 1]))
            # Phase-doubled parent: same frequency as the child, so their correlation is
            # non-zero exactly where edges are sharp enough to show at both scales.
            parent = z[:, s + 1]
            doubled = parent**2 / mag[:, s + 1]
            child = z[:, s]
            sc, sp = mean_mag[:, s], mean_mag[:, s + 1]
            phase.append(torch.cat([_corr(child.real, doubled.real, sc, sp), _corr(child.real, doubled.imag, sc, sp)], 1))
    none = var[:, None][:, :0]
    power = mag**2
    low_sd = torch.sqrt((lows**2).mean(dim=(-2, -1)) + 1e-8)
    return {
        "energy": torch.cat([var[:, None], mean_mag.flatten(1)], 1),
        "marginal": torch.stack([(g**3).mean(dim=(-2, -1)) / sd**3, (g**4).mean(dim=(-2, -1)) / sd**4 / 3], 1),
        # Flat regions between sharp edges make band responses sparse (heavy-tailed); grain makes
        # them Gaussian. Log-kurtosis of each band's magnitude, skewness and kurtosis of each low-pass.
        "sparsity": torch.cat([
            torch.log((power**2).mean(dim=(-2, -1)) / (power.mean(dim=(-2, -1)) ** 2 + 1e-12) + 1e-6).flatten(1),
            (lows**3).mean(dim=(-2, -1)) / low_sd**3,
            (lows**4).mean(dim=(-2, -1)) / low_sd**4 / 3,
        ], 1),
        "magnitude_autocorr": torch.cat(auto, 1),
        "lowpass_autocorr": torch.cat(lowauto, 1),
        "cross_orientation": torch.cat(cross_o, 1),
        "cross_scale": torch.cat(cross_s, 1) if cross_s else none,
        "cross_phase": torch.cat(phase, 1) if phase else none,
    }


class TextureStatistics(torch.nn.Module):
    """Distance of an image's steerable-pyramid statistics to a target image's: the mean over groups
    of each group's mean squared difference, energies as log-ratios and the rest (correlations,
    skewness, kurtosis / 3) as they are, so every group is scale-free and no group dominates by its
    units; the weight of the whole term means the same for any style."""

    def __init__(self, target_rgb: torch.Tensor, scales: int = 4, orientations: int = 4, lags: int = 3):
        super().__init__()
        self.scales, self.orientations, self.lags = scales, orientations, lags
        self._filters = {}  # (h, w, device) -> Fourier filters; training sees a handful of sizes
        with torch.no_grad():
            target = texture_statistics(target_rgb, scales, orientations, lags)
        self.names = sorted(k for k, v in target.items() if v.shape[1])
        for k in self.names:
            self.register_buffer(f"target_{k}", _compared(k, target[k][0]))

    def forward(self, rgb: torch.Tensor, mix: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """`mix(name, statistics)` replaces each group's statistics (B, n) before they are compared
        (training mixes them with their running mean: running_statistics.py)."""
        key = (*rgb.shape[-2:], rgb.device)
        if key not in self._filters:
            self._filters[key] = _filters(*rgb.shape[-2:], self.scales, self.orientations, rgb.device)
        stats = texture_statistics(rgb, self.scales, self.orientations, self.lags, self._filters[key])
        if mix is not None:
            stats = {k: mix(k, v) for k, v in stats.items() if k in self.names}
        total = sum(((_compared(k, stats[k]) - getattr(self, f"target_{k}")) ** 2).mean() for k in self.names)
        return total / len(self.names)


def _compared(group: str, values: torch.Tensor) -> torch.Tensor:
    return torch.log(values + 1e-6) if group in ENERGIES else values
