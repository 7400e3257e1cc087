"""`source: robustbench`: a model of RobustBench's zoo, {name, dataset, threat_model}.

Its source checkpoint is RobustBench's file on Google Drive, kept in
`<root>/robustbench/<dataset>/<threat_model>/<name>.pt` (downloaded if absent, or placed there
by hand); RobustBench's own code builds the network and loads it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import NFBenchError
from . import SourceFile, obtain

if TYPE_CHECKING:
    from torch import nn


def robustbench_path(spec: Mapping, root: Path) -> Path:
    return Path(root) / "robustbench" / spec["dataset"] / spec["threat_model"] / f"{spec['name']}.pt"


def source_file(spec: Mapping, root: Path, what: str) -> SourceFile:
    from ..robustbench_compat import import_robustbench, zoo_entry

    gdrive_id = zoo_entry(spec["name"], spec["dataset"], spec["threat_model"]).get("gdrive_id")
    if not isinstance(gdrive_id, str):
        raise NFBenchError(f"{what}: RobustBench has no single downloadable checkpoint for {spec['name']} "
                           f"(ensemble or built from timm/torchvision weights); use source torchvision or file")

    def fetcher(dest: str) -> None:   # RobustBench print()s each download: keep nfbench's stdout clean
        with contextlib.redirect_stdout(io.StringIO()):
            import_robustbench().utils.download_gdrive_new(gdrive_id, dest)

    return SourceFile(robustbench_path(spec, root), f"https://drive.google.com/uc?id={gdrive_id}", spec.get("sha256"),
                      fetcher=fetcher, label=f"RobustBench {spec['name']}")


def build(spec: Mapping, arch: Mapping) -> nn.Module:
    from ..layouts import declare_block_outputs
    from ..robustbench_compat import zoo_entry

    return declare_block_outputs(zoo_entry(spec["name"], spec["dataset"], spec["threat_model"])["model"]())


def acquire(spec: Mapping, root: Path, what: str):
    from ..checkpoints import safe_torch_load
    from ..robustbench_compat import import_robustbench

    source = source_file(spec, root, what)
    sha = obtain(source, what)
    safe_torch_load(source.path, what)     # refuse pickled code before robustbench unpickles it
    net = import_robustbench().utils.load_model(spec["name"], model_dir=str(Path(root) / "robustbench"),
                                                dataset=spec["dataset"], threat_model=spec["threat_model"])
    info = {"source_checkpoint": {"path": str(source.path), "sha256": sha, "url": source.url}}
    return net.eval(), info, {"name": spec["name"]}
