"""FFT peaks of one region or of every region of an image (the science of rule ``fft_peaks``).

:func:`analyse_region`: window, standardised spectrum and combined peaks of one region; :func:`analyse_image`:
every region of a label map (a whole image is one region when no label map is given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .combine import PeakSet, find_peaks
from .fftprep import Spectrum, region_spectrum
from .window import RegionWindow, region_window


@dataclass
class RegionResult:
    """Everything found for one region."""

    label: int
    window: RegionWindow
    spectrum: Spectrum | None
    peaks: PeakSet | None

    @property
    def crystalline(self) -> bool:
        return bool(self.peaks is not None and self.peaks.crystalline)

    @property
    def n_peaks(self) -> int:
        return 0 if self.peaks is None else len(self.peaks)


def default_settings() -> dict:
    """The ``peaks`` config section with every default filled in."""
    from ..config import load_config

    return dict(load_config({}, require_dataset=False)["fft_peaks"])


def _net(cfg: dict):
    if "unet" not in cfg["detectors"]:
        return None
    from .unet import load_model

    return load_model(cfg["unet"].get("weights"))[0]


def analyse_region(image: np.ndarray, pixel_size_nm, mask: np.ndarray | None = None, cfg: dict | None = None,
                   net=None, label: int = 1, workers: int | None = None) -> RegionResult:
    """Window, standardised spectrum and combined peaks of one region (``mask`` None: whole image)."""
    cfg = {**default_settings(), **(cfg or {})}
    image = np.asarray(image, np.float32)
    if mask is None:
        mask = np.ones(image.shape, bool)
    win = region_window(mask, pixel_size_nm, cfg["min_window_nm"], cfg["min_window_px"], cfg["max_window_px"],
                        cfg["masked_fraction"])
    if not win.usable:
        return RegionResult(label, win, None, None)
    sp = region_spectrum(image, pixel_size_nm, win.box, win.weight, size=cfg["fft_size"],
                         k_max=cfg["k_max_nm_inv"], overlap=cfg["overlap"], g_min=1.0 / cfg["d_max_nm"],
                         workers=workers)
    if net is None and "unet" in cfg["detectors"]:
        net = _net(cfg)
    pk = find_peaks(sp, detectors=tuple(cfg["detectors"]), false_alarms=cfg["false_alarms"], unet_net=net,
                    unet_threshold=cfg["unet"]["threshold"], friedel_px=cfg["friedel_tolerance_px"],
                    lattice_completion=cfg["lattice_completion"],
                    lattice_false_alarms=cfg["lattice_false_alarms"],
                    crystalline_false_alarms=cfg["crystalline_false_alarms"],
                    unet_min_snr=cfg["unet"].get("min_snr", 2.0))
    return RegionResult(label, win, sp, pk)


def analyse_image(image: np.ndarray, pixel_size_nm, labels: np.ndarray | None = None, cfg: dict | None = None,
                  progress=None, workers: int | None = None) -> dict[int, RegionResult]:
    """:func:`analyse_region` for every label > 0 of ``labels`` (None: the whole image is region 1)."""
    cfg = {**default_settings(), **(cfg or {})}
    image = np.asarray(image, np.float32)
    if labels is None:
        labels = np.ones(image.shape, np.int32)
    net = _net(cfg)
    from .tiled import LARGE_PX

    if labels.size > LARGE_PX:          # gigapixel overviews: each region on its bounding box
        from .tiled import analyse_large

        return analyse_large(image, pixel_size_nm, labels, cfg, net=net, progress=progress, workers=workers)
    ids = [int(v) for v in np.unique(labels) if v > 0]
    out = {}
    for k, lab in enumerate(ids):
        out[lab] = analyse_region(image, pixel_size_nm, labels == lab, cfg, net=net, label=lab, workers=workers)
        if progress:
            progress(k + 1, len(ids), "regions")
    return out
