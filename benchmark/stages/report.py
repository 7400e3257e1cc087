"""`nfbench report`: tables and figures from the claims and the statistics alone."""

from __future__ import annotations

from collections.abc import Mapping

from .. import report
from ..storage import read_json
from . import CLAIMS, REPORTS, announce, load_statistics


def run(params: Mapping) -> None:
    with announce("report") as info:
        stats = load_statistics(params)
        written = report.write_reports(read_json(CLAIMS), stats, REPORTS)
        differs = [m for m in stats if any(r["flagged"] for r in report.published_comparison(stats[m].meta))]
        info["did"] = f"{len(written)} files" + (f"; accuracy differs from the published one: {', '.join(differs)} "
                                                 f"(reports/layers.md)" if differs else "")
        info["out"] = f"{REPORTS}/"
