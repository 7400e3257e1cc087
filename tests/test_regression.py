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

from benchmark import claims as C
from benchmark.errors import NFBenchError
from benchmark.metrics import FrameStatistics
from benchmark.regression import ROUNDING, agreement, allowed_change, compare, format_table, replication_totals
from tests.conftest import synthetic_stats

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
    return synthetic_stats(model_id, s, rank, layers=layers, labels=LABELS, families=FAMILIES, role=role,
                           accuracy={"clean_acc": 0.99, "robust_acc": 0.0})


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


def test_identical_results_pass_in_both_modes(reference):
    for mode in ("reproduce", "replicate"):
        ok, rows = compare(copy.deepcopy(reference), reference, mode)
        assert ok and len(rows) == len(reference["rows"])
        assert {r["status"] for r in rows} == {"ok" if mode == "reproduce" else "agrees"}


def test_reproduce_allows_float_rounding_and_nothing_more(reference):
    i = row_index(reference, "augmentation-invariance", "supported")
    row = reference["rows"][i]
    allowed = allowed_change(row["value"])
    assert allowed == pytest.approx(max(ROUNDING["absolute"], ROUNDING["relative"] * abs(row["value"])))
    fresh = copy.deepcopy(reference)
    fresh["rows"][i]["value"] = row["value"] + 0.9 * allowed
    assert compare(fresh, reference)[0]
    fresh["rows"][i]["value"] = row["value"] + 1.1 * allowed
    ok, rows = compare(fresh, reference)
    assert not ok
    moved = [r for r in rows if r["status"] != "ok"]
    assert [(r["task"], r["subject"], r["status"]) for r in moved] == [(row["task"], row["subject"], "differs")]
    assert "beyond rounding" in moved[0]["why"]
    table = format_table(rows, "reproduce", only_problems=True)
    assert row["subject"] in table and "beyond rounding" in table
    # the same move is no failure when the models were retrained: the verdict is what counts
    assert compare(fresh, reference, "replicate")[0]


def test_a_verdict_change_is_a_regression_when_reproducing(reference):
    i = row_index(reference, "augmentation-invariance", "supported")
    fresh = copy.deepcopy(reference)
    fresh["rows"][i]["verdict"] = "inconclusive"
    ok, rows = compare(fresh, reference)
    bad = [r for r in rows if r["status"] != "ok"]
    assert not ok and [r["why"] for r in bad] == ["verdict changed: supported -> inconclusive"]


BELOW = {"direction": "below", "threshold": 1.0, "margin": 0.05}          # boundary 0.95, band [0.90, 1.00]
ROW = {"task": "t", "statistic": "sensitivity_ratio", "subject": "s", "expectation": BELOW}


@pytest.mark.parametrize("reference_row, replicated_row, status", [
    ({"verdict": "supported", "value": 0.80, "ci_low": 0.75, "ci_high": 0.85},
     {"verdict": "supported", "value": 0.70, "ci_low": 0.60, "ci_high": 0.80}, "agrees"),
    # a call at the boundary: both intervals reach into [0.90, 1.00]
    ({"verdict": "supported", "value": 0.88, "ci_low": 0.83, "ci_high": 0.93},
     {"verdict": "inconclusive", "value": 0.93, "ci_low": 0.88, "ci_high": 0.98}, "borderline"),
    ({"verdict": "not supported", "value": 1.02, "ci_low": 0.96, "ci_high": 1.08},
     {"verdict": "inconclusive", "value": 0.97, "ci_low": 0.92, "ci_high": 1.03}, "borderline"),
    # opposite verdicts disagree, however close
    ({"verdict": "supported", "value": 0.92, "ci_low": 0.90, "ci_high": 0.94},
     {"verdict": "not supported", "value": 0.97, "ci_low": 0.955, "ci_high": 0.99}, "disagrees"),
    # clearly supported against inconclusive: the replication does not confirm it
    ({"verdict": "supported", "value": 0.70, "ci_low": 0.60, "ci_high": 0.80},
     {"verdict": "inconclusive", "value": 0.90, "ci_low": 0.80, "ci_high": 1.00}, "disagrees"),
    ({"verdict": "inconclusive", "value": 0.9, "ci_low": 0.8, "ci_high": 1.0},
     {"verdict": "not run", "value": None, "ci_low": None, "ci_high": None}, "disagrees"),
])
def test_replicated_rows_agree_are_borderline_or_disagree(reference_row, replicated_row, status):
    got, why = agreement({**ROW, **reference_row}, {**ROW, **replicated_row})
    assert got == status, why


# as claims.json holds it: keys sorted (not in bin order), unbounded edges null
FINDING = {"finding": {"distributed": [1 / 3, 2 / 3], "early": [None, 1 / 3], "late": [2 / 3, None]}}


@pytest.mark.parametrize("reference_row, replicated_row, status", [
    ({"category": "late", "ci_low": 0.7, "ci_high": 0.9}, {"category": "late", "ci_low": 0.6, "ci_high": 1.0},
     "agrees"),
    ({"category": "late", "ci_low": 0.7, "ci_high": 0.9}, {"category": "distributed", "ci_low": 0.5, "ci_high": 0.7},
     "borderline"),                                     # moved by one category
    ({"category": "late", "ci_low": 0.2, "ci_high": 0.9}, {"category": "early", "ci_low": 0.1, "ci_high": 0.7},
     "disagrees"),                                      # two categories apart
    ({"category": "late", "ci_low": 0.7, "ci_high": 0.9}, {"category": "outside the bins", "ci_low": 2, "ci_high": 3},
     "disagrees"),
])
def test_a_finding_may_move_by_one_category_only(reference_row, replicated_row, status):
    base = {**ROW, "statistic": "gap_mean_depth", "verdict": "finding", "value": 0.5, "expectation": FINDING}
    got, why = agreement({**base, **reference_row}, {**base, **replicated_row})
    assert got == status, why


def test_replication_totals_count_verdict_rows_and_findings_apart(reference):
    fresh = copy.deepcopy(reference)
    tested = next(i for i, r in enumerate(fresh["rows"]) if r["verdict"] == "supported")
    fresh["rows"][tested]["verdict"] = "not supported"
    finding = next(i for i, r in enumerate(fresh["rows"]) if r["verdict"] == "finding")
    fresh["rows"][finding]["category"] = "no such category"
    totals = replication_totals(compare(fresh, reference, "replicate")[1])
    n_findings = sum(r["verdict"] == "finding" for r in reference["rows"])
    assert totals["findings"] == {"agrees": n_findings - 1, "disagrees": 1}
    assert totals["verdicts"] == {"agrees": len(reference["rows"]) - n_findings - 1, "disagrees": 1}


def test_finding_category_change_is_a_regression(reference):
    i = row_index(reference, "invariance-depth-profile", "finding")
    fresh = copy.deepcopy(reference)
    fresh["rows"][i]["category"] = "late" if reference["rows"][i]["category"] != "late" else "early"
    ok, rows = compare(fresh, reference)
    assert not ok and any(r["why"].startswith("verdict changed") for r in rows)


def test_missing_and_new_rows_fail_in_both_modes(reference):
    fresh = copy.deepcopy(reference)
    dropped = fresh["rows"].pop(0)
    for mode, bad in (("reproduce", "differs"), ("replicate", "disagrees")):
        ok, rows = compare(fresh, reference, mode)
        failed = [r for r in rows if r["status"] == bad]
        assert not ok and len(failed) == 1 and failed[0]["subject"] == dropped["subject"]
        assert failed[0]["why"] == "missing from the fresh results"
        ok, rows = compare(reference, fresh, mode)
        assert not ok and [r["why"] for r in rows if r["status"] == bad] == ["not in the reference"]


def test_not_run_rows_compare_and_a_value_appearing_fails(reference):
    i = next(i for i, r in enumerate(reference["rows"]) if r["verdict"] == "not run")
    assert compare(copy.deepcopy(reference), reference)[0]
    fresh = copy.deepcopy(reference)
    fresh["rows"][i].update(value=0.5, verdict="not run")
    ok, rows = compare(fresh, reference)
    assert not ok and any(r["why"] == "defined in one result only" for r in rows)


def test_results_of_another_suite_are_refused_not_compared(reference):
    fresh = copy.deepcopy(reference)
    fresh["suite"] = "other"
    for mode in ("reproduce", "replicate"):
        with pytest.raises(NFBenchError, match=rf"the results are of suite 'other', the reference of suite "
                                               rf"{reference['suite']!r}: only results of one suite compare"):
            compare(fresh, reference, mode)


def test_another_bootstrap_seed_fails(reference):
    fresh = copy.deepcopy(reference)
    fresh["seed"] = 1
    ok, rows = compare(fresh, reference)
    assert not ok and rows[0]["status"] == "differs" and "another bootstrap seed" in rows[0]["why"]


def test_rounding_tolerance_and_empty_table():
    assert allowed_change(5.0) == pytest.approx(5.0 * ROUNDING["relative"])
    assert allowed_change(0.0) == ROUNDING["absolute"] and allowed_change(None) == ROUNDING["absolute"]
    assert format_table([], "reproduce") == "(no differences)"


def test_check_command_against_the_committed_reference(tmp_path):
    """`nfbench check` on the repository's own results: passes as committed, fails when edited, and
    in replicate mode tolerates moved values but not a disagreement."""
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "reports" / "reference" / "embedded").mkdir(parents=True)
    shutil.copy(repo / "reports" / "claims.json", tmp_path / "reports" / "claims.json")
    shutil.copy(repo / "reports" / "reference" / "embedded" / "claims.json",
                tmp_path / "reports" / "reference" / "embedded" / "claims.json")
    for name in ("params.yaml", "suites"):
        (shutil.copytree if (repo / name).is_dir() else shutil.copy)(repo / name, tmp_path / name)

    def check(*args):
        return subprocess.run([sys.executable, "-m", "benchmark.cli", "check", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    run = check()
    assert run.returncode == 0 and "reproduce mode" in run.stdout
    reference = tmp_path / "reports" / "reference" / "embedded" / "claims.json"
    original = json.loads(reference.read_text())
    moved = json.loads(json.dumps(original))
    row = next(r for r in moved["rows"] if r["value"] is not None and r["statistic"] == "sensitivity_ratio")
    row["value"] *= 1 + 100 * ROUNDING["relative"]
    reference.write_text(json.dumps(moved))
    run = check()
    assert run.returncode == 2 and row["subject"] in run.stdout and "beyond rounding" in run.stdout
    assert "do not reproduce" in run.stderr and run.stderr.count("\n") == 1
    assert check("--mode", "replicate").returncode == 0
    flipped = json.loads(json.dumps(original))
    row = next(r for r in flipped["rows"] if r["verdict"] == "supported")
    row["verdict"] = "not supported"
    reference.write_text(json.dumps(flipped))
    run = check("--mode", "replicate")
    assert run.returncode == 2 and "opposite verdicts" in run.stdout and row["subject"] in run.stdout
    assert "replicate mode" in run.stdout
    # results of another suite: refused in one line, whatever the rows' names
    other = json.loads((tmp_path / "reports" / "claims.json").read_text())
    other["suite"] = "robustbench_cifar10"
    (tmp_path / "reports" / "claims.json").write_text(json.dumps(other))
    run = check()
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "only results of one suite compare" in run.stderr
