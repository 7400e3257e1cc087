"""`nfbench report`: tables and figures from the claims and the statistics alone."""

from __future__ import annotations

from collections.abc import Mapping

from .. import report
from ..pipeline import CLAIMS, CLAIMS_TAG, REPORTS, load_statistics
from ..storage import read_json, sha256_file
from . import announce


def run(params: Mapping, *, track: bool = True) -> None:
    """Write the reports; `track`: add them to the MLflow run of the claims they show."""
    with announce("report") as info:
        stats = load_statistics(params)
        written = report.write_reports(read_json(CLAIMS), stats, REPORTS)
        differs = [m for m in stats if any(r["flagged"] for r in report.published_comparison(stats[m].meta))]
        info["did"] = f"{len(written)} files" + (f"; accuracy differs from the published one: {', '.join(differs)} "
                                                 f"(reports/layers.md)" if differs else "")
        if track:
            from ..tracking import attach_artifacts

            attached = attach_artifacts(params, stage="claims", tag=(CLAIMS_TAG, sha256_file(CLAIMS)),
                                        paths=written, root=REPORTS)
            info["did"] += ", added to the claims' MLflow run" if attached else ", no MLflow run of these claims"
        info["out"] = f"{REPORTS}/"
