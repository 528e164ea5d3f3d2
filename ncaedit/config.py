"""Every setting and default in one torch-free place: the command line imports it for its defaults
and help, the library for its recipes.

The recipe dataclasses' defaults are the `fast` preset (presets/fast.toml holds only its
description); `balanced` and `quality` list the keys in which they differ. A test checks both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ncaedit.errors import NcaError

VERSION = "0.1.0"  # the package version, recorded in every rule file

DEFAULT_PRESET = "fast"
DEFAULT_DEVICE = "auto"  # CUDA, then MPS, then the CPU (device.resolve_device), for every command
DEFAULT_STEPS = 32  # steps to apply a rule whose metadata does not record its own (default_steps)
DEFAULT_MAX_PIXELS = 200_000_000  # refuse decompression bombs above this many pixels
DEFAULT_LOSS_NET = "auto"  # VGG19 when its weights can be had, else the offline random filters
DEFAULT_SOURCE_PROMPT = "a photo"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"  # LAION's ViT-B-32: stronger zero-shot than OpenAI's, plain GELU
CHECKPOINT_INTERVAL = 10  # training iterations between checkpoint files (--resume)

PADDINGS = ("replicate", "reflect", "circular", "zeros")
STYLE_DISTANCES = ("gram", "sw")
CONTENTS = ("features", "layout")  # what the content term compares (StyleLossConfig.content)
LOSS_NETS = ("auto", "vgg19", "random")
CELL_CHOICES = ("auto", "on", "off")  # StyleLossConfig.cells
# What drawing a style's cells changes in a recipe, where it leaves these keys at `fast`'s values
# (cell_style.with_cells): random regions about a mosaic cell's size at train_size 256, the nearest-patch
# term steered by the photo's lightness (2: more of the photo shows through the cells than 1 or 3) and
# by each region's hue (1.0 drew the same), and the structure term as `motifs` charges it (in
# proportion, weight 2: the coffee's SSIM 0.39 -> 0.49 under the cells; the cube at 1.5 moved it by what
# a seed moves it). With `fast`, the first rules at that budget to draw a mosaic's outlined cells
# (README, "Edit quality": "Cells in every preset")
CELLS = {
    "rule": {"regions": 32},
    "train": {"structure_weight": 2.0, "structure_power": 1.0},
    "loss": {"patch_weight": 2.0, "patch_guide": 2.0, "patch_hue": 0.2},
}


def scales_reach(scales: int) -> int:
    """How many cells away a step with `scales` levels of perception reads, in each direction
    (rule.coarse_stencils: 1 + 2 + ... + 2^(scales-1), the spacings' sum)."""
    return 2**scales - 1


@dataclass
class RuleConfig:
    hidden_channels: int = 12
    width: int = 48  # hidden units of the per-cell MLP
    fire_rate: float = 0.5  # probability that a cell updates in a step
    padding: str = "replicate"  # photos have edges: replicate, not circular (no left/right bleed)
    # the rule reads every photo levelled: mean colour moved to mid-grey, RMS contrast scaled to this
    # (state.photo_levels), so it restyles dark and bright photos alike; 0 reads photos as they are
    photo_contrast: float = 0.25  # about a typical photo's; 0.15-0.4 measured alike (benchmarks/quality.py)
    # perception at spacings 1, 2, ... 2^(scales-1) (rule.coarse_stencils): a step sees 2^scales - 1 cells
    # away, so motifs larger than the rollout appear; 3 took the rings pair's texture from 1.5 to 1.1 x its
    # pixel optimum's (benchmarks/quality.py); 1 is the 3x3 neighbourhood alone
    scales: int = 3
    # random regions about this many pixels across (noise.regions), which the rule reads in two frozen
    # hidden channels: where a style's cells go, each with its own hue (patch_hue); 0: none, unless the
    # style is drawn as cells (StyleLossConfig.cells, CELLS)
    regions: int = 0

    @property
    def channels(self) -> int:
        return 6 + self.hidden_channels

    @property
    def reach(self) -> int:
        return scales_reach(self.scales)

    def validate(self) -> None:
        if self.hidden_channels < 0 or self.width < 1:
            raise NcaError("rule: hidden_channels must be >= 0 and width >= 1")
        if not 0 < self.fire_rate <= 1:
            raise NcaError("rule: fire_rate must be in (0, 1]")
        if not 0 <= self.photo_contrast <= 1:
            raise NcaError("rule: photo_contrast must be in [0, 1]")
        if not 1 <= self.scales <= 4:
            raise NcaError("rule: scales must be between 1 and 4")
        if self.padding not in PADDINGS:
            raise NcaError(f"rule: padding must be one of {', '.join(PADDINGS)}")
        if self.regions and not (4 <= self.regions <= 1024 and self.hidden_channels >= 2):
            raise NcaError("rule: regions must be 0 (none) or 4-1024 pixels, with hidden_channels >= 2 to hold them")


@dataclass
class TrainConfig:
    iterations: int = 350  # with scales 3 a step costs ~1.6x; 450 would pass the 3-minute budget
    batch: int = 2
    crop: int = 80  # side of the square training crops
    train_size: int = 256  # photos are resized so their longer side is this before cropping
    pool: int = 32
    steps_min: int = 8  # with scales 3 a step reaches 7 cells, so short rollouts suffice
    steps_max: int = 16
    fresh_per_batch: int = 1  # fresh crops injected into every batch
    lr: float = 1e-2
    lr_decay_at: tuple[float, ...] = (0.5, 0.8)  # fractions of the run where the LR is multiplied by lr_decay
    lr_decay: float = 0.3
    grad_checkpoint_every: int = 0  # rollout steps per gradient-checkpoint segment (activations recomputed); 0 keeps all
    seed: int = 0
    # augmented crops (augment.py), so the rule also restyles photos it was not trained on
    augment_scale: float = 0.25  # crops cut at a scale up to this fraction larger or smaller
    augment_flips: bool = True  # mirrored, flipped or transposed
    augment_jitter: float = 0.4  # brightness, contrast and saturation change by up to this fraction
    augment_hue: float = 0.5  # hue turns by up to this fraction of a turn (0.5: any hue, so other palettes restyle too)
    scenes: float = 0.3  # fraction of crops cut from generated scenes (scenes.py), so other photos restyle as well (0.25 missed the unseen colour target with structure_power 3)
    structure_weight: float = 0.9  # texture the photo's local structure does not explain (structure.py), against speckle; 1.0 kept more layout than the targets ask
    structure_power: float = 3.0  # each crop charged this power of it: more texture costs more where there is more (1: in proportion)

    def augment(self):
        """The augmentation these settings describe (augment.Augment; imported here so that this module stays free of torch)."""
        from ncaedit.augment import Augment

        return Augment(self.augment_scale, self.augment_flips, self.augment_jitter, self.augment_hue)

    def validate(self) -> None:
        if self.iterations < 1 or self.batch < 1 or self.pool < self.batch:
            raise NcaError("train: iterations and batch must be >= 1 and pool >= batch")
        if self.crop < 16 or self.train_size < self.crop:
            raise NcaError("train: crop must be >= 16 and train_size >= crop")
        if not 1 <= self.steps_min <= self.steps_max:
            raise NcaError("train: need 1 <= steps_min <= steps_max")
        if not 0 <= self.fresh_per_batch <= self.batch:
            raise NcaError("train: fresh_per_batch must be between 0 and batch")
        if not 0 < self.lr < math.inf or self.grad_checkpoint_every < 0:
            raise NcaError("train: lr must be a finite number > 0 and grad_checkpoint_every >= 0")
        if not 0 <= self.seed < 2**63:
            raise NcaError("train: seed must be between 0 and 2**63 - 1")
        if not 0 <= self.scenes < 1:
            raise NcaError("train: scenes must be in [0, 1)")
        if not (0 <= self.augment_scale <= 3 and 0 <= self.augment_jitter < 1 and 0 <= self.augment_hue <= 0.5 and self.structure_weight >= 0):
            raise NcaError("train: need 0 <= augment_scale <= 3, 0 <= augment_jitter < 1, 0 <= augment_hue <= 0.5, structure_weight >= 0")
        if not 1 <= self.structure_power <= 8:
            raise NcaError("train: structure_power must be between 1 and 8")


RENAMED_KEYS = {"train.checkpoint_every": "grad_checkpoint_every"}  # older preset key -> its name now


@dataclass
class StyleLossConfig:
    style_distance: str = "gram"  # "gram" or "sw" (sliced Wasserstein)
    style_weight: float = 1.0
    texture_weight: float = 1.0  # steerable-pyramid shape statistics (steerable.py); 0 = off
    # each patch of the result at 1/2, 1/4 and 1/8 scale pulled to a style patch (patches.py); off but in
    # `motifs`: a rule draws closed rings with it after 1,000+ iterations, but strokes turn to bands (README, "Edit quality")
    patch_weight: float = 0.0
    patch_guide: float = 0.0  # how much the photo's lightness there steers which style patch is chosen (patches.py)
    patch_hue: float = 0.0  # how much each random region's hue steers it (rule.regions, or a style of cells'; patches.py)
    # draw the style's cells (config.CELLS): "auto" where the style looks like flat patches in many hues
    # (cell_style.py), "on" for any style, "off" never
    cells: str = "auto"
    content: str = "layout"  # "layout" (low-passed luminance) or "features" (loss-net features)
    content_weight: float = 0.3
    layout_blur: float = 2.0  # for content "layout": the Gaussian sigma, in pixels, below which detail is free
    colour_weight: float = 3.0  # the style's palette; 10 held texture and layout back (benchmarks/quality.py)
    # each training crop's style statistics mixed this much with their running mean over recent crops, so a
    # crop is asked for its share of the whole photo's style, as a pixel optimum of the whole photo spreads
    # it (running_statistics.py); 1 asks every crop for all of it
    crop_share: float = 0.2
    overflow_weight: float = 10.0
    style_size: int = 256  # the style image's longer side when its features are taken
    projections: int = 32  # random directions per layer for "sw"

    def validate(self) -> None:
        if self.style_distance not in STYLE_DISTANCES:
            raise NcaError(f"style_distance must be one of {', '.join(STYLE_DISTANCES)}")
        if self.content not in CONTENTS:
            raise NcaError(f"content must be one of {', '.join(CONTENTS)}")
        if self.cells not in CELL_CHOICES:
            raise NcaError(f"cells must be one of {', '.join(CELL_CHOICES)}")
        if min(self.style_weight, self.texture_weight, self.patch_weight, self.patch_guide, self.patch_hue, self.content_weight, self.colour_weight, self.overflow_weight, self.layout_blur) < 0:
            raise NcaError("loss weights must be >= 0")
        if self.style_size < 16:
            raise NcaError("style_size must be at least 16 pixels")
        if not 0 < self.crop_share <= 1:
            raise NcaError("crop_share must be in (0, 1]")


@dataclass
class ViewConfig:
    cutouts: int = 4  # views per image
    cut_min: float = 0.5  # smallest view side, as a fraction of the image's shorter side
    perspective: float = 0.2  # random corner displacement, as a fraction of the view's half side
    flip: bool = True  # mirror half of the views
    jitter: float = 0.05  # brightness, contrast and saturation change by up to this fraction


@dataclass
class PromptLossConfig(ViewConfig):
    cutouts: int = 2  # the `fast` prompt preset: each view costs a CLIP pass forward and back
    cut_min: float = 0.6
    templates: bool = True  # average each prompt's embedding over phrasings (prompts.TEMPLATES)
    prompt_weight: float = 1.0
    direction_weight: float = 1.0
    patch_weight: float = 1.0
    patch_threshold: float = 0.7
    content_weight: float = 1.0
    tv_weight: float = 0.1
    overflow_weight: float = 10.0
    aesthetic_weight: float = 0.5  # used only with an aesthetic target

    def validate(self) -> None:
        weights = (self.prompt_weight, self.direction_weight, self.patch_weight, self.content_weight, self.tv_weight, self.overflow_weight, self.aesthetic_weight)
        if min(weights) < 0:
            raise NcaError("loss weights must be >= 0")
        if self.cutouts < 1:
            raise NcaError("cutouts must be at least 1")
        if not 0 < self.cut_min <= 1:
            raise NcaError("cut_min must be in (0, 1]")
        if not 0 <= self.perspective <= 0.5 or not 0 <= self.jitter < 1:
            raise NcaError("perspective must be in [0, 0.5] and jitter in [0, 1)")
        if not 0 <= self.patch_threshold < 2:
            raise NcaError("patch_threshold must be in [0, 2)")


LOSS_CONFIGS = {"style": StyleLossConfig, "prompt": PromptLossConfig}  # mode -> what its [loss] table holds
