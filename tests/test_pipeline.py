"""The whole pipeline on a tiny suite (two standard seeds, one model per other role, a dozen
points), through DVC and MLflow.

One slow test walks the life of a checkout: `dvc repro`, a second `dvc repro` that does nothing,
MLflow runs read back, `dvc exp run -S` on one entry, and a run killed during `frames` that resumes
to byte-identical results.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from benchmark.storage import sha256_file

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = {
    "description": "tiny suite for the pipeline test",
    "data": {"dataset": "mnist5k", "eval_points": 12, "seed": 0},
    "attack": {"eps": 0.2, "steps": 2},
    "leaderboard": {"primary": "augmentation_invariance", "ranked_if": {"above_chance": 0.2}},
    "perturbations": {"augmentation": {"transforms": ["rotate", "translate_x"]},
                      "noise": {"count": 3, "seed": 0}, "generative": {"model": "vae", "count": 2}},
    "generative": {"vae": {"epochs": 1, "latent_dim": 4, "batch_size": 128}},
    "models": {
        "std": {"role": "standard", "source": "local", "recipe": "standard", "epochs": 1, "width": 4, "batch_size": 128,
                "seeds": [0, 1]},
        "aug": {"role": "augmentation", "source": "local", "recipe": "augmentation", "epochs": 1, "width": 4,
                "batch_size": 128},
        "adv": {"role": "adversarial", "source": "local", "recipe": "adversarial", "epochs": 1, "width": 4,
                "batch_size": 128, "steps": 1},
        "noisy": {"role": "noise", "source": "local", "recipe": "noise", "epochs": 1, "width": 4, "batch_size": 128,
                  "frames_method": "fd"},          # a model's own method (as for one without forward AD)
    },
}


def run(cmd, cwd, env=None, **kwargs):
    """`cmd` in `cwd` with the venv on PATH; MLflow's store is the project's unless `env` names one."""
    environ = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    environ.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(cmd, cwd=cwd, env={**environ, **(env or {})}, capture_output=True, text=True, **kwargs)


def ok(cmd, cwd, env=None):
    result = run(cmd, cwd, env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC checkout of the pipeline with the tiny suite selected."""
    root = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, root / name)
    for name in ("benchmark", "tasks", "suites", ".dvc"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    (root / "suites" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\n")
    ok(["nfbench", "suite", "use", "tiny"], root)
    ok(["git", "init", "-q"], root)
    ok(["git", "add", "-A"], root)
    ok(["git", "commit", "-qm", "tiny"], root)
    return root


def stages_run(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


def up_to_date(status: str) -> bool:
    """`dvc status` with nothing to rerun: only the sources stage, which DVC always reruns."""
    return status.split() == ["sources:", "always", "changed"]


@pytest.mark.slow
def test_pipeline_end_to_end(project):
    log = ok(["dvc", "repro"], project)
    assert {"data", "fetch_generative@vae", "fetch@std", "fetch@noisy", "evaluate", "frames", "metrics", "claims",
            "report"} <= stages_run(log)
    for out in ("reports/claims.md", "reports/claims.tex", "reports/layers.md", "reports/figures/sensitivity_noise.png",
                "metrics/summary.json", "metrics/models.json", "metrics/plots/aug.csv", "metrics/plots/std-s1.csv",
                "models/std/std-s0/model.safetensors", "models/std/std-s1/model.safetensors", "dvc.lock"):
        assert (project / out).is_file(), out
    assert "2 models (2 trained)" in log                     # the entry with seeds: both in one stage
    # each model's frames line names the method, the device and the layout (`auto`: channels-last on a CPU)
    assert re.search(r"\[frames \d/5 noisy\] .* layers \(fd, cpu, channels_last\)", log)
    assert re.search(r"\[frames \d/5 std-s0\] .* layers \(jvp, cpu, channels_last\)", log)

    # a second run does nothing, quickly
    start = time.monotonic()
    log = ok(["dvc", "repro"], project)
    assert time.monotonic() - start < 15 and stages_run(log) == {"sources"}
    assert up_to_date(ok(["dvc", "status"], project))

    # MLflow: one run per (model, stage) for every model, per-layer series with step = layer index
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["nfbench-tiny"])
    models = ["adv", "aug", "noisy", "std-s0", "std-s1"]
    frames_runs = runs[runs["tags.nfbench.stage"] == "frames"]
    assert sorted(frames_runs["tags.nfbench.model"]) == models
    methods = dict(zip(frames_runs["tags.nfbench.model"], frames_runs["params.method"]))
    assert methods == {**{m: "jvp" for m in models}, "noisy": "fd"}
    assert sorted(runs[runs["tags.nfbench.stage"] == "fetch"]["tags.nfbench.model"]) == sorted(models + ["vae"])
    evaluate_runs = runs[runs["tags.nfbench.stage"] == "evaluate"]
    assert sorted(evaluate_runs["tags.nfbench.model"]) == models
    assert set(evaluate_runs["params.attack.method"]) == {"pgd"}
    assert set(evaluate_runs["metrics.accuracy.attack.points"]) == {12.0}
    run_id = frames_runs[frames_runs["tags.nfbench.model"] == "std-s0"]["run_id"].iloc[0]
    history = mlflow.MlflowClient().get_metric_history(run_id, "sensitivity.noise")
    layers = mlflow.get_run(run_id).data.tags["nfbench.layers"].split(",")
    assert sorted(m.step for m in history) == list(range(len(layers)))
    assert abs(next(m.value for m in history if m.step == 0) - 1.0) < 1e-12       # exactly 1 at the input
    assert runs["params.data_hash"].dropna().nunique() == 1

    # an experiment on one entry's training parameter retrains that entry and reruns the aggregates only
    log = ok(["dvc", "exp", "run", "-S", "models.std.epochs=2"], project)
    assert stages_run(log) == {"sources", "fetch@std", "evaluate", "frames", "metrics", "claims", "report",
                               "leaderboard"}

    # killed during frames, a rerun resumes cleanly to the same bytes as an uninterrupted run
    expected = {p.name: p.read_bytes() for p in (project / "frames").glob("*.safetensors")}
    for name in ("adv", "noisy"):
        (project / "frames" / f"{name}.safetensors").unlink()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any((project / "frames" / f"{n}.safetensors").exists()
                                                  for n in ("adv", "noisy")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((project / "frames").glob(".*.tmp"))          # nothing half-written under a final name
    ok(["dvc", "repro"], project)
    assert {p.name: p.read_bytes() for p in (project / "frames").glob("*.safetensors")} == expected
    assert up_to_date(ok(["dvc", "status"], project))

    # a replication retrains every model with other seeds in its own workspace and judges the verdicts
    ok(["nfbench", "check", "--update"], project)
    result = run(["nfbench", "replicate", "--seeds", "7", "8"], project)
    workspace = project / ".replicate" / "seeds-7-8"
    agreement = json.loads((workspace / "agreement.json").read_text())
    assert agreement["seeds"] == [7, 8] and len(agreement["rows"]) == len(
        json.loads((project / "reports" / "claims.json").read_text())["rows"])
    disagreements = [r for r in agreement["rows"] if r["status"] == "disagrees"]
    assert result.returncode == (2 if disagreements else 0), result.stderr[-2000:]
    assert "replicate mode" in (workspace / "agreement.md").read_text()
    assert "std-s7" in (workspace / "metrics" / "models.json").read_text()        # retrained, new seeds
    assert up_to_date(ok(["dvc", "status"], project))                            # the checkout is untouched


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(root: Path):
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend and artifact store under `root`."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                               "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                              cwd=root, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"),
                              start_new_session=True)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                log = (root / "server.log").read_text()[-3000:]
                assert server.poll() is None and time.monotonic() - start < 120, log
                time.sleep(0.5)
        print(f"\nmlflow server answered after {time.monotonic() - start:.1f} s")
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def rest(uri: str, endpoint: str, body: dict | None = None, **query) -> dict:
    """One call of the MLflow REST API (GET with a query, or POST with a JSON body)."""
    url = f"{uri}/api/2.0/mlflow/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_stages_log_to_a_real_mlflow_server(project, tmp_path):
    """frames, claims and report of the tiny suite against `mlflow server`, read back over REST: the
    experiment's kind, runs spanning the stage's work, per-layer series, the points as dataset input,
    the report on the claims run, and a FAILED run carrying its error."""
    with mlflow_server(tmp_path) as uri:
        env = {"MLFLOW_TRACKING_URI": uri}
        began = time.time() * 1000
        ok(["nfbench", "frames", "std-s0"], project, env)
        ok(["nfbench", "claims"], project, env)
        ok(["nfbench", "report"], project, env)
        ended = time.time() * 1000
        (project / "models" / "adv").rename(project / "models" / "adv.aside")
        try:
            failed = run(["nfbench", "frames", "adv"], project, env=env)
        finally:
            (project / "models" / "adv.aside").rename(project / "models" / "adv")
        assert failed.returncode == 2

        experiment = rest(uri, "experiments/get-by-name", experiment_name="nfbench-tiny")["experiment"]
        assert {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.experimentKind"] == "custom_model_development"
        runs = rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        by_name = {r["info"]["run_name"]: r for r in runs}
        assert sorted(by_name) == ["adv:frames", "std-s0:frames", "suite:claims"]

        frames = by_name["std-s0:frames"]
        info = frames["info"]
        assert info["status"] == "FINISHED" and began <= int(info["start_time"]) < int(info["end_time"]) <= ended
        tags = {t["key"]: t["value"] for t in frames["data"]["tags"]}
        layers = tags["nfbench.layers"].split(",")
        history = rest(uri, "metrics/get-history", run_id=info["run_id"], metric_key="sensitivity.noise")["metrics"]
        assert sorted(m["step"] for m in history) == list(range(len(layers)))
        (dataset,) = [d["dataset"] for d in frames["inputs"]["dataset_inputs"]]
        assert dataset["digest"] == sha256_file(project / "data" / "points.safetensors")[:16]
        assert dataset["name"] == "mnist5k 12 evaluation points"

        claims = by_name["suite:claims"]["info"]
        listed = rest(uri, "artifacts/list", run_id=claims["run_id"])["files"]
        assert {f["path"] for f in listed} >= {"claims.json", "claims.md", "claims.tex", "layers.md", "figures"}
        figures = rest(uri, "artifacts/list", run_id=claims["run_id"], path="figures")["files"]
        assert {Path(f["path"]).name for f in figures} >= {"sensitivity_noise.png", "rank.png"}

        adv = by_name["adv:frames"]
        assert adv["info"]["status"] == "FAILED"
        error = {t["key"]: t["value"] for t in adv["data"]["tags"]}["nfbench.error"]
        assert error == failed.stderr.strip().splitlines()[-1].removeprefix("nfbench: error: ") and "'adv'" in error
