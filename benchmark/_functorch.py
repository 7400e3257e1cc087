"""The engine's one reach into torch internals, behind a version check.

Inside `vmap(jvp(model))` a forward hook sees one layer's tangent as a jvp wrapper around a
tensor batched over the frame's m vectors.  Unwrapping it (as torch itself does to print such
tensors) hands all m vectors to one Gram matmul right where the layer's tangents appear, so
they are freed as the forward pass moves on; it costs about a microsecond.  The unwrapping uses
`torch._C._functorch`, which is not public API: it is used only on the torch versions it was
tested with and only when every function it needs exists.  Elsewhere the engine takes its
public path (`torch.func` only: the observed activations become outputs of the jvp, all layers'
tangents at once, so more memory), and the tests run both paths and compare them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

TESTED_TORCH = ("2.14",)             # major.minor versions the fast path was checked on
_NEEDED = ("is_functorch_wrapped_tensor", "is_batchedtensor", "get_unwrapped", "maybe_get_bdim")


def _available() -> bool:
    try:
        import torch._C._functorch as functorch
    except ImportError:
        return False
    version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return (version in TESTED_TORCH and all(hasattr(functorch, name) for name in _NEEDED)
            and hasattr(torch._C, "_DisableFuncTorch"))


AVAILABLE = _available()


Reduced = TypeVar("Reduced")


def reduce_tangent(tangent: torch.Tensor, vectors: int, reduce: Callable[[torch.Tensor], Reduced]) -> Reduced:
    """`reduce` applied, as plain tensor ops, to the [m, …] batch of tangents behind `tangent`
    (one tangent inside `vmap(jvp(...))` over m = `vectors` frame vectors).  Only if AVAILABLE."""
    import torch._C._functorch as functorch

    t = tangent
    while functorch.is_functorch_wrapped_tensor(t) and not functorch.is_batchedtensor(t):
        t = functorch.get_unwrapped(t)
    guard = torch._C._DisableFuncTorch()   # ops on the unwrapped tensor: plain tensor ops
    try:
        if functorch.is_batchedtensor(t):
            batch = functorch.get_unwrapped(t).movedim(functorch.maybe_get_bdim(t), 0)
        else:                              # not batched: the same tangent for every vector
            batch = t.expand(vectors, *t.shape)
        return reduce(batch)
    finally:
        del guard


@contextlib.contextmanager
def public_path() -> Iterator[None]:
    """The engine on its public `torch.func` path while inside (to compare the two paths)."""
    global AVAILABLE
    available, AVAILABLE = AVAILABLE, False
    try:
        yield
    finally:
        AVAILABLE = available
