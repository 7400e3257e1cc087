"""Where non-local models come from: one module per source kind, and their source checkpoints.

Each kind (a model spec's `source`) is a module here with the same three functions:
`source_file` (where its source checkpoint lives), `build` (its untrained network, taking [0,1]
pixels) and `acquire` (download or import it, verified):
  robustbench  {name, dataset, threat_model}: RobustBench's checkpoint in
               models/robustbench/<dataset>/<threat_model>/<name>.pt, downloaded if absent
  torchvision  {arch, weights}: torchvision's weights through the torch hub cache
  timm         {name}: `timm.create_model(name, pretrained=True)` (timm's own cache or download);
               its sha256, when pinned, is that of the weights as installed here (model.safetensors)
  file         {entry_point "pkg.module:factory", checkpoint path or url, sha256}
Local models (trained by a recipe, `zoo.train`, or published with a pinned sha256 in
params.yaml) only have their architecture built here.

A RobustBench, torchvision or `file` model is installed (`acquire`) from one file on disk, its
*source checkpoint*.  This package says where that file lives and where it comes from, obtains
it (downloads it when missing, checks its pin) and describes it by its sha256, so that the
pipeline can notice a replaced file: the `sources` stage writes each entry's description, and
each fetch stage depends on it.  timm models (timm's own cache) have no source checkpoint here.

Integrity: downloads go to a temporary name, are checked (not an HTML error page, sha256 when
pinned, loadable with weights_only) and only then renamed into place; a file whose sha256 does
not match is refused and kept beside under `<name>.rejected-<sha>` for inspection.

Torch-free to import: each kind imports torch and its library inside the functions that use
them, so describing a `file` model's source checkpoint, say, needs no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ...errors import NFBenchError
from ...storage import sha256_file
from ..store import download, verify_sha256

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class SourceFile:
    """Where a model's source checkpoint lives (`path`), where it is downloaded from when missing
    (`url`, through `fetcher` if given; None: the user must place it), and its pin (`sha256`, a
    prefix of it when `prefix_only`)."""

    path: Path
    url: str | None
    sha256: str | None = None
    prefix_only: bool = False
    fetcher: Callable[[str], None] | None = None
    label: str = ""            # names the file's origin in messages
    fields: bool = False       # messages name the spec's fields (`<what>.checkpoint`, `.url`, `.sha256`)

    def name(self, what: str, field: str) -> str:
        return f"{what}.{field}" if self.fields else what


def _kinds() -> dict[str, ModuleType]:
    from . import file, robustbench, timm, torchvision

    return {"robustbench": robustbench, "torchvision": torchvision, "timm": timm, "file": file}


def source_file(spec: Mapping, root: Path, what: str) -> SourceFile | None:
    """The source checkpoint of a model spec (None for local and timm models); `root` holds
    RobustBench downloads (`<root>/robustbench/…`)."""
    kind = _kinds().get(spec["source"])
    return None if kind is None else kind.source_file(spec, root, what)


def build_architecture(spec: Mapping, arch: Mapping) -> nn.Module:
    """The untrained network of a model, in pixel space (`arch` is the manifest's record)."""
    source = spec["source"]
    if source == "local":
        from ..nets import build

        return build(arch["name"], **arch["kwargs"])
    kinds = _kinds()
    if source not in kinds:
        raise NFBenchError(f"unknown source {source!r}")
    return kinds[source].build(spec, arch)


def acquire(spec: Mapping, root: Path, what: str) -> tuple[nn.Module, dict, dict]:
    """Download or import a non-local model and verify it: (network, source record, architecture record).
    `root` holds downloaded RobustBench checkpoints, `<root>/robustbench/…` (`robustbench.robustbench_path`)."""
    return _kinds()[spec["source"]].acquire(spec, root, what)


def obtain(source: SourceFile, what: str) -> str:
    """Make sure the source checkpoint is on disk, downloading it if missing, and check its pin;
    returns its sha256.  A bad download is set aside (`<name>.rejected-<sha>`); a file that was
    already there is the user's and stays put."""
    downloaded = not source.path.is_file()
    if downloaded:
        if source.url is None:
            raise NFBenchError(f"{source.name(what, 'checkpoint')}: {source.path} does not exist "
                               f"(and no url is given to download it from)")
        label = f" ({source.label})" if source.label else ""
        download(source.url, source.path, f"{source.name(what, 'url')}{label}", fetcher=source.fetcher)
    actual = sha256_file(source.path)
    if source.sha256:
        verify_sha256(source.path, source.sha256, source.name(what, "sha256"), keep_aside=downloaded,
                      prefix_only=source.prefix_only, actual=actual)
    return actual


def describe(spec: Mapping, root: Path, what: str) -> dict:
    """What a model is made from, for the fetch stage to depend on: its source checkpoint's path
    and sha256 (obtained first), or, for models without one, its source alone."""
    source = source_file(spec, root, what)
    if source is None:
        return {"source": spec["source"]}
    return {"source": spec["source"], "path": str(source.path), "sha256": obtain(source, what)}
