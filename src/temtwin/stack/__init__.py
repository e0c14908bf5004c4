"""Image stacks: low-to-high magnification registration, composition into the overview frame, and
propagation of phases, orientations and strain statistics to the overview's regions.

* :mod:`.register`: pairwise registration (normalised cross-correlation + Levenberg-Marquardt refinement),
  with :mod:`.sampling` (common resolution and pixel grid) and :mod:`.lattice` (lattice-fringe low-pass);
* :mod:`.inputs`: readers of the per-image results (segmentation, phases, GPA);
* :mod:`.chain`: ordering by pixel size, parent choice, composition of transforms into the overview;
* :mod:`.propagate`: per overview region, the phases/strain of the images that fall inside it;
* :mod:`temtwin.stages.register_stack`: the ``register_stack`` workflow stage.
"""
