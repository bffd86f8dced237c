"""The shared evaluator: task scores, latency and memory of every variant, and the report."""
