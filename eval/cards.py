"""Hugging Face style model cards (README.md) for every model a run produced: what it is, what
it was trained and scored on, how it was made, what it measured, and how to load it."""

from __future__ import annotations

from pathlib import Path

import yaml
from compress.eval.schema import MetricRow, Report

from compress.manifest import Manifest, StepEntry


def search_text(search: dict) -> str:
    """The KD settings a distill step's search chose, in words."""
    chosen = ", ".join(f"{k} {v}" for k, v in search["chosen"].items())
    rounds = search.get("rounds", [search["trial_steps"]])
    trials = f"{len(search['trials'])} trials of {' then '.join(str(r) for r in rounds)} steps"
    if search.get("outcome") == "no signal":
        name = search["trivial"]["name"]
        return f"{chosen} (the stage's defaults): no signal: all {trials} at the {name} baseline"
    text = f"{chosen}, chosen on {search['split']} from {trials}"
    return f"{text} ({search['outcome']})" if search.get("outcome") else text


PIPELINE_TASKS = {
    "accuracy": "text-classification",
    "entity_f1": "token-classification",
    "qa_f1": "question-answering",
}
AUTO_CLASSES = {
    "accuracy": "SequenceClassification",
    "entity_f1": "TokenClassification",
    "qa_f1": "QuestionAnswering",
}


def card_text(
    name: str,
    manifest: Manifest,
    rows: list[MetricRow],
    report: Report,
    resolved: dict | None = None,
    measured: str | None = None,
) -> str:
    """The card of step ``name``; ``resolved`` is the run's recipe.resolved.yaml, if read;
    ``rows`` are those of step ``measured`` (a select step's copy shows its chosen step's)."""
    entry = manifest.steps[name]
    measured = measured or name
    library = {"onnx": "onnx", "openvino": "openvino", "executorch": "executorch"}.get(
        entry.kind, "transformers"
    )
    lines = [
        "---",
        "language: zh",
        f"library_name: {library}",
        f"pipeline_tag: {PIPELINE_TASKS.get(report.metric, 'text-classification')}",
        "tags: [lert-compress, bert, chinese]",
        "---",
        "",
        *([f"> **{report.rehearsal['note']}**", ""] if report.rehearsal else []),
        f"# {report.recipe} / {name}",
        "",
        f"A BERT-architecture model for `{report.task}` made by the `{entry.stage}` step of the "
        f"lert-compress recipe `{report.recipe}`.",
        "",
        *(
            [
                f"It is a copy of `{measured}`'s model, the one this step passed on to the steps "
                f"after it: {entry.details['why']}. Its measurements are `{measured}`'s.",
                "",
            ]
            if measured != name
            else []
        ),
        *_data_section(report, resolved),
        "## How it was made",
        "",
    ]
    for i, (step, e) in enumerate(manifest.chain(name), 1):
        lines.append(
            f"{i}. `{step}`: stage `{e.stage}`, config hash `{e.config_hash}`, "
            f"{'?' if e.seconds is None else e.seconds} s"
            + (f"; took `{e.details['chosen']}`: {e.details['why']}" if e.stage == "select" else "")
            + (
                f"; KD settings {search_text(e.details['search'])}"
                if "search" in (e.details or {})
                else ""
            )
        )
    config = _step_config(resolved, name)
    if config:
        lines += ["", "This step's resolved options:", "", "```yaml"]
        lines += [yaml.safe_dump(config, allow_unicode=True, sort_keys=False).rstrip(), "```"]
    lines += [
        "",
        f"## Measured ({report.metric})",
        "",
        f"Scored on the {report.split_description or report.split} split, "
        f"{report.examples} examples, with 95% bootstrap intervals; Δ is against "
        f"`{report.reference}` on the same examples (paired interval).",
        "",
        "| runtime | device | precision | score [95% CI] | Δ pts [95% CI] | MB | b1 p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b1 = r.latency_ms.get("b1")
        runtime = r.runtime + (r.variant[len(measured) :] if r.variant != measured else "")
        lines.append(
            f"| {runtime} | {r.device} | {r.precision} | {r.score * 100:.2f}{_ci(r.score_ci)} | "
            f"{_delta(r)} | {r.size_mb:.1f} | {'–' if b1 is None else f'{b1.p50:.1f}'} |"
        )
    if not rows:
        lines.append("| – | – | – | not evaluated | – | – | – |")
    details = entry.details or {}
    if details.get("target"):
        lines += [
            "",
            f"Quantized for the `{details['target']}` instruction set "
            f"({details.get('target_source', 'as recorded')}) on a "
            f"`{details.get('built_on', '?')}` machine: run it on a CPU of that kind.",
        ]
    if entry.stage == "fit" and details.get("winner"):
        from compress.eval.sections.fit import budget_text

        check = details.get("probe_check") or {}
        probe, device = details["probe"], details["probe"].get("device")
        if device:
            winner = next(c for c in details["candidates"] if c["key"] == details["winner"])
            where = (
                f"measured on the target device, {device['cpu']} ({device['machine']}, "
                f"{device['threads']} threads; its p50 there: {winner['latency']['p50']:.2f} ms), "
                f"by a bench folder's runner; int8 quantized for {probe['preset']}."
            )
        else:
            where = (
                f"measured on the machine that built it ({probe['preset']}), not necessarily "
                "yours"
                + (f"; its latency there: {check['trained_p50']:.2f} ms p50." if check else ".")
            )
        lines += [
            "",
            f"Chosen by a fit search as `{details['winner']}` ({details['objective']}) among "
            f"{details['probed']} candidates, {details['trained']} trained. The budget it meets: "
            f"{budget_text(details['budget'], probe)}, {where}",
        ]
    notes = [f"- {r.runtime} {r.precision} on {r.device}: {n}" for r in rows for n in r.notes]
    if notes:
        lines += ["", *notes]
    lines += ["", "## Use it", "", *_usage(manifest.path.parent, entry, report, resolved), ""]
    if entry.stage == "fit" and details.get("pytorch"):
        lines += _pytorch_copy_usage(manifest.path.parent, entry, report)
    if "ort_format" in details:
        lines += _ort_format_usage(manifest.path.parent, entry, report, resolved)
    return "\n".join(lines)


def _pytorch_copy_usage(root: Path, entry: StepEntry, report: Report) -> list[str]:
    """A fit winner's folder: the runtime file it ships and the PyTorch model it was trained as,
    and a snippet that reloads the latter in plain transformers."""
    info = entry.details["pytorch"]
    path = root / (entry.output or "")
    auto = AUTO_CLASSES.get(report.metric, "SequenceClassification")
    files = ", ".join(f"`{f}`" for f in info["files"])
    return [
        "### The PyTorch model",
        "",
        f"Beside `{path.name}` (what ships) this folder holds the pruned PyTorch model it was "
        f"converted from: {files} ({info['size_mb']:.2f} MB), `config.json` and the tokenizer. "
        "It reloads in plain transformers, for further fine-tuning, a GPU, or another export:",
        "",
        "```python",
        f"from transformers import AutoModelFor{auto}, AutoTokenizer",
        "",
        f'model_dir = "{path.parent}"  # this directory',
        f"model = AutoModelFor{auto}.from_pretrained(model_dir)",
        "tokenizer = AutoTokenizer.from_pretrained(model_dir)",
        "```",
        "",
    ]


def _ort_format_usage(
    root: Path, entry: StepEntry, report: Report, resolved: dict | None
) -> list[str]:
    """The ORT-format copy: what was checked, what an app bundles, and a snippet that loads
    exactly that file."""
    info = entry.details["ort_format"]
    here = (root / (entry.output or "")).parent
    check = info["validation"]
    max_len = int(((resolved or {}).get("task") or {}).get("max_seq_len") or 128)
    qa = report.metric == "qa_f1"
    pair = "question, text" if qa else "[text]"
    cut = (
        f'truncation="only_second", max_length={max_len}'
        if qa
        else f"truncation=True, max_length={max_len}"
    )
    return [
        "### ORT format (ONNX Runtime Mobile)",
        "",
        f"`{info['file']}` ({info['mb']:.2f} MB) is this model in ONNX Runtime's ORT format, "
        f"optimized ahead of time; against the .onnx on dev examples: max |Δlogit| "
        f"{check['max_abs_diff']:.1e}, argmax agreement {check['argmax_agreement']:.4f}.",
        "",
        f"An app bundles `{info['file']}` and the tokenizer's `vocab.txt` (BERT WordPiece; "
        f"`tokenizer.json` for the tokenizers library). `{info['required_operators']}` lists "
        f"the {info['operators']} operators it needs: give it to ONNX Runtime's build "
        "(`--minimal_build --include_ops_by_config <file>`) for a runtime with only those.",
        "",
        "```python",
        "import numpy as np",
        "import onnxruntime as ort",
        "from transformers import AutoTokenizer",
        "",
        f'model_dir = "{here}"  # this directory',
        "tokenizer = AutoTokenizer.from_pretrained(model_dir)",
        *(['question = "哪家店服务好？"'] if qa else []),
        'text = "这家店的服务很好"  # a text of any length',
        "session = ort.InferenceSession(",
        f'    f"{{model_dir}}/{info["file"]}", providers=["CPUExecutionProvider"]',
        ")",
        f'feeds = tokenizer({pair}, {cut}, return_tensors="np")',
        "names = {i.name for i in session.get_inputs()}",
        "feeds = {k: v.astype(np.int64) for k, v in feeds.items() if k in names}",
        "outputs = session.run(None, feeds)",
        "```",
        "",
    ]


def _data_section(report: Report, resolved: dict | None) -> list[str]:
    task = (resolved or {}).get("task", {})
    source = (
        f"hub dataset `{task['dataset']}`" + (f" ({task['subset']})" if task.get("subset") else "")
        if task.get("dataset")
        else ", ".join(f"{s} `{task[s]}`" for s in ("train", "dev", "test") if task.get(s))
        or f"the registered task `{report.task}` (`lert-compress tasks` names its source)"
    )
    sizes = ", ".join(f"{split} {n:,}" for split, n in report.split_sizes.items())
    lines = ["## Data", "", f"- Source: {source}."]
    if sizes:
        lines.append(f"- Examples as loaded: {sizes}.")
    if report.labels:
        kind = "Tags" if report.metric == "entity_f1" else "Labels"
        lines.append(f"- {kind} (id order): {', '.join(f'`{x}`' for x in report.labels)}.")
    if task.get("max_seq_len"):
        lines.append(f"- Maximum sequence length: {task['max_seq_len']} tokens.")
    return [*lines, ""]


def _step_config(resolved: dict | None, name: str) -> dict:
    for step in (resolved or {}).get("steps", []):
        if step.get("name") == name:
            return step
    return {}


def _usage(root: Path, entry: StepEntry, report: Report, resolved: dict | None = None) -> list[str]:
    """A snippet that loads this very artifact with the library's own API and takes text of any
    length: it is cut (or, for QA, windowed) at the length the model was trained on."""
    path = root / (entry.output or "")
    here = path.parent if entry.kind in ("onnx", "openvino", "executorch") else path
    auto = AUTO_CLASSES.get(report.metric, "SequenceClassification")
    task = (resolved or {}).get("task", {})
    max_len = int(task.get("max_seq_len") or 128)
    qa = report.metric == "qa_f1"
    stride = int(task.get("doc_stride") or min(128, max_len // 2))
    note = (
        f"Trained on {max_len}-token windows: a context of any length is read in windows of "
        f"{max_len} tokens, {stride} apart, as in training."
        if qa
        else f"Trained on texts cut at {max_len} tokens: a longer text is cut the same way."
    )
    head = [note, "", "```python"]
    text = 'text = "这家店的服务很好"  # a text of any length'
    question = 'question = "哪家店服务好？"'
    if entry.kind == "executorch":
        return [*head, *_executorch_usage(here, path, entry, max_len, qa)]
    if entry.kind in ("onnx", "openvino"):
        pair = "question, text" if qa else "[text]"
        cut = (
            f'truncation="only_second", max_length={max_len}'
            if qa
            else f"truncation=True, max_length={max_len}"
        )
        lines = [
            *head,
            "from transformers import AutoTokenizer",
            "",
            f'model_dir = "{here}"  # this directory',
            "tokenizer = AutoTokenizer.from_pretrained(model_dir)",
            *([question] if qa else []),
            text,
        ]
        if entry.kind == "onnx":
            return [
                *lines,
                f"from optimum.onnxruntime import ORTModelFor{auto}",
                "",
                f'model = ORTModelFor{auto}.from_pretrained(model_dir, file_name="{path.name}")',
                f'outputs = model(**tokenizer({pair}, {cut}, return_tensors="pt"))',
                "```",
            ]
        return [
            *lines,
            "import openvino as ov",
            "",
            f'compiled = ov.Core().compile_model(f"{{model_dir}}/{path.name}", "CPU")',
            f'logits = compiled(dict(tokenizer({pair}, {cut}, return_tensors="np")))[0]',
            "```",
        ]
    if entry.kind == "bnb":
        head[0:0] = [
            "Needs `bitsandbytes` (its quantization config is saved with the weights).",
            "",
        ]
    pipeline_task = PIPELINE_TASKS.get(report.metric, "text-classification")
    call = {
        "text-classification": "predict(text, truncation=True)",
        "token-classification": "predict(text)",
        "question-answering": (
            f"predict(question=question, context=text, max_seq_len={max_len}, doc_stride={stride})"
        ),
    }[pipeline_task]
    return [
        *head,
        "from transformers import AutoTokenizer, pipeline",
        "",
        f'model_dir = "{here}"  # this directory',
        f"tokenizer = AutoTokenizer.from_pretrained(model_dir, model_max_length={max_len})",
        f'predict = pipeline("{pipeline_task}", model=model_dir, tokenizer=tokenizer)',
        *([question] if qa else []),
        text,
        f"print({call})",
        "```",
    ]


def _executorch_usage(here: Path, path: Path, entry: StepEntry, max_len: int, qa: bool):
    """A snippet over ExecuTorch's Python runtime (the C++ and Android/iOS runtimes take the same
    file), and what an app bundles."""
    info = entry.details or {}
    pair = "question, text" if qa else "[text]"
    cut = (
        f'truncation="only_second", max_length={max_len}'
        if qa
        else f"truncation=True, max_length={max_len}"
    )
    portable = ", ".join(f"`{op}`" for op in info.get("portable_ops", {})) or "none"
    return [
        "from pathlib import Path",
        "",
        "from executorch.runtime import Runtime",
        "from transformers import AutoTokenizer",
        "",
        f'model_dir = "{here}"  # this directory',
        "tokenizer = AutoTokenizer.from_pretrained(model_dir)",
        *(['question = "哪家店服务好？"'] if qa else []),
        'text = "这家店的服务很好"  # a text of any length',
        f'program = Runtime.get().load_program(Path(model_dir) / "{path.name}")',
        'method = program.load_method("forward")',
        f'enc = tokenizer({pair}, {cut}, return_tensors="pt")',
        'inputs = [enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]]',
        "logits = method.execute(inputs)[0]",
        "```",
        "",
        f"An app bundles `{path.name}` and the tokenizer's `vocab.txt`, and links ExecuTorch's "
        f"runtime with the XNNPACK backend ({info.get('delegated_nodes', '?')} nodes in "
        f"{info.get('delegated_subgraphs', '?')} delegated subgraphs) and the portable kernels "
        f"of what XNNPACK did not take: {portable}. It takes batches of up to "
        f"{info.get('max_batch', '?')} texts of up to {info.get('max_len', '?')} tokens.",
    ]


def write_model_cards(root: Path, report: Report, manifest: Manifest) -> None:
    """A README.md beside every step output that the report measured, and in every select
    step's copy of the model it passed on."""
    resolved_path = root / "recipe.resolved.yaml"
    resolved = (
        yaml.safe_load(resolved_path.read_text(encoding="utf-8"))
        if resolved_path.exists()
        else None
    )
    for name in report.steps:
        entry = manifest.steps[name]
        if entry.status != "done" or entry.output is None or entry.stage == "external":
            continue
        if not entry.evaluated:  # it wrote its own card (no task head)
            continue
        output = root / entry.output
        directory = output.parent if output.is_file() else output
        rows = [r for r in report.rows if r.step == name]
        (directory / "README.md").write_text(
            card_text(name, manifest, rows, report, resolved), encoding="utf-8"
        )
    for name, entry in manifest.steps.items():  # a select step's copy: its chosen one's rows
        chosen = (entry.details or {}).get("chosen")
        if entry.stage != "select" or entry.status != "done" or chosen not in report.steps:
            continue
        rows = [r for r in report.rows if r.step == chosen]
        (root / entry.output / "README.md").write_text(
            card_text(name, manifest, rows, report, resolved, measured=chosen), encoding="utf-8"
        )


def _ci(interval: list[float]) -> str:
    return f" [{interval[0] * 100:.1f}, {interval[1] * 100:.1f}]" if interval else ""


def _delta(row: MetricRow) -> str:
    if row.delta is None:
        return "–"
    text = f"{row.delta * 100:+.2f}{_ci(row.delta_ci)}"
    return text + (" within noise" if row.within_noise else "")
