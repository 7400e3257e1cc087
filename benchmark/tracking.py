"""MLflow mirror of the pipeline: one experiment per suite, one run per (model, stage).

The files DVC tracks are the record; MLflow is for browsing and comparing runs.  The default
store is the SQLite file mlflow.db at the repository root, resolved to an absolute path so that
`dvc exp run --temp/--queue` (which run in .dvc/tmp/exps/…) write to the same store;
MLFLOW_TRACKING_URI or params.yaml `tracking.uri` point it at a team server instead.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
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
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return client, experiment.experiment_id
    artifacts_at = None if uri.startswith(("http://", "https://")) else (repo_root() / "mlartifacts").as_uri()
    return client, client.create_experiment(name, artifact_location=artifacts_at)


def log_run(params: Mapping, *, model: str, stage: str, run_params: Mapping[str, Any],
            metrics: Mapping[str, float] | None = None,
            layer_metrics: Mapping[str, Sequence[float]] | None = None,
            artifacts: Sequence[str | Path] = (), tags: Mapping[str, str] | None = None) -> str:
    """Record one (model, stage) run; per-layer series are logged with step = layer index."""
    from mlflow.entities import Metric, Param, RunTag

    client, experiment_id = _experiment(tracking_uri(params), experiment_name(params))
    all_tags = {"nfbench.model": model, "nfbench.stage": stage, "nfbench.suite": str(params["suite"]),
                "mlflow.source.git.commit": git_commit(),
                "dvc.stage": os.environ.get("DVC_STAGE", ""), "dvc.exp": os.environ.get("DVC_EXP_NAME", ""),
                **(tags or {})}
    run = client.create_run(experiment_id, run_name=f"{model}:{stage}")
    run_id = run.info.run_id
    try:
        import time

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v == v]
        for key, series in (layer_metrics or {}).items():
            batch += [Metric(key, float(v), now, step) for step, v in enumerate(series) if v == v]
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in run_params.items()],
                         tags=[RunTag(k, v) for k, v in all_tags.items()])
        for start in range(0, len(batch), 1000):
            client.log_batch(run_id, metrics=batch[start:start + 1000])
        for path in artifacts:
            if Path(path).exists():
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    return run_id


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
