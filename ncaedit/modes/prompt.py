"""The prompt mode: the loss that pulls a photo toward a text prompt (see modes/__init__.py)."""

from __future__ import annotations

import re
from pathlib import Path

from ncaedit.config import DEFAULT_CLIP_MODEL, DEFAULT_LOSS_NET, DEFAULT_SOURCE_PROMPT
from ncaedit.errors import NcaError
from ncaedit.modes import Mode, ModeSetup


def prompt_mode(
    prompt: str,
    *,
    source_prompt: str = DEFAULT_SOURCE_PROMPT,
    clip: dict | None = None,
    aesthetic: float | None = None,
    aesthetic_weights: Path | None = None,
    loss_net: str = DEFAULT_LOSS_NET,
    vgg_weights: Path | None = None,
) -> Mode:
    """`clip`: the fields of a clip_model.ClipSpec; `aesthetic`: the target score (0-10) or None for no aesthetic term.
    Bad input is reported here, before torch and open_clip load (seconds)."""
    from ncaedit.prompt_text import parse_prompts

    prompts = parse_prompts(prompt)
    if not source_prompt.strip():
        raise NcaError("must not be empty", param="source_prompt")
    if aesthetic is not None and not 0 <= aesthetic <= 10:
        raise NcaError("is a score from 0 to 10", param="aesthetic")
    clip = dict(clip or {})

    def setup(recipe, photo, device: str, warn) -> ModeSetup:
        from ncaedit.lossnet import load_loss_net
        from ncaedit.prompt_loss import PromptLoss

        guidance, head, head_file = _load_guidance(clip, aesthetic is not None, aesthetic_weights, device, warn)
        net = None
        if recipe.loss.content_weight > 0:
            choice = load_loss_net(loss_net, vgg_weights)
            if choice.warning:
                warn(choice.warning)
            net = choice.net.to(device)
        loss = PromptLoss(guidance, prompts, recipe.loss, source_prompt.strip(), net, head, aesthetic).to(device)
        metadata = {
            "mode": "prompt",
            "prompts": [[p.text, p.weight] for p in prompts],
            "source_prompt": source_prompt.strip(),
            "loss_net": net.name if net is not None else None,
            "aesthetic_target": aesthetic,
            "aesthetic_head": head_file.name if head_file is not None else None,
        } | guidance.describe()
        return ModeSetup(loss_fn=loss, metadata=metadata)

    name = "-".join(re.sub(r"[^a-z0-9]+", "-", p.text.lower()).strip("-") for p in prompts if p.weight > 0)[:48].strip("-")
    return Mode(
        kind="prompt",
        name=name or "prompt",
        setup=setup,
        progress_info=lambda rec: f"clip sim {rec['similarity']:.3f} loss {rec['total']:.3f}",
        status=f"loading CLIP {clip.get('model') or DEFAULT_CLIP_MODEL}",
    )


def _load_guidance(clip: dict, aesthetic: bool, aesthetic_weights: Path | None, device: str, warn):
    """(CLIP, the aesthetic head and its file, or None and None without an aesthetic term)."""
    from ncaedit.aesthetic import (
        HEADS_PRETRAINED,
        aesthetic_head_file,
        load_aesthetic_head,
    )
    from ncaedit.clip_model import ClipSpec, clip_architecture, load_clip

    spec = ClipSpec(**clip)
    head_file = aesthetic_head_file(clip_architecture(spec.model), aesthetic_weights) if aesthetic else None
    guidance = load_clip(spec, device)
    if head_file is None:
        return guidance, None, None
    if aesthetic_weights is None and guidance.describe().get("clip_pretrained") != HEADS_PRETRAINED:
        warn(
            f"LAION's aesthetic heads score OpenAI's CLIP embeddings (--pretrained {HEADS_PRETRAINED}); "
            "with other CLIP weights their scores mean little"
        )
    return guidance, load_aesthetic_head(head_file, guidance.embed_dim), head_file
