"""The report's sections, one module each; compress/eval/report.py assembles them:

- ``table``: the variants' scores, intervals, latency and memory (and F1 per class);
- ``seeds``: scores across the recipe's seeds;
- ``kd``: starting points, distillation data, KD trials, select steps;
- ``fit``: each fit step's candidates and its shipped winner;
- ``conversions``: converted models against their sources;
- ``recommendations``: what to ship, and the published numbers;
- ``pareto``: the score-against-latency plot.
"""
