"""Snakemake adapter for rule `fem_geometry` (the science is in temtwin.twin.fem_stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.twin.fem_stage:run")  # noqa: F821
