import pickle

import pytest
import torch

from ncaedit.errors import NcaError
from ncaedit.rule import Rule, RuleConfig
from ncaedit.nca_format import FORMAT_VERSION, load_rule, read_metadata, save_rule

from helpers import rewrite_metadata


def trained_rule():
    torch.manual_seed(0)
    rule = Rule(RuleConfig(hidden_channels=8, width=24, fire_rate=0.7, padding="reflect"))
    with torch.no_grad():
        for p in rule.parameters():
            p.normal_()
    return rule


def test_round_trip(tmp_path):
    rule = trained_rule()
    path = save_rule(rule, tmp_path / "r.nca", {"mode": "style", "final_losses": {"total": 0.5}})
    rf = load_rule(path)
    assert rf.rule.config == rule.config
    for a, b in zip(rf.rule.parameters(), rule.parameters()):
        assert torch.equal(a, b)
    assert rf.metadata["mode"] == "style" and rf.metadata["format_version"] == FORMAT_VERSION
    assert read_metadata(path)["arch"]["width"] == 24
    assert path.stat().st_size < 64_000
    assert not list(tmp_path.glob(".*part"))  # no temporary left behind


def test_newer_format_is_refused(tmp_path):
    path = save_rule(trained_rule(), tmp_path / "r.nca")
    rewrite_metadata(path, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(NcaError, match="newer"):
        load_rule(path)


def test_metadata_inconsistent_with_tensors_is_refused(tmp_path):
    path = save_rule(trained_rule(), tmp_path / "r.nca")
    rewrite_metadata(path, lambda m: m["arch"].update(width=25))
    with pytest.raises(NcaError, match="do not match their checksum"):
        load_rule(path)
    rewrite_metadata(path, lambda m: m.pop("settings_sha256"))  # as in a file from ncaedit 0.1
    with pytest.raises(NcaError, match="architecture"):
        load_rule(path)


def test_edited_tensor_bytes_are_refused(tmp_path):
    path = save_rule(trained_rule(), tmp_path / "r.nca")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NcaError, match="checksum"):
        load_rule(path)


@pytest.mark.parametrize("cut", [0, 5, 40, -10])
def test_truncated_files(tmp_path, cut):
    path = save_rule(trained_rule(), tmp_path / "r.nca")
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(NcaError):
        load_rule(path)


def test_other_files_are_not_rules(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.nca"
    save_file({"x": torch.zeros(3)}, str(plain))
    with pytest.raises(NcaError, match="not an ncaedit rule"):
        load_rule(plain)
    with pytest.raises(NcaError, match="no such"):
        load_rule(tmp_path / "missing.nca")
    with pytest.raises(NcaError, match="folder"):
        load_rule(tmp_path)


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_pickle_payload_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.nca"
    evil.write_bytes(pickle.dumps(_Payload()))
    torch.save({"w1.weight": _Payload()}, tmp_path / "evil2.nca")
    for p in (evil, tmp_path / "evil2.nca"):
        with pytest.raises(NcaError):
            load_rule(p)
    assert not (tmp_path / "PWNED").exists()


def test_a_rule_file_older_than_photo_levels_reads_photos_as_they_are(tmp_path):
    """Files written before RuleConfig.photo_contrast existed have no such arch key: they load with 0
    (the photo unlevelled, as they were trained), and the key stays covered by the settings checksum."""
    from ncaedit.nca_format import _settings_checksum

    path = save_rule(trained_rule(), tmp_path / "r.nca")
    assert read_metadata(path)["arch"]["photo_contrast"] == RuleConfig().photo_contrast > 0

    def as_older(meta):
        del meta["arch"]["photo_contrast"]
        meta["settings_sha256"] = _settings_checksum(meta)

    rewrite_metadata(path, as_older)
    assert load_rule(path).rule.config.photo_contrast == 0 and read_metadata(path)["arch"]["photo_contrast"] == 0
    rewrite_metadata(path, lambda m: m["arch"].update(photo_contrast=0.3))  # added without the checksum: an edit
    with pytest.raises(NcaError, match="do not match their checksum"):
        load_rule(path)


def test_a_rule_file_older_than_coarse_perception_loads_with_one_scale(tmp_path):
    """Files written before RuleConfig.scales existed have no such key and a first layer over one
    spacing's features: they load with scales 1. A multi-scale file stripped of the key is refused,
    since its weights no longer fit."""
    from ncaedit.nca_format import _settings_checksum

    def without_scales(meta):
        del meta["arch"]["scales"]
        meta["settings_sha256"] = _settings_checksum(meta)

    for scales in (1, 3):
        torch.manual_seed(0)
        path = save_rule(Rule(RuleConfig(hidden_channels=2, width=8, scales=scales)), tmp_path / f"r{scales}.nca")
        assert load_rule(path).rule.config.scales == scales
        rewrite_metadata(path, without_scales)
        if scales == 1:
            assert load_rule(path).rule.config.scales == 1
        else:
            with pytest.raises(NcaError, match="does not match its own architecture"):
                load_rule(path)


@pytest.mark.parametrize("value", [0, 5, 2.5, "2"])
def test_scales_out_of_range_is_refused(tmp_path, value):
    path = save_rule(Rule(RuleConfig(hidden_channels=2, width=8)), tmp_path / "r.nca")
    rewrite_metadata(path, lambda m: (m["arch"].update(scales=value), m.pop("settings_sha256")))
    with pytest.raises(NcaError, match="scales"):
        load_rule(path)


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.2", None])
def test_photo_contrast_out_of_range_is_refused(tmp_path, value):
    path = save_rule(trained_rule(), tmp_path / "r.nca")
    rewrite_metadata(path, lambda m: (m["arch"].update(photo_contrast=value), m.pop("settings_sha256")))
    with pytest.raises(NcaError, match="photo_contrast"):
        load_rule(path)
