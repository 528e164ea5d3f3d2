"""Preview images written beside a result: a source | style | result sheet and a loss curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ncaedit.image import Photo, fit_long_side, save_image


def contact_sheet(images: list[np.ndarray], height: int = 256, gap: int = 8) -> np.ndarray:
    """Float RGB images side by side at a common height, on white."""
    scaled = []
    for img in images:
        h, w = img.shape[:2]
        scaled.append(fit_long_side(img, round(max(h, w) * height / h)))
    width = sum(s.shape[1] for s in scaled) + gap * (len(scaled) + 1)
    sheet = np.ones((height + 2 * gap, width, 3), np.float32)
    x = gap
    for s in scaled:
        sheet[gap : gap + s.shape[0], x : x + s.shape[1]] = s
        x += s.shape[1] + gap
    return sheet


def loss_curve(history: list[dict[str, float]], size: tuple[int, int] = (640, 320)) -> np.ndarray:
    """Log-scale plot of the total loss (black) and its terms (colours), drawn with Pillow."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    colours = {"total": (0, 0, 0), "style": (200, 40, 40), "content": (40, 120, 200), "colour": (40, 160, 60), "overflow": (160, 120, 0),
               "prompt": (200, 40, 40), "direction": (140, 60, 180), "patch": (220, 120, 160), "tv": (120, 120, 120), "structure": (120, 120, 120), "aesthetic": (40, 160, 60)}
    series = {k: np.array([r[k] for r in history if k in r], float) for k in colours}
    series = {k: np.log10(np.maximum(v, 1e-8)) for k, v in series.items() if len(v) > 1}
    if not series:
        return np.asarray(img, np.float32) / 255
    hi = max(v.max() for v in series.values())
    lo = max(min(v.min() for v in series.values()), hi - 4)  # four decades: a fresh rule's zero terms would squash the rest
    span = max(hi - lo, 1e-6)
    pad = 30
    draw.rectangle([pad, 10, w - 10, h - pad], outline=(180, 180, 180))
    for i, (name, v) in enumerate(series.items()):
        xs = pad + np.arange(len(v)) * (w - pad - 10) / max(len(v) - 1, 1)
        ys = (h - pad) - (np.maximum(v, lo) - lo) / span * (h - pad - 10)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colours[name], width=2 if name == "total" else 1)
        draw.text((pad + 8 + 80 * i, h - pad + 8), name, fill=colours[name])
    draw.text((2, 10), f"1e{hi:.1f}", fill=(0, 0, 0))
    draw.text((2, h - pad - 12), f"1e{lo:.1f}", fill=(0, 0, 0))
    return np.asarray(img, np.float32) / 255


def write_previews(result_path: Path, source: np.ndarray, style: np.ndarray | None, result: np.ndarray, history) -> list[Path]:
    stem = result_path.with_suffix("")
    sheet = contact_sheet([source] + ([style] if style is not None else []) + [result])
    paths = [save_image(Photo(sheet), f"{stem}.preview.png"), save_image(Photo(loss_curve(history)), f"{stem}.loss.png")]
    return paths
