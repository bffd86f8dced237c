import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from compress.errors import CompressError, RecipeError
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from tests.conftest import (
    Rows,
    ner_sentences,
    sentiment_rows,
    tiny_recipe,
    write_conll,
    write_csv,
)

STEPS = [
    {"name": "fp32-onnx", "stage": "export", "ort_format": True},
    {"name": "int8-dynamic", "stage": "quantize", "input": "fp32-onnx", "ort_format": True},
    {
        "name": "int8-static",
        "stage": "quantize",
        "input": "fp32-onnx",
        "mode": "static",
        "calibration_examples": 16,
    },
    {
        "name": "ov-int8",
        "stage": "quantize",
        "input": "fp32-onnx",
        "backend": "openvino",
        "calibration_examples": 16,
    },
    {
        "name": "ov-fp32",
        "stage": "quantize",
        "input": "fp32-onnx",
        "backend": "openvino",
        "precision": "fp32",
    },
    {"name": "bnb-int8", "stage": "quantize", "input": "teacher", "backend": "bitsandbytes"},
    {
        "name": "bnb-nf4",
        "stage": "quantize",
        "input": "teacher",
        "backend": "bitsandbytes",
        "bits": "nf4",
    },
    {"name": "bf16", "stage": "quantize", "input": "teacher", "backend": "torch", "dtype": "bf16"},
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("q")
    files = {
        s: write_csv(tmp / f"{s}.csv", sentiment_rows(n, i))
        for i, (s, n) in enumerate((("train", 160), ("dev", 40), ("test", 40)))
    }
    raw = tiny_recipe(files)
    raw["steps"] += STEPS
    root = run_recipe(parse_recipe(raw), tmp / "art")
    return (
        root,
        json.loads((root / "report.json").read_text()),
        json.loads((root / "manifest.json").read_text())["steps"],
    )


def test_export_validated_against_pytorch(run):
    root, report, steps = run
    check = steps["fp32-onnx"]["details"]["validation"]
    assert check["max_abs_diff"] < 1e-4 and check["argmax_agreement"] == 1.0
    rows = Rows(report["rows"])
    assert (
        rows["fp32-onnx"]["runtime"] == "onnxruntime" and rows["fp32-onnx"]["precision"] == "fp32"
    )
    assert rows["fp32-onnx"]["score"] == pytest.approx(rows["teacher"]["score"], abs=0.03)


@pytest.mark.parametrize("name", ["int8-dynamic", "int8-static"])
def test_int8_reloads_with_optimum_and_plain_onnxruntime(run, name):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    root, report, steps = run
    path = root / steps[name]["output"]
    assert path.name == "model_quantized.onnx" and (root / steps["fp32-onnx"]["output"]).exists()
    tok = AutoTokenizer.from_pretrained(path.parent)
    batch = tok(["好东西很满意", "太差了退货"], padding=True, return_tensors="pt")
    model = ORTModelForSequenceClassification.from_pretrained(path.parent, file_name=path.name)
    via_optimum = model(**batch).logits.numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    via_ort = sess.run(None, {k: v.numpy() for k, v in batch.items()})[0]
    assert np.allclose(via_optimum, via_ort, atol=1e-5)
    details = steps[name]["details"]
    # the recipe names no target: the portable default, whatever CPU built it
    assert details["preset"] == details["target"] == "avx2"
    assert details["target_source"].startswith("the default")
    assert details["built_on"] in ("avx512_vnni", "avx512", "avx2", "arm64")
    card = (path.parent / "README.md").read_text()
    assert "Quantized for the `avx2` instruction set" in card
    assert details["validation"]["argmax_agreement"] >= 0.9
    row = Rows(report["rows"])[name]
    assert row["precision"] == "int8" and row["size_mb"] < report["rows"][0]["size_mb"]


def test_openvino_int8_is_nncf_quantized_and_validated(run):
    import openvino as ov

    root, report, steps = run
    path = root / steps["ov-int8"]["output"]
    assert path.name == "openvino_model.xml" and path.with_suffix(".bin").exists()
    # a plain OpenVINO client reads it; NNCF's FakeQuantize ops are what make it int8
    model = ov.Core().read_model(str(path))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    details = steps["ov-int8"]["details"]
    assert details["calibration_examples"] == 16
    assert details["validation"]["argmax_agreement"] >= 0.9
    rows = Rows(report["rows"])
    row = rows["ov-int8"]
    assert (row["runtime"], row["device"], row["precision"]) == ("openvino", "cpu", "int8")
    assert row["size_mb"] < rows["fp32-onnx"]["size_mb"] and "b1" in row["latency_ms"]
    assert row["score"] >= rows["fp32-onnx"]["score"] - 0.1


def test_openvino_fp32_ir_matches_the_onnx_model(run):
    root, report, steps = run
    check = steps["ov-fp32"]["details"]["validation"]
    assert check["max_abs_diff"] < 1e-4 and check["argmax_agreement"] == 1.0
    from compress.openvino import cpu_has_bf16

    rows = Rows(report["rows"])
    assert rows["ov-fp32", "fp32"]["runtime"] == "openvino"
    # where the CPU has bf16, the same IR also gets a bf16 row of its own identity
    bf16 = rows.find("ov-fp32", "bf16")
    assert len(bf16) == int(cpu_has_bf16())
    if bf16:
        assert bf16[0]["key"] == "ov-fp32|openvino|bf16|cpu"
        assert bf16[0]["score"] == pytest.approx(rows["ov-fp32", "fp32"]["score"], abs=0.1)
        md = (root / "report.md").read_text()
        assert "| ov-fp32 | quantize | openvino | cpu | bf16 |" in md
        assert "| ov-fp32 | quantize | openvino | cpu | fp32 |" in md
    # the weights are kept fp32 on disk (OpenVINO's default would store them as f16)
    import openvino as ov

    model = ov.Core().read_model(str(root / steps["ov-fp32"]["output"]))
    types = {op.get_output_element_type(0).get_type_name() for op in model.get_ops()}
    assert "f32" in types and "f16" not in types
    assert rows["ov-fp32", "fp32"]["size_mb"] > 0.8 * rows["fp32-onnx"]["size_mb"]
    assert rows["ov-fp32", "fp32"]["score"] == pytest.approx(rows["fp32-onnx"]["score"], abs=1 / 40)


def test_openvino_bf16_row_only_where_the_cpu_has_bf16(run, monkeypatch):
    from compress.eval.evaluate import Variant, runs_for

    import compress.openvino

    root, _, steps = run
    fp32 = Variant("ov-fp32", "ov-fp32", "quantize", root / steps["ov-fp32"]["output"])
    int8 = Variant("ov-int8", "ov-int8", "quantize", root / steps["ov-int8"]["output"])
    monkeypatch.setattr(compress.openvino, "cpu_has_bf16", lambda: True)
    assert runs_for(fp32, "cpu", []) == [None, "bf16"]
    assert runs_for(int8, "cpu", []) == [None]
    assert runs_for(fp32, "cuda", ["fp16"]) == []
    monkeypatch.setattr(compress.openvino, "cpu_has_bf16", lambda: False)
    assert runs_for(fp32, "cpu", []) == [None]


@pytest.mark.parametrize("name", ["teacher", "int8-dynamic", "ov-int8", "bnb-int8"])
@pytest.mark.parametrize("length", ["as written", 3000])
def test_model_card_snippet_loads_the_model(run, name, length):
    """The card's usage code loads the artifact and predicts, as written and on a pasted text of
    3,000 characters (far beyond the 32 tokens it was trained on, and the 512 positions)."""
    import contextlib
    import io
    import re

    root, report, steps = run
    directory = (
        (root / steps[name]["output"]).parent if name not in ("teacher", "bnb-int8") else None
    )
    card = ((directory or root / steps[name]["output"]) / "README.md").read_text()
    assert "- Labels (id order): `negative`, `positive`." in card
    assert "- Examples as loaded: train 160, dev 40, test 40." in card
    assert "Trained on texts cut at 32 tokens: a longer text is cut the same way." in card
    # the first snippet loads the step's artifact (an ORT-format copy has its own after it)
    code = re.findall(r"```python\n(.*?)```", card, flags=re.S)[0]
    if length != "as written":
        text = ("服务很好，菜也好吃，下次还来。" * 200)[:length]
        code, n = re.subn(r'^text = ".*"', f"text = {text!r}", code, flags=re.M)
        assert n == 1, "the snippet names its input text on one line"
    scope: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, scope)
    if name in ("teacher", "bnb-int8"):
        assert scope["predict"].model.config.id2label == {0: "negative", 1: "positive"}
        assert re.search(r"'label': '(negative|positive)'", printed.getvalue())
    elif name == "int8-dynamic":
        assert scope["outputs"].logits.shape == (1, 2)
    else:
        assert np.asarray(scope["logits"]).shape == (1, 2)


@pytest.mark.parametrize("name,precision", [("bnb-int8", "int8"), ("bnb-nf4", "nf4")])
def test_bitsandbytes_on_cpu(run, name, precision):
    root, report, steps = run
    row = Rows(report["rows"])[name]
    assert row["runtime"] == "bitsandbytes" and row["device"] == "cpu"
    assert row["precision"] == precision
    assert row["score"] >= report["rows"][0]["score"] - 0.1


def test_4bit_rows_count_every_weight_once(run):
    """nf4 packs two weights per byte; its row counts the weights, as the int8 and fp32 rows."""
    _, report, _ = run
    rows = Rows(report["rows"])
    assert rows["bnb-nf4"]["params"] == rows["bnb-int8"]["params"] == rows["teacher"]["params"]


def test_bf16_cast_runs_on_cpu(run):
    _, report, _ = run
    row = Rows(report["rows"])["bf16"]
    assert row["precision"] == "bf16" and row["runtime"] == "pytorch"


def test_preset_choice(monkeypatch):
    import compress.hardware
    import compress.onnx as onnx_mod

    monkeypatch.setattr(onnx_mod.platform, "machine", lambda: "x86_64")
    for flags, expected in [
        ({"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "avx512_vnni"),
        ({"avx2", "avx512f", "avx512bw"}, "avx512"),
        ({"avx2"}, "avx2"),
    ]:
        monkeypatch.setattr(compress.hardware, "cpu_flags", lambda f=flags: f)
        assert onnx_mod.cpu_preset() == expected
    monkeypatch.setattr(onnx_mod.platform, "machine", lambda: "aarch64")
    assert onnx_mod.cpu_preset() == "arm64"


@pytest.mark.parametrize(
    "options,flags,expected",
    [
        ({}, {"avx2", "avx512f", "avx512bw", "avx512_vnni"}, ("avx2", "the default")),
        ({}, {"avx2"}, ("avx2", "the default")),
        ({"target": "avx512_vnni"}, {"avx2"}, ("avx512_vnni", "the recipe's target")),
        ({"preset": "avx512"}, {"avx2"}, ("avx512", "the recipe's preset")),
        ({"target": "arm64", "preset": "arm64"}, {"avx2"}, ("arm64", "the recipe's target")),
        (
            {"target": "build-host"},
            {"avx2", "avx512f", "avx512bw", "avx512_vnni"},
            ("avx512_vnni", "build host"),
        ),
        ({"target": "build-host"}, {"avx2"}, ("avx2", "build host")),
    ],
)
def test_int8_is_quantized_for_its_target_not_the_build_host(monkeypatch, options, flags, expected):
    """The preset follows the recipe, whatever machine builds it; only build-host reads it."""
    import compress.hardware
    import compress.onnx as onnx_mod
    from compress.stages.quantize import OnnxRuntimeQuantize

    monkeypatch.setattr(onnx_mod.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(compress.hardware, "cpu_flags", lambda: flags)
    target, source = OnnxRuntimeQuantize(**options).resolved_target()
    assert target == expected[0] and expected[1] in source


def test_a_target_and_a_preset_that_disagree_are_refused(tmp_path):
    files = {
        s: write_csv(tmp_path / f"{s}.csv", sentiment_rows(8, i))
        for i, s in enumerate(("train", "dev", "test"))
    }
    raw = tiny_recipe(files)
    raw["steps"] += [
        {"name": "onnx", "stage": "export"},
        {
            "name": "q",
            "stage": "quantize",
            "input": "onnx",
            "target": "avx2",
            "preset": "avx512_vnni",
        },
    ]
    with pytest.raises(RecipeError, match=r"steps\[2\]\(q\): target avx2 and preset avx512_vnni"):
        parse_recipe(raw)


def test_ner_export_and_a_failed_validation_is_recorded(tmp_path):
    files = {
        s: write_conll(tmp_path / f"{s}.conll", ner_sentences(n, i))
        for i, (s, n) in enumerate((("train", 60), ("dev", 20), ("test", 20)))
    }
    raw = tiny_recipe(files, task_type="ner")
    raw["steps"].append({"name": "onnx", "stage": "export"})
    root = run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    steps = json.loads((root / "manifest.json").read_text())["steps"]
    assert steps["onnx"]["details"]["validation"]["max_abs_diff"] < 1e-4
    raw["steps"][-1]["atol"] = 1e-12
    with pytest.raises(CompressError, match="ONNX logits differ from PyTorch"):
        run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    failed = json.loads((root / "manifest.json").read_text())["steps"]["onnx"]
    assert failed["status"] == "failed" and failed["details"]["validation"]["max_abs_diff"] > 0


def test_pruned_model_exports(tmp_path):
    from optimum.exporters.onnx import main_export
    from textpruner import GeneralConfig, TransformerPruner, TransformerPruningConfig

    from compress.models import ShapeSpec, char_tokenizer, init_from_shape, save_model
    from compress.onnx import OPTIMUM_TASKS, compare_logits, torch_reference, validation_batches
    from compress.pruning import prune_vocabulary
    from compress.tasks import load_task

    files = {
        s: write_csv(tmp_path / f"{s}.csv", sentiment_rows(40, i))
        for i, s in enumerate(("train", "dev", "test"))
    }
    task = load_task(parse_recipe(tiny_recipe(files)).task)
    tok = char_tokenizer(task.texts(), 1, tmp_path / "v")
    model = init_from_shape(
        ShapeSpec(layers=2, hidden=32, heads=4, ffn=64), tok, task.type, task.labels
    )
    model, tok, _ = prune_vocabulary(model, tok, task.texts()[:10], 1, tmp_path / "w")
    pruner = TransformerPruner(
        model,
        TransformerPruningConfig(pruning_method="masks"),
        GeneralConfig(use_device="cpu", output_dir=str(tmp_path / "w")),
    )
    ffn_mask = torch.zeros(2, 64)
    ffn_mask[:, :40] = 1
    pruner.prune(
        head_mask=torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]]), ffn_mask=ffn_mask, save_model=False
    )
    model.config.intermediate_size = 40
    save_model(model, tok, tmp_path / "m")
    main_export(
        str(tmp_path / "m"),
        tmp_path / "onnx",
        task=OPTIMUM_TASKS["classification"],
        do_validation=False,
        local_files_only=True,
    )
    batches = validation_batches(task, tok, 32, 16)
    check = compare_logits(torch_reference(model), tmp_path / "onnx" / "model.onnx", batches)
    assert check["max_abs_diff"] < 1e-4


def test_wrong_inputs_are_rejected_before_any_step_runs(cls_files):
    raw = tiny_recipe(cls_files)
    raw["steps"].append({"name": "q", "stage": "quantize"})
    with pytest.raises(RecipeError, match="needs an ONNX file as input, but step 'teacher'"):
        parse_recipe(raw)
    raw["steps"][-1] = {"name": "q", "stage": "export"}
    raw["steps"].append({"name": "bnb", "stage": "quantize", "backend": "bitsandbytes"})
    with pytest.raises(RecipeError, match="needs a PyTorch model directory as input"):
        parse_recipe(raw)
    raw["steps"][-1] = {"name": "ort", "stage": "quantize"}
    raw["steps"].append({"name": "ov", "stage": "quantize", "backend": "openvino"})
    with pytest.raises(RecipeError, match="step 'ort' is already quantized; set input: to the"):
        parse_recipe(raw)
    raw["steps"][-1]["input"] = "q"
    assert parse_recipe(raw).step("ov").kind == "openvino"


@pytest.mark.parametrize(
    "options,message",
    [
        ({"backend": "torch", "bits": "nf4"}, "'bits' is an option of backend bitsandbytes"),
        ({"mode": "static", "dtype": "fp16"}, "'dtype' is an option of backend torch"),
        ({"backend": "onnx"}, "unknown backend 'onnx'; did you mean 'onnxruntime'"),
    ],
)
def test_wrong_backend_options_are_errors(cls_files, options, message):
    raw = tiny_recipe(cls_files)
    raw["steps"] += [{"name": "onnx", "stage": "export"}, {"stage": "quantize", **options}]
    if options.get("backend") == "torch":
        raw["steps"][-1]["input"] = "teacher"
    with pytest.raises(RecipeError, match=message):
        parse_recipe(raw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rows(tmp_path, cls_files):
    raw = tiny_recipe(cls_files)
    raw["steps"] += [
        {"name": "onnx", "stage": "export"},
        {"name": "int8", "stage": "quantize", "input": "onnx"},
        {"name": "bnb", "stage": "quantize", "input": "teacher", "backend": "bitsandbytes"},
    ]
    raw["evaluate"]["devices"] = ["cpu", "cuda"]
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    report = json.loads((root / "report.json").read_text())
    cuda = {(r["variant"], r["precision"]) for r in report["rows"] if r["device"] == "cuda"}
    assert {("teacher", "fp32"), ("teacher", "fp16"), ("bnb", "int8")} <= cuda
    assert ("int8", "int8") not in cuda  # ORT int8 is a CPU path
    assert report["hardware"]["gpu"] and (root / "pareto.png").exists()


def test_ort_format_written_validated_scored_and_carded(run):
    """ort_format: the .ort and its required_operators.config beside the .onnx (onnxruntime's
    own converter), checked against the .onnx, a row of its own, and a card snippet that loads
    exactly that file."""
    import re

    root, report, steps = run
    for name, stem in (("fp32-onnx", "model"), ("int8-dynamic", "model_quantized")):
        info = steps[name]["details"]["ort_format"]
        here = (root / steps[name]["output"]).parent
        assert info["file"] == f"{stem}.ort" and (here / info["file"]).is_file()
        config = (here / info["required_operators"]).read_text()
        assert info["required_operators"] == f"{stem}.required_operators.config"
        # the header names the bundled file, not the step's temporary directory
        assert f"# - {stem}.ort" in config and ".partial" not in config
        assert re.search(r"^ai\.onnx;\d+;.*Gather", config, flags=re.M)
        assert info["operators"] >= 10
        assert info["validation"]["argmax_agreement"] == 1.0
        assert info["validation"]["max_abs_diff"] <= 1e-3
        assert steps[name]["extra_variants"]["ort format"].endswith(f"/{stem}.ort")
        row = Rows(report["rows"])[f"{name} (ort format)"]
        onnx_row = Rows(report["rows"])[name]
        assert row["runtime"] == "onnxruntime" and row["precision"] == onnx_row["precision"]
        assert row["params"] == onnx_row["params"] and "b1" in row["latency_ms"]
        assert row["size_mb"] == pytest.approx(info["mb"], abs=0.01)
        assert row["score"] == onnx_row["score"]  # the same graph, the same predictions
        card = (here / "README.md").read_text()
        assert "### ORT format (ONNX Runtime Mobile)" in card
        assert f"| onnxruntime (ort format) | cpu | {row['precision']} |" in card
        code = re.findall(r"```python\n(.*?)```", card, flags=re.S)[-1]
        assert f'{info["file"]}"' in code
        scope: dict = {}
        exec(code, scope)
        assert scope["session"]._model_path.endswith(info["file"])
        assert np.asarray(scope["outputs"][0]).shape == (1, 2)
    # quantized for a target: the .ort keeps the int8 graph (ONNX Runtime reads int8 ops in it)
    assert Rows(report["rows"])["int8-dynamic (ort format)"]["precision"] == "int8"
    # report.md shows each conversion's check against what it was converted from
    checks = {c["variant"]: c for c in report["checked_against_source"]}
    ort = steps["int8-dynamic"]["details"]["ort_format"]
    assert checks["int8-dynamic (ort format)"]["against"] == "`int8-dynamic` (model_quantized.onnx)"
    assert checks["int8-dynamic (ort format)"]["max_abs_diff"] == ort["validation"]["max_abs_diff"]
    assert checks["int8-dynamic"]["against"] == "`fp32-onnx` (model.onnx)"
    assert checks["fp32-onnx"]["against"].startswith("`teacher`")
    md = (root / "report.md").read_text()
    start = f"| int8-dynamic (ort format) | model_quantized.ort ({ort['operators']} operators) |"
    line = next(x for x in md.splitlines() if x.startswith(start))
    assert "| `int8-dynamic` (model_quantized.onnx) |" in line
    assert f"{ort['validation']['argmax_agreement']:.4f}" in line


def test_ort_format_needs_its_onnx_beside_it(run, tmp_path):
    """The evaluator reads an .ort file's parameters and int8 ops from the .onnx it came from;
    without it, one clear error naming both."""
    import shutil

    from compress.eval.runtimes import load_runtime

    root, _, steps = run
    ort_file = root / steps["int8-dynamic"]["extra_variants"]["ort format"]
    shutil.copy(ort_file, tmp_path / ort_file.name)
    shutil.copy(ort_file.parent / "config.json", tmp_path / "config.json")
    with pytest.raises(CompressError, match="model_quantized.onnx.*is not beside it"):
        load_runtime(tmp_path / ort_file.name, "classification", "cpu", 1)


def test_end_to_end_rows_time_the_test_texts_at_their_own_length(run):
    """Every CPU row has an end-to-end latency and bucketed throughput; the texts are the
    scored split's, and the report's CPU table and text show them."""
    from compress.eval.end_to_end import text_sample, token_lengths

    from compress.models import load_tokenizer
    from compress.tasks import load_task

    root, report, steps = run
    info = report["end_to_end"]
    assert info["split"] == "test" and info["texts"] == 40  # all 40 (the default asks 200)
    for row in report["rows"]:
        assert row["end_to_end"]["p50"] > 0 and row["end_to_end"]["p90"] >= row["end_to_end"]["p50"]
        assert set(row["end_to_end_throughput"]) == {"b4"}  # the batch sizes above 1
    # the lengths are those of the test texts as the first row's tokenizer cuts them
    import yaml

    from compress.tasks.config import TaskConfig

    resolved = yaml.safe_load((root / "recipe.resolved.yaml").read_text())
    task = load_task(TaskConfig.model_validate(resolved["task"]))
    split = task.splits["test"]
    sample = [split[i] for i in text_sample(len(split), 200)]
    lengths = token_lengths(load_tokenizer(root / steps["teacher"]["output"]), task, sample, 32)
    assert info["tokens"]["p50"] == pytest.approx(float(np.median(lengths)))
    assert info["tokens"]["max"] == max(lengths) < 32  # short texts, not the padded 16 or 32
    md = (root / "report.md").read_text()
    assert "end to end b1 p50 / p90 ms" in md and "End to end: what an app sees, on 40 texts" in md
    assert "Fastest on CPU end to end" in md


def test_end_to_end_includes_the_tokenizer(run):
    """A deliberately slow tokenizer (5 ms a call) shows in the end-to-end latency of a model
    that takes no time, and only there."""
    import time

    from compress.eval.end_to_end import measure_end_to_end
    from compress.eval.schema import MetricRow

    from compress.models import load_tokenizer
    from compress.tasks import Example, TaskData

    root, _, steps = run
    tokenizer = load_tokenizer(root / steps["teacher"]["output"])

    class Slow:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, *args, **kwargs):
            time.sleep(0.005)
            return self.inner(*args, **kwargs)

    class Instant:
        max_batch = None

        @staticmethod
        def forward(batch):
            return np.zeros((batch["input_ids"].shape[0], 2))

    def row(name):
        return MetricRow(
            variant=name,
            step=name,
            stage="finetune",
            runtime="onnxruntime",
            device="cpu",
            precision="fp32",
            params=1,
            size_mb=0.1,
            score=0.5,
            seq_len=16,
            path="x",
        )

    task = TaskData("t", "classification", ["neg", "pos"], {})
    examples = [Example(text="好东西很满意" * (i % 3 + 1), label="pos") for i in range(20)]
    fast, slow = row("fast"), row("slow")
    info = measure_end_to_end(
        [(fast, Instant(), tokenizer), (slow, Instant(), Slow(tokenizer))],
        task,
        examples,
        32,
        [1, 4],
        warmup=1,
    )
    assert slow.end_to_end.p50 - fast.end_to_end.p50 >= 4.0
    assert fast.end_to_end.p50 < 4.0
    # bucketed: 5 batches of 4, one tokenizer call each: 5 x 5 ms for 20 texts at least
    assert slow.end_to_end_throughput["b4"] <= 20 / 0.025
    assert info["texts"] == 20 and info["characters"]["max"] == 18


def test_a_full_precision_conversion_beyond_its_atol_is_refused_with_both_sides_named():
    from compress.onnx import ValidationError
    from compress.stages.quantize import _within_atol

    check = {"max_abs_diff": 2e-3, "argmax_agreement": 1.0}
    _within_atol(check, 1e-2, "the OpenVINO IR's", "the ONNX model's", {})
    with pytest.raises(ValidationError) as err:
        _within_atol(check, 1e-3, "the ExecuTorch program's", "PyTorch's", {"validation": check})
    assert str(err.value) == (
        "the ExecuTorch program's logits differ from PyTorch's by 2.00e-03 > atol 0.001; raise "
        "atol if this is expected"
    )
    assert err.value.details == {"validation": check}
