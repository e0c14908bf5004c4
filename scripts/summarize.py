"""Snakemake adapter for rule `summarize` (the science is in temtwin.report.summary)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.report.summary:run")  # noqa: F821
