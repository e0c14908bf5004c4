"""Snakemake adapter for rule `segment` (the science is in temtwin.segment.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.segment.stage:run")  # noqa: F821
