"""Tangent rules for the layers most vision models are made of: each layer's output tangent as
its linear part applied to the input tangent, in one pass, so the tangent push costs what a
plain forward costs.

Inside `vmap(jvp(model))` torch differentiates every operator by its generic forward-AD
formula, and for a layer whose parameters carry no tangent that formula still works on them:
a convolution or a linear layer runs a second product against a zero weight and adds it to the
tangent, a per-channel scale (eval-mode BatchNorm) copies the tangent twice more, an in-place
ReLU writes its tangent twice.  The rules compute the same tangents (bit for bit on the CPU)
with the primal and the tangent of a dual taken apart and put back together
(`torch.autograd.forward_ad.unpack_dual` / `make_dual`, public API):
  Conv1d/2d/3d   conv(t, W), no bias          Linear       t·Wᵀ
  BatchNorm      t·s, s = γ/√(σ²+ε)           ReLU         t·[output > 0]
  MaxPool2d      t at each window's argmax, gathered in memory order
They take over the forward of modules of exactly these types (a subclass may compute something
else) while the engine runs, so hooks and layer names are unchanged; a module whose input carries
no tangent runs its own forward (eval-mode BatchNorm as the affine map x·s + t it is).

Memory format: on the CPU the convolutions of 4-D images run fastest channels-last (oneDNN's
native layout: measured 1.2–2× on a plain forward), so the engine lays its points and tangents out
channels-last there, and the convolution rule hands oneDNN a channels-last copy of the weight
(made once, the model's own parameters untouched).  Pure: no files, no printing.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def channels_last(model: nn.Module, ndim: int, device: torch.device) -> bool:
    """Whether the engine lays points of `ndim` dimensions out channels-last on `device`: 4-D
    points on the CPU, for a model with 2-D convolutions."""
    return ndim == 4 and device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def as_channels_last(t: torch.Tensor) -> torch.Tensor:
    """A [..., C, H, W] tensor with C innermost in memory (the same values and shape)."""
    dims = list(range(t.ndim))
    order = dims[:-3] + [t.ndim - 2, t.ndim - 1, t.ndim - 3]
    return t.permute(order).contiguous().permute(torch.argsort(torch.tensor(order)).tolist())


@contextlib.contextmanager
def tangent_rules(model: nn.Module, channels_last_weights: bool = False) -> Iterator[None]:
    """Run the rules above for `model`'s modules while inside; their own forwards after."""
    swapped = []
    for module in model.modules():
        rule = _rule(module, channels_last_weights)
        if rule is not None and "forward" not in module.__dict__:
            module.forward = rule
            swapped.append(module)
    try:
        with _Arithmetic():
            yield
    finally:
        for module in swapped:
            del module.forward


_IN_PLACE_ADD = frozenset({torch.Tensor.add_, torch.Tensor.__iadd__})
# tensor ⊙ constant -> (the operator, whether the tangent is the operator applied to it, else unchanged)
_WITH_CONSTANT = {
    **dict.fromkeys((torch.add, torch.Tensor.add, torch.Tensor.__add__), (torch.add, False)),
    **dict.fromkeys((torch.sub, torch.Tensor.sub, torch.Tensor.__sub__), (torch.sub, False)),
    **dict.fromkeys((torch.mul, torch.Tensor.mul, torch.Tensor.__mul__), (torch.mul, True)),
    **dict.fromkeys((torch.div, torch.Tensor.div, torch.Tensor.__truediv__), (torch.div, True)),
}


class _Arithmetic(TorchFunctionMode):
    """Arithmetic on duals that torch's rules make slow, in one pass over the tangent:
    `a += b` of two duals (a residual branch joining, `out += identity`: torch writes a new
    tangent and copies it back), and a dual with a constant tensor, such as a normalization's
    (x − μ)/σ (torch pairs the constant with a zero tangent, three passes in Python reference ops).
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not kwargs and len(args) == 2 and isinstance(args[0], torch.Tensor) and isinstance(args[1], torch.Tensor):
            if func in _IN_PLACE_ADD:
                (primal, tangent), (other, other_tangent) = fwAD.unpack_dual(args[0]), fwAD.unpack_dual(args[1])
                if tangent is not None and other_tangent is not None:
                    primal.add_(other)
                    tangent.add_(other_tangent)
                    return args[0]
            elif func in _WITH_CONSTANT:
                op, scales = _WITH_CONSTANT[func]
                (primal, tangent), (constant, constant_tangent) = fwAD.unpack_dual(args[0]), fwAD.unpack_dual(args[1])
                if tangent is not None and constant_tangent is None:
                    out = op(primal, constant)
                    if out.shape == primal.shape:
                        return fwAD.make_dual(out, op(tangent, constant) if scales else tangent.clone())
        return func(*args, **(kwargs or {}))


def _rule(module: nn.Module, channels_last_weights: bool):
    kind = type(module)
    if kind in _CONVOLUTIONS:
        weight = module.weight.detach()
        if channels_last_weights and kind is nn.Conv2d and module.in_channels == 1:
            # a 1-channel input is channels-last and contiguous at once: oneDNN follows the weight
            weight = weight.contiguous(memory_format=torch.channels_last)
        bias = None if module.bias is None else module.bias.detach()
        return functools.partial(_linear_in_input, own=module.forward,
                                 apply=functools.partial(module._conv_forward, weight=weight), bias=bias)
    if kind is nn.Linear:
        weight, bias = module.weight.detach(), None if module.bias is None else module.bias.detach()
        return functools.partial(_linear_in_input, own=module.forward,
                                 apply=lambda x, bias: F.linear(x, weight, bias), bias=bias)
    if kind in _BATCHNORMS and not module.training and module.track_running_stats \
            and module.running_var is not None:
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach()
        shift = -module.running_mean * scale
        if module.bias is not None:
            shift = shift + module.bias.detach()
        return functools.partial(_affine, scale=scale, shift=shift)
    if kind is nn.ReLU:
        return functools.partial(_relu, inplace=module.inplace)
    if kind is nn.MaxPool2d and not module.return_indices:
        return functools.partial(_max_pool2d, own=module.forward, pool=functools.partial(
            F.max_pool2d, kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
            dilation=module.dilation, ceil_mode=module.ceil_mode, return_indices=True))
    return None


def _linear_in_input(x: torch.Tensor, own, apply, bias: torch.Tensor | None) -> torch.Tensor:
    """A layer affine in its input (a convolution, a linear layer): its tangent is the linear part."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return own(x)
    return fwAD.make_dual(apply(primal, bias=bias), apply(tangent, bias=None))


def _affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Eval-mode BatchNorm, x·s + t per channel: the tangent is scaled, in one multiply."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale, shift = scale.view(shape), shift.view(shape)
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return torch.addcmul(shift, x, scale)
    return fwAD.make_dual(torch.addcmul(shift, primal, scale), tangent * scale)


def _max_pool2d(x: torch.Tensor, own, pool) -> torch.Tensor:
    """Max pooling: each output's tangent is the tangent at its window's argmax, picked by one
    index_select over the tangent in memory order (torch's rule gathers with an index expanded
    to every vector: 2.6× slower on a ResNet stem, channels-last)."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None or primal.ndim != 4:
        return own(x)
    out, index = pool(primal)
    (P, C, H, W), (h, w) = primal.shape, out.shape[-2:]
    planes = torch.arange(P * C, device=index.device).view(P, C, 1, 1)
    if not primal.is_contiguous(memory_format=torch.channels_last):       # memory order P, C, H, W
        flat = (index + planes * (H * W)).reshape(-1)
        return fwAD.make_dual(out, tangent.reshape(-1).index_select(0, flat).view(out.shape))
    # memory order P, H, W, C: plane (p, c) starts at p·HWC + c, its positions C apart
    starts = planes // C * (C * H * W) + planes % C
    flat = (index * C + starts).permute(0, 2, 3, 1).reshape(-1)
    picked = tangent.permute(0, 2, 3, 1).reshape(-1).index_select(0, flat).view(P, h, w, C)
    return fwAD.make_dual(out, picked.permute(0, 3, 1, 2))


def _relu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """ReLU: the tangent times the mask [output > 0] (torch's rule), one multiply: torch's
    threshold_backward broadcasts the mask over the vectors ten times slower on the CPU."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return F.relu(x, inplace=inplace)
    if inplace:                       # the input is the output, its tangent updated in place, as torch does
        positive = primal > 0
        try:
            tangent.mul_(positive)
        except RuntimeError:          # the tangent is the transform's own input (torch.func refuses to
            return F.relu(x, inplace=True)   # mutate it; nothing was changed): torch's rule
        primal.relu_()
        return x
    out = torch.relu(primal)
    return fwAD.make_dual(out, tangent * (out > 0))
