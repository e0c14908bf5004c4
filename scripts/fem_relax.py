"""Snakemake adapter for rule `fem_relax` (the science is in temtwin.fem_relax.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.fem_relax.stage:run")  # noqa: F821
