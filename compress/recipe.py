"""Recipes: YAML validated by pydantic (unknown keys are errors), with dotted overrides."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from compress.errors import RecipeError
from compress.registry import ArtifactKind, Stage, StageConfig
from compress.stages import CATALOGUE
from compress.strict_yaml import load_strict, load_value
from compress.tasks.config import TaskConfig
from compress.validation import describe, folder_name_problem, suggest


class EvaluateConfig(BaseModel):
    """How the shared evaluator scores and times every variant."""

    model_config = ConfigDict(extra="forbid")

    split: Literal["dev", "test"] = "test"
    devices: list[Literal["cpu", "cuda"]] = ["cpu"]
    gpu_precisions: list[Literal["fp32", "fp16", "bf16"]] = ["fp32", "fp16"]
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default=[1, 8, 32], min_length=1)
    seq_len: int = Field(128, ge=8, le=512)
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads; default: OMP_NUM_THREADS, else the CPUs this "
        "process may use (its affinity)",
    )
    warmup: int = Field(3, ge=0)
    repeats: int = Field(20, ge=1)
    max_examples: int | None = Field(None, ge=1, description="score on the first N examples")
    latency: bool = True
    end_to_end: int = Field(
        200,
        ge=0,
        description="texts of the scored split (spread over it) timed end to end on the CPU: "
        "tokenizer plus model, batch 1, each at its own length, and in length-sorted batches "
        "of the batch sizes; 0: none. Runs with latency",
    )
    memory: bool = Field(True, description="peak CPU memory per model, in a fresh process")
    reference: str | None = Field(
        None, description="the step every row is compared with (Δ, speedup); default: the first"
    )


_HERE = Path(__file__).resolve().parent
# the recipes shipped with an installed package, or those of a source checkout
RECIPE_DIRS = (_HERE / "recipes", _HERE.parent / "recipes")

KIND_NAMES = {
    "torch": "a PyTorch model directory",
    "onnx": "an ONNX file",
    "bnb": "a bitsandbytes model",
    "openvino": "an OpenVINO model",
    "executorch": "an ExecuTorch program",
}


class Step(BaseModel):
    """One recipe step: a registered stage, its validated config and the step it reads
    (resolved at parse time: the recipe's ``input:`` or the stage's default)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    stage: str
    input: str | None = None
    config: StageConfig
    kind: ArtifactKind = "torch"  # what the step writes

    def config_hash(self) -> str:
        """What the recipe asks of this step: options left at their defaults are not part of
        it, so a release that adds an option does not make every finished step stale."""
        config = self.config.model_dump(
            mode="json", exclude_defaults=True, exclude=set(self.config.placement)
        )
        payload = json.dumps({"stage": self.stage, "config": config}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    description: str = ""
    task: TaskConfig
    seed: int = 42
    seeds: list[int] = Field(
        default_factory=list,
        description="repeat every step with each of these seeds (the first is the main run, "
        "whose outputs are timed; the others are scored) and report mean and sd per variant",
    )
    steps: list[Step] = Field(min_length=1)
    evaluate: EvaluateConfig = EvaluateConfig()
    _path: Path | None = PrivateAttr(None)  # the file it was read from, if any

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{seeds} repeats a seed; give each run its own")
        return seeds

    @model_validator(mode="after")
    def _main_seed(self) -> Recipe:
        if self.seeds:
            self.seed = self.seeds[0]  # the main run is the first seed's
        return self

    @property
    def repeat_seeds(self) -> list[int]:
        """The seeds of the repeated runs (beyond the main one)."""
        return self.seeds[1:]

    def with_seed(self, seed: int) -> Recipe:
        """This recipe as one repeated run: the same steps with ``seed``, no repeats."""
        copy = self.model_copy(update={"seed": seed, "seeds": []})
        copy._path = self._path
        return copy

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise RecipeError(f"no step named {name!r}{suggest(name, [s.name for s in self.steps])}")

    @property
    def configs(self) -> dict[str, StageConfig]:
        return {s.name: s.config for s in self.steps}

    @property
    def inputs(self) -> dict[str, str | None]:
        return {s.name: s.input for s in self.steps}

    def command(self, *overrides: str) -> str:
        """The command that runs this recipe again with ``overrides``."""
        shipped = self._path is None or self._path.parent in RECIPE_DIRS
        if shipped:
            return f"make recipe={self.name} ARGS='{' '.join(overrides)}'"
        return f"lert-compress run {self._path} " + " ".join(f"'{o}'" for o in overrides)

    @property
    def reference(self) -> str:
        """The step every report row is compared with."""
        evaluated = [s.name for s in self.steps if s.config.evaluated]
        return self.evaluate.reference or (evaluated or [self.steps[0].name])[0]

    def resolved(self) -> dict[str, Any]:
        """The merged recipe as plain data (what ``recipe.resolved.yaml`` holds)."""
        data = self.model_dump(mode="json", exclude={"steps"})
        data["steps"] = [
            {
                "name": s.name,
                "stage": s.stage,
                **({"input": s.input} if s.input else {}),
                **s.config.model_dump(mode="json"),
            }
            for s in self.steps
        ]
        return data


_STEP_KEYS = {"stage", "name", "input"}
_TOP_FIELDS = ["name", "description", "task", "seed", "seeds", "steps", "evaluate"]


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file, apply ``a.b.c=value`` overrides, validate, and return it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    raw = load_strict(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with task:, steps: and evaluate:")
    raw.setdefault("name", path.stem)
    check_overrides(overrides or [])
    for item in overrides or []:
        apply_override(raw, item)
    recipe = parse_recipe(raw, source=str(path))
    recipe._path = path.resolve()
    return recipe


def check_overrides(overrides: list[str]) -> None:
    """The same key set twice on one command line is refused: only the last would count."""
    first: dict[str, str] = {}
    for item in overrides:
        key = item.partition("=")[0]
        if key in first and first[key] != item:
            raise RecipeError(
                f"override {key} is given twice ({first[key]!r} and {item!r}); only the last "
                "would count: keep one"
            )
        first.setdefault(key, item)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in ``raw``; the value is parsed as a YAML scalar or flow collection.

    A step is addressed by index or by name: ``steps.1.epochs=2`` or ``steps.teacher.epochs=2``.
    """
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise RecipeError(f"override {item!r} is not of the form key.path=value")
    value = load_value(text, f"override {item!r}")
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: depth + 1]), item)
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key, item)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise RecipeError(f"override {item!r}: {'.'.join(parts[:-1])} is not a mapping")


def _child(node: Any, part: str, where: str, item: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, where, item)]
    if not isinstance(node, dict):
        raise RecipeError(f"override {item!r}: {where} is not a mapping")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def _list_index(node: list, part: str, where: str, item: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if -len(node) <= index < len(node):
            return index
        raise RecipeError(f"override {item!r}: {where} has no element {index}")
    names = [s.get("name", s.get("stage")) for s in node if isinstance(s, dict)]
    if part in names:
        return names.index(part)
    hint = suggest(part, [str(n) for n in names])
    raise RecipeError(f"override {item!r}: no step named {part!r}{hint}")


def parse_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate plain recipe data; every problem is listed with its path and a suggestion.

    Everything that can be known before any work is checked here: options, each step's input
    and its kind (an ONNX-only step after an export), cross-step references, and pruning
    targets against the architectures the recipe will produce.
    """
    problems: list[str] = []
    for key in raw:
        if key not in _TOP_FIELDS:
            problems.append(f"{key}: unknown key{suggest(key, _TOP_FIELDS)}")
    if "name" in raw and (problem := folder_name_problem("name", raw["name"])):
        problems.append(problem)
    steps = _parse_steps(raw.get("steps"), problems)
    top = {k: v for k, v in raw.items() if k in _TOP_FIELDS and k != "steps"}
    recipe = None
    try:
        recipe = Recipe.model_validate({**top, "steps": steps or []})
    except ValidationError as exc:
        # step problems were listed above; do not repeat them as "steps: too short"
        problems += [p for p in describe(exc, Recipe, ()) if not p.startswith("steps:")]
    if recipe is not None:
        from compress.tasks import check_task_config

        problems += check_task_config(recipe.task)
    if recipe is not None and not problems:
        problems += _check_steps(recipe)
    if recipe is not None and not problems:
        from compress.arch import plan_archs
        from compress.limits import limit_problems

        archs, arch_problems = plan_archs(recipe)
        problems += arch_problems + limit_problems(recipe, archs)
    if len(problems) == 1:
        raise RecipeError(f"{source}: invalid recipe: {problems[0]}")
    if problems:
        listing = "\n  - ".join(problems)
        raise RecipeError(f"{source}: invalid recipe:\n  - {listing}")
    assert recipe is not None
    return recipe


def _check_steps(recipe: Recipe) -> list[str]:
    """Cross-step checks: artifact kinds along the inputs, and the reference step."""
    problems = []
    configs = recipe.configs
    for step in recipe.steps:
        if step.input is not None:
            given = recipe.step(step.input).kind
            if given not in step.config.accepts():
                wanted = " or ".join(KIND_NAMES[k] for k in sorted(step.config.accepts()))
                hint = (
                    "; add `- stage: export` before it, or set input: to an export step"
                    if "onnx" in step.config.accepts()
                    else "; set input: to an earlier step that writes one"
                )
                problems.append(
                    f"steps({step.name}): stage {step.stage} needs {wanted} as input, but step "
                    f"{step.input!r} writes {KIND_NAMES[given]}{hint}"
                )
            elif (
                given == "onnx"
                and step.stage == "quantize"
                and recipe.step(step.input).stage == "quantize"
            ):
                problems.append(
                    f"steps({step.name}): step {step.input!r} is already quantized; set input: "
                    "to the export step, so each backend quantizes the fp32 model"
                )
    ref = recipe.evaluate.reference
    if ref is not None and ref not in configs:
        problems.append(f"evaluate.reference: no step named {ref!r}{suggest(ref, list(configs))}")
    elif ref is not None and not configs[ref].evaluated:
        evaluated = [s.name for s in recipe.steps if s.config.evaluated]
        problems.append(
            f"evaluate.reference: step {ref!r} writes no task model, so it has no row to "
            f"compare with; name one of {evaluated}"
        )
    for step in recipe.steps:
        for name in getattr(step.config, "best_of", []):
            kind = recipe.step(name).kind if name in configs else "torch"
            if kind != "torch":
                problems.append(
                    f"steps({step.name}).best_of: {name!r} writes {KIND_NAMES[kind]}; select "
                    "compares PyTorch models (select before export and quantize)"
                )
    from compress.tasks import task_type_of

    task_type = task_type_of(recipe.task)
    for i, step in enumerate(recipe.steps):
        transfer = getattr(step.config, "transfer", None)
        if transfer is not None and task_type not in (None, "classification"):
            problems.append(
                f"steps[{i}]({step.name}).transfer: transfer data (a text or a text pair per "
                f"row) is for classification tasks; this task is {task_type}"
            )
    return problems


def _parse_steps(raw_steps: Any, problems: list[str]) -> list[Step]:
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append("steps: a non-empty list of steps, each with a stage: key")
        return []
    steps: list[Step] = []
    inputs: dict[str, str | None] = {}
    kinds: dict[str, ArtifactKind] = {}
    seen: set[str] = set()
    for i, raw in enumerate(raw_steps):
        where = f"steps[{i}]"
        if not isinstance(raw, dict) or "stage" not in raw:
            problems.append(f"{where}: each step is a mapping with a stage: key")
            continue
        stage_name = str(raw["stage"])
        name = str(raw.get("name") or stage_name)
        if stage_name not in CATALOGUE:
            hint = suggest(stage_name, list(CATALOGUE))
            problems.append(f"{where}.stage: unknown stage {stage_name!r}{hint}")
            continue
        if problem := folder_name_problem(f"{where}.name", name):
            problems.append(problem)
            continue
        if name in seen:
            problems.append(f"{where}.name: {name!r} is used twice; give each step its own name")
        seen.add(name)
        config = _validate_stage(CATALOGUE[stage_name], raw, f"{where}({name})", problems)
        if config is None:
            continue
        own = config.check({s.name: s.config for s in steps})
        if own:
            problems += [f"{where}({name}): {p}" for p in own]
            continue
        step_input = raw.get("input")
        if step_input is not None and step_input not in inputs:
            problems.append(f"{where}.input: {step_input!r} is not an earlier step")
            continue
        previous = steps[-1].name if steps else None
        if step_input is None:
            step_input = config.default_input(previous, inputs)
        if step_input is None and config.needs_input():
            problems.append(f"{where}: stage {stage_name!r} needs an earlier step as its input")
            continue
        inputs[name] = step_input
        kinds[name] = config.produces(kinds.get(step_input) if step_input else None)
        steps.append(
            Step(name=name, stage=stage_name, input=step_input, config=config, kind=kinds[name])
        )
    return steps


def _validate_stage(stage: Stage, raw: dict, where: str, problems: list[str]) -> StageConfig | None:
    options = {k: v for k, v in raw.items() if k not in _STEP_KEYS}
    key = stage.discriminator
    if key and options.get(key, next(iter(stage.variants))) not in stage.variants:
        got = str(options[key])
        problems.append(f"{where}.{key}: unknown {key} {got!r}{suggest(got, list(stage.variants))}")
        return None
    config = stage.config_for(options)
    try:
        return config.model_validate(options)
    except ValidationError as exc:
        found = describe(exc, config, (where,), extra_names=sorted(_STEP_KEYS))
        problems += [_other_variant_hint(stage, p, options) for p in found]
        return None


def _other_variant_hint(stage: Stage, problem: str, options: dict) -> str:
    """An unknown key that belongs to another variant says which (``bits`` is bitsandbytes')."""
    if not stage.variants or "unknown key" not in problem:
        return problem
    key = problem.split(": unknown key")[0].rsplit(".", 1)[-1]
    owners = [v for v, cls in stage.variants.items() if key in cls.model_fields]
    if not owners:
        return problem
    current = options.get(stage.discriminator or "", next(iter(stage.variants)))
    return (
        f"{problem.split(': unknown key')[0]}: {key!r} is an option of "
        f"{stage.discriminator} {' / '.join(owners)}, not of {stage.discriminator} {current}"
    )
