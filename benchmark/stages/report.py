"""`nfbench report`: tables and figures from the claims and the statistics alone."""

from __future__ import annotations

from collections.abc import Mapping

from .. import report
from ..storage import read_json
from . import CLAIMS, REPORTS, announce, load_statistics


def run(params: Mapping) -> None:
    with announce("report") as info:
        written = report.write_reports(read_json(CLAIMS), load_statistics(params), REPORTS)
        info["did"] = f"{len(written)} files"
        info["out"] = f"{REPORTS}/"
