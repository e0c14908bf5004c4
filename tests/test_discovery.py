"""Dataset discovery: sample/image layout, ignored files, clear errors."""

import numpy as np
import pytest
from conftest import write_hspy

from temtwin.errors import UserError
from temtwin.workflow.discovery import discover


def test_layout(tiny_dataset):
    (tiny_dataset / "s1" / "truth.json").write_text("{}")          # validation truth is ignored
    (tiny_dataset / "s1" / "phases").mkdir()
    (tiny_dataset / "s1" / "phases" / "X.cif").write_text("data_x")
    (tiny_dataset / "s1" / "labels").mkdir()
    np.save(tiny_dataset / "s1" / "labels" / "a.npy", np.ones((4, 4)))
    (tiny_dataset / "notes.txt").write_text("not a sample")
    s = discover(tiny_dataset)
    assert list(s) == ["s1"]
    assert sorted(s["s1"].images) == ["a", "b"]
    assert [p.name for p in s["s1"].phase_files] == ["X.cif"]
    assert list(s["s1"].label_overrides) == ["a"]


def test_empty_dataset(tmp_path):
    (tmp_path / "empty_sample").mkdir()
    with pytest.raises(UserError, match="no images found"):
        discover(tmp_path)


def test_duplicate_image_names(tiny_dataset, lattice_image):
    write_hspy(tiny_dataset / "s1" / "b.hspy", lattice_image)
    with pytest.raises(UserError, match="two images named 'b'"):
        discover(tiny_dataset)


def test_uncalibrated_png_needs_sample_yaml(tmp_path):
    from PIL import Image

    (tmp_path / "s").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "s" / "x.png")
    with pytest.raises(UserError) as e:
        discover(tmp_path)
    assert "x.png" in str(e.value) and "pixel_size_nm" in str(e.value)
    (tmp_path / "s" / "sample.yaml").write_text("pixel_size_nm: 0.1\n")
    assert "x" in discover(tmp_path)["s"].images


def test_bad_sample_yaml(tiny_dataset):
    (tiny_dataset / "s1" / "sample.yaml").write_text("elements: [si]\n")
    with pytest.raises(UserError) as e:
        discover(tiny_dataset)
    assert "sample.yaml" in str(e.value) and "elements" in str(e.value)
