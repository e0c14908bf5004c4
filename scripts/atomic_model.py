"""Snakemake adapter for rule `atomic_model` (the science is in temtwin.twin.model_stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.twin.model_stage:run")  # noqa: F821
