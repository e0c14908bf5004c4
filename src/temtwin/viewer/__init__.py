"""Interactive viewer pages: ``results/<sample>/viewer.html`` (check and correct each region's call)
and ``results/index.html`` (every sample and region of summary.tsv).  See :mod:`temtwin.viewer.pages`."""
