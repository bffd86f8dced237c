"""The CUDA paths, checked on a CPU: each case fakes the GPU side (a monkeypatched
``torch.cuda``, a stub ONNX Runtime session, a fake ``nvidia-smi``) to pin a failure that a
reading of the code against the libraries' documented behaviour predicted:

- torch: ``torch.set_rng_state`` takes a CPU ByteTensor only;
- torch: ``reset_peak_memory_stats`` resets the peak to what is allocated *now*;
- torch.distributed: NCCL's default timeout is 10 minutes (gloo's 30);
- onnxruntime: a failed CUDA provider falls back to the CPU with a printed message only;
- TextBrewer 0.2.1: ``select_logits_with_mask`` ignores the mask of 2-D logits, and
  ``initialize_training`` wraps the teacher in DDP too when given a local rank.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import CompressError
from tests.conftest import TINY_SHAPE, sentiment_rows, tiny_recipe

ROOT = Path(__file__).resolve().parent.parent


def _tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))


def _loop_parts(model):
    from transformers import get_linear_schedule_with_warmup

    from compress.trainer import KeepBest

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, 10)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return optimizer, schedule, scaler, KeepBest()


# ---------------------------------------------------------------- 1. resume on CUDA


def test_a_saved_state_loads_whatever_device_the_run_has(tmp_path, monkeypatch):
    """Loaded with map_location=device(), the CPU RNG state went to the GPU and
    torch.set_rng_state refused it. A device other than the CPU (meta, here) shows the same."""
    import compress.trainer as trainer

    model = _tiny_model()
    resume = trainer.Resume(tmp_path, every=1)
    optimizer, schedule, scaler, best = _loop_parts(model)
    resume.save(model, optimizer, schedule, scaler, best, {"step": 3})
    saved_rng = torch.get_rng_state()
    torch.rand(5)  # move the generator on
    monkeypatch.setattr(trainer, "device", lambda: torch.device("meta"))
    position = resume.load(model, *_loop_parts(model)[:3], best)
    assert position == {"step": 3}
    assert torch.equal(torch.get_rng_state(), saved_rng)


def test_the_cuda_generators_are_saved_and_restored(tmp_path, monkeypatch):
    """A resumed GPU run must draw the dropout masks an uninterrupted one draws."""
    import compress.trainer as trainer

    states = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    model = _tiny_model()
    resume = trainer.Resume(tmp_path, every=1)
    optimizer, schedule, scaler, best = _loop_parts(model)
    resume.save(model, optimizer, schedule, scaler, best, {"step": 1})
    resume.load(model, optimizer, schedule, scaler, best)
    assert [t.tolist() for t in restored] == [[1, 2, 3], [4, 5]]


# ---------------------------------------------------------------- 2-3. process groups


@pytest.fixture
def torchrun_env(monkeypatch):
    calls = {}
    import torch.distributed as tdist

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(tdist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        tdist, "init_process_group", lambda backend, **kw: calls.update(backend=backend, **kw)
    )
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.update(device=i))
    return calls


def _gpus(monkeypatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def test_more_nccl_ranks_than_gpus_is_refused_with_the_numbers(torchrun_env, monkeypatch):
    from compress import dist

    _gpus(monkeypatch, 1)
    with pytest.raises(CompressError, match=r"2 processes on this machine but 1 visible GPU"):
        dist.init()
    assert "backend" not in torchrun_env  # refused before joining a group


def test_gloo_can_be_chosen_on_a_gpu_host_and_the_timeout_is_explicit(torchrun_env, monkeypatch):
    from compress import dist

    _gpus(monkeypatch, 1)
    dist.init("gloo", timeout_min=90)
    assert torchrun_env == {"backend": "gloo", "timeout": timedelta(minutes=90)}


def test_nccl_ranks_get_their_own_gpu_and_a_long_timeout(torchrun_env, monkeypatch):
    """NCCL's default 10 minutes would kill the ranks waiting while the first quantizes."""
    from compress import dist

    _gpus(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    dist.init()
    assert torchrun_env["backend"] == "nccl" and torchrun_env["device"] == 1
    assert torchrun_env["timeout"] >= timedelta(hours=2)


def test_the_launcher_refuses_more_processes_than_gpus(monkeypatch, capsys, tmp_path):
    from compress.__main__ import main

    _gpus(monkeypatch, 1)
    started = []
    monkeypatch.setattr(os, "execv", lambda *a: started.append(a))
    assert main(["run", "demo", "--nproc", "2", "--out", str(tmp_path)]) == 2
    assert not started
    err = capsys.readouterr().err
    assert "--nproc 2: 2 processes on this machine but 1 visible GPU(s)" in err
    assert "--backend gloo" in err
    assert main(["run", "demo", "--nproc", "2", "--backend", "gloo", "--out", str(tmp_path)]) == 0
    (command,) = started
    assert "--backend" in command[1] and "gloo" in command[1]  # the ranks get it too


# ---------------------------------------------------------------- 4. a CPU test on a GPU host


def test_a_distiller_follows_its_models_not_the_host(tmp_path, cls_files, monkeypatch):
    from compress.data import batches, encode
    from compress.distillation import build_distiller
    from compress.models import ShapeSpec, char_tokenizer, init_from_shape
    from compress.recipe import parse_recipe
    from compress.stages.distill import DistillConfig
    from compress.students import StudentConfig
    from compress.tasks import load_task

    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    tok = char_tokenizer(task.texts(), 1, tmp_path / "vocab")
    teacher, student = (
        init_from_shape(ShapeSpec(**TINY_SHAPE), tok, task.type, task.labels) for _ in range(2)
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU host
    cfg = DistillConfig(student=StudentConfig(shape=TINY_SHAPE), matches="none")
    distiller, _, _ = build_distiller(cfg, teacher, student, task.type, tmp_path)
    assert distiller.t_config.device == torch.device("cpu")
    batch = batches(encode(task.splits["train"][:4], tok, task, 32), 4)[0]
    distiller.cache_logits(batch, {}, None)  # would move the batch to "cuda" and fail
    loss, _ = distiller.train_on_batch(distiller.logits_cache[0], {})
    assert torch.isfinite(loss)


# ---------------------------------------------------------------- 5. GPU peak memory


def test_a_gpu_row_s_peak_leaves_out_the_models_loaded_before(tmp_path, cls_files, monkeypatch):
    import compress.eval.evaluate as evaluate
    from compress.eval.runtimes import Runtime

    from compress.models import char_tokenizer
    from compress.recipe import parse_recipe
    from compress.tasks import load_task

    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    model_dir = tmp_path / "model"
    char_tokenizer(task.texts(), 1, model_dir).save_pretrained(model_dir)
    mib = 2**20
    allocated = {"now": 900 * mib}  # the runtimes scored before, still loaded for the timing

    def load_runtime(path, task_type, device, threads, precision=None):
        allocated["now"] += 100 * mib  # this model, resident while it scores
        return Runtime(
            "pytorch", device, "fp32", lambda b: np.zeros((len(b["input_ids"]), 2)), 100, 1
        )

    monkeypatch.setattr(evaluate, "load_runtime", load_runtime)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: allocated["now"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: allocated["now"] + 20 * mib)
    variant = evaluate.Variant("student", "student", "distill", model_dir)
    row, _, _ = evaluate.score_variant(variant, "cuda", task, "test", 32, 1, 8)
    assert row.memory_mb == pytest.approx(120.0)  # its model and its activations, not 1,020


# ---------------------------------------------------------------- 6. ONNX "cuda" rows


def test_an_onnx_cuda_row_that_fell_back_to_the_cpu_is_refused(tmp_path, monkeypatch):
    import onnxruntime as ort
    from compress.eval.runtimes import ProviderFallback, _onnx_runtime

    class FellBack:  # what onnxruntime does when the CUDA provider cannot load
        def __init__(self, path, options, providers):
            pass

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(ort, "InferenceSession", FellBack)
    with pytest.raises(ProviderFallback, match="CUDA provider did not load.*onnxruntime-gpu"):
        _onnx_runtime(tmp_path / "model.onnx", "cuda", 1)


def test_host_side_inputs_are_not_copied_to_the_gpu_in_the_timed_call():
    from compress.eval.latency import timed_call

    seen = []
    batch = {"input_ids": torch.ones(1, 4, dtype=torch.long)}
    call = timed_call(lambda b: seen.append(b["input_ids"].device), batch, "cuda", host_inputs=True)
    assert call() is None  # timed by the wall clock: ORT's own stream is not torch's
    assert seen == [torch.device("cpu")]


# ---------------------------------------------------------------- 7. scripts/gpu_check.sh


def _gpu_check(tmp_path, smi: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path)}
    if smi is not None:
        fake = tmp_path / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\necho '{smi}'\n")
        fake.chmod(0o755)
        env["NVIDIA_SMI"] = str(fake)
    else:
        env["NVIDIA_SMI"] = str(tmp_path / "no-such-nvidia-smi")
    return subprocess.run(
        ["bash", str(ROOT / "scripts/gpu_check.sh")], capture_output=True, text=True, env=env
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU build of torch is the case here")
def test_gpu_check_fails_when_the_gpu_is_there_and_torch_cannot_see_it(tmp_path):
    proc = _gpu_check(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-0000)")
    assert proc.returncode == 1
    assert "nvidia-smi sees 1 GPU(s) but torch" in proc.stderr
    assert "install the CUDA build of the pinned torch" in proc.stderr
    nothing = _gpu_check(tmp_path, None)
    assert nothing.returncode == 0 and "no CUDA device here" in nothing.stdout


def test_gpu_check_exercises_resume_and_torchrun():
    script = (ROOT / "scripts/gpu_check.sh").read_text()
    assert "test_pretrain.py" in script and "killed" in script  # kill-and-resume on CUDA
    assert "torch.distributed.run" in script and "--nproc-per-node=1" in script


# ---------------------------------------------------------------- 8. one teacher precision


def test_transfer_logits_are_computed_in_the_run_s_precision(tmp_path, cls_files, monkeypatch):
    """The logits cache ran under the run's autocast and the transfer labelling in fp32:
    both must run in one precision (faked: a context that records what ran inside it)."""
    import compress.distillation as distillation
    import compress.trainer as trainer
    import compress.transfer as transfer
    from compress.recipe import parse_recipe
    from compress.runner import run_recipe

    inside = {"depth": 0, "teacher_calls": []}

    class Recording:  # stands for torch.autocast: re-entered once per batch
        def __enter__(self):
            inside["depth"] += 1

        def __exit__(self, *exc):
            inside["depth"] -= 1

    def precision_context(precision):
        return Recording()

    real_label = transfer.label_with_teacher

    def label_with_teacher(data, forward, batch_size, work_dir):
        def recorded(batch):
            inside["teacher_calls"].append(inside["depth"] > 0)
            return forward(batch)

        return real_label(data, recorded, batch_size, work_dir)

    monkeypatch.setattr(trainer, "mixed_precision", precision_context)
    monkeypatch.setattr(distillation, "mixed_precision", precision_context)
    monkeypatch.setattr(transfer, "label_with_teacher", label_with_teacher)
    text = tmp_path / "more.txt"
    text.write_text("\n".join(t for t, _ in sentiment_rows(40, 9)) + "\n", encoding="utf-8")
    raw = tiny_recipe(cls_files)
    raw["steps"][0]["epochs"] = 1
    raw["steps"].append(
        {
            "name": "student",
            "stage": "distill",
            "student": {"shape": TINY_SHAPE},
            "matches": "none",
            "epochs": 1,
            "transfer": {"files": [str(text)]},
        }
    )
    run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    assert inside["teacher_calls"] and all(inside["teacher_calls"])


# ---------------------------------------------------------------- 9. QA KD over padding


def test_the_qa_kd_loss_does_not_change_with_padding(tmp_path):
    """TextBrewer leaves 2-D logits unmasked: padding (and the question) took probability."""
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    from compress.distillation import make_adaptor

    torch.manual_seed(0)
    adaptor = make_adaptor("qa")
    distiller = GeneralDistiller(
        TrainingConfig(log_dir=None, output_dir=str(tmp_path), device="cpu"),
        DistillationConfig(temperature=4, hard_label_weight=0, kd_loss_weight=1),
        torch.nn.Identity(),
        torch.nn.Identity(),
        adaptor,
        adaptor,
    )

    class Out:
        def __init__(self, start, end):
            self.start_logits, self.end_logits, self.hidden_states = start, end, None

    def loss(pad: int, seed: int) -> float:
        real = 12  # [CLS] + 4 question tokens + [SEP] + 5 context tokens + [SEP]
        g = torch.Generator().manual_seed(seed)  # padding logits: anything at all
        mask = torch.tensor([[1] * real + [0] * pad])
        types = torch.tensor([[0] * 6 + [1] * 6 + [0] * pad])
        batch = {"attention_mask": mask, "token_type_ids": types}
        base = torch.Generator().manual_seed(1)
        student = [torch.randn(1, real, generator=base) for _ in range(2)]
        teacher = [torch.randn(1, real, generator=base) for _ in range(2)]

        def padded(t):
            return torch.cat([t, 50 * torch.randn(1, pad, generator=g)], dim=1)

        s = Out(*(padded(t) for t in student))
        t = Out(*(padded(t) for t in teacher))
        total, _ = distiller.compute_loss(adaptor(batch, s), adaptor(batch, t))
        return total.item()

    reference = loss(0, 0)
    assert loss(4, 1) == pytest.approx(reference, rel=1e-5)
    assert loss(20, 2) == pytest.approx(reference, rel=1e-5)


def test_qa_answers_can_only_be_in_the_context_or_cls():
    from compress.distillation import answer_positions

    batch = {
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1, 0]]),
        "token_type_ids": torch.tensor([[0, 0, 0, 1, 1, 1, 0]]),
    }
    assert answer_positions(batch).tolist() == [[True, False, False, True, True, True, False]]


# ---------------------------------------------------------------- 10. 4-bit parameter counts


def test_packed_4bit_weights_count_as_the_values_they_hold():
    from compress.eval.runtimes import count_weights

    class Packed(torch.nn.Parameter):  # bitsandbytes' Params4bit: two values per byte
        pass

    class State:
        shape = torch.Size([64, 32])

    layer = torch.nn.Linear(32, 64)
    packed = Packed(torch.zeros(64 * 32 // 2, 1, dtype=torch.uint8), requires_grad=False)
    packed.quant_state = State()
    layer.weight = packed
    assert count_weights(layer) == 64 * 32 + 64


# ---------------------------------------------------------------- 11. the teacher and DDP


def test_the_teacher_is_never_wrapped_for_gradient_averaging(tmp_path, cls_files, monkeypatch):
    from compress import dist
    from compress.distillation import build_distiller, training_hooks
    from compress.models import ShapeSpec, char_tokenizer, init_from_shape
    from compress.recipe import parse_recipe
    from compress.stages.distill import DistillConfig
    from compress.students import StudentConfig
    from compress.tasks import load_task

    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    tok = char_tokenizer(task.texts(), 1, tmp_path / "vocab")
    teacher, student = (
        init_from_shape(ShapeSpec(**TINY_SHAPE), tok, task.type, task.labels) for _ in range(2)
    )
    wrapped = []
    monkeypatch.setattr(dist, "active", lambda: True)
    monkeypatch.setattr(dist, "rank", lambda: 0)
    monkeypatch.setattr(dist, "wrap", lambda m: wrapped.append(m) or m)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torchrun on GPUs
    cfg = DistillConfig(student=StudentConfig(shape=TINY_SHAPE), matches="none")
    distiller, _, _ = build_distiller(cfg, teacher, student, task.type, tmp_path)
    assert distiller.t_config.local_rank == -1  # TextBrewer's own DDP (teacher too) is off
    _, prepare = training_hooks(distiller)
    prepare(torch.optim.AdamW(student.parameters()))
    assert wrapped == [student] and distiller.model_T is teacher


# ---------------------------------------------------------------- 12. the logits cache


def test_the_logits_cache_keeps_its_batches_on_the_host(tmp_path, cls_files):
    from compress.data import batches, encode
    from compress.distillation import build_distiller, cached_batches
    from compress.models import ShapeSpec, char_tokenizer, init_from_shape
    from compress.recipe import parse_recipe
    from compress.stages.distill import DistillConfig
    from compress.students import StudentConfig
    from compress.tasks import load_task
    from compress.trainer import BatchSource

    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    tok = char_tokenizer(task.texts(), 1, tmp_path / "vocab")
    teacher, student = (
        init_from_shape(ShapeSpec(**TINY_SHAPE), tok, task.type, task.labels) for _ in range(2)
    )
    cfg = DistillConfig(student=StudentConfig(shape=TINY_SHAPE), matches="none")
    distiller, _, _ = build_distiller(cfg, teacher, student, task.type, tmp_path)
    moved = []
    import textbrewer.distiller_basic as basic

    real = basic.move_to_device

    def move(batch, device):  # what a GPU run does: a copy of the batch on the device
        out = real(batch, device)
        copy = {k: v.clone() for k, v in out.items()}
        moved.append(copy)
        return copy

    basic.move_to_device = move
    try:
        all_batches = batches(encode(task.splits["train"][:8], tok, task, 32), 4)
        source = cached_batches(distiller, BatchSource(lambda e: iter(all_batches), 2), 0)
    finally:
        basic.move_to_device = real
    cached = [b for b, _ in distiller.logits_cache]
    assert len(cached) == 2 and len(moved) == 2
    assert all(c is not m for c in cached for m in moved)  # not the device copies
    assert all(any(c is b for b in all_batches) for c in cached)  # the host batches
    assert source.per_epoch == 2


# ---------------------------------------------------------------- 13-14. the training loop


class SkippingScaler:
    """A GradScaler whose fp16 gradients overflow on every other step (as after a loss spike)."""

    def __init__(self, *args, **kwargs):
        self.scale_value, self.calls, self.optimizer_steps = 2.0**16, 0, 0

    def is_enabled(self):
        return True

    def scale(self, loss):
        return loss

    def unscale_(self, optimizer):
        pass

    def get_scale(self):
        return self.scale_value

    def step(self, optimizer):
        self.calls += 1
        if self.calls % 2 == 0:
            return None  # inf found: the optimizer step is skipped
        self.optimizer_steps += 1
        return optimizer.step()

    def update(self):
        if self.calls % 2 == 0:
            self.scale_value /= 2

    def state_dict(self):
        return {}


def _train(monkeypatch, cfg_options, scaler_cls=None):
    import contextlib

    import compress.trainer as trainer

    made = []
    if scaler_cls is not None:
        monkeypatch.setattr(
            trainer.torch.amp, "GradScaler", lambda *a, **k: made.append(scaler_cls()) or made[-1]
        )
        monkeypatch.setattr(trainer, "mixed_precision", lambda p: contextlib.nullcontext())
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 64, 4)]

    def loss_fn(batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    cfg = trainer.TrainConfig(batch_size=4, **cfg_options)
    result = trainer.train(
        model,
        loss_fn,
        trainer.BatchSource(lambda e: iter(batches), len(batches)),
        cfg,
        lambda: 0.5,
        desc="t",
    )
    return result, made


def test_steps_skipped_by_the_fp16_scaler_do_not_count(monkeypatch):
    result, (scaler,) = _train(monkeypatch, {"max_steps": 10, "precision": "fp16"}, SkippingScaler)
    assert result["steps"] == 10 and scaler.optimizer_steps == 10  # ten real updates
    assert result["overflow_skipped_batches"] == scaler.calls - 10 > 0


def test_the_loss_is_read_every_n_steps_not_every_step(monkeypatch):
    reads = []
    real = torch.Tensor.item

    def item(self):
        if self.grad_fn is not None:  # the loss (AdamW reads its own step counters)
            reads.append(1)
        return real(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    _train(monkeypatch, {"max_steps": 48, "log_every": 16})
    assert len(reads) == 3  # steps 16, 32, 48; each read waits for the device


def test_the_launcher_joins_machines_at_a_c10d_rendezvous(monkeypatch, tmp_path):
    """--nnodes/--node-rank/--rdzv-endpoint go to torchrun as its own options; the processes
    it starts get the rest of the command, without the launcher's options."""
    from compress.__main__ import main

    started = []
    monkeypatch.setattr(os, "execv", lambda *a: started.append(a))
    argv = ["run", "demo", "--out", str(tmp_path), "--nnodes", "2", "--node-rank=1"]
    assert main([*argv, "--rdzv-endpoint", "10.0.0.5:29400", "--backend", "gloo"]) == 0
    (command,) = started
    run = command[1]
    assert run[run.index("torch.distributed.run") + 1 : run.index("compress") - 1] == [
        "--nnodes=2",
        "--node-rank=1",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.0.5:29400",
        "--rdzv-id=demo",
    ]
    assert run[run.index("compress") + 1 :] == [
        "run",
        "demo",
        "--out",
        str(tmp_path),
        "--backend",
        "gloo",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--nnodes", "2"], "--nnodes 2: give --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "host"], "not 'host'"),
        (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "give 0 to 1"),
        (["--nnodes", "0"], "give at least 1"),
    ],
)
def test_bad_machine_options_are_one_line_before_torchrun(monkeypatch, capsys, options, message):
    from compress.__main__ import main

    started = []
    monkeypatch.setattr(os, "execv", lambda *a: started.append(a))
    assert main(["run", "demo", *options]) == 2 and not started
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
