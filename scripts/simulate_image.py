"""Snakemake adapter for rule `simulate_image` (the science is in temtwin.simulate_image.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.simulate_image.stage:run")  # noqa: F821
