"""Converted models (export, quantize, ORT format) against the model each came from, on dev
examples, as their steps recorded it."""

from __future__ import annotations

from pathlib import Path

from compress.eval.schema import Report

from compress.manifest import Manifest


def checked_against_source(manifest: Manifest, steps: list[str]) -> list[dict]:
    """What the export and quantize steps (and their ORT-format copies) recorded when they
    compared their output with the model it was converted from, on dev examples."""
    checks = []
    for name in steps:
        entry = manifest.steps.get(name)
        check = (entry.details or {}).get("validation") if entry else None
        if not check or "max_abs_diff" not in check or not entry.output:
            continue
        source = f"`{entry.input_step}`" if entry.input_step else "its input"
        if entry.input and not (manifest.path.parent / entry.input).is_dir():
            source += f" ({Path(entry.input).name})"
        checks.append(
            {"variant": name, "file": Path(entry.output).name, "against": source, **check}
        )
        ort = entry.details.get("ort_format")
        if ort:
            checks.append(
                {
                    "variant": f"{name} (ort format)",
                    "file": ort["file"],
                    "against": f"`{name}` ({Path(entry.output).name})",
                    "operators": ort["operators"],
                    **ort["validation"],
                }
            )
    return checks


def checked_section(report: Report) -> list[str]:
    if not report.checked_against_source:
        return []
    lines = [
        "Converted models against the model each came from, on dev examples (max |Δlogit| "
        "over every logit; argmax agreement: the share of predictions that match):",
        "",
        "| variant | file | against | max abs Δlogit | argmax agreement |",
        "|---|---|---|---|---|",
    ]
    for c in report.checked_against_source:
        file = c["file"] + (f" ({c['operators']} operators)" if "operators" in c else "")
        lines.append(
            f"| {c['variant']} | {file} | {c['against']} | {c['max_abs_diff']:.2e} "
            f"| {c['argmax_agreement']:.4f} |"
        )
    return [*lines, ""]
