"""Pretrained weights, one way for every model (VGG19, CLIP, the aesthetic heads): a local file if
given, else the cache, else a download into the cache unless the user asked for no network; and one
reader for weight files that never runs code (safetensors, or a .pth read with weights_only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from ncaedit.errors import NcaError
from ncaedit.paths import check_regular

T = TypeVar("T")


def offline() -> bool:
    """True when the user asked for no network access (Hugging Face's convention, or ours)."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "NCAEDIT_OFFLINE"))


def cached_or_download(cached: T | None, download: Callable[[], T], what: str, advice: str = "") -> T:
    """`cached` when there is one (found by the caller), else `download()`, unless offline. Either
    failure is an NcaError naming `what` is missing and, with `advice`, what to do about it."""
    if cached is not None:
        return cached
    tail = f": {advice}" if advice else ""
    if offline():
        raise NcaError(f"{what} is not cached and offline mode is on{tail}")
    try:
        return download()
    except Exception as exc:  # no network, a proxy, a partial download
        raise NcaError(f"could not download {what} ({type(exc).__name__}){tail}") from exc


def read_state_dict(path: Path, what: str) -> dict:
    """The tensors in a weights file: .safetensors, or a pickled state dict read with weights_only,
    which refuses anything but plain tensors."""
    import torch

    check_regular(path, what)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NcaError(f"{what} {path}: not a readable state dict ({type(exc).__name__})") from exc
