"""Gram reductions of a batch of tangents [m, P, ...] -> [P, m, m]: what the frame engine keeps
of each observed layer (`frames.py`), whole or per channel.  Pure: no files, no printing.
"""

from __future__ import annotations

import math

import torch

_GRAM_BLOCK = 4096
# Per-channel Grams pay for their [P, C, m, m] output, and their matmuls for a short inner
# dimension: on ResNet-18 (Intel Xeon, all layers observed) sharing them with the BatchNorm saved
# 4 % of the call from 16×16 channels up, nothing from 8×8 up (64 coordinates)
_CHANNEL_GRAM_MIN = 256


def tangent_grams(t: torch.Tensor) -> torch.Tensor:
    """Gram per point of a tangent batch [m, P, ...] -> [P, m, m], float64, on t's device.

    Partial products over blocks of 4096 coordinates are formed in the tangents' precision
    and accumulated in float64: as fast as one matmul (the blocks stay in cache) and about
    ten times more accurate than a float32 sum over a whole large layer.  The coordinates are
    taken in memory order (inner products do not depend on it), so a channels-last tangent is
    not copied.
    """
    order = sorted(range(2, t.ndim), key=lambda d: -t.stride(d))
    t = t.permute(0, 1, *order)
    rows = t.reshape(t.shape[0], t.shape[1], -1).transpose(0, 1)   # P×m×D (a view where t is dense)
    return _blocked_grams(rows)


def channel_grams(t: torch.Tensor) -> torch.Tensor | None:
    """Per-channel Grams of a tangent batch [m, P, C, H, W] laid out NCHW -> [P, C, m, m], float64:
    the Gram over each channel's coordinates alone, so the Gram of t scaled by s_c per channel
    (an eval BatchNorm's tangent) is Σ_c s_c² G_c, with no pass over the scaled tangent: one
    batched matmul over points × channels, the channels' rows contiguous.  None where a channel has
    fewer than `_CHANNEL_GRAM_MIN` coordinates, or is laid out channels-last (coordinates C apart)."""
    if t.ndim < 4 or not t[0].is_contiguous() or math.prod(t.shape[3:]) < _CHANNEL_GRAM_MIN:
        return None
    m, P, C = t.shape[:3]
    rows = t.view(m, P * C, -1).transpose(0, 1)            # (P·C)×m×HW, a view
    return _blocked_grams(rows).view(P, C, m, m)


def _blocked_grams(rows: torch.Tensor) -> torch.Tensor:
    """rows [N, m, D] -> [N, m, m] float64: products over blocks of `_GRAM_BLOCK` coordinates in
    the rows' precision, summed in float64."""
    return sum(torch.bmm(block, block.mT).double() for block in rows.split(_GRAM_BLOCK, dim=2))
