"""Time a bench folder's candidates on the device they will ship to; writes a device profile.

This file is copied into every folder ``lert-compress bench`` writes, as ``run_bench.py``, and
runs there on its own: it needs only ``onnxruntime``, ``numpy`` and ``tokenizers`` (and
``openvino`` for OpenVINO candidates, which are skipped without it), never this project.

    python run_bench.py                       # every candidate, the folder's batch sizes
    python run_bench.py --threads 4 --out my-phone.json

For each candidate it records fixed-shape latency (random token ids, every row at the folder's
sequence length) at each batch size, interleaved round by round across candidates so that a
drift of the machine falls on all of them alike, and end-to-end latency on the folder's texts:
tokenizer plus model, batch 1, each text at its own length, as an app runs it. The profile
names the CPU, its instruction sets and the threads, and is what ``budget.device:`` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROFILE_VERSION = 1
# instruction sets that decide int8 kernels (x86 flags as /proc/cpuinfo spells them; ARM's
# "Features" names)
ISA = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "avx_vnni",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
    "bf16",
)


def cpu() -> dict:
    """The CPU: its name, architecture, logical cores and instruction sets."""
    name, flags = platform.processor() or "", set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and not name:
                name = value.strip()
            elif key in ("flags", "features"):
                flags |= set(value.split())
    except OSError:  # not Linux: ask sysctl (macOS)
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True
            )
            name = out.stdout.strip() or name
            feats = subprocess.run(["sysctl", "hw"], capture_output=True, text=True).stdout
            flags |= {
                m.lower() for m in re.findall(r"hw\.optional\.(?:arm\.)?FEAT_(\w+): 1", feats)
            }
        except OSError:
            pass
    return {
        "name": name or platform.machine(),
        "machine": platform.machine(),
        "system": platform.system(),
        "logical_cores": os.cpu_count(),
        "isa": sorted(f.replace("avx512vnni", "avx512_vnni") for f in flags if f in ISA),
    }


def summarize(samples: list[float], batch: int) -> dict:
    q = statistics.quantiles(samples, n=4)
    p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]
    p50 = statistics.median(samples)
    return {
        "p50": p50,
        "p90": p90,
        "mean": statistics.fmean(samples),
        "iqr": q[2] - q[0],
        "throughput": batch * 1000.0 / p50 if p50 else 0.0,
        "n": len(samples),
    }


class OnnxModel:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # as the build host's evaluator times them: idle threads do not spin after a run, or
        # every other candidate's pool would steal the cores from the one being timed
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = {i.name for i in self.session.get_inputs()}

    def __call__(self, feed: dict):
        return self.session.run(None, {k: v for k, v in feed.items() if k in self.names})


class OpenVinoModel:
    def __init__(self, path: Path, threads: int):
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",  # as the evaluator: no silent bf16 on bf16 CPUs
        }
        self.model = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.model.create_infer_request()
        self.names = {i.get_any_name() for i in self.model.inputs}

    def __call__(self, feed: dict):
        return self.request.infer({k: v for k, v in feed.items() if k in self.names})


def load(entry: dict, folder: Path, threads: int):
    path = folder / entry["file"]
    if entry["runtime"] == "openvino-int8":
        return OpenVinoModel(path, threads)
    return OnnxModel(path, threads)


def random_feed(batch: int, seq_len: int, vocab: int, rng):
    import numpy as np

    ids = rng.integers(min(100, vocab - 1), vocab, size=(batch, seq_len), dtype=np.int64)
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }


def text_feeds(tokenizer_file: Path, texts: list[str], seq_len: int):
    """A callable per text: tokenize it (cut at seq_len) and build the model's inputs."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.enable_truncation(seq_len)
    tok.no_padding()

    def feed(text: str, vocab: int) -> dict:
        enc = tok.encode(text)
        ids = np.asarray([enc.ids], dtype=np.int64)
        if vocab < tok.get_vocab_size():  # a cut vocabulary's candidate: ids folded into range
            ids %= vocab
        return {
            "input_ids": ids,
            "attention_mask": np.asarray([enc.attention_mask], dtype=np.int64),
            "token_type_ids": np.asarray([enc.type_ids], dtype=np.int64),
        }

    return feed


def run(folder: Path, threads: int, warmup: int, repeats: int, batch_sizes, log=print) -> dict:
    import numpy as np

    spec = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    seq_len = spec["seq_len"]
    batch_sizes = batch_sizes or spec["batch_sizes"]
    texts = (folder / "texts.txt").read_text(encoding="utf-8").splitlines()
    feed_text = text_feeds(folder / spec["tokenizer"], texts, seq_len)
    rng = np.random.default_rng(0)
    models, skipped = {}, {}
    for key, entry in spec["candidates"].items():
        try:
            models[key] = load(entry, folder, threads)
        except ImportError as err:  # openvino not installed here
            skipped[key] = f"{entry['runtime']}: {err.name or err} is not installed"
    fixed: dict[str, dict] = {k: {} for k in models}
    for b in batch_sizes:
        feeds = {
            k: random_feed(b, seq_len, spec["candidates"][k]["vocab_size"], rng) for k in models
        }
        samples: dict[str, list[float]] = {k: [] for k in models}
        for round_ in range(warmup + repeats):  # interleaved: round r runs every candidate
            for key, model in models.items():
                start = time.perf_counter()
                model(feeds[key])
                if round_ >= warmup:
                    samples[key].append((time.perf_counter() - start) * 1000)
        for key in models:
            fixed[key][f"b{b}"] = summarize(samples[key], b)
        log(f"batch {b}: " + ", ".join(f"{k} {fixed[k][f'b{b}']['p50']:.2f} ms" for k in models))
    end_to_end = {}
    for key, model in models.items():
        vocab = spec["candidates"][key]["vocab_size"]
        for text in texts[:warmup]:
            model(feed_text(text, vocab))
        times = []
        for text in texts:
            start = time.perf_counter()
            model(feed_text(text, vocab))  # what an app sees: the tokenizer call is timed too
            times.append((time.perf_counter() - start) * 1000)
        end_to_end[key] = summarize(times, 1)
        log(f"end to end {key}: p50 {end_to_end[key]['p50']:.2f} ms")
    versions = {}
    for name in ("onnxruntime", "openvino", "numpy", "tokenizers"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {
        "profile_version": PROFILE_VERSION,
        "bench": spec["name"],
        "quantized_for": spec["preset"],
        "cpu": cpu(),
        "threads": threads,
        "python": platform.python_version(),
        "packages": versions,
        "seq_len": seq_len,
        "batch_sizes": list(batch_sizes),
        "texts": len(texts),
        "repeats": repeats,
        "candidates": {k: {"fixed": fixed[k], "end_to_end": end_to_end[k]} for k in models},
        "skipped": skipped,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=here, help="the bench folder")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+")
    parser.add_argument("--out", type=Path, help="the profile (default: FOLDER/profile.json)")
    args = parser.parse_args(argv)
    if not (args.folder / "bench.json").is_file():
        print(
            f"error: {args.folder / 'bench.json'} is missing: run this in a bench folder",
            file=sys.stderr,
        )
        return 2
    profile = run(args.folder, args.threads, args.warmup, args.repeats, args.batch_sizes)
    out = args.out or args.folder / "profile.json"
    tmp = out.with_suffix(".partial")
    tmp.write_text(json.dumps(profile, indent=1), encoding="utf-8")
    os.replace(tmp, out)
    for key, why in profile["skipped"].items():
        print(f"skipped {key}: {why}")
    print(f"profile: {out}  (bring it back; give it to the fit step as budget.device)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
