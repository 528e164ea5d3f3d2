"""A recipe: everything that decides how a rule is trained, in three plain dataclasses.

Presets are TOML files with one table per part (`[rule]`, `[train]`, `[loss]`), found by name in
the `presets/` folder or given as a path. Command-line options override single keys. A preset's
`mode` key (default "style") says which command it is for, and so what its `[loss]` table holds;
`ncaedit MODE --preset NAME` looks for `MODE-NAME.toml` first, then `NAME.toml`.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncaedit.config import (
    DEFAULT_PRESET,
    LOSS_CONFIGS,
    RENAMED_KEYS,
    PromptLossConfig,
    RuleConfig,
    StyleLossConfig,
    TrainConfig,
)
from ncaedit.errors import NcaError
from ncaedit.limits import BOUNDS, check_number
from ncaedit.paths import read_limited

MAX_PRESET_BYTES = 1 << 20  # presets are a few hundred bytes


@dataclass
class Recipe:
    rule: RuleConfig = field(default_factory=RuleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: StyleLossConfig | PromptLossConfig = field(default_factory=StyleLossConfig)
    description: str = ""

    def to_dict(self) -> dict:
        return {"rule": dataclasses.asdict(self.rule), "train": dataclasses.asdict(self.train), "loss": dataclasses.asdict(self.loss)}


def presets_dir() -> Path:
    """The repository's presets/ folder, or the copy installed inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "presets", here / "presets"):
        if candidate.is_dir():
            return candidate
    raise NcaError("the presets folder is missing from this installation; reinstall ncaedit")


def preset_names(mode: str = "style") -> list[str]:
    """The bundled presets for `mode`, by the names `--preset` takes."""
    names = []
    for p in presets_dir().glob("*.toml"):
        if tomllib.loads(p.read_text()).get("mode", "style") == mode:
            names.append(p.stem.removeprefix(f"{mode}-"))
    return sorted(names)


def load_recipe(preset: str = DEFAULT_PRESET, overrides: dict[str, dict[str, Any]] | None = None, mode: str = "style") -> Recipe:
    """Read a preset (a name or a path to a .toml file) for `mode` and apply `overrides` ({"train": {"iterations": 10}})."""
    path, by_name = Path(preset), Path(preset).suffix != ".toml"
    unknown = f"unknown preset {preset!r} (choose from {', '.join(preset_names(mode))}, or give a .toml path)"
    if by_name:
        candidates = [presets_dir() / f"{mode}-{preset}.toml", presets_dir() / f"{preset}.toml"]
        path = next((c for c in candidates if c.is_file()), candidates[-1])
        if not path.is_file():
            raise NcaError(unknown)
    try:
        data = tomllib.loads(read_limited(path, MAX_PRESET_BYTES, "a preset (.toml)", "preset file does not exist").decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NcaError(f"preset {path.name}: not valid TOML ({exc})") from exc
    file_mode = data.pop("mode", "style")
    if file_mode != mode:
        if by_name:
            raise NcaError(unknown)
        hint = f'add mode = "{mode}" to it' if file_mode == "style" else f"use it with `ncaedit {file_mode}`"
        raise NcaError(f"preset {path.name} is a {file_mode} preset, not for `ncaedit {mode}`; {hint}")
    recipe = Recipe(loss=LOSS_CONFIGS[mode](), description=str(data.pop("description", "")))
    for section, values in data.items():
        if not isinstance(values, dict):
            raise NcaError(f"preset {path.name}: unknown key {section!r} (expected tables [rule], [train], [loss])")
        _set(recipe, section, values, f"preset {path.name}")
    for section, values in (overrides or {}).items():
        _set(recipe, section, {k: v for k, v in values.items() if v is not None}, "option")
    recipe.rule.validate()
    recipe.train.validate()
    recipe.loss.validate()
    # with cells "auto" or "on" the hue is for the regions cell_style.with_cells adds; with "off" there must be some
    if getattr(recipe.loss, "patch_hue", 0) > 0 and recipe.loss.cells == "off" and not (recipe.rule.regions and recipe.loss.patch_weight > 0):
        raise NcaError("loss.patch_hue needs rule.regions > 0 (the regions whose hue it steers) and loss.patch_weight > 0, or loss.cells auto or on")
    return recipe


def nest_overrides(flat: dict[str, Any], mode: str = "style") -> dict[str, dict[str, Any]]:
    """Recipe keys given by name alone ({"iterations": 10, "width": 32}) -> by table, as load_recipe
    takes them; None values are left out (the preset's value stays)."""
    tables = {"rule": RuleConfig, "train": TrainConfig, "loss": LOSS_CONFIGS[mode]}
    nested: dict[str, dict[str, Any]] = {name: {} for name in tables}
    for key, value in flat.items():
        table = next((name for name, cls in tables.items() if key in {f.name for f in dataclasses.fields(cls)}), None)
        if table is None:
            known = sorted(f.name for cls in tables.values() for f in dataclasses.fields(cls))
            raise NcaError(f"unknown option {key!r} (recipe keys: {', '.join(known)})")
        if value is not None:
            nested[table][key] = value
    return nested


def _set(recipe: Recipe, section: str, values: dict, where: str) -> None:
    part = getattr(recipe, section, None)
    if not dataclasses.is_dataclass(part):
        raise NcaError(f"{where}: unknown table [{section}] (expected [rule], [train], [loss])")
    fields = {f.name: f for f in dataclasses.fields(part)}
    for key, value in values.items():
        key = RENAMED_KEYS.get(f"{section}.{key}", key)
        if key not in fields:
            raise NcaError(f"{where}: unknown key {section}.{key} (known: {', '.join(fields)})")
        current = getattr(part, key)
        if isinstance(current, tuple):
            value = tuple(value)
        elif isinstance(current, bool) or not isinstance(current, (int, float, str)):
            pass
        elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(current):
            raise NcaError(f"{where}: {section}.{key} must be {type(current).__name__}, got {value!r}")
        if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))):
            raise NcaError(f"{where}: {section}.{key} must be a finite number, got {value!r}")
        if key in BOUNDS:
            check_number(key, value, f"{where}: {section}.{key}")
        setattr(part, key, value)
