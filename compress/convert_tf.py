"""Convert LERT's original TensorFlow 1.x release into a Hugging Face directory.

The release holds ``lert_model.ckpt.*``, ``lert_config.json`` and ``vocab.txt``. LERT was
pre-trained without next-sentence prediction (ymcui/LERT ``src/run_pretraining.py``), so its
checkpoint has no ``cls/seq_relationship/*``: its BERT variables become ``BertForMaskedLM``
weights (``BertForPreTraining`` when a Google-BERT-style checkpoint does have NSP). LERT's
linguistic heads, dense layers inside ``cls/predictions`` named ``output_pos_layer`` (28 POS
tags), ``output_ner_layer`` (13) and ``output_dep_layer`` (14 dependency relations), are reported
and dropped, or saved to ``extra_heads.safetensors`` when asked.

Written here rather than taken from ``transformers.load_tf_weights_in_bert`` because that
function cannot report or keep unknown variables (it walks them into the wrong module).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from compress.errors import CompressError

log = logging.getLogger(__name__)

OPTIMIZER_PARTS = ("adam_m", "adam_v", "global_step", "AdamWeightDecayOptimizer")
LAYER = re.compile(r"^bert/encoder/layer_(\d+)/(.+)$")
LEAF = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}
FIXED = {
    "bert/embeddings/word_embeddings": "bert.embeddings.word_embeddings.weight",
    "bert/embeddings/position_embeddings": "bert.embeddings.position_embeddings.weight",
    "bert/embeddings/token_type_embeddings": "bert.embeddings.token_type_embeddings.weight",
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
}
MODULES = {  # TF scope -> HF module for dense and LayerNorm leaves
    "bert/embeddings/LayerNorm": "bert.embeddings.LayerNorm",
    "bert/pooler/dense": "bert.pooler.dense",
    "cls/predictions/transform/dense": "cls.predictions.transform.dense",
    "cls/predictions/transform/LayerNorm": "cls.predictions.transform.LayerNorm",
}
IN_LAYER = (
    "attention/self/query",
    "attention/self/key",
    "attention/self/value",
    "attention/output/dense",
    "attention/output/LayerNorm",
    "intermediate/dense",
    "output/dense",
    "output/LayerNorm",
)


# LERT's linguistic heads (ymcui/LERT src/run_pretraining.py, get_masked_lm_output)
LERT_HEADS = {
    "cls/predictions/output_pos_layer": "part of speech, 28 LTP tags",
    "cls/predictions/output_ner_layer": "named entities, 13 LTP tags",
    "cls/predictions/output_dep_layer": "dependency relations, 14 LTP labels",
}
NSP = ("cls.seq_relationship.weight", "cls.seq_relationship.bias")


class ConversionError(CompressError):
    pass


def describe_extra(names: list[str]) -> list[str]:
    """The dropped variables grouped by head, LERT's heads with what they predicted."""
    scopes = sorted({name.rpartition("/")[0] for name in names})
    return [f"{scope} ({LERT_HEADS[scope]})" if scope in LERT_HEADS else scope for scope in scopes]


def hf_name(tf_name: str) -> tuple[str, bool] | None:
    """(HF state-dict key, transpose?) for a BERT variable, or None for anything else."""
    if tf_name in FIXED:
        return FIXED[tf_name], False
    scope, _, leaf = tf_name.rpartition("/")
    if leaf not in LEAF:
        return None
    if scope in MODULES:
        return f"{MODULES[scope]}.{LEAF[leaf]}", leaf == "kernel"
    match = LAYER.match(scope)
    if match and match.group(2) in IN_LAYER:
        module = match.group(2).replace("/", ".")
        return f"bert.encoder.layer.{match.group(1)}.{module}.{LEAF[leaf]}", leaf == "kernel"
    return None


def _checkpoint_prefix(ckpt_dir: Path) -> Path:
    found = sorted(ckpt_dir.glob("*.ckpt.index")) or sorted(ckpt_dir.glob("*.index"))
    if not found:
        raise ConversionError(f"no TensorFlow checkpoint (*.ckpt.index) in {ckpt_dir}")
    return found[0].with_suffix("")


def _config_file(ckpt_dir: Path) -> Path:
    for name in ("lert_config.json", "bert_config.json", "config.json"):
        if (ckpt_dir / name).is_file():
            return ckpt_dir / name
    raise ConversionError(f"no lert_config.json or bert_config.json in {ckpt_dir}")


def read_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ConversionError(
            "converting a TensorFlow checkpoint needs TensorFlow: install the tf extra, "
            "e.g. `.venv/bin/pip install -e '.[tf]'`"
        ) from exc
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def convert(ckpt_dir: Path, out_dir: Path, keep_extra_heads: bool = False) -> dict:
    """Write an HF ``BertForMaskedLM`` directory (``BertForPreTraining`` when the checkpoint has
    an NSP head); return what was converted and what was dropped."""
    from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

    ckpt_dir = Path(ckpt_dir)
    config = BertConfig.from_json_file(str(_config_file(ckpt_dir)))
    variables = read_checkpoint(_checkpoint_prefix(ckpt_dir))
    has_nsp = "cls/seq_relationship/output_weights" in variables
    model = BertForPreTraining(config)  # BERT with its pooler and MLM head (+ NSP if present)
    state = model.state_dict()
    converted, extra, optimizer = {}, {}, []
    for name, array in sorted(variables.items()):
        if any(part in name for part in OPTIMIZER_PARTS):
            optimizer.append(name)
            continue
        mapped = hf_name(name)
        if mapped is None:
            extra[name] = array
            continue
        key, transpose = mapped
        tensor = torch.from_numpy(np.ascontiguousarray(array.T if transpose else array))
        if tuple(tensor.shape) != tuple(state[key].shape):
            raise ConversionError(
                f"{name} has shape {array.shape}; {key} expects {tuple(state[key].shape)}"
            )
        converted[key] = tensor
    missing = sorted(
        set(state)
        - set(converted)
        - {
            "cls.predictions.decoder.weight",
            "cls.predictions.decoder.bias",
            "bert.embeddings.position_ids",
            *(() if has_nsp else NSP),
        }
    )
    if missing:
        raise ConversionError(
            f"the checkpoint lacks {len(missing)} BERT tensors, e.g. {missing[:3]}"
        )
    model.load_state_dict(converted, strict=False)
    model.tie_weights()
    out_dir.mkdir(parents=True, exist_ok=True)
    # without an NSP head the directory is a masked-LM model (its pooler kept for fine-tuning)
    architecture = "BertForPreTraining" if has_nsp else "BertForMaskedLM"
    saved = {k: v for k, v in model.state_dict().items() if has_nsp or k not in NSP}
    model.save_pretrained(out_dir, state_dict=saved, safe_serialization=True)
    config_path = out_dir / "config.json"
    written = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**written, "architectures": [architecture]}, indent=2))
    if (ckpt_dir / "vocab.txt").is_file():
        shutil.copy(ckpt_dir / "vocab.txt", out_dir / "vocab.txt")
        BertTokenizerFast(vocab_file=str(out_dir / "vocab.txt")).save_pretrained(out_dir)
    dropped = describe_extra(sorted(extra))
    if extra and not keep_extra_heads:
        log.warning("dropped heads that are not BERT's: %s", "; ".join(dropped))
    if extra and keep_extra_heads:
        from safetensors.numpy import save_file

        save_file(
            {k: np.ascontiguousarray(v) for k, v in extra.items()},
            str(out_dir / "extra_heads.safetensors"),
        )
    report = {
        "architecture": architecture,
        "converted": len(converted),
        "skipped_optimizer": len(optimizer),
        "extra_heads": dropped,
        "extra_variables": sorted(extra),
        "extra_heads_kept": keep_extra_heads and bool(extra),
    }
    (out_dir / "conversion.json").write_text(json.dumps(report, indent=2))
    return report
