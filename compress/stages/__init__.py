"""Recipe stages: importing this package registers every stage."""

from compress.stages import finetune  # noqa: F401
