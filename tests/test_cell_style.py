"""Styles made of cells (cell_style.py): which styles look like cells, and what drawing them adds to a recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ncaedit
from ncaedit.cell_style import cell_statistics, looks_like_cells, with_cells
from ncaedit.config import CELLS
from ncaedit.errors import NcaError
from ncaedit.image import load_image
from ncaedit.recipe import load_recipe
from helpers import cell_mosaic, smooth_photo, stripes, write_rgb

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("style, cells", [("mosaic.png", True), ("strokes.png", False), ("hatch.png", False), ("rings.png", False)])
def test_of_the_bundled_styles_only_the_mosaic_looks_like_cells(style, cells):
    assert looks_like_cells(load_image(ROOT / "sample_images" / style).rgb) is cells


def test_cells_need_flat_parts_in_many_hues():
    assert looks_like_cells(cell_mosaic())
    flat, chroma, agreement = cell_statistics(cell_mosaic())
    assert flat > 0.4 and chroma > 0.5 and agreement < 0.3
    assert not looks_like_cells(cell_mosaic(grey=True))  # flat, but no hues: a grey mosaic is drawn by the statistics alone
    one_hue = cell_mosaic()
    one_hue[..., 1:] *= 0.2  # every cell reddish
    assert cell_statistics(one_hue)[2] > 0.5 and not looks_like_cells(one_hue)
    noise = np.random.default_rng(0).random((128, 128, 3)).astype(np.float32)
    assert cell_statistics(noise)[0] < 0.01 and not looks_like_cells(noise)  # colourful but nowhere flat
    assert not looks_like_cells(stripes(128, 128))  # two hues in thin bands: hardly flat at 5 x 5
    assert not looks_like_cells(smooth_photo(128, 128))


def test_with_cells_sets_its_keys_where_the_recipe_leaves_them_as_fast_has_them():
    fast, cells_style, plain = load_recipe("fast"), cell_mosaic(), stripes(128, 128)
    snapshot = fast.to_dict()
    drawn, on = with_cells(fast, cells_style)
    assert on and all(getattr(getattr(drawn, part), k) == v for part, values in CELLS.items() for k, v in values.items())
    assert fast.to_dict() == snapshot  # the recipe given is left as it was
    assert with_cells(fast, plain) == (fast, False)
    off = load_recipe("fast", {"loss": {"cells": "off"}})
    assert with_cells(off, cells_style) == (off, False)
    forced, on = with_cells(load_recipe("fast", {"loss": {"cells": "on"}}), plain)
    assert on and forced.rule.regions == CELLS["rule"]["regions"]
    own, _ = with_cells(load_recipe("fast", {"rule": {"regions": 12}, "train": {"structure_weight": 0.5}, "loss": {"patch_weight": 0.5}}), cells_style)
    assert own.rule.regions == 12 and own.train.structure_weight == 0.5 and own.loss.patch_weight == 0.5  # the user's own values stay
    assert own.loss.patch_hue == CELLS["loss"]["patch_hue"] and own.train.structure_power == CELLS["train"]["structure_power"]
    assert load_recipe("cells").loss.cells == "on"
    motifs, _ = with_cells(load_recipe("motifs"), cells_style)
    assert motifs.loss.patch_guide == load_recipe("motifs").loss.patch_guide and motifs.rule.regions == CELLS["rule"]["regions"]  # the preset's own guide stays
    narrow = load_recipe("fast", {"rule": {"hidden_channels": 1}})
    assert with_cells(narrow, cells_style) == (narrow, False)  # auto: no room for the regions, so none


def test_a_bad_cells_choice_is_refused():
    with pytest.raises(NcaError, match="cells must be one of auto, on, off"):
        load_recipe("fast", {"loss": {"cells": "maybe"}})
    with pytest.raises(NcaError, match="loss.cells must be str"):
        load_recipe("fast", {"loss": {"cells": True}})


def test_training_on_a_cell_style_draws_cells_and_says_so(tiny_preset):
    seen = []
    rule = ncaedit.train_style(smooth_photo(48, 64), cell_mosaic(64, 12), preset=tiny_preset, loss_net="random", iterations=2, callback=seen.append)
    recipe = rule.metadata["recipe"]
    assert rule.network.config.regions == recipe["rule"]["regions"] == CELLS["rule"]["regions"] and recipe["loss"]["patch_hue"] == CELLS["loss"]["patch_hue"]
    assert any(isinstance(u, ncaedit.Event) and "cells" in u.message for u in seen)
    assert rule.apply(smooth_photo(24, 32), steps=2).shape == (24, 32, 3)
    plain = ncaedit.train_style(smooth_photo(48, 64), stripes(48, 48), preset=tiny_preset, loss_net="random", iterations=1)
    assert plain.network.config.regions == 0 and plain.metadata["recipe"]["loss"]["patch_weight"] == 0
    off = ncaedit.train_style(smooth_photo(48, 64), cell_mosaic(64, 12), preset=tiny_preset, loss_net="random", iterations=1, cells="off")
    assert off.network.config.regions == 0


def test_cli_cells_option(tmp_path, cli, tiny_preset):
    photo, style = write_rgb(tmp_path / "photo.png", smooth_photo(32, 40)), write_rgb(tmp_path / "style.png", cell_mosaic(64, 12))
    code, err = cli("style", photo, "--style", style, "--preset", tiny_preset, "--cells", "sometimes")
    assert code == 2 and "cells must be one of auto, on, off" in err and "Traceback" not in err
    code, err = cli("style", photo, "--style", style, "--preset", tiny_preset, "--iterations", "1", "--cells", "off", "-o", tmp_path / "out.png")
    assert code == 0, err
    assert ncaedit.Rule.load(tmp_path / "out.nca").network.config.regions == 0
