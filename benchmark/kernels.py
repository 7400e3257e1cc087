"""Which kernels the frame engine runs, so that its JVPs are exact and the same on every device.

Two settings, each a context manager that restores the previous state: float32 at full
precision on CUDA (no TF32), and attention by its math implementation (the fused kernels have
no forward-mode AD rule).  Pure: no files, no printing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.backends import mha
from torch.nn.attention import SDPBackend, sdpa_kernel


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Float32 convolutions and matmuls at full precision on CUDA: TF32 off, restored after.

    TF32 (cuDNN's default for convolutions) rounds operands to 10 mantissa bits: on an H100 it
    put the pipeline's Grams 2e-4 (relative) away from the CPU's, and central differences lost
    every digit (relative error 1e3).  Exact JVPs should not depend on the device.
    """
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


@contextlib.contextmanager
def attention_in_plain_ops() -> Iterator[None]:
    """Attention computed by its math implementation (matmuls and a softmax), restored after.

    The fused kernels (`nn.MultiheadAttention`'s eval-mode fast path, scaled_dot_product_attention's
    flash and memory-efficient backends) have no forward-mode AD rule; the math implementation
    computes the same function in operators that have one (torchvision's ViT, timm's transformers).
    """
    fastpath = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        mha.set_fastpath_enabled(fastpath)
