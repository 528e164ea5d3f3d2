"""A training mode (style, prompt): what a rule is trained toward.

A mode is built in two parts so that bad input fails before anything slow: building the `Mode`
checks its inputs and reads the small ones (a style image, the prompts); `Mode.setup` builds the
loss (loss networks, CLIP) once the recipe and the photo are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class ModeSetup:
    """What a mode adds to training once the recipe and photo are known."""

    loss_fn: Callable  # (state, generator) -> dict of loss terms with "total"
    metadata: dict  # mode-specific rule metadata ("mode", hashes, prompts, loss network, ...)
    threads: int | None = None  # torch threads per op while training on the CPU; None: all torch has
    # crops of a batch trained side by side (train.train_rule's workers), one torch thread each; only
    # for a loss that scores each crop on its own, its terms means over the batch of each crop's
    workers: int = 1
    recipe: Any = None  # the recipe as the mode fitted it to its inputs (recipe.Recipe; cell_style.with_cells); None: as given
    notice: str = ""  # what the mode chose, for the user


@dataclass
class Mode:
    kind: str  # which presets it takes (config.LOSS_CONFIGS): "style" or "prompt"
    name: str  # default name of the outputs after the photo's: the style's stem, the prompt's words
    setup: Callable[..., ModeSetup]  # (recipe, photo, device, warn: (message) -> None) -> ModeSetup
    progress_info: Callable[[dict], str]  # one iteration's loss record -> a short text for a progress display
    inputs: list[Path] = field(default_factory=list)  # files it reads, which no output may replace
    preview_middle: np.ndarray | None = None  # shown between source and result on a preview sheet
    status: str = ""  # what `setup` spends its time on, when that is worth showing ("loading CLIP ...")
