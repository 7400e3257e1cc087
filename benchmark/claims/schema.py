"""What a task is: its measures, the comparisons and layers they name (the typed form of tasks/*.yaml)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

TWO_GROUP, PER_GROUP, LADDER = "two-group", "per-group", "ladder"
LAYER_NAMES = ("input", "penultimate", "logits", "all")
ACCURACIES = ("clean_acc", "robust_acc", "rotated_acc", "translated_acc")
DIRECTIONS = ("below", "above", "at_least", "at_most")
AGGREGATIONS = ("mean", "geomean")
LADDER_MIN_LEVELS = 3                       # distinct ε among the ladder's models
TRAINED = "trained"                         # labels: the augmentations the treatment was trained with


@dataclass(frozen=True)
class Compare:
    """Which models a measure compares, in its statistic's design: the `treatment` groups each
    against one `control` group (two-group), each of `groups` on its own (per-group), or the
    models of the `ladder` roles along ε (ladder).  The fields of the other designs are empty.

    A group is the models of a role (a training routine) or of an architecture family (the two
    vocabularies are disjoint); `within` restricts every group to the models that are also of
    each of its roles or families (`within: convolutional`: the CNNs of each role).
    """

    treatment: tuple[str, ...] = ()
    control: str | None = None
    groups: tuple[str, ...] = ()
    ladder: tuple[str, ...] = ()
    within: tuple[str, ...] = ()


@dataclass(frozen=True)
class Perturbation:
    """What the sensitivity is measured to: the frame `family` (one subject per family) or
    frame `labels` (one subject per label, or all pooled), exactly one of the two; `labels` is
    TRAINED for the augmentations each treatment model was trained with.  `reference`: a family
    whose sensitivity the subject's is compared with."""

    family: tuple[str, ...] | None = None
    labels: tuple[str, ...] | str | None = None
    reference: str | None = None

    @property
    def trained(self) -> bool:
        return self.labels == TRAINED


@dataclass(frozen=True)
class Depths:
    """A layer selection by relative depth: every layer with after_depth < depth ≤ up_to_depth
    (after_depth None: from the input on)."""

    after_depth: float | None
    up_to_depth: float = 1.0


Layer = str | Depths                        # a name of LAYER_NAMES, or a depth range


@dataclass(frozen=True)
class Threshold:
    """A testable expectation: the interval lies wholly on the `direction` side of the boundary
    threshold − margin (below, at_least) or threshold + margin (above, at_most)."""

    direction: str
    threshold: float
    margin: float

    def as_json(self) -> dict:
        return {"direction": self.direction, "threshold": self.threshold, "margin": self.margin}


class Bin(NamedTuple):
    name: str
    low: float
    high: float


@dataclass(frozen=True)
class Finding:
    """A reported, untested outcome: the `bins` (ordered by their low edge, not overlapping) that
    the point estimate and the interval fall in."""

    bins: tuple[Bin, ...]

    def as_json(self) -> dict:
        """As JSON can hold it: an unbounded bin edge (±inf) becomes null."""
        return {"finding": {b.name: [e if math.isfinite(e) else None for e in (b.low, b.high)] for b in self.bins}}


Expected = Threshold | Finding


@dataclass(frozen=True)
class Aggregate:
    """How per-point values become one number per model (`points`) and models one per group
    (`models`): mean or geomean; `overall`: geomean adds a row combining the layers; `labels`:
    geomean pools the selected labels into one subject."""

    points: str = "mean"
    models: str = "mean"
    overall: str | None = None
    labels: str | None = None


@dataclass(frozen=True)
class Bootstrap:
    samples: int = 2000             # replicates besides replicate 0 (the data themselves)
    confidence: float = 0.95        # of the percentile interval


@dataclass(frozen=True)
class Measure:
    """One computed quantity of a task (a task has one, or several under `measures:`)."""

    statistic: str
    compare: Compare | None         # None: the caller names the groups (`group_replicates`)
    perturbation: Perturbation | None
    layers: tuple[Layer, ...] | None
    accuracy: str | None
    expected: Expected | None       # None: a leaderboard score (reported, not tested)
    aggregate: Aggregate
    bootstrap: Bootstrap


@dataclass(frozen=True)
class Task:
    id: str
    claim: str
    operationalization: str
    path: str
    measures: tuple[Measure, ...]
