"""What we write works in the clients HF users reach for, in this very environment (the tf
extra included): transformers ``pipeline`` on a 2,000-character input, and optimum's
``ORTModelFor...`` on the ONNX and int8 directories, agreeing with the evaluator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from compress.recipe import parse_recipe
from compress.runner import run_recipe
from tests.conftest import tiny_recipe

pytestmark = pytest.mark.slow

CLIENT = """
import json, sys
from transformers import AutoTokenizer, pipeline
from optimum.onnxruntime import {ort_class}

model_dir, onnx_dir, int8_dir, task = sys.argv[1:5]
text = "{text}"
out = {{"max_len": AutoTokenizer.from_pretrained(model_dir).model_max_length}}
pipe = pipeline(task, model=model_dir)
out["torch"] = pipe(text, **({{"truncation": True}} if task == "text-classification" else {{}}))
for name, directory, file_name in (
    ("onnx", onnx_dir, "model.onnx"),
    ("int8", int8_dir, "model_quantized.onnx"),
):
    model = {ort_class}.from_pretrained(directory, file_name=file_name)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    ort_pipe = pipeline(task, model=model, tokenizer=tokenizer)
    out[name] = ort_pipe(
        text, **({{"truncation": True}} if task == "text-classification" else {{}})
    )
print(json.dumps(out, default=float))
"""


def _client_env() -> dict:
    """The user's environment: nothing this project's own process set (USE_TF=0 ...)."""
    return {k: v for k, v in os.environ.items() if k not in ("USE_TF", "USE_TORCH")}


def _run(files, task_type, tmp_path):
    raw = tiny_recipe(files, task_type=task_type)
    raw["steps"] += [
        {"name": "onnx", "stage": "export"},
        {"name": "int8", "stage": "quantize", "input": "onnx"},
    ]
    raw["evaluate"]["latency"] = False
    return run_recipe(parse_recipe(raw), tmp_path / "art")


@pytest.mark.parametrize("task_type", ["classification", "ner"])
def test_plain_clients_on_a_long_input(tmp_path, cls_files, ner_files, task_type):
    files = cls_files if task_type == "classification" else ner_files
    root = _run(files, task_type, tmp_path)
    task = "text-classification" if task_type == "classification" else "token-classification"
    ort_class = (
        "ORTModelForSequenceClassification"
        if task_type == "classification"
        else "ORTModelForTokenClassification"
    )
    text = ("张伟在北京工作" if task_type == "ner" else "好棒满意推荐") * 300  # 1,800+ chars
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CLIENT.format(ort_class=ort_class, text=text),
            str(root / "01_teacher/model"),
            str(root / "02_onnx/model"),
            str(root / "03_int8/model"),
            task,
        ],
        capture_output=True,
        text=True,
        env=_client_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["max_len"] == 512  # the model's position limit, not 1e30
    if task_type == "classification":
        labels = {name: out[name][0]["label"] for name in ("torch", "onnx", "int8")}
        assert labels["torch"] == labels["onnx"] == labels["int8"] == "positive"
    else:
        people = [e for e in out["torch"] if e["entity"].endswith("PER")]
        assert people, "the tagger finds the people it was trained on"
        onnx_tags = [(e["index"], e["entity"]) for e in out["onnx"]]
        assert onnx_tags == [(e["index"], e["entity"]) for e in out["torch"]]
