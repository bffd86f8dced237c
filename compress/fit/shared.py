"""A search shared by machines: the study in a database every machine reaches (any SQLAlchemy
URL Optuna's RDBStorage accepts, PostgreSQL for a team), and an artifact folder they all mount.

- The driver (``lert-compress run``) publishes the plan: the fitting candidates and their
  probes in the study's attributes, and the step's input, the reference's dev counts and the
  int8 probes (a partly reverted int8 model is timed beside its probe) in one bundle through
  Optuna's artifact API (a filesystem store on the shared folder, or an S3-compatible bucket).
- A worker (``lert-compress fit-worker``) fetches the bundle into its own folder, trains the
  candidates the study hands it, and uploads each trained candidate (its runtime folder and its
  PyTorch model) with its trial, so the driver ships the winner without training it again.
- Each running trial records heartbeats; one silent for three intervals (its worker died) is
  failed by the next worker that asks, and Optuna's RetryHeartbeatStaleTrialCallback queues it
  again for whoever is left.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from compress.database import artifacts_problem, engine_kwargs, s3_bucket, s3_client, shown
from compress.errors import CompressError
from compress.fit.space import Candidate, FitConfig, Plan
from compress.fit.training import trained_dir

log = logging.getLogger(__name__)

BUNDLE_DONE = ".plan-{}.done"


def open_storage(cfg: FitConfig, attempts: int = 5):
    """The study's database with heartbeats on, failing and re-queuing stale trials. Machines
    that open a new database at the same moment race to create Optuna's tables (one gets an
    integrity error, or finds a table there): the loser tries again, once the tables are there."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    assert cfg.storage is not None
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats: experimental in Optuna since 2.9
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    cfg.storage,
                    engine_kwargs=engine_kwargs(cfg.storage),
                    heartbeat_interval=cfg.heartbeat,
                    grace_period=3 * cfg.heartbeat,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
                )
        except Exception as exc:  # noqa: BLE001  (SQLAlchemy's and the driver's errors alike)
            racing = ("IntegrityError", "already exists", "database is locked")
            if attempt + 1 < attempts and any(r in f"{type(exc).__name__} {exc}" for r in racing):
                time.sleep(1 + attempt)
                continue
            line = str(exc).strip().splitlines()
            raise CompressError(
                f"fit storage {shown(cfg.storage)}: {line[0] if line else exc}"
            ) from exc
    raise AssertionError("not reached")


def fail_stale(study) -> None:
    """Trials whose worker stopped beating: failed, and queued again (Optuna's own check)."""
    import warnings

    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def artifact_store(cfg: FitConfig):
    """The store the driver and the workers pass files through: a folder they all mount, or
    an S3-compatible bucket (Optuna's FileSystemArtifactStore or Boto3ArtifactStore)."""
    from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore

    assert cfg.artifacts is not None
    problem = artifacts_problem(cfg.artifacts)
    if problem:
        raise CompressError(f"fit {problem}")
    bucket = s3_bucket(cfg.artifacts)
    if bucket is not None:
        return Boto3ArtifactStore(bucket, client=s3_client())
    return FileSystemArtifactStore(cfg.artifacts)


def worker_name() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def heartbeats(storage, trial, interval: int):
    """Heartbeats for ``trial`` while the block runs. Optuna records them itself only inside
    study.optimize; this search asks and tells, so it records them with the storage's own
    record_heartbeat, as optimize does."""
    stop = threading.Event()

    def beat():
        while True:
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception as exc:  # noqa: BLE001  (a blip: the next beat tries again)
                log.warning("fit: heartbeat for trial %d failed: %s", trial.number, exc)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial.number}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _upload(study_or_trial, store, work: Path, folders: dict[str, Path], name: str) -> str:
    """``folders`` (name inside the bundle -> path) as one tar in the store; its artifact id."""
    from optuna.artifacts import upload_artifact

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / f"{name}.tar"
        with tarfile.open(bundle, "w") as tar:
            for arcname, path in sorted(folders.items()):
                tar.add(path, arcname=arcname)
        return upload_artifact(
            artifact_store=store, file_path=str(bundle), study_or_trial=study_or_trial
        )


def _fetch(store, artifact_id: str, into: Path) -> None:
    from optuna.artifacts import download_artifact

    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle.tar"
        download_artifact(artifact_store=store, file_path=str(bundle), artifact_id=artifact_id)
        with tarfile.open(bundle) as tar:
            tar.extractall(into, filter="data")


def publish_plan(plan: Plan, study, store) -> None:
    """The plan in the study, and what a worker needs from this machine in the store (once)."""
    if "plan" in study.user_attrs:
        return
    folders = {
        "input": plan.src,
        "reference_dev_counts.npy": plan.work / "reference_dev_counts.npy",
    }
    for c in plan.fitting:
        if c.runtime != "onnx-fp32" and plan.cfg.revert:  # timed beside a reverted model
            probe_folder = Path(plan.probes[c.key]["path"]).parent
            folders[str(probe_folder)] = plan.work / probe_folder
    bundle = _upload(study, store, plan.work, folders, "plan")
    study.set_user_attr(
        "plan",
        {"fitting": [c.key for c in plan.fitting], "probes": plan.probes, "bundle": bundle},
    )
    log.info("fit: the plan is in the study %s; workers may join", plan.study_name)


def join_plan(cfg: FitConfig, ctx, study, store) -> Plan:
    """A worker's plan: the driver's candidates and probes, its input and reference counts
    fetched into this worker's own folder (once per plan)."""
    info = study.user_attrs["plan"]
    work = ctx.step_dir / "work"
    done = work / BUNDLE_DONE.format(info["bundle"])
    if not done.exists():
        _fetch(store, info["bundle"], work)
        done.touch()
    by_key = {
        c.key: c for c in (Candidate(s, r) for s in cfg.space.shapes() for r in cfg.space.runtimes)
    }
    fitting = [by_key[k] for k in info["fitting"]]
    return Plan(cfg, work / "input", ctx, fitting, info["probes"])


def upload_trial(plan: Plan, trial, candidate: Candidate, result: dict, store) -> str:
    """A trained candidate (its runtime folder and its PyTorch model) with its trial."""
    folders = {}
    for rel in (Path(result["path"]).parent, trained_dir(Path(), candidate.shape)):
        folders[str(rel)] = plan.work / rel
    return _upload(trial, store, plan.work, folders, candidate.key)


def fetch_trial(plan: Plan, artifact_id: str) -> None:
    """A candidate another machine trained, into this one's work folder."""
    _fetch(artifact_store(plan.cfg), artifact_id, plan.work)
