"""FFT peak finding per region (rule ``fft_peaks``).

* :mod:`.window`: the largest reliable window (or masked area) inside a region, minimum field of view
  from the pixel size;
* :mod:`.fftprep`: Welch-averaged, Hann-apodised power spectra on a standard frequency grid (nm^-1),
  ring-standardised log-power ``z`` and Gaussian-equivalent significance ``q`` (the SNR scale);
* detectors, each usable alone: :mod:`.gaussian` (blobs + 2D Gaussian fits), :mod:`.unet` (a small
  U-Net trained by :mod:`temtwin.training.fft_unet` on spectra from
  :mod:`temtwin.testing.fft_spectra`), :mod:`.profile` (row/column
  profile scanning merged against cross artefacts);
* :mod:`.combine`: merging, Friedel pairs, lattice completion, sub-pixel refinement, SNR, the
  amorphous / crystalline decision;
* :mod:`.metrics`: precision / recall against truth; :mod:`.analysis`: :func:`~temtwin.peaks.analysis.analyse_image`
  for library use (the stage function: :mod:`temtwin.stages.fft_peaks`).
"""

from .combine import PeakSet, find_peaks  # noqa: F401
from .fftprep import Spectrum, region_spectrum  # noqa: F401
from .analysis import analyse_image, analyse_region  # noqa: F401
from .window import region_window  # noqa: F401
