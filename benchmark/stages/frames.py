"""`nfbench frames [ID ...]`: neural frames of the suite's models at its evaluation points.

One process for every model (the default: all of the suite's): the frame (augmentation
tangents, noise and the autoencoder's directions at the points) is built once and pushed
through each model; each model's Grams go to frames/<id>.safetensors, its per-layer series to
metrics/plots/<id>.csv and one MLflow run.  With `executor: ray` each model's points are
sharded over the cluster's workers (benchmark/executor.py) and the Grams come back to be written here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import metrics
from ..errors import NFBenchError
from ..executor import open_executor
from ..pipeline import FRAMES, MODELS, PLOTS, POINTS, model_frames, model_root, model_spec, suite_frame
from ..storage import write_text
from ..tracking import Record, points_dataset, stage_run
from . import announce


def run(params: Mapping, model_ids: list[str] | None = None, *, method: str | None = None, track: bool = True,
        points: Path = POINTS, models_dir: Path = MODELS, out: Path = FRAMES, plots: Path = PLOTS) -> None:
    """Frames of the given models (default: all of the suite's) in `models_dir` at the points of
    `points`, into `out`/<id>.safetensors and their per-layer series into `plots`/<id>.csv."""
    ids = model_ids or list(params["models"])
    for model_id in ids:
        if model_spec(params, model_id)[1]:
            raise NFBenchError(f"{model_id!r} is a generative model; frames are computed for classifiers")
    with announce("frames") as info:
        at = suite_frame(params, points, models_dir)
        info["did"] = f"frame of {at[2].vectors.shape[1]} vectors at {len(at[1])} points"
    dataset = points_dataset(points) if track else None    # every model's run names the same points
    with open_executor(params) as executor:
        for i, model_id in enumerate(ids, 1):
            spec = params["models"][model_id]
            with (announce(f"frames {i}/{len(ids)} {model_id}") as info,
                  stage_run(params, model=model_id, stage="frames", enabled=track) as record):
                result = model_frames(params, model_id, spec, models_root=model_root(spec, models_dir),
                                      method=method, at=at, executor=executor)
                path = Path(out) / f"{model_id}.safetensors"
                result.save(path)
                series = layer_series(result)
                write_plot(Path(plots) / f"{model_id}.csv", result, series)
                how = result.provenance
                info["did"] = (f"{len(result.labels)} vectors × {len(result.point_ids)} points × "
                               f"{len(result.layers)} layers ({how['method']}, {how['device']}, "
                               f"{how['memory_format']})")
                info["out"] = str(path)
                _record(record, spec, result, series, dataset)


def layer_series(result) -> dict[str, list[float]]:
    """Per-layer means over the points: each family's relative sensitivity and the effective rank."""
    families, rank = metrics.layer_means(metrics.frame_statistics(result))
    return {**{f: values.tolist() for f, values in families.items()}, "effective_rank": rank.tolist()}


def write_plot(path, result, series: Mapping[str, list[float]]) -> None:
    """CSV for `dvc plots show`: one row per layer, x = relative depth."""
    depth = metrics.relative_depth(result).tolist()
    columns = ["layer_index", "layer", "depth", *series]
    lines = [",".join(columns)]
    for i, layer in enumerate(result.layers):
        lines.append(",".join([str(i), layer, f"{depth[i]:.6g}", *(f"{series[c][i]:.6g}" for c in series)]))
    write_text(path, "\n".join(lines) + "\n")


def _record(record: Record, spec: Mapping, result, series: Mapping[str, list[float]], points) -> None:
    """Per-layer family sensitivities and effective rank (mean over points), step = layer index."""
    record.params.update({"source": spec["source"], "role": spec["role"], "layers": ",".join(result.layers),
                          "perturbation_hash": result.provenance["perturbation_hash"],
                          "data_hash": result.provenance["data_hash"], "method": result.provenance["method"],
                          "vectors": len(result.labels), "points": int(result.point_ids.numel())})
    record.layer_metrics.update({(k if k == "effective_rank" else f"sensitivity.{k}"): v for k, v in series.items()})
    record.tags["nfbench.layers"] = ",".join(result.layers)
    record.dataset = points
