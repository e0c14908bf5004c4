"""Generators of test and benchmark data with documented artefact models.

Production code never imports this package (``tests/test_no_testing_imports.py`` scans for it): it is
for ``tests/``, ``bench/``, the demo generator ``resources/demo/make_demo.py`` and the training tools
in :mod:`temtwin.training`.

* :mod:`.synth`: crystals in a zone axis, rendered micrographs (HAADF / HRTEM, noise, drift), scenes
  with truth, low-magnification devices and image stacks;
* :mod:`.twin_inputs`: exact upstream result files (image, segmentation, phases, gpa) for the twin stages;
* :mod:`.gpa_textbook`: a plain textbook two-g GPA (the comparison in bench/bench_gpa.py);
* :mod:`.phase_spots`: kinematic zone-axis spot patterns with truth, for phase-matching tests;
* :mod:`.fft_spectra`: power spectra and rendered regions with known FFT peaks (U-Net training data);
* :mod:`.sige_atoms`: a small SiGe [110] atom set for the image-simulation tests;
* :mod:`.heterostructure`, :mod:`.lattices`, :mod:`.scan_distortion`: heterostructures, lattices and
  scan-distortion models.
"""
