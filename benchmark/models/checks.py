"""The checks a model must pass before the benchmark uses it.

Before install (`zoo.obtain`): a downloaded or imported classifier maps the suite's images to
finite, deterministic, input-differentiable logits of the right shape; an autoencoder encodes
and decodes them.  Before frames: modules that block forward-mode AD are swapped for their
exact built-in equivalents.  At validation: explicit layer names exist in each architecture.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..config import layers_for
from ..errors import NFBenchError, one_of
from ..frames import layer_point
from ..recipes import architecture
from ..vocab import DATASET_DIMS
from .sources import build_architecture

# Modules known to block torch.func (their forward is a custom autograd.Function without forward-
# mode AD) and the built-in module that computes the same function: RobustBench's Swish is
# x·sigmoid(x), which is nn.SiLU.  `forward_ad_ready` swaps them in at frame time.
_EXACT_EQUIVALENTS = {
    ("robustbench.model_zoo.architectures.dm_wide_resnet", "Swish"): nn.SiLU,
    ("robustbench.model_zoo.architectures.dm_rn", "Swish"): nn.SiLU,
}


def forward_ad_ready(net: nn.Module, what: str) -> list[str]:
    """Swap, in place, every module of `_EXACT_EQUIVALENTS` for its built-in equivalent, after
    checking on a grid that the two agree; returns the swapped modules' names.  Frames then stay
    exact where the model would otherwise need finite differences."""
    probe = torch.linspace(-12.0, 12.0, 241, dtype=torch.float64)
    swapped = []
    for name, module in list(net.named_modules(remove_duplicate=False)):
        equivalent = _EXACT_EQUIVALENTS.get((type(module).__module__, type(module).__name__))
        if equivalent is None or not name:
            continue
        twin = equivalent()
        with torch.no_grad():
            if not torch.allclose(module(probe), twin(probe), rtol=1e-12, atol=1e-12):
                raise NFBenchError(f"{what}: {name} ({type(module).__name__}) does not compute "
                                   f"{equivalent.__name__}, so it cannot be swapped for forward-mode AD")
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent), child, twin)
        swapped.append(name)
    return swapped


def check_layer_names(params: Mapping, where: str = "params.yaml") -> None:
    """Explicit layer names must exist in each model's architecture (built without weights)."""
    dims = DATASET_DIMS[params["data"]["dataset"]]
    for model_id, spec in params["models"].items():
        layers = layers_for(params, spec)
        if layers in ("auto", "all"):
            continue
        arch = architecture(spec, dims) if spec["source"] == "local" else {"kwargs": {"num_classes": dims[2]}}
        names = {n for n, _ in build_architecture(spec, arch).named_modules() if n} | {"input", "logits"}
        for name in layers:
            if layer_point(name)[0] not in names:
                raise NFBenchError(f"{where}: frames.layers: model {model_id}: "
                                   f"{one_of(name, sorted(names), 'layer')}")


def check_output_shape(net: nn.Module, data, what: str) -> None:
    x = data.test.images(torch.arange(2))
    with torch.no_grad():
        out = net(x)
    expected = (2, data.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise NFBenchError(f"{what}: the model maps a batch of 2 {data.name} images to {shape}; "
                           f"expected logits of shape {expected}")


def check_classifier(net: nn.Module, data, what: str) -> None:
    """A classifier the frames and the attack can use: logits of the right shape for the suite's
    images, finite, the same on a second call, and differentiable with respect to the input."""
    x = data.test.images(torch.arange(2)).requires_grad_(True)
    try:
        check_output_shape(net, data, what)
        with torch.enable_grad():
            out = net(x)
        with torch.no_grad():
            again = net(x)
    except NFBenchError:
        raise
    except Exception as exc:   # whatever the model's own code raises
        reason = (str(exc).splitlines() or [""])[0][:160]
        raise NFBenchError(f"{what}: the model fails on a batch of 2 {data.name} images of shape "
                           f"{tuple(x.shape)} ({type(exc).__name__}: {reason})") from exc
    if not torch.isfinite(out).all():
        raise NFBenchError(f"{what}: the model's logits for 2 {data.name} images contain NaN or inf")
    if not torch.equal(out.detach(), again):
        raise NFBenchError(f"{what}: the model gives different logits for the same images on a second call "
                           f"(dropout or other randomness left on in eval mode?)")
    grad = torch.autograd.grad(out.sum(), x, allow_unused=True)[0] if out.requires_grad else None
    if grad is None or not torch.isfinite(grad).all() or not grad.any():
        raise NFBenchError(f"{what}: the logits have no usable gradient with respect to the input "
                           f"(frames and the PGD attack differentiate the model through its input)")


def check_autoencoder(net: nn.Module, data, what: str) -> None:
    x = data.test.images(torch.arange(2))
    try:
        with torch.no_grad():
            z = net.encode(x)
            out = net.decode(z)
    except AttributeError as exc:
        raise NFBenchError(f"{what}: an autoencoder needs encode(x) and decode(z) methods ({exc})") from exc
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or z.ndim != 2:
        raise NFBenchError(f"{what}: encode/decode must map images {tuple(x.shape)} to latents [2, d] and back; "
                           f"got latents {tuple(getattr(z, 'shape', ()))} "
                           f"and images {tuple(getattr(out, 'shape', ()))}")
