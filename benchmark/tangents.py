"""Tangent rules for the layers most vision models are made of: each layer's output tangent as
its linear part applied to the input tangent, in one pass, so the tangent push costs what a
plain forward costs.

Inside `vmap(jvp(model))` torch differentiates every operator by its generic forward-AD
formula, and for a layer whose parameters carry no tangent that formula still works on them:
a convolution or a linear layer runs a second product against a zero weight and adds it to the
tangent, a per-channel scale (eval-mode BatchNorm) copies the tangent twice more, ReLU
broadcasts its mask ten times slower than a multiply, an in-place op writes a new tangent and
copies it back.  The rules compute the same tangents up to float rounding (the tests compare
them with torch's in float64), with the primal and the tangent of a dual taken apart and put
back together (`torch.autograd.forward_ad.unpack_dual` / `make_dual`, public API):
  Conv1d/2d/3d   conv(t, W), no bias          Linear       t·Wᵀ
  BatchNorm      t·s, s = γ/√(σ²+ε), or t where s is folded into the convolution before (`_Folds`)
  ReLU           t·[output > 0]               MaxPool2d    t at each window's argmax
  AdaptiveAvgPool2d(1)   the spatial mean of t
  a dual ± · ÷ a constant tensor, and `a += b` of two duals (`_Arithmetic`)
They take over the forward of modules of exactly these types (a subclass may compute something
else) while the engine runs, so hooks and layer names are unchanged; a module whose input carries
no tangent runs its own forward (eval-mode BatchNorm as the affine map x·s + t it is).

Memory format: the engine lays its points and tangents out channels-last (oneDNN's native layout)
or NCHW, as `channels_last` decides.  Neither is faster everywhere: on AMD EPYCs a plain ResNet-18
forward ran 1.15–1.25× faster channels-last and a small MNIST CNN 2–2.4×, while on an Intel Xeon
the ResNet-18 forward ran 1.1–1.2× faster NCHW (its 256- and 512-channel convolutions at 4×4 and 2×2,
1.3–3× faster NCHW) and the small CNN still 2.2× faster channels-last.  Channels-last, a
convolution with one input channel, whose input is channels-last and contiguous at once, gets a
channels-last copy of its weight (oneDNN then follows the weight; the model's own parameters
untouched).  Pure: no files, no printing.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import weakref
from collections.abc import Iterator

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def channels_last(model: nn.Module, ndim: int, device: torch.device, memory_format: str = "auto") -> bool:
    """Whether the engine lays points of `ndim` dimensions out channels-last on `device`, for a
    model with 2-D convolutions and 4-D points: where asked (`memory_format` channels_last), never
    where asked for contiguous (NCHW), and by default (auto) on the CPU.  Which layout runs a model
    faster depends on the CPU and on the layers' shapes (`nfbench bench frames` shows both)."""
    if memory_format == "contiguous" or (memory_format == "auto" and device.type != "cpu"):
        return False
    return ndim == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())


def as_channels_last(t: torch.Tensor) -> torch.Tensor:
    """A [..., C, H, W] tensor with C innermost in memory (the same values and shape), its strides
    saying so even where C is 1: `.contiguous(memory_format=…)` or a `.contiguous()` between two
    `movedim`s would return an NCHW [..., 1, H, W] tensor as it is, valid for both layouts and read
    as NCHW by oneDNN."""
    if t.stride(-3) == 1 and t.movedim(-3, -1).is_contiguous():
        return t
    return t.new_empty(*t.shape[:-3], *t.shape[-2:], t.shape[-3]).movedim(-1, -3).copy_(t)


@contextlib.contextmanager
def tangent_rules(model: nn.Module, channels_last_weights: bool = False) -> Iterator[_Folds]:
    """Run the rules above for `model`'s modules while inside; their own forwards after.  Yields
    the BatchNorm folds, empty until `fold` makes some."""
    swapped, folds = [], _Folds(model)
    for module in model.modules():
        if "forward" in module.__dict__:      # a forward of its own: not the layer its type says
            continue
        rule = _rule(module, channels_last_weights, folds)
        if rule is not None:
            module.forward = rule
            swapped.append(module)
    try:
        with _Arithmetic():
            yield folds
    finally:
        for module in swapped:
            del module.forward


class _Folds:
    """Convolution → eval-mode BatchNorm pairs whose BatchNorm scale the convolution's tangent absorbs.

    conv(t, W)·s = conv(t, W·s): with the scale folded into the weight the tangent pass skips the
    BatchNorm's multiply, one pass over the tangent per pair (a tenth of a ResNet's tangent pass).
    Sound only where nothing else sees the convolution's tangent, so a pair folds only if a probe
    pass (`watching`) shows the BatchNorm as the sole consumer of the convolution's output, each
    module called once, and neither that output nor the BatchNorm's input is observed (`fold`);
    and a BatchNorm passes a tangent through unscaled only if it comes from its folded convolution.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = {module: name for name, module in model.named_modules()}
        self.weights: dict[nn.Module, torch.Tensor] = {}    # a convolution's own weight (for the tangent)
        self.scales: dict[nn.Module, torch.Tensor] = {}     # a BatchNorm's scale s
        self.folded: dict[nn.Module, torch.Tensor] = {}     # convolution -> W·s
        self.unscaled: dict[nn.Module, nn.Module] = {}      # BatchNorm whose scale is folded -> its convolution
        self.prescaled: dict[nn.Module, weakref.ref] = {}   # folded convolution -> its latest output
        self.candidates: list[tuple[nn.Module, nn.Module]] = []   # (conv, BatchNorm) pairs `watching` found

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Record, during a pass of the model inside, the pairs that may fold (`fold` picks them).

        A convolution's output qualifies if its BatchNorm takes it, no torch call outside the
        BatchNorm does, and it is gone (no reference left) by the next module call or the end of
        the pass; each module called once."""
        pending: dict[int, tuple] = {}      # id -> (conv, weak ref): outputs watched for uses (not inside a BatchNorm)
        taken: dict[nn.Module, tuple] = {}  # BatchNorm -> (conv, weak ref, id): must be gone at the next call
        calls, alive, uses = collections.Counter(), set(), _Uses(pending)

        def conv_hook(module, _inputs, output):
            calls[module] += 1
            pending[id(output)] = (module, weakref.ref(output))

        def bn_hook(module, inputs):
            calls[module] += 1
            entry = pending.pop(id(inputs[0]), None)
            if entry is not None and entry[1]() is inputs[0]:
                taken[module] = (*entry, id(inputs[0]))

        def bn_done(module, _inputs, _output):
            if module in taken:
                conv, ref, output = taken[module]
                pending[output] = (conv, ref)

        def any_call(module, _inputs):      # a taken output still referenced here: someone else may use it
            alive.update(bn for bn, (_conv, ref, _id) in taken.items() if module is not bn and ref() is not None)

        handles = [m.register_forward_hook(conv_hook) for m in self.weights]
        handles += [m.register_forward_pre_hook(bn_hook) for m in self.scales]
        handles += [m.register_forward_hook(bn_done) for m in self.scales]
        handles.append(torch.nn.modules.module.register_module_forward_pre_hook(any_call))
        try:
            with uses:
                yield
        finally:
            for handle in handles:
                handle.remove()
        self.candidates = [(conv, bn) for bn, (conv, ref, _output) in taken.items()
                           if calls[conv] == calls[bn] == 1 and not uses.count[conv] and bn not in alive
                           and ref() is None and conv.out_channels == self.scales[bn].numel()]

    def fold(self, outputs_read: set[str], inputs_read: set[str]) -> None:
        """Fold the candidate pairs, except where the engine reads the convolution's output (a
        module named in `outputs_read`) or the BatchNorm's input (named in `inputs_read`)."""
        for conv, bn in self.candidates:
            if self.names[conv] not in outputs_read and self.names[bn] not in inputs_read:
                weight = self.weights[conv]
                self.folded[conv] = weight * self.scales[bn].view(-1, *[1] * (weight.ndim - 1))
                self.unscaled[bn] = conv

    def scaled(self, outputs_read: set[str]) -> dict[str, tuple[str, torch.Tensor]]:
        """The candidate pairs left unfolded whose convolution's and BatchNorm's outputs are both
        read (observed): convolution name -> (BatchNorm name, its scale s).  The BatchNorm's tangent
        is then the convolution's times s per channel, so its Gram is Σ_c s_c² G_c of the
        convolution's per-channel Grams (`grams.channel_grams`), without a pass over its tangent."""
        names = self.names
        return {names[conv]: (names[bn], self.scales[bn]) for conv, bn in self.candidates
                if conv not in self.folded and {names[conv], names[bn]} <= outputs_read}


# reads of a tensor's metadata, not of its values (resolve_layers reads an observed output's shape)
_METADATA = frozenset({torch.Tensor.shape.__get__, torch.Tensor.ndim.__get__, torch.Tensor.dtype.__get__,
                       torch.Tensor.device.__get__, torch.Tensor.size, torch.Tensor.dim})


class _Uses(TorchFunctionMode):
    """Counts, per module, the torch calls that take the module's watched output as an argument,
    other than reads of its metadata (shape, dtype, device).

    `watched` maps an id to (module, weak reference to its output).  Counts are kept per module,
    not per id: a freed output's id passes on to later tensors, whose uses are not the output's."""

    def __init__(self, watched: dict[int, tuple]):
        super().__init__()
        self.watched, self.count = watched, collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        for value in () if func in _METADATA else _tensors((*args, *(kwargs or {}).values())):
            entry = self.watched.get(id(value))
            if entry is not None and entry[1]() is value:
                self.count[entry[0]] += 1
        return func(*args, **(kwargs or {}))


def _tensors(values) -> Iterator[torch.Tensor]:
    """The tensors among a torch call's arguments, in lists and tuples too (as torch.cat takes
    them): a plain scan, several times cheaper than a pytree walk on every call of a probe pass."""
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _tensors(value)


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
                    try:
                        tangent.add_(other_tangent)
                    except RuntimeError:      # the transform's own input (see _relu): torch's rule
                        return func(*args)
                    primal.add_(other)
                    return args[0]
            elif func in _WITH_CONSTANT:
                op, scales = _WITH_CONSTANT[func]
                (primal, tangent), (constant, constant_tangent) = fwAD.unpack_dual(args[0]), fwAD.unpack_dual(args[1])
                if tangent is not None and constant_tangent is None:
                    out = op(primal, constant)
                    if out.shape == primal.shape:
                        return fwAD.make_dual(out, op(tangent, constant) if scales else tangent.clone())
        return func(*args, **(kwargs or {}))


def _rule(module: nn.Module, channels_last_weights: bool, folds: _Folds):
    kind = type(module)
    if kind in _CONVOLUTIONS:
        weight = module.weight.detach()
        if channels_last_weights and kind is nn.Conv2d and module.in_channels == 1:
            # a 1-channel input may come with strides valid for both layouts (the model's own ops
            # before it, such as a normalization, keep no C stride of 1); oneDNN then follows
            # the weight
            weight = as_channels_last(weight)
        folds.weights[module] = weight
        bias = None if module.bias is None else module.bias.detach()
        return functools.partial(_convolution, module=module, weight=weight, bias=bias, folds=folds)
    if kind is nn.Linear:
        bias = None if module.bias is None else module.bias.detach()
        return functools.partial(_linear, own=module.forward, weight=module.weight.detach(), bias=bias)
    if kind in _BATCHNORMS and not module.training and module.track_running_stats \
            and module.running_var is not None:
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach()
        shift = -module.running_mean * scale
        if module.bias is not None:
            shift = shift + module.bias.detach()
        folds.scales[module] = scale
        return functools.partial(_affine, module=module, scale=scale, shift=shift, folds=folds)
    if kind is nn.ReLU:
        return functools.partial(_relu, inplace=module.inplace)
    if kind is nn.AdaptiveAvgPool2d and module.output_size in (1, (1, 1)):
        return functools.partial(_global_average, own=module.forward)
    if kind is nn.MaxPool2d and not module.return_indices:
        return functools.partial(_max_pool2d, own=module.forward, pool=functools.partial(
            F.max_pool2d, kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
            dilation=module.dilation, ceil_mode=module.ceil_mode, return_indices=True))
    return None


def _linear(x: torch.Tensor, own, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A linear layer's tangent: t·Wᵀ, without the bias."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return own(x)
    return fwAD.make_dual(F.linear(primal, weight, bias), F.linear(tangent, weight))


def _convolution(x: torch.Tensor, module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None,
                 folds: _Folds) -> torch.Tensor:
    """A convolution's tangent: the convolution without its bias, by W·s where a BatchNorm's
    scale is folded in (`_Folds`)."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return type(module).forward(module, x)
    folded = folds.folded.get(module)
    out = fwAD.make_dual(module._conv_forward(primal, weight, bias),
                         module._conv_forward(tangent, weight if folded is None else folded, None))
    if folded is not None:
        folds.prescaled[module] = weakref.ref(out)
    return out


def _affine(x: torch.Tensor, module: nn.Module, scale: torch.Tensor, shift: torch.Tensor,
            folds: _Folds) -> torch.Tensor:
    """Eval-mode BatchNorm, x·s + t per channel: the tangent is scaled, in one multiply, or passes
    unscaled if its convolution already applied s (`_Folds`)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale, shift = scale.view(shape), shift.view(shape)
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return torch.addcmul(shift, x, scale)
    source = folds.prescaled.get(folds.unscaled.get(module))
    if source is not None and source() is x:
        return fwAD.make_dual(torch.addcmul(shift, primal, scale), tangent)
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


def _global_average(x: torch.Tensor, own) -> torch.Tensor:
    """Global average pooling: the tangent's spatial mean (torch's batching rule for a
    channels-last adaptive_avg_pool2d falls back to a loop over the vectors)."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return own(x)
    return fwAD.make_dual(own(primal), tangent.mean(dim=(-2, -1), keepdim=True))


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
