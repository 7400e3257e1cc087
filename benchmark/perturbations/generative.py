"""On-manifold directions from a generative model: columns of the decoder Jacobian."""

from __future__ import annotations

from typing import Protocol

import torch
from torch.func import jvp, vmap

from ..errors import NFBenchError


class Autoencoder(Protocol):
    def encode(self, x: torch.Tensor) -> torch.Tensor: ...   # B×C×H×W -> B×d (posterior mean)
    def decode(self, z: torch.Tensor) -> torch.Tensor: ...   # B×d -> B×C×H×W


def decoder_directions(x: torch.Tensor, autoencoder: Autoencoder, count: int | None = None) -> torch.Tensor:
    """Columns ∂decode/∂z_j at z = encode(x), exact by forward-mode AD: B×m×C×H×W.

    They span the tangent space of the learned data manifold at the reconstruction of x.
    count=None keeps every latent direction in latent order; count=m keeps, per point, the
    m columns of largest norm, sorted by decreasing norm.
    """
    with torch.no_grad():
        z = autoencoder.encode(x)
        d = z.shape[1]
        if count is not None and count > d:
            raise NFBenchError(f"generative count {count} exceeds the autoencoder's latent dimension {d}")
        basis = torch.eye(d, dtype=z.dtype, device=z.device)
        columns = vmap(lambda e: jvp(autoencoder.decode, (z,), (e.expand_as(z),))[1])(basis)
    columns = columns.transpose(0, 1)                                  # B×d×C×H×W
    if count is None:
        return columns.contiguous()
    order = columns.flatten(2).norm(dim=2).argsort(dim=1, descending=True, stable=True)[:, :count]
    return torch.stack([columns[b, order[b]] for b in range(columns.shape[0])])
