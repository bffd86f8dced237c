"""Mixed precision (``precision: bf16 | fp16``) is a CUDA option, recorded in the manifest."""

import json

import pytest
import torch

from compress.errors import CompressError
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from tests.conftest import kd_recipe


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_mixed_precision_on_the_cpu_is_refused_before_training(tmp_path, cls_files, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU host too
    raw = kd_recipe(cls_files)
    raw["steps"][0]["precision"] = "bf16"
    with pytest.raises(CompressError, match="precision: bf16 mixed precision needs a CUDA device"):
        run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    with pytest.raises(CompressError, match="precision bf16: mixed precision needs a CUDA device"):
        from compress.trainer import mixed_precision

        mixed_precision("bf16")  # and the loop itself refuses, for callers outside a recipe


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(tmp_path, cls_files, precision):
    raw = kd_recipe(cls_files)
    for step in raw["steps"][:2]:
        step["precision"] = precision
    root = run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    steps = json.loads((root / "manifest.json").read_text())["steps"]
    assert steps["teacher"]["details"]["train"]["precision"] == precision
    assert steps["student"]["details"]["precision"] == precision
    assert steps["student"]["details"]["best_dev"] > 0.5
