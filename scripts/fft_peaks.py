"""Snakemake adapter for rule `fft_peaks` (the science is in temtwin.peaks.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.peaks.stage:run")  # noqa: F821
