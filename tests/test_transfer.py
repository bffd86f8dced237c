"""Unlabelled transfer data for distillation: read lazily, labelled by the teacher once, mixed
with the labelled rows; the hard-label loss never sees it."""

import json

import pytest

from compress.errors import DataError, RecipeError
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from compress.transfer import TransferConfig, iter_rows
from tests.conftest import TINY_SHAPE, kd_recipe, sentiment_rows, tiny_recipe


def _texts(n: int, seed: int = 9) -> list[str]:
    return [text for text, _ in sentiment_rows(n, seed)]


def test_rows_from_every_format(tmp_path):
    (tmp_path / "a.txt").write_text("好东西\n\n太差了\t不推荐\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("text,other\n还不错,x\n", encoding="utf-8")
    (tmp_path / "c.tsv").write_text("text\tother\n一般般\tx\n", encoding="utf-8")
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "很满意"}) + "\n", encoding="utf-8")
    cfg = TransferConfig(files=[tmp_path / n for n in ("a.txt", "b.csv", "c.tsv", "d.jsonl")])
    rows = list(iter_rows(cfg))
    assert [r["text"] for r in rows] == ["好东西", "太差了", "还不错", "一般般", "很满意"]
    assert rows[1]["text_pair"] == "不推荐" and rows[0]["text_pair"] is None
    assert len(list(iter_rows(cfg.model_copy(update={"max_examples": 2})))) == 2


def test_bad_rows_name_the_file_and_line(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"text": "好"}\n{"body": "坏"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.jsonl:2: no 'text' column"):
        list(iter_rows(TransferConfig(files=[tmp_path / "b.jsonl"])))
    with pytest.raises(DataError, match="does not exist"):
        list(iter_rows(TransferConfig(files=[tmp_path / "missing.txt"])))


def _recipe(cls_files, transfer: dict, matches: str = "none") -> dict:
    raw = kd_recipe(cls_files, matches=matches, transfer=transfer)
    raw["evaluate"]["latency"] = False
    return raw


def test_teacher_labels_every_transfer_row_once(tmp_path, cls_files, monkeypatch):
    import compress.transfer as transfer

    path = tmp_path / "unlabelled.txt"
    path.write_text("\n".join(_texts(50)) + "\n", encoding="utf-8")
    labelled_rows, served = [], []
    label, batches = transfer.label_with_teacher, transfer.epoch_batches

    def counting_label(data, forward, batch_size, work_dir):
        def counted(batch):
            labelled_rows.append(len(batch["input_ids"]))
            return forward(batch)

        return label(data, counted, batch_size, work_dir)

    def counting_batches(data, per_epoch, batch_size, seed, epoch):
        for item in batches(data, per_epoch, batch_size, seed, epoch):
            batch, logits = item
            assert "labels" not in batch and logits[0].shape == (len(batch["input_ids"]), 2)
            served.append((epoch, len(batch["input_ids"])))
            yield item

    monkeypatch.setattr(transfer, "label_with_teacher", counting_label)
    monkeypatch.setattr(transfer, "epoch_batches", counting_batches)
    raw = _recipe(cls_files, {"files": [str(path)], "ratio": 0.25})
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    assert sum(labelled_rows) == 50  # every transfer row, once
    per_epoch = round(0.25 * 160)  # 160 labelled train rows
    assert [sum(n for e, n in served if e == epoch) for epoch in (1, 2)] == [per_epoch] * 2
    steps = json.loads((root / "manifest.json").read_text())["steps"]
    data = steps["student"]["details"]["data"]
    assert data["labelled_rows"] == 160 and data["transfer_rows"] == 50
    assert data["transfer_rows_per_epoch"] == per_epoch and data["transfer_labelled_once"]
    # labelled batches (160 / 16) and transfer batches (40 / 16, rounded up) in each epoch
    assert steps["student"]["details"]["steps"] == 2 * (10 + 3)
    assert not list((tmp_path / "art" / "tiny").glob(".transfer-*"))  # working files removed
    md = (root / "report.md").read_text()
    assert "- `student`: 160 labelled rows and 50 unlabelled transfer rows (40 per epoch" in md


def test_transfer_with_hidden_matches_runs_the_teacher_per_batch(tmp_path, cls_files):
    path = tmp_path / "unlabelled.jsonl"
    path.write_text(
        "\n".join(json.dumps({"review": t}, ensure_ascii=False) for t in _texts(20)) + "\n",
        encoding="utf-8",
    )
    raw = _recipe(cls_files, {"files": [str(path)], "text_column": "review"}, matches="uniform")
    root = run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    data = json.loads((root / "manifest.json").read_text())["steps"]["student"]["details"]["data"]
    assert data["transfer_rows"] == 20 and not data["transfer_labelled_once"]


def test_transfer_is_for_classification(tmp_path, ner_files):
    """Refused at validation, before the teacher trains (the fault suite has the message)."""
    path = tmp_path / "unlabelled.txt"
    path.write_text("张伟在北京\n", encoding="utf-8")
    steps = tiny_recipe(ner_files, task_type="ner")["steps"]
    steps.append(
        {
            "name": "student",
            "stage": "distill",
            "student": {"shape": TINY_SHAPE},
            "transfer": {"files": [str(path)]},
        }
    )
    raw = tiny_recipe(ner_files, task_type="ner", steps=steps)
    with pytest.raises(RecipeError, match="transfer data .* is for classification tasks"):
        parse_recipe(raw)
