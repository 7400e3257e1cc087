"""Checkpoint files read without running code, and state dicts fitted strictly into a network.

A source checkpoint (RobustBench's `.pt`, torchvision's `.pth`, a submission's file) is read
with `weights_only` or as safetensors, so it can hold tensors and plain containers only, and it
must fit the architecture exactly: no silent `strict=False` load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import NFBenchError
from .store import is_html_page


def safe_torch_load(path: Path, what: str) -> Any:
    """torch.load restricted to tensors and plain containers: a checkpoint cannot run code."""
    import pickle

    if is_html_page(path):       # saved by a browser or an old download: say so, not "pickled objects"
        raise NFBenchError(f"{what}: {path} is an HTML page (a download or quota page saved under the "
                           f"checkpoint's name), not a checkpoint; replace it with the real file and rerun")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        first = next((line for line in lines if "Unsupported global" in line), lines[-1]).split(". ")[0][:160]
        raise NFBenchError(f"{what}: {path} holds pickled objects other than tensors ({first}); "
                           f"refusing to load it — save the state dict (or use safetensors)") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise NFBenchError(f"{what}: {path} is not a readable PyTorch checkpoint ({exc})") from exc


def load_state_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as exc:
            raise NFBenchError(f"{what}: {path} is not a readable safetensors file ({exc})") from exc
    state = safe_torch_load(path, what)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NFBenchError(f"{what}: {path} is not a state dict (a mapping of names to tensors)")
    return dict(state)


def load_into(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            more = " …" if len(result.missing_keys) > 3 else ""
            parts.append(f"missing {', '.join(result.missing_keys[:3])}{more}")
        if result.unexpected_keys:
            parts.append(f"unexpected {', '.join(result.unexpected_keys[:3])}"
                         + (" …" if len(result.unexpected_keys) > 3 else ""))
        raise NFBenchError(f"{what}: the checkpoint does not fit the architecture ({'; '.join(parts)})")
    return net.eval()
