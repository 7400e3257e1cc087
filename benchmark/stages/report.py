"""`nfbench report`: tables and figures from the claims and the statistics, and the frame gallery;
`nfbench show POINT`: the gallery of one point.

The gallery (reports/figures/frame_gallery.png, .svg) shows the frames of a few fixed points
(`gallery.report_points`) for one model per role (`gallery.default_models`).  It reads the
points file, those models' frame files (the Grams, not recomputed) and the protocol's
autoencoder, with which the perturbation code rebuilds the frame vectors at each point, on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import gallery, report
from ..errors import NFBenchError, one_of
from ..pipeline import (
    CLAIMS,
    CLAIMS_TAG,
    FRAMES,
    POINTS,
    REPORTS,
    STATISTICS,
    load_points,
    load_statistics,
    suite_autoencoder,
)
from ..storage import read_json, sha256_file
from . import announce

GALLERY = "frame_gallery"                           # .png and .svg, among the figures
SHOWN = REPORTS / "show"                            # `nfbench show`'s figures (not figures/: this stage's output)


def run(params: Mapping, *, track: bool = True, claims: Path = CLAIMS, statistics: Path = STATISTICS,
        points: Path = POINTS, frames: Path = FRAMES, autoencoder: Path | None = None,
        markdown: Path = REPORTS / "claims.md", latex: Path = REPORTS / "claims.tex",
        layers: Path = REPORTS / "layers.md", figures: Path = REPORTS / "figures") -> None:
    """Write the reports of `claims` and `statistics` (the gallery: from `points`, `frames` and the
    autoencoder's directory, by default models/<name>); `track`: add them to the MLflow run of the claims."""
    with announce("report") as info:
        stats = load_statistics(params, statistics)
        written = report.write_reports(read_json(claims), stats, REPORTS, files={
            "claims.md": markdown, "claims.tex": latex, "layers.md": layers, "figures": figures})
        shown = frame_gallery(params, points=points, frames=frames, autoencoder=autoencoder)
        written += gallery.write_gallery(shown, Path(figures) / GALLERY)
        differs = [m for m in stats if any(r["flagged"] for r in report.published_comparison(stats[m].meta))]
        info["did"] = (f"{len(written)} files (frame gallery: points {', '.join(str(p.index) for p in shown)} "
                       f"for {', '.join(shown[0].models) if shown else 'no model'})")
        if differs:
            info["did"] += f"; accuracy differs from the published one: {', '.join(differs)} ({layers})"
        root = Path(os.path.commonpath([p.parent for p in written]))     # reports/, by default
        if track:
            from ..tracking import attach_artifacts

            attached = attach_artifacts(params, stage="claims", tag=(CLAIMS_TAG, sha256_file(claims)),
                                        paths=written, root=root)
            info["did"] += ", added to the claims' MLflow run" if attached else ", no MLflow run of these claims"
        info["out"] = f"{root}/"


def show(params: Mapping, point: int, model_ids: Sequence[str] | None = None, out: str | Path | None = None) -> str:
    """`nfbench show`: the gallery of one evaluation point, written to `out` (default
    reports/show/frame_point<POINT>.png, and its .svg); returns the line saying what and where."""
    shown = frame_gallery(params, [point], model_ids)
    paths = gallery.write_gallery(shown, Path(out) if out else SHOWN / f"frame_point{point}.png")
    return (f"point {point} (test image #{shown[0].point_id}, class {shown[0].label}), "
            f"{', '.join(shown[0].models)}: {' and '.join(map(str, paths))}")


def frame_gallery(params: Mapping, indices: Sequence[int] | None = None, model_ids: Sequence[str] | None = None,
                  *, points=POINTS, frames=FRAMES, autoencoder=None) -> list[gallery.PointFrame]:
    """The gallery of evaluation points `indices` (default: `gallery.report_points`) for the suite's
    classifiers `model_ids` (default: `gallery.default_models`), from the points file, their frame
    files and the autoencoder (its directory `autoencoder`, by default models/<name>).  Unknown ids
    and points outside the evaluation set fail in one line, before any frame file or model is read."""
    from ..frame_result import FrameResult

    roles = {m: spec["role"] for m, spec in params["models"].items()}
    for model_id in model_ids or []:
        if model_id not in roles:
            raise NFBenchError(f"{one_of(model_id, roles, 'model id')} (the classifiers of suite {params['suite']})")
    model_ids = list(dict.fromkeys(model_ids or gallery.default_models(roles)))
    x, y, ids, _ = load_points(points)
    indices = (gallery.report_points(y) if indices is None
               else [gallery.check_point(i, len(ids), str(points)) for i in indices])
    results = {m: FrameResult.load(Path(frames) / f"{m}.safetensors") for m in model_ids}
    autoencoder = suite_autoencoder(params, autoencoder)
    return [gallery.point_gallery(i, x, y, ids, params["perturbations"], results, roles, autoencoder)
            for i in indices]

