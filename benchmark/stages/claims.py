"""`nfbench claims`: every task in tasks/ evaluated on the suite's statistics."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from .. import claims
from ..storage import sha256_file, write_json
from ..tracking import log_run
from . import CLAIMS, TASKS, announce, load_statistics


def run(params: Mapping, *, seed: int = 0, track: bool = True) -> dict:
    with announce("claims") as info:
        tasks = claims.load_tasks(TASKS)
        result = claims.evaluate(tasks, load_statistics(params), seed=seed)
        write_json(CLAIMS, result)
        verdicts = Counter(row["verdict"] for row in result["rows"])
        info["did"] = (f"{len(tasks)} claims, {len(result['rows'])} rows ("
                       + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + ")")
        info["out"] = str(CLAIMS)
        if track:
            log_run(params, model="suite", stage="claims",
                    run_params={"tasks": ",".join(t.id for t in tasks), "seed": seed,
                                **{f"task.{t.id}": sha256_file(TASKS / f"{t.id}.yaml")[:16] for t in tasks}},
                    metrics={_metric_name(row): row["value"] for row in result["rows"] if row["value"] is not None},
                    artifacts=[CLAIMS])
    return result


def _metric_name(row: Mapping) -> str:
    """An MLflow-safe key per claim row: `<task>/<subject>`."""
    return re.sub(r"[^A-Za-z0-9_./ -]+", "_", f"{row['task']}/{row['subject']}")
