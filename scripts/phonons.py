"""Snakemake adapter for rule `phonons` (the science is in temtwin.physics.phonons_stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.physics.phonons_stage:run")  # noqa: F821
