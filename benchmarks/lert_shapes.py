"""Latency of LERT shapes and of the compressed shapes the recipes produce, side by side.

Random weights (latency does not depend on their values). Every model is measured in one
process, interleaved, and each row's speedup is over LERT-large fp32 PyTorch on the same device.

    python benchmarks/lert_shapes.py                 # CPU, batch 1 and 32, sequence 128
    python benchmarks/lert_shapes.py --devices cuda  # GPU rows (fp32 and fp16)
    python benchmarks/lert_shapes.py --only small    # shapes whose name contains "small"

The int8 shapes get ONNX Runtime dynamic int8 (the project's default), its ORT-format copy
(ONNX Runtime Mobile's file), OpenVINO NNCF int8 and, with the executorch extra installed,
ExecuTorch XNNPACK fp32 and int8 rows (``--no-executorch`` leaves them out: each lowering takes
a minute or more), converted from the same model and timed in the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compress.eval.hardware import hardware  # noqa: E402
from compress.eval.latency import interleaved_timings, latency_batch, summarize, timed_call  # noqa: E402
from compress.eval.runtimes import load_runtime, size_mb  # noqa: E402

from compress.models import LERT_VOCAB_SIZE, NAMED_SHAPES, bert_config  # noqa: E402
from compress.onnx import cpu_preset, ort_quantize, write_ort_format  # noqa: E402


@dataclass(frozen=True)
class Shape:
    name: str
    base: str  # named LERT shape
    heads: int | None = None  # kept heads per layer after pruning
    ffn: int | None = None
    vocab: int = LERT_VOCAB_SIZE


SHAPES = [
    Shape("lert-large", "lert-large"),
    Shape("lert-base", "lert-base"),
    Shape("lert-base pruned (prune-base: 8 heads, FFN 2048, vocab 6k)", "lert-base", 8, 2048, 6000),
    Shape("lert-small", "lert-small"),
    Shape("lert-small pruned (2 heads, FFN 512, vocab 6k)", "lert-small", 2, 512, 6000),
]
INT8 = {
    "lert-small",
    "lert-small pruned (2 heads, FFN 512, vocab 6k)",
    "lert-base pruned (prune-base: 8 heads, FFN 2048, vocab 6k)",
}


def build(shape: Shape, out: Path) -> Path:
    """Save a classifier of ``shape``; pruned heads go through ``config.pruned_heads``."""
    from transformers import BertForSequenceClassification

    spec = NAMED_SHAPES[shape.base].model_copy(
        update={"ffn": shape.ffn or NAMED_SHAPES[shape.base].ffn, "vocab_size": shape.vocab}
    )
    config = bert_config(spec, shape.vocab, ["negative", "positive"])
    if shape.heads:
        config.pruned_heads = {
            layer: list(range(spec.heads - shape.heads)) for layer in range(spec.layers)
        }
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(out)
    return out


def export_int8(model_dir: Path, out: Path) -> Path:
    from optimum.exporters.onnx import main_export

    main_export(
        str(model_dir), out, task="text-classification", do_validation=False, local_files_only=True
    )
    return ort_quantize(out / "model.onnx", out, preset=cpu_preset())


def openvino_int8(onnx_path: Path, out: Path, vocab: int, seq_len: int) -> Path:
    """NNCF int8 of the same export, calibrated on random token ids (timing only)."""
    from compress import openvino as ov

    rng = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(32):
        batch = latency_batch(1, seq_len, vocab)
        batch["input_ids"] = torch.randint(1, vocab, (1, seq_len), generator=rng)
        examples.append({k: v.numpy() for k, v in batch.items()})
    model = ov.nncf_int8(ov.convert_onnx(onnx_path), examples, "performance")
    path = ov.save_ir(model, out)
    shutil.copy(onnx_path.parent / "config.json", out / "config.json")  # the runtime reads it
    return path


def executorch_programs(model_dir: Path, out: Path, vocab: int, args) -> list[tuple[str, Path]]:
    """XNNPACK fp32 and int8 programs (int8 calibrated on random token ids: timing only)."""
    import json as json_

    from compress import executorch as et
    from compress.models import load_model

    model = load_model(model_dir, "classification")
    rng = torch.Generator().manual_seed(0)
    calibration = []
    for _ in range(8):
        batch = latency_batch(1, args.seq_len, vocab)
        batch["input_ids"] = torch.randint(1, vocab, (1, args.seq_len), generator=rng)
        calibration.append(batch)
    out.mkdir(parents=True)
    shutil.copy(model_dir / "config.json", out / "config.json")
    made = []
    for precision in ("fp32", "int8"):
        program, details = et.lower(
            model, precision, args.seq_len, max(args.batch_sizes), calibration
        )
        sub = out / precision
        sub.mkdir()
        shutil.copy(model_dir / "config.json", sub / "config.json")
        (sub / "model.pte").write_bytes(program)
        details["params"] = sum(p.numel() for p in model.parameters())
        (sub / et.DETAILS).write_text(json_.dumps(details), encoding="utf-8")
        made.append((precision, sub / "model.pte"))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cpu"], choices=["cpu", "cuda"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--only", help="only the shapes whose name contains this")
    parser.add_argument(
        "--no-executorch", action="store_true", help="leave the ExecuTorch rows out"
    )
    args = parser.parse_args()
    try:
        import executorch.exir  # noqa: F401

        with_executorch = not args.no_executorch
    except ImportError:
        with_executorch = False
        print("executorch is not installed (the executorch extra): no ExecuTorch rows")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        loaded = []
        for shape in [s for s in SHAPES if args.only is None or args.only in s.name]:
            directory = build(shape, Path(tmp) / f"m{len(loaded)}")
            params = None
            for device in args.devices:
                for precision in ["fp32"] if device == "cpu" else ["fp32", "fp16"]:
                    rt = load_runtime(directory, "classification", device, args.threads, precision)
                    params = rt.params
                    loaded.append(
                        (
                            {
                                "model": shape.name,
                                "runtime": "pytorch",
                                "device": device,
                                "precision": precision,
                                "params": rt.params,
                                "size_mb": round(size_mb(directory), 1),
                            },
                            rt,
                        )
                    )
            if shape.name in INT8 and "cpu" in args.devices:
                onnx_path = export_int8(directory, Path(tmp) / f"o{len(loaded)}")
                rt = load_runtime(onnx_path, "classification", "cpu", args.threads)
                loaded.append(
                    (
                        {
                            "model": shape.name,
                            "runtime": "onnxruntime",
                            "device": "cpu",
                            "precision": "int8",
                            "params": params,
                            "size_mb": round(size_mb(onnx_path), 1),
                        },
                        rt,
                    )
                )
                ort_file, _ = write_ort_format(onnx_path)
                rt = load_runtime(ort_file, "classification", "cpu", args.threads)
                loaded.append(
                    (
                        {
                            "model": shape.name,
                            "runtime": "onnxruntime (ort format)",
                            "device": "cpu",
                            "precision": rt.precision,
                            "params": params,
                            "size_mb": round(size_mb(ort_file), 1),
                        },
                        rt,
                    )
                )
                if with_executorch:
                    for precision, pte in executorch_programs(
                        directory, Path(tmp) / f"e{len(loaded)}", shape.vocab, args
                    ):
                        rt = load_runtime(pte, "classification", "cpu", args.threads)
                        loaded.append(
                            (
                                {
                                    "model": shape.name,
                                    "runtime": "executorch",
                                    "device": "cpu",
                                    "precision": precision,
                                    "params": params,
                                    "size_mb": round(size_mb(pte), 1),
                                },
                                rt,
                            )
                        )
                ir = openvino_int8(
                    onnx_path.parent / "model.onnx",
                    Path(tmp) / f"v{len(loaded)}",
                    shape.vocab,
                    args.seq_len,
                )
                rt = load_runtime(ir, "classification", "cpu", args.threads)
                loaded.append(
                    (
                        {
                            "model": shape.name,
                            "runtime": "openvino",
                            "device": "cpu",
                            "precision": rt.precision,
                            "params": params,
                            "size_mb": round(size_mb(ir), 1),
                        },
                        rt,
                    )
                )
        for bs in args.batch_sizes:
            for device in args.devices:
                group = [(row, rt) for row, rt in loaded if row["device"] == device]
                calls = {
                    str(i): timed_call(
                        rt.forward, latency_batch(bs, args.seq_len, rt.vocab_size), device
                    )
                    for i, (_, rt) in enumerate(group)
                }
                times = interleaved_timings(calls, args.warmup, args.repeats)
                for i, (row, _) in enumerate(group):
                    row[f"b{bs}"] = summarize(times[str(i)], bs)
        rows = [row for row, _ in loaded]
    for device in args.devices:
        _print_table([r for r in rows if r["device"] == device], args.batch_sizes, device)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"hardware": hardware(args.threads), "seq_len": args.seq_len, "rows": rows},
                indent=2,
            )
        )


def _print_table(rows: list[dict], batch_sizes: list[int], device: str) -> None:
    reference = rows[0]
    head = ["model", "runtime", "precision", "params (M)", "MB"] + [
        f"b{b} p50 ms (speedup)" for b in batch_sizes
    ]
    print(
        f"\n{device.upper()} (speedup over {reference['model']} {reference['precision']} "
        "PyTorch, measured in this run)\n"
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [
            r["model"],
            r["runtime"],
            r["precision"],
            f"{r['params'] / 1e6:.1f}",
            f"{r['size_mb']:.0f}",
        ]
        for b in batch_sizes:
            p50 = r[f"b{b}"]["p50"]
            cells.append(f"{p50:.1f} ({reference[f'b{b}']['p50'] / p50:.2f}x)")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
