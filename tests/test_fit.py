"""The fit stage: budget and space validation, shape-first probes, a search that resumes and is
shared by two workers, and the winner as a step output the evaluator and report use."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compress.errors import RecipeError
from compress.manifest import Manifest
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from tests.conftest import tiny_recipe

FIT = {
    "name": "fit",
    "stage": "fit",
    "budget": {"max_drop": 60, "threads": 1},
    "space": {"layers": [1, 2], "heads": [1, 2], "ffn": [64], "runtimes": ["onnx-fp32"]},
    "recover": {"method": "distill", "epochs": 1, "batch_size": 16, "lr": 3e-3},
    "probe": {"warmup": 2, "repeats": 30},
}


def fit_recipe(files, **options) -> dict:
    recipe = tiny_recipe(files)
    recipe["steps"][0]["epochs"] = 3
    step = json.loads(json.dumps(FIT))
    for key, value in options.items():
        if isinstance(value, dict) and isinstance(step.get(key), dict):
            step[key] |= value
        else:
            step[key] = value
    recipe["steps"].append(step)
    return recipe


def _problems(files, **options) -> str:
    with pytest.raises(RecipeError) as err:
        parse_recipe(fit_recipe(files, **options))
    return str(err.value)


def test_stages_fit_documents_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "compress", "stages", "fit"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (
        "budget:",
        "latency_ms:",
        "batch_size:",
        "size_mb:",
        "max_drop:",
        "LOWER bound",
        "reference:",
        "space:",
        "layers:",
        "heads:",
        "ffn:",
        "vocabulary:",
        "runtimes:",
        "objective:",
        "max_trials:",
        "recover:",
        "workers:",
    ):
        assert option in out, option


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"space": {"heads": []}}, "space.heads is empty"),
        ({"space": {"runtimes": []}}, "space.runtimes is empty"),
        ({"space": {"heads": [3]}}, "space.heads [3]: does not divide the width 64"),
        ({"space": {"layers": [3]}}, "space.layers [3]: more than"),
        ({"budget": {"latency_ms": 5}}, "budget.batch_size: a latency budget needs"),
        ({"budget": {"reference": "nope"}}, "budget.reference: 'nope' is not an earlier step"),
        ({"space": {"runtimes": ["tflite"]}}, "runtimes"),
        (
            {"budget": {"latency_of": "end_to_end", "batch_size": 8}},
            "budget.batch_size: end-to-end latency is one text at a time",
        ),
    ],
)
def test_bad_budget_or_space_is_refused_at_validation(cls_files, options, message):
    assert message in _problems(cls_files, **options)


def _trained(root, entry) -> list[str]:
    """Every candidate a worker trained, one per training run (the step's trials/ files)."""
    return [json.loads(p.read_text())["key"] for p in (root / entry.dir / "trials").glob("*.json")]


def _dashboard_trials(db) -> int:
    """The completed trials Optuna's dashboard shows for the fit study in ``db`` (its own web
    app, asked as a browser asks it)."""
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    app = wsgi(f"sqlite:///{db}")

    def get(path: str) -> dict:
        env: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(env)
        status = []
        body = b"".join(app(env, lambda s, h, e=None: status.append(s)))
        assert status == ["200 OK"], (path, status)
        return json.loads(body)

    (study,) = get("/api/studies")["study_summaries"]
    assert study["study_name"] == "fit"
    trials = get(f"/api/studies/{study['study_id']}")["trials"]
    return sum(t["state"] == "Complete" for t in trials)


def test_fit_chooses_within_the_budget_and_reports_it(tmp_path, cls_files):
    # the two-layer, two-head shape is over this size when probed: never trained
    recipe = fit_recipe(cls_files, budget={"size_mb": 0.3})
    root = run_recipe(parse_recipe(recipe), tmp_path / "a")
    entry = Manifest(root).steps["fit"]
    details = entry.details
    rows = {r["key"]: r for r in details["candidates"]}
    assert len(rows) == 4 and details["probed"] == 4
    over = [k for k, r in rows.items() if r["status"] == "over size"]
    assert over and all(rows[k]["size_mb"] > 0.3 for k in over)
    assert all("dev_score" not in rows[k] for k in over)
    winner = rows[details["winner"]]
    assert winner["status"] == "chosen" and winner["size_mb"] <= 0.3
    assert entry.kind == "onnx" and entry.output.endswith("model.onnx")
    # every trained candidate set beside the trivial predictor on the same dev examples
    assert details["trivial"]["name"] == "majority"
    trained = [r for r in rows.values() if "dev_score" in r]
    for r in trained:
        low, high = r["vs_trivial_interval"]
        assert low <= r["vs_trivial"] <= high and r["left_baseline"] == (low > 0)
        assert r["vs_trivial"] == pytest.approx(
            r["dev_score"] - details["trivial"]["dev"], abs=1e-4
        )
    # the shortcut holds: the trained winner, timed beside its random-weight probe in one
    # interleaved run, is as fast as the probe within the spread the timings themselves show
    check = details["probe_check"]
    assert abs(check["trained_p50"] - check["probe_p50"]) <= check["spread"], check
    assert check["agree"]
    assert (root / entry.dir / "study.db").is_file()
    report = json.loads((root / "report.json").read_text())
    study = report["fit"]["fit"]["study"]
    assert study == f"{entry.dir}/study.db"
    assert _dashboard_trials(root / study) == details["trained"]
    assert report["fit"]["fit"]["winner"] == details["winner"]
    md = (root / "report.md").read_text()
    assert "## Fit" in md and details["winner"] in md and "over size" in md
    assert "| left trivial |" in md and "Left trivial: whether the candidate's dev score" in md
    assert f"`optuna-dashboard sqlite:///{study}` shows them" in md
    # the decision uses the winner's own row, measured by the evaluation, not its probe
    measured = report["fit"]["fit"]["measured"]
    row = next(r for r in report["rows"] if r["variant"] == "fit" and r["device"] == "cpu")
    assert measured["size_mb"] == row["size_mb"] <= 0.3 and measured["meets"] is True
    assert "**Ship** `fit`" in md and "meets its budget on this machine" in md
    _the_fit_folder_reloads_in_transformers(root, entry)


def _the_fit_folder_reloads_in_transformers(root, entry):
    """The winner's folder keeps the pruned PyTorch model it was converted from, reloadable in
    plain transformers, with the same predictions as the file it ships; its card names both
    and its snippets run as written."""
    import re

    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = (root / entry.output).parent
    winner = next(c for c in entry.details["candidates"] if c["key"] == entry.details["winner"])
    assert entry.details["pytorch"]["files"] == ["model.safetensors"]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    cfg = model.config
    assert cfg.num_hidden_layers == winner["layers"] and cfg.intermediate_size == winner["ffn"]
    assert cfg.vocab_size == winner["vocab_size"]
    heads = model.bert.encoder.layer[0].attention.self.num_attention_heads
    assert heads == winner["heads"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["这家店的服务很好", "太差了"], padding=True, return_tensors="np")
    session = ort.InferenceSession(str(root / entry.output), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    shipped = session.run(None, {k: v.astype(np.int64) for k, v in batch.items() if k in names})
    with torch.no_grad():
        reloaded = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    np.testing.assert_allclose(reloaded, shipped[0], atol=1e-4)
    card = (folder / "README.md").read_text()
    assert Path(entry.output).name in card and "model.safetensors" in card
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 2
    for code in blocks:
        exec(code, {})


def test_an_end_to_end_budget_times_the_tokenizer_and_the_decision_uses_that_column(
    tmp_path, cls_files
):
    recipe = fit_recipe(
        cls_files,
        budget={"latency_of": "end_to_end", "texts": 10, "latency_ms": 1000, "batch_size": 1},
        space={"layers": [1], "heads": [1, 2], "ffn": [64], "runtimes": ["onnx-fp32"]},
    )
    root = run_recipe(parse_recipe(recipe), tmp_path / "a")
    details = Manifest(root).steps["fit"].details
    assert details["probe"]["latency_of"] == "end_to_end"
    assert all(c["latency"]["p50"] > 0 for c in details["candidates"])
    report = json.loads((root / "report.json").read_text())
    row = next(r for r in report["rows"] if r["variant"] == "fit" and r["device"] == "cpu")
    measured = report["fit"]["fit"]["measured"]
    assert measured["end_to_end_p50_ms"] == row["end_to_end"]["p50"] and measured["meets"]
    md = (root / "report.md").read_text()
    assert "end to end (tokenizer + model, batch 1" in md and "end-to-end p50" in md


def test_fit_decision_says_when_the_measured_winner_misses_the_budget():
    from compress.eval.schema import Latency, MetricRow
    from compress.eval.sections.fit import fit_measured

    lat = Latency(p50=3.0, p90=3.5, mean=3.1, throughput=330.0, iqr=0.2)
    row = MetricRow.model_validate(
        {
            "variant": "fit",
            "step": "fit",
            "stage": "fit",
            "path": "fit/model/model_quantized.onnx",
            "runtime": "onnxruntime",
            "precision": "int8",
            "device": "cpu",
            "params": 10,
            "size_mb": 1.5,
            "score": 0.8,
            "seq_len": 256,  # scored at the task's length; timed at evaluate.seq_len (64)
            "latency_ms": {"b1": lat},
        }
    )
    fit = {
        "budget": {"latency_ms": 2.0, "size_mb": 1.0},
        "probe": {"batch_size": 1, "seq_len": 64, "threads": 2},
    }
    measured = fit_measured("fit", fit, [row], 64)
    assert measured["meets"] is False
    assert (
        "1.50 MB is over 1 MB" in measured["why"] and "p50 3.00 ms is over 2 ms" in measured["why"]
    )
    assert "not timed" not in measured["why"]  # the scoring length is not the timed one
    loose = {**fit, "budget": {"latency_ms": 5.0, "size_mb": 2.0}}
    assert fit_measured("fit", loose, [row], 64)["meets"] is True
    assert fit_measured("fit", loose, [row], 128)["why"] == (
        "not timed at batch 1 x 64 tokens (give evaluate.batch_sizes and seq_len the budget's)"
    )
    elsewhere = fit_measured("fit", {**fit, "probe": {**fit["probe"], "batch_size": 8}}, [row], 64)
    assert "not timed at batch 8 x 64 tokens" in elsewhere["why"]


def test_a_killed_fit_resumes_without_rerunning_finished_trials(tmp_path, cls_files, monkeypatch):
    import importlib

    import compress.fit.artifacts

    study = importlib.import_module("compress.fit.study")  # where the workers call it

    real_train, real_probe = study.train_candidate, compress.fit.artifacts.probe_artifacts
    trained, probed = [], []

    def train(plan, candidate):
        if len(trained) == 1 and not resumed:
            raise KeyboardInterrupt  # killed while training the second candidate
        trained.append(candidate.key)
        return real_train(plan, candidate)

    def probe(*args, **kwargs):
        probed.append(1)
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(study, "train_candidate", train)
    monkeypatch.setattr(compress.fit.artifacts, "probe_artifacts", probe)
    recipe = parse_recipe(fit_recipe(cls_files))
    resumed = False
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "a", evaluate=False)
    assert len(trained) == 1 and len(probed) == 1
    first = trained[0]
    resumed = True
    root = run_recipe(recipe, tmp_path / "a", evaluate=False)
    assert len(probed) == 1  # the probes were kept
    assert trained.count(first) == 1 and len(trained) == 4  # the rest, once each
    entry = Manifest(root).steps["fit"]
    assert sorted(_trained(root, entry)) == sorted(set(trained) - {first})
    assert entry.details["trained"] == 4


def test_two_workers_share_one_study_and_train_each_candidate_once(tmp_path, cls_files):
    import optuna

    recipe = fit_recipe(cls_files, workers=2)
    root = run_recipe(parse_recipe(recipe), tmp_path / "a", evaluate=False)
    entry = Manifest(root).steps["fit"]
    runs = _trained(root, entry)
    assert len(runs) == len(set(runs)) == 4  # every candidate trained, none twice
    pids = {json.loads(p.read_text())["worker"] for p in (root / entry.dir / "trials").iterdir()}
    study = optuna.load_study(
        study_name="fit", storage=f"sqlite:///{root / entry.dir / 'study.db'}"
    )
    done = [t.user_attrs["key"] for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(done) == sorted(runs)
    assert len(pids) == 2, "both workers took trials"


def test_fit_benchmark_trains_every_candidate_of_the_demo_space_and_applies_the_budget_after():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "fit_search.py"
    spec = importlib.util.spec_from_file_location("fit_search", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    raw = bench.recipe_raw([])
    recipe = parse_recipe(raw)
    first, every = recipe.steps[-2].config, recipe.steps[-1].config
    n = len(first.space.shapes()) * len(first.space.runtimes)
    assert recipe.steps[-2].stage == "fit" and every.max_trials == n
    assert every.budget.latency_ms is None and every.budget.size_mb is None
    assert every.budget.max_drop == first.budget.max_drop and every.space == first.space

    def cand(key, p50, size, score, low):
        return {
            "key": key,
            "latency": {"p50": p50},
            "size_mb": size,
            "dev_score": score,
            "dev_delta_interval": [low, 0.01],
        }

    budget = {"latency_ms": 1.0, "size_mb": 1.0, "max_drop": 3}
    rows = [
        cand("big", 0.5, 2.0, 0.9, 0.0),  # over size: the best score does not count
        cand("slow", 1.5, 0.5, 0.85, 0.0),  # over latency
        cand("lossy", 0.3, 0.5, 0.8, -0.05),  # over the accuracy budget
        cand("ok", 0.6, 0.8, 0.82, -0.01),
        cand("fast", 0.4, 0.8, 0.81, -0.02),
    ]
    assert bench.winner_under(budget, "accurate", rows) == "ok"
    assert bench.winner_under(budget, "fast", rows) == "fast"


def test_revert_greedy_keeps_the_fewest_sensitive_parts_in_fp32():
    from compress.fit.int8 import revert_greedy

    parts = ["embeddings", "layer.0", "layer.1", "head"]
    cost = {"embeddings": 0.0, "layer.0": 0.01, "layer.1": 0.03, "head": 0.005}

    def judge(kept):  # the drop int8 costs: 4.5 points, minus what each fp32 part gives back
        bound = -0.045 + sum(cost[p] for p in kept)
        return bound >= -0.02, bound

    kept, trials = revert_greedy(parts, judge)
    assert kept == ["layer.1"] and len(trials) == 4  # one round: layer.1 alone meets it
    kept, trials = revert_greedy(parts, lambda k: judge(k) if "layer.0" in k else (False, -1.0))
    assert kept == ["layer.0", "layer.1"]  # layer.0 first: alone it helps, then layer.1
    kept, trials = revert_greedy(parts, lambda k: (False, -0.5))
    assert kept is None and len(trials) == 4 + 3 + 2 + 1


def _quantized_parts(path) -> set[str]:
    """The encoder layers whose MatMuls an ONNX file runs in int8, read from its graph."""
    import re

    import onnx

    nodes = onnx.load(path, load_external_data=False).graph.node
    return {
        m.group(0).strip("/")
        for n in nodes
        if n.op_type == "MatMulInteger" and (m := re.search(r"/layer\.\d+/", n.name))
    }


def test_int8_over_the_accuracy_budget_keeps_its_sensitive_layer_in_fp32(
    tmp_path, cls_files, monkeypatch
):
    """A model whose int8 loses everything unless layer.1 stays in fp32 (the dev scorer sees
    which layers a file quantizes, from its graph): the fit keeps exactly that layer in fp32,
    records it, and ships that file."""
    import numpy as np

    import compress.fit.artifacts

    real = compress.fit.artifacts.dev_counts
    good = []

    def scorer(path, task, max_len, threads):
        counts = real(path, task, max_len, threads)
        if path.suffix != ".onnx":  # the reference
            good.append(counts)
            return counts
        return np.zeros_like(counts) if "layer.1" in _quantized_parts(path) else good[0]

    monkeypatch.setattr(compress.fit.artifacts, "dev_counts", scorer)
    recipe = fit_recipe(
        cls_files,
        budget={"max_drop": 5},
        space={"layers": [2], "heads": [2], "ffn": [64], "runtimes": ["ort-dynamic"]},
    )
    root = run_recipe(parse_recipe(recipe), tmp_path / "a")
    entry = Manifest(root).steps["fit"]
    (row,) = entry.details["candidates"]
    assert row["status"] == "chosen" and row["revert"]["fp32"] == ["layer.1"]
    assert _quantized_parts(root / entry.output) == {"layer.0"}
    assert row["latency"] == row["revert"]["latency"] and row["revert"]["slowdown"] > 0
    assert "layer.1 kept in fp32" in (root / "report.md").read_text()


@pytest.mark.slow
def test_nncf_accuracy_control_removes_quantizers_only_when_the_drop_asks_for_it(tmp_path):
    """OpenVINO int8 through NNCF's accuracy control, scored by how far its logits move from the
    float model's: with no drop allowed it must take quantizers out (and says which); with a
    wide one it keeps them all."""
    import numpy as np
    import torch
    from transformers import BertConfig

    from compress import openvino as ov
    from compress.fit.artifacts import random_examples, random_model
    from compress.fit.space import Shape
    from compress.onnx import onnx_export

    config = BertConfig(
        vocab_size=200,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=2,
    )
    model = random_model(config, "classification", Shape(2, 2, 128, None), 200)
    torch_dir = tmp_path / "torch"
    model.save_pretrained(torch_dir)
    onnx_export(torch_dir, tmp_path / "onnx", "classification")
    examples = random_examples(16, 16, 200)
    batch = {k: np.concatenate([e[k] for e in examples]) for k in examples[0]}
    onnx_path = tmp_path / "onnx" / "model.onnx"
    fp32 = ov.compiled_forward(ov._ov().Core().compile_model(ov.convert_onnx(onnx_path), "CPU"))
    want = fp32({k: torch.from_numpy(v) for k, v in batch.items()})

    def validate(compiled) -> float:  # 0 for the float model, lower the further int8 moves
        got = ov.compiled_forward(compiled)({k: torch.from_numpy(v) for k, v in batch.items()})
        return -float(np.abs(got - want).max())

    model = ov.convert_onnx(onnx_path)
    _, strict = ov.nncf_int8_accuracy_control(model, examples, "performance", validate, 0.0)
    _, loose = ov.nncf_int8_accuracy_control(model, examples, "performance", validate, 100.0)
    assert strict and loose == []


@pytest.mark.slow
def test_openvino_int8_over_the_budget_goes_through_nncf_accuracy_control(
    tmp_path, cls_files, monkeypatch
):
    """An OpenVINO int8 candidate the dev scorer rejects while its fp32 model passes: the fit
    runs NNCF's accuracy control on it and, when that does not bring it within the budget
    either, says so in the candidate's row instead of shipping it."""
    import numpy as np

    import compress.fit.artifacts

    real = compress.fit.artifacts.dev_counts
    good = []

    def scorer(path, task, max_len, threads):
        counts = real(path, task, max_len, threads)
        if path.suffix not in (".onnx", ".xml"):  # the reference
            good.append(counts)
            return counts
        return np.zeros_like(counts) if path.suffix == ".xml" else good[0]

    monkeypatch.setattr(compress.fit.artifacts, "dev_counts", scorer)
    recipe = fit_recipe(
        cls_files,
        budget={"max_drop": 5},
        space={"layers": [1], "heads": [2], "ffn": [64], "runtimes": ["openvino-int8"]},
    )
    with pytest.raises(Exception, match="no trained candidate is within the accuracy budget"):
        run_recipe(parse_recipe(recipe), tmp_path / "a")
    entry = Manifest(tmp_path / "a" / "tiny").steps["fit"]
    (row,) = entry.details["candidates"]
    assert row["status"] == "over the accuracy budget"
    assert row["revert"]["why"].startswith("NNCF's accuracy control")


def test_a_model_timed_beside_the_candidates_gives_their_speedup(tmp_path, cls_files):
    """probe.beside times an earlier step's model (here the fp32 PyTorch teacher) in the same
    interleaved run as the candidates' probes; the report gives the fastest one's speed-up."""
    recipe = fit_recipe(cls_files, probe={"beside": "teacher"}, max_trials=1)
    root = run_recipe(parse_recipe(recipe), tmp_path / "a")
    details = Manifest(root).steps["fit"].details
    beside = details["probe"]["beside"]
    host = {c["key"]: c["latency"]["p50"] for c in details["candidates"]}
    assert beside["step"] == "teacher" and beside["fastest"] == min(host, key=host.get)
    assert beside["fastest_p50"] == host[beside["fastest"]]
    assert beside["speedup"] == round(beside["latency"]["p50"] / beside["fastest_p50"], 1)
    md = (root / "report.md").read_text()
    assert f"the fastest candidate, `{beside['fastest']}`" in md
    assert f"**{beside['speedup']:g}x** faster" in md


def test_probe_beside_must_name_an_earlier_step(cls_files):
    assert "probe.beside: 'nope' is not an earlier step" in _problems(
        cls_files, probe={"beside": "nope"}
    )
