"""Text prompts: weighted prompt lists ("a pencil sketch:1 | charcoal:0.5") and their embeddings.

torch is imported only for embedding, so a badly written prompt is reported before it loads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ncaedit.errors import NcaError

# Phrasings a prompt's embedding is averaged over (as CLIPstyler does): one wording's quirks matter less.
# They describe views of a picture, since the loss shows CLIP crops of the image.
TEMPLATES = ("{}", "an image of {}", "a picture of {}", "a close-up of {}", "a cropped picture of {}")


@dataclass(frozen=True)
class WeightedPrompt:
    text: str
    weight: float  # < 0 pushes the image away from the text


def parse_prompts(spec: str) -> list[WeightedPrompt]:
    """"a pencil sketch:1 | charcoal:0.5 | blurry:-0.5" -> prompts; a part without ":number" weighs 1."""
    prompts = []
    for part in spec.split("|"):
        text, weight = part.strip(), 1.0
        head, sep, tail = text.rpartition(":")
        if sep:
            try:
                weight, text = float(tail), head.strip()
            except ValueError:
                pass  # a colon that belongs to the text
        if not text:
            raise NcaError(f"empty prompt in {spec!r}; separate prompts with '|', e.g. \"a pencil sketch:1 | charcoal:0.5\"")
        if not math.isfinite(weight) or weight == 0:
            raise NcaError(f"prompt {text!r}: weight must be a non-zero number, got {tail.strip()!r}")
        prompts.append(WeightedPrompt(text, weight))
    if not any(p.weight > 0 for p in prompts):
        raise NcaError("at least one prompt needs a positive weight (negative weights only push away)")
    return prompts


def embed_texts(model, texts: list[str], templates: bool = True):
    """(N, D) unit vectors; with `templates`, each the normalised mean over TEMPLATES' phrasings."""
    import torch
    import torch.nn.functional as F

    forms = TEMPLATES if templates else ("{}",)
    out = []
    with torch.no_grad():
        for text in texts:
            e = F.normalize(model.encode_text([t.format(text) for t in forms]).float(), dim=-1)
            out.append(F.normalize(e.mean(0), dim=-1))
    return torch.stack(out)
