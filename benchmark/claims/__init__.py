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

from .evaluate import evaluate, expected_text, group_replicates, interval, ladder_models, verdict
from .schema import (
    Aggregate,
    Bin,
    Bootstrap,
    Compare,
    Depths,
    Expected,
    Finding,
    Measure,
    Perturbation,
    Task,
    Threshold,
)
from .statistics import STATISTICS
from .tasks import load_task, load_tasks, parse_measure

__all__ = ["Task", "Measure", "Compare", "Perturbation", "Depths", "Expected", "Threshold", "Finding", "Bin",
           "Aggregate", "Bootstrap", "STATISTICS", "load_tasks", "load_task", "parse_measure", "evaluate",
           "group_replicates", "interval", "verdict", "expected_text", "ladder_models"]
