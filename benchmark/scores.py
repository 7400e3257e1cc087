"""The leaderboard's scores: each one a claims statistic of one model against the suite's standard models.

A frame score is a measure in the task files' form (tasks/*.yaml, `benchmark.claims`) computed
by the claims' own code (`claims.group_replicates`), the scored model as the treatment and the
suite's standard models as the control, at the penultimate layer.  So a leaderboard value and a
claims row of the same quantity are one computation, resampled the same way (the evaluation
points, and the standard models by seed) with the same percentile interval; and since every
model is drawn with the same random stream, replicate r is one draw of points for all models
(what rank ranges need).  Accuracies carry their Wilson interval on the points they were
measured on.

The standard models enter only through their statistics at the input and the penultimate layer
(`reference_statistics`): what the suite's entries publish beside them, so that a submission is
scored without the suite's models.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from .claims import STATISTICS, group_replicates, interval, parse_measure
from .claims.schema import PER_GROUP
from .errors import NFBenchError
from .metrics import FrameStatistics, binomial_interval
from .regression import ROUNDING, allowed_change

__all__ = ["Score", "SCORES", "BY_LABEL", "LAYERS", "CONFIDENCE", "reference_statistics", "score_replicates",
           "scores", "rank_ranges", "encode_replicates", "decode_replicates", "reproduces"]

LAYERS = ("input", "penultimate")           # what the scores read of a model's statistics
CONFIDENCE = 0.95
SAMPLES = 2000                              # bootstrap replicates, as the claims' tasks draw
EXACT = {"relative": 0.0, "absolute": 0.0}


@dataclass(frozen=True)
class Score:
    """One leaderboard column.

    better:     the end the leaderboard sorts first ("lower" or "higher")
    measure:    the claims measure (task-file form, without compare and expected); None for an accuracy
    tolerance:  how far a recomputed value may move and still reproduce (`regression.allowed_change`)
    """

    title: str
    better: str
    definition: str
    measure: Mapping | None = None
    tolerance: Mapping = field(default_factory=lambda: dict(ROUNDING))


def _penultimate(statistic: str, **perturbation) -> dict:
    """A measure at the penultimate layer, aggregated and drawn as the claims' tasks are."""
    return {"statistic": statistic, "layers": ["penultimate"],
            **({"perturbation": perturbation} if perturbation else {}),
            "aggregate": {"points": "mean", "models": "mean"},
            "bootstrap": {"samples": SAMPLES, "confidence": CONFIDENCE}}


AUGMENTATIONS = "augmentations"             # stands for the frame's augmentation labels in a measure
SCORES = {
    "augmentation_invariance": Score(
        "aug. invariance ↑", "higher",
        "claims statistic suppression_ratio at the penultimate layer, pooled over the frame's augmentation "
        "tangents (per point, their geometric mean), with noise as the reference family: the factor by which "
        "the model suppresses the tangents relative to the suite's standard models over the factor by which "
        "it suppresses noise (> 1: more invariant to the augmentations than a standard model, beyond any "
        "general change in sensitivity; claim 1 (b) of tasks/augmentation-invariance.yaml)",
        {**_penultimate("suppression_ratio", labels=AUGMENTATIONS, reference="noise"),
         "aggregate": {"points": "mean", "models": "mean", "labels": "geomean"}}),
    "noise_suppression": Score(
        "noise sensitivity ↓", "lower",
        "claims statistic sensitivity_ratio at the penultimate layer for the noise family: the model's mean "
        "relative sensitivity along random directions over the suite's standard models' (< 1: suppresses "
        "noise more than a standard model; tasks/adversarial-noise-suppression.yaml)",
        _penultimate("sensitivity_ratio", family=["noise"])),
    "on_manifold_retention": Score(
        "on-manifold retention ↑", "higher",
        "claims statistic sensitivity_contrast at the penultimate layer: the model's mean relative "
        "sensitivity along the autoencoder's decoder directions over that along noise (> 1: on-manifold "
        "changes are kept more than random ones)",
        _penultimate("sensitivity_contrast", family=["generative"], reference="noise")),
    "rank_retention": Score(
        "rank retention ↑", "higher",
        "claims statistic rank_retention at the penultimate layer: the effective rank of the whole frame "
        "there as a fraction of its rank at the input (how much of the frame survives; "
        "tasks/frame-collapse.yaml)",
        _penultimate("rank_retention")),
    "clean_acc": Score("clean acc.", "higher", "accuracy on the suite's evaluation split", tolerance=EXACT),
    # PGD's sign steps amplify rounding: on another CPU's kernels one image of 256 changed for 6 of 48 models
    "robust_acc": Score("robust acc.", "higher", "accuracy under the suite's L∞ attack at its ε (PGD or "
                        "AutoAttack: the entry's `attack`), on the suite's evaluation points",
                        tolerance={"relative": 0.0, "absolute": 0.01}),
}
# augmentation_invariance per tangent: the same measure with a row per augmentation label
BY_LABEL = "augmentation_invariance_by_label"
_ACCURACY_POINTS = {"clean_acc": "n_test", "robust_acc": "n_attacked"}


def is_reference(record: Mapping, architecture: str | None) -> bool:
    """Whether a model (its record, or its leaderboard entry) is one of the models every score is
    relative to: the suite's standard models of the architecture family its `leaderboard.reference`
    names (None: of any).  One reference for every entry, whatever its architecture, so a standard
    transformer's scores against standard CNNs show what its architecture does."""
    return record.get("role") == "standard" and architecture in (None, record.get("architecture"))


def reference_statistics(stats: Mapping[str, FrameStatistics], architecture: str | None) -> dict[str, FrameStatistics]:
    """The suite's reference models' (`is_reference`) statistics at the layers the scores read."""
    reference = {m: st.at_layers(_layers(st)) for m, st in sorted(stats.items()) if is_reference(st.meta, architecture)}
    if not reference:
        family = f" {architecture}" if architecture else ""
        raise NFBenchError(f"the suite has no standard{family} models with statistics; the scores are relative to "
                           f"them (leaderboard.reference names their architecture family)")
    return reference


def _layers(st: FrameStatistics) -> list[str]:
    if st.penultimate is None:
        raise NFBenchError(f"model {st.meta.get('id', '?')}: no penultimate layer was observed "
                           f"(layers: {', '.join(st.layers)}); the scores are defined there")
    return ["input", st.layers[st.penultimate]]


def _measure(name: str, labels: list[str], pooled: bool = True):
    raw = dict(SCORES[name].measure)
    if raw.get("perturbation", {}).get("labels") == AUGMENTATIONS:
        raw["perturbation"] = {**raw["perturbation"], "labels": labels}
        if not pooled:
            raw["aggregate"] = {k: v for k, v in raw["aggregate"].items() if k != "labels"}
    return parse_measure(raw, f"leaderboard score {name}")


def score_replicates(stats: FrameStatistics, reference: Mapping[str, FrameStatistics], *, seed: int = 0,
                     cache: dict | None = None) -> dict[str, np.ndarray | dict[str, np.ndarray] | None]:
    """Each frame score's bootstrap replicates [R] (replicate 0: the estimate; None where the
    suite's frames do not define it); BY_LABEL maps each augmentation label to its replicates.

    Scoring several models against one reference, pass one `cache` to all: the reference's draws
    and aggregates are then computed once (the scored model is keyed by its own id)."""
    scored = f"{stats.meta.get('id', 'model')} (scored)"
    pool = {**reference, scored: stats.at_layers(_layers(stats))}
    labels = list(dict.fromkeys(lb for lb, f in zip(stats.labels, stats.families) if f == "augmentation"))
    for m, st in reference.items():
        theirs = [lb for lb, f in zip(st.labels, st.families) if f == "augmentation"]
        if set(theirs) != set(labels):
            raise NFBenchError(f"the model's frame and the reference model {m}'s differ in augmentations "
                               f"({', '.join(sorted(set(theirs) ^ set(labels)))}); both must come from the "
                               f"suite's perturbation settings")

    def rows(name: str, key: str, pooled: bool = True) -> list[np.ndarray | None]:
        if SCORES[name].measure.get("perturbation", {}).get("labels") == AUGMENTATIONS and not labels:
            return [None]                                       # a frame without augmentations
        measure = _measure(name, labels, pooled)
        groups = ({"role": [scored]} if STATISTICS[measure.statistic].design == PER_GROUP   # within the model
                  else {"treatment": [scored], "control": list(reference)})
        return [reps if isinstance(reps, np.ndarray) else None
                for _, reps in group_replicates(measure, pool, groups, seed=seed, key=key, cache=cache)]

    out: dict = {name: rows(name, name)[0] for name, score in SCORES.items() if score.measure is not None}
    out[BY_LABEL] = dict(zip(labels, rows("augmentation_invariance", BY_LABEL, pooled=False))) if labels else {}
    return out


def scores(stats: FrameStatistics, reference: Mapping[str, FrameStatistics], accuracy: Mapping, *,
           seed: int = 0, cache: dict | None = None) -> tuple[dict, dict, dict]:
    """(values, intervals, replicates) of one model's scores: the estimate of each, its 95 %
    interval ([low, high], None where undefined), and each frame score's bootstrap replicates
    (`score_replicates`); BY_LABEL holds the per-augmentation values and intervals alike."""
    reps = score_replicates(stats, reference, seed=seed, cache=cache)
    values, intervals = {}, {}
    for name in SCORES:
        if name in _ACCURACY_POINTS:
            values[name], intervals[name] = _accuracy(accuracy, name)
        else:
            values[name], intervals[name] = _estimate(reps[name])
    by_label = {label: _estimate(r) for label, r in reps[BY_LABEL].items()}
    values[BY_LABEL] = {label: v for label, (v, _) in by_label.items()}
    intervals[BY_LABEL] = {label: i for label, (_, i) in by_label.items()}
    return values, intervals, {name: r for name, r in reps.items() if name != BY_LABEL}


def rank_ranges(replicates: Mapping[str, np.ndarray], better: str,
                confidence: float = CONFIDENCE) -> dict[str, tuple[int, int]]:
    """Each model's range of ranks (1 = best): the central `confidence` of the ranks it takes when
    the models are ranked on every bootstrap replicate (replicates[m][1:], drawn alike for all
    models); a tie shares the better rank, an undefined value ranks last."""
    ids = list(replicates)
    if not ids:
        return {}
    v = np.stack([np.asarray(replicates[m], dtype=np.float64)[1:] for m in ids])          # [n, R]
    v = np.where(np.isfinite(v), -v if better == "higher" else v, np.inf)
    ranks = 1 + (v[None, :, :] < v[:, None, :]).sum(1)                                     # [n, R]
    alpha = 1 - confidence
    low = np.quantile(ranks, alpha / 2, axis=1, method="lower")
    high = np.quantile(ranks, 1 - alpha / 2, axis=1, method="higher")
    return {m: (int(lo), int(hi)) for m, lo, hi in zip(ids, low, high)}


def encode_replicates(reps: np.ndarray) -> str:
    """Bootstrap replicates as an entry stores them: float32, little-endian, base64 (8 kB for 2,001)."""
    return base64.b64encode(np.asarray(reps, dtype="<f4").tobytes()).decode("ascii")


def decode_replicates(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


def _estimate(reps: np.ndarray | None) -> tuple[float | None, list[float] | None]:
    if reps is None or not math.isfinite(float(reps[0])):
        return None, None
    low, high = interval(reps, CONFIDENCE)
    return float(reps[0]), None if low is None else [low, high]


def _accuracy(accuracy: Mapping, name: str) -> tuple[float | None, list[float] | None]:
    value, n = accuracy.get(name), accuracy.get(_ACCURACY_POINTS[name])
    if value is None or not n:
        return value, None
    z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)
    return value, list(binomial_interval(value, n, z))


def reproduces(old: float | None, new: float | None, tolerance: Mapping) -> bool:
    """Whether a recomputed value reproduces a recorded one (both undefined, or within tolerance)."""
    if old is None or new is None:
        return old is None and new is None
    return abs(new - old) <= allowed_change(old, tolerance)
