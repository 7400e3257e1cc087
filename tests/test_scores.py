"""Leaderboard scores: values by hand, intervals against an independent bootstrap, and the same
numbers as the claims for the same quantity (one computation, `benchmark.scores`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from benchmark import claims, scores
from benchmark.errors import NFBenchError
from benchmark.metrics import FrameStatistics
from tests.conftest import synthetic_stats

NAN = float("nan")
LABELS = ["rotate", "translate_x", "noise/0", "noise/1", "vae/0"]
FAMILIES = ["augmentation", "augmentation", "noise", "noise", "generative"]


def hand_stats(penultimate: list[list[float]], rank: list[float], model_id: str, role: str = "standard",
               seed: int | None = None) -> FrameStatistics:
    """A frame [rotate, translate_x, noise/0, noise/1, vae/0] at B points over the layers input
    (rank 5), hidden (the penultimate: its sensitivities and ranks given per point) and logits."""
    points = len(penultimate)
    sensitivity = torch.ones(3, points, 5, dtype=torch.float64)
    sensitivity[1] = torch.tensor(penultimate, dtype=torch.float64)
    return synthetic_stats(model_id, sensitivity, [[5.0] * points, rank, [1.0] * points],
                           layers=["input", "hidden", "logits"], labels=LABELS, families=FAMILIES, role=role,
                           seed=seed)


MODEL = hand_stats([[0.2, 0.5, 0.1, 0.3, 0.6],       # point 0: rotate, translate_x, noise/0, noise/1, vae/0
                    [0.4, NAN, 0.2, 0.2, 0.2]],      # point 1: translate_x undefined there
                   rank=[4.0, 2.0], model_id="m", role="augmentation")
STANDARD = {"a": hand_stats([[0.5, 0.2, 0.4, 0.4, 0.4]] * 2, rank=[3.0, 3.0], model_id="a", seed=0),
            "b": hand_stats([[0.7, 0.3, 0.4, 0.4, 0.4]] * 2, rank=[3.0, 3.0], model_id="b", seed=1)}


def test_scores_against_the_standard_models_by_hand():
    reference = scores.reference_statistics(STANDARD, None)
    values, intervals, _ = scores.scores(MODEL, reference, {"clean_acc": 0.9, "n_test": 10, "robust_acc": 0.25})
    assert values["noise_suppression"] == pytest.approx(0.5)                          # 0.2 / 0.4
    # per tangent, [M_std / M_model] / [M_std(noise) / M_model(noise)]: (0.6/0.3)/2, (0.25/0.5)/2
    assert values[scores.BY_LABEL] == pytest.approx({"rotate": 1.0, "translate_x": 0.25})
    # pooled: per point the geometric mean of the tangents (point 1 has none: translate_x undefined)
    model, standard = np.sqrt(0.2 * 0.5), (np.sqrt(0.5 * 0.2) + np.sqrt(0.7 * 0.3)) / 2
    assert values["augmentation_invariance"] == pytest.approx((standard / model) / (0.4 / 0.2))
    assert values["on_manifold_retention"] == pytest.approx(2.0)                      # 0.4 / 0.2
    assert values["rank_retention"] == pytest.approx(3.0 / 5.0)
    assert (values["clean_acc"], values["robust_acc"]) == (0.9, 0.25)
    # Wilson at 95 %: 9 of 10 -> (0.5958, 0.9821); the robust accuracy records no count: no interval
    assert intervals["clean_acc"] == [pytest.approx(0.5958, abs=1e-4), pytest.approx(0.9821, abs=1e-4)]
    assert intervals["robust_acc"] is None


def test_undefined_scores_are_none_and_frames_must_match():
    reference = scores.reference_statistics(STANDARD, None)
    no_vae = MODEL.at_layers(["input", "hidden", "logits"])
    no_vae.sensitivity[..., 4] = NAN
    values, intervals, _ = scores.scores(no_vae, reference, {})
    assert values["on_manifold_retention"] is None and intervals["on_manifold_retention"] is None
    other = hand_stats([[0.2, 0.5, 0.1, 0.3, 0.6]] * 2, rank=[1.0, 1.0], model_id="x")
    other.labels[1] = "scale"
    with pytest.raises(NFBenchError, match="differ in augmentations"):
        scores.scores(other, reference, {})
    with pytest.raises(NFBenchError, match="no standard models"):
        scores.reference_statistics({"m": MODEL}, None)


def many_points(model_id: str, role: str, seed: int, scale: float, n: int = 64) -> FrameStatistics:
    rng = np.random.default_rng(seed)
    rows = rng.lognormal(np.log(scale), 0.5, size=(n, 5)).tolist()
    return hand_stats(rows, rank=rng.uniform(1, 4, n).tolist(), model_id=model_id, role=role, seed=seed)


def test_an_interval_agrees_with_an_independent_bootstrap_of_the_points():
    """noise sensitivity against one standard model: the percentile interval of a bootstrap of
    the per-point values written here, with its own random draws (Monte Carlo error: the two
    intervals' ends agree to a few percent of their width)."""
    model, standard = many_points("m", "augmentation", 1, 0.5), many_points("s", "standard", 2, 1.0)
    _, intervals, _ = scores.scores(model, scores.reference_statistics({"s": standard}, None), {})
    noise = [st.sensitivity[1, :, 2:4].numpy().mean(1) for st in (model, standard)]
    rng = np.random.default_rng(12345)
    draws = rng.integers(0, 64, size=(20000, 64))
    ratios = noise[0][draws].mean(1) / noise[1][draws].mean(1)
    low, high = np.quantile(ratios, [0.025, 0.975])
    assert intervals["noise_suppression"] == [pytest.approx(low, abs=0.05 * (high - low)),
                                              pytest.approx(high, abs=0.05 * (high - low))]


def test_the_leaderboard_and_the_claims_give_one_value_and_interval_for_one_quantity(tmp_path):
    """Per-tangent augmentation invariance of the one augmentation model: the claims row of a task
    that states it (claim 1 (b)'s measure) equals the leaderboard's score and interval."""
    suite = {"a": many_points("a", "standard", 0, 1.0), "b": many_points("b", "standard", 1, 1.2),
             "m": many_points("m", "augmentation", 0, 0.6)}
    task = {"id": scores.BY_LABEL, "claim": "x", "operationalization": "x",
            "compare": {"treatment": "augmentation", "control": "standard"},
            "statistic": "suppression_ratio", "layers": ["penultimate"],
            "perturbation": {"labels": ["rotate", "translate_x"], "reference": "noise"},
            "expected": {"direction": "above", "threshold": 1.0, "margin": 0.05},
            "bootstrap": {"samples": scores.SAMPLES, "confidence": scores.CONFIDENCE}}
    path = tmp_path / f"{scores.BY_LABEL}.yaml"
    path.write_text(yaml.safe_dump(task))
    rows = {r["subject"]: r for r in claims.evaluate([claims.load_task(path)], suite)["rows"]}
    values, intervals, _ = scores.scores(suite["m"], scores.reference_statistics(suite, None), {})
    for label in ("rotate", "translate_x"):
        row = rows[f"{label} vs noise @ penultimate"]
        assert values[scores.BY_LABEL][label] == row["value"]
        assert intervals[scores.BY_LABEL][label] == [row["ci_low"], row["ci_high"]]


def test_the_scores_are_the_vocabulary_s_leaderboard_scores_in_column_order():
    from benchmark.vocab import LEADERBOARD_SCORES

    assert tuple(scores.SCORES) == LEADERBOARD_SCORES
