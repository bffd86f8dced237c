"""Extractive reading comprehension: CMRC 2018 and DRCD from the hub or their SQuAD-style release
files, and any SQuAD-style files (``task: {name: local, type: qa, train: ..., dev: ...}``).

CMRC 2018 publishes no test answers: its dev set is what LERT reports, so it is the scored split
here and checkpoints are chosen on a slice held out from train. DRCD has a dev and a test set.
"""

from __future__ import annotations

import logging
from pathlib import Path

from compress.errors import DataError
from compress.qa import QAExample, locate, read_squad_json
from compress.tasks import TaskData, hold_out_selection, register_task
from compress.tasks.config import TaskConfig

log = logging.getLogger(__name__)

QA_LABELS = ["start", "end"]  # the two outputs of a question-answering head


def qa_task_data(name: str, splits: dict[str, list[QAExample]], cfg: TaskConfig) -> TaskData:
    """The task, with train examples whose answer is not in their context left out (they
    cannot be trained on; dev and test keep them, scored as the official script does)."""
    train = splits["train"]
    splits["train"] = [ex for ex in train if ex.answer_start is not None]
    dropped = len(train) - len(splits["train"])
    if dropped:
        log.info(
            "train: %d questions whose answer is not in their context are not trained on", dropped
        )
    options = {
        k: getattr(cfg, k) for k in ("doc_stride", "max_query_len", "n_best", "max_answer_len")
    }
    data = TaskData(name, "qa", list(QA_LABELS), splits, options=options)
    data.stats["unlocatable_train"] = dropped
    return data


def qa_local(cfg: TaskConfig, name: str | None = None) -> TaskData:
    """SQuAD-style files: train, dev and (optionally) test. Without a test file the dev file is
    scored and checkpoints are chosen on a slice held out from train."""
    paths = {s: p for s, p in (("train", cfg.train), ("dev", cfg.dev), ("test", cfg.test)) if p}
    if "dev" not in paths:
        raise DataError("task.dev: a qa task needs a dev file (SQuAD-style JSON)")
    splits, answers = {}, {}
    for split, path in paths.items():
        if not Path(path).is_file():
            raise DataError(f"task.{split}: file {path} does not exist")
        splits[split], stats = read_squad_json(Path(path), cfg.encoding)
        answers[split] = stats.as_dict()
    scored_dev = "test" not in splits
    if scored_dev:
        splits["test"] = splits["dev"]
    data = qa_task_data(name or cfg.name, splits, cfg)
    data.stats["answers"] = answers  # per file: questions, relocated and unlocatable answers
    if scored_dev:
        hold_out_selection(data, cfg, f"{Path(paths['dev']).name}")
    return data


def hub_qa_examples(rows, split: str, dataset: str) -> list[QAExample]:
    """Rows of a SQuAD-style hub dataset (``id``, ``context``, ``question``, ``answers:
    {text: [...], answer_start: [...]}``) as examples."""
    out = []
    for i, row in enumerate(rows):
        try:
            texts = list(row["answers"]["text"])
            starts = list(row["answers"]["answer_start"])
            context, question, qid = row["context"], row["question"], str(row["id"])
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"{dataset}[{split}] row {i}: expected id, context, question and answers "
                f"{{text, answer_start}} (the SQuAD layout): {exc!r}"
            ) from exc
        start = locate(context, texts[0], int(starts[0])) if texts else None
        out.append(QAExample(qid, question, context, texts, start))
    return out


def qa_hub(cfg: TaskConfig, name: str, scored: str = "test") -> TaskData:
    """A SQuAD-style hub dataset. ``scored`` "dev" scores the dev split and selects
    checkpoints on a slice held out from train."""
    from compress.tasks.hub import DEFAULT_SPLIT_NAMES, load_hub_splits

    loaded = load_hub_splits(cfg)
    splits = {s: hub_qa_examples(d, s, str(cfg.dataset)) for s, d in loaded.items()}
    source = {**DEFAULT_SPLIT_NAMES, **cfg.split_names}
    if scored == "dev":
        splits["test"] = splits["dev"]
    data = qa_task_data(name, splits, cfg)
    data.split_names = {s: f"{source[s]} split of {cfg.dataset}" for s in ("dev", "test")}
    if scored == "dev":
        hold_out_selection(data, cfg, f"{source['dev']!r} split of {cfg.dataset}")
    data.stats["source"] = cfg.dataset
    return data


# hfl/cmrc2018's main branch holds only a loading script, which datasets >= 4 refuses; the hub's
# parquet conversion (refs/convert/parquet) has default/{train,validation,test}/0000.parquet. Its
# "test" split is CMRC 2018's trial set, not the (unpublished) test set.
CMRC_HUB = {
    "dataset": "hfl/cmrc2018",
    "revision": "refs/convert/parquet",
    "data_files": {s: f"default/{s}/*.parquet" for s in ("train", "validation", "test")},
}


def _cmrc2018(cfg: TaskConfig) -> TaskData:
    if cfg.train is not None:
        return qa_local(cfg, "cmrc2018")
    update = {k: v for k, v in CMRC_HUB.items() if getattr(cfg, k) is None}
    return qa_hub(cfg.model_copy(update={**update, "type": "qa"}), "cmrc2018", scored="dev")


def _drcd(cfg: TaskConfig) -> TaskData:
    if cfg.train is not None:
        return qa_local(cfg, "drcd")
    hub = cfg.model_copy(
        update={"dataset": cfg.dataset or "clue/clue", "subset": cfg.subset or "drcd", "type": "qa"}
    )
    return qa_hub(hub, "drcd")


register_task(
    "cmrc2018",
    "CMRC 2018 extractive reading comprehension (Simplified); scored on its dev set, as LERT "
    "reports it [hub hfl/cmrc2018@refs/convert/parquet; local: cmrc2018_train.json / "
    "cmrc2018_dev.json]",
    "qa",
)(_cmrc2018)
register_task(
    "drcd",
    "DRCD extractive reading comprehension (Traditional) [hub clue/clue drcd; local: "
    "DRCD_training.json / DRCD_dev.json / DRCD_test.json]",
    "qa",
)(_drcd)
