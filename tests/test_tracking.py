"""MLflow mirroring: where the store is, and failing fast when a tracking server is unreachable."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.errors import NFBenchError
from benchmark.tracking import check_reachable, repo_root, tracking_uri

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]             # nothing listens on it once the socket closes


def test_default_store_is_the_sqlite_file_at_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri({"suite": "embedded"}) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_experiment_workspaces_write_to_the_main_checkouts_store(tmp_path, monkeypatch):
    """`dvc exp run --temp/--queue` run in .dvc/tmp/exps/…; their runs belong in the main store."""
    workspace = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    workspace.mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(workspace))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert repo_root() == tmp_path.resolve()
    assert tracking_uri({"suite": "embedded"}) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_environment_and_params_override_the_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri({"tracking": {"uri": "sqlite:////x.db"}}) == "http://mlflow.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri({"tracking": {"uri": "sqlite:////x.db"}}) == "sqlite:////x.db"


def test_unreachable_server_is_one_line_error():
    with pytest.raises(NFBenchError, match=r"MLflow tracking server http://127\.0\.0\.1:\d+ is unreachable"):
        check_reachable(f"http://127.0.0.1:{closed_port()}")


def test_fetch_fails_before_training_when_the_server_is_unreachable(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port()}"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "benchmark.cli", "fetch", "std-s0"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and time.monotonic() - start < 30
    assert run.stderr.count("\n") == 1 and "is unreachable" in run.stderr
    assert "train" not in run.stderr                      # no training progress was printed
