"""The model card (README.md) of a masked LM made by ``pretrain`` or ``general-distill``: what
it is, what text it learnt from, its losses and held-out checks, and how to make it again. (Task
models get theirs from the evaluator, ``eval/cards.py``, once they are scored.)"""

from __future__ import annotations

import yaml


def pretrained_card(kind: str, details: dict, ctx) -> str:
    """The card of a ``pretrain`` or ``general-distill`` output: a masked LM with no task head.
    ``ctx`` is the step's ``StageContext`` (its options, seed and the recipe's command)."""
    config = ctx.configs.get(ctx.step_name)
    options = config.model_dump(mode="json", exclude_defaults=True) if config else {}
    params = details.get("params", {})
    data = details.get("data", {})
    train = details.get("train", {})
    lines = [
        "---",
        "language: zh",
        "library_name: transformers",
        "pipeline_tag: fill-mask",
        "tags: [lert-compress, bert, chinese, fill-mask]",
        "---",
        "",
        f"# {ctx.step_name}",
        "",
        f"A BERT-architecture masked language model made by the `{kind}` stage of lert-compress"
        + (
            " (whole-word n-gram masked LM with LERT's linguistic tasks)."
            if kind == "pretrain"
            else " (general distillation: masked-LM outputs and hidden states of its teacher)."
        ),
        f"It has no task head: fine-tune or distil it for a task (`model: <this directory>` or "
        f"`student: {{init: <this directory>}}`). Parameters: {params.get('total', 0):,} "
        f"({params.get('embeddings', 0):,} in the embeddings); vocabulary "
        f"{details.get('vocab_size', '?')} tokens.",
        "",
        "## Data",
        "",
        *[f"- {s}" for s in data.get("sources", [])],
        "",
        f"{data.get('train_rows', 0):,} rows of at most {options.get('max_seq_len', 128)} tokens "
        f"for training, {data.get('heldout_rows', 0):,} held out for the checks below.",
    ]
    if kind == "pretrain":
        heads = data.get("linguistic_heads") or []
        lines.append(
            f"Linguistic heads trained (and dropped on save): {', '.join(heads) or 'none'}; "
            f"tags: {data.get('tags', 'none')} (gold POS where the corpus has it, jieba's tagger "
            "elsewhere, when `auto`)."
        )
    lines += [
        "",
        "## Training",
        "",
        f"{train.get('steps', '?')} optimizer steps, seed {ctx.seed}; the kept weights are those "
        f"of step {train.get('best_step', '?')} (best held-out masked-token accuracy).",
        "",
        "Options (those not at their defaults):",
        "",
        "```yaml",
        yaml.safe_dump(options, allow_unicode=True, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    losses = details.get("losses") or []
    if losses:
        keys = [k for k in losses[-1] if k.endswith(("_loss", "_weight"))]
        pick = losses[:: max(1, len(losses) // 10)] + ([losses[-1]] if len(losses) > 1 else [])
        seen: set[int] = set()
        lines += ["Training losses (mean over each logging interval):", ""]
        lines += ["| step | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for row in pick:
            if row["step"] in seen:
                continue
            seen.add(row["step"])
            lines.append(
                f"| {row['step']} | " + " | ".join(str(row.get(k, "")) for k in keys) + " |"
            )
        lines.append("")
    held = details.get("heldout", {})
    before = details.get("heldout_before", {})
    lines += ["## Held-out checks", ""]
    if before:
        lines.append(
            f"- masked-token accuracy {before.get('accuracy', 0) * 100:.2f}% before training, "
            f"{held.get('accuracy', 0) * 100:.2f}% after (loss {before.get('loss', 0):.3f} -> "
            f"{held.get('loss', 0):.3f})"
        )
    else:
        lines.append(f"- masked-token accuracy {held.get('accuracy', 0) * 100:.2f}%")
    if "teacher_heldout" in details:
        teacher = details["teacher_heldout"]
        near_before, near_after = details["closeness_before"], details["closeness_after"]
        lines += [
            f"- the teacher's masked-token accuracy on the same rows: "
            f"{teacher.get('accuracy', 0) * 100:.2f}%",
            f"- KL(teacher || student) per masked token: {near_before['mlm_kl']} before, "
            f"{near_after['mlm_kl']} after",
            f"- mean linear CKA of the matched hidden states: {near_before['hidden_cka_mean']} "
            f"before, {near_after['hidden_cka_mean']} after",
        ]
    lines += [
        "",
        "## Regenerate",
        "",
        "```",
        ctx.command or "(run the recipe that made it again)",
        "```",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        'fill = pipeline("fill-mask", model="path/to/this/directory")',
        'print(fill("今天天气很[MASK]。")[:3])',
        "```",
        "",
    ]
    return "\n".join(lines)
