"""The neural-frame engine: push a frame of input tangents through a model, layer by layer.

For points x (B×C×H×W, pixels in [0,1]) and a frame V (B×k×C×H×W), the frame at layer l is
J_l(x)·v_i, where J_l is the Jacobian of the sub-network up to l.  The engine computes those
vectors exactly with forward-mode AD (`torch.func.jvp`, vmapped over the frame so the primal
pass runs once per point) and reduces them on the fly to the k×k Gram matrix per point and
layer.  Everything the metrics need (norms, angles, ranks, volumes, principal angles) is a
function of the Grams, and k² numbers stay small where k·D would not.

Pure: no files, no printing; the result type and its file are `frame_result.py`.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import jvp, vmap

from . import _functorch
from .errors import NFBenchError, one_of
from .frame_result import FrameResult
from .grams import channel_grams, tangent_grams
from .kernels import attention_in_plain_ops, full_float32
from .tangents import as_channels_last, channels_last, tangent_rules
from .vocab import FRAMES_METHODS, MEMORY_FORMATS

INPUT = "input"
LOGITS = "logits"
INPUT_OF = ":input"   # `fc:input`: what module fc receives, e.g. the pooled features a head classifies


def layer_point(name: str) -> tuple[str, str]:
    """(module path, "input" or "output") of a layer name `module[:input][#n]`."""
    base = name.split("#")[0]
    if base.endswith(INPUT_OF):
        return base[:-len(INPUT_OF)], "input"
    return base, "output"


@dataclass(frozen=True)
class _Layer:
    name: str            # reported name (module path, `#n` suffix for the n-th call of a reused module)
    module: str          # module path it is observed at (or INPUT / LOGITS)
    call: int            # which call of that module (0-based)
    shape: tuple[int, ...]
    at: str = "output"   # the module's output, or its (first) input: `<module>:input`


class _Sink:
    """What one push through the model leaves behind: per observed layer, Grams and norms."""

    def __init__(self):
        self.grams: dict[int, torch.Tensor] = {}   # slot -> [P, m, m] float64, on the model's device
        self.norms: dict[int, torch.Tensor] = {}   # slot -> [P] float64, on the model's device
        self.channels: dict[int, torch.Tensor] = {}   # slot -> [P, C, m, m] per-channel Grams, until used
        self.vectors = 0                            # m, the frame vectors of this push


# How an observed output is reduced (`_Observer`): None, its Gram; BY_CHANNEL, its per-channel
# Grams too (an eval BatchNorm after it is observed); (slot, s), from the per-channel Grams of the
# output at `slot` scaled by s per channel (that BatchNorm).
BY_CHANNEL = "by channel"


def _reduce_dual(sink: _Sink, slot: int, output: torch.Tensor, plan=None) -> None:
    """Inside `vmap(jvp(...))` (the fast path, `_functorch`): the activation's norm from the
    primal, the Gram from the batch of the m vectors' tangents, as the layer's output appears."""
    primal, tangent = fwAD.unpack_dual(output)
    sink.norms[slot] = _norms(primal)
    if tangent is None:          # the output does not depend on the input: its tangents are 0
        k = sink.vectors
        sink.grams[slot] = torch.zeros(primal.shape[0], k, k, dtype=torch.float64, device=primal.device)
    elif isinstance(plan, tuple) and plan[0] in sink.channels:
        source, scale = plan
        sink.grams[slot] = torch.einsum("pcij,c->pij", sink.channels.pop(source), scale.double().square())
    elif plan == BY_CHANNEL:
        channels, sink.grams[slot] = _functorch.reduce_tangent(tangent, sink.vectors, _grams_by_channel)
        if channels is not None:
            sink.channels[slot] = channels
    else:
        sink.grams[slot] = _functorch.reduce_tangent(tangent, sink.vectors, tangent_grams)


def _grams_by_channel(t: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(per-channel Grams, Gram) of a tangent batch; (None, Gram) where `channel_grams` declines it."""
    channels = channel_grams(t)
    return (None, tangent_grams(t)) if channels is None else (channels, channels.sum(dim=1))


def _norms(x: torch.Tensor) -> torch.Tensor:
    """Per-point norms [P] over every other dimension, in any memory layout (no copy)."""
    if x.ndim == 1:                  # one number per point
        x = x.unsqueeze(1)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), dtype=torch.float64)


# Modules whose output holds exactly their input's values, reshaped (Dropout: in eval mode).
_SAME_VALUES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout)


class _Observer:
    """Forward hooks that reduce each observed module call as soon as its output exists.

    Reducing inside the hook keeps memory flat (nothing is stored per layer) and is immune to
    later in-place operations (`out += identity`, `ReLU(inplace=True)`) on the observed output.
    """

    def __init__(self, model: nn.Module, layers: list[_Layer], scaled: dict[str, tuple[str, torch.Tensor]]):
        self.slots = {(layer.module, layer.at, layer.call): i for i, layer in enumerate(layers)}
        # from `_Folds.scaled`: the convolutions reduced per channel, and their BatchNorms' scales s
        self.by_channel, self.scales = set(scaled), dict(scaled.values())
        self.calls: dict[tuple[str, str], int] = {}
        self.sink = _Sink()
        self.observed: dict[int, tuple] = {}      # id of an observed output -> (weak reference, slot)
        self.reduce: Callable[..., None] = lambda slot, out, plan: None
        self.same_values = True
        named = dict(model.named_modules())
        points = dict.fromkeys((layer.module, layer.at) for layer in layers if layer.name not in (INPUT, LOGITS))
        self.handles = [named[m].register_forward_pre_hook(self._input_hook(m)) if at == "input"
                        else named[m].register_forward_hook(self._hook(m)) for m, at in points]

    def _next_slot(self, module: str, at: str) -> int | None:
        call = self.calls[module, at] = self.calls.get((module, at), -1) + 1
        return self.slots.get((module, at, call))

    def _input_hook(self, module: str):
        def hook(mod, inputs):
            slot = self._next_slot(module, "input")
            if slot is not None:
                self.reduce(slot, inputs[0], None)
        return hook

    def _hook(self, module: str):
        def hook(mod, inputs, output):
            slot = self._next_slot(module, "output")
            if slot is None:
                return
            ref, source = self.observed.get(id(inputs[0]), (None, None))
            derived = self.same_values and ref is not None and ref() is inputs[0]   # from an observed output
            if derived and isinstance(mod, _SAME_VALUES):
                # a reshape of an observed output: the same inner products
                self.sink.grams[slot], self.sink.norms[slot] = self.sink.grams[source], self.sink.norms[source]
            elif derived and module in self.scales:
                self.reduce(slot, output, (source, self.scales[module]))
            else:
                self.reduce(slot, output, BY_CHANNEL if module in self.by_channel else None)
            self.observed[id(output)] = (weakref.ref(output), slot)
        return hook

    def start(self, reduce: Callable[..., None], *, same_values: bool = True) -> _Sink:
        """A fresh sink for one push; `reduce(slot, output, plan)` for each observed output, except
        that a reshape of an observed output reuses its Gram when `same_values` (reduce reduced
        it), which also asks for per-channel Grams where an observed BatchNorm can use them (plan:
        see BY_CHANNEL; a reduce may ignore it and reduce the output itself)."""
        self.calls, self.sink, self.reduce, self.observed = {}, _Sink(), reduce, {}
        self.same_values = same_values
        return self.sink

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def leaf_modules(model: nn.Module) -> list[str]:
    """Names of modules without children: the default set of observable layers."""
    return [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]


def _model_device_dtype(model: nn.Module, x: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return x.device, x.dtype


_REMEDIES = ("set `frames_method: fd` on the model in params.yaml, or run `nfbench frames ID --fallback "
             "finite-difference` (central differences: slower and approximate)")


def _old_style_function_modules(model: nn.Module) -> list[str]:
    """Modules whose forward calls a torch.autograd.Function without setup_context (torch.func's
    transforms refuse those), as 'name (Module -> Function)'."""
    import inspect

    found = []
    for name, module in model.named_modules():
        try:
            refs = inspect.getclosurevars(type(module).forward)
        except (TypeError, ValueError):
            continue
        for value in {**refs.globals, **refs.nonlocals}.values():
            if (isinstance(value, type) and issubclass(value, torch.autograd.Function)
                    and value.setup_context is torch.autograd.Function.setup_context):
                found.append(f"{name or '(the model)'} ({type(module).__name__} -> {value.__name__})")
                break
    return found


def _forward_ad_error(exc: Exception, model: nn.Module) -> NFBenchError | None:
    """Turn torch's 'no forward AD' errors (an operator, or an old-style autograd.Function) into
    one actionable line naming the culprit and the remedies."""
    msg = str(exc)
    if "autograd.Function" in msg and "setup_context" in msg:
        culprits = _old_style_function_modules(model) or ["a module (not found by name)"]
        more = f" and {len(culprits) - 1} more" if len(culprits) > 1 else ""
        return NFBenchError(f"{culprits[0]}{more} runs a custom torch.autograd.Function without forward-mode "
                            f"AD (torch.func needs its setup_context); {_REMEDIES}")
    if "forward AD" not in msg and "forward-mode AD" not in msg:
        return None
    op = re.search(r"forward AD with (\S+)", msg) or re.search(r"operator (\S+)", msg)
    name = op.group(1) if op else msg.splitlines()[0][:120]
    return NFBenchError(
        f"forward-mode AD is not implemented for operator {name} in this model; {_REMEDIES} "
        f"(in Python: compute_frames(..., method='fd'))")


def resolve_layers(model: nn.Module, x: torch.Tensor, layers) -> list[_Layer]:
    """Map requested names to module calls, in execution order, using one probe pass."""
    named = {n for n, _ in model.named_modules() if n}
    auto = layers == "auto"
    if auto:
        declared = getattr(model, "observable_layers", None)
        wanted = list(declared) + [LOGITS] if declared else [n for n, _ in model.named_children()] + [LOGITS]
    elif layers == "all":
        wanted = leaf_modules(model) + [LOGITS]
    else:
        wanted = [layers] if isinstance(layers, str) else list(layers)
    for name in wanted:
        module, at = layer_point(name)
        if at == "input" and module not in named:
            raise NFBenchError(f"layer {name!r}: {one_of(module, sorted(named), 'module')}")
        if module not in named | {INPUT, LOGITS}:
            raise NFBenchError(one_of(name, sorted(named) + [INPUT, LOGITS], "layer"))
    points = list(dict.fromkeys(layer_point(n) for n in wanted if n not in (INPUT, LOGITS)))
    seen: list[tuple[tuple[str, str], tuple[int, ...]]] = []

    def record(point, value):
        if not isinstance(value, torch.Tensor):
            what = "receives" if point[1] == "input" else "returns"
            raise NFBenchError(f"layer {_point_name(point)!r}: module {point[0]!r} {what} "
                               f"{type(value).__name__}, not a tensor; observe one of its submodules instead")
        seen.append((point, tuple(value.shape[1:])))

    all_modules = dict(model.named_modules())
    handles = [all_modules[m].register_forward_pre_hook(
                   lambda _m, inputs, p=(m, at): record(p, inputs[0] if inputs else None))
               if at == "input" else
               all_modules[m].register_forward_hook(lambda _m, _i, output, p=(m, at): record(p, output))
               for m, at in points]
    try:
        logits = model(x[:1])
    finally:
        for h in handles:
            h.remove()
    if not isinstance(logits, torch.Tensor):
        raise NFBenchError(f"the model returns {type(logits).__name__}; it must return a logits tensor")
    calls = {p: sum(1 for s, _ in seen if s == p) for p in points}
    found = [_Layer(INPUT, INPUT, 0, tuple(x.shape[1:]))]
    counter: dict[tuple[str, str], int] = {}
    for point, shape in seen:
        n = counter[point] = counter.get(point, -1) + 1
        base = _point_name(point)
        name = base if calls[point] == 1 else f"{base}#{n}"
        if base in wanted or name in wanted:
            found.append(_Layer(name, point[0], n, shape, point[1]))
    for name in wanted if not auto else ():   # `auto` skips children the forward never calls
        if name not in (INPUT, LOGITS) and not any(name in (layer.name, _point_name((layer.module, layer.at)))
                                                   for layer in found):
            raise NFBenchError(f"layer {name!r} is not called by the model's forward"
                               + (f" (module {layer_point(name)[0]!r} is called {calls[layer_point(name)]} times)"
                                  if "#" in name else ""))
    if LOGITS in wanted:
        found.append(_Layer(LOGITS, LOGITS, 0, tuple(logits.shape[1:])))
    return found


def _point_name(point: tuple[str, str]) -> str:
    module, at = point
    return module + INPUT_OF if at == "input" else module


class _Engine:
    def __init__(self, model: nn.Module, layers: list[_Layer], method: str, fd_step: float,
                 device: torch.device, dtype: torch.dtype, channels_last: bool,
                 scaled: dict[str, tuple[str, torch.Tensor]]):
        self.model, self.layers, self.method, self.fd_step = model, layers, method, fd_step
        self.device, self.dtype, self.channels_last, self.scaled = device, dtype, channels_last, scaled
        self.logits_slot = len(layers) - 1 if layers[-1].module == LOGITS else None

    def run(self, x: torch.Tensor, frame: torch.Tensor, chunk_size: int,
            on_progress: Callable[[int], None] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Grams [L, B, k, k] and norms [L, B], pushing at most `chunk_size` vectors at once."""
        B, k = frame.shape[:2]
        grams = torch.empty(len(self.layers), B, k, k, dtype=torch.float64)   # every entry is written
        norms = torch.empty(len(self.layers), B, dtype=torch.float64)
        if k <= chunk_size:
            groups = [[slice(0, k)]]
        else:  # blocks of half a chunk, pushed in pairs: every block pair meets once
            size = max(1, chunk_size // 2)
            blocks = [slice(s, min(s + size, k)) for s in range(0, k, size)]
            groups = [[a, b] for i, a in enumerate(blocks) for b in blocks[i + 1:]]
        points_per_chunk = max(1, chunk_size // k)
        observer = _Observer(self.model, self.layers, self.scaled)
        try:
            for start in range(0, B, points_per_chunk):
                pts = slice(start, min(start + points_per_chunk, B))
                xc = self._layout(x[pts].to(self.device, self.dtype))
                for group in groups:
                    index = torch.cat([torch.arange(k)[g] for g in group])
                    whole = len(group) == 1          # all k vectors at once: plain slices, no copies
                    sink = self._push(observer, xc, frame[pts] if whole else frame[pts][:, index])
                    slots = range(len(self.layers))          # one check, one copy off the device
                    chunk_grams = torch.stack([sink.grams[s] for s in slots])
                    chunk_norms = torch.stack([sink.norms[s] for s in slots])
                    self._check_finite(chunk_grams, chunk_norms)
                    if whole:
                        grams[:, pts] = chunk_grams
                    else:
                        grams[:, pts, index[:, None], index[None, :]] = chunk_grams.cpu()
                    norms[:, pts] = chunk_norms
                if on_progress:
                    on_progress(pts.stop - pts.start)
        finally:
            observer.remove()
        return grams, norms

    def _push(self, observer: _Observer, x: torch.Tensor, frame: torch.Tensor) -> _Sink:
        """One pass of points x [P, ...] with their vectors frame [P, m, ...] through the model."""
        given = frame.to(self.device, self.dtype).transpose(0, 1)      # m×P×…: vmapped dim first
        v = self._layout(given)
        if self.method == "jvp":
            try:
                logits, tangents, sink = (self._jvp if _functorch.AVAILABLE else self._public_jvp)(observer, x, v)
            except (NotImplementedError, RuntimeError) as exc:
                err = _forward_ad_error(exc, self.model)
                if err is None:
                    raise
                raise err from exc
        else:
            logits, tangents, sink = self._fd(observer, x, v)
        sink.grams[0], sink.norms[0] = tangent_grams(given), _norms(x)    # the input's coordinates, given order
        if self.logits_slot is not None:
            sink.grams[self.logits_slot], sink.norms[self.logits_slot] = tangent_grams(tangents), _norms(logits)
        return sink

    def _layout(self, t: torch.Tensor) -> torch.Tensor:
        """Points or tangents [..., C, H, W] in the memory format the engine runs in (tangents.py)."""
        return as_channels_last(t) if self.channels_last else t.contiguous()

    def _jvp(self, observer: _Observer, x: torch.Tensor, v: torch.Tensor):
        """Each observed layer reduced to its Grams inside the forward pass (`_reduce_dual`)."""
        sink = observer.start(lambda slot, out, plan: _reduce_dual(sink, slot, out, plan))
        sink.vectors = v.shape[0]
        logits, tangents = vmap(lambda t: jvp(self.model, (x,), (t,)), out_dims=(None, 0))(v)
        return logits, tangents, sink

    def _public_jvp(self, observer: _Observer, x: torch.Tensor, v: torch.Tensor):
        """The same through public API alone: the observed outputs are returned by the function
        jvp differentiates, so every layer's tangents [m, P, …] exist at once before reduction."""
        seen: list[tuple[int, torch.Tensor]] = []   # copies: later in-place ops must not reach them
        sink = observer.start(lambda slot, out, _plan: seen.append((slot, out.clone())), same_values=False)

        def forward(inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            seen.clear()
            return (self.model(inputs), *(out for _, out in seen))

        outputs, tangents = vmap(lambda t: jvp(forward, (x,), (t,)), out_dims=(None, 0))(v)
        for (slot, _), output, tangent in zip(seen, outputs[1:], tangents[1:]):
            sink.norms[slot], sink.grams[slot] = _norms(output), tangent_grams(tangent)
        return outputs[0], tangents[0], sink

    def _fd(self, observer: _Observer, x: torch.Tensor, v: torch.Tensor):
        """Central differences ‖v‖(f(x+hu) − f(x−hu))/2h along u = v/‖v‖, one batch per push."""
        m, P = v.shape[:2]
        scale = v.flatten(2).norm(dim=2).clamp_min(torch.finfo(v.dtype).tiny)   # m×P
        u = v / scale.reshape(m, P, 1, 1, 1)
        h = self.fd_step

        def difference(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            plus, minus = out[P:P + m * P], out[P + m * P:]
            diff = ((plus - minus) / (2 * h)).reshape(m, P, *out.shape[1:])
            return out[:P], diff * scale.reshape(m, P, *[1] * (out.ndim - 1))

        def reduce(slot: int, out: torch.Tensor, _plan) -> None:
            primal, tangent = difference(out)
            observer.sink.norms[slot], observer.sink.grams[slot] = _norms(primal), tangent_grams(tangent)

        sink = observer.start(reduce)
        out = self.model(torch.cat([x, (x + h * u).flatten(0, 1), (x - h * u).flatten(0, 1)]))
        logits, tangents = difference(out)
        return logits, tangents, sink

    def _check_finite(self, grams: torch.Tensor, norms: torch.Tensor) -> None:
        """Grams [L, P, m, m] and norms [L, P] of one push: one check, the layer named if it fails."""
        if torch.isfinite(norms).all() and torch.isfinite(grams).all():
            return
        for layer, layer_grams, layer_norms in zip(self.layers, grams, norms):
            if not torch.isfinite(layer_norms).all():
                raise NFBenchError(f"the activation at layer {layer.name!r} has NaN/Inf values")
            if not torch.isfinite(layer_grams).all():
                raise NFBenchError(f"the frame at layer {layer.name!r} has NaN/Inf values "
                                   f"(the Jacobian-vector product overflowed or is undefined there)")


def _check_arguments(x: torch.Tensor, frame: torch.Tensor, labels: Sequence[str] | None,
                     families: Sequence[str] | None, chunk_size: int, method: str, memory_format: str) -> None:
    """compute_frames' arguments, each wrong one a one-line error saying what is valid."""
    if x.ndim != 4:
        raise NFBenchError(f"points must be B×C×H×W, got shape {'×'.join(map(str, x.shape))}")
    if frame.ndim != 5 or frame.shape[0] != x.shape[0] or frame.shape[2:] != x.shape[1:]:
        raise NFBenchError(f"frame must have shape B×k×C×H×W = {x.shape[0]}×k×"
                           f"{'×'.join(map(str, x.shape[1:]))} to match the points, "
                           f"got {'×'.join(map(str, frame.shape))}")
    if chunk_size < 1:
        raise NFBenchError(f"chunk_size must be a positive integer, got {chunk_size}")
    k = frame.shape[1]
    given = [k if names is None else len(names) for names in (labels, families)]
    if given != [k, k]:
        raise NFBenchError(f"{given[0]} labels and {given[1]} families given for {k} frame vectors")
    if method not in FRAMES_METHODS:
        raise NFBenchError(one_of(method, FRAMES_METHODS, "method"))
    if memory_format not in MEMORY_FORMATS:
        raise NFBenchError(one_of(memory_format, MEMORY_FORMATS, "memory format"))


def compute_frames(model: nn.Module, x: torch.Tensor, frame: torch.Tensor,
                   layers: Sequence[str] | str = "all", *, labels: Sequence[str] | None = None,
                   families: Sequence[str] | None = None, point_ids: torch.Tensor | None = None,
                   chunk_size: int = 512, method: str = "jvp", fd_step: float = 1e-3,
                   memory_format: str = "auto", on_progress: Callable[[int], None] | None = None) -> FrameResult:
    """Grams of the frame `frame` (B×k×C×H×W) at the requested layers of `model` at points `x`.

    layers: module names (as in `model.named_modules()`), `name:input` for what a module
      receives (the pooled features entering a classifier head that pools functionally), the
      pseudo-layers `input` and `logits`, "all" (every leaf module and the logits) or "auto"
      (the model's own `observable_layers` if it declares them, else its top-level children,
      and the logits).  A module called several times in one forward (e.g. a shared ReLU)
      yields one layer per call, named `name#0`, `name#1`, ….
      Layers are reported in execution order, always starting with `input`.
    chunk_size: the most frame vectors pushed through the model at once (points × vectors);
      peak memory grows with it and not with B or k.  When k exceeds it, the Gram is built
      from blocks of vectors, recomputing blocks pairwise (memory bounded, more time).
    method: "jvp" (exact forward-mode AD) or "fd" (central finite differences with step
      `fd_step` along each unit-norm vector: a fallback for operators without forward AD).
    memory_format: how a convolutional model's points and tangents are laid out: "channels_last",
      "contiguous" (NCHW), or "auto" (channels-last on the CPU, NCHW on a GPU); the faster one
      depends on the machine and the model (`nfbench bench frames`), the Grams only by rounding.
      The provenance records the layout used.
    The model runs in eval mode (BatchNorm statistics, no dropout); its mode is restored after.
    """
    _check_arguments(x, frame, labels, families, chunk_size, method, memory_format)
    k = frame.shape[1]
    labels = list(labels) if labels is not None else [f"v{i}" for i in range(k)]
    families = list(families) if families is not None else ["custom"] * k
    device, dtype = _model_device_dtype(model, x)
    was_training = model.training
    model.eval()
    try:
        # forward-mode AD only: no reverse-mode graph is ever needed
        fast_layout = channels_last(model, x.ndim, device, memory_format)
        with torch.no_grad(), full_float32(), attention_in_plain_ops(), tangent_rules(model, fast_layout) as folds:
            with folds.watching():                     # the probe pass also finds the BatchNorm folds
                layer_list = resolve_layers(model, x.to(device, dtype), layers)
            outputs_read = {lay.module for lay in layer_list if lay.at == "output"}
            if method == "jvp":
                folds.fold(outputs_read, {lay.module for lay in layer_list if lay.at == "input"})
            engine = _Engine(model, layer_list, method, fd_step, device, dtype, fast_layout, folds.scaled(outputs_read))
            grams, norms = engine.run(x, frame, chunk_size, on_progress)
    finally:
        model.train(was_training)
    dims = torch.tensor([math.prod(layer.shape) for layer in layer_list], dtype=torch.int64)
    ids = point_ids if point_ids is not None else torch.arange(x.shape[0])
    return FrameResult(grams=grams, act_norms=norms, dims=dims,
                       layers=[layer.name for layer in layer_list], labels=labels, families=families,
                       point_ids=torch.as_tensor(ids, dtype=torch.int64),
                       provenance={"method": method, **({"fd_step": fd_step} if method == "fd" else {}),
                                   "memory_format": "channels_last" if fast_layout else "contiguous"})
