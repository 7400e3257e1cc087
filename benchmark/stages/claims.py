"""`nfbench claims`: every task in tasks/ evaluated on the suite's statistics."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from .. import claims
from ..pipeline import CLAIMS, CLAIMS_TAG, STATISTICS, TASKS, load_statistics
from ..storage import sha256_file, write_json
from ..tracking import stage_run
from . import announce


def run(params: Mapping, *, seed: int = 0, track: bool = True, statistics: Path = STATISTICS, tasks: Path = TASKS,
        out: Path = CLAIMS) -> dict:
    """The claims of `tasks`/*.yaml on the statistics in `statistics`, into `out` (reports/claims.json)."""
    with announce("claims") as info, stage_run(params, model="suite", stage="claims", enabled=track) as run:
        loaded = claims.load_tasks(tasks)
        run.params.update({"tasks": ",".join(t.id for t in loaded), "seed": seed,
                           **{f"task.{t.id}": sha256_file(Path(tasks) / f"{t.id}.yaml")[:16] for t in loaded}})
        result = claims.evaluate(loaded, load_statistics(params, statistics), seed=seed)
        write_json(out, result)
        verdicts = Counter(row["verdict"] for row in result["rows"])
        info["did"] = (f"{len(loaded)} claims, {len(result['rows'])} rows ("
                       + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + ")")
        info["out"] = str(out)
        run.metrics.update({_metric_name(row): row["value"] for row in result["rows"] if row["value"] is not None})
        run.artifacts.append(Path(out))
        run.tags[CLAIMS_TAG] = sha256_file(out)    # the report stage adds its files to this run
    return result


def _metric_name(row: Mapping) -> str:
    """An MLflow-safe key per claim row: `<task>/<subject>`."""
    return re.sub(r"[^A-Za-z0-9_./ -]+", "_", f"{row['task']}/{row['subject']}")
