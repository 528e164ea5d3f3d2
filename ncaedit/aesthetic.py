"""The aesthetic head: a linear map from a unit-length CLIP image embedding to a 0-10 score.

LAION's aesthetic predictor v1 (github.com/LAION-AI/aesthetic-predictor) publishes such heads for
OpenAI's CLIP ViT-B/32, ViT-B/16 and ViT-L/14 embeddings. They come from `--aesthetic-weights PATH`
or torch's cache (TORCH_HOME, usually ~/.cache/torch/hub/checkpoints), downloaded there once unless
HF_HUB_OFFLINE=1 or NCAEDIT_OFFLINE=1.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ncaedit.errors import NcaError
from ncaedit.paths import check_regular
from ncaedit.weights import cached_or_download, read_state_dict

AESTHETIC_URL = "https://github.com/LAION-AI/aesthetic-predictor/raw/main/{}"
HEADS_PRETRAINED = "openai"  # the CLIP weights whose embeddings the heads were trained on
# open_clip architecture -> LAION's head for OpenAI's weights of it
HEAD_FILES = {"ViT-B-32": "sa_0_4_vit_b_32_linear.pth", "ViT-B-16": "sa_0_4_vit_b_16_linear.pth", "ViT-L-14": "sa_0_4_vit_l_14_linear.pth"}


class AestheticHead(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], 1)
        self.linear.load_state_dict({"weight": weight.float(), "bias": bias.float().reshape(1)})
        self.requires_grad_(False)

    def forward(self, unit_embeddings: torch.Tensor) -> torch.Tensor:
        """(N, D) unit-length image embeddings -> (N,) scores, about 0-10."""
        return self.linear(unit_embeddings)[:, 0]


def aesthetic_head_file(clip_name: str, path: Path | None = None) -> Path:
    """`path` if it exists, else LAION's head for the `clip_name` architecture, from the cache or downloaded."""
    if path is not None:
        return check_regular(path, "an aesthetic head file", param="aesthetic_weights")
    name = HEAD_FILES.get(clip_name.removesuffix("-quickgelu"))
    if name is None:
        raise NcaError(f"no published aesthetic head for CLIP {clip_name} (known: {', '.join(HEAD_FILES)}); pass --aesthetic-weights PATH")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    url = AESTHETIC_URL.format(name)

    def download() -> Path:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=True)
        return cached

    advice = f"download {url} once into {cached.parent}, or pass --aesthetic-weights PATH"
    return cached_or_download(cached if cached.is_file() else None, download, f"the aesthetic head {name}", advice)


def load_aesthetic_head(path: Path, dim: int) -> AestheticHead:
    """The head in `path` (a state dict, .pth or .safetensors) for `dim`-d embeddings."""
    state = read_state_dict(path, "aesthetic weights")
    tensors = {k.rsplit(".", 1)[-1]: v for k, v in state.items()} if isinstance(state, dict) else {}
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if len(tensors) != 2 or weight is None or bias is None or tuple(weight.shape) != (1, dim) or bias.numel() != 1:
        raise NcaError(f"aesthetic weights {path}: expected one linear layer, weight 1x{dim} and bias, for this CLIP's {dim}-d embeddings")
    return AestheticHead(weight, bias)

