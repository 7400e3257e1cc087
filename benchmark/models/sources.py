"""Source checkpoints: the downloaded or user-placed files that non-local models are made from.

A RobustBench, torchvision or `file` model is installed (`zoo.acquire`) from one file on disk,
its *source checkpoint*.  This module says where that file lives and where it comes from,
obtains it (downloads it when missing, checks its pin) and describes it by its sha256, so that
the pipeline can notice a replaced file: the `sources` stage writes each entry's description,
and each fetch stage depends on it.  Local models (trained, or published with a pinned sha256
in params.yaml) and timm models (timm's own cache) have no source checkpoint here.  Torch-free.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import NFBenchError
from ..storage import sha256_file
from .store import download, verify_sha256


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


def robustbench_path(spec: Mapping, root: Path) -> Path:
    return Path(root) / "robustbench" / spec["dataset"] / spec["threat_model"] / f"{spec['name']}.pt"


def source_file(spec: Mapping, root: Path, what: str) -> SourceFile | None:
    """The source checkpoint of a model spec (None for local and timm models); `root` holds
    RobustBench downloads (`<root>/robustbench/…`)."""
    return {"robustbench": _robustbench, "torchvision": _torchvision, "file": _file}.get(
        spec["source"], lambda *_: None)(spec, root, what)


def _robustbench(spec: Mapping, root: Path, what: str) -> SourceFile:
    from .robustbench_compat import import_robustbench, zoo_entry

    gdrive_id = zoo_entry(spec["name"], spec["dataset"], spec["threat_model"]).get("gdrive_id")
    if not isinstance(gdrive_id, str):
        raise NFBenchError(f"{what}: RobustBench has no single downloadable checkpoint for {spec['name']} "
                           f"(ensemble or built from timm/torchvision weights); use source torchvision or file")

    def fetcher(dest: str) -> None:   # RobustBench print()s each download: keep nfbench's stdout clean
        with contextlib.redirect_stdout(io.StringIO()):
            import_robustbench().utils.download_gdrive_new(gdrive_id, dest)

    return SourceFile(robustbench_path(spec, root), f"https://drive.google.com/uc?id={gdrive_id}", spec.get("sha256"),
                      fetcher=fetcher, label=f"RobustBench {spec['name']}")


def torchvision_weights(spec: Mapping, what: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(spec["arch"])[spec["weights"]]
    except (ValueError, KeyError) as exc:
        raise NFBenchError(f"{what}: torchvision has no weights {spec['arch']}/{spec['weights']} ({exc})") from exc


def _torchvision(spec: Mapping, root: Path, what: str) -> SourceFile:
    import torch.hub

    url = torchvision_weights(spec, what).url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name   # torch.hub's cache
    label = f"torchvision {spec['arch']} {spec['weights']}"
    if "sha256" in spec:
        return SourceFile(path, url, spec["sha256"], label=label)
    prefix = re.search(r"-([0-9a-f]{6,})\.", path.name)   # torchvision's <arch>-<sha256 prefix>.pth
    return SourceFile(path, url, prefix.group(1) if prefix else None, prefix_only=True, label=label)


def _file(spec: Mapping, root: Path, what: str) -> SourceFile:
    return SourceFile(Path(spec["checkpoint"]), spec.get("url"), spec["sha256"], fields=True)


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
