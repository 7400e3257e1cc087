"""`nfbench frames ID`: the model's neural frames at the suite's evaluation points."""

from __future__ import annotations

from collections.abc import Mapping

from tqdm import tqdm

from .. import metrics
from ..config import layers_for
from ..errors import NFBenchError
from ..frames import FrameResult, compute_frames
from ..models import zoo
from ..perturbations import build_frame
from ..storage import code_version, sha256_json, write_text
from ..tracking import log_run
from . import FRAMES, MODELS, PLOTS, POINTS, announce, resolve_device
from .data import load_points
from .fetch import model_spec


def model_frames(params: Mapping, model_id: str, spec: Mapping, *, models_root=MODELS,
                 points=POINTS, method: str | None = None) -> FrameResult:
    """Frames of one fetched model at the suite's points with the suite's perturbations."""
    device = resolve_device(params["device"])
    x, _, ids, data_meta = load_points(points)
    x = x.to(device)
    model = zoo.load(model_id, spec, models_root).to(device)
    pert = params["perturbations"]
    autoencoder = None
    if "generative" in pert:
        name = pert["generative"]["model"]
        autoencoder = zoo.load(name, params["generative"][name], MODELS).to(device)
    frame = build_frame(pert, x, ids, autoencoder)
    cfg = params["frames"]
    method = method or cfg["method"]
    with tqdm(total=len(ids), desc=f"frames {model_id}", unit="point", leave=False, disable=None) as bar:
        result = compute_frames(model, x, frame.vectors, layers_for(params, spec),
                                labels=frame.labels, families=frame.families, point_ids=ids,
                                chunk_size=cfg["chunk_size"], method=method, fd_step=cfg["fd_step"],
                                on_progress=bar.update)
    result.provenance.update({
        "model": model_id, "role": spec["role"], "model_sha256": zoo.read_manifest(model_id, models_root)["sha256"],
        "perturbations": pert, "perturbation_hash": sha256_json(pert), "data_hash": data_meta["content_hash"],
        "suite": params["suite"], "code_version": code_version(), "device": device.type})
    return result


def run(params: Mapping, model_id: str, *, method: str | None = None, track: bool = True) -> None:
    spec, generative = model_spec(params, model_id)
    if generative:
        raise NFBenchError(f"{model_id!r} is a generative model; frames are computed for classifiers")
    with announce(f"frames {model_id}") as info:
        result = model_frames(params, model_id, spec, method=method)
        path = FRAMES / f"{model_id}.safetensors"
        result.save(path)
        series = layer_series(result)
        write_plot(PLOTS / f"{model_id}.csv", result, series)
        info["did"] = (f"{len(result.labels)} vectors × {len(result.point_ids)} points × "
                       f"{len(result.layers)} layers ({result.provenance['method']}, {result.provenance['device']})")
        info["out"] = str(path)
        if track:
            _log(params, model_id, spec, result, series)


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


def _log(params: Mapping, model_id: str, spec: Mapping, result, series: Mapping[str, list[float]]) -> None:
    """Per-layer family sensitivities and effective rank (mean over points), step = layer index."""
    log_run(params, model=model_id, stage="frames",
            run_params={"source": spec["source"], "role": spec["role"], "layers": ",".join(result.layers),
                        "perturbation_hash": result.provenance["perturbation_hash"],
                        "data_hash": result.provenance["data_hash"], "method": result.provenance["method"],
                        "vectors": len(result.labels), "points": int(result.point_ids.numel())},
            layer_metrics={(k if k == "effective_rank" else f"sensitivity.{k}"): v for k, v in series.items()},
            tags={"nfbench.layers": ",".join(result.layers)})
