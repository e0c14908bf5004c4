"""Exit waves and STEM images with the independent multislice code abTEM (CPU by default, CuPy when asked).

Frame: atoms in Å (ASE), x right, y down, z along the beam; the cell must be orthogonal with the atoms
inside it.  abTEM arrays are (x, y); they are transposed here to (rows = y, cols = x).
Dask runs synchronously for one thread or on a thread pool of ``threads`` workers, so a job never uses
more cores than it was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _abtem(device: str = "cpu", threads: int = 1):
    """abTEM configured for this job: no progress bar, FFTW/MKL limited to ``threads``, CPU or GPU."""
    import abtem

    abtem.config.set({"diagnostics.progress_bar": False, "device": device, "fftw.threads": int(threads),
                      "mkl.threads": int(threads)})
    return abtem


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

    The first plane returned is after ``every_slices`` slices; the thickness of plane i is the depth of
    its last slice (nm).  The grid is the next FFT-friendly size at or above extent / ``sampling_A``
    (so the sampling is at most the one asked for; FFTs of sizes with large prime factors are slow).
    """
    import scipy.fft as sfft

    abtem = _abtem(device, threads)
    if not np.allclose(atoms.cell[:], np.diag(np.diag(atoms.cell[:])), atol=1e-6):
        raise ValueError("exit_waves needs an orthogonal cell")
    gpts = [sfft.next_fast_len(int(np.ceil(atoms.cell[i, i] / sampling_A - 1e-9))) for i in (0, 1)]
    pot = abtem.Potential(atoms, gpts=gpts, slice_thickness=slice_A, projection="infinite",
                          parametrization="lobato", exit_planes=int(every_slices))
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
    abtem = _abtem(device, threads)
    pot = abtem.Potential(atoms, sampling=sampling_A, slice_thickness=slice_A, projection="infinite",
                          parametrization="lobato")
    probe = abtem.Probe(energy=float(energy_eV), semiangle_cutoff=float(convergence_mrad),
                        defocus=float(defocus_nm) * 10.0, Cs=float(cs_um) * 1e4)
    ext = scan_extent_A or (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    scan = abtem.GridScan(start=(0, 0), end=ext, sampling=scan_sampling_A, endpoint=False)
    det = abtem.AnnularDetector(inner=float(detector_mrad[0]), outer=float(detector_mrad[1]))
    m = _compute(probe.scan(pot, scan=scan, detectors=det), threads)
    arr = np.asarray(m.array if device == "cpu" else m.array.get())
    return arr.T.astype(np.float64)
