"""The benchmarks of LERT's table, each with a hub source and a local-file source in the format
of its original release. Local files win when ``task.train`` is given.

Hub ids were found in public dataset documentation and could not be checked from this offline
machine; ``python -m compress tasks`` lists them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from compress.tasks import TaskData, hold_out_selection, register_task
from compress.tasks.config import TaskConfig, TaskType
from compress.tasks.files import PerFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Benchmark:
    name: str
    type: TaskType
    description: str
    hub: str  # datasets id (config after a colon)
    local: str  # the release's file format, for the user
    defaults: dict = field(default_factory=dict)  # TaskConfig fields for local files
    hub_defaults: dict = field(default_factory=dict)  # TaskConfig fields for the hub copy
    per_file: PerFile | None = None  # adapts the options to one local file's layout
    reports_dev: bool = False  # local release without test: report dev, select on held-out train


NLI = ["contradiction", "entailment", "neutral"]
TNEWS_CODES = [
    "100",
    "101",
    "102",
    "103",
    "104",
    "106",
    "107",
    "108",
    "109",
    "110",
    "112",
    "113",
    "114",
    "115",
    "116",
]
MSRA_TAGS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]

# LCQMC and BQ share a release format (header-less TSV) and a hub layout (C-MTEB)
PAIR_TSV = {
    "columns": ["text_a", "text_b", "label"],
    "text_column": "text_a",
    "text_pair_column": "text_b",
    "labels": ["0", "1"],
}
MTEB_PAIRS = {"text_column": "sentence1", "text_pair_column": "sentence2", "label_column": "score"}

# The official XNLI 1.0 dev/test files: one TSV for all 15 languages, a header naming
# language, gold_label, ..., sentence1 (7th), sentence2 (8th), ...; Google BERT's XnliProcessor
# keeps language == "zh" and reads text_a = sentence1, text_b = sentence2, label = gold_label.
XNLI_OFFICIAL = {
    "text_column": "sentence1",
    "text_pair_column": "sentence2",
    "label_column": "gold_label",
    "keep_rows": {"language": "zh"},
}


def xnli_layout(path: Path, cfg: TaskConfig) -> TaskConfig:
    """The options for one XNLI file: the official multi-language layout, or XNLI-MT's."""
    with path.open(encoding="utf-8-sig") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    if header[:2] != ["language", "gold_label"]:
        return cfg
    return cfg.model_copy(update=XNLI_OFFICIAL)


BENCHMARKS = [
    Benchmark(
        "chnsenticorp",
        "classification",
        "ChnSentiCorp hotel/product review sentiment",
        "lansinuote/ChnSentiCorp",
        "TSV with header label<TAB>text_a (qid column ignored)",
        {"text_column": "text_a", "labels": ["0", "1"]},
        # its legacy dataset_infos.json declares label ClassLabel(negative, positive): names
        # map back to the original release's ids
        {
            "text_column": "text",
            "labels": ["0", "1"],
            "label_map": {"negative": "0", "positive": "1"},
        },
    ),
    Benchmark(
        "tnews",
        "classification",
        "TNEWS news titles, 15 classes (CLUE)",
        "clue/clue:tnews",
        "CLUE JSON lines: sentence, label (code), label_desc",
        {"text_column": "sentence", "labels": TNEWS_CODES},
        {"text_column": "sentence", "split_names": {"test": "validation"}},
    ),
    Benchmark(
        "xnli",
        "classification",
        "XNLI Chinese sentence-pair inference",
        "facebook/xnli:zh",
        "XNLI-MT train TSV (premise, hypo, label) and the official xnli.dev.tsv/xnli.test.tsv "
        "(all languages; zh rows kept)",
        {
            "text_column": "premise",
            "text_pair_column": "hypo",
            "labels": NLI,
            "label_map": {"contradictory": "contradiction"},
        },
        {"text_column": "premise", "text_pair_column": "hypothesis"},
        per_file=xnli_layout,
    ),
    Benchmark(
        "ocnli",
        "classification",
        "OCNLI original Chinese NLI (CLUE)",
        "clue/clue:ocnli",
        "CLUE JSON lines: sentence1, sentence2, label ('-' dropped)",
        {
            "text_column": "sentence1",
            "text_pair_column": "sentence2",
            "labels": NLI,
            "drop_labels": ["-"],
        },
        {
            "text_column": "sentence1",
            "text_pair_column": "sentence2",
            "split_names": {"test": "validation"},
            "drop_labels": ["-1"],
        },
    ),
    Benchmark(
        "lcqmc",
        "classification",
        "LCQMC question matching (pairs)",
        "C-MTEB/LCQMC",
        "TSV without header: text_a<TAB>text_b<TAB>label",
        PAIR_TSV,
        MTEB_PAIRS,
    ),
    Benchmark(
        "bq",
        "classification",
        "BQ Corpus bank question matching (pairs)",
        "C-MTEB/BQ",
        "TSV without header: text_a<TAB>text_b<TAB>label",
        PAIR_TSV,
        MTEB_PAIRS,
    ),
    Benchmark(
        "msra-ner",
        "ner",
        "MSRA-NER, character BIO PER/LOC/ORG",
        "levow/msra_ner",
        "char<TAB or space>tag lines, blank line between sentences",
        {"labels": MSRA_TAGS},
        # main holds only a loading script, which datasets >= 4 refuses; the parquet copy
        # lives on the refs/convert/parquet revision (train and test only)
        {
            "tags_column": "ner_tags",
            "revision": "refs/convert/parquet",
            "data_files": {
                "train": "msra_ner/train/*.parquet",
                "test": "msra_ner/test/*.parquet",
            },
            "split_names": {"dev": "test"},
        },
    ),
    Benchmark(
        "peoples-daily-ner",
        "ner",
        "People's Daily NER as LERT reports it: HFL's copy (Chinese-BERT-wwm "
        "data/peopledaily/peopledaily.zip, from ProHiryu/bert-chinese-ner), scored on dev.txt; "
        "the hub's peoples_daily_ner is a different corpus whose scores are not comparable",
        "peoples_daily_ner",
        "train.txt and dev.txt of 'char tag' lines (space-separated), a blank line between "
        "sentences, no test file",
        {"labels": MSRA_TAGS},
        {"tags_column": "ner_tags"},
        reports_dev=True,
    ),
]


def configure(cfg: TaskConfig, bench: Benchmark) -> TaskConfig:
    """The benchmark's column and label defaults under the user's own settings."""
    local = cfg.train is not None
    defaults = dict(bench.defaults if local else bench.hub_defaults)
    if not local:
        dataset, _, subset = bench.hub.partition(":")
        defaults.update(dataset=dataset, subset=subset or None)
    update = {k: v for k, v in defaults.items() if k not in cfg.model_fields_set}
    return cfg.model_copy(update={**update, "type": bench.type})


def _loader(bench: Benchmark):
    def load(cfg: TaskConfig) -> TaskData:
        from compress.tasks.files import local_files
        from compress.tasks.hub import hub_task

        cfg = configure(cfg, bench)
        if cfg.train is None:
            data = hub_task(cfg)
        elif bench.reports_dev and cfg.test is None and cfg.dev is not None:
            data = local_files(cfg.model_copy(update={"test": cfg.dev}), bench.per_file)
            hold_out_selection(data, cfg, f"{cfg.dev.name} of {bench.name}")
        else:
            data = local_files(cfg, bench.per_file)
        data.name = bench.name
        return data

    return load


for _bench in BENCHMARKS:
    _revision = _bench.hub_defaults.get("revision")
    _hub = f"{_bench.hub}@{_revision}" if _revision else _bench.hub
    register_task(
        _bench.name, f"{_bench.description} [hub {_hub}; local: {_bench.local}]", _bench.type
    )(_loader(_bench))
