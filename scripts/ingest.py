"""Snakemake adapter for rule `ingest` (the science is in temtwin.io.ingest)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.io.ingest:run")  # noqa: F821
