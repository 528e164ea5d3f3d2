import pytest

from ncaedit.errors import NcaError
from ncaedit.recipe import load_recipe, preset_names


def test_bundled_presets_load():
    assert {"fast", "balanced", "quality"} <= set(preset_names())
    fast, quality = load_recipe("fast"), load_recipe("quality")
    assert fast.train.iterations < quality.train.iterations
    assert quality.train.steps_max >= fast.train.steps_max


def test_overrides_win_and_none_is_ignored():
    r = load_recipe("fast", {"train": {"iterations": 7, "lr": None}, "rule": {"width": 20}})
    assert r.train.iterations == 7 and r.rule.width == 20
    assert r.train.lr == load_recipe("fast").train.lr


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("[train]\niterationz = 3\n", "unknown key train.iterationz"),
        ("[trian]\niterations = 3\n", r"unknown table \[trian\]"),
        ("[train]\niterations = 'many'\n", "must be int"),
        ("[train]\niterations = 0\n", "iterations"),
        ("[rule]\nfire_rate = 2.0\n", "fire_rate"),
        ("[loss]\nstyle_distance = 'l2'\n", "style_distance"),
        ("not = [valid", "not valid TOML"),
    ],
)
def test_bad_presets(tmp_path, text, pattern):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(NcaError, match=pattern):
        load_recipe(str(p))


def test_unknown_preset_name_lists_the_known_ones():
    with pytest.raises(NcaError, match="fast"):
        load_recipe("turbo")
