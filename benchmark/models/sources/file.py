"""`source: file`: a submitted network, {entry_point "pkg.module:factory", checkpoint, sha256}.

Its source checkpoint is the spec's `checkpoint` file (downloaded from `url` when given and
absent), pinned by `sha256`; the factory builds the network, in pixel space unless the spec
gives `mean`/`std`, observed at the spec's `layers` when given.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import NFBenchError
from . import SourceFile, obtain

if TYPE_CHECKING:
    from torch import nn


def source_file(spec: Mapping, root: Path, what: str) -> SourceFile:
    return SourceFile(Path(spec["checkpoint"]), spec.get("url"), spec["sha256"], fields=True)


def entry_point(path: str):
    """`package.module:factory` -> the factory; import problems become one-line errors."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise NFBenchError(f"entry point {path!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code
        raise NFBenchError(f"entry point {path!r}: cannot import {module_name} ({type(exc).__name__}: {exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise NFBenchError(f"entry point {path!r}: module {module_name} has no callable {attr!r}")
    return factory


def build(spec: Mapping, arch: Mapping) -> nn.Module:
    from torch import nn

    from ..nets import add_pixel_normalization

    net = entry_point(spec["entry_point"])()
    if not isinstance(net, nn.Module):
        raise NFBenchError(f"entry point {spec['entry_point']} returned {type(net).__name__}, not an nn.Module")
    if "mean" in spec or "std" in spec:
        net = add_pixel_normalization(net, spec.get("mean", [0.0]), spec.get("std", [1.0]))
    if "layers" in spec:
        net.observable_layers = list(spec["layers"])
    return net


def acquire(spec: Mapping, root: Path, what: str):
    from ..checkpoints import load_into, load_state_file

    field = f"{what}.{{}}".format                          # errors name the spec key they concern
    try:
        entry_point(spec["entry_point"])                  # fail on a bad entry point before any download
    except NFBenchError as exc:
        raise NFBenchError(f"{field('entry_point')}: {exc}") from exc
    source = source_file(spec, root, what)
    sha = obtain(source, what)
    state = load_state_file(source.path, field("checkpoint"))
    net = load_into(build(spec, {}), state, field("checkpoint"))
    info = {"source_checkpoint": {"path": str(source.path), "sha256": sha,
                                  **({"url": source.url} if source.url else {})}}
    return net, info, {"name": spec["entry_point"]}
