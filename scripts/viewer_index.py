"""Snakemake adapter for rule `viewer_index` (the code is in temtwin.viewer.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.viewer.stage:run_index")  # noqa: F821
