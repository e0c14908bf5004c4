"""STEM scan-distortion correction (stage ``scan_correct``): row jitter and linear drift.

Modules: :mod:`.lattice` (FFT lattice peaks, periodic reference, refined g vectors), :mod:`.jitter`
(row-by-row fast-scan offsets), :mod:`.drift` (linear drift from the lattice metric), :mod:`.core`
(the whole correction and the resampling), :mod:`temtwin.stages.scan_correct` (the Snakemake stage), :mod:`.figures`.
"""

from .core import ScanCorrection, correct_scan, resample_scan

__all__ = ["ScanCorrection", "correct_scan", "resample_scan"]
