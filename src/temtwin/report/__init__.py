"""Reporting: summary.json per sample and the cross-sample summary.tsv."""
