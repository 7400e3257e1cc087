"""`nfbench frames [ID ...]`: neural frames of the suite's models at its evaluation points.

One process for every model (the default: all of the suite's): the frame (augmentation
tangents, noise and the autoencoder's directions at the points) is built once and pushed
through each model; each model's Grams go to frames/<id>.safetensors, its per-layer series to
metrics/plots/<id>.csv and one MLflow run.
"""

from __future__ import annotations

from collections.abc import Mapping

from tqdm import tqdm

from .. import metrics
from ..config import layers_for, resolve_device
from ..errors import NFBenchError
from ..frames import FrameResult, compute_frames
from ..storage import code_version, sha256_json, write_text
from ..tracking import Record, points_dataset, stage_run
from . import FRAMES, PLOTS, POINTS, announce, load_points, model_root, model_spec


def suite_frame(params: Mapping, points=POINTS):
    """(x, ids, frame, data meta): the suite's points on the device and the frame at them."""
    from ..models import zoo
    from ..perturbations.frame import build_frame

    device = resolve_device(params["device"])
    x, _, ids, data_meta = load_points(points)
    x = x.to(device)
    pert = params["perturbations"]
    autoencoder = None
    if "generative" in pert:
        name = pert["generative"]["model"]
        autoencoder = zoo.load(name, params["generative"][name], model_root(params["generative"][name])).to(device)
    return x, ids, build_frame(pert, x, ids, autoencoder), data_meta


def model_frames(params: Mapping, model_id: str, spec: Mapping, *, models_root=None, points=POINTS,
                 method: str | None = None, at=None) -> FrameResult:
    """Frames of one fetched model at the suite's points with the suite's perturbations
    (`at`: a `suite_frame` result to reuse, built here when None; `models_root`: where the
    model's directory is, by default the suite's)."""
    from ..models import store, zoo

    models_root = models_root or model_root(spec)
    x, ids, frame, data_meta = at or suite_frame(params, points)
    model = zoo.load(model_id, spec, models_root).to(x.device)
    cfg = params["frames"]
    method = method or spec.get("frames_method") or cfg["method"]
    swapped = zoo.forward_ad_ready(model, f"model {model_id!r}") if method == "jvp" else []
    pert = params["perturbations"]
    with tqdm(total=len(ids), desc=f"frames {model_id}", unit="point", leave=False, disable=None) as bar:
        result = compute_frames(model, x, frame.vectors, layers_for(params, spec),
                                labels=frame.labels, families=frame.families, point_ids=ids,
                                chunk_size=cfg["chunk_size"], method=method, fd_step=cfg["fd_step"],
                                on_progress=bar.update)
    result.provenance.update({
        "model": model_id, "role": spec["role"], "model_sha256": store.read_manifest(model_id, models_root)["sha256"],
        "perturbations": pert, "perturbation_hash": sha256_json(pert), "data_hash": data_meta["content_hash"],
        "suite": params["suite"], "code_version": code_version(), "device": x.device.type,
        **({"swapped_for_forward_ad": swapped} if swapped else {})})
    return result


def run(params: Mapping, model_ids: list[str] | None = None, *, method: str | None = None,
        track: bool = True) -> None:
    ids = model_ids or list(params["models"])
    for model_id in ids:
        if model_spec(params, model_id)[1]:
            raise NFBenchError(f"{model_id!r} is a generative model; frames are computed for classifiers")
    with announce("frames") as info:
        at = suite_frame(params)
        info["did"] = f"frame of {at[2].vectors.shape[1]} vectors at {len(at[1])} points"
    for i, model_id in enumerate(ids, 1):
        spec = params["models"][model_id]
        with (announce(f"frames {i}/{len(ids)} {model_id}") as info,
              stage_run(params, model=model_id, stage="frames", enabled=track) as record):
            result = model_frames(params, model_id, spec, method=method, at=at)
            path = FRAMES / f"{model_id}.safetensors"
            result.save(path)
            series = layer_series(result)
            write_plot(PLOTS / f"{model_id}.csv", result, series)
            info["did"] = (f"{len(result.labels)} vectors × {len(result.point_ids)} points × "
                           f"{len(result.layers)} layers ({result.provenance['method']}, {result.provenance['device']})")
            info["out"] = str(path)
            _record(record, spec, result, series)


def layer_series(result) -> dict[str, list[float]]:
    """Per-layer means over the points: each family's relative sensitivity and the effective rank."""
    stats = metrics.frame_statistics(result)
    series = {f: stats.family(f).nanmean(dim=1).tolist() for f in stats.family_names}
    series["effective_rank"] = stats.rank.mean(dim=1).tolist()
    return series


def write_plot(path, result, series: Mapping[str, list[float]]) -> None:
    """CSV for `dvc plots show`: one row per layer, x = relative depth."""
    depth = metrics.relative_depth(result).tolist()
    columns = ["layer_index", "layer", "depth", *series]
    lines = [",".join(columns)]
    for i, layer in enumerate(result.layers):
        lines.append(",".join([str(i), layer, f"{depth[i]:.6g}", *(f"{series[c][i]:.6g}" for c in series)]))
    write_text(path, "\n".join(lines) + "\n")


def _record(record: Record, spec: Mapping, result, series: Mapping[str, list[float]]) -> None:
    """Per-layer family sensitivities and effective rank (mean over points), step = layer index."""
    record.params.update({"source": spec["source"], "role": spec["role"], "layers": ",".join(result.layers),
                          "perturbation_hash": result.provenance["perturbation_hash"],
                          "data_hash": result.provenance["data_hash"], "method": result.provenance["method"],
                          "vectors": len(result.labels), "points": int(result.point_ids.numel())})
    record.layer_metrics.update({(k if k == "effective_rank" else f"sensitivity.{k}"): v for k, v in series.items()})
    record.tags["nfbench.layers"] = ",".join(result.layers)
    record.dataset = points_dataset(POINTS)
