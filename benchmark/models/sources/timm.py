"""`source: timm`: a timm model with its pretrained weights, {name}.

No source checkpoint here: timm keeps the weights in its own cache (downloading them through the
Hugging Face hub when absent); a pinned sha256 is that of the weights as installed here
(model.safetensors).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import NFBenchError, one_of
from ...storage import network_timeout

if TYPE_CHECKING:
    from torch import nn


def source_file(spec: Mapping, root: Path, what: str) -> None:
    return None


def build(spec: Mapping, arch: Mapping) -> nn.Module:
    import timm

    from ..nets import add_pixel_normalization

    net = timm.create_model(spec["name"], pretrained=False, **arch.get("kwargs", {}))
    return add_pixel_normalization(net, net.pretrained_cfg["mean"], net.pretrained_cfg["std"])


@contextlib.contextmanager
def _hub_offline_unless_reachable(host: str) -> Iterator[None]:
    """Without a route to the Hugging Face hub, read its cache only: huggingface_hub would
    otherwise retry a failing download for most of a minute before giving up."""
    import huggingface_hub.constants as hub

    try:
        socket.create_connection((host, 443), timeout=5).close()
        reachable = True
    except OSError:
        reachable = False
    previous = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = previous or not reachable
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = previous


def acquire(spec: Mapping, root: Path, what: str):
    import timm

    from ..nets import add_pixel_normalization

    if not timm.is_model(spec["name"]):
        raise NFBenchError(f"{what}: {one_of(spec['name'], timm.list_models(), 'timm model')}")
    try:
        with network_timeout(), _hub_offline_unless_reachable("huggingface.co"):
            net = timm.create_model(spec["name"], pretrained=True)
    except Exception as exc:   # timm, huggingface_hub and urllib each raise their own types
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise NFBenchError(f"{what}: timm could not load the pretrained weights of {spec['name']} ({reason}); "
                           f"without network they must already be in timm's cache") from exc
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    installed = hashlib.sha256(save(state)).hexdigest()
    if "sha256" in spec and installed != spec["sha256"]:
        raise NFBenchError(f"{what}: the sha256 of {spec['name']}'s weights (as model.safetensors) is "
                           f"{installed}, expected {spec['sha256']}; refused")
    info = {"source_checkpoint": {"timm": spec["name"], "sha256": installed}}
    net = add_pixel_normalization(net, net.pretrained_cfg["mean"], net.pretrained_cfg["std"]).eval()
    return net, info, {"name": spec["name"], "kwargs": {"num_classes": net.num_classes}}
