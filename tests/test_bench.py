"""lert-compress bench: a portable folder that times a fit step's candidates on the target, the
device profile its runner writes, and a fit step that searches with that profile."""

import json
import subprocess
import sys

import pytest

from compress.errors import RecipeError
from compress.manifest import Manifest
from compress.recipe import parse_recipe
from compress.runner import run_recipe
from tests.conftest import sentiment_rows, tiny_recipe, write_csv
from tests.test_fit import fit_recipe

SPACE = {
    "layers": [1, 2],
    "heads": [2],
    "ffn": [64],
    "runtimes": ["onnx-fp32", "ort-dynamic", "openvino-int8"],
}
RUNNER_ONLY = ("onnxruntime", "numpy", "tokenizers")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The tiny teacher trained once, and a bench folder for a fit step reading it."""
    from compress.bench import write_bench

    tmp = tmp_path_factory.mktemp("bench")
    files = {
        s: write_csv(tmp / f"{s}.csv", sentiment_rows(n, i))
        for i, (s, n) in enumerate((("train", 160), ("dev", 40), ("test", 40)), 1)
    }
    run_recipe(parse_recipe(tiny_recipe(files)), tmp / "runs", evaluate=False)
    recipe = parse_recipe(fit_recipe(files, space=SPACE))
    folder = write_bench(recipe, tmp / "runs", tmp / "folder", texts=20)
    return tmp, folder, files


def _profile(folder, out, python=sys.executable) -> dict:
    done = subprocess.run(
        [python, str(folder / "run_bench.py"), "--repeats", "5", "--warmup", "1"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


def test_bench_folder_holds_every_candidate_texts_and_a_runner(bench):
    _, folder, _ = bench
    spec = json.loads((folder / "bench.json").read_text())
    assert len(spec["candidates"]) == 6 and spec["batch_sizes"] == [1]
    for key, c in spec["candidates"].items():
        assert (folder / c["file"]).is_file(), key
    assert len((folder / "texts.txt").read_text().splitlines()) == 20
    assert (folder / "tokenizer.json").is_file() and (folder / "run_bench.py").is_file()
    pins = (folder / "requirements.txt").read_text()
    assert all(f"{p}==" in pins for p in RUNNER_ONLY) and "torch" not in pins


def test_runner_profile_records_the_cpu_threads_and_both_latencies(bench):
    tmp, folder, files = bench
    profile = _profile(folder, tmp / "p1.json")
    assert profile["cpu"]["machine"] and isinstance(profile["cpu"]["isa"], list)
    assert profile["threads"] >= 1 and profile["seq_len"] == 32
    spec = json.loads((folder / "bench.json").read_text())
    assert set(profile["candidates"]) == set(spec["candidates"])
    for timing in profile["candidates"].values():
        b1 = timing["fixed"]["b1"]
        assert 0 < b1["p50"] <= b1["p90"] and b1["iqr"] >= 0 and b1["n"] == 5
        assert timing["end_to_end"]["n"] == 20 and timing["end_to_end"]["p50"] > 0


def test_fit_searches_with_the_device_profile_and_the_report_says_so(bench):
    tmp, folder, files = bench
    profile = _profile(folder, tmp / "p2.json")
    # a target where two-layer candidates are slow: over a 5 ms budget there, whatever they
    # take on this machine, so they are never trained
    slow = [k for k in profile["candidates"] if k.startswith("L2-")]
    for k in slow:
        profile["candidates"][k]["fixed"]["b1"]["p50"] = 50.0
    (tmp / "slow.json").write_text(json.dumps(profile))
    budget = {"device": str(tmp / "slow.json"), "latency_ms": 5, "batch_size": 1}
    root = run_recipe(parse_recipe(fit_recipe(files, space=SPACE, budget=budget)), tmp / "runs")
    details = Manifest(root).steps["fit"].details
    rows = {r["key"]: r for r in details["candidates"]}
    assert all(rows[k]["status"] == "over latency" for k in slow)
    assert details["winner"].startswith("L1-") and details["probe"]["device"]["threads"]
    md = (root / "report.md").read_text()
    assert "measured on the target device" in md and "on the device" in md
    card = (root / Manifest(root).steps["fit"].dir / "model" / "README.md").read_text()
    assert "measured on the target device" in card


def test_a_profile_for_another_instruction_set_is_refused(bench):
    tmp, folder, files = bench
    profile = _profile(folder, tmp / "p3.json")
    profile["cpu"] |= {"machine": "aarch64", "isa": ["asimd", "asimddp"]}  # an ARM board
    (tmp / "arm.json").write_text(json.dumps(profile))
    recipe = parse_recipe(fit_recipe(files, space=SPACE, budget={"device": str(tmp / "arm.json")}))
    with pytest.raises(RecipeError, match="calls for arm64 \\(bench --target arm64\\)"):
        run_recipe(recipe, tmp / "runs")


def test_int8_preset_follows_the_instruction_set_either_way():
    from compress.bench import profile_preset

    def preset(machine, isa):
        return profile_preset({"cpu": {"machine": machine, "isa": isa}})

    assert preset("x86_64", ["avx2", "fma"]) == "avx2"
    assert preset("x86_64", ["avx2", "avx512f", "avx512bw", "avx512_vnni"]) == "avx512_vnni"
    assert preset("x86_64", ["avx2", "avx512f", "avx512bw"]) == "avx512"
    assert preset("aarch64", ["asimd"]) == "arm64"


def test_bench_names_the_fit_step_it_needs(cls_files, tmp_path):
    from compress.bench import write_bench

    plain = parse_recipe(tiny_recipe(cls_files))
    with pytest.raises(RecipeError, match="has no fit step"):
        write_bench(plain, tmp_path / "runs", tmp_path / "out")
    with pytest.raises(RecipeError, match="--step teacher: not a fit step"):
        write_bench(plain, tmp_path / "runs", tmp_path / "out", step_name="teacher")
    fitted = parse_recipe(fit_recipe(cls_files))
    with pytest.raises(Exception, match="`teacher` has not run"):
        write_bench(fitted, tmp_path / "runs", tmp_path / "out")


def test_a_missing_device_profile_is_refused_at_validation(cls_files, tmp_path):
    with pytest.raises(RecipeError, match="budget.device: .* does not exist"):
        parse_recipe(fit_recipe(cls_files, budget={"device": str(tmp_path / "nope.json")}))


@pytest.mark.slow
def test_runner_works_in_a_venv_holding_only_its_packages(bench, tmp_path):
    """The folder's requirements.txt into a fresh virtual environment (no torch, no project):
    the runner still writes a profile."""
    _, folder, _ = bench
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(folder / "requirements.txt")], check=True, timeout=900)
    have = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.lower()
    assert "torch" not in have and "transformers" not in have and "lert" not in have
    profile = _profile(folder, tmp_path / "profile.json", python=str(python))
    # OpenVINO is not among the runner's packages: its candidates are skipped, and say why
    assert len(profile["candidates"]) == 4 and profile["packages"]["onnxruntime"]
    assert len(profile["skipped"]) == 2 and all(
        "openvino" in why for why in profile["skipped"].values()
    )
