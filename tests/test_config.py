"""Config validation: defaults, unknown keys and wrong types give one line naming the key."""

import pytest

from temtwin.config import load_config, validate_sample
from temtwin.errors import UserError


def test_defaults_filled():
    cfg = load_config({}, require_dataset=False)
    assert cfg["results"] == "results" and cfg["ingest"]["align_frames"] is True
    assert cfg["stages"]["keating"] is True and cfg["tb_moments"]["n_chunks"] >= 1


def test_unknown_key_named():
    with pytest.raises(UserError) as e:
        load_config({"ingest": {"align_frame": True}}, require_dataset=False)
    assert "ingest.align_frame" in str(e.value) and "\n" not in str(e.value)


def test_wrong_type_named():
    with pytest.raises(UserError) as e:
        load_config({"seed": "abc"}, require_dataset=False)
    assert str(e.value).startswith("config: seed:")


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(UserError) as e:
        load_config({"dataset": str(tmp_path / "nope")})
    assert "dataset folder not found" in str(e.value)


def test_sample_yaml_validation():
    assert validate_sample({"pixel_size_nm": [0.1, 0.2], "elements": ["Si", "Ge"]})["elements"] == ["Si", "Ge"]
    with pytest.raises(UserError) as e:
        validate_sample({"pixel_size_nm": -1}, "s/sample.yaml")
    assert "s/sample.yaml" in str(e.value) and "pixel_size_nm" in str(e.value)
