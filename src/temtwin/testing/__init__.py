"""Generators of test and benchmark data with documented artefact models.

Production code never imports this package: it is for ``tests/`` and ``bench/`` only.
"""
