"""Metrics of neural frames, computed from the per-layer Gram matrices alone.

A frame is k tangent vectors v_1..v_k at an input x; at layer l they are J_l v_i.  The engine
(`frames.py`) keeps only G_l = [(J_l v_i)ᵀ(J_l v_j)]_ij and ‖f_l(x)‖, and everything here is a
function of those: norms are √G_ii, angles come from G_ij/√(G_ii G_jj), ranks and volumes from
the spectrum of G, principal angles from its blocks.  The vectors are never needed.

Pure functions: tensors in, float64 tensors out, no I/O.  Gram functions take [..., k, k] and
are batched over any leading dimensions (layers, points, models, …).

Conventions for degenerate cases (dead layers, zero vectors, rank-deficient frames) are
stated per function; undefined ratios are nan, never inf, so that they cannot silently
dominate an average — use nan-aware reductions downstream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import NFBenchError, one_of
from .frame_result import FrameResult
from .frames import INPUT, LOGITS

__all__ = [
    "relative_sensitivity", "family_sensitivity", "label_sensitivity",
    "cosine_matrix", "effective_rank", "log_volume", "principal_angles",
    "relative_depth", "penultimate_index", "FrameStatistics", "frame_statistics",
    "as_float64", "nanmean", "layer_means", "layer_summary",
]

_NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# Gram-level metrics: [..., k, k] -> [...]


def _as_grams(grams: torch.Tensor) -> torch.Tensor:
    """float64 and exactly symmetric (the engine assembles blocks; round-off may differ)."""
    g = torch.as_tensor(grams).to(torch.float64)
    if g.ndim < 2 or g.shape[-1] != g.shape[-2]:
        raise NFBenchError(f"Gram matrices must have shape [..., k, k], got {tuple(g.shape)}")
    return (g + g.transpose(-1, -2)) / 2


def cosine_matrix(grams: torch.Tensor) -> torch.Tensor:
    """Cosines between the frame vectors, C_ij = G_ij / √(G_ii G_jj): [..., k, k].

    The angle structure of the frame with the vectors' lengths divided out.  A zero vector has
    no direction: its row and column are 0 (including the diagonal entry), so it adds nothing
    to ranks and makes volumes degenerate.  The diagonal is exactly 1 for every non-zero
    vector and the entries are clamped into [-1, 1] against round-off.
    """
    g = _as_grams(grams)
    d = torch.diagonal(g, dim1=-2, dim2=-1).clamp_min(0).sqrt()
    nonzero = d > 0
    inv = torch.where(nonzero, 1 / torch.where(nonzero, d, 1.0), 0.0)
    c = (g * inv[..., :, None] * inv[..., None, :]).clamp(-1.0, 1.0)
    eye = torch.eye(g.shape[-1], dtype=torch.bool, device=g.device)
    return torch.where(eye, nonzero[..., None, :].to(g.dtype).expand_as(c), c)


def effective_rank(grams: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Participation ratio (Σλ)² / Σλ² of the Gram eigenvalues λ: [...].

    How many directions the frame effectively spans: k for k orthogonal vectors of equal
    length, 1 when all vectors are parallel, in between when the layer squeezes the frame
    towards fewer directions.  Computed as tr(G)² / ‖G‖_F² (the same number for a symmetric
    matrix, without an eigendecomposition).

    normalize=True (default) uses the cosine matrix instead of G, so the rank measures how
    many *directions* the vectors spread over, not how unequal their lengths are (one long
    and k-1 short orthogonal vectors give k, not ≈1).  normalize=False measures the energy
    spread of the un-normalised frame, where a dominant vector lowers the rank.

    Values lie in [1, k] (at most the number of non-zero vectors when normalized); an
    all-zero frame — e.g. a layer that kills every perturbation — gives 0, not nan.
    """
    g = cosine_matrix(grams) if normalize else _as_grams(grams)
    trace = torch.diagonal(g, dim1=-2, dim2=-1).sum(-1)
    frob2 = g.square().sum((-2, -1))
    zero = frob2 == 0
    return torch.where(zero, 0.0, trace.square() / torch.where(zero, 1.0, frob2))


def log_volume(grams: torch.Tensor, normalize: bool = True, rtol: float = 1e-10) -> torch.Tensor:
    """Log of the k-volume of the parallelotope spanned by the frame, ½·log det G: [...].

    The volume collapses when a layer maps the frame onto fewer dimensions, so it tracks
    dimensional collapse continuously where the effective rank only counts directions.

    normalize=True (default): the volume of the unit vectors, ½·log det C of the cosine matrix;
    ≤ 0 (Hadamard's inequality), 0 exactly for an orthogonal frame.  normalize=False: the
    volume of the vectors themselves, ½·log det G = ½·log det C + Σ log ‖v_i‖ (computed in that
    form, which is exact and keeps vectors of very different lengths from looking dependent).

    Rank deficiency is judged on the cosine matrix: if any eigenvalue of C is ≤ rtol·λ_max(C)
    the frame counts as degenerate and the result is -inf (in both modes); a zero vector or an
    all-zero frame is degenerate too.  Near rtol the value is only as accurate as the Gram:
    log-volumes below about ½·log(rtol) ≈ -11.5 (default) are not resolved.
    """
    g = _as_grams(grams)
    c = cosine_matrix(g)
    if g.shape[-1] == 0:
        return g.new_zeros(g.shape[:-2])
    lam = torch.linalg.eigvalsh(c)                                     # ascending
    lam_max = lam[..., -1:]
    degenerate = ((lam <= rtol * lam_max) | (lam_max <= 0)).any(-1)
    logdet_c = torch.where(degenerate[..., None], 1.0, lam).clamp_min(1e-300).log().sum(-1)
    out = 0.5 * logdet_c
    if not normalize:
        d = torch.diagonal(g, dim1=-2, dim2=-1).clamp_min(0)
        out = out + 0.5 * torch.where(degenerate[..., None], 1.0, d).log().sum(-1)
    return torch.where(degenerate, -torch.inf, out)


def _mask(mask, k: int, what: str) -> torch.Tensor:
    m = torch.as_tensor(mask)
    if m.dtype != torch.bool:                   # indices -> mask
        idx = m.to(torch.int64).reshape(-1)
        if idx.numel() and (idx.min() < -k or idx.max() >= k):
            raise NFBenchError(f"{what}: vector index out of range for a frame of {k} vectors")
        m = torch.zeros(k, dtype=torch.bool)
        m[idx] = True
    if m.shape != (k,):
        raise NFBenchError(f"{what} must be a boolean mask of {k} entries, got shape {tuple(m.shape)}")
    if not m.any():
        raise NFBenchError(f"{what} selects no frame vector")
    return m.cpu()


def _whitener(c: torch.Tensor, rtol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """W with Wᵀ C W = I on C's numerical range (pseudo-inverse square root), and the rank.

    C = U Λ Uᵀ; W = U_kept Λ_kept^{-1/2}, with the columns of dropped directions (λ ≤ rtol·λ_max)
    set to zero so shapes stay fixed across a batch.
    """
    lam, u = torch.linalg.eigh(c)
    lam_max = lam[..., -1:]
    keep = (lam > rtol * lam_max) & (lam_max > 0)
    inv_sqrt = torch.where(keep, torch.where(keep, lam, 1.0).rsqrt(), 0.0)
    return u * inv_sqrt[..., None, :], keep.sum(-1)


def principal_angles(grams: torch.Tensor, mask_a, mask_b, rtol: float = 1e-10) -> torch.Tensor:
    """Principal angles (radians, ascending) between span{v_i : i∈A} and span{v_j : j∈B}: [..., r].

    How far a layer rotates one perturbation subspace away from (or into) another: 0 for a
    shared direction, π/2 for orthogonal ones.  From the Gram blocks only: with W_A, W_B the
    pseudo-inverse square roots of C_AA, C_BB (orthonormal bases Q_A = V_A W_A, Q_B = V_B W_B),
    the cosines are the singular values of W_Aᵀ C_AB W_B = Q_Aᵀ Q_B, clamped into [0, 1].  The
    cosine matrix C is used instead of G (spans do not depend on the vectors' lengths, and it
    is better conditioned); directions with eigenvalue ≤ rtol·λ_max of a block are dropped,
    so zero and linearly dependent vectors do not count.

    mask_a, mask_b: boolean [k] masks (e.g. `result.family_mask("noise")`) or index lists.
    r = min(rank A, rank B).  Ranks can differ across a batch: then r is the largest over the
    batch and the missing angles of lower-rank entries are nan (after the defined ones);
    a span of rank 0 (all its vectors zero) has only nan angles.  Angles below ~1e-8 rad are
    not resolved (the Gram squares the vectors' condition).
    """
    c = cosine_matrix(grams)
    k = c.shape[-1]
    a, b = _mask(mask_a, k, "mask_a"), _mask(mask_b, k, "mask_b")
    ia, ib = a.nonzero().squeeze(1).to(c.device), b.nonzero().squeeze(1).to(c.device)
    c_aa = c[..., ia[:, None], ia[None, :]]
    c_bb = c[..., ib[:, None], ib[None, :]]
    c_ab = c[..., ia[:, None], ib[None, :]]
    w_a, rank_a = _whitener(c_aa, rtol)
    w_b, rank_b = _whitener(c_bb, rtol)
    cos = torch.linalg.svdvals(w_a.transpose(-1, -2) @ c_ab @ w_b)   # descending
    rank = torch.minimum(rank_a, rank_b)
    r = int(rank.max()) if rank.numel() else min(len(ia), len(ib))
    cos = cos[..., :r].clamp(0.0, 1.0)
    defined = torch.arange(r, device=c.device) < rank[..., None]
    return torch.where(defined, torch.arccos(cos), _NAN)


# ---------------------------------------------------------------------------------------------
# FrameResult-level metrics


def relative_sensitivity(result: FrameResult) -> torch.Tensor:
    """Elasticity of each layer along each frame vector: [L, B, k].

        s_l(v) = (‖J_l v‖ / ‖f_l(x)‖) / (‖v‖ / ‖x‖),  ‖J_l v‖ = √G_l[i,i], ‖v‖ = √G_input[i,i]

    The relative change of the activation per relative change of the input, so layers of
    different width and scale are comparable: > 1 amplifies the perturbation relative to the
    signal, < 1 suppresses it.  A layer that only rescales (f ↦ c·f) leaves it unchanged, and
    it is exactly 1 at the `input` layer.

    nan where the ratio is undefined: ‖f_l(x)‖ = 0 (a dead layer, e.g. all ReLUs off),
    ‖v‖ = 0 (a perturbation that does not move this input) or ‖x‖ = 0 (an all-zero image).
    A perturbation killed by a live layer (‖J_l v‖ = 0) gives 0.
    """
    grams = result.grams.to(torch.float64)
    norms = result.act_norms.to(torch.float64)
    i0 = result.layer_index(INPUT)
    tangent = torch.diagonal(grams, dim1=-2, dim2=-1).clamp_min(0).sqrt()   # [L, B, k]
    v = tangent[i0]                                                          # [B, k]
    x = norms[i0]                                                            # [B]
    ratio_v = tangent / torch.where(v > 0, v, 1.0)                          # ‖J_l v‖/‖v‖
    ratio_x = x / torch.where(norms > 0, norms, 1.0)                         # ‖x‖/‖f_l(x)‖, [L, B]
    out = ratio_v * ratio_x[:, :, None]
    defined = (norms[:, :, None] > 0) & (v > 0) & (x[:, None] > 0)
    return torch.where(defined, out, _NAN)


def _masked_nanmean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values[..., mask.to(values.device)].nanmean(-1)


def family_sensitivity(result: FrameResult, family: str) -> torch.Tensor:
    """Mean relative sensitivity over one family's vectors (`augmentation`, `noise`, …): [L, B].

    Vectors whose sensitivity is undefined at a point (zero input vector) are left out of the
    mean; nan where none is defined (or the layer is dead, see `relative_sensitivity`).
    Unknown family -> NFBenchError.
    """
    return _masked_nanmean(relative_sensitivity(result), result.family_mask(family))


def label_sensitivity(result: FrameResult, label: str) -> torch.Tensor:
    """Relative sensitivity along the vector(s) with one label (e.g. `rotate`): [L, B].

    If a label occurs more than once its vectors are averaged like a family.
    Unknown label -> NFBenchError naming the closest labels.
    """
    if label not in result.labels:
        raise NFBenchError(one_of(label, result.labels, "frame vector label"))
    mask = torch.tensor([other == label for other in result.labels])
    return _masked_nanmean(relative_sensitivity(result), mask)


def relative_depth(result: FrameResult) -> torch.Tensor:
    """Position of each observed layer in [0, 1]: l / (L-1), input 0, last layer 1: [L].

    Puts models of different depth on one axis.  It is the index among the *observed* layers
    (so it depends on which layers were observed); a result with only the input layer gives [0].
    """
    n = len(result.layers)
    if n == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.arange(n, dtype=torch.float64) / (n - 1)


def penultimate_index(result: FrameResult) -> int:
    """Index of the last observed layer before `logits` (the penultimate representation).

    NFBenchError if `logits` was not observed, or if no model layer was observed before it
    (the input is not a layer of the model).
    """
    if LOGITS not in result.layers:
        raise NFBenchError(f"no penultimate layer: {LOGITS!r} was not observed "
                           f"(layers: {', '.join(result.layers)}); observe it to define one")
    i = result.layers.index(LOGITS) - 1
    if i < 0 or result.layers[i] == INPUT:
        raise NFBenchError(f"no penultimate layer: no model layer was observed between "
                           f"{INPUT!r} and {LOGITS!r}")
    return i


# ---------------------------------------------------------------------------------------------
# Per-point statistics of one model: what the claims, reports and leaderboard are computed from


@dataclass
class FrameStatistics:
    """The reduced view of one model's frames, per layer and evaluation point.

    sensitivity:  [L, B, k] relative sensitivity of every frame vector (`relative_sensitivity`)
    rank:         [L, B] effective rank (normalized) of the whole frame
    family_rank:  [F, L, B] effective rank of each family's sub-frame, in `family_names` order
    depth:        [L] relative depth of the observed layers
    penultimate:  index of the penultimate layer (None when the logits were not observed)
    meta:         the model's record (id, role, eps, source, accuracies, …), set by the stage
    """

    layers: list[str]
    labels: list[str]
    families: list[str]
    family_names: list[str]
    point_ids: torch.Tensor
    depth: torch.Tensor
    sensitivity: torch.Tensor
    rank: torch.Tensor
    family_rank: torch.Tensor
    penultimate: int | None
    meta: dict[str, Any] = field(default_factory=dict)

    def family(self, name: str) -> torch.Tensor:
        """Mean relative sensitivity of one family: [L, B]."""
        if name not in self.families:
            raise NFBenchError(one_of(name, self.family_names, "perturbation family"))
        return _masked_nanmean(self.sensitivity, torch.tensor([f == name for f in self.families]))

    def label(self, name: str) -> torch.Tensor:
        """Relative sensitivity along the vector(s) labelled `name`: [L, B]."""
        if name not in self.labels:
            raise NFBenchError(one_of(name, self.labels, "frame vector label"))
        return _masked_nanmean(self.sensitivity, torch.tensor([other == name for other in self.labels]))

    def at_layers(self, names: list[str]) -> FrameStatistics:
        """The statistics at some of the observed layers only (in their order; the penultimate
        index follows its layer, None when that layer is not kept)."""
        missing = [n for n in names if n not in self.layers]
        if missing:
            raise NFBenchError(f"model {self.meta.get('id', '?')}: {one_of(missing[0], self.layers, 'observed layer')}")
        keep = [i for i, layer in enumerate(self.layers) if layer in names]
        index = torch.tensor(keep)
        penultimate = keep.index(self.penultimate) if self.penultimate in keep else None
        return FrameStatistics(layers=[self.layers[i] for i in keep], labels=list(self.labels),
                               families=list(self.families), family_names=list(self.family_names),
                               point_ids=self.point_ids.clone(), depth=self.depth[index].clone(),
                               sensitivity=self.sensitivity[index].clone(), rank=self.rank[index].clone(),
                               family_rank=self.family_rank[:, index].clone(), penultimate=penultimate,
                               meta=dict(self.meta))

    def to_bytes(self) -> bytes:
        from .storage import tensors_to_bytes

        return tensors_to_bytes(
            {"point_ids": self.point_ids, "depth": self.depth, "sensitivity": self.sensitivity,
             "rank": self.rank, "family_rank": self.family_rank},
            {"layers": self.layers, "labels": self.labels, "families": self.families,
             "family_names": self.family_names, "penultimate": self.penultimate, "meta": self.meta})

    @classmethod
    def load(cls, path) -> FrameStatistics:
        from .storage import tensors_from_file

        tensors, meta = tensors_from_file(path, "frame statistics file")
        return cls(**tensors, **meta)


def frame_statistics(result: FrameResult, meta: dict[str, Any] | None = None) -> FrameStatistics:
    """Reduce a FrameResult to its per-point statistics (pure)."""
    names = list(dict.fromkeys(result.families))
    family_rank = torch.stack([
        effective_rank(result.grams[..., m[:, None] & m[None, :]].reshape(
            *result.grams.shape[:2], int(m.sum()), int(m.sum())))
        for m in (result.family_mask(f) for f in names)])
    try:
        penultimate = penultimate_index(result)
    except NFBenchError:
        penultimate = None
    return FrameStatistics(layers=list(result.layers), labels=list(result.labels),
                           families=list(result.families), family_names=names,
                           point_ids=result.point_ids.clone(), depth=relative_depth(result),
                           sensitivity=relative_sensitivity(result), rank=effective_rank(result.grams),
                           family_rank=family_rank, penultimate=penultimate, meta=dict(meta or {}))


# ---------------------------------------------------------------------------------------------
# Means over the evaluation points (float64 numpy, for the tables, the claims and summary.json)


def as_float64(values) -> np.ndarray:
    return np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=np.float64)


def binomial_interval(p: float, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion p measured on n points, at z standard errors."""
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n)), min(1.0, (centre + spread) / (1 + z * z / n))


def nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean over `axis` of the values that are not nan; nan where none is (without numpy's warning)."""
    ok = ~np.isnan(a)
    n = ok.sum(axis)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(axis) / np.maximum(n, 1), np.nan)


def layer_means(stats: FrameStatistics) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per observed layer, the point mean of each family's relative sensitivity, and of the rank."""
    return ({f: nanmean(as_float64(stats.family(f)), 1) for f in stats.family_names},
            nanmean(as_float64(stats.rank), 1))


def layer_summary(stats: Mapping[str, FrameStatistics]) -> dict:
    """metrics/summary.json: per model, per layer, depth and `layer_means` (null where undefined)."""
    def finite(v) -> float | None:
        return float(v) if math.isfinite(float(v)) else None

    out: dict = {}
    for m in sorted(stats):
        fam, rank = layer_means(stats[m])
        out[m] = {layer: {"depth": float(stats[m].depth[i]),
                          **{f"sensitivity_{f}": finite(fam[f][i]) for f in stats[m].family_names},
                          "effective_rank": finite(rank[i])}
                  for i, layer in enumerate(stats[m].layers)}
    return out
