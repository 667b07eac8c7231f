"""`edgeloop tune`: planner tuning over a config file with Optuna, on one machine or a Ray cluster (docs/tuning.md)."""
