"""`source: torchvision`: torchvision's pretrained weights, {arch, weights}.

Its source checkpoint is torchvision's weights file in the torch hub cache (downloaded if
absent), pinned by the sha256 prefix in its name unless the spec pins the whole sha256.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import NFBenchError
from . import SourceFile, obtain

if TYPE_CHECKING:
    from torch import nn


def torchvision_weights(spec: Mapping, what: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(spec["arch"])[spec["weights"]]
    except (ValueError, KeyError) as exc:
        raise NFBenchError(f"{what}: torchvision has no weights {spec['arch']}/{spec['weights']} ({exc})") from exc


def source_file(spec: Mapping, root: Path, what: str) -> SourceFile:
    import torch.hub

    url = torchvision_weights(spec, what).url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name   # torch.hub's cache
    label = f"torchvision {spec['arch']} {spec['weights']}"
    if "sha256" in spec:
        return SourceFile(path, url, spec["sha256"], label=label)
    prefix = re.search(r"-([0-9a-f]{6,})\.", path.name)   # torchvision's <arch>-<sha256 prefix>.pth
    return SourceFile(path, url, prefix.group(1) if prefix else None, prefix_only=True, label=label)


def build(spec: Mapping, arch: Mapping) -> nn.Module:
    import torchvision

    from ..layouts import declare_block_outputs
    from ..nets import IMAGENET_MEAN, IMAGENET_STD, add_pixel_normalization

    net = torchvision.models.get_model(spec["arch"], weights=None, **arch.get("kwargs", {}))
    return declare_block_outputs(add_pixel_normalization(net, IMAGENET_MEAN, IMAGENET_STD))


def acquire(spec: Mapping, root: Path, what: str):
    from ..checkpoints import load_into, load_state_file

    source = source_file(spec, root, what)
    sha = obtain(source, what)
    state = load_state_file(source.path, what)
    classes = len(torchvision_weights(spec, what).meta["categories"])
    net = load_into(build(spec, {"kwargs": {"num_classes": classes}}), state, what)
    info = {"source_checkpoint": {"path": str(source.path), "sha256": sha, "url": source.url}}
    return net, info, {"name": spec["arch"], "kwargs": {"num_classes": classes}}
