"""Exit waves and STEM images with the independent multislice code abTEM (CPU by default, CuPy when asked).

Frame: atoms in Å (ASE), x right, y down, z along the beam; the cell must be orthogonal with the atoms
inside it.  abTEM arrays are (x, y); they are transposed here to (rows = y, cols = x).
Dask runs synchronously for one thread or on a thread pool of ``threads`` workers, so a job never uses
more cores than it was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# FFTW plans made with abTEM's default FFTW_MEASURE cost seconds to minutes per grid size and thread count
# (27 s for one 2450² plan on this machine), more than the transforms they speed up in one simulation.
FFTW_PLANNING = "FFTW_ESTIMATE"


def _abtem(device: str = "cpu", threads: int = 1):
    """abTEM configured for this job: no progress bar, FFTW/MKL limited to ``threads``, CPU or GPU.

    FFTW's accumulated wisdom is forgotten first: an FFTW_ESTIMATE plan reuses any wisdom of a more rigorous
    plan made earlier in the process (e.g. an FFTW_MEASURE plan of another caller), which selects another
    algorithm and changes the exit waves by ~2e-6 (float32 rounding).  Without wisdom the plan is a fixed
    function of the transform (size, alignment, threads), so a rerun gives bit-identical results
    whatever ran before it in the process (tests/test_simulate_image_repro.py).
    """
    import abtem

    abtem.config.set({"diagnostics.progress_bar": False, "device": device, "fftw.threads": int(threads),
                      "mkl.threads": int(threads), "fftw.planning_effort": FFTW_PLANNING})
    forget_fftw_wisdom()
    return abtem


def forget_fftw_wisdom() -> None:
    """Drop FFTW's in-process wisdom (no-op without pyFFTW): plans are then chosen by FFTW_ESTIMATE alone."""
    try:
        import pyfftw
    except ImportError:
        return
    pyfftw.forget_wisdom()


def _integrator(device: str):
    """The projected-potential integrator: real-FFT equivalent of abTEM's on CPU, abTEM's own on GPU."""
    if device != "cpu":
        return None
    from .potential import fast_integrator

    return fast_integrator("lobato")


def _compute(obj, threads: int):
    if threads <= 1:
        return obj.compute(scheduler="synchronous")
    return obj.compute(scheduler="threads", num_workers=int(threads))


def gpu_available() -> bool:
    """True when CuPy and a CUDA device are usable (the optional GPU path)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@dataclass
class ExitWaves:
    """Exit waves at several depths: ``waves`` (n, rows, cols) complex64, ``thickness_nm`` (n,),
    ``sampling_A`` (x, y) per pixel, ``extent_A`` (x, y) of the periodic cell, ``energy_eV``."""

    waves: np.ndarray
    thickness_nm: np.ndarray
    sampling_A: tuple[float, float]
    extent_A: tuple[float, float]
    energy_eV: float


def exit_waves(atoms, energy_eV: float, sampling_A: float = 0.05, slice_A: float = 2.0,
               every_slices: int = 1, threads: int = 1, device: str = "cpu") -> ExitWaves:
    """Plane-wave multislice (lobato potential, infinite projection) with exit planes every ``every_slices``.

    The potential slices are integrated with real FFTs (:mod:`potential`, equal to abTEM's to float32
    rounding); the multislice is abTEM's.
    The first plane returned is after ``every_slices`` slices; the thickness of plane i is the depth of
    its last slice (nm).  The grid is the next FFT-friendly size at or above extent / ``sampling_A``
    (so the sampling is at most the one asked for; FFTs of sizes with large prime factors are slow).
    """

    abtem = _abtem(device, threads)
    if not np.allclose(atoms.cell[:], np.diag(np.diag(atoms.cell[:])), atol=1e-6):
        raise ValueError("exit_waves needs an orthogonal cell")
    gpts = [_fast_len(atoms.cell[i, i] / sampling_A) for i in (0, 1)]
    pot = abtem.Potential(atoms, gpts=gpts, slice_thickness=slice_A, projection="infinite",
                          parametrization="lobato", exit_planes=int(every_slices), integrator=_integrator(device))
    w = _compute(abtem.PlaneWave(energy=float(energy_eV)).multislice(pot), threads)
    arr = np.asarray(w.array if device == "cpu" else w.array.get())
    if arr.ndim == 2:
        arr = arr[None]
    st = np.asarray(pot.slice_thickness, float)
    depth = np.concatenate([[0.0], np.cumsum(st)])
    planes = np.asarray(pot.exit_planes, int)
    arr = np.transpose(arr, (0, 2, 1)).astype(np.complex64)
    keep = planes >= 0  # abTEM: -1 = entrance surface, k = after slice k (0-based)
    ext = (float(pot.extent[0]), float(pot.extent[1]))
    samp = (ext[0] / arr.shape[2], ext[1] / arr.shape[1])
    return ExitWaves(arr[keep], depth[planes[keep] + 1] / 10.0, samp, ext, float(energy_eV))


def haadf_multislice(atoms, energy_eV: float, convergence_mrad: float, detector_mrad: tuple[float, float],
                     scan_sampling_A: float, sampling_A: float = 0.05, slice_A: float = 2.0,
                     scan_extent_A: tuple[float, float] | None = None, defocus_nm: float = 0.0,
                     cs_um: float = 0.0, threads: int = 1, device: str = "cpu") -> np.ndarray:
    """Annular-detector STEM image (fraction of the probe intensity), rows = y, by multislice.

    No frozen phonons (a static lattice); the scan covers ``scan_extent_A`` (x, y) from the origin
    (default the cell) with ``scan_sampling_A`` steps, endpoint excluded.
    """
    ext = scan_extent_A or (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    gpts = (max(1, int(round(ext[0] / scan_sampling_A))), max(1, int(round(ext[1] / scan_sampling_A))))
    return stem_multislice(atoms, energy_eV, convergence_mrad, [detector_mrad], (0.0, 0.0),
                           (gpts[0] * scan_sampling_A, gpts[1] * scan_sampling_A), gpts, sampling_A, slice_A,
                           defocus_nm, cs_um, threads, device)[0]


def max_angle_mrad(energy_eV: float, sampling_A: float) -> float:
    """Largest scattering angle (mrad) a grid of ``sampling_A`` keeps after abTEM's 2/3 antialiasing."""
    from .optics import wavelength_A

    return 1e3 * wavelength_A(energy_eV) / (2.0 * float(sampling_A)) * (2.0 / 3.0)


def stem_multislice(atoms, energy_eV: float, convergence_mrad: float, detectors_mrad, scan_start_A, scan_end_A,
                    scan_gpts, sampling_A: float = 0.05, slice_A: float = 2.0, defocus_nm: float = 0.0,
                    cs_um: float = 0.0, threads: int = 1, device: str = "cpu") -> list[np.ndarray]:
    """STEM images (fraction of the probe intensity on each annular detector), rows = y, by multislice.

    ``detectors_mrad``: list of (inner, outer) semi-angles (mrad); an outer angle beyond the grid's
    :func:`max_angle_mrad` collects only up to that angle (the caller reports it).  The probe (convergence
    semi-angle, ``defocus_nm`` positive = underfocus, Cs in µm) is scanned over a ``scan_gpts`` (x, y) grid
    from ``scan_start_A`` to ``scan_end_A`` (Å, cell frame, endpoint excluded).  Static lattice (no frozen
    phonons): thermal diffuse scattering is missing, so HAADF intensities are underestimated (the fitted
    scale absorbs a global factor).  The cell is periodic in x, y: keep the scan ≥ a probe tail away from
    its edges.
    """
    abtem = _abtem(device, threads)
    gp = [_fast_len(atoms.cell[i, i] / sampling_A) for i in (0, 1)]
    pot = abtem.Potential(atoms, gpts=gp, slice_thickness=slice_A, projection="infinite",
                          parametrization="lobato", integrator=_integrator(device))
    probe = abtem.Probe(energy=float(energy_eV), semiangle_cutoff=float(convergence_mrad),
                        defocus=float(defocus_nm) * 10.0, Cs=float(cs_um) * 1e4)
    scan = abtem.GridScan(start=tuple(float(v) for v in scan_start_A), end=tuple(float(v) for v in scan_end_A),
                          gpts=tuple(int(v) for v in scan_gpts), endpoint=False)
    amax = max_angle_mrad(energy_eV, float(atoms.cell[0, 0]) / gp[0])
    dets = [abtem.AnnularDetector(inner=float(i), outer=float(min(o, amax * 0.999))) for i, o in detectors_mrad]
    m = probe.scan(pot, scan=scan, detectors=dets)
    ms = m if isinstance(m, list) else [m]
    out = []
    for mm in ms:
        c = _compute(mm, threads)
        arr = np.asarray(c.array if device == "cpu" else c.array.get())
        out.append(arr.T.astype(np.float64))
    return out


def _fast_len(n: float) -> int:
    """The next FFT-friendly size ≥ n that is not a multiple of 256 above 512: rows of such sizes alias in the
    CPU cache (a 1536² FFTW_ESTIMATE transform took 0.16 CPU-s here, 1540² 0.023 s)."""
    import scipy.fft as sfft

    m = sfft.next_fast_len(int(np.ceil(float(n) - 1e-9)))
    while m > 512 and m % 256 == 0:
        m = sfft.next_fast_len(m + 1)
    return m
