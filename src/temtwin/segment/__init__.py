"""Segmentation of micrographs into regions (rule ``segment``).

* :func:`~temtwin.segment.canny.segment_auto`: automatic edge-based segmentation (default method),
  every parameter derived from the image (scale from pixel size and lattice periodicity, hysteresis
  thresholds from gradient statistics, statistical region merging, full-resolution refinement);
* :func:`~temtwin.segment.sam.segment_sam`: Segment Anything (``segment-anything``) with overlap
  resolution into a label image;
* :func:`~temtwin.segment.override.read_label_override`: a hand-made label map
  (``<sample>/labels/<image>.tif|.png|.npy``) that replaces the automatic result;
* :func:`~temtwin.segment.regions.region_table`, :func:`~temtwin.segment.regions.region_contours`:
  region properties and contour polygons in nm;
* :func:`~temtwin.segment.metrics.matched_iou`: accuracy against truth labels;
* :func:`~temtwin.stages.segment.run`: the stage function.
"""
