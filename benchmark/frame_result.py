"""What the engine returns: the Grams of a frame at each observed layer, and what they are of.

Saved as one safetensors file (tensors, and the names and provenance as metadata), byte-identical
for identical results; the frames stage writes one per model, the metrics stage reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import NFBenchError, one_of


@dataclass
class FrameResult:
    """Grams of a frame at each observed layer.

    grams:     [L, B, k, k] float64, G[l, b] = (J_l v)ᵀ(J_l v) for the k frame vectors at point b
    act_norms: [L, B] float64, ‖f_l(x_b)‖ (Frobenius norm of the activation itself)
    dims:      [L] int64, number of elements of one point's activation at layer l
    layers:    L layer names in depth order; the first is always `input`
    labels:    k vector labels (`rotate`, `noise/3`, `vae/5`, …)
    families:  k family names (`augmentation`, `noise`, `generative`)
    point_ids: [B] int64, dataset indices of the points (they seed the noise directions)
    provenance: free-form JSON-able dict (model id, frame spec, seed, code version, …)
    """

    grams: torch.Tensor
    act_norms: torch.Tensor
    dims: torch.Tensor
    layers: list[str]
    labels: list[str]
    families: list[str]
    point_ids: torch.Tensor
    provenance: dict[str, Any] = field(default_factory=dict)

    def layer_index(self, name: str) -> int:
        if name not in self.layers:
            raise NFBenchError(one_of(name, self.layers, "layer"))
        return self.layers.index(name)

    def family_mask(self, family: str) -> torch.Tensor:
        """Boolean [k] mask of the vectors of one family."""
        if family not in self.families:
            raise NFBenchError(one_of(family, self.families, "perturbation family"))
        return torch.tensor([f == family for f in self.families])

    @classmethod
    def along_points(cls, parts: list[FrameResult]) -> FrameResult:
        """The result of the points of `parts` (results of the same frame and layers) in order."""
        first = parts[0]
        return cls(grams=torch.cat([p.grams for p in parts], dim=1),
                   act_norms=torch.cat([p.act_norms for p in parts], dim=1), dims=first.dims,
                   layers=first.layers, labels=first.labels, families=first.families,
                   point_ids=torch.cat([p.point_ids for p in parts]), provenance=dict(first.provenance))

    def to_bytes(self) -> bytes:
        from .storage import tensors_to_bytes

        return tensors_to_bytes(
            {"grams": self.grams, "act_norms": self.act_norms, "dims": self.dims, "point_ids": self.point_ids},
            {"layers": self.layers, "labels": self.labels, "families": self.families,
             "provenance": self.provenance})

    def save(self, path) -> None:
        """Write one safetensors file atomically (byte-identical for identical results)."""
        from .storage import write_bytes

        write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path) -> FrameResult:
        from .storage import tensors_from_file

        tensors, meta = tensors_from_file(path, "frame file")
        return cls(**tensors, **meta)
