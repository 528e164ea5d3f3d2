"""Bounds on every number that comes from outside: command-line options, preset values and rule-file
metadata. One table and one check, so that nan, inf, negative and absurd values are refused with a
one-line message before anything starts, wherever the number comes from.

The maxima are far beyond any useful value (rules are applied for hundreds to a few thousand steps)
and far below what would run for days or exhaust memory.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass

from ncaedit.errors import NcaError

MAX_STEPS = 100_000
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    integer: bool = False
    above_low: bool = False  # the low end itself is not allowed
    also: tuple = ()  # values allowed outside the range (animate --size 0: the photo's own size)

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        high = "2**63 - 1" if self.high == MAX_SEED else f"{self.high:,}"
        span = f"above {self.low:,} and at most {high}" if self.above_low else f"from {self.low:,} to {high}"
        return f"{kind} {span}" + "".join(f" (or {v})" for v in self.also)


# By name: a command-line option (its Python parameter name), a preset key, or a metadata field.
BOUNDS: dict[str, Bound] = {
    "steps": Bound(1, MAX_STEPS, integer=True),
    "every": Bound(1, MAX_STEPS, integer=True),
    "refresh_steps": Bound(0, MAX_STEPS, integer=True),  # videos; at most the steps (video.video_temporal)
    "iterations": Bound(1, 1_000_000, integer=True),
    "seed": Bound(0, MAX_SEED, integer=True),
    "tile": Bound(16, 1_000_000, integer=True),
    "max_pixels": Bound(1, 10**12, integer=True),
    "size": Bound(8, 1_000_000, integer=True, also=(0,)),  # an animation's side follows image.MIN_SIDE
    "width": Bound(1, 4096, integer=True),
    "hidden_channels": Bound(0, 256, integer=True),
    "crop": Bound(16, 4096, integer=True),
    "train_size": Bound(16, 8192, integer=True),
    "style_size": Bound(16, 4096, integer=True),
    "batch": Bound(1, 1024, integer=True),
    "pool": Bound(1, 100_000, integer=True),
    "steps_min": Bound(1, 10_000, integer=True),
    "steps_max": Bound(1, 10_000, integer=True),
    **{name: Bound(0, 10_000, integer=True) for name in ("checkpoint_every", "grad_checkpoint_every")},  # the old preset key and its name now
    "cutouts": Bound(1, 1024, integer=True),
    "projections": Bound(1, 4096, integer=True),
    "fps": Bound(0.1, 240),
    "strength": Bound(0, 1),
    "feather": Bound(0, 10_000),
    "style_scale": Bound(0.01, 16),
    "lr": Bound(0, 1, above_low=True),
    "fire_rate": Bound(0, 1, above_low=True),
    "crop_share": Bound(0, 1, above_low=True),
    "photo_contrast": Bound(0, 1),
    "scales": Bound(1, 4, integer=True),
    "regions": Bound(4, 1024, integer=True, also=(0,)),
    "layout_blur": Bound(0, 1000),
    "aesthetic": Bound(0, 10),
    "workers": Bound(1, 1_000_000, integer=True),  # Ray actors
    "cpus_per_worker": Bound(0, 4096, above_low=True),
    **{name: Bound(0, 1024) for name in ("gpus_per_worker", "ray_gpus_per_worker")},  # the API's name and the flag's
    **{name: Bound(0, 1e6) for name in ("content_weight", "texture_weight", "colour_weight", "direction_weight", "aesthetic_weight", "style_weight", "prompt_weight", "patch_weight", "patch_guide", "patch_hue", "tv_weight", "structure_weight", "overflow_weight")},
}


def check_number(name: str, value, where: str | None = None, optional: bool = True):
    """`value` if it is a number within BOUNDS[name] (None passes when `optional`: "not given");
    else an NcaError that starts with `where`, or without `where` names the parameter (NcaError.param:
    the command line shows its flag)."""
    bound = BOUNDS[name]
    if (value is None and optional) or (value in bound.also and not isinstance(value, bool)):
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and (isinstance(value, int) or not bound.integer)
    if number and math.isfinite(value) and bound.low <= value <= bound.high and not (bound.above_low and value == bound.low):
        return value
    got = f"{value:,}" if number and isinstance(value, int) else repr(value)
    message = f"must be {bound.describe()}, got {got}"
    raise NcaError(f"{where} {message}") if where else NcaError(message, param=name)


def check_options(values: dict) -> None:
    """Check every value in `values` whose name has a bound; other names pass."""
    for name, value in values.items():
        if name in BOUNDS:
            check_number(name, value)


def checked(command):
    """Decorate a command or library function so that its numeric arguments (and the recipe keys in its
    **overrides) are checked (check_options) before it runs: the command line and the Python API share
    the one table. The signature is kept (functools.wraps), so typer still sees the options."""
    signature = inspect.signature(command)

    @functools.wraps(command)
    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            check_options(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
        return command(*args, **kwargs)

    return run
