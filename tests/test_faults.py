"""The fault suite: bad data, stale results, faults on disk. Each case asserts the exit status or
error, that the message names the file, line or key, and that nothing finished is lost or
reported stale."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compress.errors import CompressError, DataError, RecipeError
from compress.recipe import parse_recipe
from compress.tasks import load_task
from tests.conftest import sentiment_rows, tiny_recipe, write_csv

# ---------------------------------------------------------------- malformed rows never relabel


def _task(files: dict[str, Path], **task) -> dict:
    raw = tiny_recipe(files)
    raw["task"].update(task)
    return raw["task"]


def _load(files, **task):
    return load_task(parse_recipe({**tiny_recipe(files), "task": _task(files, **task)}).task)


def _with_line(path: Path, line: str, at: int = 5) -> Path:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(at, line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "bad_line,message",
    [
        ("好评,很满意,positive", "train.csv:6: 3 fields, the header has 2 (text, label)"),
        ("只有一个字段", "train.csv:6: 1 fields, the header has 2"),
        ("text,label", "train.csv:6: the header repeats as a data row"),
    ],
)
def test_a_malformed_csv_row_is_an_error_naming_file_and_line(cls_files, bad_line, message):
    _with_line(cls_files["train"], bad_line)
    with pytest.raises(DataError, match=re.escape(message)):
        _load(cls_files)


def test_malformed_rows_can_be_skipped_and_the_label_set_stays(cls_files):
    _with_line(cls_files["train"], "好评,很满意,positive")
    _with_line(cls_files["train"], "太差了,退货,negative", at=9)
    task = _load(cls_files, on_bad_rows="skip")
    assert task.labels == ["negative", "positive"]
    assert task.stats["skipped"] == {"train": 2}


def test_tsv_and_jsonl_rows_are_checked_too(tmp_path, cls_files):
    rows = sentiment_rows(60, 4)
    tsv = tmp_path / "train.tsv"
    write_csv(tsv, rows, sep="\t")
    _with_line(tsv, "很好\t吃\tpositive")
    with pytest.raises(DataError, match=r"train.tsv:6: 3 fields, the header has 2"):
        _load({**cls_files, "train": tsv})
    jsonl = tmp_path / "train.jsonl"
    lines = [json.dumps({"text": t, "label": label}, ensure_ascii=False) for t, label in rows]
    lines[3] = json.dumps({"text": "好", "label": ["positive"]}, ensure_ascii=False)
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.jsonl:4: column 'label' holds a list"):
        _load({**cls_files, "train": jsonl})


def test_an_unclosed_quote_does_not_swallow_rows_silently(cls_files):
    _with_line(cls_files["train"], '"没有闭合的引号,positive')
    with pytest.raises(DataError, match=r"train.csv:6: (the label spans lines|\d+ fields)"):
        _load(cls_files)


def test_text_in_the_label_column_is_caught(tmp_path, cls_files):
    path = tmp_path / "swapped.csv"
    rows = [(label, text) for text, label in sentiment_rows(80, 5)]  # columns swapped
    write_csv(path, rows)
    with pytest.raises(DataError, match="distinct values in 80 train rows"):
        _load({**cls_files, "train": path})


# ---------------------------------------------------------------- encodings and odd files


def test_gbk_file_names_the_file_and_the_encoding(cls_files):
    for path in cls_files.values():  # GBK, as Chinese spreadsheets often save CSV
        path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    with pytest.raises(DataError, match=r"train.csv:2: not valid utf-8 text; it reads as GB18030"):
        _load(cls_files)
    task = _load(cls_files, encoding="gb18030")
    assert task.splits["train"][0].text in {t for t, _ in sentiment_rows(160, 1)}


def test_a_very_long_field_is_read(cls_files):
    _with_line(cls_files["train"], f"{'好' * 200_000},positive")
    task = _load(cls_files)
    assert max(len(ex.text) for ex in task.splits["train"]) == 200_000


# ---------------------------------------------------------------- model sources


def test_an_unreachable_hub_fails_at_once_with_one_clear_error(monkeypatch):
    """One connection attempt, then the local cache only (no retries per file)."""
    from compress.models import ModelSource, hub_kwargs, hub_unreachable, load_pretrained

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    hub_unreachable.cache_clear()
    try:
        assert hub_kwargs() == {"local_files_only": True}
        with pytest.raises(CompressError) as err:
            load_pretrained(ModelSource(source="hfl/chinese-lert-small"), "classification", ["a"])
    finally:
        hub_unreachable.cache_clear()
    message = str(err.value)
    assert "127.0.0.1:9 cannot be reached" in message and "not in the local cache" in message
    assert "set HF_HUB_OFFLINE=1" in message


def test_offline_hint_does_not_suggest_what_is_already_set(monkeypatch):
    from compress.models import source_error

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = str(source_error("hfl/chinese-lert-small", OSError("not cached")))
    assert "HF_HUB_OFFLINE=1 is set" in message and "set HF_HUB_OFFLINE=1\n" not in message


def test_a_missing_local_directory_is_named_as_such(tmp_path, monkeypatch):
    from compress.models import ModelSource, load_pretrained

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for typo in ("models/chinese-lert-smal", "./lert", str(tmp_path / "nowhere")):
        with pytest.raises(CompressError, match="local directory .* does not exist"):
            load_pretrained(ModelSource(source=typo), "classification", ["a"])


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "SafetensorError"),
        (lambda p: p.write_bytes(b"garbage"), "SafetensorError"),
        (lambda p: (p.parent / "config.json").write_text("{oops"), "not a valid JSON"),
    ],
)
def test_a_broken_model_directory_is_one_clear_error(tmp_path, damage, message):
    from transformers import BertConfig, BertForSequenceClassification

    from compress.models import load_model

    config = BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    BertForSequenceClassification(config).save_pretrained(tmp_path / "m")
    damage(tmp_path / "m" / "model.safetensors")
    with pytest.raises(CompressError, match=f"could not load the model in .*m'.*{message}"):
        load_model(tmp_path / "m", "classification")


@pytest.mark.parametrize(
    "config,message",
    [
        ("{oops", "not a readable JSON model config"),
        ('{"model_type": "gpt2"}', "not a BERT config"),
    ],
)
def test_a_bad_config_json_fails_recipe_validation_clearly(tmp_path, cls_files, config, message):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(config)
    raw = tiny_recipe(cls_files)
    raw["steps"][0]["model"] = str(tmp_path / "m")
    raw["steps"].append({"stage": "prune", "transformer": {"target_num_of_heads": 1}})
    with pytest.raises(RecipeError, match=f"config.json: {message}"):
        parse_recipe(raw)


# ---------------------------------------------------------------- runs: kill, disk, lineage


def _recipe_file(tmp_path: Path, files, steps=None, **evaluate) -> Path:
    import yaml

    raw = tiny_recipe(files, steps=steps)
    raw["evaluate"].update(evaluate)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _two_steps(files, **more):
    teacher = {**tiny_recipe(files)["steps"][0], "epochs": 2}
    return [teacher, {"name": "more", "stage": "finetune", "epochs": 1, "lr": 1e-3, **more}]


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compress", *args], capture_output=True, text=True, **kw
    )


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "compress", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(0.05)


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())["steps"]


def _report_variants(root: Path) -> list[str]:
    return [r["variant"] for r in json.loads((root / "report.json").read_text())["rows"]]


@pytest.mark.parametrize("point", ["inside the second step", "during evaluation"])
def test_kill_9_then_rerun_finishes_without_losing_finished_steps(
    tmp_path, cls_files, point, caplog
):
    from compress.recipe import load_recipe
    from compress.runner import run_recipe

    recipe = _recipe_file(tmp_path, cls_files, steps=_two_steps(cls_files))
    out, root = tmp_path / "art", tmp_path / "art" / "tiny"
    proc = _start("run", str(recipe), "--out", str(out))
    if point == "inside the second step":
        _wait_for(lambda: (root / ".02_more.partial").exists(), proc)
    else:
        _wait_for(lambda: (root / "02_more").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _manifest(root)["teacher"]["status"] == "done"
    weights = (root / "01_teacher/model/model.safetensors").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        run_recipe(load_recipe(recipe), out)  # the rerun, in this process
    assert "step 1 teacher: unchanged, skipped" in caplog.text
    assert (root / "01_teacher/model/model.safetensors").stat().st_mtime_ns == weights
    assert _report_variants(root) == ["teacher", "more"]
    assert not list(root.glob(".*.partial"))


def test_a_corrupted_finished_output_is_redone_on_resume(tmp_path, cls_files, caplog):
    from compress.runner import run_recipe

    recipe = parse_recipe(tiny_recipe(cls_files, steps=_two_steps(cls_files)))
    root = tmp_path / "art" / "tiny"
    run_recipe(recipe, tmp_path / "art", evaluate=False)
    weights = root / "01_teacher/model/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with caplog.at_level("INFO"):
        run_recipe(recipe, tmp_path / "art", evaluate=False)
    assert "01_teacher: its output changed on disk since it finished" in caplog.text
    assert weights.stat().st_size > 1000
    steps = _manifest(root)
    assert steps["more"]["input_digest"] == steps["teacher"]["digest"]


def test_two_concurrent_runs_the_second_is_refused(tmp_path, cls_files, capsys):
    recipe = _recipe_file(tmp_path, cls_files)
    out, root = tmp_path / "art", tmp_path / "art" / "tiny"
    first = _start("run", str(recipe), "--out", str(out))
    _wait_for(lambda: (root / ".lock.owner").exists(), first)
    from compress.__main__ import main

    assert main(["run", str(recipe), "--out", str(out)]) == 2  # the second, in this process
    second = capsys.readouterr().err
    first.wait()
    assert first.returncode == 0
    assert f"in use by another run (pid {first.pid}" in second


def test_a_full_disk_is_one_clear_error_and_the_rerun_resumes(tmp_path, cls_files, monkeypatch):
    """ENOSPC injected where the runner writes the manifest after the first step."""
    from compress import manifest as manifest_module
    from compress.__main__ import main

    recipe = _recipe_file(tmp_path, cls_files, steps=_two_steps(cls_files))
    out, root = tmp_path / "art", tmp_path / "art" / "tiny"
    real = manifest_module.write_json

    def full_disk(path, data):
        if "more" in data["steps"]:  # the teacher is done; the disk fills as the next step starts
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(manifest_module, "write_json", full_disk)
    assert main(["run", str(recipe), "--out", str(out), "--no-eval"]) == 1
    monkeypatch.setattr(manifest_module, "write_json", real)
    assert _manifest(root)["teacher"]["status"] == "done"
    assert main(["run", str(recipe), "--out", str(out), "--no-eval"]) == 0
    assert _manifest(root)["more"]["status"] == "done"


def test_full_disk_and_read_only_messages(tmp_path, capsys):
    from compress.cli import main_guard

    for code, fix in ((errno.ENOSPC, "free some space"), (errno.EROFS, "writable file system")):

        def fail(code=code):
            raise OSError(code, os.strerror(code), str(tmp_path / "art" / "manifest.json"))

        assert main_guard(fail) == 1
        err = capsys.readouterr().err
        assert f"error: {tmp_path / 'art' / 'manifest.json'}: {os.strerror(code)}; " in err
        assert fix in err and "run again to resume" in err


def test_an_artifacts_root_that_is_not_a_directory(tmp_path, cls_files):
    recipe = _recipe_file(tmp_path, cls_files)
    (tmp_path / "file").write_text("x")
    proc = _cli("run", str(recipe), "--out", str(tmp_path / "file"))
    assert proc.returncode == 2
    assert f"cannot create the artifacts directory {tmp_path / 'file' / 'tiny'}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_renamed_and_removed_steps_leave_the_report(tmp_path, cls_files):
    from compress.runner import run_recipe

    steps = _two_steps(cls_files)
    run_recipe(parse_recipe(tiny_recipe(cls_files, steps=steps)), tmp_path)
    root = tmp_path / "tiny"
    steps[1]["name"] = "again"
    run_recipe(parse_recipe(tiny_recipe(cls_files, steps=steps)), tmp_path)
    assert _report_variants(root) == ["teacher", "again"]
    assert set(_manifest(root)) == {"teacher", "again"} and not (root / "02_more").exists()
    run_recipe(parse_recipe(tiny_recipe(cls_files, steps=steps[:1])), tmp_path)
    assert _report_variants(root) == ["teacher"] and set(_manifest(root)) == {"teacher"}


def test_a_failed_upstream_change_marks_the_report_stale(tmp_path, cls_files, monkeypatch):
    from compress.eval.__main__ import main as eval_main

    from compress.registry import Stage
    from compress.runner import run_recipe
    from compress.stages import CATALOGUE

    steps = _two_steps(cls_files)
    run_recipe(parse_recipe(tiny_recipe(cls_files, steps=steps)), tmp_path)
    root = tmp_path / "tiny"
    real = CATALOGUE["finetune"]

    def crash(cfg, src, ctx):
        raise RuntimeError("simulated failure")

    monkeypatch.setitem(CATALOGUE, "finetune", Stage("finetune", real.config, crash))
    steps[0]["lr"] = 2e-3  # the teacher changes, and its new run fails
    changed = parse_recipe(tiny_recipe(cls_files, steps=steps))
    with pytest.raises(RuntimeError, match="simulated failure"):
        run_recipe(changed, tmp_path)
    report = (root / "report.md").read_text()
    assert report.startswith("> **Stale report**: step(s) teacher, more changed")
    assert json.loads((root / "report.json").read_text())["stale"] == ["teacher", "more"]
    # re-evaluating the new recipe finds no current step: the old "more" is not reported
    monkeypatch.setitem(CATALOGUE, "finetune", real)
    (root / "recipe.resolved.yaml").write_text(__import__("yaml").safe_dump(changed.resolved()))
    assert eval_main([str(root)]) == 0
    assert _report_variants(root) == []


def test_report_on_a_folder_without_metrics(tmp_path):
    proc = _cli("report", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'eval' / 'metrics.json'} is missing: evaluate first" in proc.stderr


def test_hints_name_the_command_that_reruns_this_recipe(tmp_path, cls_files):
    from compress.recipe import load_recipe

    own = _recipe_file(tmp_path, cls_files)
    assert load_recipe(own).command("steps.teacher.model=/m") == (
        f"lert-compress run {own.resolve()} 'steps.teacher.model=/m'"
    )
    shipped = load_recipe("recipes/demo.yaml")
    assert shipped.command("a=1", "b=2") == "make recipe=demo ARGS='a=1 b=2'"


# ---------------------------------------------------------------- nothing outside --out


@pytest.mark.parametrize(
    "override,key",
    [
        ("name=../escaped", "name"),
        ("name=/tmp/lert-escaped", "name"),
        ("name=a/../../escaped", "name"),
        ("name=..", "name"),
        (r"name=a\..\escaped", "name"),
        ("name=~/escaped", "name"),
        ("steps.0.name=../../escaped", "steps[0].name"),
        ("steps.0.name=/tmp/lert-escaped", "steps[0].name"),
        ("steps.0.name=.hidden", "steps[0].name"),
    ],
)
def test_a_recipe_value_cannot_put_a_path_outside_the_artifacts_root(
    tmp_path, cls_files, capsys, override, key
):
    from compress.__main__ import main

    recipe = _recipe_file(tmp_path, cls_files)
    out = tmp_path / "deep" / "art"
    before = set(tmp_path.rglob("*"))
    assert main(["run", str(recipe), "--out", str(out), override]) == 2
    err = capsys.readouterr().err
    value = override.split("=", 1)[1]
    assert f"{key}: {value!r} names a folder inside the artifacts root" in err
    # the file and the key, in one line
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert set(tmp_path.rglob("*")) == before  # nothing written anywhere, inside or out
    assert not Path("/tmp/lert-escaped").exists()


def test_chinese_and_dotted_names_are_folder_names(cls_files):
    raw = tiny_recipe(cls_files)
    raw["name"], raw["steps"][0]["name"] = "情感-v1.2", "教师_1"
    recipe = parse_recipe(raw)
    assert recipe.name == "情感-v1.2" and recipe.steps[0].name == "教师_1"


# ---------------------------------------------------------------- refused before any work

_STUDENT = {
    "name": "student",
    "stage": "distill",
    "student": {"shape": {"layers": 1, "hidden": 64, "heads": 2, "ffn": 128}},
}
_ONNX = {"name": "onnx", "stage": "export"}


@pytest.mark.parametrize(
    "steps,evaluate,message",
    [
        # values that validated but failed minutes later, inside training, export or timing
        (
            [{**_STUDENT, "matches": [{"layer_T": 5, "layer_S": 1}]}],
            {},
            "steps(student): matches[0].layer_T 5: the teacher has 2 layers",
        ),
        (
            [{**_STUDENT, "matches": [{"layer_T": 2, "layer_S": 3}]}],
            {},
            "steps(student): matches[0].layer_S 3: the student has 1 layers",
        ),
        (
            [{**_STUDENT, "transfer": {"files": ["/nonexistent/unlabelled.txt"]}}],
            {},
            "steps[1](student): transfer.files: /nonexistent/unlabelled.txt does not exist",
        ),
        (
            [{"stage": "prune", "vocabulary": {"extra_texts": ["/nonexistent/more.txt"]}}],
            {},
            "steps[1](prune): vocabulary.extra_texts: /nonexistent/more.txt does not exist",
        ),
        (
            [],
            {"batch_sizes": [1, 0]},
            "evaluate.batch_sizes.1: Input should be greater than or equal to 1",
        ),
        (
            [{"name": "mlm", "stage": "pretrain", "input": "teacher", "text": {"files": ["x"]}}],
            {"reference": "mlm"},
            "evaluate.reference: step 'mlm' writes no task model",
        ),
        # options that mean two things at once
        (
            [{**_STUDENT, "matches": "uniform", "cache_teacher_logits": True}],
            {},
            "cache_teacher_logits: true caches logits only",
        ),
        (
            [{**_STUDENT, "kd_loss_weight": 0, "hard_label_weight": 0, "matches": "none"}],
            {},
            "the student would learn nothing",
        ),
        (
            [
                _ONNX,
                {"name": "q", "stage": "quantize", "mode": "dynamic", "calibration_examples": 64},
            ],
            {},
            "steps[2](q): calibration_examples: static-mode options, but mode is dynamic",
        ),
        (
            [_ONNX, {"name": "q", "stage": "quantize", "target": "avx2", "preset": "arm64"}],
            {},
            "steps[2](q): target avx2 and preset arm64 name two instruction sets",
        ),
        (
            [_ONNX, {"name": "ov", "stage": "quantize", "backend": "openvino", "atol": 1e-3}],
            {},
            "steps[2](ov): atol: not an option of precision int8",
        ),
    ],
)
def test_what_can_only_fail_later_is_refused_at_validation(
    tmp_path, cls_files, steps, evaluate, message
):
    raw = tiny_recipe(cls_files)
    raw["steps"] += steps
    raw["evaluate"].update(evaluate)
    with pytest.raises(RecipeError, match=re.escape(message)):
        parse_recipe(raw)


def test_transfer_on_a_tagging_task_is_refused_at_validation(tmp_path):
    from tests.conftest import ner_sentences, write_conll

    files = {
        s: write_conll(tmp_path / f"{s}.conll", ner_sentences(8, i))
        for i, s in enumerate(("train", "dev", "test"))
    }
    text = tmp_path / "more.txt"
    text.write_text("一些文字\n", encoding="utf-8")
    raw = tiny_recipe(files, task_type="ner")
    raw["steps"].append({**_STUDENT, "transfer": {"files": [str(text)]}})
    with pytest.raises(RecipeError, match=re.escape("steps[1](student).transfer: transfer data")):
        parse_recipe(raw)


def test_mixed_precision_without_cuda_is_refused_before_the_first_step(
    tmp_path, cls_files, monkeypatch
):
    import torch

    from compress.runner import run_recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    raw = tiny_recipe(cls_files)
    raw["steps"].append({**_STUDENT, "precision": "bf16"})
    with pytest.raises(RecipeError, match=re.escape("steps[1](student).precision: bf16 mixed")):
        run_recipe(parse_recipe(raw), tmp_path / "art")
    assert not (tmp_path / "art").exists()  # the teacher did not train first


# ---------------------------------------------------------------- every text as a tokenizer sees it

# a lone surrogate is what a JSON "\ud83d" escape (half an emoji) decodes to; no tokenizer
# encodes it. A zero-width space alone is a text BERT's normaliser reduces to nothing.
_HALF_EMOJI = "好\ud83d评"
_ZERO_WIDTH = "\u200b"


def _jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in rows) + "\n")
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        (
            _HALF_EMOJI,
            "train.jsonl:4: column 'text' holds an unpaired surrogate '\\ud83d' at character 2",
        ),
        (_ZERO_WIDTH, "train.jsonl:4: column 'text' holds no character the tokenizer keeps"),
    ],
)
def test_a_text_the_tokenizer_cannot_take_is_named_where_it_is_read(
    tmp_path, cls_files, text, message
):
    rows = sentiment_rows(60, 4)
    rows[3] = (text, "positive")
    jsonl = _jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=re.escape(message)):
        _load({**cls_files, "train": jsonl})
    task = _load({**cls_files, "train": jsonl}, on_bad_rows="skip")
    assert task.stats["skipped"] == {"train": 1} and len(task.splits["train"]) == 59
    from compress.data import encode
    from compress.models import char_tokenizer

    tok = char_tokenizer([ex.text for ex in task.splits["train"]], 1, tmp_path / "tok")
    assert len(encode(task.splits["train"], tok, task, 32).input_ids) == 59  # encodes cleanly


def test_a_csv_text_pair_is_checked_too(tmp_path, cls_files):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "text,pair,label\n好吃,味道不错,positive\n难吃,\u200b\u200b,negative\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match=re.escape("pairs.csv:3: column 'pair' holds no character")):
        _load({**cls_files, "train": path}, text_pair_column="pair")


def test_a_conll_token_the_tokenizer_drops_is_named_and_its_sentence_skipped(tmp_path):
    from tests.conftest import ner_sentences, write_conll

    sentences = ner_sentences(30, 1)
    sentences[1] = [("北", "B-LOC"), (_ZERO_WIDTH, "I-LOC"), ("京", "I-LOC")]
    files = {"train": write_conll(tmp_path / "train.conll", sentences)}
    files |= {
        s: write_conll(tmp_path / f"{s}.conll", ner_sentences(10, i))
        for i, s in enumerate(("dev", "test"), 2)
    }
    line = len(sentences[0]) + 3  # the second sentence's second line
    raw = tiny_recipe(files, task_type="ner")
    with pytest.raises(
        DataError, match=re.escape(f"train.conll:{line}: token '\\u200b' is dropped")
    ):
        load_task(parse_recipe(raw).task)
    raw["task"]["on_bad_rows"] = "skip"
    task = load_task(parse_recipe(raw).task)
    assert task.stats["skipped"] == {"train": 1} and len(task.splits["train"]) == 29
    assert all(len(ex.tokens) == len(ex.tags) for ex in task.splits["train"])


def test_a_squad_question_the_tokenizer_cannot_take_is_named(tmp_path):
    from compress.qa import read_squad_json
    from tests.conftest import qa_rows

    doc = qa_rows(4)
    doc["data"][0]["paragraphs"][0]["qas"][0]["question"] = _HALF_EMOJI
    path = tmp_path / "train.json"
    path.write_text(json.dumps(doc), encoding="utf-8")  # as a \ud83d escape, the JSON way
    with pytest.raises(
        DataError, match=re.escape("data[0].paragraphs[0].qas[0].question holds an unpaired")
    ):
        read_squad_json(path)


def test_hub_rows_are_checked_as_they_are_read():
    from compress.tasks.config import TaskConfig
    from compress.tasks.files import BadRows
    from compress.tasks.hub import hub_examples

    cfg = TaskConfig(name="hub", type="classification", dataset="some/reviews")
    rows = [{"text": "好评", "label": 1}, {"text": _HALF_EMOJI, "label": 0}]
    with pytest.raises(
        DataError, match=re.escape("some/reviews[train] row 1: column 'text' holds an unpaired")
    ):
        hub_examples(rows, "train", cfg, ["neg", "pos"], BadRows(skip=False))
    bad = BadRows(skip=True)
    assert [ex.text for ex in hub_examples(rows, "train", cfg, ["neg", "pos"], bad)] == ["好评"]
    assert bad.skipped == {"train": 1}


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_transfer_and_pretraining_text_is_checked_where_it_is_read(tmp_path, suffix):
    from compress.corpus import CorpusConfig, iter_texts
    from compress.transfer import TransferConfig, iter_rows

    path = tmp_path / f"more{suffix}"
    if suffix == ".txt":  # UTF-8 text cannot hold a surrogate; a zero-width line it can
        path.write_text(f"很好\n还行\n{_ZERO_WIDTH}\n", encoding="utf-8")
        expected = re.escape("more.txt:3: the text holds no character the tokenizer keeps")
    else:
        lines = [json.dumps({"text": t}) for t in ("很好", "还行", _HALF_EMOJI)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected = re.escape("more.jsonl:3: the text holds an unpaired surrogate")
    with pytest.raises(DataError, match=expected):
        list(iter_rows(TransferConfig(files=[path])))
    with pytest.raises(DataError, match=expected):
        list(iter_texts(CorpusConfig(files=[path])))


# ---------------------------------------------------------------- errors blame the real cause


def test_a_label_only_in_dev_or_test_blames_train(tmp_path, cls_files):
    for split in ("dev", "test"):
        rows = sentiment_rows(40, 2) + [("一般般吧", "neutral")]
        path = write_csv(tmp_path / f"{split}-extra.csv", rows)
        with pytest.raises(DataError) as info:
            _load({**cls_files, split: path})
        message = str(info.value)
        assert message.startswith(f"{path}: label 'neutral' of '一般般吧' is in the {split} split")
        assert f"but never in train ({cls_files['train']}" in message


def test_a_train_split_with_one_label_is_named_not_the_next_file(tmp_path, cls_files):
    path = write_csv(
        tmp_path / "positive.csv", [r for r in sentiment_rows(160, 1) if r[1] == "positive"]
    )
    with pytest.raises(DataError, match=re.escape(f"train rows ({path}) has the label 'positive'")):
        _load({**cls_files, "train": path})


def test_a_train_file_too_small_to_cut_dev_and_test_from_is_named(tmp_path):
    path = write_csv(tmp_path / "small.csv", sentiment_rows(30, 1))
    with pytest.raises(
        DataError,
        match=re.escape(f"task.train: {path} has 30 usable examples, too few to cut dev 2000"),
    ):
        _load({"train": path})
