"""Loss networks: what turns an image into features that style and content are compared on.

Two kinds, same interface (`features(rgb) -> list of feature maps`, plus which of them carry style
and which carry content):
- `vgg19`: torchvision's ImageNet VGG19, the standard for neural style. Its weights (548 MB) come
  from torchvision's cache (TORCH_HOME, usually ~/.cache/torch/hub/checkpoints), a download, or an
  explicit `--vgg-weights PATH`.
- `random`: a fixed multi-scale bank of random filters (after Ustyuzhaninov et al., "Texture
  synthesis using shallow convolutional networks with random filters"). It needs no download, so it
  is the fallback when VGG weights can't be had; it is seeded, so it is the same network everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ncaedit.config import DEFAULT_LOSS_NET, LOSS_NETS
from ncaedit.errors import NcaError
from ncaedit.paths import check_regular
from ncaedit.weights import cached_or_download, read_state_dict

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class LossNet(nn.Module):
    name: str
    style_layers: tuple[int, ...]  # indices into features()
    style_weights: tuple[float, ...]
    content_layers: tuple[int, ...]

    def features(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError


class VGG19(LossNet):
    name = "vgg19"
    # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 for style; relu4_2 for content.
    _TAPS = (1, 6, 11, 20, 22, 29)
    style_layers = (0, 1, 2, 3, 5)
    style_weights = (256.0, 64.0, 16.0, 4.0, 1.0)
    content_layers = (4,)

    def __init__(self, state_dict: dict):
        """`state_dict`: torchvision's VGG19 weights; only the convolutional part (`features.*`) is used."""
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        body = make_layers(cfgs["E"])[: max(self._TAPS) + 1]
        for layer in body:  # in-place ReLUs would overwrite the features we tap
            if isinstance(layer, nn.ReLU):
                layer.inplace = False
        wanted = {k for k in body.state_dict()}
        got = {k.removeprefix("features."): v for k, v in state_dict.items() if k.removeprefix("features.") in wanted}
        missing = wanted - got.keys()
        if missing:
            raise NcaError(f"not VGG19 weights (missing {len(missing)} tensors such as features.{sorted(missing)[0]})")
        try:
            body.load_state_dict(got)
        except RuntimeError as exc:
            raise NcaError("not VGG19 weights (tensor shapes differ)") from exc
        self.body = body.eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def features(self, rgb):
        x = (rgb - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self._TAPS:
                out.append(x)
        return out


class RandomFilters(LossNet):
    """Random 5x5 filters (64 maps) at four scales of an image pyramid, then ReLU.

    Large receptive fields come from the pyramid rather than from 55-pixel filters, which keeps it
    cheap on a CPU: each level costs as much as a 5x5 convolution at that level's size.
    """

    name = "random"

    def __init__(self, levels: int = 4, maps: int = 64, kernel: int = 5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        weights = torch.randn(levels, maps, 3, kernel, kernel, generator=g)
        weights -= weights.mean(dim=(2, 3, 4), keepdim=True)  # respond to structure, not brightness
        weights /= weights.flatten(2).norm(dim=2)[:, :, None, None, None]
        bias = torch.rand(levels, maps, generator=g) * 0.2 - 0.1
        self.register_buffer("weights", weights)
        self.register_buffer("bias", bias)
        self.levels, self.maps, self.kernel, self.seed = levels, maps, kernel, seed
        self.style_layers = tuple(range(levels))
        self.style_weights = tuple(1.0 for _ in range(levels))
        self.content_layers = (1,)
        self.name = f"random(levels={levels},maps={maps},kernel={kernel},seed={seed})"

    def features(self, rgb):
        x = rgb * 2 - 1
        out = []
        for level in range(self.levels):
            if level:
                x = F.avg_pool2d(x, 2)
            out.append(torch.relu(F.conv2d(x, self.weights[level], self.bias[level], padding=self.kernel // 2)))
        return out


@dataclass
class LossNetChoice:
    net: LossNet
    warning: str | None = None  # shown once to the user when we fell back


def load_loss_net(kind: str = DEFAULT_LOSS_NET, vgg_weights: str | Path | None = None) -> LossNetChoice:
    """Build the loss network. `auto` means VGG19 when its weights can be had, else `random` with a warning."""
    if kind not in LOSS_NETS:
        raise NcaError(f"unknown loss network {kind!r} (choose from {', '.join(LOSS_NETS)})")
    if kind == "random":
        return LossNetChoice(RandomFilters())
    try:
        return LossNetChoice(VGG19(_vgg19_state_dict(vgg_weights)))
    except NcaError as exc:
        if kind == "vgg19" or vgg_weights is not None:
            raise
        return LossNetChoice(
            RandomFilters(),
            warning=f"VGG19 weights unavailable ({exc}); using the offline random-filter loss network. "
            "For best results get the weights once (see README, 'Weights') or pass --vgg-weights PATH.",
        )


def _vgg19_state_dict(path: str | Path | None) -> dict:
    if path is not None:
        return read_state_dict(check_regular(path, "a VGG weights file", param="vgg_weights"), "VGG weights file")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_URL).name

    def download() -> Path:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(VGG19_URL, str(cached), progress=True)
        return cached

    found = cached_or_download(cached if cached.is_file() else None, download, f"{cached}", f"it comes from {VGG19_URL}")
    return read_state_dict(found, "VGG weights file")
