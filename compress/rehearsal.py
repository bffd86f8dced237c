"""A rehearsal of a recipe at LERT's real sizes, before anyone spends a day on it.

Every hub model the recipe loads is replaced by random weights of its exact published config
(written here once), every hub task's data by local files in the task's own release format
(embedded Chinese texts at the task's ``max_seq_len``, its real label set), and every training
run is capped at N optimizer steps. Everything else (stages, options, KD trials, select, prune,
fit, export, int8, evaluation, report, cards) runs as the recipe says, so a failure that only
shows at real width shows here. What each training run took per optimizer step, and the peak
memory of each step, make the cost plan of the real run (compress/plan.py).

The outputs go to ``OUT/rehearsal/RECIPE``, never beside a real run's; the report and every
model card say in their first line that the weights are random and the scores mean nothing.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from compress.errors import RecipeError

log = logging.getLogger(__name__)

# The configs HFL publishes with LERT (github.com/ymcui/LERT, src/lert_config_{small,base,large}
# .json), key for key; ``model_type`` and ``architectures`` are what transformers reads a hub
# folder by (the hub's own config.json could not be read from this offline machine).
_BERT = {
    "attention_probs_dropout_prob": 0.1,
    "directionality": "bidi",
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "max_position_embeddings": 512,
    "pooler_num_fc_layers": 3,
    "pooler_type": "first_token_transform",
    "type_vocab_size": 2,
    "vocab_size": 21128,
}
LERT_CONFIGS = {
    "hfl/chinese-lert-small": {
        **_BERT,
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_attention_heads": 4,
        "num_hidden_layers": 12,
        "pooler_fc_size": 256,
        "pooler_num_attention_heads": 4,
        "pooler_size_per_head": 64,
    },
    "hfl/chinese-lert-base": {
        **_BERT,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pooler_fc_size": 768,
        "pooler_num_attention_heads": 12,
        "pooler_size_per_head": 128,
    },
    "hfl/chinese-lert-large": {
        **_BERT,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "pooler_fc_size": 768,
        "pooler_num_attention_heads": 12,
        "pooler_size_per_head": 128,
    },
}
CONFIG_SOURCE = "github.com/ymcui/LERT src/lert_config_{small,base,large}.json"

# The real tasks' split sizes (rows), for the plan: what the real run reads per epoch.
REAL_SPLITS = {
    # lansinuote/ChnSentiCorp, HFL's copy (9,600 / 1,200 / 1,200)
    "chnsenticorp": {"train": 9600, "dev": 1200, "test": 1200},
    # clue/clue tnews (train 53,360, validation 10,000; the test labels are hidden)
    "tnews": {"train": 53360, "dev": 10000, "test": 10000},
    # levow/msra_ner dataset_info (train 45,001, test 3,443)
    "msra-ner": {"train": 45001, "test": 3443},
    # ymcui/cmrc2018 (train 10,142, dev 3,219 questions)
    "cmrc2018": {"train": 10142, "dev": 3219},
    # clue/clue drcd (train 26,936, validation 3,524, test 3,493 questions)
    "drcd": {"train": 26936, "dev": 3524, "test": 3493},
}
TNEWS_DESCRIPTIONS = {  # CLUE's tnews label codes and their label_desc
    "100": "news_story",
    "101": "news_culture",
    "102": "news_entertainment",
    "103": "news_sports",
    "104": "news_finance",
    "106": "news_house",
    "107": "news_car",
    "108": "news_edu",
    "109": "news_tech",
    "110": "news_military",
    "112": "news_travel",
    "113": "news_world",
    "114": "news_stock",
    "115": "news_agriculture",
    "116": "news_game",
}
RANDOM_WEIGHTS = (
    "Rehearsal: every model here has random weights of LERT's real shapes, trained for a few "
    "steps on generated data; the scores mean nothing. It measures what the real run costs."
)


@dataclass
class Rehearsal:
    """What a rehearsal replaced, where, and its cap."""

    steps: int
    models: dict[str, str] = field(default_factory=dict)  # hub id -> local directory
    data: dict[str, str] = field(default_factory=dict)  # split -> file
    rows: dict[str, int] = field(default_factory=dict)  # split -> rows written
    task: str = ""
    lifted: list[str] = field(default_factory=list)  # accuracy budgets not rehearsed
    corpora: dict[str, str] = field(default_factory=dict)  # steps.NAME.text -> file

    def record(self) -> dict:
        return {
            "note": RANDOM_WEIGHTS,
            "steps_cap": self.steps,
            "models": self.models,
            "configs_from": CONFIG_SOURCE,
            "task": self.task,
            "data": self.data,
            "rows": self.rows,
            "real_rows": REAL_SPLITS.get(self.task, {}),
            "accuracy_budgets_lifted": self.lifted,
            "pretraining_text": self.corpora,
        }


def lert_vocabulary(path: Path) -> Path:
    """A 21,128-token vocabulary laid out as LERT's (Google's Chinese BERT vocab.txt): [PAD],
    [unused1..99], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, then the CJK characters, then
    unused slots up to the real size."""
    from compress.models import LERT_VOCAB_SIZE, SPECIAL_TOKENS

    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + SPECIAL_TOKENS[1:]
    tokens += [chr(c) for c in range(0x4E00, 0x9FA6)]
    tokens += [f"[unused{i}]" for i in range(100, 100 + LERT_VOCAB_SIZE - len(tokens))]
    assert len(tokens) == LERT_VOCAB_SIZE
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def write_lert(hub_id: str, out: Path, seed: int = 0) -> Path:
    """``hub_id`` as the hub lays it out (config.json, pytorch_model.bin with the MLM head,
    vocab.txt), with random weights of its exact published config. Made once."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    config = {**LERT_CONFIGS[hub_id], "model_type": "bert", "architectures": ["BertForMaskedLM"]}
    done = out / ".done"
    if done.exists() and json.loads((out / "config.json").read_text()) == config:
        return out
    out.mkdir(parents=True, exist_ok=True)
    log.info("rehearsal: random weights of %s's published config in %s", hub_id, out)
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(**config))
    model.save_pretrained(out, safe_serialization=False)  # the hub's weights are .bin
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    lert_vocabulary(out / "vocab.txt")
    done.touch()
    return out


def hub_models(recipe) -> list[str]:
    """The LERT hub ids the recipe's steps load."""
    found = {s for step in recipe.steps for s in step.config.model_sources()}
    return sorted(s for s in found if s in LERT_CONFIGS)


# the release formats ------------------------------------------------------------------------


def _texts(max_chars: int, n: int, seed: int) -> list[str]:
    """``n`` texts of at least ``max_chars`` characters, each a run of embedded reviews."""
    from compress.tasks.embedded import sentiment_examples

    reviews = [e.text.replace("\t", " ").replace("\n", " ") for e in sentiment_examples()[0]]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts: list[str] = []
        while sum(map(len, parts)) < max_chars:
            parts.append(rng.choice(reviews))
        out.append("".join(parts)[: max_chars + 16])
    return out


def _chnsenticorp(split: str, texts: list[str], path: Path) -> None:
    """HFL's TSV: a header, ``label<TAB>text_a`` (train) or ``qid<TAB>label<TAB>text_a``."""
    rows = ["label\ttext_a" if split == "train" else "qid\tlabel\ttext_a"]
    for i, text in enumerate(texts):
        label = str(i % 2)
        rows.append(f"{label}\t{text}" if split == "train" else f"{i}\t{label}\t{text}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _tnews(split: str, texts: list[str], path: Path) -> None:
    """CLUE's JSON lines: label (code), label_desc, sentence, keywords."""
    codes = list(TNEWS_DESCRIPTIONS)
    lines = []
    for i, text in enumerate(texts):
        code = codes[i % len(codes)]
        row = {"label": code, "label_desc": TNEWS_DESCRIPTIONS[code], "sentence": text}
        lines.append(json.dumps(row | {"keywords": ""}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _msra(split: str, n: int, max_chars: int, path: Path, seed: int) -> None:
    """``char<TAB>tag`` lines, a blank line between sentences (People's Daily sentences with
    their PER/LOC/ORG tags, joined up to the task's length)."""
    from compress.tasks.embedded import pd_sentence, pd_tagged_lines

    lines = pd_tagged_lines()
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        chars: list[str] = []
        tags: list[str] = []
        while len(chars) < max_chars:
            number, line = rng.choice(lines)
            sentence = pd_sentence(line, f"{number}")
            chars += list(sentence.tokens)
            tags += list(sentence.tags)
        blocks.append("\n".join(f"{c}\t{t}" for c, t in zip(chars, tags, strict=True)))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def _squad(split: str, texts: list[str], path: Path, seed: int, answers: int) -> None:
    """SQuAD-v1.1-style JSON as CMRC 2018 and DRCD release it: data / paragraphs / qas, each
    answer a span of its context with its character offset."""
    rng = random.Random(seed)
    data = []
    for i, context in enumerate(texts):
        qas = []
        for q in range(2):
            start = rng.randrange(0, max(1, len(context) - 12))
            span = context[start : start + rng.randint(2, 10)]
            refs = [{"text": span, "answer_start": start} for _ in range(answers)]
            question = f"文中第{q + 1}处说了什么？"
            qas.append({"question": question, "id": f"{split}-{i}-{q}", "answers": refs})
        paragraph = {"id": f"{split}-{i}", "context": context, "qas": qas}
        data.append({"id": f"{split}-{i}", "title": "", "paragraphs": [paragraph]})
    release = {"version": "v1.0", "data": data}
    path.write_text(json.dumps(release, ensure_ascii=False), encoding="utf-8")


# The lengths of CMRC 2018's dev contexts in characters, their 5th, 15th, ..., 95th percentiles
# (ymcui/cmrc2018 squad-style-data/cmrc2018_dev.json: 848 paragraphs, 3,219 questions, mean 510,
# median 455, longest 980). At 512 tokens and doc_stride 128 that file makes 1.69 windows a
# question (compress.qa.windows over its questions, counted with the rehearsal's vocabulary:
# one token a CJK character, one [UNK] a Latin word or number, where LERT's real vocabulary may
# cut a word into a few pieces); contexts of these lengths make as many.
# DRCD publishes no length table: its paragraphs, Wikipedia's too, get the same lengths.
QA_CONTEXT_CHARS = (296, 324, 355, 393, 431, 484, 537, 625, 744, 891)

# which splits each release has, and its file names
RELEASES = {
    "chnsenticorp": {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
    "tnews": {"train": "train.json", "dev": "dev.json", "test": "test.json"},
    "msra-ner": {"train": "train.txt", "test": "test.txt"},
    "cmrc2018": {"train": "cmrc2018_train.json", "dev": "cmrc2018_dev.json"},
    "drcd": {"train": "DRCD_training.json", "dev": "DRCD_dev.json", "test": "DRCD_test.json"},
}


def write_task_files(task: str, max_seq_len: int, rows: dict[str, int], out: Path, seed: int):
    """The task's release files with ``rows[split]`` rows each; returns split -> path."""
    if task not in RELEASES:
        known = ", ".join(sorted(RELEASES))
        raise RecipeError(
            f"--rehearse: no release-format data for task {task!r} (it has {known}); give the "
            "task's own files with task.train=... task.dev=... task.test=..."
        )
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, (split, name) in enumerate(RELEASES[task].items()):
        path, n, split_seed = out / name, rows[split], seed + i
        if task == "msra-ner":
            _msra(split, n, max_seq_len, path, split_seed)
        elif task in ("cmrc2018", "drcd"):
            # contexts as long as the real ones, so that they are cut into as many windows a
            # question (which the plan's steps scale with) at any max_seq_len
            texts = _texts(max(QA_CONTEXT_CHARS), n // 2 or 1, split_seed)
            texts = [t[: QA_CONTEXT_CHARS[i % len(QA_CONTEXT_CHARS)]] for i, t in enumerate(texts)]
            _squad(split, texts, path, split_seed, 3 if task == "cmrc2018" else 2)
        else:
            texts = _texts(max_seq_len, n, split_seed)
            (_chnsenticorp if task == "chnsenticorp" else _tnews)(split, texts, path)
        paths[split] = path
    return paths


# the rehearsal -------------------------------------------------------------------------------


def largest_batch(recipe) -> int:
    """The largest batch any step trains with (a rehearsal's train split holds N of them)."""
    sizes = [getattr(s.config, "batch_size", 0) or 0 for s in recipe.steps]
    recover = [getattr(getattr(s.config, "recover", None), "batch_size", 0) for s in recipe.steps]
    recover = [b or 0 for b in recover]
    return max([8, *sizes, *recover])


def prepare(recipe, overrides: list[str], work: Path, steps: int):
    """The recipe's hub models and hub task data replaced for a rehearsal capped at ``steps``
    optimizer steps per training run; returns the overrides to read it with and the record."""
    if steps < 1:
        raise RecipeError(f"--rehearse-steps {steps}: give at least 1 optimizer step")
    hub = hub_models(recipe)
    if not hub:
        raise RecipeError(
            f"--rehearse: {recipe.name} loads no hub model (its models are shapes or local "
            "folders, already at their own sizes); run it as it is, or give it LERT "
            "(model: hfl/chinese-lert-large)"
        )
    plan = Rehearsal(steps=steps, task=recipe.task.name)
    for hub_id in hub:
        plan.models[hub_id] = str(write_lert(hub_id, work / "models" / hub_id.split("/")[-1]))
    extra: list[str] = []
    if recipe.task.train is None and recipe.task.dataset is None:
        batch = largest_batch(recipe)
        plan.rows = {"train": batch * steps * 2, "dev": 32, "test": 32}
        folder = work / "data" / recipe.task.name
        files = write_task_files(
            recipe.task.name, recipe.task.max_seq_len, plan.rows, folder, recipe.seed
        )
        plan.data = {split: str(path) for split, path in files.items()}
        extra += [f"task.{split}={path}" for split, path in files.items()]
        if "dev" not in files:  # selection on a slice held out from train, as in the release
            extra.append(f"task.dev_size={plan.rows['dev']}")
    extra += _pretraining_text(recipe, plan, work / "data")
    for step in recipe.steps:  # random weights cannot meet an accuracy budget: not rehearsed
        budget = getattr(step.config, "budget", None)
        if getattr(budget, "max_drop", None) is not None:
            extra.append(f"steps.{step.name}.budget.max_drop=100")
            plan.lifted.append(f"steps.{step.name}.budget.max_drop")
    return overrides + extra, plan


def _pretraining_text(recipe, plan: Rehearsal, folder: Path) -> list[str]:
    """A pre-training or general-distill step's ``text.tasks`` that read the hub replaced by a
    plain-text file (one text per line), each text one full row of the step's max_seq_len: as
    many held-out texts as the task's rehearsal dev split, then as many training texts as its
    train split, so that the plan scales the epochs as it scales the task's (a real review
    longer than a row makes two rows: the real corpus has at least that many)."""
    extra: list[str] = []
    for step in recipe.steps:
        text = getattr(step.config, "text", None)
        hub = [t for t in getattr(text, "tasks", []) if t in RELEASES]
        if not hub:
            continue
        # held out: as many texts as the task's rehearsal dev split (500 by default: three
        # passes of LERT-large over them, minutes on a CPU, for a check timed at rehearsal size)
        heldout = plan.rows.get("dev", 32)
        n = heldout + plan.rows.get("train", largest_batch(recipe) * plan.steps * 2)
        path = folder / f"{step.name}-text.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        row = step.config.max_seq_len - 2  # [CLS] text [SEP]
        texts = [t[:row] for t in _texts(row, n, recipe.seed + 7)]
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        kept = [t for t in text.tasks if t not in RELEASES]
        files = [str(f) for f in text.files] + [str(path)]
        extra += [
            f"steps.{step.name}.text.tasks=[{', '.join(kept)}]",
            f"steps.{step.name}.text.files=[{', '.join(files)}]",
            f"steps.{step.name}.text.heldout={heldout}",
        ]
        plan.corpora[f"steps.{step.name}.text"] = str(path)
    return extra
