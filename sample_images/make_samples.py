"""Regenerates the bundled sample images (run from the repository root: python sample_images/make_samples.py).

Photos are scikit-image's bundled photographs (public domain / CC0, see README.md), resized so the
longer side is 512 px. The two style images are rendered here from a fixed seed.
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


if __name__ == "__main__":
    photo("astronaut", data.astronaut())
    photo("chelsea", data.chelsea())
    photo("coffee", data.coffee())
    photo("rocket", data.rocket())
    Image.fromarray(mosaic()).save(HERE / "mosaic.png")
    Image.fromarray(strokes()).save(HERE / "strokes.png")
