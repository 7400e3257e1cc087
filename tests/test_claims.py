"""Claims: task schema, statistics, bootstrap intervals and verdicts on synthetic frame statistics.

Every suite here is built directly as FrameStatistics with known sensitivities per role, so
each expected verdict follows from the construction, not from a stored answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml

from benchmark import claims as C
from benchmark.claims.resample import _spearman as spearman
from benchmark.claims.statistics import _gap_mean_depth as gap_mean_depth_of
from benchmark.errors import NFBenchError
from benchmark.metrics import FrameStatistics
from tests.conftest import synthetic_stats

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["input", "conv1", "conv2", "fc", "logits"]                  # depths 0, .25, .5, .75, 1
LABELS = ["rotate", "translate_x", "scale", "noise/0", "noise/1", "noise/2", "vae/0", "vae/1"]
FAMILIES = ["augmentation"] * 3 + ["noise"] * 3 + ["generative"] * 2


# --------------------------------------------------------------------------------- helpers


def make_stats(model_id: str, role: str, *, seed: int, mult: dict | None = None, points: int = 48,
               noise: float = 0.1, eps: float = 0.0, acc: float = 0.99, augs=("rotate", "scale"),
               shared: np.ndarray | None = None, rank: list | None = None, labels=LABELS,
               families=FAMILIES, layers=LAYERS) -> FrameStatistics:
    """Sensitivity = base profile × multiplier × per-point lognormal noise (1 at the input).

    mult: label or family -> a factor for every layer after the input, or a list of one
    factor per layer.  shared: a per-point factor common to every model (a paired design).
    """
    rng = np.random.default_rng(seed)
    n_layers, k = len(layers), len(labels)
    base = np.linspace(1.0, 3.0, n_layers)[:, None, None] * np.ones((n_layers, points, k))
    m = np.ones((n_layers, k))
    for key, factor in (mult or {}).items():
        cols = [j for j, (lab, fam) in enumerate(zip(labels, families)) if key in (lab, fam)]
        assert cols, key
        f = np.asarray(factor, dtype=np.float64)
        for c in cols:
            m[1:, c] = f if f.ndim == 0 else f[1:]
    s = base * m[:, None, :] * np.exp(noise * rng.normal(size=(n_layers, points, k)))
    if shared is not None:
        s = s * shared[None, :, None]
    s[0] = 1.0
    r = np.asarray(rank if rank is not None else np.linspace(6.0, 3.0, n_layers), dtype=np.float64)
    r = r[:, None] * np.ones((n_layers, points))
    return synthetic_stats(model_id, s, r, layers=layers, labels=labels, families=families, role=role, eps=eps,
                           accuracy={"clean_acc": acc, "robust_acc": 0.1, "rotated_acc": None, "translated_acc": None},
                           augmentations=augs, source="local", display_name=model_id)


def suite(aug_mult=None, *, noise=0.1, points=48, roles=("standard", "augmentation"), **kw) -> dict:
    out = {}
    if "standard" in roles:
        out["std0"] = make_stats("std0", "standard", seed=0, noise=noise, points=points, **kw)
        out["std1"] = make_stats("std1", "standard", seed=1, noise=noise, points=points, **kw)
    if "augmentation" in roles:
        mult = aug_mult if aug_mult is not None else {"rotate": 0.5, "scale": 0.6}
        out["aug0"] = make_stats("aug0", "augmentation", seed=2, mult=mult, noise=noise, points=points, **kw)
        out["aug1"] = make_stats("aug1", "augmentation", seed=3, mult=mult, noise=noise, points=points, **kw)
    return out


BASE_TASK = {
    "id": "t",
    "claim": "Augmentation training produces invariance.",
    "operationalization": "nfbench's own: a test task.",
    "compare": {"treatment": "augmentation", "control": "standard"},
    "perturbation": {"labels": "trained"},
    "layers": ["penultimate", "logits"],
    "statistic": "sensitivity_ratio",
    "expected": {"direction": "below", "threshold": 1.0, "margin": 0.05},
    "aggregate": {"points": "mean", "models": "mean"},
    "bootstrap": {"samples": 400, "confidence": 0.95},
}


def write_task(directory: Path, body: dict | str, name: str | None = None) -> Path:
    name = name or (body["id"] if isinstance(body, dict) else "t")
    path = directory / f"{name}.yaml"
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False))
    return path


def run(tmp_path: Path, stats: dict, seed: int = 0, **changes) -> dict:
    body = {**BASE_TASK, **changes}
    d = tmp_path / f"tasks_{len(list(tmp_path.iterdir()))}"
    d.mkdir()
    write_task(d, body)
    return C.evaluate(C.load_tasks(d), stats, seed=seed)


# --------------------------------------------------------------------------------- verdicts


def test_supported_when_augmentation_models_are_less_sensitive(tmp_path):
    result = run(tmp_path, suite({"rotate": 0.5, "scale": 0.6}))
    rows = result["rows"]
    assert [r["subject"] for r in rows] == ["rotate @ penultimate", "rotate @ logits",
                                            "scale @ penultimate", "scale @ logits"]
    for r in rows:
        factor = 0.5 if r["subject"].startswith("rotate") else 0.6
        assert r["value"] == pytest.approx(factor, rel=0.1)
        assert r["ci_low"] < r["value"] < r["ci_high"] < 0.95
        assert r["verdict"] == "supported"
        assert r["n_models"] == {"augmentation": 2, "standard": 2}
        assert r["n_points"] == 48
    json.dumps(result, allow_nan=False)


def test_reversed_effect_flips_to_not_supported(tmp_path):
    rows = run(tmp_path, suite({"rotate": 2.0, "scale": 1.8}))["rows"]
    assert rows and all(r["verdict"] == "not supported" for r in rows)
    assert all(r["ci_low"] > 1.0 for r in rows)


def test_effect_smaller_than_margin_is_not_supported(tmp_path):
    rows = run(tmp_path, suite({"rotate": 0.99, "scale": 0.99}, noise=0.01))["rows"]
    assert all(0.95 <= r["ci_low"] and r["ci_high"] < 1.0 for r in rows)
    assert all(r["verdict"] == "not supported" for r in rows)


def test_overlapping_interval_is_inconclusive(tmp_path):
    rows = run(tmp_path, suite({"rotate": 0.95, "scale": 0.95}, noise=1.2, points=16))["rows"]
    for r in rows:
        assert r["ci_low"] < 0.95 < r["ci_high"]
        assert r["verdict"] == "inconclusive"


@pytest.mark.parametrize("direction,low,high,expected", [
    ("below", 0.5, 0.9, "supported"), ("below", 0.96, 1.2, "not supported"), ("below", 0.9, 1.0, "inconclusive"),
    ("above", 1.1, 1.3, "supported"), ("above", 0.8, 1.04, "not supported"), ("above", 1.0, 1.1, "inconclusive"),
    ("at_least", 0.95, 1.2, "supported"), ("at_least", 0.5, 0.9, "not supported"),
    ("at_least", 0.9, 1.0, "inconclusive"),
    ("at_most", 0.5, 1.05, "supported"), ("at_most", 1.1, 1.3, "not supported"), ("at_most", 1.0, 1.1, "inconclusive"),
])
def test_verdict_rule(direction, low, high, expected):
    exp = C.Threshold(direction, 1.0, 0.05)
    assert C.verdict(exp, (low + high) / 2, low, high)[0] == expected
    assert C.verdict(exp, (low + high) / 2, None, None)[0] == "inconclusive"


# --------------------------------------------------------------------------------- bootstrap


def test_pairing_resamples_the_same_points_for_every_model(tmp_path):
    # Points differ by orders of magnitude, identically for every model; the augmentation
    # models are exactly 0.7× at every point.  Paired resampling gives a tight interval;
    # resampling points independently per model would give a wide one.
    shared = np.exp(np.random.default_rng(9).normal(0, 2.0, size=48))
    stats = suite({"rotate": 0.7, "scale": 0.7}, noise=0.0, shared=shared)
    for r in run(tmp_path, stats)["rows"]:
        assert r["value"] == pytest.approx(0.7)
        assert r["ci_high"] - r["ci_low"] < 1e-9


def test_models_are_resampled_within_a_role(tmp_path):
    # Two standard seeds that differ by 1.5× and no point noise: only resampling the seeds
    # gives the interval its width, spanning the ratios against either seed alone.
    stats = suite({"rotate": 0.5, "scale": 0.5}, noise=0.0)
    stats["std1"] = make_stats("std1", "standard", seed=1, noise=0.0, mult={"augmentation": 1.5})
    r = run(tmp_path, stats, layers="logits")["rows"][0]
    assert r["value"] == pytest.approx(0.5 / 1.25)
    assert r["ci_low"] == pytest.approx(0.5 / 1.5) and r["ci_high"] == pytest.approx(0.5 / 1.0)


def test_nan_points_are_left_out(tmp_path):
    stats = suite({"rotate": 0.5, "scale": 0.5}, noise=0.0)
    for st in stats.values():
        st.sensitivity[1:, :5, :] = float("nan")
    rows = run(tmp_path, stats)["rows"]
    assert all(r["value"] == pytest.approx(0.5) and r["verdict"] == "supported" for r in rows)


def test_same_seed_same_result_and_seed_matters(tmp_path):
    stats = suite(noise=0.5)
    tasks = C.load_tasks(REPO / "tasks")
    a, b = C.evaluate(tasks, stats, seed=3), C.evaluate(tasks, stats, seed=3)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    c = C.evaluate(tasks, stats, seed=4)
    assert [r["value"] for r in a["rows"]] == [r["value"] for r in c["rows"]]
    assert [r["ci_low"] for r in a["rows"]] != [r["ci_low"] for r in c["rows"]]


def test_order_of_models_does_not_matter(tmp_path):
    stats = suite(noise=0.5)
    tasks = C.load_tasks(REPO / "tasks")
    reordered = {m: stats[m] for m in reversed(list(stats))}
    assert C.evaluate(tasks, stats) == C.evaluate(tasks, reordered)


# --------------------------------------------------------------------------------- not run


def test_absent_role_gives_not_run_rows(tmp_path):
    rows = run(tmp_path, suite(roles=("standard",)))["rows"]
    assert len(rows) == 1
    assert rows[0]["verdict"] == "not run" and "augmentation" in rows[0]["reason"]
    assert rows[0]["value"] is None


def test_absent_label_gives_not_run_row(tmp_path):
    rows = run(tmp_path, suite(), perturbation={"labels": ["rotate", "shear"]})["rows"]
    by = {r["subject"]: r for r in rows}
    assert by["rotate @ logits"]["verdict"] == "supported"
    assert by["shear"]["verdict"] == "not run" and "shear" in by["shear"]["reason"]


def test_only_models_trained_with_a_label_are_its_treatment(tmp_path):
    stats = suite({"rotate": 0.5})
    stats["aug0"].meta["augmentations"] = ["rotate"]
    stats["aug1"].meta["augmentations"] = ["scale"]
    stats["aug1"].sensitivity[1:, :, LABELS.index("scale")] *= 0.4
    rows = {r["subject"]: r for r in run(tmp_path, stats, layers="logits")["rows"]}
    assert rows["rotate @ logits"]["n_models"] == {"augmentation": 1, "standard": 2}
    assert rows["rotate @ logits"]["value"] == pytest.approx(0.5, rel=0.1)
    assert rows["scale @ logits"]["n_models"] == {"augmentation": 1, "standard": 2}
    assert rows["scale @ logits"]["value"] == pytest.approx(0.4, rel=0.1)


def test_shipped_tasks_run_on_a_partial_suite(tmp_path):
    result = C.evaluate(C.load_tasks(REPO / "tasks"), suite(), seed=0)
    json.dumps(result, allow_nan=False)
    verdicts = {(r["task"], r["verdict"]) for r in result["rows"]}
    assert ("augmentation-invariance", "supported") in verdicts
    assert ("adversarial-noise-suppression", "not run") in verdicts        # no adversarial models
    assert ("robustness-generalization-tradeoff", "not run") in verdicts
    assert {t.id for t in C.load_tasks(REPO / "tasks")} == set(result["tasks"])
    keys = [(r["task"], r["statistic"], r["subject"]) for r in result["rows"]]
    assert len(keys) == len(set(keys))


def test_empty_suite_is_all_not_run():
    result = C.evaluate(C.load_tasks(REPO / "tasks"), {}, seed=0)
    assert result["rows"] and all(r["verdict"] == "not run" for r in result["rows"])


def test_different_points_are_an_error(tmp_path):
    stats = suite()
    stats["aug0"].point_ids = stats["aug0"].point_ids + 1
    with pytest.raises(NFBenchError, match="different evaluation points"):
        run(tmp_path, stats)


# --------------------------------------------------------------------------------- other statistics


def depth_profile_suite(aug_profile: list[float]) -> dict:
    return suite({"rotate": aug_profile}, noise=0.02, augs=("rotate",))


def test_gap_mean_depth_early_even_late_and_undefined(tmp_path):
    finding = {"finding": {"early": [-np.inf, 0.3333], "distributed": [0.3333, 0.6667], "late": [0.6667, np.inf]}}
    changes = dict(statistic="gap_mean_depth", layers="all", expected=finding)
    # the whole gap appears in the first step (depth 0 -> 0.25): its mean depth is that step's middle
    early = run(tmp_path, depth_profile_suite([1, 0.4, 0.4, 0.4, 0.4]), **changes)["rows"][0]
    assert early["value"] == pytest.approx(0.125, abs=0.03)
    assert (early["verdict"], early["category"]) == ("finding", "early")
    # no gap until the last step (0.75 -> 1.0)
    late = run(tmp_path, depth_profile_suite([1, 1, 1, 1, 0.4]), **changes)["rows"][0]
    assert late["value"] == pytest.approx(0.875, abs=0.03)
    assert (late["verdict"], late["category"]) == ("finding", "late")
    # the gap grows evenly in log space: mean depth 0.5
    mid = run(tmp_path, depth_profile_suite(list(np.exp(np.log(0.4) * np.linspace(0, 1, 5)))), **changes)["rows"][0]
    assert mid["value"] == pytest.approx(0.5, abs=0.03) and mid["category"] == "distributed"
    assert mid["ci_low"] <= mid["value"] <= mid["ci_high"]
    # twice the final gap at the first layer, then half of it recedes: 1 − ∫ g/g_logits = 1 − 1.125
    overshoot = run(tmp_path, depth_profile_suite([1, 0.16, 0.4, 0.4, 0.4]), **changes)["rows"][0]
    assert overshoot["value"] == pytest.approx(-0.125, abs=0.03) and overshoot["category"] == "early"
    # no gap at the logits: undefined, reported as not run
    none = run(tmp_path, depth_profile_suite([1, 0.5, 0.8, 1.2, 1.3]), **changes)["rows"][0]
    assert none["verdict"] == "not run" and "no gap at the logits" in none["reason"]


def test_gap_mean_depth_is_one_minus_the_area_under_the_normalized_gap():
    rng = np.random.default_rng(0)
    depth = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, 6)), [1.0]])
    gap = np.cumsum(rng.normal(0.1, 0.5, size=(50, depth.size)), axis=1)
    gap[:, 0] = 0.0
    area = np.array([np.trapezoid(g / g[-1], depth) for g in gap])     # the trapezoid rule, independently
    got = gap_mean_depth_of(gap, depth)
    positive = gap[:, -1] > 0
    assert np.allclose(got[positive], 1 - area[positive], atol=1e-12)
    assert np.isnan(got[~positive]).all() and (~positive).any()


def ladder_suite(direction: float = -1.0, eps=(0.0, 0.0, 0.1, 0.2, 0.2, 0.3)) -> dict:
    out = {}
    for i, e in enumerate(eps):
        role = "standard" if e == 0 else "adversarial"
        factor = float(np.exp(direction * 3 * e))
        out[f"m{i}"] = make_stats(f"m{i}", role, seed=10 + i, eps=e, noise=0.3, acc=0.99 - 0.05 * e,
                                  mult={"generative": factor, "noise": factor ** 2})
    return out


def test_spearman_on_a_constructed_ladder(tmp_path):
    stats = ladder_suite(-1.0)
    changes = dict(statistic="ladder_spearman", compare={"ladder": ["standard", "adversarial"]},
                   perturbation={"family": "generative"}, layers="logits",
                   expected={"direction": "below", "threshold": 0.0, "margin": 0.5})
    row = run(tmp_path, stats, **changes)["rows"][0]
    ids = sorted(stats)
    x = [stats[m].meta["eps"] for m in ids]
    y = [float(np.nanmean(stats[m].family("generative")[-1].numpy())) for m in ids]
    assert row["value"] == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert row["value"] < -0.8 and row["verdict"] == "supported"
    assert row["subject"] == "ε ~ generative @ logits"
    assert row["n_models"] == {"adversarial": 4, "standard": 2}
    up = run(tmp_path, ladder_suite(+1.0), **changes)["rows"][0]
    assert up["value"] > 0.8 and up["verdict"] == "not supported"
    acc = run(tmp_path, stats, **{**changes, "perturbation": None, "layers": None, "accuracy": "clean_acc"})
    assert acc["rows"][0]["value"] == pytest.approx(scipy.stats.spearmanr(x, [0.99 - 0.05 * e for e in x]).statistic)


def test_spearman_ranks_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, size=7).astype(float), rng.integers(0, 5, size=7).astype(float)
        expected = scipy.stats.spearmanr(x, y).statistic
        got = spearman(x, y)
        assert (np.isnan(expected) and np.isnan(got)) or got == pytest.approx(expected)


def test_no_ladder_gives_not_run(tmp_path):
    stats = ladder_suite(-1.0, eps=(0.0, 0.0, 0.2, 0.2))
    row = run(tmp_path, stats, statistic="ladder_spearman", compare={"ladder": ["standard", "adversarial"]},
              perturbation={"family": "generative"}, layers="logits",
              expected={"direction": "below", "threshold": 0.0, "margin": 0.5})["rows"][0]
    assert row["verdict"] == "not run" and "ladder" in row["reason"]


def test_suppression_ratio_separates_selective_from_non_selective(tmp_path):
    changes = dict(statistic="suppression_ratio", compare={"treatment": "adversarial", "control": "standard"},
                   perturbation={"family": "generative", "reference": "noise"}, layers="logits",
                   expected={"direction": "at_least", "threshold": 1.0, "margin": 0.1})
    base = suite(roles=("standard",))
    alike = {**base, "adv": make_stats("adv", "adversarial", seed=5, mult={"noise": 0.5, "generative": 0.5})}
    row = run(tmp_path, alike, **changes)["rows"][0]
    assert row["value"] == pytest.approx(1.0, abs=0.05) and row["verdict"] == "supported"
    spared = {**base, "adv": make_stats("adv", "adversarial", seed=5, mult={"noise": 0.5})}
    row = run(tmp_path, spared, **changes)["rows"][0]
    assert row["value"] == pytest.approx(0.5, rel=0.1) and row["verdict"] == "not supported"


def test_suppression_ratio_of_trained_labels_against_noise(tmp_path):
    """Specific invariance: the trained tangent is suppressed more than noise, per trained label."""
    changes = dict(statistic="suppression_ratio", perturbation={"labels": "trained", "reference": "noise"},
                   layers="logits", expected={"direction": "above", "threshold": 1.0, "margin": 0.05})
    specific = suite({"rotate": 0.5, "scale": 0.5, "noise": 1.0})
    rows = {r["subject"]: r for r in run(tmp_path, specific, **changes)["rows"]}
    assert set(rows) == {"rotate vs noise @ logits", "scale vs noise @ logits"}
    assert rows["rotate vs noise @ logits"]["value"] == pytest.approx(2.0, rel=0.1)
    assert rows["rotate vs noise @ logits"]["verdict"] == "supported"
    generic = suite({"rotate": 0.5, "scale": 0.5, "noise": 0.5})       # everything dampened alike
    rows = {r["subject"]: r for r in run(tmp_path, generic, **changes)["rows"]}
    assert rows["rotate vs noise @ logits"]["value"] == pytest.approx(1.0, abs=0.1)
    assert rows["rotate vs noise @ logits"]["verdict"] in ("not supported", "inconclusive")


def test_accuracy_difference(tmp_path):
    stats = suite(roles=("standard",))
    stats["adv"] = make_stats("adv", "adversarial", seed=5, acc=0.95)
    row = run(tmp_path, stats, statistic="accuracy_difference", accuracy="clean_acc", perturbation=None, layers=None,
              compare={"treatment": "adversarial", "control": "standard"},
              expected={"direction": "below", "threshold": 0.0, "margin": 0.002})["rows"][0]
    assert row["value"] == pytest.approx(0.95 - 0.99)
    assert row["verdict"] == "supported" and row["subject"] == "clean_acc"


def test_rank_retention_findings(tmp_path):
    stats = suite(rank=[8, 7, 5, 2, 1])
    stats["aug0"] = make_stats("aug0", "augmentation", seed=2, rank=[8, 8, 8, 7.6, 4])
    stats["aug1"] = make_stats("aug1", "augmentation", seed=3, rank=[8, 8, 8, 7.6, 4])
    bins = {"finding": {"collapsed": [0.0, 0.5], "reduced": [0.5, 0.9], "preserved": [0.9, 1.1]}}
    rows = run(tmp_path, stats, statistic="rank_retention", perturbation=None, layers="penultimate",
               compare={"groups": ["standard", "augmentation", "noise"]}, expected=bins)["rows"]
    by = {r["subject"]: r for r in rows}
    assert by["standard: frame @ penultimate"]["value"] == pytest.approx(0.25)
    assert by["standard: frame @ penultimate"]["category"] == "collapsed"
    assert by["augmentation: frame @ penultimate"]["category"] == "preserved"
    assert by["noise: frame"]["verdict"] == "not run"
    ratio = run(tmp_path, stats, statistic="rank_retention_ratio", perturbation=None, layers="penultimate",
                expected={"finding": {"lower": [0, 0.9], "similar": [0.9, 1.1], "higher": [1.1, 1e9]}})["rows"][0]
    assert ratio["value"] == pytest.approx(0.95 / 0.25) and ratio["category"] == "higher"


def test_overall_row_and_depth_selection(tmp_path):
    stats = suite({"rotate": [1, 0.5, 0.5, 0.5, 0.8]}, noise=0.01, augs=("rotate",))
    rows = run(tmp_path, stats, layers={"after_depth": 0.0}, aggregate={"points": "mean", "models": "mean",
                                                                         "overall": "geomean"})["rows"]
    assert [r["subject"] for r in rows] == ["rotate @ conv1", "rotate @ conv2", "rotate @ fc", "rotate @ logits",
                                            "rotate @ all selected layers (geometric mean)"]
    assert rows[-1]["value"] == pytest.approx((0.5 ** 3 * 0.8) ** 0.25, rel=0.02)


def test_models_with_different_layers_share_depth_slots(tmp_path):
    stats = suite({"rotate": 0.5}, augs=("rotate",))
    deep = ["input", "a", "b", "c", "d", "e", "f", "g", "logits"]
    stats["aug0"] = make_stats("aug0", "augmentation", seed=2, mult={"rotate": 0.5}, layers=deep, augs=("rotate",))
    rows = run(tmp_path, stats, layers="all")["rows"]
    assert [r["subject"].split(" @ ")[1] for r in rows] == ["depth 0.00", "depth 0.25", "depth 0.50",
                                                            "depth 0.75", "depth 1.00"]
    assert rows[0]["value"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------- schema


@pytest.mark.parametrize("changes,where,what", [
    ({"compare": {"treatment": "augmentaton", "control": "standard"}}, "compare.treatment", "augmentation"),
    ({"compare": {"treatment": "augmentation", "control": "robust"}}, "compare.control", "role"),
    ({"perturbation": {"family": "nosie"}}, "perturbation.family", "noise"),
    ({"perturbation": {"labels": ["rotat"]}}, "perturbation.labels", "rotate"),
    ({"layers": ["logits", "penultimat"]}, "layers[1]", "penultimate"),
    ({"layers": {"after_depth": 2}}, "layers.after_depth", "[0, 1]"),
    ({"statistic": "sensitivity_ration"}, "statistic", "sensitivity_ratio"),
    ({"expected": {"direction": "lower", "threshold": 1, "margin": 0}}, "expected.direction", "below"),
    ({"expected": {"finding": {"a": [1, 0]}}}, "expected.finding.a", "low < high"),
    ({"bootstrap": {"samples": 10}}, "bootstrap.samples", "≥ 100"),
    ({"tolerance": {"relative": 0.1}}, "tolerance", "unknown key"),
    ({"colour": "red"}, "colour", "key"),
    ({"accuracy": "clean_acc"}, "accuracy", "not used"),
    ({"perturbation": None}, "perturbation", "required"),
])
def test_schema_errors_name_file_and_key(tmp_path, changes, where, what):
    body = {k: v for k, v in {**BASE_TASK, **changes}.items() if v is not None}
    path = write_task(tmp_path, body)
    with pytest.raises(NFBenchError) as err:
        C.load_tasks(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}: {where}:"), message
    assert what in message
    assert "\n" not in message


def test_a_loaded_measure_is_typed(tmp_path):
    """The YAML's mappings become the schema's records, defaults filled in, bins ordered by low edge."""
    body = {**BASE_TASK, "layers": ["logits", {"after_depth": 0.5}], "aggregate": {"overall": "geomean"},
            "perturbation": {"family": ["noise", "generative"], "reference": "noise"},
            "statistic": "suppression_ratio", "expected": {"finding": {"high": [1, 2], "low": [0, 1]}}}
    del body["bootstrap"]
    m = C.load_task(write_task(tmp_path, body)).measures[0]
    assert m.compare == C.Compare(treatment=("augmentation",), control="standard")
    assert m.perturbation == C.Perturbation(family=("noise", "generative"), reference="noise")
    assert m.layers == ("logits", C.Depths(0.5, 1.0))
    assert m.expected == C.Finding((C.Bin("low", 0.0, 1.0), C.Bin("high", 1.0, 2.0)))
    assert m.expected.as_json() == {"finding": {"low": [0.0, 1.0], "high": [1.0, 2.0]}}
    assert m.aggregate == C.Aggregate(overall="geomean") and m.bootstrap == C.Bootstrap()
    trained = C.load_task(write_task(tmp_path, BASE_TASK)).measures[0]
    assert trained.perturbation.trained and trained.expected == C.Threshold("below", 1.0, 0.05)


def test_schema_error_inside_measures_names_the_measure(tmp_path):
    body = {k: v for k, v in BASE_TASK.items() if k not in ("statistic", "expected")}
    body["measures"] = [{"statistic": "sensitivity_ratio", "expected": BASE_TASK["expected"]},
                        {"statistic": "ladder_spearman", "compare": {"ladder": ["standard", "adversrial"]},
                         "expected": BASE_TASK["expected"]}]
    path = write_task(tmp_path, body)
    with pytest.raises(NFBenchError, match=rf"^{path}: measures\[1\]\.compare\.ladder: unknown role 'adversrial'"):
        C.load_tasks(tmp_path)


def test_malformed_yaml_names_the_file(tmp_path):
    path = write_task(tmp_path, "id: t\nclaim: [unclosed\n")
    with pytest.raises(NFBenchError, match=rf"^{path}:.*malformed YAML"):
        C.load_tasks(tmp_path)


def test_id_must_match_the_file_name(tmp_path):
    path = write_task(tmp_path, {**BASE_TASK, "id": "other"}, name="t")
    with pytest.raises(NFBenchError, match=rf"^{path}: id:"):
        C.load_tasks(tmp_path)


def test_wrong_compare_form_for_the_statistic(tmp_path):
    path = write_task(tmp_path, {**BASE_TASK, "compare": {"groups": ["standard"]}})
    with pytest.raises(NFBenchError, match=rf"^{path}: compare\.groups: .*two-group"):
        C.load_tasks(tmp_path)


def test_shipped_tasks_are_valid_and_documented():
    tasks = C.load_tasks(REPO / "tasks")
    assert {"augmentation-invariance", "invariance-depth-profile", "adversarial-noise-suppression",
            "robustness-generalization-tradeoff", "frame-collapse"} <= {t.id for t in tasks}
    for t in tasks:
        assert "nfbench's own" in t.operationalization
        for m in t.measures:
            stated = m.expected.bins if isinstance(m.expected, C.Finding) else m.expected.direction
            assert stated, f"{t.path}: every measure states what would support it, or its finding's bins"


# --------------------------------------------------------------------------------- the model-level design


def seeded(model_id: str, role: str, seed: int, level: float, *, eps: float = 0.0) -> FrameStatistics:
    """A model whose sensitivities are a seed's own level (× `level`): the seed's share of the
    variation, as when a seed fixes the initial weights and data order of every recipe."""
    st = make_stats(model_id, role, seed=100, noise=0.0, eps=eps,
                    mult={"augmentation": level, "noise": level, "generative": level})
    st.meta = {**st.meta, "seed": seed}
    return st


def interval_width(tmp_path, stats: dict, **changes) -> dict:
    row = run(tmp_path, stats, **changes)["rows"][0]
    return {"width": row["ci_high"] - row["ci_low"], "paired": row["paired_by_seed"], "value": row["value"]}


def test_models_of_one_seed_are_resampled_as_pairs(tmp_path):
    levels = {0: 0.6, 1: 1.0, 2: 1.5, 3: 2.2}                 # what the seed does to every recipe
    stats = {}
    for seed, level in levels.items():
        stats[f"std{seed}"] = seeded(f"std{seed}", "standard", seed, level)
        stats[f"aug{seed}"] = seeded(f"aug{seed}", "augmentation", seed, 0.8 * level)
    paired = interval_width(tmp_path, stats, layers=["logits"])
    assert paired["paired"] and paired["value"] == pytest.approx(0.8)
    assert paired["width"] < 1e-9                                # the seed's level cancels in every pair
    for seed in levels:                                          # the same models, with seeds that do not match
        stats[f"aug{seed}"].meta["seed"] = seed + 10
    unpaired = interval_width(tmp_path, stats, layers=["logits"])
    assert not unpaired["paired"] and unpaired["value"] == pytest.approx(0.8) and unpaired["width"] > 0.3


def test_a_role_of_several_eps_is_resampled_within_each_eps(tmp_path):
    """Two seeds at each of two ε with identical sensitivities within an ε: a draw that keeps
    both ε has no model-level spread; one that mixes them would."""
    stats = {f"std{s}": seeded(f"std{s}", "standard", s, 1.0) for s in range(2)}
    for s in range(2):
        stats[f"adv1-{s}"] = seeded(f"adv1-{s}", "adversarial", s, 0.5, eps=0.1)
        stats[f"adv3-{s}"] = seeded(f"adv3-{s}", "adversarial", s, 0.25, eps=0.3)
    changes = dict(compare={"treatment": "adversarial", "control": "standard"}, perturbation={"family": "noise"},
                   layers=["logits"])
    within = interval_width(tmp_path, stats, **changes)
    assert within["value"] == pytest.approx(0.375) and within["width"] < 1e-9
    stats["adv3-1"] = seeded("adv3-1", "adversarial", 1, 0.25, eps=0.25)    # ε 0.3 now has one seed only
    across = interval_width(tmp_path, stats, **changes)
    assert across["width"] > 0.05                                # so the role is resampled as a whole
