"""Recipe stages: importing this package registers every stage."""

from compress.stages import baseline, distill, export, finetune, prune, quantize  # noqa: F401
