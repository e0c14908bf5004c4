"""Snakemake adapter for rule `scan_correct` (the science is in temtwin.scan_correct)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.scan_correct.stage:run")  # noqa: F821
