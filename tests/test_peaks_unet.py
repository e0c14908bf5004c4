"""The U-Net detector: shipped weights (made by temtwin.training.fft_unet) load and find reflections on a
fixed synthetic set; training is reproducible from its seed and records how the weights were made."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from temtwin.peaks.metrics import counts, prf
from temtwin.testing.fft_spectra import simulate_spectrum
from temtwin.training.fft_unet import main as train_main
from temtwin.training.fft_unet import make_sample
from temtwin.peaks.unet import DEFAULT_WEIGHTS, detect_unet, load_model, symmetrise
from temtwin.workflow.seeds import rng as seeded


def test_shipped_weights_and_record():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 5e6
    net, rec = load_model(None)
    assert rec["weights_sha256"] == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    assert rec["arguments"]["seed"] == 0 and rec["model"]["parameters"] == sum(p.numel() for p in net.parameters())
    assert rec["time_s"]["total"] > 0 and "temtwin.testing.fft_spectra" in rec["data"]["generator"]


def test_shipped_unet_beats_threshold_on_fixed_set():
    net, _ = load_model(None)
    tot = np.zeros(4)
    fa = 0
    for i in range(12):
        s = simulate_spectrum(seeded(99, "unet-test", i), size=128)
        d = detect_unet(s.spectrum, net=net)
        tot += counts(np.c_[d["rows"], d["cols"]], np.c_[s.rows, s.cols], s.snr)[:4]
    for i in range(4):
        s = simulate_spectrum(seeded(99, "unet-test-amorphous", i), size=128, amorphous_only=True)
        fa += len(detect_unet(s.spectrum, net=net)["rows"])
    p, r, f = prf(*tot)
    assert p >= 0.9 and r >= 0.7 and fa <= 2


def test_symmetrise_is_point_inversion_average():
    p = np.random.default_rng(0).random((8, 8))
    s = symmetrise(p, 4)
    assert s[4 + 1, 4 + 2] == pytest.approx(s[4 - 1, 4 - 2]) == pytest.approx(0.5 * (p[5, 6] + p[3, 2]))
    assert s[0, 3] == p[0, 3]  # no partner inside the grid


def test_training_reproducible_and_recorded(tmp_path):
    a = make_sample((3, "train", 5, 64))
    b = make_sample((3, "train", 5, 64))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    shas = []
    for k in range(2):
        out = tmp_path / f"m{k}.pt"
        train_main(["--out", str(out), "--n-train", "12", "--n-val", "4", "--size", "64", "--crop", "32",
                    "--iters", "3", "--eval-every", "3", "--threads", "1", "--base", "4"])
        rec = json.loads(out.with_suffix(".json").read_text())
        assert rec["arguments"]["iters"] == 3 and rec["weights_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
        shas.append(rec["weights_sha256"])
    a0 = torch.load(tmp_path / "m0.pt", weights_only=True)
    a1 = torch.load(tmp_path / "m1.pt", weights_only=True)
    assert a0.keys() == a1.keys() and all(torch.equal(a0[k], a1[k]) for k in a0)  # same seed, same weights
    net, rec2 = load_model(str(out))
    assert rec2["model"]["base_channels"] == 4
