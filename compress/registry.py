"""The stage registry: ``@stage("name", ConfigModel)`` makes a function a recipe step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from compress.recipe import Recipe
    from compress.tasks import TaskData


@dataclass
class StageContext:
    """What a stage may use besides its own config and input."""

    task: TaskData
    recipe: Recipe
    step_dir: Path  # the temporary directory the stage writes into
    step_name: str
    seed: int
    record: dict[str, Any] = field(default_factory=dict)  # details saved in the manifest


StageFn = Callable[[Any, Path | None, StageContext], Path]


@dataclass(frozen=True)
class Stage:
    name: str
    config: type[BaseModel]
    fn: StageFn
    needs_input: bool
    # which earlier step a step reads when the recipe does not say (default: the previous one)
    input_for: Callable[[Any, Recipe], str | None] | None = None


STAGES: dict[str, Stage] = {}


def stage(name: str, config: type[BaseModel], *, needs_input: bool = True, input_for=None):
    """Register ``fn(cfg, src, ctx) -> output path`` as the recipe stage ``name``.

    A config may define ``references() -> [step names]``: those steps' hashes join its own, so
    that changing them reruns it.
    """

    def register(fn: StageFn) -> StageFn:
        if name in STAGES:
            raise ValueError(f"stage {name!r} is registered twice")
        STAGES[name] = Stage(name, config, fn, needs_input, input_for)
        return fn

    return register


def load_stages() -> dict[str, Stage]:
    """Import every stage module so that its ``@stage`` runs, and return the registry."""
    import compress.stages  # noqa: F401  (import registers the stages)

    return STAGES
