"""Regenerates the bundled sample images (run from the repository root: python sample_images/make_samples.py).

Photos are scikit-image's bundled photographs (public domain / CC0, see README.md), resized so the
longer side is 512 px. The style images are rendered here from fixed seeds, with motifs of several
sizes: fine hatching (~4 px), strokes (~3 px wide, ~36 px long), mosaic cells (~35 px), rings (~40 px).
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).parent


def photo(name: str, array: np.ndarray) -> None:
    img = Image.fromarray(array)
    img.thumbnail((512, 512), Image.Resampling.LANCZOS)
    img.save(HERE / f"{name}.jpg", quality=92)


def mosaic(size: int = 320, cells: int = 70, seed: int = 1) -> np.ndarray:
    """Stained glass: Voronoi cells in saturated colours with dark lead lines."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, size, (cells, 2))
    hues = rng.uniform(0, 1, cells)
    yy, xx = np.mgrid[0:size, 0:size]
    d = np.sqrt((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2)
    order = np.sort(d, axis=2)
    nearest = np.argmin(d, axis=2)
    edge = (order[..., 1] - order[..., 0]) < 2.5
    hsv = np.stack([hues[nearest], np.full_like(hues[nearest], 0.85), 0.75 + 0.25 * rng.uniform(0, 1, cells)[nearest]], axis=2)
    rgb = np.asarray(Image.fromarray((hsv * 255).astype(np.uint8), "HSV").convert("RGB")).copy()
    rgb[edge] = (25, 20, 30)
    return rgb


def strokes(size: int = 320, n: int = 1400, seed: int = 2) -> np.ndarray:
    """Swirling brush strokes in blues and yellows along a smooth flow field."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (20, 40, 110))
    draw = ImageDraw.Draw(img)
    palette = [(250, 210, 60), (240, 240, 200), (60, 110, 200), (30, 70, 160), (120, 170, 230), (250, 160, 40)]
    for _ in range(n):
        x, y = rng.uniform(0, size, 2)
        colour = palette[rng.integers(len(palette))]
        pts = [(x, y)]
        for _ in range(12):
            angle = np.sin(x / 37.0) * 2.0 + np.cos(y / 29.0) * 2.0
            x, y = x + 3 * np.cos(angle), y + 3 * np.sin(angle)
            pts.append((x, y))
        draw.line(pts, fill=colour, width=int(rng.integers(2, 5)))
    return np.asarray(img)


def hatch(size: int = 320, seed: int = 3) -> np.ndarray:
    """Fine pen cross-hatching (a 4-5 px period) in dark sepia on cream paper, denser in patches."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    shade = sum(np.sin(xx / rng.uniform(20, 50) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(20, 50) + rng.uniform(0, 6)) for _ in range(3))
    shade = (shade - shade.min()) / (shade.max() - shade.min())  # 0 light .. 1 dark
    wobble = 1.5 * np.sin(yy / 11.0) + 1.0 * np.sin(xx / 17.0)
    first = np.cos(2 * np.pi * (xx + yy + wobble) / (4.5 * np.sqrt(2))) > 0.55 - 0.6 * shade  # lines at 45 degrees
    second = (np.cos(2 * np.pi * (xx - yy - wobble) / (4.5 * np.sqrt(2))) > 1.1 - 1.2 * shade) & (shade > 0.35)  # crossing lines where darker
    ink = first | second
    rgb = np.empty((size, size, 3))
    rgb[:] = (238, 226, 198)
    rgb[ink] = (70, 45, 30)
    return rgb.astype(np.uint8)


def rings(size: int = 320, seed: int = 4) -> np.ndarray:
    """Concentric rings about 40 px across, dark outlines on a jittered grid, on a dark teal ground."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    rgb = np.empty((size, size, 3))
    rgb[:] = (20, 70, 80)
    palette = np.array([(240, 150, 50), (250, 220, 120), (200, 60, 60), (240, 240, 225)], np.float64)
    step = 44
    for cy in range(step // 2, size + step, step):
        for cx in range(step // 2 - (cy // step % 2) * step // 2, size + step, step):
            y, x = cy + rng.uniform(-5, 5), cx + rng.uniform(-5, 5)
            r = np.hypot(yy - y, xx - x)
            radius = rng.uniform(17, 21)
            colours = palette[rng.permutation(len(palette))]
            for k, frac in enumerate((1.0, 0.65, 0.35)):
                rgb[r < radius * frac] = colours[k]
                rgb[np.abs(r - radius * frac) < 1.4] = (25, 20, 30)
    return rgb.astype(np.uint8)


if __name__ == "__main__":
    photo("astronaut", data.astronaut())
    photo("chelsea", data.chelsea())
    photo("coffee", data.coffee())
    photo("rocket", data.rocket())
    Image.fromarray(mosaic()).save(HERE / "mosaic.png")
    Image.fromarray(strokes()).save(HERE / "strokes.png")
    Image.fromarray(hatch()).save(HERE / "hatch.png")
    Image.fromarray(rings()).save(HERE / "rings.png")
