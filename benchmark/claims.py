"""Claims as declarative tasks: tasks/*.yaml -> statistics -> verdicts with bootstrap intervals.

A task file states one claim of the paper in words, nfbench's own measurable version of it,
and one or more *measures*: which roles to compare, which perturbation, at which layers, with
which statistic, and what outcome would support it.  `load_tasks` validates the files (every
error names the file and the key path); `evaluate` computes every measure on a suite's
per-model `FrameStatistics` and returns a JSON-able table of rows with point estimates,
bootstrap intervals and verdicts.  Pure: no file I/O except reading the task YAMLs.

Role aggregates.  Every statistic is built from *role aggregates*:

    M_g(q, l) = agg_models_{m ∈ g} ( agg_points_{b} q_m[l, b] )

for a group g of models (a role, or the models of one ε), a per-point quantity q (relative
sensitivity of a family or label, or the frame's effective rank) and a layer slot l; both
aggregations are nan-aware (`mean` or `geomean`, declared in the task's `aggregate`).  With
`aggregate: {labels: geomean}` the selected labels are one subject: q is, per point, the
geometric mean of their relative sensitivities (pooling tangents that one claim is about).

Bootstrap.  Paired and hierarchical: each replicate draws the evaluation points with
replacement once, and the same draw is used for every model (the points are shared by all
models of a suite); then, within each group that has several models (seeds, or several models
of one role), the models are drawn with replacement — by seed, one draw for all groups, when
every group holds one model of each of the same training seeds (a local recipe's seed fixes its
initial weights and data order, so the standard and the augmentation model of one seed are a
matched pair, and pairing removes what the seed alone contributes to their difference), and
within strata when a group holds several seeds of each of several recipes (the adversarial
models of each ε): the design fixes how many models each ε has, so a replicate keeps that, and
the spread between the ε levels, which no retraining changes, does not widen the interval.  The
statistic is recomputed on every replicate; the interval is the percentile interval.  Replicate 0
is the data themselves (all points once, every model once): its value is the reported point
estimate.  The random stream of each (task, measure, subject) is seeded from `seed` and that
name alone, so the same inputs give the same table and adding a task does not change the others.

Verdicts (`expected: {direction, threshold, margin}`): the boundary is threshold − margin
(`below`, `at_least`) or threshold + margin (`above`, `at_most`).  `supported` when the whole
interval lies on the claimed side of the boundary, `not supported` when it lies wholly on the
other side, `inconclusive` when it contains the boundary (or when more than 1 − confidence of
the replicates are undefined).  Findings (`expected: {finding: {bins}}`) are reported, not
tested: verdict `finding`, `category` the bin of the point estimate and `category_range` the
bins the interval touches.  A measure that cannot be computed on the suite (a role without
models, a perturbation absent from the frames, no ε ladder) gives `not run` rows with the
reason, never an exception.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import read_yaml
from .errors import NFBenchError, one_of
from .metrics import FrameStatistics, nanmean
from .vocab import FAMILIES, ROLES, TRANSFORMS

__all__ = ["Task", "Measure", "STATISTICS", "load_tasks", "load_task", "evaluate", "verdict", "expected_text"]

TWO_GROUP, PER_ROLE, LADDER = "two-group", "per-role", "ladder"
LAYER_NAMES = ("input", "penultimate", "logits", "all")
ACCURACIES = ("clean_acc", "robust_acc", "rotated_acc", "translated_acc")
DIRECTIONS = ("below", "above", "at_least", "at_most")
AGGREGATIONS = ("mean", "geomean")
LADDER_MIN_LEVELS = 3                       # distinct ε among the ladder's models
TRAINED = "trained"                         # labels: the augmentations the treatment was trained with

_TOP_KEYS = ("id", "claim", "operationalization", "compare", "perturbation", "layers", "accuracy",
             "statistic", "expected", "aggregate", "bootstrap", "measures")
_MEASURE_KEYS = ("compare", "perturbation", "layers", "accuracy", "statistic", "expected",
                 "aggregate", "bootstrap")
_DEFAULTS = {"aggregate": {"points": "mean", "models": "mean", "overall": None, "labels": None},
             "bootstrap": {"samples": 2000, "confidence": 0.95}}
_LABEL = re.compile(r"^[A-Za-z0-9_.-]+/\d+$")   # noise/3, vae/5: the other families' labels
_TINY = 1e-300                                   # floor for logs (a killed perturbation is 0)


# ---------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class Measure:
    """One computed quantity of a task (a task has one, or several under `measures:`)."""

    statistic: str
    compare: dict                   # {treatment: [roles], control: role} | {roles: [...]} | {ladder: [...]}
    perturbation: dict | None       # {family: [...]} | {labels: [...] or "trained"}, optional reference
    layers: list | None             # items: input | penultimate | logits | all | {after_depth, up_to_depth}
    accuracy: str | None
    expected: dict                  # {direction, threshold, margin} | {finding: {bin: [lo, hi]}}
    aggregate: dict                 # {points, models, overall, labels}
    bootstrap: dict                 # {samples, confidence}


@dataclass(frozen=True)
class Task:
    id: str
    claim: str
    operationalization: str
    path: str
    measures: tuple[Measure, ...]


def load_tasks(directory: str | Path) -> list[Task]:
    """Every tasks/*.yaml, validated, sorted by file name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NFBenchError(f"{directory}: task directory not found")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise NFBenchError(f"{directory}: no task files (*.yaml)")
    tasks = [load_task(p) for p in files]
    seen: dict[str, str] = {}
    for t in tasks:
        if t.id in seen:
            raise NFBenchError(f"{t.path}: id: {t.id!r} is also the id of {seen[t.id]}")
        seen[t.id] = t.path
    return tasks


def load_task(path: str | Path) -> Task:
    path = Path(path)
    raw = read_yaml(path)
    where = str(path)
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping with keys {', '.join(_TOP_KEYS)}")
    _known_keys(raw, _TOP_KEYS, where)
    for key in ("id", "claim", "operationalization"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise NFBenchError(f"{where}: {key}: required, a non-empty string")
    if raw["id"] != path.stem:
        raise NFBenchError(f"{where}: id: must equal the file name {path.stem!r}, got {raw['id']!r}")
    shared = {k: raw[k] for k in _MEASURE_KEYS if k in raw}
    if "measures" in raw:
        entries = raw["measures"]
        if not isinstance(entries, list) or not entries:
            raise NFBenchError(f"{where}: measures: must be a non-empty list of mappings")
        measures = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise NFBenchError(f"{where}: measures[{i}]: must be a mapping of {', '.join(_MEASURE_KEYS)}")
            _known_keys(entry, _MEASURE_KEYS, f"{where}: measures[{i}]")
            measures.append(_measure({**shared, **entry}, where, f"measures[{i}].", set(entry)))
    else:
        measures = [_measure(shared, where, "", set(shared))]
    return Task(raw["id"], " ".join(raw["claim"].split()), " ".join(raw["operationalization"].split()),
                where, tuple(measures))


def _sub(where: str, key: str) -> str:
    """The key path of `key` below `where` ("file" or "file: a.b")."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def _known_keys(raw: Mapping, valid, where: str) -> None:
    for key in raw:
        if key not in valid:
            raise NFBenchError(f"{_sub(where, str(key))}: {one_of(str(key), valid, 'key')}")


def _measure(raw: dict, where: str, prefix: str, own: set) -> Measure:
    def at(key: str) -> str:             # the key path of a field: its own, or the shared top level
        return f"{where}: {prefix if key in own else ''}{key}"

    if "statistic" not in raw:
        raise NFBenchError(f"{at('statistic')}: required; one of {', '.join(STATISTICS)}")
    name = raw["statistic"]
    if name not in STATISTICS:
        raise NFBenchError(f"{at('statistic')}: {one_of(str(name), STATISTICS, 'statistic')}")
    stat = STATISTICS[name]
    for key in ("expected", "compare"):
        if key not in raw:
            raise NFBenchError(f"{at(key)}: required")
    compare = _compare(raw["compare"], stat.design, at("compare"))
    perturbation = _perturbation(raw.get("perturbation"), stat, at("perturbation"))
    layers = _layers(raw.get("layers"), stat, at("layers"))
    accuracy = raw.get("accuracy")
    if accuracy is not None and accuracy not in ACCURACIES:
        raise NFBenchError(f"{at('accuracy')}: {one_of(str(accuracy), ACCURACIES, 'accuracy')}")
    stat.check(perturbation, layers, accuracy, at)
    aggregate = _aggregate(raw.get("aggregate"), at("aggregate"))
    if aggregate["overall"] and not stat.overall:
        raise NFBenchError(f"{at('aggregate')}.overall: statistic {name!r} has no per-layer rows to combine")
    if aggregate["labels"] and "labels" not in (perturbation or {}):
        raise NFBenchError(f"{at('aggregate')}.labels: pools the labels of `perturbation: {{labels: ...}}`; "
                           f"this measure selects none")
    return Measure(name, compare, perturbation, layers, accuracy, _expected(raw["expected"], at("expected")),
                   aggregate, _bootstrap(raw.get("bootstrap"), at("bootstrap")))


def _names(value, valid, noun: str, where: str, kind: str | None = None) -> list[str]:
    """One name or a list of names, each one of `valid` (`kind` names them in the error)."""
    names = value if isinstance(value, list) else [value]
    if not names:
        raise NFBenchError(f"{where}: must name at least one {noun} ({', '.join(valid)})")
    for name in names:
        if name not in valid:
            raise NFBenchError(f"{where}: {one_of(str(name), valid, kind or noun)}")
    return list(names)


def _role_list(value, where: str) -> list[str]:
    roles = _names(value, ROLES, "role", where)
    if len(set(roles)) != len(roles):
        raise NFBenchError(f"{where}: names a role twice")
    return roles


def _compare(raw, design: str, where: str) -> dict:
    forms = {TWO_GROUP: ("treatment", "control"), PER_ROLE: ("roles",), LADDER: ("ladder",)}
    keys = forms[design]
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping with {' and '.join(keys)}")
    for key in raw:
        if key not in keys:
            raise NFBenchError(f"{where}.{key}: {one_of(str(key), keys, 'key')} for a {design} statistic")
    for key in keys:
        if key not in raw:
            raise NFBenchError(f"{where}.{key}: required for a {design} statistic")
    out = {key: _role_list(raw[key], f"{where}.{key}") for key in keys}
    if design == TWO_GROUP:
        if len(out["control"]) != 1:
            raise NFBenchError(f"{where}.control: must be a single role")
        out["control"] = out["control"][0]
        if out["control"] in out["treatment"]:
            raise NFBenchError(f"{where}: the control role {out['control']!r} is also a treatment")
    return out


def _perturbation(raw, stat: Statistic, where: str) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping with family or labels (and optionally reference)")
    _known_keys(raw, ("family", "labels", "reference"), where)
    if ("family" in raw) == ("labels" in raw):
        raise NFBenchError(f"{where}: give exactly one of family or labels")
    out: dict[str, Any] = {}
    if "family" in raw:
        out["family"] = _names(raw["family"], FAMILIES, "family", f"{where}.family", "perturbation family")
    else:
        labels = raw["labels"]
        if labels != TRAINED:
            if not isinstance(labels, list) or not labels:
                raise NFBenchError(f"{where}.labels: must be {TRAINED!r} or a non-empty list of frame labels")
            for label in labels:
                if not isinstance(label, str) or not (label in TRANSFORMS or _LABEL.match(label)):
                    raise NFBenchError(f"{where}.labels: {label!r} is not a frame label "
                                       f"({', '.join(TRANSFORMS)}, or family/index such as noise/0)")
        out["labels"] = labels
    if "reference" in raw:
        out["reference"] = _names(raw["reference"], FAMILIES, "family", f"{where}.reference", "perturbation family")
        if len(out["reference"]) != 1:
            raise NFBenchError(f"{where}.reference: must be a single family")
        out["reference"] = out["reference"][0]
    return out


def _layers(raw, stat: Statistic, where: str) -> list | None:
    if raw is None:
        return None
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise NFBenchError(f"{where}: must select at least one layer")
    out: list = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]" if isinstance(raw, list) else where
        if isinstance(item, Mapping):
            _known_keys(item, ("after_depth", "up_to_depth"), w)
            if not item:
                raise NFBenchError(f"{w}: a depth selection needs after_depth and/or up_to_depth")
            sel = {"after_depth": item.get("after_depth"), "up_to_depth": item.get("up_to_depth", 1.0)}
            for key, value in sel.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or not 0 <= value <= 1):
                    raise NFBenchError(f"{w}.{key}: must be a relative depth in [0, 1], got {value!r}")
            if sel["after_depth"] is not None and sel["after_depth"] >= sel["up_to_depth"]:
                raise NFBenchError(f"{w}: after_depth must be below up_to_depth")
            out.append(sel)
        elif item in LAYER_NAMES:
            out.append(item)
        else:
            raise NFBenchError(f"{w}: {one_of(str(item), LAYER_NAMES, 'layer selection')} "
                               f"(or a mapping {{after_depth: d, up_to_depth: d}})")
    return out


def _number(value, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise NFBenchError(f"{where}: must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _expected(raw, where: str) -> dict:
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be {{direction, threshold, margin}} or {{finding: {{bin: [lo, hi]}}}}")
    if "finding" in raw:
        _known_keys(raw, ("finding",), where)
        bins = raw["finding"]
        if not isinstance(bins, Mapping) or not bins:
            raise NFBenchError(f"{where}.finding: must map category names to [low, high] intervals")
        out = {}
        for name, edges in bins.items():
            if (not isinstance(edges, list) or len(edges) != 2
                    or any(isinstance(e, bool) or not isinstance(e, (int, float)) for e in edges)
                    or not edges[0] < edges[1]):
                raise NFBenchError(f"{where}.finding.{name}: must be [low, high] with low < high, got {edges!r}")
            out[str(name)] = [float(edges[0]), float(edges[1])]
        ordered = sorted(out.values())
        if any(a[1] > b[0] for a, b in zip(ordered, ordered[1:])):
            raise NFBenchError(f"{where}.finding: the bins overlap")
        return {"finding": dict(sorted(out.items(), key=lambda kv: kv[1][0]))}
    _known_keys(raw, ("direction", "threshold", "margin"), where)
    for key in ("direction", "threshold", "margin"):
        if key not in raw:
            raise NFBenchError(f"{where}.{key}: required (or give finding: instead)")
    if raw["direction"] not in DIRECTIONS:
        raise NFBenchError(f"{where}.direction: {one_of(str(raw['direction']), DIRECTIONS, 'direction')}")
    return {"direction": raw["direction"], "threshold": _number(raw["threshold"], f"{where}.threshold"),
            "margin": _number(raw["margin"], f"{where}.margin", 0.0)}


def _aggregate(raw, where: str) -> dict:
    if raw is None:
        return dict(_DEFAULTS["aggregate"])
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping of points, models, overall, labels")
    _known_keys(raw, ("points", "models", "overall", "labels"), where)
    out = {**_DEFAULTS["aggregate"], **raw}
    for key in ("points", "models"):
        if out[key] not in AGGREGATIONS:
            raise NFBenchError(f"{where}.{key}: {one_of(str(out[key]), AGGREGATIONS, 'aggregation')}")
    if out["overall"] not in (None, "geomean"):
        raise NFBenchError(f"{where}.overall: must be geomean (a row combining the layers) or absent")
    if out["labels"] not in (None, "geomean"):
        raise NFBenchError(f"{where}.labels: must be geomean (one subject pooling the labels) or absent "
                           f"(a row per label)")
    return out


def _bootstrap(raw, where: str) -> dict:
    if raw is None:
        return dict(_DEFAULTS["bootstrap"])
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping of samples, confidence")
    _known_keys(raw, ("samples", "confidence"), where)
    out = {**_DEFAULTS["bootstrap"], **raw}
    if isinstance(out["samples"], bool) or not isinstance(out["samples"], int) or out["samples"] < 100:
        raise NFBenchError(f"{where}.samples: must be an integer ≥ 100, got {out['samples']!r}")
    c = out["confidence"]
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < 1:
        raise NFBenchError(f"{where}.confidence: must be a number in (0, 1), got {c!r}")
    return {"samples": out["samples"], "confidence": float(c)}


# ---------------------------------------------------------------------------------------------
# Bootstrap machinery


def _log(a: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(a, _TINY))


def _point_aggregate(x: np.ndarray, counts: np.ndarray, how: str) -> np.ndarray:
    """x [S, B] per-point values, counts [R, B] multiplicities -> [R, S] nan-aware aggregates."""
    v = _log(x) if how == "geomean" else x
    ok = ~np.isnan(v)
    num = counts @ np.where(ok, v, 0.0).T
    den = counts @ ok.T.astype(np.float64)
    out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.exp(out) if how == "geomean" else out


def _model_aggregate(a: np.ndarray, idx: np.ndarray, how: str) -> np.ndarray:
    """a [n, R, S] per-model aggregates, idx [R, n] drawn models -> [R, S] over the drawn models."""
    drawn = a[idx.T, np.arange(a.shape[1])[None, :]]                    # [n, R, S]
    return np.exp(nanmean(_log(drawn), 0)) if how == "geomean" else nanmean(drawn, 0)


class _Draws:
    """One set of bootstrap draws: points shared by every model; then models, in one of two designs.

    Paired: when every group holds one model of each of the same training seeds and no group is
    stratified, one draw of seeds serves all groups (each takes its model of each drawn seed).
    Otherwise each group is drawn on its own, within its strata when it has several and each
    holds several models (models of one ε and one set of trained augmentations: seeds of one
    recipe), so a draw keeps the design's proportions of ε levels.

    models: group -> [(seed, stratum) of each of its models]; seed None where a model has none.
    """

    def __init__(self, rng: np.random.Generator, n_points: int, samples: int, models: Mapping[str, list]):
        self.counts = np.ones((samples + 1, n_points))
        if n_points:
            self.counts[1:] = rng.multinomial(n_points, np.full(n_points, 1 / n_points), size=samples)
        seeds = {g: [seed for seed, _ in ms] for g, ms in models.items()}
        strata = {g: _strata([stratum for _, stratum in ms]) for g, ms in models.items()}
        shared = sorted(next(iter(seeds.values()), []), key=str)
        self.paired = len(models) > 1 and len(shared) > 1 and all(
            None not in s and len(set(s)) == len(s) and sorted(s, key=str) == shared and len(strata[g]) == 1
            for g, s in seeds.items())
        self.models: dict[str, np.ndarray] = {}
        if self.paired:                  # one draw of seeds; each group takes its model of each seed
            draw = self._draw(rng, [list(range(len(shared)))], samples)
            for name in sorted(models):
                self.models[name] = np.asarray([seeds[name].index(s) for s in shared])[draw]
            return
        for name in sorted(models):
            self.models[name] = self._draw(rng, strata[name], samples)

    @staticmethod
    def _draw(rng: np.random.Generator, strata: list[list[int]], samples: int) -> np.ndarray:
        """[samples + 1, n] model indices: replicate 0 is every model once; the others draw each
        stratum's models with replacement from that stratum."""
        n = sum(len(s) for s in strata)
        idx = np.tile(np.arange(n), (samples + 1, 1))
        for members in strata:
            if len(members) > 1:
                idx[1:, members] = np.asarray(members)[rng.integers(0, len(members), size=(samples, len(members)))]
        return idx


def _strata(keys: list) -> list[list[int]]:
    """Model positions grouped by stratum key; one stratum unless there are several and each has
    several models (a stratum of one cannot be resampled on its own)."""
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    if len(groups) > 1 and all(len(members) > 1 for members in groups.values()):
        return list(groups.values())
    return [list(range(len(keys)))]


class _NotRun(Exception):
    """A measure that cannot be computed on this suite; the message is the reason."""


@dataclass
class _Slot:
    name: str
    depth: float
    index: dict[str, int]           # model id -> layer index


class _Context:
    """What a statistic function sees: the groups of models, the subject, the draws, helpers."""

    def __init__(self, stats: Mapping[str, FrameStatistics], measure: Measure, groups: dict[str, list[str]],
                 subject: dict, label: str, draws: _Draws, cache: dict):
        self.stats, self.measure, self.groups, self.subject, self.label = stats, measure, groups, subject, label
        self.draws, self._cache = draws, cache

    # quantities ------------------------------------------------------------------------------
    def quantity(self, model_id: str, what: tuple[str, Any]) -> np.ndarray:
        """[L, B] per-point values of one model: ('family'|'label'|'labels'|'rank'|'family_rank', name)."""
        key = (model_id, *what)
        if key not in self._cache:                  # the same model's quantity serves many rows
            self._cache[key] = self._quantity(model_id, what)
        return self._cache[key]

    def _quantity(self, model_id: str, what: tuple[str, Any]) -> np.ndarray:
        st = self.stats[model_id]
        kind, name = what
        if kind in ("family", "family_rank") and name not in st.families:
            raise _NotRun(f"family {name!r} is not in the frames of {model_id} "
                          f"(families: {', '.join(st.family_names)})")
        for label in (name if kind == "labels" else [name] if kind == "label" else []):
            if label not in st.labels:
                raise _NotRun(f"label {label!r} is not in the frames of {model_id}")
        if kind == "labels":                # pooled: per point, the geometric mean over the labels
            logs = np.stack([np.log(np.maximum(np.asarray(st.label(label), dtype=np.float64), _TINY))
                             for label in name])
            return np.exp(logs.mean(0))
        if kind == "family":
            v = st.family(name)
        elif kind == "label":
            v = st.label(name)
        elif kind == "rank":
            v = st.rank
        else:
            v = st.family_rank[st.family_names.index(name)]
        return np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float64)

    def sensitivity(self, family: str | None = None) -> tuple[str, Any]:
        if family is not None:
            return ("family", family)
        for kind in ("labels", "label", "family"):
            if kind in self.subject:
                return (kind, self.subject[kind])
        raise _NotRun("this measure has no perturbation to measure the sensitivity to")

    def rank(self) -> tuple[str, str | None]:
        return ("family_rank", self.subject["family"]) if "family" in self.subject else ("rank", None)

    # layers ----------------------------------------------------------------------------------
    def slots(self, selection: list | None = None) -> list[_Slot]:
        ids = sorted({m for g in self.groups.values() for m in g})
        return _slots(selection if selection is not None else self.measure.layers, ids, self.stats)

    # aggregates ------------------------------------------------------------------------------
    def model_means(self, ids: list[str], what, slots: list[_Slot]) -> np.ndarray:
        """[n, R, S]: each model's point aggregate at each slot, on every replicate."""
        out = []
        for m in ids:
            q = self.quantity(m, what)
            rows = np.stack([q[s.index[m]] for s in slots])                  # [S, B]
            out.append(_point_aggregate(rows, self.draws.counts, self.measure.aggregate["points"]))
        return np.stack(out)

    def role_mean(self, group: str, what, slots: list[_Slot]) -> np.ndarray:
        """[R, S]: M_g(q, slot) on every replicate."""
        ids = self.groups[group]
        return _model_aggregate(self.model_means(ids, what, slots), self.draws.models[group],
                                self.measure.aggregate["models"])

    def role_value(self, group: str, values: np.ndarray) -> np.ndarray:
        """[R]: model aggregate of one number per model (e.g. an accuracy), models resampled."""
        a = np.broadcast_to(np.asarray(values, dtype=np.float64)[:, None, None],
                            (len(values), self.draws.counts.shape[0], 1))
        return _model_aggregate(a, self.draws.models[group], self.measure.aggregate["models"])[:, 0]


def _slots(selection: list, ids: list[str], stats: Mapping[str, FrameStatistics]) -> list[_Slot]:
    """Map each layer selection item to one slot per layer (model id -> layer index)."""
    out: list[_Slot] = []
    for item in selection:
        if item == "input":
            out.append(_named_slot("input", ids, stats, lambda st: st.layers.index("input")
                                   if "input" in st.layers else None))
        elif item == "logits":
            out.append(_named_slot("logits", ids, stats, lambda st: st.layers.index("logits")
                                   if "logits" in st.layers else None))
        elif item == "penultimate":
            out.append(_named_slot("penultimate", ids, stats, lambda st: st.penultimate))
        else:
            lo, hi = (None, 1.0) if item == "all" else (item["after_depth"], item["up_to_depth"])
            out += _depth_slots(lo, hi, ids, stats)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise _NotRun("the layer selection names a layer twice")
    return out


def _named_slot(name: str, ids, stats, find) -> _Slot:
    index = {}
    for m in ids:
        i = find(stats[m])
        if i is None:
            raise _NotRun(f"model {m} has no {name} layer (layers: {', '.join(stats[m].layers)})")
        index[m] = i
    depth = float(np.mean([float(stats[m].depth[index[m]]) for m in ids]))
    return _Slot(name, depth, index)


def _depth_slots(lo: float | None, hi: float, ids, stats) -> list[_Slot]:
    """Every layer with lo < depth ≤ hi (lo None: from the input on).

    Models with identical layer lists share slots by layer name; otherwise the slots are the
    layers of the model with the fewest observed layers, and every model uses its layer nearest
    in relative depth (slot names `depth 0.50`).
    """
    def within(d: float) -> bool:
        return (lo is None or d > lo + 1e-12) and d <= hi + 1e-12

    layer_lists = {tuple(stats[m].layers) for m in ids}
    ref = min(ids, key=lambda m: (len(stats[m].layers), m))
    ref_depth = [float(d) for d in stats[ref].depth]
    out = []
    for i, d in enumerate(ref_depth):
        if not within(d):
            continue
        if len(layer_lists) == 1:
            out.append(_Slot(stats[ref].layers[i], d, {m: i for m in ids}))
        else:
            index = {m: int(np.argmin(np.abs(np.asarray(stats[m].depth, dtype=np.float64) - d))) for m in ids}
            out.append(_Slot(f"depth {d:.2f}", d, index))
    if not out:
        raise _NotRun(f"no observed layer has relative depth in ({lo if lo is not None else '-'}, {hi}]")
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rank correlation along the last axis (average ranks for ties); nan if undefined."""
    def ranks(a):
        less = (a[..., None, :] < a[..., :, None]).sum(-1)
        equal = (a[..., None, :] == a[..., :, None]).sum(-1)
        return less + (equal + 1) / 2

    x, y = np.broadcast_arrays(x, y)
    bad = np.isnan(x).any(-1) | np.isnan(y).any(-1)
    rx, ry = ranks(x), ranks(y)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    r = np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1.0), np.nan)
    return np.where(bad, np.nan, r)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    return np.where(np.isfinite(out), out, np.nan)


# ---------------------------------------------------------------------------------------------
# Statistics: one small function each; they return (subject, replicates [R]) rows


@dataclass(frozen=True)
class Statistic:
    fn: Callable[[_Context], list[tuple[str, np.ndarray]]]
    design: str
    perturbation: str               # "required" | "optional" | "forbidden" | "either" (with accuracy)
    layers: str                     # "required" | "optional" | "forbidden" | "all-only"
    reference: str = "forbidden"    # perturbation.reference: "required" | "optional" | "forbidden"
    overall: bool = False           # may add an overall row over the layers
    description: str = ""

    def check(self, perturbation, layers, accuracy, at) -> None:
        if self.perturbation == "either":
            if (perturbation is None) == (accuracy is None):
                raise NFBenchError(f"{at('perturbation')}: give either perturbation (with layers) or accuracy")
            if perturbation is not None and layers is None:
                raise NFBenchError(f"{at('layers')}: required with a perturbation")
            if accuracy is not None and layers is not None:
                raise NFBenchError(f"{at('layers')}: not used with accuracy")
        else:
            if self.perturbation == "required" and perturbation is None:
                raise NFBenchError(f"{at('perturbation')}: required by this statistic")
            if self.perturbation == "forbidden" and perturbation is not None:
                raise NFBenchError(f"{at('perturbation')}: not used by this statistic")
            if accuracy is not None and self.perturbation != "forbidden":
                raise NFBenchError(f"{at('accuracy')}: not used by this statistic")
            if self.perturbation == "forbidden" and accuracy is None:
                raise NFBenchError(f"{at('accuracy')}: required by this statistic ({', '.join(ACCURACIES)})")
            if self.layers == "required" and layers is None:
                raise NFBenchError(f"{at('layers')}: required by this statistic")
            if self.layers == "forbidden" and layers is not None:
                raise NFBenchError(f"{at('layers')}: not used by this statistic")
            if self.layers == "all-only" and layers not in (None, ["all"]):
                raise NFBenchError(f"{at('layers')}: this statistic uses every layer; give all or leave it out")
        if perturbation is not None:
            if perturbation.get("labels") == TRAINED and self.design != TWO_GROUP:
                raise NFBenchError(f"{at('perturbation')}.labels: {TRAINED!r} needs a treatment role "
                                   f"(a two-group statistic)")
            if self.reference == "required" and "reference" not in perturbation:
                raise NFBenchError(f"{at('perturbation')}.reference: required by this statistic")
            if self.reference == "forbidden" and "reference" in perturbation:
                raise NFBenchError(f"{at('perturbation')}.reference: not used by this statistic")
            if self.design == PER_ROLE or self.perturbation == "optional":
                if "labels" in perturbation:
                    raise NFBenchError(f"{at('perturbation')}.labels: this statistic takes a family")


STATISTICS: dict[str, Statistic] = {}


def _statistic(name: str, design: str, *, perturbation: str, layers: str, reference: str = "forbidden",
               overall: bool = False):
    def register(fn):
        STATISTICS[name] = Statistic(fn, design, perturbation, layers, reference, overall,
                                     " ".join((fn.__doc__ or "").split()))
        return fn
    return register


def _layer_rows(ctx: _Context, slots: list[_Slot], values: np.ndarray) -> list[tuple[str, np.ndarray]]:
    rows = [(f"{ctx.label} @ {s.name}", values[:, i]) for i, s in enumerate(slots)]
    if ctx.measure.aggregate["overall"] == "geomean" and len(slots) > 1:
        rows.append((f"{ctx.label} @ all selected layers (geometric mean)", np.exp(nanmean(_log(values), 1))))
    return rows


@_statistic("sensitivity_ratio", TWO_GROUP, perturbation="required", layers="required", overall=True)
def sensitivity_ratio(ctx: _Context):
    """M_treatment(s) / M_control(s): the treatment's relative sensitivity to the perturbation
    as a multiple of the control's, per layer (1 = no difference, < 1 = treatment less sensitive)."""
    slots = ctx.slots()
    what = ctx.sensitivity()
    return _layer_rows(ctx, slots, _ratio(ctx.role_mean("treatment", what, slots),
                                          ctx.role_mean("control", what, slots)))


@_statistic("suppression_ratio", TWO_GROUP, perturbation="required", layers="required", reference="required",
            overall=True)
def suppression_ratio(ctx: _Context):
    """[M_control(F)/M_treatment(F)] / [M_control(ref)/M_treatment(ref)]: the factor by which the
    treatment suppresses family F over the factor by which it suppresses the reference family
    (1 = both suppressed alike, i.e. not selective; < 1 = F spared relative to the reference)."""
    slots = ctx.slots()
    f, ref = ctx.sensitivity(), ctx.sensitivity(ctx.subject["reference"])
    by_f = _ratio(ctx.role_mean("control", f, slots), ctx.role_mean("treatment", f, slots))
    by_ref = _ratio(ctx.role_mean("control", ref, slots), ctx.role_mean("treatment", ref, slots))
    return _layer_rows(ctx, slots, _ratio(by_f, by_ref))


def _gap(ctx: _Context, slots: list[_Slot]) -> np.ndarray:
    """[R, S]: g = log M_control − log M_treatment of the subject at the slots, minus the same gap
    of the reference family when the measure names one (the subject-specific part)."""
    def gap(what):
        return _log(ctx.role_mean("control", what, slots)) - _log(ctx.role_mean("treatment", what, slots))

    g = gap(ctx.sensitivity())
    return g - gap(ctx.sensitivity(ctx.subject["reference"])) if "reference" in ctx.subject else g


@_statistic("gap_gain", TWO_GROUP, perturbation="required", layers="required", reference="optional")
def gap_gain(ctx: _Context):
    """g(logits) − mean of g over the selected (early) layers, with the gap g(l) = log M_control(l)
    − log M_treatment(l) (minus the same gap of the reference family, when one is given): how much
    of the treatment's gap, as a log factor of sensitivity, is built after those layers (> 0: the
    gap grows with depth; ≈ 0: it is already there)."""
    early = ctx.slots()
    ends = ctx.slots(["logits"])
    if any(s.name == "logits" for s in early):
        raise _NotRun("the early layers must not include the logits")
    g = _gap(ctx, early + ends)
    return [(f"{ctx.label} @ logits − {early[0].name}…{early[-1].name}", g[:, -1] - nanmean(g[:, :-1], 1))]


@_statistic("gap_mean_depth", TWO_GROUP, perturbation="required", layers="all-only", reference="optional")
def gap_mean_depth(ctx: _Context):
    """Where along depth the treatment's gap is built: with g(l) = log M_control(l) − log
    M_treatment(l) along the layers (minus the same gap of the reference family, when one is
    given; 0 at the input), the gap-weighted mean depth Σ_j d̄_j (g_j − g_{j−1}) / g_logits over
    the steps j between observed layers (d̄_j: the step's mid depth), which equals 1 − ∫ g/g_logits
    over the piecewise-linear profile.  0.5 when the gap grows evenly with depth, towards 1 when
    it appears at the end, towards 0 when it is there from the first layer (below 0 when it
    overshoots early and recedes); undefined when the gap at the logits is not positive.  An
    integral over the whole profile, so it moves little where a first crossing would jump."""
    slots = ctx.slots(["all"])
    ids = sorted({m for g in ctx.groups.values() for m in g})
    last = slots[-1]
    if any(ctx.stats[m].layers[last.index[m]] != "logits" for m in ids):
        raise _NotRun("the gap profile needs `logits` as every model's last observed layer")
    g = _gap(ctx, slots)
    if not g[0, -1] - g[0, 0] > 0:
        raise _NotRun("no gap at the logits (the treatment is not less sensitive there than the control), "
                      "so the gap profile has no depth")
    return [(ctx.label, _gap_mean_depth(g, np.array([s.depth for s in slots])))]


def _gap_mean_depth(gap: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """gap [R, S] along depth [S] (the first slot is the input) -> [R] gap-weighted mean depth;
    nan where the final gap is not positive."""
    gap = gap - gap[:, :1]                                       # exactly 0 at the input
    final = gap[:, -1]
    middle = (depth[1:] + depth[:-1]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.diff(gap, axis=1) * middle).sum(1) / final
    return np.where((final > 0) & np.isfinite(out), out, np.nan)


@_statistic("accuracy_difference", TWO_GROUP, perturbation="forbidden", layers="forbidden")
def accuracy_difference(ctx: _Context):
    """A_treatment − A_control: difference of the role aggregates of an accuracy (fractions in
    [0, 1]); only the models are resampled (the accuracies are not per evaluation point)."""
    acc = {g: _accuracies(ctx, g) for g in ("treatment", "control")}
    return [(ctx.label, ctx.role_value("treatment", acc["treatment"]) - ctx.role_value("control", acc["control"]))]


def _accuracies(ctx: _Context, group: str) -> np.ndarray:
    key = ctx.measure.accuracy
    values = [((ctx.stats[m].meta.get("accuracy") or {}).get(key)) for m in ctx.groups[group]]
    if all(v is None for v in values):
        raise _NotRun(f"no {key} recorded for the {group} models")
    return np.array([np.nan if v is None else float(v) for v in values])


@_statistic("ladder_spearman", LADDER, perturbation="either", layers="optional")
def ladder_spearman(ctx: _Context):
    """Spearman rank correlation, across the ladder's models, of ε with a per-model quantity:
    the point aggregate of the perturbation's relative sensitivity at a layer, or an accuracy.
    Models are resampled within each ε level, points as everywhere."""
    levels = sorted(ctx.groups, key=lambda g: float(g.split("=", 1)[1]))
    eps = np.concatenate([np.full(len(ctx.groups[g]), float(g.split("=", 1)[1])) for g in levels])
    drawn = np.concatenate([ctx.draws.models[g] + sum(len(ctx.groups[h]) for h in levels[:i])
                            for i, g in enumerate(levels)], axis=1)                      # [R, n]
    ids = [m for g in levels for m in ctx.groups[g]]
    if ctx.measure.accuracy is not None:
        key = ctx.measure.accuracy
        acc = [(ctx.stats[m].meta.get("accuracy") or {}).get(key) for m in ids]
        if any(a is None for a in acc):
            raise _NotRun(f"{key} is not recorded for every ladder model")
        y = np.asarray(acc, dtype=np.float64)[drawn]                                     # [R, n]
        return [(ctx.label, _spearman(eps[None, :], y))]
    slots = ctx.slots()
    a = ctx.model_means(ids, ctx.sensitivity(), slots)                                   # [n, R, S]
    y = a[drawn.T, np.arange(a.shape[1])[None, :]]                                       # [n, R, S]
    rho = _spearman(eps[None, None, :], np.moveaxis(y, 0, -1))                           # [R, S]
    return [(f"{ctx.label} @ {s.name}", rho[:, i]) for i, s in enumerate(slots)]


def _retention(ctx: _Context, group: str, slots: list[_Slot]) -> np.ndarray:
    what = ctx.rank()
    return _ratio(ctx.role_mean(group, what, slots), ctx.role_mean(group, what, ctx.slots(["input"])))


@_statistic("rank_retention", PER_ROLE, perturbation="optional", layers="required")
def rank_retention(ctx: _Context):
    """M_role(rank, l) / M_role(rank, input): the effective rank of the frame (or of one
    family's sub-frame) at a layer as a fraction of its rank at the input (< 1 = collapse)."""
    slots = ctx.slots()
    values = _retention(ctx, "role", slots)
    return [(f"{ctx.label} @ {s.name}", values[:, i]) for i, s in enumerate(slots)]


@_statistic("rank_retention_ratio", TWO_GROUP, perturbation="optional", layers="required")
def rank_retention_ratio(ctx: _Context):
    """rank_retention(treatment) / rank_retention(control): whether the treatment keeps more
    (> 1) or fewer (< 1) effective directions of the frame than the control at a layer."""
    slots = ctx.slots()
    values = _ratio(_retention(ctx, "treatment", slots), _retention(ctx, "control", slots))
    return [(f"{ctx.label} @ {s.name}", values[:, i]) for i, s in enumerate(slots)]


# ---------------------------------------------------------------------------------------------
# Evaluation


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


def _models_of(stats, roles) -> list[str]:
    return [m for m, st in stats.items() if st.meta.get("role") in roles]


def ladder_models(stats: Mapping[str, FrameStatistics], roles=("standard", "adversarial")) -> list[str]:
    """The models of an ε ladder: those of `roles` on one ε scale, L∞ radii (a model of another
    threat model, e.g. L2 at ε = 0.5, is not a point of it)."""
    return [m for m in _models_of(stats, roles) if stats[m].meta.get("threat_model") in (None, "Linf")]


def _units(measure: Measure, stats) -> list[tuple[str, dict[str, list[str]], dict, dict[str, int]] | tuple[str, str]]:
    """What a measure is computed on: (label, groups, subject, n_models) units, or (label, reason)."""
    design = STATISTICS[measure.statistic].design
    # the groups of models
    if design == TWO_GROUP:
        control = measure.compare["control"]
        treatments = measure.compare["treatment"]
        designs = [(t if len(treatments) > 1 else "", {"treatment": _models_of(stats, [t]),
                                                       "control": _models_of(stats, [control])}, t, control)
                   for t in treatments]
    elif design == PER_ROLE:
        designs = [(r, {"role": _models_of(stats, [r])}, r, None) for r in measure.compare["roles"]]
    else:
        roles = measure.compare["ladder"]
        ids = ladder_models(stats, roles)
        levels: dict[str, list[str]] = {}
        for m in ids:
            levels.setdefault(f"eps={float(stats[m].meta.get('eps') or 0.0)!r}", []).append(m)
        designs = [("ε ~", levels, "+".join(roles), None)]

    units: list = []
    for prefix, groups, treatment, control in designs:
        label = (f"{treatment}/{control}:" if design == TWO_GROUP and prefix
                 else f"{prefix}:" if design == PER_ROLE else prefix)
        empty = [name for name, ids in groups.items() if not ids]
        if design == LADDER:
            if not groups:
                units.append((_join(label, _what(measure)), f"no models with role {treatment}"))
                continue
            if len(groups) < LADDER_MIN_LEVELS:
                units.append((_join(label, _what(measure)),
                              f"no ε ladder: {len(groups)} distinct ε among the {treatment} models "
                              f"(needs {LADDER_MIN_LEVELS})"))
                continue
        elif empty:
            role = {"treatment": treatment, "control": control, "role": treatment}[empty[0]]
            units.append((_join(label, _what(measure)), f"no models with role {role} in this suite"))
            continue
        for subject, sub_groups in _subjects(measure, groups, stats, treatment):
            if isinstance(sub_groups, str):
                units.append((_join(label, subject), sub_groups))
                continue
            n_models = _count_roles(sub_groups, stats)
            units.append((_join(label, subject), sub_groups, _subject_dict(measure, subject), n_models))
    return units


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _what(measure: Measure) -> str:
    p = measure.perturbation
    if measure.accuracy is not None:
        return measure.accuracy
    if p is None:
        return "frame"
    if "labels" in p:
        return "trained augmentations" if p["labels"] == TRAINED else ", ".join(p["labels"])
    return ", ".join(p["family"])


def _subject_dict(measure: Measure, subject: str) -> dict:
    p = measure.perturbation
    if measure.accuracy is not None and p is None:
        return {"accuracy": measure.accuracy}
    if p is None:
        return {}
    name = subject.split(" vs ")[0]
    reference = {"reference": p["reference"]} if "reference" in p else {}
    if "labels" in p and measure.aggregate["labels"]:
        return {"labels": tuple(name.split("+")), **reference}
    return {"label": name, **reference} if "labels" in p else {"family": name, **reference}


def _subjects(measure: Measure, groups: dict[str, list[str]], stats, treatment: str):
    """(subject, groups) per perturbation subject; groups is a reason string when not runnable."""
    p = measure.perturbation
    if p is None:
        return [(measure.accuracy or "frame", groups)]
    if "family" in p:
        return [(f"{f} vs {p['reference']}" if "reference" in p else f, groups) for f in p["family"]]
    vs = f" vs {p['reference']}" if "reference" in p else ""
    pooled = measure.aggregate["labels"] is not None
    if p["labels"] != TRAINED:
        return [("+".join(p["labels"]) + vs, groups)] if pooled else [(label + vs, groups) for label in p["labels"]]
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


def _count_roles(groups: dict[str, list[str]], stats) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in sorted({m for ids in groups.values() for m in ids}):
        role = str(stats[m].meta.get("role"))
        counts[role] = counts.get(role, 0) + 1
    return dict(sorted(counts.items()))


def _stratum(st: FrameStatistics) -> tuple:
    """What makes models of one group different recipes rather than seeds of one: ε and the
    augmentations trained with."""
    return (float(st.meta.get("eps") or 0.0), tuple(st.meta.get("augmentations") or ()))


def _rng(seed: int, *key: Any) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32("|".join(map(str, key)).encode())])


def _evaluate_measure(task: Task, index: int, measure: Measure, stats, seed: int, n_points: int,
                      cache: dict) -> list[dict]:
    stat = STATISTICS[measure.statistic]
    base = {"task": task.id, "claim": task.claim, "statistic": measure.statistic,
            "expected": expected_text(measure.expected), "expectation": _json_safe(measure.expected),
            "confidence": measure.bootstrap["confidence"], "n_points": n_points}
    rows = []
    for unit in _units(measure, stats):
        if len(unit) == 2:
            rows.append(_not_run(base, unit[0], unit[1], {}))
            continue
        label, groups, subject, n_models = unit
        draws = _Draws(_rng(seed, task.id, index, label), n_points, measure.bootstrap["samples"],
                       {g: [(stats[m].meta.get("seed"), _stratum(stats[m])) for m in ids] for g, ids in groups.items()})
        ctx = _Context(stats, measure, groups, subject, label, draws, cache)
        try:
            computed = stat.fn(ctx)
        except _NotRun as exc:
            rows.append(_not_run(base, label, str(exc), n_models))
            continue
        rows += [{**_row(base, name, reps, measure, n_models), "paired_by_seed": draws.paired}
                 for name, reps in computed]
    return rows


def _json_safe(expected: dict) -> dict:
    """The expectation as JSON can hold it: an unbounded bin edge (±inf) becomes null."""
    if "finding" not in expected:
        return dict(expected)
    return {"finding": {name: [e if math.isfinite(e) else None for e in edges]
                        for name, edges in expected["finding"].items()}}


def _not_run(base: dict, subject: str, reason: str, n_models: dict) -> dict:
    return {**base, "subject": subject, "value": None, "ci_low": None, "ci_high": None,
            "verdict": "not run", "category": None, "reason": reason, "n_models": n_models}


def _row(base: dict, subject: str, reps: np.ndarray, measure: Measure, n_models: dict) -> dict:
    value = float(reps[0])
    if not math.isfinite(value):
        return _not_run(base, subject, "the statistic is undefined on these data "
                                       "(no defined sensitivities, or a zero denominator)", n_models)
    boot = reps[1:]
    finite = boot[np.isfinite(boot)]
    alpha = 1 - measure.bootstrap["confidence"]
    undefined = 1 - len(finite) / len(boot)
    if undefined > alpha or len(finite) == 0:
        low = high = None
    else:
        low, high = (float(q) for q in np.quantile(finite, [alpha / 2, 1 - alpha / 2]))
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


def verdict(expected: dict, value: float, low: float | None, high: float | None) -> tuple[str, str | None, str | None]:
    """(verdict, category, category range) of a point estimate and its interval (see module doc)."""
    if "finding" in expected:
        bins = expected["finding"]
        category = _bin(bins, value)
        if low is None or high is None:
            return "finding", category, f"{category}..undetermined"
        lo_bin, hi_bin = _bin(bins, low), _bin(bins, high)
        return "finding", category, (None if lo_bin == hi_bin == category else f"{lo_bin}..{hi_bin}")
    if low is None or high is None:
        return "inconclusive", None, None
    direction, t, m = expected["direction"], expected["threshold"], expected["margin"]
    boundary = t - m if direction in ("below", "at_least") else t + m
    claim_side = {"below": high < boundary, "at_most": high <= boundary,
                  "above": low > boundary, "at_least": low >= boundary}[direction]
    other_side = {"below": low >= boundary, "at_most": low > boundary,
                  "above": high <= boundary, "at_least": high < boundary}[direction]
    return ("supported" if claim_side else "not supported" if other_side else "inconclusive"), None, None


def _bin(bins: dict, value: float) -> str:
    names = list(bins)
    for i, name in enumerate(names):
        lo, hi = bins[name]
        if lo <= value < hi or (i == len(names) - 1 and value == hi):
            return name
    return "outside the bins"


def expected_text(expected: dict) -> str:
    """Human text of an expectation: `< 0.95 (threshold 1, margin 0.05)`, or the finding's bins."""
    if "finding" in expected:
        bins = list(expected["finding"].items())
        return "finding: " + ", ".join(f"{name} [{lo:.3g}, {hi:.3g}{']' if i == len(bins) - 1 else ')'}"
                                       for i, (name, (lo, hi)) in enumerate(bins))
    d, t, m = expected["direction"], expected["threshold"], expected["margin"]
    sign = {"below": "<", "above": ">", "at_least": "≥", "at_most": "≤"}[d]
    boundary = t - m if d in ("below", "at_least") else t + m
    return f"{sign} {boundary:.3g} (threshold {t:.3g}, margin {m:.3g})"
