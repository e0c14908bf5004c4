"""Snakemake adapter for rule `tb_ldos` (the science is in temtwin.physics.tb_stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.physics.tb_stage:run_ldos")  # noqa: F821
