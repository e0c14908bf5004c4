"""Stage ``simulate_image``: simulate each twin's micrograph, compare it with the real one, fit the optics,
refine the model.

Modules: :mod:`optics` (wavelength, HRTEM transfer function, probe), :mod:`multislice` (exit waves with
abTEM), :mod:`hrtem` (image formation from exit waves on the image grid), :mod:`linear` (fast linear HAADF
model), :mod:`fit` (imaging-parameter fits with uncertainties), :mod:`compare` (NCC, SSIM, noise-normalised
RMS), :mod:`refine` (per-column displacement and composition refinement), :mod:`stage` (the rule).
"""
