"""The statistic registry: one small function per statistic, returning (subject, replicates [R]) rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import NFBenchError
from ..metrics import nanmean
from .resample import _Context, _log, _NotRun, _ratio, _Slot, _spearman
from .schema import ACCURACIES, LADDER, PER_GROUP, TRAINED, TWO_GROUP, Layer, Perturbation


@dataclass(frozen=True)
class Statistic:
    fn: Callable[[_Context], list[tuple[str, np.ndarray]]]
    design: str
    perturbation: str               # "required" | "optional" | "forbidden" | "either" (with accuracy)
    layers: str                     # "required" | "optional" | "forbidden" | "all-only"
    reference: str = "forbidden"    # perturbation.reference: "required" | "optional" | "forbidden"
    overall: bool = False           # may add an overall row over the layers
    description: str = ""

    def check(self, perturbation: Perturbation | None, layers: tuple[Layer, ...] | None, accuracy: str | None,
              at: Callable[[str], str]) -> None:
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
            if self.layers == "all-only" and layers not in (None, ("all",)):
                raise NFBenchError(f"{at('layers')}: this statistic uses every layer; give all or leave it out")
        if perturbation is not None:
            if perturbation.trained and self.design != TWO_GROUP:
                raise NFBenchError(f"{at('perturbation')}.labels: {TRAINED!r} needs a treatment role "
                                   f"(a two-group statistic)")
            if self.reference == "required" and perturbation.reference is None:
                raise NFBenchError(f"{at('perturbation')}.reference: required by this statistic")
            if self.reference == "forbidden" and perturbation.reference is not None:
                raise NFBenchError(f"{at('perturbation')}.reference: not used by this statistic")
            if self.design == PER_GROUP or self.perturbation == "optional":
                if perturbation.labels is not None:
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
    if ctx.measure.aggregate.overall == "geomean" and len(slots) > 1:
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


@_statistic("sensitivity_contrast", PER_GROUP, perturbation="required", layers="required", reference="required")
def sensitivity_contrast(ctx: _Context):
    """M_role(F) / M_role(ref): within one role, its relative sensitivity to family F as a
    multiple of that to the reference family (> 1: F is kept more than the reference, e.g. the
    autoencoder's on-manifold directions more than random noise)."""
    slots = ctx.slots()
    values = _ratio(ctx.role_mean("role", ctx.sensitivity(), slots),
                    ctx.role_mean("role", ctx.sensitivity(ctx.subject["reference"]), slots))
    return [(f"{ctx.label} @ {s.name}", values[:, i]) for i, s in enumerate(slots)]


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
    levels = sorted(ctx.groups)                                                          # the ε levels
    eps = np.concatenate([np.full(len(ctx.groups[g]), g, dtype=np.float64) for g in levels])
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


@_statistic("rank_retention", PER_GROUP, perturbation="optional", layers="required")
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


@_statistic("collapse_mean_depth", PER_GROUP, perturbation="optional", layers="all-only")
def collapse_mean_depth(ctx: _Context):
    """Where along depth a group's models collapse the frame: with the rank loss L(l) = log
    M(rank, input) − log M(rank, l) along the layers (of the whole frame, or of one family's
    sub-frame), the loss-weighted mean depth Σ_j d̄_j (L_j − L_{j−1}) / L_logits, as
    gap_mean_depth weighs a gap: 0.5 when the rank falls evenly with depth, towards 0 when the
    first layers collapse it, towards 1 when the last ones do; undefined when the frame keeps
    its rank to the logits."""
    slots = ctx.slots(["all"])
    ids = ctx.groups["role"]
    if any(ctx.stats[m].layers[slots[0].index[m]] != "input" for m in ids) or any(
            ctx.stats[m].layers[slots[-1].index[m]] != "logits" for m in ids):
        raise _NotRun("the rank profile needs `input` and `logits` as every model's first and last observed layers")
    rank = _log(ctx.role_mean("role", ctx.rank(), slots))
    loss = rank[:, :1] - rank
    if not loss[0, -1] > 0:
        raise _NotRun("the frame keeps its effective rank to the logits, so its collapse has no depth")
    return [(ctx.label, _gap_mean_depth(loss, np.array([s.depth for s in slots])))]
