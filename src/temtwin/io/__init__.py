"""Input/output: micrograph ingest, dataset discovery and HDF5 results with provenance."""
