"""Detector 2: a small U-Net that segments reflections in a standardised spectrum (CPU inference).

Input: one channel, ``asinh(q / 2)`` of the spectrum's significance map ``q`` (see
:mod:`.fftprep`; 0 outside the valid area), any size divisible by 8.  Output: per-pixel
probability that the pixel lies within 1.5 px of a reflection.  Reflections are the local maxima of
the probability (averaged with its point-inverted copy: the power spectrum of a real image is
centrosymmetric) above ``threshold``.

The weights shipped in ``resources/models/fft_unet.pt`` were made by :mod:`.train` (the record of
how is ``resources/models/fft_unet.json``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from .fftprep import Spectrum

MODELS_DIR = Path(__file__).resolve().parents[3] / "resources" / "models"
DEFAULT_WEIGHTS = MODELS_DIR / "fft_unet.pt"


def input_channel(q: np.ndarray) -> np.ndarray:
    """The network input from a significance map (float32)."""
    return np.arcsinh(np.asarray(q, np.float32) / 2.0).astype(np.float32)


def build_unet(base: int = 8, depth: int = 3):
    """A U-Net with ``depth`` poolings and ``base`` channels at full resolution (torch.nn.Module)."""
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ch = [base * 2 ** i for i in range(depth + 1)]
            self.enc = nn.ModuleList([block(1 if i == 0 else ch[i - 1], ch[i]) for i in range(depth)])
            self.mid = block(ch[depth - 1], ch[depth])
            self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(depth))])
            self.dec = nn.ModuleList([block(2 * ch[i], ch[i]) for i in reversed(range(depth))])
            self.head = nn.Conv2d(ch[0], 1, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            skips = []
            for e in self.enc:
                x = e(x)
                skips.append(x)
                x = self.pool(x)
            x = self.mid(x)
            for up, dec, s in zip(self.up, self.dec, reversed(skips)):
                x = dec(torch.cat([up(x), s], 1))
            return self.head(x)

    return UNet()


@lru_cache(maxsize=4)
def load_model(path: str | None = None):
    """The trained network (eval mode, CPU) and its record dict; cached per path."""
    import torch

    from ..errors import UserError

    p = Path(path) if path else DEFAULT_WEIGHTS
    if not p.is_file():
        raise UserError("U-Net weights not found; run `temtwin train-unet` or set fft_peaks.unet.weights", p)
    state = torch.load(p, map_location="cpu", weights_only=True)
    arch = state.pop("__arch__", None)
    base, depth = (int(arch[0]), int(arch[1])) if arch is not None else (8, 3)
    net = build_unet(base, depth)
    net.load_state_dict(state)
    net.eval()
    rec_path = p.with_suffix(".json")
    record = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
    return net, record


def predict(net, q: np.ndarray) -> np.ndarray:
    """Reflection probability map (float32, q's shape) from a significance map (padded to /8)."""
    import torch

    x = input_channel(q)
    H, W = x.shape
    ph, pw = (-H) % 8, (-W) % 8
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw)))
    with torch.inference_mode():
        y = net(torch.from_numpy(x)[None, None])
        p = torch.sigmoid(y)[0, 0].numpy()
    return p[:H, :W].astype(np.float32)


def symmetrise(p: np.ndarray, center: int) -> np.ndarray:
    """Average a map with its point inversion about grid pixel (center, center)."""
    S = p.shape[0]
    idx = (2 * center - np.arange(S))
    ok = (idx >= 0) & (idx < S)
    inv = np.zeros_like(p)
    inv[np.ix_(ok, ok)] = p[np.ix_(idx[ok], idx[ok])]
    both = np.zeros(S, bool)
    both[ok] = True
    m = both[:, None] & both[None, :]
    return np.where(m, 0.5 * (p + inv), p)


def detect_unet(sp: Spectrum, net=None, threshold: float = 0.5, weights: str | None = None):
    """Detector 2 on a spectrum.  Returns dict ``rows``, ``cols`` (probability-weighted centroids of
    3x3 neighbourhoods), ``score`` (probability), ``prob`` (the map)."""
    if net is None:
        net, _ = load_model(weights)
    p = predict(net, np.where(sp.valid, sp.q, 0.0))
    p = symmetrise(p, sp.center) * sp.inner()
    mx = ndimage.maximum_filter(p, size=3, mode="constant")
    r, c = np.nonzero((p == mx) & (p >= threshold))
    # 3x3 centroid
    off = np.array([-1, 0, 1])
    S = sp.size
    RR = np.clip(r[:, None, None] + off[None, :, None], 0, S - 1)
    CC = np.clip(c[:, None, None] + off[None, None, :], 0, S - 1)
    w = p[RR, CC]
    ws = w.sum((1, 2)) + 1e-12
    rows = (w * RR).sum((1, 2)) / ws
    cols = (w * CC).sum((1, 2)) / ws
    return {"rows": rows, "cols": cols, "score": p[r, c], "prob": p}
