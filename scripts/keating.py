"""Snakemake adapter for rule `keating` (the science is in temtwin.physics.keating_stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.physics.keating_stage:run")  # noqa: F821
