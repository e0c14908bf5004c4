"""Snakemake adapter for rule `spin_orbit` (the science is in temtwin.spin_orbit.stage)."""

from temtwin.workflow.context import run_stage

run_stage(snakemake, "temtwin.spin_orbit.stage:run")  # noqa: F821
