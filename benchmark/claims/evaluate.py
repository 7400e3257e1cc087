"""Every measure of every task on a suite's statistics: the rows, their intervals and verdicts."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NFBenchError
from ..metrics import FrameStatistics
from ..vocab import ARCHITECTURE_FAMILIES, TRANSFORMS
from .resample import Group, _Context, _Draws, _NotRun
from .schema import LADDER, LADDER_MIN_LEVELS, PER_GROUP, TWO_GROUP, Bin, Expected, Finding, Measure, Task
from .statistics import STATISTICS


def evaluate(tasks: list[Task], stats: Mapping[str, FrameStatistics], *, seed: int = 0) -> dict:
    """Every measure of every task on one suite's statistics -> JSON-able result."""
    stats = {m: stats[m] for m in sorted(stats)}
    n_points = _check_points(stats)
    suites = sorted({str(st.meta.get("suite", "")) for st in stats.values()} - {""})
    rows: list[dict] = []
    cache: dict = {}
    for task in tasks:
        task_rows: list[dict] = []
        for i, measure in enumerate(task.measures):
            task_rows += _evaluate_measure(task, i, measure, stats, seed, n_points, cache)
        seen: dict[tuple, int] = {}
        for row in task_rows:               # keep (task, statistic, subject) unique: it is the row's key
            key = (row["statistic"], row["subject"])
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                row["subject"] += f" #{seen[key]}"
        rows += task_rows
    return {"suite": "+".join(suites), "seed": int(seed),
            "tasks": {t.id: {"claim": t.claim, "operationalization": t.operationalization,
                             "file": Path(t.path).name} for t in tasks},
            "rows": rows}


def _check_points(stats: Mapping[str, FrameStatistics]) -> int:
    ids = list(stats)
    if not ids:
        return 0
    first = np.asarray(stats[ids[0]].point_ids)
    for m in ids[1:]:
        other = np.asarray(stats[m].point_ids)
        if other.shape != first.shape or not np.array_equal(other, first):
            raise NFBenchError(f"the frame statistics of {ids[0]} and {m} are on different evaluation points; "
                               f"every model of a suite must be evaluated on the suite's points "
                               f"(rerun `nfbench frames` and `nfbench metrics`)")
    return int(first.shape[0])


def group_key(name: str) -> str:
    """The model meta key a group name selects by: "architecture" for a family, else "role"."""
    return "architecture" if name in ARCHITECTURE_FAMILIES else "role"


def _models_of(stats, groups, within=()) -> list[str]:
    """The models of any of `groups` (roles or architecture families) that are also of each of `within`."""
    def of(st, name):
        return st.meta.get(group_key(name)) == name
    return [m for m, st in stats.items() if any(of(st, g) for g in groups) and all(of(st, w) for w in within)]


def ladder_models(stats: Mapping[str, FrameStatistics], roles=("standard", "adversarial"), within=()) -> list[str]:
    """The models of an ε ladder: those of `roles` (and of each of `within`) on one ε scale, L∞
    radii (a model of another threat model, e.g. L2 at ε = 0.5, is not a point of it)."""
    return [m for m in _models_of(stats, roles, within) if stats[m].meta.get("threat_model") in (None, "Linf")]


@dataclass(frozen=True)
class _Unit:
    """One thing a measure is computed on: the rows' label, the groups of models, the subject the
    statistic sees and the number of models per role; or, where it cannot be computed, the reason."""

    label: str
    groups: dict[Group, list[str]] = field(default_factory=dict)
    subject: dict = field(default_factory=dict)
    n_models: dict[str, int] = field(default_factory=dict)
    reason: str | None = None


def _units(measure: Measure, stats) -> list[_Unit]:
    """What a measure is computed on: one unit per group design and subject."""
    design = STATISTICS[measure.statistic].design
    within = measure.compare.within
    # the groups of models
    if design == TWO_GROUP:
        control = measure.compare.control
        treatments = measure.compare.treatment
        # rows name their groups, except a single treatment role's (the training-routine claims')
        named = len(treatments) > 1 or group_key(treatments[0]) == "architecture"
        designs = [(t if named else "", {"treatment": _models_of(stats, [t], within),
                                                       "control": _models_of(stats, [control], within)}, t, control)
                   for t in treatments]
    elif design == PER_GROUP:
        designs = [(g, {"role": _models_of(stats, [g], within)}, g, None) for g in measure.compare.groups]
    else:
        roles = measure.compare.ladder
        ids = ladder_models(stats, roles, within)
        levels: dict[float, list[str]] = {}          # ε -> its models
        for m in ids:
            levels.setdefault(float(stats[m].meta.get("eps") or 0.0), []).append(m)
        designs = [("ε ~", levels, "+".join(roles), None)]

    units: list[_Unit] = []
    for prefix, groups, treatment, control in designs:
        label = (f"{treatment}/{control}:" if design == TWO_GROUP and prefix
                 else f"{prefix}:" if design == PER_GROUP else prefix)
        empty = [name for name, ids in groups.items() if not ids]
        if design == LADDER:
            if not groups:
                units.append(_Unit(_join(label, _what(measure)),
                                   reason=f"no models with {_described(treatment, within)}"))
                continue
            if len(groups) < LADDER_MIN_LEVELS:
                units.append(_Unit(_join(label, _what(measure)),
                                   reason=f"no ε ladder: {len(groups)} distinct ε among the {treatment} models "
                                          f"(needs {LADDER_MIN_LEVELS})"))
                continue
        elif empty:
            group = {"treatment": treatment, "control": control, "role": treatment}[empty[0]]
            units.append(_Unit(_join(label, _what(measure)),
                               reason=f"no models with {_described(group, within)} in this suite"))
            continue
        key = group_key(treatment.split("+")[0])
        for subject, sub_groups in _subjects(measure, groups, stats, treatment):
            if isinstance(sub_groups, str):
                units.append(_Unit(_join(label, subject), reason=sub_groups))
                continue
            units.append(_Unit(_join(label, subject), sub_groups, _subject_dict(measure, subject),
                               count_by(sub_groups, stats, key)))
    return units


def _described(group: str, within: tuple[str, ...]) -> str:
    """`role noise`, or `role standard and architecture transformer` for a group restricted to `within`."""
    return " and ".join(f"{group_key(name)} {name}" for name in (group, *within))


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _what(measure: Measure) -> str:
    p = measure.perturbation
    if measure.accuracy is not None:
        return measure.accuracy
    if p is None:
        return "frame"
    if p.labels is not None:
        return "trained augmentations" if p.trained else ", ".join(p.labels)
    return ", ".join(p.family)


def _subject_dict(measure: Measure, subject: str) -> dict:
    p = measure.perturbation
    if measure.accuracy is not None and p is None:
        return {"accuracy": measure.accuracy}
    if p is None:
        return {}
    name = subject.split(" vs ")[0]
    reference = {"reference": p.reference} if p.reference is not None else {}
    if p.labels is not None and measure.aggregate.labels:
        return {"labels": tuple(name.split("+")), **reference}
    return {"label": name, **reference} if p.labels is not None else {"family": name, **reference}


def _subjects(measure: Measure, groups: dict[Group, list[str]], stats, treatment: str):
    """(subject, groups) per perturbation subject; groups is a reason string when not runnable."""
    p = measure.perturbation
    if p is None:
        return [(measure.accuracy or "frame", groups)]
    vs = f" vs {p.reference}" if p.reference is not None else ""
    if p.family is not None:
        return [(f + vs, groups) for f in p.family]
    pooled = measure.aggregate.labels is not None
    if not p.trained:
        return [("+".join(p.labels) + vs, groups)] if pooled else [(label + vs, groups) for label in p.labels]
    trained: dict[str, None] = {}
    for m in groups["treatment"]:
        for label in stats[m].meta.get("augmentations") or []:
            trained[label] = None
    if not trained:
        return [("trained augmentations", f"the {treatment} models record no trained augmentations "
                                          f"(meta.augmentations)")]
    order = {label: i for i, label in enumerate(TRANSFORMS)}
    ordered = sorted(trained, key=lambda aug: (order.get(aug, len(order)), aug))
    if pooled:                 # the labels every treatment model was trained with, as one subject
        common = [aug for aug in ordered
                  if all(aug in (stats[m].meta.get("augmentations") or []) for m in groups["treatment"])]
        if not common:
            return [("trained augmentations", f"the {treatment} models share no trained augmentation to pool")]
        return [("+".join(common) + vs, groups)]
    out = []
    for label in ordered:
        with_label = [m for m in groups["treatment"] if label in (stats[m].meta.get("augmentations") or [])]
        out.append((label + vs, {**groups, "treatment": with_label}))
    return out


def count_by(groups: dict[Group, list[str]], stats, key: str = "role") -> dict[str, int]:
    """How many of the groups' models have each value of meta `key` (role or architecture)."""
    counts: dict[str, int] = {}
    for m in sorted({m for ids in groups.values() for m in ids}):
        value = str(stats[m].meta.get(key))
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def _stratum(st: FrameStatistics) -> tuple:
    """What makes models of one group different recipes rather than seeds of one: ε and the
    augmentations trained with."""
    return (float(st.meta.get("eps") or 0.0), tuple(st.meta.get("augmentations") or ()))


def _rng(seed: int, *key: Any) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32("|".join(map(str, key)).encode())])


def _evaluate_measure(task: Task, index: int, measure: Measure, stats, seed: int, n_points: int,
                      cache: dict) -> list[dict]:
    base = {"task": task.id, "claim": task.claim, "statistic": measure.statistic,
            "expected": expected_text(measure.expected), "expectation": measure.expected.as_json(),
            "confidence": measure.bootstrap.confidence, "n_points": n_points}
    rows = []
    for unit in _units(measure, stats):
        if unit.reason is not None:
            rows.append(_not_run(base, unit.label, unit.reason, unit.n_models))
            continue
        label, groups, subject, n_models = unit.label, unit.groups, unit.subject, unit.n_models
        try:
            computed, paired = _replicates(measure, stats, groups, subject, label,
                                           _rng(seed, task.id, index, label), n_points, cache)
        except _NotRun as exc:
            rows.append(_not_run(base, label, str(exc), n_models))
            continue
        rows += [{**_row(base, name, reps, measure, n_models), "paired_by_seed": paired} for name, reps in computed]
    return rows


def _replicates(measure: Measure, stats, groups: dict[str, list[str]], subject: dict, label: str,
                rng: np.random.Generator, n_points: int, cache: dict,
                stream: tuple | None = None) -> tuple[list[tuple[str, np.ndarray]], bool]:
    """The statistic's rows on these groups: ([(name, replicates [R])], paired by seed); _NotRun if
    undefined.  `stream` names a random stream whose draws `cache` shares between calls."""
    draws = _Draws(rng, n_points, measure.bootstrap.samples,
                   {g: [(stats[m].meta.get("seed"), _stratum(stats[m])) for m in ids] for g, ids in groups.items()},
                   stream, cache)
    ctx = _Context(stats, measure, groups, subject, label, draws, cache)
    return STATISTICS[measure.statistic].fn(ctx), draws.paired


def group_replicates(measure: Measure, stats: Mapping[str, FrameStatistics], groups: dict[str, list[str]], *,
                     seed: int, key: str, cache: dict | None = None) -> list[tuple[str, np.ndarray | str]]:
    """A measure on explicitly named groups of models rather than roles (the leaderboard scores
    one model against the suite's standard models): per subject row, (name, replicates [R]) with
    replicate 0 the estimate, or (name, reason) where it cannot be computed.  Drawn exactly as
    the claims draw, on the stream that measure 0 of a task with id `key` draws for a subject.
    Calls sharing a `cache` share the draws and the point aggregates of models they have in
    common: the models must be the same under the same ids."""
    out: list[tuple[str, np.ndarray | str]] = []
    stats = {m: stats[m] for m in sorted({m for ids in groups.values() for m in ids})}
    n_points = _check_points(stats)
    for subject, sub_groups in _subjects(measure, groups, stats, "treatment"):
        if isinstance(sub_groups, str):
            out.append((subject, sub_groups))
            continue
        try:
            computed, _ = _replicates(measure, stats, sub_groups, _subject_dict(measure, subject), subject,
                                      _rng(seed, key, 0, subject), n_points, {} if cache is None else cache,
                                      (seed, key, 0, subject))
        except _NotRun as exc:
            out.append((subject, str(exc)))
            continue
        out += computed
    return out


def interval(reps: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """The percentile interval of the bootstrap replicates reps[1:]; (None, None) when more than
    1 − confidence of them are undefined (the row's reason says how many)."""
    boot = reps[1:]
    finite = boot[np.isfinite(boot)]
    alpha = 1 - confidence
    if 1 - len(finite) / len(boot) > alpha or len(finite) == 0:
        return None, None
    low, high = (float(q) for q in np.quantile(finite, [alpha / 2, 1 - alpha / 2]))
    return low, high


def _not_run(base: dict, subject: str, reason: str, n_models: dict) -> dict:
    return {**base, "subject": subject, "value": None, "ci_low": None, "ci_high": None,
            "verdict": "not run", "category": None, "reason": reason, "n_models": n_models}


def _row(base: dict, subject: str, reps: np.ndarray, measure: Measure, n_models: dict) -> dict:
    value = float(reps[0])
    if not math.isfinite(value):
        return _not_run(base, subject, "the statistic is undefined on these data "
                                       "(no defined sensitivities, or a zero denominator)", n_models)
    boot = reps[1:]
    undefined = 1 - np.isfinite(boot).sum() / len(boot)
    low, high = interval(reps, measure.bootstrap.confidence)
    v, category, category_range = verdict(measure.expected, value, low, high)
    row = {**base, "subject": subject, "value": value, "ci_low": low, "ci_high": high, "verdict": v,
           "category": category, "reason": None, "n_models": n_models}
    if category_range is not None:
        row["category_range"] = category_range
    if undefined > 0:
        row["undefined_fraction"] = float(undefined)
    if low is None:
        row["reason"] = f"{undefined:.0%} of the bootstrap replicates are undefined"
    return row


def verdict(expected: Expected, value: float, low: float | None,
            high: float | None) -> tuple[str, str | None, str | None]:
    """(verdict, category, category range) of a point estimate and its interval (see module doc)."""
    if isinstance(expected, Finding):
        bins = expected.bins
        category = _bin(bins, value)
        if low is None or high is None:
            return "finding", category, f"{category}..undetermined"
        lo_bin, hi_bin = _bin(bins, low), _bin(bins, high)
        return "finding", category, (None if lo_bin == hi_bin == category else f"{lo_bin}..{hi_bin}")
    if low is None or high is None:
        return "inconclusive", None, None
    direction, t, m = expected.direction, expected.threshold, expected.margin
    boundary = t - m if direction in ("below", "at_least") else t + m
    claim_side = {"below": high < boundary, "at_most": high <= boundary,
                  "above": low > boundary, "at_least": low >= boundary}[direction]
    other_side = {"below": low >= boundary, "at_most": low > boundary,
                  "above": high <= boundary, "at_least": high < boundary}[direction]
    return ("supported" if claim_side else "not supported" if other_side else "inconclusive"), None, None


def _bin(bins: tuple[Bin, ...], value: float) -> str:
    for i, (name, lo, hi) in enumerate(bins):
        if lo <= value < hi or (i == len(bins) - 1 and value == hi):
            return name
    return "outside the bins"


def expected_text(expected: Expected) -> str:
    """Human text of an expectation: `< 0.95 (threshold 1, margin 0.05)`, or the finding's bins."""
    if isinstance(expected, Finding):
        bins = expected.bins
        return "finding: " + ", ".join(f"{name} [{lo:.3g}, {hi:.3g}{']' if i == len(bins) - 1 else ')'}"
                                       for i, (name, lo, hi) in enumerate(bins))
    d, t, m = expected.direction, expected.threshold, expected.margin
    sign = {"below": "<", "above": ">", "at_least": "≥", "at_most": "≤"}[d]
    boundary = t - m if d in ("below", "at_least") else t + m
    return f"{sign} {boundary:.3g} (threshold {t:.3g}, margin {m:.3g})"
