"""The stage contract: a leaf module that stages, the recipe and the runner all build on.

A stage is one function in one file::

    class PruneConfig(StageConfig): ...

    @stage("prune", PruneConfig)
    def prune(cfg: PruneConfig, src: Path | None, ctx: StageContext) -> StageResult: ...

``StageConfig`` declares every hook the recipe and runner call; a stage overrides only those it
needs. Nothing here imports the recipe, the runner or any stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from compress.arch import Arch
    from compress.tasks import TaskData

# What a step's output is: a PyTorch model directory, an ONNX file, a bitsandbytes directory
# (a PyTorch directory that only loads with its quantization config), or an OpenVINO IR.
ArtifactKind = Literal["torch", "onnx", "bnb", "openvino", "executorch"]


class StageConfig(BaseModel):
    """Base of every stage's options: unknown keys are errors; hooks have safe defaults."""

    model_config = ConfigDict(extra="forbid")

    # where a recipe names this step's model (for "use a local copy" hints), if anywhere
    model_key: ClassVar[str | None] = None
    # whether the stage trains data-parallel when the run has several processes (every process
    # runs it on its share of the data); otherwise only the first process runs it
    data_parallel: ClassVar[bool] = False
    # whether the step's output is a task model the evaluator scores (pre-trained and
    # general-distilled models are not: they have no task head)
    evaluated: ClassVar[bool] = True
    # options that say where the work runs, not what it makes (a fit study's database, its
    # workers): left out of the step's hash, so that moving a step to other machines neither
    # re-runs it nor starts its search again
    placement: ClassVar[tuple[str, ...]] = ()

    def needs_input(self) -> bool:
        """Whether the step reads an earlier step's output (else it starts from a source)."""
        return True

    def default_input(self, previous: str | None, inputs: Mapping[str, str | None]) -> str | None:
        """The step read when the recipe gives no ``input:`` (default: the previous one), given
        the inputs already resolved for the earlier steps."""
        return previous

    def references(self) -> list[str]:
        """Other steps this one depends on besides its input (their hashes join its own)."""
        return []

    def check(self, configs: Mapping[str, StageConfig]) -> list[str]:
        """Problems with this step given the earlier steps' configs (by step name)."""
        return []

    def accepts(self) -> set[ArtifactKind]:
        """The input kinds this step can read."""
        return {"torch"}

    def produces(self, input_kind: ArtifactKind | None) -> ArtifactKind:
        """The kind of output this step writes, given its input's kind."""
        return "torch"

    def out_arch(self, in_arch: Arch | None, archs: Mapping[str, Arch | None]) -> Arch | None:
        """The output's architecture where it can be known before any work (default: same)."""
        return in_arch

    def check_arch(self, in_arch: Arch) -> list[str]:
        """Problems with this step's targets for an input of architecture ``in_arch``."""
        return []

    def model_sources(self) -> list[str]:
        """Hub ids or directories this step loads models from (published rows use them)."""
        return []


@dataclass
class StageContext:
    """What a stage may use besides its own config and input."""

    task: TaskData
    max_seq_len: int
    seed: int
    step_dir: Path  # the temporary directory the stage writes into
    step_name: str
    configs: Mapping[str, StageConfig] = field(default_factory=dict)  # every step, by name
    inputs: Mapping[str, str | None] = field(default_factory=dict)  # each step's input step
    outputs: Mapping[str, Path] = field(default_factory=dict)  # earlier steps' outputs
    command: str = ""  # the command that runs the recipe again (model cards quote it)
    # where a long stage may keep its training state to continue after a kill (kept across
    # attempts of this very step, removed once it finishes)
    resume_dir: Path | None = None
    recipe_name: str = ""
    step_hash: str = ""  # the step's hash (its config, input chain, task and seed)


@dataclass
class StageResult:
    """A stage's output: the artifact, any extra variants beside it, and details to record."""

    output: Path
    details: dict[str, Any] = field(default_factory=dict)
    # label -> path inside the step directory, evaluated as rows of their own
    extra_variants: dict[str, Path] = field(default_factory=dict)
    # the output's kind where only the run decides it (a fit step's winner: ONNX or OpenVINO);
    # None: the kind ``produces`` declared
    kind: ArtifactKind | None = None


StageFn = Callable[[Any, Path | None, StageContext], StageResult]


@dataclass(frozen=True)
class Stage:
    """A registered stage: its name, config model(s) and function.

    A stage with several option sets (quantize backends) gives ``variants``: the value of the
    ``discriminator`` key picks the config model, the first one being the default.
    """

    name: str
    config: type[StageConfig]
    fn: StageFn
    variants: Mapping[str, type[StageConfig]] = field(default_factory=dict)
    discriminator: str | None = None

    def __call__(self, cfg: StageConfig, src: Path | None, ctx: StageContext) -> StageResult:
        return self.fn(cfg, src, ctx)

    @property
    def summary(self) -> str:
        doc = (self.config.__doc__ or "").strip().splitlines()
        return doc[0].replace("``", "`") if doc else ""

    def config_for(self, options: Mapping[str, Any]) -> type[StageConfig]:
        """The config model for these raw options (the variant their discriminator names)."""
        if not self.variants:
            return self.config
        key = options.get(self.discriminator or "", next(iter(self.variants)))
        return self.variants.get(str(key), self.config)


def stage(
    name: str,
    config: type[StageConfig],
    *,
    variants: Mapping[str, type[StageConfig]] | None = None,
    discriminator: str | None = None,
) -> Callable[[StageFn], Stage]:
    """Make ``fn(cfg, src, ctx) -> StageResult`` the recipe stage ``name``."""

    def register(fn: StageFn) -> Stage:
        return Stage(name, config, fn, dict(variants or {}), discriminator)

    return register
