"""`nfbench sources`: obtain every model's source checkpoint and record what it is (path, sha256).

The RobustBench, torchvision and `file` models are made from a file that DVC does not track
(it lives under models/robustbench/, in torch.hub's cache or where the suite says).  This stage
downloads the missing ones, checks their pins and writes, per params.yaml entry,
`models/.sources/<entry>.json`; each fetch stage depends on its entry's file.  DVC runs the stage
on every `dvc repro` (`always_changed`), so a replaced checkpoint changes its record and
refetches exactly the models made from it; an unchanged one leaves everything as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from ..models.sources import describe
from ..pipeline import MODELS, SOURCES, model_spec
from ..storage import write_json
from . import announce


def run(params: Mapping, *, out: Path = SOURCES) -> None:
    """Write each entry's source record to `out`/<entry>.json."""
    with announce("sources") as info:
        entries = {**{g: [g] for g in params["generative"]}, **params["model_groups"]}
        records, files = {}, 0
        for entry, model_ids in entries.items():
            records[entry] = {}
            for model_id in model_ids:
                spec, generative = model_spec(params, model_id)
                what = f"{'generative model' if generative else 'model'} {model_id!r}"
                record = records[entry][model_id] = describe(spec, MODELS, what)
                if "sha256" in record:
                    files += 1
                    print(f"[sources {model_id}] {record['path']} (sha256 {record['sha256'][:12]})", file=sys.stderr)
        for entry, record in records.items():     # written once every source is in hand
            write_json(Path(out) / f"{entry}.json", record)
        info["did"] = f"{files} source checkpoints of {sum(map(len, entries.values()))} models"
        info["out"] = f"{out}/"
