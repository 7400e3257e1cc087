"""`nfbench bench frames`: how fast and how lean the frame engine is, against its alternatives.

On the same points and frame, in one process, repeated and interleaved (the minimum of the
repeats is reported, so a noisy shared machine affects every method alike):
  plain          the model's forward pass over the B·k perturbed inputs x + v (no derivatives),
                 at most `chunk_size` of them at once, as the engine pushes its vectors,
  plain-cl       the same with the model and the inputs channels-last (oneDNN's native layout);
                 every `× plain` is to the faster of the two, and the engine (with fd) runs in the
                 layout of the faster one (`faster_layout`: neither is faster on every CPU),
  grams          the Grams alone: the engine's reduction (`grams.tangent_grams`) of tangents
                 of every layer it reports, on random values; the fastest plain forward plus
                 this is the floor of exact frames (`× floor`: what a method adds on top),
  engine         compute_frames (forward-mode JVP, Grams of the observed layers),
  engine-public  the same through public torch.func alone (`_functorch.py`'s fallback),
  fd             compute_frames(method="fd"): central finite differences, same Grams,
  autograd       torch.autograd.functional.jvp (double-backward trick) over the B·k inputs,
                 the same layers captured and reduced to the same Grams.
Observed layers: `all` (every leaf module, the strictest case) or `auto` (what the pipeline
observes: the model's declared blocks).
Peak memory is measured per method in a fresh subprocess, after one warm-up run (CPU: growth
of the resident set, sampled every millisecond; CUDA: torch.cuda.max_memory_allocated), and for
the engine also for growing k at a fixed chunk size.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
import weakref

import torch
from torch import nn

from . import _functorch
from .frames import INPUT, LOGITS, compute_frames, resolve_layers
from .grams import tangent_grams
from .kernels import full_float32
from .vocab import BENCH_METHODS as METHODS

PLAIN = ("plain", "plain-cl")
_LAYOUTS = {"plain": "contiguous", "plain-cl": "channels_last", "autograd": "contiguous"}   # fixed by the method
GRAMS = "grams"
EXACT = ("engine", "engine-public", "fd", "autograd")   # methods that compute every Gram themselves


@dataclasses.dataclass
class Case:
    model: str
    size: int
    points: int = 16
    vectors: int = 32
    chunk_size: int = 512
    device: str = "cpu"
    layers: str = "all"      # "all" (every leaf module) or "auto" (the layers the pipeline observes)
    memory_format: str = "auto"   # the engine's layout (compute_frames' memory_format)

    def build(self) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
        """The model (random weights), points and frame, made on the case's device (a paper-size
        frame, 1,000 × 64 ImageNet images, is 38 GB: no copy of it in host memory)."""
        torch.manual_seed(0)
        if self.model == "smallcnn":
            from .models.nets import SmallCNN
            net, channels = SmallCNN(image_size=self.size), 1
        else:
            import torchvision
            net, channels = getattr(torchvision.models, self.model)(weights=None), 3
        net = net.eval().to(self.device)
        g = torch.Generator(self.device).manual_seed(1)
        x = torch.rand(self.points, channels, self.size, self.size, generator=g, device=self.device)
        v = torch.randn(self.points, self.vectors, channels, self.size, self.size, generator=g, device=self.device)
        return net, x, v

    def layer_count(self) -> int:
        """How many layers the engine reports for this case, the input and the logits included."""
        model, x, _ = dataclasses.replace(self, points=1, vectors=1).build()
        with torch.no_grad():
            return len(resolve_layers(model, x[:1], self.layers))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autograd_grams(model: nn.Module, x: torch.Tensor, v: torch.Tensor, layers: str) -> list[torch.Tensor]:
    """The textbook alternative: autograd.functional.jvp on the B·k inputs, the same layers captured."""
    points = dict.fromkeys((layer.module, layer.at) for layer in resolve_layers(model, x, layers)
                           if layer.name not in (INPUT, LOGITS))
    modules = dict(model.named_modules())
    B, k = v.shape[:2]
    xs = x.unsqueeze(1).expand_as(v).reshape(B * k, *x.shape[1:])
    captured: list[torch.Tensor] = []
    handles = [modules[m].register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0])) if at == "input"
               else modules[m].register_forward_hook(lambda _m, _i, o: captured.append(o)) for m, at in points]

    def f(inp):
        captured.clear()
        out = model(inp)
        return tuple(captured) + (out,)

    try:
        _, tangents = torch.autograd.functional.jvp(f, xs, v.reshape(B * k, *x.shape[1:]))
    finally:
        for h in handles:
            h.remove()
    grams = []
    for t in tangents:
        rows = t.detach().reshape(B, k, -1).double()
        grams.append(rows @ rows.transpose(1, 2))
    return grams


def run_method(case: Case, method: str, model, x, v):
    """One run of `method`; every method at full float32 precision (no TF32 on CUDA), as the engine."""
    with full_float32():
        return _run_method(case, method, model, x, v)


_CHANNELS_LAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # model -> its channels-last copy


def _plain(model: nn.Module, x: torch.Tensor, v: torch.Tensor, chunk_size: int, channels_last: bool) -> torch.Tensor:
    """The plain forward over the inputs x + v (B·k of them, in that order), at most
    `chunk_size` at once, as the engine pushes them: whole points while k ≤ chunk_size, else
    blocks of one point's vectors.  `channels_last`: weights and inputs channels-last, each
    chunk's x + v written there in one pass."""
    if channels_last and model not in _CHANNELS_LAST:
        _CHANNELS_LAST[model] = copy.deepcopy(model).to(memory_format=torch.channels_last)
    net = _CHANNELS_LAST[model] if channels_last else model
    B, k = v.shape[:2]
    points, vectors = max(1, chunk_size // k), min(k, chunk_size)
    outputs = []
    for p in range(0, B, points):
        for j in range(0, k, vectors):
            block = v[p:p + points, j:j + vectors]
            inputs = torch.empty(block.shape[0] * block.shape[1], *x.shape[1:], dtype=x.dtype, device=x.device,
                                 memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            torch.add(x[p:p + points].unsqueeze(1), block, out=inputs.view(block.shape))
            outputs.append(net(inputs))
    return torch.cat(outputs)


_TANGENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # model -> (layers, B, k), tangents per layer


def _grams_alone(case: Case, model: nn.Module, x: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's Grams from tangents [k, B, …] of its shape, as the engine reduces them.

    The tangents are views of one random buffer the size of the largest layer (made once per
    model, outside the timing): the Gram's cost is its arithmetic, not the values."""
    B, k = v.shape[:2]
    if _TANGENTS.get(model, (None,))[0] != (case.layers, B, k):
        shapes = [layer.shape for layer in resolve_layers(model, x, case.layers)]
        sizes = [k * B * math.prod(shape) for shape in shapes]
        buffer = torch.randn(max(sizes), dtype=v.dtype, device=v.device)
        _TANGENTS[model] = (case.layers, B, k), [buffer[:n].view(k, B, *shape) for n, shape in zip(sizes, shapes)]
    return [tangent_grams(t) for t in _TANGENTS[model][1]]


def _run_method(case: Case, method: str, model, x, v):
    if method in PLAIN:
        with torch.inference_mode():
            return _plain(model, x, v, case.chunk_size, channels_last=method == "plain-cl")
    if method == GRAMS:
        return _grams_alone(case, model, x, v)
    engine = {"chunk_size": case.chunk_size, "memory_format": case.memory_format}
    if method == "engine":
        return compute_frames(model, x, v, case.layers, **engine)
    if method == "engine-public":
        with _functorch.public_path():
            return compute_frames(model, x, v, case.layers, **engine)
    if method == "fd":
        return compute_frames(model, x, v, case.layers, method="fd", **engine)
    if method == "autograd":
        return _autograd_grams(model, x, v, case.layers)
    raise ValueError(method)


def faster_layout(case: Case, rounds: int = 3) -> str:
    """The memory format ("contiguous" or "channels_last") of the faster plain forward of `case`,
    by the minimum of `rounds` interleaved runs of each after a warm-up, for the engine to run in:
    channels-last is not faster on every CPU (an Intel Xeon ran ResNet-18 faster NCHW, AMD EPYCs
    channels-last), and the engine should be timed in the layout its baseline is fastest in.
    Timed on the points of one chunk, the batch every push has (not on 1,000 ImageNet points)."""
    one_chunk = min(case.points, max(1, case.chunk_size // case.vectors))
    model, x, v = dataclasses.replace(case, points=one_chunk).build()
    times: dict[str, list[float]] = {m: [] for m in PLAIN}
    for _ in range(rounds + 1):
        for m in PLAIN:
            times[m].append(_timed(case, m, model, x, v))
    return "channels_last" if min(times["plain-cl"][1:]) < min(times["plain"][1:]) else "contiguous"


def _timed(case: Case, method: str, model, x, v) -> float:
    """Seconds of one run of `method`, the device's queued work included."""
    _sync(case.device)
    t0 = time.perf_counter()
    run_method(case, method, model, x, v)
    _sync(case.device)
    return time.perf_counter() - t0


def time_methods(case: Case, repeats: int, min_seconds: float = 2.0,
                 methods: tuple[str, ...] = METHODS) -> tuple[dict[str, float], float | None]:
    """Minimum wall time per method over interleaved rounds; FD relative error vs the engine
    (None when fd is not among `methods`).

    At least `repeats` rounds, and more until every method has run for `min_seconds` in all:
    a 30 ms forward pass needs many samples before its minimum stops moving on a busy machine.
    """
    model, x, v = case.build()
    times: dict[str, list[float]] = {m: [] for m in methods}
    for m in methods:                                   # warm-up (allocator, kernels)
        run_method(case, m, model, x, v)
    while len(times[methods[0]]) < repeats or min(sum(t) for t in times.values()) < min_seconds:
        for m in methods:
            times[m].append(_timed(case, m, model, x, v))
    if "fd" not in methods:
        return {m: min(t) for m, t in times.items()}, None
    exact = run_method(case, "engine", model, x, v).grams
    approx = run_method(case, "fd", model, x, v).grams
    scale = exact.diagonal(dim1=2, dim2=3).amax(dim=(1, 2)).clamp_min(1e-300)   # per layer
    fd_error = ((approx - exact).abs().amax(dim=(1, 2, 3)) / scale).max().item()
    return {m: min(t) for m, t in times.items()}, fd_error


def peak_memory_mb(case: Case, method: str) -> float:
    """Peak memory of one run of `method`, in a fresh interpreter so earlier runs do not count."""
    code = ("import json,sys; from benchmark.bench import Case, _peak_in_process; "
            f"print(json.dumps(_peak_in_process(Case(**{case.__dict__!r}), {method!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_in_process(case: Case, method: str) -> float:
    model, x, v = case.build()
    run_method(case, method, model, x, v)              # warm-up: lazy initialisation is not the method's
    if case.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_method(case, method, model, x, v)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with _RssSampler() as sampler:
        run_method(case, method, model, x, v)
    return sampler.peak_growth / 2**20


class _RssSampler:
    """Peak resident memory above the starting level, sampled every millisecond from /proc."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _watch(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __enter__(self) -> _RssSampler:
        self.base = self.peak = self._rss()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self._rss())
        self.peak_growth = self.peak - self.base


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse (no mmap'd blocks, no trimming) in this process.

    By default a block above 32 MB is mmap'd and unmapped when freed, so every run of a method
    touches fresh pages (on a 2-core VM about a third of a ResNet forward is spent in page faults),
    and how many depends on what ran before: with the public path's large frees in the rounds the
    plain forward's minimum fell from 0.94 s to 0.77 s.  With freed memory kept, every method runs
    on a warm heap whatever ran before, at its fastest.  False where the C library is not glibc.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) and libc.mallopt(M_MMAP_MAX, 0))


def cpu_name(cpuinfo: str) -> str:
    """The first processor of a /proc/cpuinfo text: its model name with its family and model
    numbers, which tell CPU generations apart where a VM reports only "AMD EPYC" (family 23
    model 1 is Zen 1, family 25 model 17 Zen 4); the platform's name where the text has none."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            if fields:
                break                   # the blank line after the first processor
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    numbers = [f"{key} {fields[key]}" for key in ("cpu family", "model") if key in fields]
    return f"{name} ({', '.join(numbers)})" if numbers else name


def machine() -> str:
    """The CPU, the kernels ATen picked for it (AVX2, AVX512, …), threads, GPU and torch version."""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = cpu_name(f.read())
    except OSError:
        cpu = cpu_name("")
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {torch.backends.cpu.get_cpu_capability()} kernels, {torch.get_num_threads()} threads{gpu}, "
            f"torch {torch.__version__}")


def bench_frames(cases: list[Case], repeats: int = 3, memory: bool = True, echo=print,
                 methods: tuple[str, ...] = METHODS) -> list[dict]:
    """Time `methods` on each case and print one table; `× plain` is to the fastest plain forward,
    `× floor` (when the Grams are timed) to that plus the Grams alone."""
    from tabulate import tabulate

    methods = tuple(m for m in METHODS if m in methods)
    if not any(m in PLAIN for m in methods):
        methods = ("plain",) + methods
    heap = "freed memory kept (glibc mallopt)" if keep_freed_memory() else "the C library's default"
    echo(f"machine: {machine()}; allocator: {heap}")
    cases = [dataclasses.replace(case, memory_format=faster_layout(case)) if case.memory_format == "auto" else case
             for case in cases]
    rows = []
    for case in cases:
        times, fd_error = time_methods(case, repeats, methods=methods)
        plain = min(times[m] for m in PLAIN if m in times)
        floor = plain + times[GRAMS] if GRAMS in times else None
        mem = {m: peak_memory_mb(case, m) for m in methods} if memory else {}
        observed = case.layer_count() - 1                                   # not counting the input
        for m in methods:
            rows.append({"model": f"{case.model} {case.size}×{case.size}", "layers": f"{case.layers} ({observed})",
                         "B×k": f"{case.points}×{case.vectors}",
                         "method": m, "layout": _LAYOUTS.get(m, "" if m == GRAMS else case.memory_format),
                         "seconds": float(f"{times[m]:.3g}"),
                         "× plain": round(times[m] / plain, 2),
                         **({"× floor": round(times[m] / floor, 2) if m in EXACT else ""} if floor else {}),
                         "fd rel. error": f"{fd_error:.1e}" if m == "fd" else "",
                         "peak MB": round(mem[m]) if memory else ""})
    echo(tabulate(rows, headers="keys", tablefmt="github"))
    if memory:
        base = cases[-1]
        chunk = max(1, base.chunk_size // 8)
        scaling, layers = [], base.layer_count()
        for k in (base.vectors, 2 * base.vectors, 4 * base.vectors):
            case = dataclasses.replace(base, vectors=k, chunk_size=chunk)
            # the float64 result itself, in host memory: only the CPU's peak counts it
            grams_mb = layers * base.points * k * k * 8 / 2**20 if base.device == "cpu" else 0.0
            peak = peak_memory_mb(case, "engine")
            scaling.append({"model": f"{base.model} {base.size}×{base.size}", "k": k, "chunk_size": chunk,
                            "peak MB": round(peak), "of which Grams MB": round(grams_mb),
                            "working MB": round(peak - grams_mb)})
        echo("engine memory at a fixed chunk size, growing k (the Grams grow as k², the rest must not):")
        echo(tabulate(scaling, headers="keys", tablefmt="github"))
    return rows
