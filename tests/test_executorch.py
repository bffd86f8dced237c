"""ExecuTorch programs (quantize backend executorch): lowered with the XNNPACK delegate, checked
against PyTorch, scored and timed by the evaluator with ExecuTorch's Python runtime, carded."""

import json
import re

import numpy as np
import pytest

from compress.errors import RecipeError
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from tests.conftest import Rows, sentiment_rows, tiny_recipe, write_csv

pytest.importorskip("executorch.exir", reason="the executorch extra is not installed")

# the slow suite: `make test-slow` installs the extra (a minute) and each lowering takes a
# minute or two on 2 cores, more than `make test`'s ten minutes can hold
pytestmark = pytest.mark.slow

STEPS = [
    {
        "name": "et-fp32",
        "stage": "quantize",
        "input": "teacher",
        "backend": "executorch",
        "max_batch": 4,
    },
    {
        "name": "et-int8",
        "stage": "quantize",
        "input": "teacher",
        "backend": "executorch",
        "precision": "int8",
        "calibration_examples": 32,
        "max_batch": 8,
    },
]


def _run(tmp, steps):
    files = {
        s: write_csv(tmp / f"{s}.csv", sentiment_rows(n, i))
        for i, (s, n) in enumerate((("train", 160), ("dev", 40), ("test", 40)))
    }
    raw = tiny_recipe(files)
    raw["steps"] += steps
    raw["evaluate"]["batch_sizes"] = [1, 4, 8]
    root = run_recipe(parse_recipe(raw), tmp / "art")
    return (
        root,
        json.loads((root / "report.json").read_text()),
        json.loads((root / "manifest.json").read_text())["steps"],
    )


def _linear_weight_mb(model_dir) -> float:
    """fp32 megabytes of the nn.Linear weights of a saved classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    modules = model.modules()
    return sum(m.weight.numel() for m in modules if isinstance(m, torch.nn.Linear)) * 4 / 1e6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("et"), STEPS)


@pytest.mark.parametrize(
    "name,precision",
    [("et-fp32", "fp32"), ("et-int8", "int8")],
)
def test_lowered_validated_and_delegation_recorded(run, name, precision):
    root, report, steps = run
    path = root / steps[name]["output"]
    assert path.name == "model.pte" and path.is_file()
    details = steps[name]["details"]
    check = details["validation"]
    if precision == "fp32":
        assert check["max_abs_diff"] < 1e-4 and check["argmax_agreement"] == 1.0
    else:
        assert details["calibration_examples"] == 32
        assert check["argmax_agreement"] >= 0.9
        # int8: the quantize / dequantize pairs went to XNNPACK with the linear layers
        assert any("quantize" in op for op in details["delegated_ops"])
    # the matrix products run in XNNPACK; what it did not take is named, op by op
    assert details["delegated_ops"].get("aten_linear_default", 0) >= 4
    assert details["delegated_subgraphs"] >= 1
    assert details["portable_nodes"] == sum(details["portable_ops"].values())
    assert "getitem" not in details["portable_ops"]
    row = Rows(report["rows"])[name]
    assert (row["runtime"], row["precision"], row["device"]) == ("executorch", precision, "cpu")
    teacher = Rows(report["rows"])["teacher"]
    assert row["params"] == teacher["params"]
    assert row["score"] >= teacher["score"] - (0 if precision == "fp32" else 0.1)
    assert row["size_mb"] == pytest.approx(path.stat().st_size / 1e6, abs=0.01)
    if precision == "int8":
        # the linear layers' weights shrink to a quarter (scales aside); the embeddings stay
        # fp32, so the saving is measured against the linear weights, not the whole program
        saved = Rows(report["rows"])["et-fp32"]["size_mb"] - row["size_mb"]
        assert saved > 0.5 * _linear_weight_mb(root / steps["teacher"]["output"])
    # timed where the program takes the shape: et-fp32 takes batches of up to 4
    want = {"b1", "b4"} if name == "et-fp32" else {"b1", "b4", "b8"}
    assert set(row["latency_ms"]) == want and row["end_to_end"]["p50"] > 0
    assert set(row["end_to_end_throughput"]) == want - {"b1"}


def test_card_snippet_runs_the_pte(run):
    root, _, steps = run
    path = root / steps["et-fp32"]["output"]
    card = (path.parent / "README.md").read_text()
    assert "library_name: executorch" in card and "links ExecuTorch's runtime" in card
    (code,) = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert '"model.pte"' in code
    scope: dict = {}
    exec(code, scope)
    assert np.asarray(scope["logits"]).shape == (1, 2)


def test_options_of_the_other_precision_are_refused(tmp_path):
    files = {s: tmp_path / f"{s}.csv" for s in ("train", "dev", "test")}
    raw = tiny_recipe(files)
    raw["steps"].append(
        {"name": "et", "stage": "quantize", "backend": "executorch", "calibration_examples": 8}
    )
    with pytest.raises(RecipeError, match="calibration_examples: not an option of precision fp32"):
        parse_recipe(raw)
