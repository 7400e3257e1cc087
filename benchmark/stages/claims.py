"""`nfbench claims`: every task in tasks/ evaluated on the suite's statistics."""

from __future__ import annotations

from collections.abc import Mapping

from .. import claims
from ..storage import write_json
from . import CLAIMS, TASKS, announce
from .metrics import load_statistics


def run(params: Mapping, *, seed: int = 0) -> dict:
    with announce("claims") as info:
        tasks = claims.load_tasks(TASKS)
        result = claims.evaluate(tasks, load_statistics(params), seed=seed)
        write_json(CLAIMS, result)
        verdicts: dict[str, int] = {}
        for row in result["rows"]:
            verdicts[row["verdict"]] = verdicts.get(row["verdict"], 0) + 1
        info["did"] = f"{len(tasks)} claims, {len(result['rows'])} rows (" + \
            ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + ")"
        info["out"] = str(CLAIMS)
    return result
