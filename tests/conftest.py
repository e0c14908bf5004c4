"""Shared fixtures: tiny calibrated datasets written with rosettasciio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
REPO = Path(__file__).resolve().parents[1]


def hspy_signal(data, scale=(0.02, 0.02), units=("nm", "nm"), title="test", mode="TEM", nav=0):
    """A rosettasciio signal dict (axes in array order; the first ``nav`` axes navigate)."""
    names = ["frame", "y", "x"][-data.ndim:]
    sc = ([1.0] * (data.ndim - 2)) + list(scale)
    un = (["<undefined>"] * (data.ndim - 2)) + list(units)
    axes = [{"name": n, "navigate": i < nav, "offset": 0.0, "scale": float(s), "size": int(z), "units": u}
            for i, (n, s, z, u) in enumerate(zip(names, sc, data.shape, un))]
    return {"data": data, "axes": axes, "original_metadata": {}, "tmp_parameters": {},
            "attributes": {"_lazy": False}, "models": {}, "learning_results": {},
            "package_info": {"name": "temtwin-tests", "version": "0"},
            "metadata": {"General": {"title": title}, "Signal": {"signal_type": ""},
                         "Acquisition_instrument": {"TEM": {"beam_energy": 200.0, "acquisition_mode": mode}}}}


def write_hspy(path, data, **kw):
    from rsciio.hspy import file_writer

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    file_writer(str(path), hspy_signal(np.asarray(data), **kw))
    return Path(path)


def write_tif(path, data, scale=(0.02, 0.02), units=("nm", "nm")):
    from rsciio.tiff import file_writer

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    file_writer(str(path), hspy_signal(np.asarray(data), scale=scale, units=units))
    return Path(path)


@pytest.fixture
def lattice_image():
    """A small HAADF-like Si [110] image (uint16 counts), 128 x 128 at 0.02 nm."""
    from temtwin.testing.synth import crystal_scene

    s = crystal_scene("Si", (1, 1, 0), 12.0, shape=(128, 128), pixel_size_nm=(0.02, 0.02), dose=500, seed=3)
    return np.clip(s.image, 0, 65535).astype(np.uint16)


@pytest.fixture
def tiny_dataset(tmp_path, lattice_image):
    """dataset/<s1>/{a.hspy, b.tif} with known calibrations."""
    ds = tmp_path / "dataset"
    write_hspy(ds / "s1" / "a.hspy", lattice_image, scale=(0.02, 0.02))
    write_tif(ds / "s1" / "b.tif", lattice_image[:100, :120], scale=(0.25, 0.25), units=("Å", "Å"))
    return ds
