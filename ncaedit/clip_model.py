"""Guidance models: what embeds images and texts in one space for the prompt loss.

`GuidanceModel` is the interface the prompt loss uses; `ClipGuidance` is CLIP through open_clip.
Where its weights come from, in order:
- `--clip-weights PATH`: a local checkpoint (.safetensors, .bin, .pt) for the `--clip-model` architecture;
- the Hugging Face cache (HF_HOME / HF_HUB_CACHE, usually ~/.cache/huggingface/hub) or open_clip's
  own cache (~/.cache/clip) for a `--pretrained` tag;
- a download into those caches, unless HF_HUB_OFFLINE=1 or NCAEDIT_OFFLINE=1.
`--clip-model` is a built-in open_clip architecture (ViT-B-32, ViT-B-16, ...), a model config .json in
open_clip's format (custom architectures), or open_clip's `hf-hub:org/repo` / `local-dir:DIR`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ncaedit.config import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from ncaedit.errors import NcaError
from ncaedit.paths import check_regular
from ncaedit.weights import cached_or_download

_SCHEMAS = ("hf-hub:", "local-dir:")
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's names on the Hub, preferred first


class GuidanceModel(nn.Module):
    """Image and text embeddings in one space. Images are (B, 3, input_size, input_size) RGB in [0, 1]:
    the model does its own input normalisation. Embeddings need not be unit length."""

    name: str
    input_size: int  # side of the square images encode_image takes
    embed_dim: int

    def encode_image(self, rgb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        """What to record in a rule's metadata about this model."""
        return {"guidance_model": self.name}


class ClipGuidance(GuidanceModel):
    def __init__(self, model: nn.Module, tokenizer, name: str, source: dict):
        super().__init__()
        from open_clip import get_model_preprocess_cfg

        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.name, self.source = tokenizer, name, source
        cfg = get_model_preprocess_cfg(model)
        size = cfg.get("size", 224)
        self.input_size = size if isinstance(size, int) else size[0]
        # CLIP's own normalisation of [0, 1] pixels (OpenAI's statistics for most weights, others for e.g. SigLIP).
        device = next(model.parameters()).device
        self.register_buffer("mean", torch.tensor(cfg["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1))
        self.embed_dim = int(self.encode_text([""]).shape[-1])

    def encode_image(self, rgb):
        return self.model.encode_image((rgb - self.mean) / self.std)

    def encode_text(self, texts):
        with torch.no_grad():
            return self.model.encode_text(self.tokenizer(texts).to(self.mean.device))

    def describe(self):
        return {"clip_model": self.name} | self.source


@dataclass
class ClipSpec:
    """Which CLIP to load: the command line's --clip-model, --pretrained and --clip-weights."""

    model: str = DEFAULT_CLIP_MODEL
    pretrained: str | None = None  # a tag such as "openai" or "laion2b_s34b_b79k"; None: DEFAULT_CLIP_PRETRAINED, or none with weights
    weights: Path | None = None


def load_clip(spec: ClipSpec, device: str = "cpu") -> ClipGuidance:
    import open_clip

    name, schema = _architecture(spec.model)
    # A tag says where weights come from and how they were trained (QuickGELU, pixel statistics); a
    # weights file is loaded into the plain architecture unless a tag is given with it.
    tag = spec.pretrained or (None if spec.weights else DEFAULT_CLIP_PRETRAINED)
    tag_cfg = open_clip.get_pretrained_cfg(name, tag) if tag and not schema else {}
    if schema:
        if spec.weights is not None or spec.pretrained:
            raise NcaError(f"--clip-model {spec.model} brings its own weights; leave out --clip-weights and --pretrained")
        checkpoint, source = None, {"clip_pretrained": spec.model}
    elif spec.weights is not None:
        check_regular(spec.weights, "a CLIP checkpoint file", param="clip_weights")
        if tag and not tag_cfg:
            raise NcaError(f"--pretrained {tag}: not a known tag for {name} ({_tags(name)}); leave it out to load --clip-weights as is")
        checkpoint, source = str(spec.weights), {"clip_weights": spec.weights.name, "clip_pretrained": tag}
    else:
        if not tag_cfg and spec.pretrained:
            raise NcaError(f"--pretrained {tag}: no such weights for {name} ({_tags(name)}); or give a local checkpoint with --clip-weights PATH")
        if not tag_cfg:
            raise NcaError(f"{name} has no default weights ({_tags(name)}): pass --pretrained TAG, or a local checkpoint with --clip-weights PATH")
        checkpoint, source = _cached_or_downloaded(name, tag, tag_cfg), {"clip_pretrained": tag}
    kwargs = {}
    if tag_cfg:  # the architecture variant and pixel statistics these weights were trained with
        kwargs.update(force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)), force_preprocess_cfg={"mean": tag_cfg["mean"], "std": tag_cfg["std"]})
    try:
        model = open_clip.create_model(name, pretrained=checkpoint, device=device, **kwargs)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # a checkpoint for another architecture, a damaged file, an unreachable hub
        what = f"{checkpoint} as weights for {name}" if checkpoint else spec.model
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise NcaError(f"could not load {what} ({type(exc).__name__}: {reason})") from exc
    return ClipGuidance(model, tokenizer, name, source)


def _architecture(model: str) -> tuple[str, str | None]:
    """(the name open_clip knows the architecture by, schema or None); registers config files."""
    import open_clip

    if model.startswith(_SCHEMAS):
        return model, model.split(":", 1)[0]
    if model.endswith(".json"):
        import json

        path = Path(model)
        try:
            cfg = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise NcaError(f"--clip-model {model}: no such config file") from exc
        except (OSError, ValueError) as exc:
            raise NcaError(f"--clip-model {model}: not a readable JSON config ({exc})") from exc
        if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= cfg.keys():
            raise NcaError(f"--clip-model {model}: not an open_clip model config (needs embed_dim, vision_cfg and text_cfg)")
        open_clip.add_model_config(path)  # open_clip's registry of architectures, keyed by file stem
        return clip_architecture(model), None
    if model not in open_clip.list_models():
        raise NcaError(f"--clip-model {model}: unknown architecture (e.g. ViT-B-32, ViT-B-16, ViT-L-14; or a config .json, hf-hub:ORG/REPO, local-dir:DIR)")
    return model, None


def clip_architecture(model: str) -> str:
    """The architecture's name for a --clip-model value (a config file's stem), without loading anything."""
    return Path(model).stem if model.endswith(".json") else model


def _tags(name: str) -> str:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    return f"known tags: {', '.join(tags)}" if tags else "no known tags"


def _cached_or_downloaded(name: str, tag: str, cfg: dict) -> str:
    """The local path of a tag's checkpoint: from a cache, else downloaded, else an NcaError saying what to do."""
    repo, files = _hub_files(cfg)
    url = cfg.get("url", "")
    url_cache = Path("~/.cache/clip").expanduser() / Path(url).name if url else None
    cached = next(filter(None, (_hf_cached(repo, f) for f in files)), None)
    if cached is None and url_cache is not None and url_cache.is_file():
        cached = str(url_cache)
    needed = f"{files[0]} from https://huggingface.co/{repo}" if repo else url
    where = f"models--{repo.replace('/', '--')} from its Hugging Face cache into {_hf_cache_dir()}" if repo else f"{Path(url).name} into {url_cache.parent}"
    fetch = f"python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{tag}')\""
    advice = (
        f"on a machine with network run `{fetch}` and copy {where}, "
        f"or download {needed} and pass --clip-weights PATH --pretrained {tag} (see README, 'Prompt mode')"
    )

    def download() -> str:
        import open_clip

        return open_clip.download_pretrained(cfg)

    return cached_or_download(cached, download, f"the CLIP weights for {name} ({tag})", advice)


def _hub_files(cfg: dict) -> tuple[str, list[str]]:
    """open_clip's `hf_hub` entry ("org/repo/" or "org/repo/file.bin") -> (repo, files to look for, best first)."""
    repo, filename = os.path.split(cfg.get("hf_hub", ""))
    if not filename:
        return repo, list(_HF_FILES) if repo else []
    if filename.endswith(".safetensors"):
        return repo, [filename]
    return repo, [f"{filename.rsplit('.', 1)[0]}.safetensors", filename]


def _hf_cached(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id=repo, filename=filename)
    return path if isinstance(path, str) else None


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE
