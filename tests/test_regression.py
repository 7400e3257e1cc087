"""The regression check: a fresh claims result against a committed reference."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import claims as C
from benchmark.metrics import FrameStatistics
from benchmark.regression import allowed_change, compare, format_table

REPO = Path(__file__).resolve().parents[1]
LABELS = ["rotate", "scale", "noise/0", "noise/1", "vae/0"]
FAMILIES = ["augmentation", "augmentation", "noise", "noise", "generative"]


def make_stats(model_id: str, role: str, seed: int, factor: float) -> FrameStatistics:
    rng = np.random.default_rng(seed)
    layers = ["input", "conv", "fc", "logits"]
    s = np.exp(0.2 * rng.normal(size=(4, 32, 5))) * np.array([1, 1.5, 2, 2.5])[:, None, None]
    s[1:, :, :2] *= factor
    s[0] = 1.0
    rank = np.linspace(4, 2, 4)[:, None] * np.ones((4, 32))
    return FrameStatistics(
        layers=layers, labels=list(LABELS), families=list(FAMILIES),
        family_names=["augmentation", "noise", "generative"], point_ids=torch.arange(32),
        depth=torch.linspace(0, 1, 4, dtype=torch.float64), sensitivity=torch.tensor(s), rank=torch.tensor(rank),
        family_rank=torch.tensor(np.stack([rank] * 3)), penultimate=2,
        meta={"id": model_id, "role": role, "eps": 0.0, "suite": "synthetic",
              "accuracy": {"clean_acc": 0.99, "robust_acc": 0.0},
              "augmentations": ["rotate", "scale"] if role == "augmentation" else []})


@pytest.fixture(scope="module")
def reference():
    stats = {"std0": make_stats("std0", "standard", 0, 1.0), "std1": make_stats("std1", "standard", 1, 1.0),
             "aug0": make_stats("aug0", "augmentation", 2, 0.5), "aug1": make_stats("aug1", "augmentation", 3, 0.5)}
    return C.evaluate(C.load_tasks(REPO / "tasks"), stats, seed=0)


def row_index(result: dict, task: str, verdict: str | None = None) -> int:
    for i, r in enumerate(result["rows"]):
        if r["task"] == task and r["value"] is not None and (verdict is None or r["verdict"] == verdict):
            return i
    raise AssertionError(f"no row of {task}")


def test_identical_results_pass(reference):
    ok, rows = compare(copy.deepcopy(reference), reference)
    assert ok
    assert len(rows) == len(reference["rows"])
    assert all(r["status"] == "ok" for r in rows)


def test_move_within_tolerance_passes_beyond_fails(reference):
    i = row_index(reference, "augmentation-invariance", "supported")
    row = reference["rows"][i]
    allowed = allowed_change(row["tolerance"], row["value"])
    assert allowed == pytest.approx(row["tolerance"]["relative"] * abs(row["value"]))
    fresh = copy.deepcopy(reference)
    fresh["rows"][i]["value"] = row["value"] + 0.9 * allowed
    ok, _ = compare(fresh, reference)
    assert ok
    fresh["rows"][i]["value"] = row["value"] + 1.1 * allowed
    ok, rows = compare(fresh, reference)
    assert not ok
    moved = [r for r in rows if r["status"] != "ok"]
    assert len(moved) == 1
    assert (moved[0]["task"], moved[0]["subject"]) == (row["task"], row["subject"])
    assert moved[0]["status"] == "moved beyond tolerance"
    assert moved[0]["reference"] == row["value"] and moved[0]["fresh"] == fresh["rows"][i]["value"]
    table = format_table(rows, only_problems=True)
    assert row["subject"] in table and "moved beyond tolerance" in table


def test_verdict_flip_fails_even_within_tolerance(reference):
    i = row_index(reference, "augmentation-invariance", "supported")
    fresh = copy.deepcopy(reference)
    fresh["rows"][i]["verdict"] = "inconclusive"
    ok, rows = compare(fresh, reference)
    assert not ok
    bad = [r for r in rows if r["status"] != "ok"]
    assert [r["status"] for r in bad] == ["verdict changed"]
    assert bad[0]["verdict"] == "supported -> inconclusive"


def test_finding_category_change_fails(reference):
    i = row_index(reference, "invariance-depth-profile")
    fresh = copy.deepcopy(reference)
    fresh["rows"][i]["category"] = "late" if reference["rows"][i]["category"] != "late" else "early"
    ok, rows = compare(fresh, reference)
    assert not ok and any(r["status"] == "verdict changed" for r in rows)


def test_missing_and_new_rows_fail(reference):
    fresh = copy.deepcopy(reference)
    dropped = fresh["rows"].pop(0)
    ok, rows = compare(fresh, reference)
    assert not ok
    bad = [r for r in rows if r["status"] != "ok"]
    assert len(bad) == 1 and bad[0]["subject"] == dropped["subject"] and bad[0]["status"].startswith("missing")
    ok, rows = compare(reference, fresh)
    assert not ok and [r["status"] for r in rows if r["status"] != "ok"] == ["new (not in the reference)"]


def test_not_run_rows_compare_and_a_value_appearing_fails(reference):
    i = next(i for i, r in enumerate(reference["rows"]) if r["verdict"] == "not run")
    assert compare(copy.deepcopy(reference), reference)[0]
    fresh = copy.deepcopy(reference)
    fresh["rows"][i].update(value=0.5, verdict="not run")
    ok, rows = compare(fresh, reference)
    assert not ok and any(r["status"] == "moved beyond tolerance" for r in rows)


def test_suite_change_fails(reference):
    fresh = copy.deepcopy(reference)
    fresh["suite"] = "other"
    ok, rows = compare(fresh, reference)
    assert not ok and rows[0]["status"] == "suite differs"


def test_absolute_and_relative_tolerances():
    assert allowed_change({"absolute": 0.1, "relative": 0.0}, 5.0) == 0.1
    assert allowed_change({"absolute": 0.1, "relative": 0.5}, 5.0) == 2.5
    assert allowed_change({"relative": 0.5}, None) == 0.0
    assert format_table([]) == "(no differences)"


def test_check_command_against_the_committed_reference(tmp_path):
    """`nfbench check` on the repository's own results: passes as committed, fails when edited."""
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "reports" / "reference").mkdir(parents=True)
    shutil.copy(repo / "reports" / "claims.json", tmp_path / "reports" / "claims.json")
    shutil.copy(repo / "reports" / "reference" / "claims.json", tmp_path / "reports" / "reference" / "claims.json")
    for name in ("params.yaml", "suites"):
        (shutil.copytree if (repo / name).is_dir() else shutil.copy)(repo / name, tmp_path / name)

    def check():
        return subprocess.run([sys.executable, "-m", "benchmark.cli", "check"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    assert check().returncode == 0
    reference = tmp_path / "reports" / "reference" / "claims.json"
    original = json.loads(reference.read_text())
    moved = json.loads(json.dumps(original))
    row = next(r for r in moved["rows"] if r["value"] is not None and r["statistic"] == "sensitivity_ratio")
    row["value"] *= 1 + 2 * row["tolerance"]["relative"]
    reference.write_text(json.dumps(moved))
    run = check()
    assert run.returncode == 2 and row["subject"] in run.stdout and "moved beyond tolerance" in run.stdout
    flipped = json.loads(json.dumps(original))
    row = next(r for r in flipped["rows"] if r["verdict"] == "supported")
    row["verdict"] = "not supported"
    reference.write_text(json.dumps(flipped))
    run = check()
    assert run.returncode == 2 and "verdict changed" in run.stdout and row["subject"] in run.stdout
