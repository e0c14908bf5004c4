"""Figures of stage ``scan_correct``: recorded vs corrected image and spectrum, jitter profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plotting import image_extent_nm, new_figure, save_figure


def _logfft(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, float)
    w = np.hanning(a.shape[0])[:, None] * np.hanning(a.shape[1])[None, :]
    P = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2((a - a.mean()) * w))))
    return P


def scan_correction_figures(raw: np.ndarray, m, frag: dict, res, folder) -> None:
    """Write ``overview.png`` (recorded and corrected image, their spectra) and ``jitter.png`` (per-row
    fast-scan offsets) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = image_extent_nm(raw.shape, m.pixel_size_nm)
    fig, ax = new_figure(2, 2, size=4.0)
    n = min(raw.shape[0], 256)
    c = min(raw.shape[1], 256)
    crop = np.s_[:n, :c]
    ext_c = image_extent_nm((n, c), m.pixel_size_nm)
    for k, (img, title) in enumerate([(raw, "recorded"), (m.data, "corrected" if frag["changed"] else "unchanged")]):
        ax[0, k].imshow(img[crop], cmap="gray", extent=ext_c)
        ax[0, k].set_title(f"{title} (top-left {c}x{n} px)")
        ax[0, k].set_xlabel("x (nm)")
        ax[0, k].set_ylabel("y (nm)")
        P = _logfft(img)
        lo, hi = np.percentile(P, [50, 99.9])
        ax[1, k].imshow(P, cmap="magma", vmin=lo, vmax=hi)
        ax[1, k].set_title(f"{title}: |FFT| (log)")
        ax[1, k].set_axis_off()
    d = frag.get("drift", [0.0, 0.0])
    fig.suptitle(f"scan correction: {frag['method']}; drift dx {100 * d[0]:.2f} %, dy {100 * d[1]:.2f} %; "
                 f"jitter RMS {frag.get('jitter_rms_px', 0.0):.2f} px\n{frag['reason'][:150]}", fontsize=8)
    del ext
    save_figure(fig, folder / "overview.png")
    fig, ax = new_figure(1, 1, size=5.0)
    a = ax[0, 0]
    if res is not None and res.jitter is not None and "jitter" in frag["method"]:
        o = res.jitter.offset_px
        rows = np.arange(len(o))
        a.plot(o, rows, lw=0.7, color="C0", label="offset")
        s = np.where(np.isfinite(res.jitter.sigma_px), res.jitter.sigma_px, np.nan)
        a.fill_betweenx(rows, o - s, o + s, color="C0", alpha=0.3, label="± 1σ")
        a.legend(fontsize=8)
    else:
        a.text(0.5, 0.5, "no row jitter corrected", ha="center", va="center", transform=a.transAxes)
    a.invert_yaxis()
    a.set_xlabel("fast-scan offset of the row (px)")
    a.set_ylabel("row (slow scan)")
    a.set_title("row jitter")
    save_figure(fig, folder / "jitter.png")
