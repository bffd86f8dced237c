"""Recipe stages: importing this package registers every stage."""

from compress.stages import baseline, distill, finetune  # noqa: F401
