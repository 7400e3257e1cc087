"""MLflow mirror of the pipeline: one experiment per suite, one run per (model, stage).

The files DVC tracks are the record; MLflow is for browsing and comparing runs.  Each run spans
its stage's work on the model (FAILED, with the error as the tag `nfbench.error`, when the work
fails); frames runs log the evaluation points as their dataset input, evaluate runs the suite's
dataset; the experiment is tagged as a model-training one (MLflow 3.17's UI still opens in its
GenAI view: the README gives the runs table's URL).  The default
store is the SQLite file mlflow.db at the repository root, resolved to an absolute path so that
`dvc exp run --temp/--queue` (which run in .dvc/tmp/exps/…) write to the same store;
MLFLOW_TRACKING_URI or params.yaml `tracking.uri` point it at a team server instead.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NFBenchError


def repo_root() -> Path:
    """The main checkout, also from inside a DVC experiment's temporary workspace."""
    root = Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()
    if ".dvc" in root.parts:
        root = Path(*root.parts[:root.parts.index(".dvc")])
    return root


def tracking_uri(params: Mapping) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (params.get("tracking") or {}).get("uri")
    return uri or f"sqlite:///{repo_root() / 'mlflow.db'}"


def experiment_name(params: Mapping) -> str:
    return (params.get("tracking") or {}).get("experiment") or f"nfbench-{params['suite']}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, before any heavy work, when a remote tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status >= 400:
                raise OSError(f"HTTP {response.status}")
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NFBenchError(f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix "
                           f"MLFLOW_TRACKING_URI / params.yaml tracking.uri, or unset both to use "
                           f"the local mlflow.db") from exc


def git_commit() -> str:
    return _commit_of(repo_root())


@functools.cache
def _commit_of(root: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True, cwd=root).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def _experiment(uri: str, name: str):
    """(client, experiment id), made once per process: a stage logging one run per model would
    otherwise open the store (seconds for SQLite) and look the experiment up for every run."""
    import logging

    import mlflow

    for logger in ("mlflow.store.db.utils", "alembic"):   # "Creating initial MLflow database tables...":
        logging.getLogger(logger).setLevel(logging.WARNING)  # noise on stderr, where errors are one line
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        artifacts_at = None if uri.startswith(("http://", "https://")) else (repo_root() / "mlartifacts").as_uri()
        experiment_id = client.create_experiment(name, artifact_location=artifacts_at, tags=EXPERIMENT_TAGS)
    else:
        experiment_id = experiment.experiment_id
        for key, value in EXPERIMENT_TAGS.items():    # made before nfbench tagged its experiments
            if experiment.tags.get(key) != value:
                client.set_experiment_tag(experiment_id, key, value)
    return client, experiment_id


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}   # MLflow 3's experiment kind


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Record:
    """What a run logs: params, scalar metrics, per-layer series (step = layer index), files,
    tags, and the data it measured on (`dataset`: name, digest, source, profile; its dataset input)."""

    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    layer_metrics: dict[str, Sequence[float]] = field(default_factory=dict)
    artifacts: list[str | Path] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, str] | None = None


@contextmanager
def stage_run(params: Mapping, *, model: str, stage: str, enabled: bool = True) -> Iterator[Record]:
    """A run spanning the body's work on `model`: the body fills the Record; the run is logged
    when the body ends, FAILED with the one-line error when it raises (`enabled` False: nothing)."""
    record, start = Record(), now_ms()
    try:
        yield record
    except BaseException as exc:
        if enabled:
            log_failure(params, model=model, stage=stage, start=start, error=exc, run_params=record.params)
        raise
    if enabled:
        log_run(params, model=model, stage=stage, record=record, start=start)


def log_failure(params: Mapping, *, model: str, stage: str, start: int, error: BaseException,
                run_params: Mapping[str, Any] | None = None) -> None:
    """A FAILED run from `start` to now, its error's first line as the tag `nfbench.error`; a store
    that cannot be written to is passed over, so that the stage's own error is the one shown."""
    message = (str(error).strip().splitlines() or [type(error).__name__])[0][:500]
    try:
        log_run(params, model=model, stage=stage, start=start, status="FAILED",
                record=Record(params=dict(run_params or {}), tags={"nfbench.error": message}))
    except Exception:
        pass


def log_run(params: Mapping, *, model: str, stage: str, record: Record, start: int,
            status: str = "FINISHED") -> str:
    """Record one (model, stage) run that began at `start` (ms) and ends now."""
    from mlflow.entities import Dataset, DatasetInput, Metric, Param, RunTag

    client, experiment_id = _experiment(tracking_uri(params), experiment_name(params))
    all_tags = {"nfbench.model": model, "nfbench.stage": stage, "nfbench.suite": str(params["suite"]),
                "mlflow.source.git.commit": git_commit(), "mlflow.source.name": f"nfbench {stage}",
                "mlflow.source.type": "LOCAL",
                "dvc.stage": os.environ.get("DVC_STAGE", ""), "dvc.exp": os.environ.get("DVC_EXP_NAME", ""),
                **record.tags}
    run_id = client.create_run(experiment_id, start_time=start, run_name=f"{model}:{stage}").info.run_id
    try:
        now = now_ms()
        batch = [Metric(k, float(v), now, 0) for k, v in record.metrics.items() if v == v]
        for key, series in record.layer_metrics.items():
            batch += [Metric(key, float(v), now, step) for step, v in enumerate(series) if v == v]
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in record.params.items()],
                         tags=[RunTag(k, v) for k, v in all_tags.items()])
        for first in range(0, len(batch), 1000):
            client.log_batch(run_id, metrics=batch[first:first + 1000])
        if record.dataset is not None:
            client.log_inputs(run_id, [DatasetInput(Dataset(source_type="local", **record.dataset))])
        for path in record.artifacts:
            if Path(path).exists():
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status=status)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    return run_id


def dataset(name: str, digest: str, source: Mapping[str, Any], **profile) -> dict[str, str]:
    """A run's dataset input: what the MLflow UI's Dataset column shows (digest: 16 hex digits)."""
    return {"name": name, "digest": digest[:16], "source": json.dumps(dict(source), sort_keys=True),
            "profile": json.dumps(profile, sort_keys=True)}


def points_dataset(path: Path) -> dict[str, str]:
    """The evaluation points file, named by the suite's dataset and its size, digest its sha256."""
    from safetensors import safe_open

    from .storage import sha256_file

    with safe_open(str(path), "np") as f:
        meta = json.loads((f.metadata() or {}).get("nfbench", "{}"))
        points = f.get_slice("ids").get_shape()[0]
    return dataset(f"{meta.get('dataset', 'evaluation')} {points} evaluation points", sha256_file(path),
                   {"uri": str(Path(path).resolve())}, points=points,
                   **{k: meta[k] for k in ("dataset", "seed") if k in meta})


def attach_artifacts(params: Mapping, *, stage: str, tag: tuple[str, str], paths: Sequence[str | Path],
                     root: Path) -> bool:
    """Add files to the latest run of `stage` that carries `tag` (key, value), each in the artifact
    folder of its place under `root`; False if there is no such run."""
    client, experiment_id = _experiment(tracking_uri(params), experiment_name(params))
    key, value = tag
    runs = client.search_runs([experiment_id], f"tags.`nfbench.stage` = '{stage}' and tags.`{key}` = '{value}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return False
    for path in map(Path, paths):
        folder = path.parent.relative_to(root).as_posix()
        client.log_artifact(runs[0].info.run_id, str(path), None if folder == "." else folder)
    return True


def numbers(tree: Mapping, prefix: str = "") -> dict[str, float]:
    """Flatten the numeric leaves of a nested dict (`training.seconds`, `clean_acc`, …)."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}".replace("@", "_at_")
        if isinstance(value, Mapping):
            out.update(numbers(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
