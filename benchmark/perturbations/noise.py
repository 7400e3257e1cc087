"""Random directions: the reference family every other perturbation is compared with."""

from __future__ import annotations

import numpy as np
import torch


def noise_directions(x: torch.Tensor, point_ids: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """`count` unit-norm Gaussian directions per point, B×count×C×H×W.

    Each point's directions depend only on (seed, point id) — not on the batch it sits in or
    the device — so any subset of points reproduces the same vectors.
    """
    shape = x.shape[1:]
    out = torch.empty(x.shape[0], count, *shape, dtype=torch.float64)
    for row, pid in enumerate(point_ids.tolist()):
        state = np.random.SeedSequence([seed, int(pid)]).generate_state(2, dtype=np.uint64)
        gen = torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
        v = torch.randn(count, *shape, generator=gen, dtype=torch.float64)
        out[row] = v / v.flatten(1).norm(dim=1).reshape(count, *[1] * len(shape))
    return out.to(device=x.device, dtype=x.dtype)
