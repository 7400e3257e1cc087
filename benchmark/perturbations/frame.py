"""The frame at a set of points: the vectors of a frame spec, with their labels and families."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import NFBenchError
from . import validate_spec
from .augmentations import tangents
from .generative import Autoencoder, decoder_directions
from .noise import noise_directions


@dataclass
class Frame:
    vectors: torch.Tensor     # B×k×C×H×W
    labels: list[str]
    families: list[str]


def build_frame(spec: Mapping[str, Any], x: torch.Tensor, point_ids: torch.Tensor,
                autoencoder: Autoencoder | None = None) -> Frame:
    """The frame of `spec` at points x (B×C×H×W): vectors B×k×C×H×W with labels and families."""
    spec = validate_spec(spec, channels=x.shape[1])
    parts: list[torch.Tensor] = []
    labels: list[str] = []
    families: list[str] = []
    if "augmentation" in spec:
        names = spec["augmentation"]["transforms"]
        parts.append(tangents(x, names))
        labels += names
        families += ["augmentation"] * len(names)
    if "noise" in spec:
        n = spec["noise"]["count"]
        parts.append(noise_directions(x, point_ids, n, spec["noise"]["seed"]))
        labels += [f"noise/{i}" for i in range(n)]
        families += ["noise"] * n
    if "generative" in spec:
        if autoencoder is None:
            raise NFBenchError(f"the frame asks for generative directions from "
                               f"{spec['generative']['model']!r} but no autoencoder was given")
        columns = decoder_directions(x, autoencoder, spec["generative"]["count"])
        parts.append(columns.to(x.dtype))
        labels += [f"{spec['generative']['model']}/{i}" for i in range(columns.shape[1])]
        families += ["generative"] * columns.shape[1]
    return Frame(torch.cat(parts, dim=1), labels, families)
