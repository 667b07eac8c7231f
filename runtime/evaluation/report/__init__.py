"""docs/benchmarks.md generated from stored results (`edgeloop bench report`), each table with its provenance."""
