"""The prompt objective: look like the text to CLIP, keep the photo's layout.

Every term is computed on augmented views of the training crops (views.py), seen through the
guidance model (clip_model.py):

    total = prompt_weight    * weighted spherical distance of view embeddings to the prompts
          + direction_weight * 1 - cos(image change, text change): the change from source to result,
                               averaged over an image's views, should point the way the text moves
                               from --source-prompt to the prompt (CLIPstyler's directional loss)
          + patch_weight     * the same per view, counting only views still further off than
                               patch_threshold (so aligned views are left alone)
          + content_weight   * spatial feature distance to the source photo (the loss network)
          + tv_weight        * total variation of the result (against speckle)
          + overflow_weight  * how far the state strays outside [-1, 1]
          + aesthetic_weight * ((aesthetic score - target) / 10)^2, when a target is given
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncaedit.config import DEFAULT_SOURCE_PROMPT, PromptLossConfig
from ncaedit.prompt_text import WeightedPrompt, embed_texts
from ncaedit.state import WRITABLE, source_rgb, working_rgb
from ncaedit.style_loss import content_distance
from ncaedit.views import sample_views

# Embedding changes shorter than this are not scaled up to unit length in the directional terms. A
# fresh rule changes nothing, and 1/|change| would make those terms' gradients swamp all others; below
# the floor they push along the text direction with bounded force instead. (A change of 0.1 between
# unit embeddings is a cosine of 0.995: barely an edit.)
MIN_CHANGE = 0.1


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance (halved) between unit vectors; smooth where 1 - cos is flat."""
    return (a - b).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


class PromptLoss(nn.Module):
    def __init__(
        self,
        guidance,
        prompts: list[WeightedPrompt],
        config: PromptLossConfig,
        source_prompt: str = DEFAULT_SOURCE_PROMPT,
        loss_net=None,
        aesthetic_head=None,
        aesthetic_target: float | None = None,
    ):
        """`guidance`: a clip_model.GuidanceModel. `loss_net` (lossnet.LossNet) is needed when
        content_weight > 0; `aesthetic_head` (aesthetic.AestheticHead) when a target is given."""
        super().__init__()
        config.validate()
        if config.content_weight > 0 and loss_net is None:
            raise ValueError("content_weight > 0 needs a loss network")
        if aesthetic_target is not None and aesthetic_head is None:
            raise ValueError("an aesthetic target needs an aesthetic head")
        self.guidance, self.config, self.net = guidance, config, loss_net
        self.aesthetic_head, self.aesthetic_target = aesthetic_head, aesthetic_target
        texts = embed_texts(guidance, [p.text for p in prompts] + [source_prompt], config.templates)
        targets, source = texts[:-1], texts[-1]
        w = torch.tensor([p.weight for p in prompts], dtype=texts.dtype, device=texts.device)
        self.register_buffer("targets", targets)
        self.register_buffer("weights", w / w.abs().sum())
        # What "more like the prompt" means: toward the positive prompts, away from the negative ones.
        self.register_buffer("goal", F.normalize((w[:, None] * targets).sum(0), dim=-1))
        self.register_buffer("positive", F.normalize((w.clamp_min(0)[:, None] * targets).sum(0), dim=-1))
        self.register_buffer("text_direction", F.normalize(self.goal - source, dim=-1))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.guidance.encode_image(images).float(), dim=-1)

    def forward(self, state: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        out, src = working_rgb(state), source_rgb(state)
        b, _, h, w = out.shape
        views = sample_views(b, h, w, self.guidance.input_size, cfg, generator, out.device)
        e_out = self.embed(views(out))  # (b * cutouts, D)
        terms = {"prompt": (spherical_distance(e_out[:, None], self.targets[None]) * self.weights).sum(1).mean()}
        if cfg.direction_weight > 0 or cfg.patch_weight > 0:
            with torch.no_grad():
                e_src = self.embed(views(src))
            change = e_out - e_src
            if cfg.direction_weight > 0:
                per_image = F.normalize(change.view(b, cfg.cutouts, -1).mean(1), dim=-1, eps=MIN_CHANGE)
                terms["direction"] = (1 - per_image @ self.text_direction).mean()
            if cfg.patch_weight > 0:
                per_view = 1 - F.normalize(change, dim=-1, eps=MIN_CHANGE) @ self.text_direction
                terms["patch"] = torch.where(per_view < cfg.patch_threshold, torch.zeros_like(per_view), per_view).mean()
        if cfg.content_weight > 0:
            terms["content"] = content_distance(self.net, self.net.features(out), src)
        if cfg.tv_weight > 0:
            terms["tv"] = (out[..., 1:, :] - out[..., :-1, :]).abs().mean() + (out[..., 1:] - out[..., :-1]).abs().mean()
        x = state[:, WRITABLE]
        terms["overflow"] = (x - x.clamp(-1, 1)).abs().mean()
        if self.aesthetic_target is not None:
            score = self.aesthetic_head(e_out)
            terms["aesthetic"] = ((score - self.aesthetic_target) / 10).pow(2).mean()
        weights = {
            "prompt": cfg.prompt_weight, "direction": cfg.direction_weight, "patch": cfg.patch_weight, "content": cfg.content_weight,
            "tv": cfg.tv_weight, "overflow": cfg.overflow_weight, "aesthetic": cfg.aesthetic_weight,
        }
        terms["total"] = sum(weights[k] * v for k, v in terms.items())
        terms["similarity"] = (e_out.detach() @ self.positive).mean()  # reported, not optimised
        if self.aesthetic_target is not None:
            terms["aesthetic_score"] = score.detach().mean()
        return terms
