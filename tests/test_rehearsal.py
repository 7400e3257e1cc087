"""The paper-scale suites rehearsed end to end, offline, at a tiny size on the CPU.

Each test takes a fresh git + DVC checkout, selects the real suite with `nfbench suite use`,
fabricates format-exact stand-ins for everything a user supplies or downloads (tests/standins.py:
CIFAR-10's pickled batches, RobustBench checkpoints of the real architectures in their real
layouts, WRN-70-16 included, an ImageNet JPEG folder, torchvision weights in the hub cache, an
autoencoder through the documented factory) and shrinks only the sizes (points, directions, VAE
epochs, AutoAttack's attacks and iterations) before `dvc repro`.  The integrity checks stay on: the
stand-ins' md5s (CIFAR-10, `data.md5`) and sha256s (torchvision weights, the autoencoder) are declared, as a
user with a re-packed copy would.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# AutoAttack's quick path: APGD-CE alone, 2 iterations (the suites run the standard version)
TINY = {"eval_points": 2, "attack": {"version": ["apgd-ce"], "iterations": 2}, "noise": 2, "generative": 2}


def run(cmd, cwd, env):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def ok(cmd, cwd, env):
    result = run(cmd, cwd, env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


def checkout(tmp_path: Path) -> tuple[Path, dict]:
    """A git + DVC checkout of the project (code, suites, tasks, references) and its environment."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, root / name)
    for name in ("benchmark", "tasks", "suites", ".dvc", "reports/reference"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\n/models/robustbench\n/models/*.safetensors\n"
                                     "/data/raw\n")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "TORCH_HOME": str(tmp_path / "torch"),
           "PYTHONPATH": str(root), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return root, env


def shrink(params: dict) -> None:
    """The rehearsal's sizes; everything else is the suite's own."""
    params["data"]["eval_points"] = TINY["eval_points"]
    params["attack"].update(TINY["attack"])
    params["perturbations"]["noise"]["count"] = TINY["noise"]
    params["perturbations"]["generative"]["count"] = TINY["generative"]


def stages_run(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


def rehearse(root: Path, env: dict, suite: str, prepare) -> dict:
    ok(["nfbench", "suite", "use", suite], root, env)
    params = yaml.safe_load((root / "params.yaml").read_text())
    shrink(params)
    prepare(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    ok(["git", "init", "-q"], root, env)
    ok(["git", "add", "-A"], root, env)
    ok(["git", "commit", "-qm", suite], root, env)
    start = time.perf_counter()
    log = ok(["dvc", "repro"], root, env)
    wall = time.perf_counter() - start
    stages = stages_run(log)
    expected = {"data", "sources", "evaluate", "frames", "metrics", "claims", "report", "leaderboard",
                *(f"fetch@{m}" for m in params["models"]), *(f"fetch_generative@{g}" for g in params["generative"])}
    assert expected <= stages, sorted(expected - stages)
    times: dict[str, float] = {}
    for stage, seconds in re.findall(r"^\[([a-z_]+)[^\]]*\] .* in ([0-9.]+) s", log, flags=re.M):
        times[stage] = round(times.get(stage, 0.0) + float(seconds), 1)
    print(f"\n{suite} rehearsal: dvc repro {wall:.0f} s; seconds inside each stage: {json.dumps(times)}")
    return params


def assert_layerwise(root: Path, params: dict) -> None:
    """No '@ penultimate' claim row equals its '@ logits' row; every model has a depth profile."""
    rows = json.loads((root / "reports" / "claims.json").read_text())["rows"]
    by_subject = {(r["task"], r["subject"]): r for r in rows}
    pairs = [(r, by_subject.get((r["task"], r["subject"].replace("@ penultimate", "@ logits"))))
             for r in rows if "@ penultimate" in r["subject"]]
    pairs = [(p, q) for p, q in pairs if q is not None and p["value"] is not None]
    assert pairs, "no '@ penultimate' row with a '@ logits' twin"
    assert all(p["value"] != q["value"] for p, q in pairs), [p["subject"] for p, q in pairs if p["value"] == q["value"]]
    summary = json.loads((root / "metrics" / "summary.json").read_text())
    for model_id in params["models"]:
        layers = sorted(summary[model_id], key=lambda layer: summary[model_id][layer]["depth"])
        assert len(layers) >= 6 and layers[0] == "input" and layers[-1] == "logits", (model_id, layers)
    layers_md = (root / "reports" / "layers.md").read_text()
    assert "## Accuracy, measured and published" in layers_md


def assert_architectures_compared(root: Path) -> None:
    """tasks/architecture.yaml runs on the suite's standard transformer and CNNs (it has no fully
    connected model: those rows say so)."""
    rows = json.loads((root / "reports" / "claims.json").read_text())["rows"]
    rows = [r for r in rows if r["task"] == "architecture"]
    compared = [r for r in rows if r["subject"].startswith("transformer/convolutional:")]
    assert compared and all(r["value"] is not None for r in compared), compared
    families = {r["subject"].split(":")[0] for r in rows
                if r["statistic"] == "rank_retention" and r["value"] is not None}
    assert families == {"convolutional", "transformer"}, rows


def assert_embedded_comes_back(root: Path, env: dict) -> None:
    reference = (ROOT / "reports" / "reference" / "embedded" / "claims.json").read_bytes()
    ok(["nfbench", "suite", "use", "embedded"], root, env)
    assert yaml.safe_load((root / "params.yaml").read_text())["suite"] == "embedded"
    assert (root / "reports" / "reference" / "embedded" / "claims.json").read_bytes() == reference
    for big in ("models", ".dvc/cache"):          # gigabytes of checkpoints: gone once passed
        shutil.rmtree(root / big, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.rehearsal
def test_robustbench_cifar10_rehearsal(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from standins import write_cifar10, write_robustbench

    from benchmark.storage import sha256_file

    root, env = checkout(tmp_path)

    def prepare(params):
        params["data"]["md5"] = write_cifar10(root / "data" / "raw", per_batch=100, test=100)
        for spec in params["generative"].values():
            spec["epochs"] = 1
        for seed, spec in enumerate(params["models"].values()):   # other weights per model
            write_robustbench(root / "models", spec, seed)

    params = rehearse(root, env, "robustbench_cifar10", prepare)
    assert_layerwise(root, params)
    accuracy = json.loads((root / "metrics" / "models.json").read_text())
    assert "robust_acc_l2@0.5" in accuracy["Engstrom2019Robustness-L2"]["accuracy"]
    assert {json.dumps(a["accuracy"]["attack"], sort_keys=True) for a in accuracy.values()} == {json.dumps(
        {"method": "autoattack", "version": "custom", "attacks": ["apgd-ce"], "iterations": 2,
         "points": TINY["eval_points"], "seed": 0}, sort_keys=True)}
    assert "| AutoAttack (apgd-ce) |" in (root / "reports" / "layers.md").read_text()

    # a replaced source checkpoint refetches the model made from it, and only that one
    replaced = write_robustbench(root / "models", params["models"]["Standard"], seed=99)
    log = ok(["dvc", "repro", "fetch@Standard", "fetch@Carmon2019Unlabeled"], root, env)
    assert stages_run(log) == {"sources", "fetch@Standard"}, log[-3000:]
    manifest = json.loads((root / "models" / "Standard" / "manifest.json").read_text())
    assert manifest["source_checkpoint"]["sha256"] == sha256_file(replaced)
    assert_embedded_comes_back(root, env)


@pytest.mark.slow
@pytest.mark.rehearsal
def test_robustbench_imagenet_rehearsal(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from standins import write_autoencoder, write_imagenet_val, write_robustbench, write_torchvision_weights

    root, env = checkout(tmp_path)

    def prepare(params):
        write_imagenet_val(root / "data" / "raw", ["n01440764", "n01443537"], per_class=2)
        for seed, spec in enumerate(params["models"].values()):   # other weights per model
            if spec["source"] == "torchvision":
                spec["sha256"] = write_torchvision_weights(tmp_path / "torch", spec["arch"], spec["weights"], seed)
            else:
                write_robustbench(root / "models", spec, seed)
        for spec in params["generative"].values():    # the documented factory, as the suite names it
            module = spec["entry_point"].split(":")[0]
            spec["sha256"] = write_autoencoder(root, module, root / spec["checkpoint"])

    params = rehearse(root, env, "robustbench_imagenet", prepare)
    assert_layerwise(root, params)
    assert_architectures_compared(root)
    assert_embedded_comes_back(root, env)
