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


def test_defaults_are_the_fast_preset_and_others_list_only_differences():
    """config.py's dataclass defaults are `fast`; a bundled preset sets no key to its default value."""
    import tomllib

    from ncaedit.config import LOSS_CONFIGS, RuleConfig, TrainConfig
    from ncaedit.recipe import Recipe, presets_dir

    assert load_recipe("fast").to_dict() == Recipe().to_dict()
    assert load_recipe("fast", mode="prompt").to_dict()["loss"] == Recipe(loss=LOSS_CONFIGS["prompt"]()).to_dict()["loss"]
    for path in presets_dir().glob("*.toml"):
        data = tomllib.loads(path.read_text())
        defaults = {"rule": RuleConfig(), "train": TrainConfig(), "loss": LOSS_CONFIGS[data.get("mode", "style")]()}
        for table, values in data.items():
            if isinstance(values, dict):
                same = [k for k, v in values.items() if getattr(defaults[table], k) == v]
                assert not same, f"{path.name} [{table}] repeats defaults: {same}"


def test_the_older_name_of_grad_checkpoint_every_still_loads(tmp_path):
    p = tmp_path / "old.toml"
    p.write_text("[train]\ncheckpoint_every = 4\n")
    assert load_recipe(str(p)).train.grad_checkpoint_every == 4
