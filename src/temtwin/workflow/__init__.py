"""Glue between Snakemake and the library: stage context, script adapter, dataset discovery."""
