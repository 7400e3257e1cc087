"""The bootstrap: point and model resampling, strata, and what a statistic function sees (`_Context`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import FrameStatistics, as_float64, nanmean
from .schema import Layer, Measure

_TINY = 1e-300                                   # floor for logs (a killed perturbation is 0)
Group = str | float     # a group of models: its part in the design (treatment, control, role), or a ladder's ε


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
    The groups draw from `rng` one after another in the order of their names as text (an ε level's
    is its repr), so a group's draws do not depend on the order of `models`.
    stream: the name of the random stream, when draws of it are shared through `cache` by several
    computations (the leaderboard scores every model on the same stream): its point draws and
    each model's point aggregates are then computed once.
    """

    def __init__(self, rng: np.random.Generator, n_points: int, samples: int, models: Mapping[Group, list],
                 stream: tuple | None = None, cache: dict | None = None):
        self.stream = stream
        key = ("point draws", stream, n_points, samples)
        if stream is not None and cache is not None and key in cache:    # the same stream draws the same points
            self.counts, state = cache[key]
            rng.bit_generator.state = state
        else:
            self.counts = np.ones((samples + 1, n_points))
            if n_points:
                self.counts[1:] = rng.multinomial(n_points, np.full(n_points, 1 / n_points), size=samples)
            if stream is not None and cache is not None:
                cache[key] = (self.counts, rng.bit_generator.state)
        seeds = {g: [seed for seed, _ in ms] for g, ms in models.items()}
        strata = {g: _strata([stratum for _, stratum in ms]) for g, ms in models.items()}
        shared = sorted(next(iter(seeds.values()), []), key=str)
        self.paired = len(models) > 1 and len(shared) > 1 and all(
            None not in s and len(set(s)) == len(s) and sorted(s, key=str) == shared and len(strata[g]) == 1
            for g, s in seeds.items())
        self.models: dict[Group, np.ndarray] = {}
        if self.paired:                  # one draw of seeds; each group takes its model of each seed
            draw = self._draw(rng, [list(range(len(shared)))], samples)
            for name in sorted(models, key=str):
                self.models[name] = np.asarray([seeds[name].index(s) for s in shared])[draw]
            return
        for name in sorted(models, key=str):
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

    def __init__(self, stats: Mapping[str, FrameStatistics], measure: Measure, groups: dict[Group, list[str]],
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
        return as_float64(v)

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
    def slots(self, selection: Sequence[Layer] | None = None) -> list[_Slot]:
        ids = sorted({m for g in self.groups.values() for m in g})
        return _slots(selection if selection is not None else self.measure.layers, ids, self.stats)

    # aggregates ------------------------------------------------------------------------------
    def model_means(self, ids: list[str], what, slots: list[_Slot]) -> np.ndarray:
        """[n, R, S]: each model's point aggregate at each slot, on every replicate."""
        out = []
        how = self.measure.aggregate.points
        for m in ids:
            key = ("point aggregate", m, what, tuple(s.index[m] for s in slots), how, self.draws.stream)
            if key in self._cache:
                out.append(self._cache[key])
                continue
            q = self.quantity(m, what)
            aggregate = _point_aggregate(np.stack([q[s.index[m]] for s in slots]), self.draws.counts, how)   # [R, S]
            if self.draws.stream is not None:             # kept only when the stream is shared (`_Draws`)
                self._cache[key] = aggregate
            out.append(aggregate)
        return np.stack(out)

    def role_mean(self, group: Group, what, slots: list[_Slot]) -> np.ndarray:
        """[R, S]: M_g(q, slot) on every replicate."""
        ids = self.groups[group]
        return _model_aggregate(self.model_means(ids, what, slots), self.draws.models[group],
                                self.measure.aggregate.models)

    def role_value(self, group: Group, values: np.ndarray) -> np.ndarray:
        """[R]: model aggregate of one number per model (e.g. an accuracy), models resampled."""
        a = np.broadcast_to(np.asarray(values, dtype=np.float64)[:, None, None],
                            (len(values), self.draws.counts.shape[0], 1))
        return _model_aggregate(a, self.draws.models[group], self.measure.aggregate.models)[:, 0]


def _slots(selection: Sequence[Layer], ids: list[str], stats: Mapping[str, FrameStatistics]) -> list[_Slot]:
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
            lo, hi = (None, 1.0) if item == "all" else (item.after_depth, item.up_to_depth)
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
