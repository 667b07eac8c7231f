"""The tools that judge a model or a planner: benchmarks, the INT8 accuracy report, the demo, planner tuning."""
