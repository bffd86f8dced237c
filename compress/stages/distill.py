"""Stage ``distill``: the input model teaches a smaller student with TextBrewer."""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from compress import dist
from compress.arch import Arch, arch_of_source
from compress.data import encode_splits
from compress.distillation import KDConfig, distil
from compress.errors import DataError
from compress.models import ModelSource, count_parameters, load_model, load_tokenizer, save_model
from compress.registry import StageConfig, StageContext, StageResult, stage
from compress.students import StudentConfig, build_student
from compress.transfer import TransferConfig

log = logging.getLogger(__name__)


class KDSearch(BaseModel):
    """KD settings chosen on the dev split: every combination of the lists given trains from the
    same initial student (labelled rows only, the teacher run per batch) and is scored on dev
    against the trivial predictor (the majority class, all-O, the empty answer).

    Rounds of successive halving (Optuna's ``SuccessiveHalvingPruner``): the first round is
    ``trial_steps`` (default ``trial_epochs`` of an epoch); while no trial has left the trivial
    predictor by its paired interval, the trials the pruner keeps train again from the same
    start, ``reduction_factor`` times longer, up to the cap (the step's own length, or
    ``max_trial_epochs``; no new round after ``max_seconds``). The best of the first round
    with a trial off the baseline is chosen (the first of equal scores); with none by the cap,
    the stage's defaults are used and the record says "no signal". Every round of every trial is
    recorded."""

    model_config = ConfigDict(extra="forbid")

    temperature: list[float] = Field(default_factory=list)
    hard_label_weight: list[float] = Field(default_factory=list)
    matches: list[Literal["none", "uniform"]] = Field(default_factory=list)
    trial_steps: int | None = Field(
        None, ge=1, description="optimizer steps of the first round (default: trial_epochs)"
    )
    trial_epochs: float = Field(
        0.5, gt=0, description="the first round's length as a fraction of an epoch of the data"
    )
    reduction_factor: int = Field(
        2, ge=2, description="each round is this many times longer; the pruner keeps ~1/this"
    )
    max_trial_epochs: float | None = Field(
        None, gt=0, description="the longest a trial trains (default: as long as the step)"
    )
    max_seconds: float | None = Field(
        None, gt=0, description="no new round starts once the search has taken this long"
    )

    def grid(self) -> list[dict]:
        keys = [k for k in ("temperature", "hard_label_weight", "matches") if getattr(self, k)]
        values = [getattr(self, k) for k in keys]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]

    def rounds(self, per_epoch: int, step_steps: int) -> list[int]:
        """The optimizer steps of each round: the first, then ``reduction_factor`` times the
        last, up to the cap (itself the last round)."""
        first = self.trial_steps or max(1, round(self.trial_epochs * per_epoch))
        cap = step_steps
        if self.max_trial_epochs is not None:
            cap = max(1, round(self.max_trial_epochs * per_epoch))
        rounds = [first]
        while rounds[-1] < cap:
            rounds.append(min(cap, rounds[-1] * self.reduction_factor))
        return rounds


class DistillConfig(KDConfig, StageConfig):
    """Distil the input model into a student (TextBrewer), keeping the best dev checkpoint."""

    data_parallel: ClassVar[bool] = True

    student: StudentConfig
    transfer: TransferConfig | None = Field(
        None, description="unlabelled texts the teacher labels, mixed with the train split"
    )
    search: KDSearch | None = Field(
        None, description="choose temperature / hard_label_weight / matches on dev first"
    )
    labelled_rows: int | None = Field(
        None,
        ge=1,
        description="learn from this many labelled train rows only (a draw seeded by the run's "
        "seed; its no-KD baseline gets the same rows), e.g. to measure KD with few labels",
    )
    model_key: ClassVar[str | None] = "student.init"

    def out_arch(self, in_arch: Arch | None, archs: Mapping) -> Arch | None:
        if self.student.init == "teacher":
            return in_arch.with_(layers=len(self.student.layers or [])) if in_arch else None
        if self.student.shape is not None:
            return arch_of_source(ModelSource(shape=self.student.shape))
        init = self.student.init
        arch = archs.get(init) if init in archs else arch_of_source(init)
        if arch is not None and self.student.layers:
            arch = arch.with_(layers=len(self.student.layers))
        return arch

    def check(self, configs) -> list[str]:
        problems = []
        if self.search is not None:
            if not self.search.grid() or len(self.search.grid()) < 2:
                problems.append("search: give at least two settings to choose from")
            both = [
                k
                for k in ("temperature", "hard_label_weight", "matches")
                if getattr(self.search, k) and k in self.model_fields_set
            ]
            if both:
                problems.append(
                    f"{both[0]}: set here and searched in search.{both[0]}; give one (the "
                    "search's choice would replace it)"
                )
        if self.transfer is None:
            return problems
        problems += [
            f"transfer.files: {f} does not exist"
            for f in self.transfer.files
            if not Path(f).is_file()
        ]
        if self.transfer.rest_of_train and self.labelled_rows is None:
            problems.append(
                "transfer.rest_of_train: the rest of what? set labelled_rows (the rows that "
                "keep their labels)"
            )
        return problems

    def check_arch(self, in_arch: Arch) -> list[str]:
        """A student initialised from a model must share the teacher's vocabulary; explicit
        matches must name layers the teacher and the student have."""
        student = self.out_arch(in_arch, {})
        problems = []
        init, theirs = self.student.init, student.vocab if student else None
        known = None not in (in_arch.vocab, theirs)
        if init not in (None, "teacher") and known and theirs != in_arch.vocab:
            problems.append(
                f"student.init: {init} has a vocabulary of {theirs} tokens, the teacher "
                f"{in_arch.vocab}; distillation feeds both the same ids, so use a student "
                "with the teacher's vocabulary (all LERT sizes share one)"
            )
        for i, m in enumerate(self.matches if isinstance(self.matches, list) else []):
            if m.layer_T > in_arch.layers:
                problems.append(
                    f"matches[{i}].layer_T {m.layer_T}: the teacher has {in_arch.layers} layers "
                    "(0 is the embeddings)"
                )
            if student is not None and m.layer_S > student.layers:
                problems.append(
                    f"matches[{i}].layer_S {m.layer_S}: the student has {student.layers} layers "
                    "(0 is the embeddings)"
                )
        return problems

    def references(self) -> list[str]:
        """An ``init:`` that names an earlier step (its hash joins this step's)."""
        init = self.student.init
        return [init] if init and init != "teacher" else []

    def model_sources(self) -> list[str]:
        init = self.student.init
        return [init] if init and init != "teacher" else []


@stage("distill", DistillConfig)
def distill(cfg: DistillConfig, src: Path | None, ctx: StageContext) -> StageResult:
    assert src is not None
    teacher, tokenizer = load_model(src, ctx.task.type), load_tokenizer(src)
    student, tokenizer = build_student(cfg.student, teacher, tokenizer, ctx.task, ctx.outputs)
    task, rest = labelled_subset(ctx.task, cfg.labelled_rows, ctx.seed, ctx.step_name)
    enc = encode_splits(task, tokenizer, ctx.max_seq_len)
    labelled = len(enc["train"])
    search = None
    if cfg.search is not None:
        from transformers import set_seed

        cfg, search = search_on_dev(cfg, teacher, tokenizer, task, enc, ctx)
        set_seed(ctx.seed)  # a seeded start, as every trial's
        student, tokenizer = build_student(cfg.student, teacher, tokenizer, ctx.task, ctx.outputs)
    if cfg.transfer is None:
        result = distil(cfg, teacher, student, task, enc, ctx.seed, ctx.step_name, ctx.step_dir)
        result["data"] = {"labelled_rows": labelled, "transfer_rows": 0}
    else:
        if ctx.task.type != "classification":
            raise DataError(
                f"step {ctx.step_name}: transfer: data (a text or a text pair per row) is for "
                f"classification tasks; this task is {ctx.task.type}"
            )
        # Arrow files beside the step, not in it: they are working data, not the step's output
        extra = [{"text": ex.text, "text_pair": ex.text_pair} for ex in rest]
        if not cfg.transfer.rest_of_train:
            extra = []
        with tempfile.TemporaryDirectory(dir=ctx.step_dir.parent, prefix=".transfer-") as work:
            result = _distil_with_transfer(
                cfg, teacher, student, tokenizer, enc, ctx, Path(work), task, extra
            )
    details = {
        **result,
        "params": count_parameters(student),
        "teacher_params": count_parameters(teacher),
    }
    if search is not None:
        details["search"] = search
    return StageResult(save_model(student, tokenizer, ctx.step_dir / "model"), details)


def search_on_dev(cfg: DistillConfig, teacher, tokenizer, task, enc, ctx):
    """``(cfg, record)``: the config with the KD settings chosen on dev (``KDSearch``), and every
    round of every trial: its settings, steps, dev score against the trivial predictor, seconds."""
    import optuna

    from compress.signal import NO_SIGNAL, against_trivial, outcome, trivial_dev
    from compress.trainer import shuffled_batches, total_steps

    search = cfg.search
    assert search is not None
    grid = search.grid()
    per_epoch = shuffled_batches(enc["train"], cfg.batch_size, ctx.seed).per_epoch
    rounds = search.rounds(per_epoch, total_steps(cfg, per_epoch))
    trivial, trivial_counts = trivial_dev(task)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=rounds[0], reduction_factor=search.reduction_factor
        ),
    )
    spaces = {k: optuna.distributions.CategoricalDistribution(getattr(search, k)) for k in grid[0]}
    trials = []
    for point in grid:  # in the grid's order: the first of equal scores wins
        study.enqueue_trial(point)
        trials.append(study.ask(spaces))
    alive, rows, counts = list(range(len(grid))), [], {}
    started = time.perf_counter()
    for number, steps in enumerate(rounds):
        for i in alive:
            counts[i], row = _kd_trial(cfg, grid[i], steps, teacher, tokenizer, task, enc, ctx)
            row = {"trial": i, "round": number, **row}
            row |= against_trivial(task.type, counts[i], trivial_counts, ctx.seed)
            rows.append(row)
            trials[i].report(row["dev"], steps)
            log.info(
                "%s: KD trial %s, %d steps: dev %s %.4f (%+.2f points over the %s baseline%s)",
                ctx.step_name,
                grid[i],
                row["steps"],
                task.metric,
                row["dev"],
                row["vs_trivial"] * 100,
                trivial["name"],
                "" if row["left_baseline"] else ", within noise of it",
            )
        here = [r for r in rows if r["round"] == number]
        # the first process's clock decides for all: every process must run the same rounds
        out_of_time = dist.broadcast(
            search.max_seconds is not None and time.perf_counter() - started > search.max_seconds
        )
        if any(r["left_baseline"] for r in here) or number == len(rounds) - 1 or out_of_time:
            break
        kept = [i for i in alive if not trials[i].should_prune()]
        for i in set(alive) - set(kept):
            study.tell(trials[i], state=optuna.trial.TrialState.PRUNED)
        log.info(
            "%s: no KD trial has left the trivial predictor after %d steps; %d go on to %d "
            "steps (%d pruned)",
            ctx.step_name,
            steps,
            len(kept),
            rounds[number + 1],
            len(alive) - len(kept),
        )
        alive = kept
    last = [r for r in rows if r["round"] == number]
    order = sorted(range(len(last)), key=lambda j: -last[j]["dev"])  # stable: grid order on ties
    best, runner = alive[order[0]], (alive[order[1]] if len(order) > 1 else None)
    verdict, interval = outcome(
        task.type,
        counts[best],
        counts[runner] if runner is not None else None,
        last[order[0]]["left_baseline"],
        ctx.seed,
    )
    for i in alive:
        study.tell(trials[i], next(r["dev"] for r in last if r["trial"] == i))
    keys = list(grid[0])
    if verdict == NO_SIGNAL:  # nothing to choose by: the stage's defaults, not the grid's first
        chosen = {k: DistillConfig.model_fields[k].default for k in keys}
        why = (
            f"no signal: all trials at the {trivial['name']} baseline "
            f"({trivial['dev'] * 100:.2f}) after {rounds[number]} steps; the stage's defaults "
            f"({', '.join(f'{k} {v}' for k, v in chosen.items())}) are used"
        )
        log.warning("%s: %s", ctx.step_name, why)
    else:
        chosen = {k: grid[best][k] for k in keys}
        why = _search_why(verdict, last[order[0]], interval, rounds[number], trivial)
        log.info("%s: KD settings chosen on dev: %s (%s)", ctx.step_name, chosen, why)
    record = {
        "split": "dev",
        "trial_steps": rounds[0],
        "rounds": rounds[: number + 1],
        "cap_steps": rounds[-1],
        "trivial": trivial,
        "trials": [_final_row(rows, i) for i in range(len(grid))],
        "history": rows,
        "chosen": chosen,
        "outcome": verdict,
        "why": why,
    }
    if interval is not None:
        record["lead_interval"] = interval
    return cfg.model_copy(update={**chosen, "search": None}), record


def _kd_trial(cfg: DistillConfig, point: dict, steps: int, teacher, tokenizer, task, enc, ctx):
    """One trial of ``steps`` from the seeded initial student: its dev counts and its row."""
    from transformers import set_seed

    from compress.signal import torch_dev_counts

    trial = cfg.model_copy(
        update={
            **point,
            "max_steps": steps,
            "cache_teacher_logits": False,  # a short trial: the teacher runs per batch
            "transfer": None,
            "search": None,
        }
    )
    set_seed(ctx.seed)  # every trial starts from the same student
    student, _ = build_student(cfg.student, teacher, tokenizer, ctx.task, ctx.outputs)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=ctx.step_dir.parent, prefix=".search-") as work:
        result = distil(trial, teacher, student, task, enc, ctx.seed, "trial", Path(work))
    counts = torch_dev_counts(student, task, enc, cfg.eval_batch_size)
    seconds = round(time.perf_counter() - started, 2)
    dev = round(result["best_dev"], 5)
    # the steps it took: the round's, or fewer under a rehearsal's cap
    return counts, {**point, "steps": result["steps"], "dev": dev, "seconds": seconds}


def _final_row(rows: list[dict], trial: int) -> dict:
    """A trial's last round, with the seconds of all its rounds and whether it was pruned."""
    mine = [r for r in rows if r["trial"] == trial]
    last_round = max(r["round"] for r in rows)
    pruned = mine[-1]["round"] < last_round
    return mine[-1] | {"seconds": round(sum(r["seconds"] for r in mine), 2), "pruned": pruned}


def _search_why(verdict: str, best: dict, interval, steps: int, trivial: dict) -> str:
    lead = (
        f"; ahead of the runner-up by [{interval[0] * 100:+.2f}, {interval[1] * 100:+.2f}] "
        "points (paired 95%)"
        if interval
        else ""
    )
    low, high = (x * 100 for x in best["vs_trivial_interval"])
    what = "a finding" if verdict == "finding" else "within noise of the runner-up"
    return (
        f"{what}: after {steps} steps, dev {best['dev'] * 100:.2f}, [{low:+.2f}, {high:+.2f}] "
        f"points over the {trivial['name']} baseline{lead}"
    )


def labelled_subset(task, rows: int | None, seed: int, step: str):
    """``(task, rest)``: the task with ``rows`` of its train examples (a draw seeded by
    ``seed``, in their original order), and the others; all of them when ``rows`` is None."""
    import dataclasses
    import random

    train = task.splits["train"]
    if rows is None:
        return task, []
    if rows >= len(train):
        raise DataError(
            f"step {step}: labelled_rows {rows} is not below the {len(train)} train rows loaded"
        )
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    keep = set(order[:rows])
    kept = [ex for i, ex in enumerate(train) if i in keep]
    rest = [ex for i, ex in enumerate(train) if i not in keep]
    return dataclasses.replace(task, splits={**task.splits, "train": kept}), rest


def _distil_with_transfer(
    cfg: DistillConfig, teacher, student, tokenizer, enc, ctx, work: Path, task, extra
):
    from compress.distillation import textbrewer_matches
    from compress.scoring import torch_forward
    from compress.trainer import device, mixed_precision
    from compress.transfer import build_transfer, label_with_teacher

    assert cfg.transfer is not None
    started = time.perf_counter()
    data = build_transfer(cfg.transfer, tokenizer, ctx.max_seq_len, work, extra)
    # with a logits cache (logits-only KD) the teacher labels every row once, here; with
    # hidden-state matches it runs on each transfer batch during training, as on labelled ones
    cached = cfg.cache_teacher_logits and not textbrewer_matches(
        cfg, teacher.config, student.config
    )
    if cached:
        teacher.to(device()).eval()
        # in the run's precision, as the labelled rows' cached logits are (compress.distillation)
        with mixed_precision(cfg.precision):
            data = label_with_teacher(data, torch_forward(teacher, str(device())), 64, work)
    prepared = round(time.perf_counter() - started, 2)
    per_epoch = max(1, round(cfg.transfer.ratio * len(enc["train"])))
    result = distil(
        cfg, teacher, student, task, enc, ctx.seed, ctx.step_name, ctx.step_dir, data, per_epoch
    )
    result["data"] = {
        "labelled_rows": len(enc["train"]),
        "transfer_rows": len(data),
        "transfer_rows_per_epoch": min(per_epoch, len(data)),
        "transfer_sources": cfg.transfer.sources(),
        "transfer_labelled_once": cached,
        "transfer_seconds": prepared,
    }
    log.info(
        "%s: distilled on %d labelled rows and %d transfer rows (%d per epoch)",
        ctx.step_name,
        len(enc["train"]),
        len(data),
        min(per_epoch, len(data)),
    )
    return result
