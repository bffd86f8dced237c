"""Shared fixtures: tiny synthetic tasks and recipes; no test touches the network."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GOOD = "好棒赞喜欢满意推荐精彩"
BAD = "差烂糟失望退货垃圾难看"
FILLER = "这本书手机质量内容物流价格服务包装东西"

TINY_SHAPE = {"layers": 2, "hidden": 64, "heads": 2, "ffn": 128}  # bnb 4-bit needs >= 64


def sentiment_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Separable synthetic reviews: positive ones carry praise characters, negative ones not."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        cues = GOOD if label == "positive" else BAD
        chars = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        for _ in range(2):
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(cues))
        rows.append(("".join(chars), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], sep: str = ",") -> Path:
    lines = [f"text{sep}label"] + [f"{t}{sep}{label}" for t, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ner_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    people, places = ["张伟", "李娜", "王芳"], ["北京", "上海", "广州"]
    out = []
    for _ in range(n):
        sent: list[tuple[str, str]] = []
        for word, tag in (
            (rng.choice(people), "PER"),
            ("在", None),
            (rng.choice(places), "LOC"),
            ("工作", None),
        ):
            for i, ch in enumerate(word):
                sent.append((ch, "O" if tag is None else f"{'B' if i == 0 else 'I'}-{tag}"))
        out.append(sent)
    return out


def write_conll(path: Path, sentences) -> Path:
    blocks = ["\n".join(f"{c}\t{t}" for c, t in s) for s in sentences]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def cls_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "train.csv", sentiment_rows(160, 1)),
        "dev": write_csv(tmp_path / "dev.csv", sentiment_rows(40, 2)),
        "test": write_csv(tmp_path / "test.csv", sentiment_rows(40, 3)),
    }


@pytest.fixture
def ner_files(tmp_path: Path) -> dict[str, Path]:
    return {
        s: write_conll(tmp_path / f"{s}.conll", ner_sentences(n, i))
        for i, (s, n) in enumerate((("train", 80), ("dev", 20), ("test", 20)))
    }


def tiny_recipe(
    files: dict[str, Path], task_type: str = "classification", steps=None, **extra
) -> dict:
    """A recipe dict on local files with a tiny model; seconds on 2 cores."""
    return {
        "name": "tiny",
        "task": {
            "name": "local",
            "type": task_type,
            "max_seq_len": 32,
            **{k: str(v) for k, v in files.items()},
        },
        "seed": 0,
        "steps": steps
        or [
            {
                "name": "teacher",
                "stage": "finetune",
                "model": {"shape": TINY_SHAPE, "min_count": 1},
                "epochs": 8,
                "batch_size": 16,
                "lr": 3e-3,
            }
        ],
        "evaluate": {
            "batch_sizes": [1, 4],
            "seq_len": 16,
            "warmup": 1,
            "repeats": 2,
            "devices": ["cpu"],
            "memory": False,  # a fresh process per model: covered by its own tests
        },
        **extra,
    }


def kd_recipe(files: dict[str, Path], **student_options) -> dict:
    """The tiny recipe with a 2-epoch teacher, a KD student of the tiny shape (logits only
    unless ``matches`` is given) and its no-KD twin."""
    steps = tiny_recipe(files)["steps"]
    steps[0]["epochs"] = 2
    student = {
        "name": "student",
        "stage": "distill",
        "student": {"shape": TINY_SHAPE},
        "epochs": 2,
        "batch_size": 16,
        "lr": 3e-3,
        "matches": "none",
        **student_options,
    }
    steps += [student, {"name": "no-kd", "stage": "baseline", "like": "student"}]
    return tiny_recipe(files, steps=steps)


def metric_row(variant: str, score: float, mb: float = 1.0, b1: float = 1.0, device="cpu", **extra):
    """One evaluator row as plain data (``MetricRow`` fields), for report and summary tests."""
    return {
        "variant": variant,
        "step": variant,
        "path": f"/x/{variant}",
        "stage": "x",
        "runtime": "pytorch",
        "device": device,
        "precision": "fp32",
        "params": 1e6,
        "size_mb": mb,
        "score": score,
        "seq_len": 128,
        "latency_ms": {"b1": {"p50": b1, "p90": b1, "mean": b1, "throughput": 1 / b1}},
        "speedup": {"b1": 1.0},
        "memory_mb": 1.0,
        **extra,
    }


class Rows:
    """report.json rows by identity: ``rows["student"]`` is the one CPU row of ``student``
    (an error when the variant has several, e.g. an fp32 and a bf16 row of one IR), and
    ``rows["ov", "bf16"]`` or ``rows["ov", "fp16", "cuda"]`` narrow it."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def find(self, variant: str, precision: str | None = None, device: str = "cpu") -> list:
        return [
            r
            for r in self.rows
            if r["variant"] == variant
            and r["device"] == device
            and precision in (None, r["precision"])
        ]

    def __getitem__(self, key) -> dict:
        variant, *rest = key if isinstance(key, tuple) else (key,)
        found = self.find(variant, *rest)
        if len(found) != 1:
            keys = [r.get("key") for r in found]
            raise KeyError(f"{key!r} matches {len(found)} rows {keys}; name the precision")
        return found[0]


def metrics_of(rows: list[dict], reference: str):
    """An ``eval/metrics.json`` record holding ``rows``."""
    from compress.eval.schema import Metrics

    return Metrics(
        recipe="r",
        task="t",
        metric="accuracy",
        split="test",
        examples=1,
        reference=reference,
        steps=list(dict.fromkeys(r["variant"] for r in rows)),
        hardware={},
        versions={},
        rows=rows,
    )


QA_CHARS = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥金木水火土山川"


def qa_rows(n: int, seed: int = 0) -> dict:
    """A SQuAD-style document of ``n`` made-up questions a tiny model can learn: each context
    says where a place's capital is, among filler, and the question asks for it."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        place = "".join(rng.choice(QA_CHARS) for _ in range(2))
        capital = "".join(rng.choice(QA_CHARS) for _ in range(rng.randint(1, 3)))
        before = "".join(rng.choice(QA_CHARS) for _ in range(rng.randint(0, 12)))
        after = "".join(rng.choice(QA_CHARS) for _ in range(rng.randint(0, 12)))
        fact = f"{place}的首都是{capital}。"
        context = f"{before}。{fact}{after}。"
        start = context.index(fact) + len(place) + 4
        qa = {
            "id": f"Q{seed}_{i}",
            "question": f"{place}的首都是哪里？",
            "answers": [{"text": capital, "answer_start": start}],
        }
        paragraphs.append({"context": context, "qas": [qa]})
    return {"version": "v1.0", "data": [{"title": "t", "paragraphs": paragraphs}]}


def write_qa(path: Path, doc: dict) -> Path:
    import json

    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path
