"""Frame specs: which tangent vectors are pushed through a model at each point, as data.

A frame spec is plain data (it lives in params.yaml), one entry per family:

    augmentation: {transforms: [rotate, translate_x, translate_y, scale, shear, brightness, contrast]}
    noise:        {count: 16, seed: 0}
    generative:   {model: vae, count: 8}     # count: null keeps every latent direction

Families always appear in the frame in this order; labels are `rotate`, `noise/3`, `vae/5`.
This package's top level is torch-free (params.yaml is validated with it); the vectors
themselves are built by `frame.build_frame` from `augmentations`, `noise` and `generative`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import NFBenchError, one_of
from ..schema import number
from ..vocab import COLOUR_ONLY, FAMILIES, TRANSFORMS

_PARAMS: dict[str, dict[str, Any]] = {
    "augmentation": {"transforms": list(TRANSFORMS[:7])},
    "noise": {"count": 16, "seed": 0},
    "generative": {"model": None, "count": None},
}


def validate_spec(spec: Mapping[str, Any], where: str = "frame", channels: int | None = None) -> dict:
    """Check a frame spec and fill in defaults; errors name the key path and what is valid."""
    if not isinstance(spec, Mapping) or not spec:
        raise NFBenchError(f"{where}: must be a mapping with at least one of {', '.join(FAMILIES)}")
    out: dict[str, dict] = {}
    for family in spec:
        if family not in _PARAMS:
            raise NFBenchError(f"{where}: {one_of(str(family), FAMILIES, 'perturbation family')}")
        params = spec[family] or {}
        if not isinstance(params, Mapping):
            raise NFBenchError(f"{where}.{family}: must be a mapping of parameters, got {params!r}")
        for key in params:
            if key not in _PARAMS[family]:
                raise NFBenchError(f"{where}.{family}: {one_of(str(key), _PARAMS[family], 'parameter')}")
        out[family] = {**_PARAMS[family], **params}
    _check_values(out, where, channels)
    return {f: out[f] for f in FAMILIES if f in out}


def _check_values(spec: dict, where: str, channels: int | None) -> None:
    def count(family: str, value, allow_none: bool = False):
        if value is None and allow_none:
            return
        number(value, f"{where}.{family}.count", 1, integer=True,
               valid="a positive integer" + (" or null" if allow_none else ""))

    if "augmentation" in spec:
        names = spec["augmentation"]["transforms"]
        if not isinstance(names, list) or not names:
            raise NFBenchError(f"{where}.augmentation.transforms: must be a non-empty list of {', '.join(TRANSFORMS)}")
        for name in names:
            if name not in TRANSFORMS:
                raise NFBenchError(f"{where}.augmentation.transforms: {one_of(str(name), TRANSFORMS, 'augmentation')}")
            if name in COLOUR_ONLY and channels is not None and channels != 3:
                raise NFBenchError(f"{where}.augmentation.transforms: {name!r} needs colour images; "
                                   f"this data has {channels} channel(s)")
        if len(set(names)) != len(names):
            raise NFBenchError(f"{where}.augmentation.transforms: lists a transform twice")
    if "noise" in spec:
        count("noise", spec["noise"]["count"])
        number(spec["noise"]["seed"], f"{where}.noise.seed", integer=True)
    if "generative" in spec:
        count("generative", spec["generative"]["count"], allow_none=True)
        if not isinstance(spec["generative"]["model"], str):
            raise NFBenchError(f"{where}.generative.model: must name the autoencoder to use")
