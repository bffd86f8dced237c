"""LERT's TensorFlow release -> HF: every tensor equals the TF variable it came from.

The fixture checkpoint is written by TensorFlow with the variable names LERT's own pre-training
code creates (ymcui/LERT, src/run_pretraining.py, ``get_masked_lm_output``): Google BERT's
``bert/...`` and ``cls/predictions/{transform,output_bias}`` variables, no next-sentence head
(LERT dropped NSP), and three linguistic heads made by ``tf.layers.dense`` inside the
``cls/predictions`` scope: ``output_pos_layer`` (28 classes), ``output_ner_layer`` (13) and
``output_dep_layer`` (14), each a ``kernel`` [hidden, classes] and a ``bias``. A second fixture
keeps Google BERT's NSP head (``cls/seq_relationship``), as Chinese-BERT-wwm releases have.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

# TensorFlow is the tf extra, installed for make test-slow only (a minute of install and of
# import time that make test's ten minutes cannot spare)
pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow", reason="the tf extra is not installed")

HIDDEN, LAYERS, HEADS, FFN, VOCAB = 32, 2, 2, 64, 50


def bert_variables(rng) -> dict[str, np.ndarray]:
    """Google BERT variable names and shapes (TF layout: kernels are [in, out])."""

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    v = {
        "bert/embeddings/word_embeddings": r(VOCAB, HIDDEN),
        "bert/embeddings/position_embeddings": r(64, HIDDEN),
        "bert/embeddings/token_type_embeddings": r(2, HIDDEN),
        "bert/embeddings/LayerNorm/gamma": r(HIDDEN),
        "bert/embeddings/LayerNorm/beta": r(HIDDEN),
        "bert/pooler/dense/kernel": r(HIDDEN, HIDDEN),
        "bert/pooler/dense/bias": r(HIDDEN),
        "cls/predictions/transform/dense/kernel": r(HIDDEN, HIDDEN),
        "cls/predictions/transform/dense/bias": r(HIDDEN),
        "cls/predictions/transform/LayerNorm/gamma": r(HIDDEN),
        "cls/predictions/transform/LayerNorm/beta": r(HIDDEN),
        "cls/predictions/output_bias": r(VOCAB),
    }
    for i in range(LAYERS):
        p = f"bert/encoder/layer_{i}"
        for name in (
            "attention/self/query",
            "attention/self/key",
            "attention/self/value",
            "attention/output/dense",
        ):
            v[f"{p}/{name}/kernel"], v[f"{p}/{name}/bias"] = r(HIDDEN, HIDDEN), r(HIDDEN)
        v[f"{p}/intermediate/dense/kernel"], v[f"{p}/intermediate/dense/bias"] = (
            r(HIDDEN, FFN),
            r(FFN),
        )
        v[f"{p}/output/dense/kernel"], v[f"{p}/output/dense/bias"] = r(FFN, HIDDEN), r(HIDDEN)
        for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
            v[f"{p}/{ln}/gamma"], v[f"{p}/{ln}/beta"] = r(HIDDEN), r(HIDDEN)
    return v


NSP = {"cls/seq_relationship/output_weights": (2, HIDDEN), "cls/seq_relationship/output_bias": (2,)}
LINGUISTIC = {  # LERT's heads: POS 28, NER 13, dependency relations 14
    f"cls/predictions/output_{head}_layer/{leaf}": shape
    for head, n in (("pos", 28), ("ner", 13), ("dep", 14))
    for leaf, shape in (("kernel", (HIDDEN, n)), ("bias", (n,)))
}
# the HF key each TF variable must land in, and whether it is transposed
EXPECTED = {
    "bert/embeddings/word_embeddings": ("bert.embeddings.word_embeddings.weight", False),
    "bert/embeddings/LayerNorm/gamma": ("bert.embeddings.LayerNorm.weight", False),
    "bert/encoder/layer_1/attention/self/key/kernel": (
        "bert.encoder.layer.1.attention.self.key.weight",
        True,
    ),
    "bert/encoder/layer_0/intermediate/dense/kernel": (
        "bert.encoder.layer.0.intermediate.dense.weight",
        True,
    ),
    "bert/encoder/layer_0/output/LayerNorm/beta": (
        "bert.encoder.layer.0.output.LayerNorm.bias",
        False,
    ),
    "cls/predictions/output_bias": ("cls.predictions.bias", False),
    "cls/seq_relationship/output_weights": ("cls.seq_relationship.weight", False),
}


def write_release(root, heads: dict) -> dict:
    """A release written by TensorFlow: checkpoint (with Adam slots), config, vocab."""
    rng = np.random.default_rng(0)
    variables = bert_variables(rng)
    variables.update({k: rng.standard_normal(s).astype(np.float32) for k, s in heads.items()})
    variables["bert/embeddings/word_embeddings/adam_m"] = np.zeros((VOCAB, HIDDEN), np.float32)
    with tf.Graph().as_default():
        for name, value in variables.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
        tf.compat.v1.get_variable("global_step", initializer=tf.constant(7, tf.int64))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(root / "lert_model.ckpt"))
    (root / "lert_config.json").write_text(
        json.dumps(
            {
                "hidden_size": HIDDEN,
                "num_hidden_layers": LAYERS,
                "num_attention_heads": HEADS,
                "intermediate_size": FFN,
                "vocab_size": VOCAB,
                "max_position_embeddings": 64,
                "type_vocab_size": 2,
                "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1,
                "attention_probs_dropout_prob": 0.1,
                "initializer_range": 0.02,
            }
        )
    )
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(0x4E00 + i) for i in range(45)]
    (root / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return variables


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """LERT's layout: no NSP head, three linguistic heads."""
    root = tmp_path_factory.mktemp("lert_tf")
    return root, write_release(root, LINGUISTIC)


@pytest.fixture(scope="module")
def bert_release(tmp_path_factory):
    """Google BERT's layout (Chinese-BERT-wwm): an NSP head, nothing else."""
    root = tmp_path_factory.mktemp("bert_tf")
    return root, write_release(root, NSP)


def test_every_tensor_equals_its_tf_variable(release, tmp_path):
    from safetensors.torch import load_file

    from compress.convert_tf import convert, hf_name

    root, variables = release
    report = convert(root, tmp_path / "hf")
    state = load_file(str(tmp_path / "hf/model.safetensors"))
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    bert = {k: v for k, v in variables.items() if k not in LINGUISTIC and "adam" not in k}
    assert report["converted"] == len(bert) and report["architecture"] == "BertForMaskedLM"
    assert not any(k.startswith("cls.seq_relationship") for k in state)  # LERT has no NSP
    for tf_key, (hf_key, transpose) in EXPECTED.items():
        assert hf_name(tf_key) == (hf_key, transpose)
    for tf_key, value in bert.items():
        hf_key, transpose = hf_name(tf_key)
        np.testing.assert_array_equal(state[hf_key].numpy(), value.T if transpose else value)
    np.testing.assert_array_equal(
        state["cls.predictions.decoder.weight"].numpy(),
        variables["bert/embeddings/word_embeddings"],
    )
    assert report["extra_heads"] == [
        "cls/predictions/output_dep_layer (dependency relations, 14 LTP labels)",
        "cls/predictions/output_ner_layer (named entities, 13 LTP tags)",
        "cls/predictions/output_pos_layer (part of speech, 28 LTP tags)",
    ]
    assert report["extra_variables"] == sorted(LINGUISTIC) and report["skipped_optimizer"] == 2
    assert not (tmp_path / "hf/extra_heads.safetensors").exists()
    # the converted directory fine-tunes like the hub's: pooler included, no missing weights
    from transformers import BertForSequenceClassification

    model, info = BertForSequenceClassification.from_pretrained(
        tmp_path / "hf", num_labels=2, output_loading_info=True
    )
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    np.testing.assert_array_equal(
        model.bert.pooler.dense.weight.detach().numpy(),
        variables["bert/pooler/dense/kernel"].T,
    )


def test_a_checkpoint_with_nsp_keeps_it(bert_release, tmp_path):
    from transformers import BertForPreTraining

    from compress.convert_tf import convert

    root, variables = bert_release
    report = convert(root, tmp_path / "hf")
    assert report["architecture"] == "BertForPreTraining" and report["extra_heads"] == []
    model = BertForPreTraining.from_pretrained(tmp_path / "hf")
    np.testing.assert_array_equal(
        model.cls.seq_relationship.weight.detach().numpy(),
        variables["cls/seq_relationship/output_weights"],
    )


def test_extra_heads_kept_when_asked_and_cli(release, tmp_path):
    from safetensors.numpy import load_file

    root, variables = release
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "compress",
            "convert-tf",
            str(root),
            str(tmp_path / "hf"),
            "--keep-extra-heads",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "(BertForMaskedLM); skipped 2 optimizer variables" in proc.stdout
    assert "kept in extra_heads.safetensors: cls/predictions/output_dep_layer" in proc.stdout
    kept = load_file(str(tmp_path / "hf/extra_heads.safetensors"))
    assert sorted(kept) == sorted(LINGUISTIC)
    name = "cls/predictions/output_pos_layer/kernel"
    np.testing.assert_array_equal(kept[name], variables[name])
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "hf").tokenize("一丁") == ["一", "丁"]
