import pytest
from pydantic import ValidationError

from compress.errors import ModelSourceError
from compress.models import (
    NAMED_SHAPES,
    ModelSource,
    bert_config,
    build_char_vocab,
    char_tokenizer,
    load_pretrained,
)


def test_named_lert_shapes_are_exact():
    small, base, large = (NAMED_SHAPES[n] for n in ("lert-small", "lert-base", "lert-large"))
    assert (small.layers, small.hidden, small.heads, small.ffn) == (12, 256, 4, 1024)
    assert (base.layers, base.hidden, base.heads, base.ffn) == (12, 768, 12, 3072)
    assert (large.layers, large.hidden, large.heads, large.ffn) == (24, 1024, 16, 4096)
    assert {s.vocab_size for s in (small, base, large)} == {21128}


def test_lert_small_parameter_count_is_about_15m():
    from transformers import BertModel

    model = BertModel(bert_config(NAMED_SHAPES["lert-small"], 21128, ["a", "b"]))
    assert 14e6 < sum(p.numel() for p in model.parameters()) < 16e6


def test_model_source_forms():
    assert ModelSource.model_validate("hfl/chinese-lert-small").source == "hfl/chinese-lert-small"
    assert ModelSource.model_validate({"shape": "lert-base"}).spec().hidden == 768
    with pytest.raises(ValidationError, match="exactly one"):
        ModelSource.model_validate({"source": "x", "shape": "lert-base"})
    with pytest.raises(ValidationError, match="unknown shape 'lert-tiny'"):
        ModelSource.model_validate({"shape": "lert-tiny"})
    with pytest.raises(ValidationError, match="not divisible by heads"):
        ModelSource.model_validate({"shape": {"layers": 1, "hidden": 30, "heads": 4, "ffn": 8}})


def test_char_vocab_min_count_and_roundtrip(tmp_path):
    texts = ["好好学习", "天天向上", "好的 OK", "罕"]
    path = build_char_vocab(texts, min_count=2, out_dir=tmp_path)
    tokens = path.read_text(encoding="utf-8").split("\n")
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "好" in tokens and "天" in tokens and "罕" not in tokens and "学" not in tokens
    tok = char_tokenizer(texts, 1, tmp_path / "t")
    ids = tok("好好学习 ok")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "好", "好", "学", "习", "o", "##k", "[SEP]"]
    assert tok.convert_ids_to_tokens(tok("罕见")["input_ids"])[2] == "[UNK]"


def test_offline_hub_error_is_clear():
    src = ModelSource.model_validate("hfl/chinese-lert-large")
    with pytest.raises(ModelSourceError) as err:
        load_pretrained(src, "classification", ["a", "b"])
    message = str(err.value)
    assert "hfl/chinese-lert-large" in message and "HF_ENDPOINT" in message
    assert "point the recipe at the directory" in message


def test_missing_local_directory_error(tmp_path):
    src = ModelSource.model_validate(str(tmp_path / "nowhere"))
    with pytest.raises(ModelSourceError, match="local directory"):
        load_pretrained(src, "classification", ["a", "b"])


def test_convert_tf_without_tensorflow_names_the_extra(monkeypatch, tmp_path):
    import builtins

    from compress.convert_tf import ConversionError, read_checkpoint

    real_import = builtins.__import__

    def no_tf(name, *args, **kwargs):
        if name == "tensorflow":
            raise ImportError("No module named 'tensorflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tf)
    with pytest.raises(ConversionError, match=r"install the tf extra"):
        read_checkpoint(tmp_path / "lert_model.ckpt")
