"""Snakemake adapter for rule `summary_table` (the code is in temtwin.report.summary)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.report.summary:run_table")  # noqa: F821
