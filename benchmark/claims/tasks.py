"""tasks/*.yaml read and validated into `Task`s; every error names the file and the key path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from ..errors import NFBenchError, one_of
from ..schema import is_number, known_keys, names, number
from ..storage import read_yaml
from ..vocab import ARCHITECTURE_FAMILIES, FAMILIES, ROLES, TRANSFORMS
from .schema import (
    ACCURACIES,
    AGGREGATIONS,
    DIRECTIONS,
    LADDER,
    LAYER_NAMES,
    PER_GROUP,
    TRAINED,
    TWO_GROUP,
    Aggregate,
    Bin,
    Bootstrap,
    Compare,
    Depths,
    Expected,
    Finding,
    Layer,
    Measure,
    Perturbation,
    Task,
    Threshold,
)
from .statistics import STATISTICS

_TOP_KEYS = ("id", "claim", "operationalization", "compare", "perturbation", "layers", "accuracy",
             "statistic", "expected", "aggregate", "bootstrap", "measures")
_MEASURE_KEYS = ("compare", "perturbation", "layers", "accuracy", "statistic", "expected",
                 "aggregate", "bootstrap")
_LABEL = re.compile(r"^[A-Za-z0-9_.-]+/\d+$")   # noise/3, vae/5: the other families' labels



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
    known_keys(raw, _TOP_KEYS, where, at_key=True)
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
            known_keys(entry, _MEASURE_KEYS, f"{where}: measures[{i}]", at_key=True)
            measures.append(_measure({**shared, **entry}, where, f"measures[{i}].", set(entry)))
    else:
        measures = [_measure(shared, where, "", set(shared))]
    return Task(raw["id"], " ".join(raw["claim"].split()), " ".join(raw["operationalization"].split()),
                where, tuple(measures))


def parse_measure(raw: Mapping, where: str) -> Measure:
    """One measure outside a task file (the leaderboard's scores): the task files' form without
    `expected` (a score is reported, not tested) and without `compare` (the caller names the
    groups of models, `evaluate.group_replicates`)."""
    known_keys(raw, _MEASURE_KEYS, where, at_key=True)
    return _measure(dict(raw), where, "", set(raw), task=False)


def _measure(raw: dict, where: str, prefix: str, own: set, *, task: bool = True) -> Measure:
    def at(key: str) -> str:             # the key path of a field: its own, or the shared top level
        return f"{where}: {prefix if key in own else ''}{key}"

    if "statistic" not in raw:
        raise NFBenchError(f"{at('statistic')}: required; one of {', '.join(STATISTICS)}")
    name = raw["statistic"]
    if name not in STATISTICS:
        raise NFBenchError(f"{at('statistic')}: {one_of(str(name), STATISTICS, 'statistic')}")
    stat = STATISTICS[name]
    for key in ("expected", "compare") if task else ():
        if key not in raw:
            raise NFBenchError(f"{at(key)}: required")
    compare = _compare(raw["compare"], stat.design, at("compare")) if "compare" in raw else None
    perturbation = _perturbation(raw.get("perturbation"), at("perturbation"))
    layers = _layers(raw.get("layers"), at("layers"))
    accuracy = raw.get("accuracy")
    if accuracy is not None and accuracy not in ACCURACIES:
        raise NFBenchError(f"{at('accuracy')}: {one_of(str(accuracy), ACCURACIES, 'accuracy')}")
    stat.check(perturbation, layers, accuracy, at)        # what this statistic needs of the three, together
    aggregate = _aggregate(raw.get("aggregate"), at("aggregate"))
    if aggregate.overall and not stat.overall:
        raise NFBenchError(f"{at('aggregate')}.overall: statistic {name!r} has no per-layer rows to combine")
    if aggregate.labels and (perturbation is None or perturbation.labels is None):
        raise NFBenchError(f"{at('aggregate')}.labels: pools the labels of `perturbation: {{labels: ...}}`; "
                           f"this measure selects none")
    expectation = _expected(raw["expected"], at("expected")) if "expected" in raw else None
    return Measure(name, compare, perturbation, layers, accuracy, expectation, aggregate,
                   _bootstrap(raw.get("bootstrap"), at("bootstrap")))


GROUP_NAMES = ROLES + ARCHITECTURE_FAMILIES       # a group of models: a role or an architecture family


def _group_list(value, valid, noun: str, where: str) -> list[str]:
    groups = names(value, valid, noun, where)
    if len(set(groups)) != len(groups):
        raise NFBenchError(f"{where}: names a {noun} twice")
    return groups


def _compare(raw, design: str, where: str) -> Compare:
    forms = {TWO_GROUP: ("treatment", "control"), PER_GROUP: ("groups",), LADDER: ("ladder",)}
    keys = forms[design]
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping with {' and '.join(keys)}")
    allowed = (*keys, "within")
    for key in raw:
        if key not in allowed:
            raise NFBenchError(f"{where}.{key}: {one_of(str(key), allowed, 'key')} for a {design} statistic")
    for key in keys:
        if key not in raw:
            raise NFBenchError(f"{where}.{key}: required for a {design} statistic")
    group = ("role", ROLES) if design == LADDER else ("role or architecture family", GROUP_NAMES)
    out = {key: tuple(_group_list(raw[key], group[1], group[0], f"{where}.{key}")) for key in keys}
    if "within" in raw:
        out["within"] = tuple(_group_list(raw["within"], GROUP_NAMES, "role or architecture family",
                                          f"{where}.within"))
    if design != TWO_GROUP:
        return Compare(**out)
    if len(out["control"]) != 1:
        raise NFBenchError(f"{where}.control: must be a single group")
    control = out["control"][0]
    if control in out["treatment"]:
        raise NFBenchError(f"{where}: the control {control!r} is also a treatment")
    return Compare(**{**out, "control": control})


def _perturbation(raw, where: str) -> Perturbation | None:
    """The form of `perturbation:`; what a statistic requires of it is `Statistic.check`'s."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping with family or labels (and optionally reference)")
    known_keys(raw, ("family", "labels", "reference"), where, at_key=True)
    if ("family" in raw) == ("labels" in raw):
        raise NFBenchError(f"{where}: give exactly one of family or labels")
    family = labels = reference = None
    if "family" in raw:
        family = tuple(names(raw["family"], FAMILIES, "family", f"{where}.family", "perturbation family"))
    else:
        labels = raw["labels"]
        if labels != TRAINED:
            if not isinstance(labels, list) or not labels:
                raise NFBenchError(f"{where}.labels: must be {TRAINED!r} or a non-empty list of frame labels")
            for label in labels:
                if not isinstance(label, str) or not (label in TRANSFORMS or _LABEL.match(label)):
                    raise NFBenchError(f"{where}.labels: {label!r} is not a frame label "
                                       f"({', '.join(TRANSFORMS)}, or family/index such as noise/0)")
            labels = tuple(labels)
    if "reference" in raw:
        references = names(raw["reference"], FAMILIES, "family", f"{where}.reference", "perturbation family")
        if len(references) != 1:
            raise NFBenchError(f"{where}.reference: must be a single family")
        reference = references[0]
    return Perturbation(family, labels, reference)


def _layers(raw, where: str) -> tuple[Layer, ...] | None:
    """The form of `layers:`; what a statistic requires of it is `Statistic.check`'s."""
    if raw is None:
        return None
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise NFBenchError(f"{where}: must select at least one layer")
    out: list[Layer] = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]" if isinstance(raw, list) else where
        if isinstance(item, Mapping):
            known_keys(item, ("after_depth", "up_to_depth"), w, at_key=True)
            if not item:
                raise NFBenchError(f"{w}: a depth selection needs after_depth and/or up_to_depth")
            sel = {"after_depth": item.get("after_depth"), "up_to_depth": item.get("up_to_depth", 1.0)}
            for key, value in sel.items():
                if value is not None:
                    number(value, f"{w}.{key}", 0, 1, valid="a relative depth in [0, 1]")
            if sel["after_depth"] is not None and sel["after_depth"] >= sel["up_to_depth"]:
                raise NFBenchError(f"{w}: after_depth must be below up_to_depth")
            out.append(Depths(**sel))
        elif item in LAYER_NAMES:
            out.append(item)
        else:
            raise NFBenchError(f"{w}: {one_of(str(item), LAYER_NAMES, 'layer selection')} "
                               f"(or a mapping {{after_depth: d, up_to_depth: d}})")
    return tuple(out)


def _expected(raw, where: str) -> Expected:
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be {{direction, threshold, margin}} or {{finding: {{bin: [lo, hi]}}}}")
    if "finding" in raw:
        known_keys(raw, ("finding",), where, at_key=True)
        bins = raw["finding"]
        if not isinstance(bins, Mapping) or not bins:
            raise NFBenchError(f"{where}.finding: must map category names to [low, high] intervals")
        out: dict[str, tuple[float, float]] = {}
        for name, edges in bins.items():
            if (not isinstance(edges, list) or len(edges) != 2
                    or not all(is_number(e, finite=False) for e in edges)
                    or not edges[0] < edges[1]):
                raise NFBenchError(f"{where}.finding.{name}: must be [low, high] with low < high, got {edges!r}")
            out[str(name)] = (float(edges[0]), float(edges[1]))
        ordered = sorted(out.values())
        if any(a[1] > b[0] for a, b in zip(ordered, ordered[1:])):
            raise NFBenchError(f"{where}.finding: the bins overlap")
        return Finding(tuple(Bin(name, lo, hi) for name, (lo, hi) in sorted(out.items(), key=lambda kv: kv[1][0])))
    known_keys(raw, ("direction", "threshold", "margin"), where, at_key=True)
    for key in ("direction", "threshold", "margin"):
        if key not in raw:
            raise NFBenchError(f"{where}.{key}: required (or give finding: instead)")
    if raw["direction"] not in DIRECTIONS:
        raise NFBenchError(f"{where}.direction: {one_of(str(raw['direction']), DIRECTIONS, 'direction')}")
    return Threshold(raw["direction"], number(raw["threshold"], f"{where}.threshold"),
                     number(raw["margin"], f"{where}.margin", 0.0))


def _aggregate(raw, where: str) -> Aggregate:
    if raw is None:
        return Aggregate()
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping of points, models, overall, labels")
    known_keys(raw, ("points", "models", "overall", "labels"), where, at_key=True)
    out = {**asdict(Aggregate()), **raw}
    for key in ("points", "models"):
        if out[key] not in AGGREGATIONS:
            raise NFBenchError(f"{where}.{key}: {one_of(str(out[key]), AGGREGATIONS, 'aggregation')}")
    if out["overall"] not in (None, "geomean"):
        raise NFBenchError(f"{where}.overall: must be geomean (a row combining the layers) or absent")
    if out["labels"] not in (None, "geomean"):
        raise NFBenchError(f"{where}.labels: must be geomean (one subject pooling the labels) or absent "
                           f"(a row per label)")
    return Aggregate(**out)


def _bootstrap(raw, where: str) -> Bootstrap:
    if raw is None:
        return Bootstrap()
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping of samples, confidence")
    known_keys(raw, ("samples", "confidence"), where, at_key=True)
    out = {**asdict(Bootstrap()), **raw}
    number(out["samples"], f"{where}.samples", 100, integer=True)
    c = number(out["confidence"], f"{where}.confidence", 0, 1, open_low=True, open_high=True)
    return Bootstrap(out["samples"], c)
