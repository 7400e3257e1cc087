"""`nfbench claims`: every task in tasks/ evaluated on the suite's statistics."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from .. import claims
from ..pipeline import CLAIMS, CLAIMS_TAG, TASKS, load_statistics
from ..storage import sha256_file, write_json
from ..tracking import stage_run
from . import announce


def run(params: Mapping, *, seed: int = 0, track: bool = True) -> dict:
    with announce("claims") as info, stage_run(params, model="suite", stage="claims", enabled=track) as run:
        tasks = claims.load_tasks(TASKS)
        run.params.update({"tasks": ",".join(t.id for t in tasks), "seed": seed,
                           **{f"task.{t.id}": sha256_file(TASKS / f"{t.id}.yaml")[:16] for t in tasks}})
        result = claims.evaluate(tasks, load_statistics(params), seed=seed)
        write_json(CLAIMS, result)
        verdicts = Counter(row["verdict"] for row in result["rows"])
        info["did"] = (f"{len(tasks)} claims, {len(result['rows'])} rows ("
                       + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + ")")
        info["out"] = str(CLAIMS)
        run.metrics.update({_metric_name(row): row["value"] for row in result["rows"] if row["value"] is not None})
        run.artifacts.append(CLAIMS)
        run.tags[CLAIMS_TAG] = sha256_file(CLAIMS)    # the report stage adds its files to this run
    return result


def _metric_name(row: Mapping) -> str:
    """An MLflow-safe key per claim row: `<task>/<subject>`."""
    return re.sub(r"[^A-Za-z0-9_./ -]+", "_", f"{row['task']}/{row['subject']}")
