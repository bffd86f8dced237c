"""What the task will feed each model, checked against that model's limits before any work.

Training on short texts passes with a model that cannot take the task's longest input, its
second text of a pair, or every token of its tokenizer; inference on the first long text (or the
first rare character) then fails in the hands of whoever ships it. Each model the recipe builds
or loads, or an earlier step will produce (``plan_archs``), is checked once, at the first step
that meets it.
"""

from __future__ import annotations

from compress.arch import Arch


def limit_problems(recipe, archs: dict[str, Arch | None]) -> list[str]:
    """One line per broken limit: the key, the model, the limit and the fix."""
    from compress.tasks import configured_labels, pair_source

    pairs = pair_source(recipe.task)
    labels = configured_labels(recipe.task)
    found: dict[tuple, str] = {}
    for step in recipe.steps:
        arch = archs.get(step.name)
        if arch is None:
            continue
        model = f"step {step.name!r} ({arch.origin})" if arch.origin else f"step {step.name!r}"
        for key, problem in _arch_problems(recipe, step, arch, pairs, labels):
            found.setdefault((key, arch.origin), f"{key}: {model} {problem}")
    return list(found.values())


def _arch_problems(recipe, step, arch: Arch, pairs, labels) -> list[tuple[str, str]]:
    out = []
    head = arch.head_labels
    if head and labels and sorted(head) == sorted(labels) and list(head) != labels:
        out.append(
            (
                "task.labels",
                f"has a head for the task's labels in another order ({list(head)}, the task "
                f"{labels}); its head would be reused with each output meaning another label: "
                f"give task.labels as {list(head)}, or a model without that head",
            )
        )
    positions, seq = arch.positions, recipe.task.max_seq_len
    if positions is not None and seq > positions:
        out.append(
            (
                "task.max_seq_len",
                f"has {positions} positions (max_position_embeddings), fewer than max_seq_len "
                f"{seq}: texts longer than {positions} tokens would fail at inference; lower "
                f"task.max_seq_len to {positions} or use a model with more positions",
            )
        )
    timed = recipe.evaluate.seq_len
    if positions is not None and step.config.evaluated and timed > positions:
        out.append(
            (
                "evaluate.seq_len",
                f"has {positions} positions (max_position_embeddings); latency at {timed} "
                f"tokens cannot be measured: lower evaluate.seq_len to {positions} at most",
            )
        )
    if pairs and arch.type_vocab is not None and arch.type_vocab < 2:
        out.append(
            (
                "task",
                f"has type_vocab_size {arch.type_vocab}: the task feeds {pairs} as token type "
                "1, which it has no embedding for; use a model with 2 token types",
            )
        )
    if arch.tokens is not None and arch.vocab is not None and arch.tokens > arch.vocab:
        out.append(
            (
                "model",
                f"has a tokenizer of {arch.tokens} tokens but vocab_size {arch.vocab}: ids from "
                f"{arch.vocab} up have no embedding and fail when a text uses them; give it the "
                "tokenizer it was trained with",
            )
        )
    heads = arch.width_heads
    if heads is not None and arch.hidden % heads:
        out.append(
            (
                "model",
                f"has hidden_size {arch.hidden}, which its {heads} attention heads do not "
                "divide; BERT cannot build it (fix num_attention_heads in its config.json)",
            )
        )
    return out
