"""What a task is: its measures, the comparisons and layers they name (the typed form of tasks/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

TWO_GROUP, PER_ROLE, LADDER = "two-group", "per-role", "ladder"
LAYER_NAMES = ("input", "penultimate", "logits", "all")
ACCURACIES = ("clean_acc", "robust_acc", "rotated_acc", "translated_acc")
DIRECTIONS = ("below", "above", "at_least", "at_most")
AGGREGATIONS = ("mean", "geomean")
LADDER_MIN_LEVELS = 3                       # distinct ε among the ladder's models
TRAINED = "trained"                         # labels: the augmentations the treatment was trained with


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
