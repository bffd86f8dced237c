"""Data-parallel runs with torchrun on CPU (gloo): sharded data, averaged gradients, one writer."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from compress import dist
from tests.conftest import kd_recipe


def test_shards_are_disjoint_and_even(monkeypatch):
    items = list(range(11))
    shares = []
    for r in range(3):
        monkeypatch.setattr(dist, "world_size", lambda: 3)
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        shares.append(dist.shard(items))
    assert [len(s) for s in shares] == [3, 3, 3]  # 11 = 3 x 3 + 2 left out this epoch
    flat = [i for s in shares for i in s]
    assert len(set(flat)) == len(flat) and set(flat) <= set(items)


def _write_recipe(tmp_path, cls_files, **student) -> str:
    raw = kd_recipe(cls_files, **student)
    raw["task"] = {k: str(v) if hasattr(v, "exists") else v for k, v in raw["task"].items()}
    raw["evaluate"]["latency"] = False
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return str(path)


def _run(recipe: str, out, nproc: int, *overrides: str, **popen):
    command = [sys.executable, "-m", "compress", "run", recipe, "--out", str(out), *overrides]
    if nproc > 1:
        command.append(f"--nproc={nproc}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(command, env=env, **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _process(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _steps(root):
    return json.loads((root / "manifest.json").read_text())["steps"]


@pytest.mark.slow
def test_two_processes_train_on_shards_and_write_once(tmp_path, cls_files):
    recipe = _write_recipe(tmp_path, cls_files)
    two = _run(recipe, tmp_path / "two", 2)
    assert two.returncode == 0, [x for x in two.stderr.splitlines() if "error" in x.lower()][:5]
    assert two.stdout.count("done:") == 1  # the first process reports
    root = tmp_path / "two" / "tiny"
    steps = _steps(root)
    for name in ("teacher", "student", "no-kd"):
        entry = steps[name]
        assert (entry["processes"], entry["backend"]) == (2, "gloo")
        train = entry["details"].get("train", entry["details"])
        checksums = train["processes"]["weight_checksums"]
        assert len(checksums) == 2 and checksums[0] == checksums[1]  # same weights everywhere
    # 160 rows in batches of 16: 10 batches an epoch, 5 for each process
    assert steps["teacher"]["details"]["train"]["steps"] == 2 * 5
    assert steps["student"]["details"]["steps"] == steps["no-kd"]["details"]["train"]["steps"]
    assert not [p for p in root.iterdir() if ".rank" in p.name or p.name.endswith(".partial")]
    assert "Trained data-parallel on 2 processes (gloo" in (root / "report.md").read_text()

    # one process with the same global batch (2 x 16) gets within a stated tolerance
    one = _run(recipe, tmp_path / "one", 1, *(f"steps.{s}.batch_size=32" for s in (0, 1)))
    assert one.returncode == 0, one.stderr[-3000:]
    rows = {
        n: {
            r["variant"]: r["score"]
            for r in json.loads((d / "tiny" / "report.json").read_text())["rows"]
        }
        for n, d in (("one", tmp_path / "one"), ("two", tmp_path / "two"))
    }
    assert _steps(tmp_path / "one" / "tiny")["teacher"]["details"]["train"]["steps"] == 2 * 5
    for variant in ("teacher", "student"):
        assert abs(rows["one"][variant] - rows["two"][variant]) <= 0.15, (variant, rows)


@pytest.mark.slow
def test_a_killed_two_process_run_resumes(tmp_path, cls_files):
    recipe = _write_recipe(tmp_path, cls_files, epochs=40)  # a student that takes a while
    out = tmp_path / "art"
    proc = _run(
        recipe, out, 2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    manifest = out / "tiny" / "manifest.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        steps = json.loads(manifest.read_text())["steps"] if manifest.exists() else {}
        if steps.get("teacher", {}).get("status") == "done" and "student" in steps:
            break
        time.sleep(0.2)
    # a power cut, mid-student: torchrun and its workers (which it starts in sessions of their
    # own) all killed at once
    tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    psutil.wait_procs([p for p in map(_process, tree) if p is not None], timeout=30)
    assert _steps(out / "tiny")["student"]["status"] == "running"
    again = _run(recipe, out, 2)
    assert again.returncode == 0, [x for x in again.stderr.splitlines() if "error" in x.lower()]
    assert "step 1 teacher: unchanged, skipped" in again.stderr
    assert all(e["status"] == "done" for e in _steps(out / "tiny").values())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes(recipe: str, outs: list, *overrides: str) -> list[subprocess.CompletedProcess]:
    """Two "machines" on this one: the same command twice, each with its --node-rank, meeting at
    one c10d rendezvous on localhost."""
    endpoint = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "compress", "run", recipe, "--out", str(out), *overrides]
            + ["--nnodes", "2", "--node-rank", str(i), "--rdzv-endpoint", endpoint],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, out in enumerate(outs)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


@pytest.mark.slow
def test_two_nodes_of_one_process_train_as_one_group(tmp_path, cls_files):
    """torchrun's c10d rendezvous across two "nodes" (gloo, localhost) with a shared --out: the
    distill step trains on both, and the manifest says 2 processes on 2 nodes."""
    recipe = _write_recipe(tmp_path, cls_files)
    runs = _nodes(recipe, [tmp_path / "art"] * 2)
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    steps = _steps(tmp_path / "art" / "tiny")
    for name in ("teacher", "student", "no-kd"):
        assert (steps[name]["processes"], steps[name]["nodes"]) == (2, 2), name
    checksums = steps["student"]["details"]["processes"]["weight_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    report = (tmp_path / "art" / "tiny" / "report.md").read_text(encoding="utf-8")
    assert "Trained data-parallel on 2 processes on 2 machines (gloo" in report


def test_nodes_that_do_not_share_out_are_refused_before_any_step(tmp_path, cls_files):
    recipe = _write_recipe(tmp_path, cls_files)
    runs = _nodes(recipe, [tmp_path / "node0", tmp_path / "node1"])
    assert all(r.returncode != 0 for r in runs)
    said = "".join(r.stderr for r in runs)
    assert "cannot see what node 0 writes there" in said and "shared folder" in said
    assert not list(tmp_path.glob("node*/tiny/manifest.json"))  # no step started
