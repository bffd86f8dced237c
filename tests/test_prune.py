import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compress.data import collate, encode
from compress.errors import RecipeError
from compress.models import ShapeSpec, char_tokenizer, init_from_shape, save_model
from compress.pruning import prune_transformer, prune_vocabulary, select_vocabulary, unk_rate
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from compress.tasks import load_task
from tests.conftest import Rows, tiny_recipe

SHAPE4 = {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64}


def _setup(tmp_path, cls_files):
    task = load_task(parse_recipe(tiny_recipe(cls_files)).task)
    tok = char_tokenizer(task.texts(), 1, tmp_path / "vocab")
    torch.manual_seed(0)
    model = init_from_shape(ShapeSpec(**SHAPE4), tok, task.type, task.labels).eval()
    return task, tok, model


def _logits(model, tok, task, n=8):
    batch = collate(encode(task.splits["test"][:n], tok, task, 32), list(range(n)), False)
    with torch.no_grad():
        return model.eval()(**batch).logits


def _batches(task, tok):
    enc = encode(task.splits["train"][:64], tok, task, 32)
    return [collate(enc, list(range(i, i + 16))) for i in range(0, 64, 16)]


@pytest.mark.parametrize("even", [True, False])
def test_head_ffn_pruning_reloads_with_same_logits(tmp_path, cls_files, even):
    task, tok, model = _setup(tmp_path, cls_files)
    kept = prune_transformer(
        model,
        _batches(task, tok),
        heads=2,
        ffn=32,
        n_iters=2,
        head_even_masking=even,
        use_logits=False,
        work_dir=tmp_path / "w",
    )
    assert sum(kept["heads_per_layer"]) == 4 and kept["ffn_size"] == 32
    if even:
        assert kept["heads_per_layer"] == [2, 2]
    save_model(model, tok, tmp_path / "m")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")
    assert again.config.intermediate_size == 32
    assert again.bert.encoder.layer[0].intermediate.dense.out_features == 32
    assert torch.allclose(_logits(model, tok, task), _logits(again, tok, task), atol=1e-5)


def test_uneven_heads_reload_through_config_pruned_heads(tmp_path, cls_files):
    from textpruner import GeneralConfig, TransformerPruner, TransformerPruningConfig

    task, tok, model = _setup(tmp_path, cls_files)
    pruner = TransformerPruner(
        model,
        TransformerPruningConfig(pruning_method="masks"),
        GeneralConfig(use_device="cpu", output_dir=str(tmp_path / "w")),
    )
    pruner.prune(
        head_mask=torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0]]),
        ffn_mask=torch.ones(2, 64),
        save_model=False,
    )
    assert model.config.pruned_heads == {0: [1, 2, 3], 1: [3]}
    save_model(model, tok, tmp_path / "m")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")
    assert again.bert.encoder.layer[0].attention.self.num_attention_heads == 1
    assert again.bert.encoder.layer[1].attention.self.num_attention_heads == 3
    assert torch.allclose(_logits(model, tok, task), _logits(again, tok, task), atol=1e-5)


def test_vocabulary_pruning_round_trip_and_unk_rate(tmp_path, cls_files):
    task, tok, model = _setup(tmp_path, cls_files)
    before = _logits(model, tok, task)
    texts = task.texts("train")
    model, small, kept = prune_vocabulary(model, tok, texts[: len(texts) // 4], 1, tmp_path / "w")
    assert len(small) == len(kept) < len(tok) and model.config.vocab_size == len(kept)
    assert model.bert.embeddings.word_embeddings.num_embeddings == len(kept)
    sample = texts[0]
    old = tok.convert_ids_to_tokens(tok(sample)["input_ids"])
    assert small.convert_ids_to_tokens(small(sample)["input_ids"]) == old
    save_model(model, small, tmp_path / "m")
    reloaded_tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert reloaded_tok.get_vocab() == small.get_vocab()
    assert unk_rate(tok, ["好棒东西罕"]) == pytest.approx(0.2)  # 1 of 5: 罕 is not in the vocab
    rate = unk_rate(small, task.texts("test"))
    assert 0.0 <= rate < 1.0
    # on texts whose characters survived, the pruned model computes exactly what it did before
    covered = [i for i, ex in enumerate(task.splits["test"][:8]) if unk_rate(small, [ex.text]) == 0]
    after = _logits(model, small, task)
    assert covered and torch.allclose(before[covered], after[covered], atol=1e-6)


def test_select_vocabulary_matches_pruned_ids(tmp_path, cls_files):
    task, tok, model = _setup(tmp_path, cls_files)
    import copy

    teacher = copy.deepcopy(model)
    model, small, kept = prune_vocabulary(model, tok, task.texts("train"), 1, tmp_path / "w")
    select_vocabulary(teacher, kept)
    assert torch.equal(
        teacher.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight
    )


def prune_recipe(files, transformer=None, recover=None, vocabulary=None):
    steps = [
        {
            "name": "teacher",
            "stage": "finetune",
            "model": {"shape": SHAPE4, "min_count": 1},
            "epochs": 8,
            "batch_size": 16,
            "lr": 3e-3,
        },
        {
            "name": "pruned",
            "stage": "prune",
            "vocabulary": vocabulary,
            "transformer": transformer,
            "recover": recover,
        },
    ]
    return tiny_recipe(files, steps=steps)


@pytest.mark.parametrize(
    "transformer,message",
    [
        (
            {"target_num_of_heads": 6},
            "target_num_of_heads 6 is more than the model has 2 layers x 4 heads, FFN 64",
        ),
        ({"target_ffn_size": 64}, "target_ffn_size 64 is not below the current size"),
        ({"target_num_of_heads": 2.5}, "target_num_of_heads: Input should be a valid integer"),
        ({"n_iters": 2}, "give target_num_of_heads, target_ffn_size or both"),
    ],
)
def test_impossible_targets_fail_at_validation(cls_files, transformer, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(")):
        parse_recipe(prune_recipe(cls_files, transformer=transformer))


def test_prune_step_needs_something_to_prune(cls_files):
    with pytest.raises(RecipeError, match="give vocabulary:, transformer: or both"):
        parse_recipe(prune_recipe(cls_files))


@pytest.mark.parametrize("method", ["finetune", "distill"])
def test_prune_stage_end_to_end_with_recovery(tmp_path, cls_files, method):
    raw = prune_recipe(
        cls_files,
        vocabulary={"min_count": 1},
        transformer={
            "target_num_of_heads": 2,
            "target_ffn_size": 32,
            "n_iters": 2,
            "batches": 4,
            "batch_size": 16,
        },
        recover={"method": method, "epochs": 2, "batch_size": 16, "lr": 1e-3},
    )
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    details = json.loads((root / "manifest.json").read_text())["steps"]["pruned"]["details"]
    assert details["transformer"]["heads_per_layer"] == [2, 2]
    before, after = details["before"]["params"], details["after"]["params"]
    assert after["encoder"] <= 0.75 * before["encoder"]
    assert (
        details["vocabulary"]["kept"]
        == details["after"]["vocab_size"]
        <= details["before"]["vocab_size"]
    )
    assert "test_unk_rate_after" in details["vocabulary"]
    assert details["recovery"]["best_dev"] >= 0.5
    rows = Rows(json.loads((root / "report.json").read_text())["rows"])
    assert rows["pruned"]["params"] == details["after"]["params"]["total"]
    assert rows["pruned (before recovery)"]["params"] == rows["pruned"]["params"]
