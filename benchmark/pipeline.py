"""What several pipeline stages share: the files they talk through, and per-model steps.

Stages (benchmark/stages/) are thin shells, one per DVC stage; they exchange data only through
the files named here (dvc.yaml declares them).  The per-model steps (a model's accuracies, its
frames at the suite's points, its record for the claims) are here because the leaderboard stage
runs them for submitted models exactly as the evaluate, frames and metrics stages run them for
the suite's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from .config import layers_for
from .errors import NFBenchError, one_of
from .executor import resolve_device
from .storage import code_version, read_json, sha256_json

POINTS = Path("data/points.safetensors")          # the suite's fixed evaluation points
DATA_SUMMARY = Path("metrics/data.json")
MODELS = Path("models")                           # models/<id>/ (checkpoint + manifest)
SOURCES = MODELS / ".sources"                     # <entry>.json: each entry's source checkpoints (sources stage)
MODEL_METRICS = Path("metrics/models.json")       # per model: identity and accuracies (committed)
FRAMES = Path("frames")                           # <id>.safetensors: Grams per layer
STATISTICS = Path("metrics/points")               # <id>.safetensors: per-point statistics
SUMMARY = Path("metrics/summary.json")            # per-model per-layer means (committed)
PLOTS = Path("metrics/plots")                     # CSV series for `dvc plots`
TASKS = Path("tasks")
REPORTS = Path("reports")
CLAIMS = REPORTS / "claims.json"
CLAIMS_TAG = "nfbench.claims_sha256"              # MLflow tag of the claims run; the report stage adds to it
REFERENCE = REPORTS / "reference"                 # <suite>/claims.json: each suite's committed reference
SUBMISSIONS = Path("submissions")                 # <id>.yaml: model cards (SUBMITTING.md)
SUBMITTED_MODELS = MODELS / "submissions"         # <id>/: submitted models, fetched like the suite's
LEADERBOARD = Path("leaderboard")                 # <suite>/<id>.json submitted, <suite>-suite/<id>.json derived

_TRAINED_WITH = {"rotate_deg": ["rotate"], "translate_px": ["translate_x", "translate_y"], "scale_range": ["scale"]}


def model_root(spec: Mapping, models: Path = MODELS) -> Path:
    """Where a suite model's directory lives: models/<id>/, or models/<entry>/<id>/ for the models
    of an entry with seeds (that entry's one DVC output); `models`: another models directory."""
    from .models.store import entry_root

    return entry_root(spec, models)


def root_of(directory: str | Path, name: str, option: str) -> Path:
    """The models directory holding `directory`, the directory of model (or entry) `name`, given
    on the command line as `option`; its last part must be `name` (the store's layout)."""
    directory = Path(directory)
    if directory.name != name:
        raise NFBenchError(f"{option} {directory}: the directory of {name!r} must be named {name!r} "
                           f"(<models directory>/{name})")
    return directory.parent


def model_spec(params: Mapping, model_id: str) -> tuple[dict, bool]:
    """(spec, is_generative) of a model id of the suite; unknown ids list the close ones."""
    if model_id in params["models"]:
        return params["models"][model_id], False
    if model_id in params["generative"]:
        return params["generative"][model_id], True
    known = list(params["models"]) + list(params["generative"])
    raise NFBenchError(f"{one_of(model_id, known, 'model id')} (suite {params['suite']})")


def load_points(path=POINTS):
    """(x, y, ids, meta) written by the data stage."""
    from .storage import tensors_from_file

    tensors, meta = tensors_from_file(path, "points file (run `nfbench data`)")
    return tensors["x"], tensors["y"], tensors["ids"], meta


def load_statistics(params: Mapping, directory: str | Path = STATISTICS) -> dict:
    """Every suite model's FrameStatistics, written by the metrics stage into `directory`."""
    from .metrics import FrameStatistics

    return {m: FrameStatistics.load(Path(directory) / f"{m}.safetensors") for m in params["models"]}


def suite_params(params: Mapping, suite: str | None) -> dict:
    """params.yaml, or another suite's preset with params.yaml's global settings."""
    if suite is None or suite == params["suite"]:
        return dict(params)
    from .config import GLOBAL_SECTIONS, SUITE_SECTIONS, load_suite, validate_params

    preset = load_suite(suite)
    settings = {k: params[k] for k in GLOBAL_SECTIONS if k in params}      # not the validated extras
    return validate_params({**settings, "suite": suite, **{k: preset[k] for k in SUITE_SECTIONS}},
                           f"suites/{suite}.yaml")


def model_accuracy(params: Mapping, model_id: str, spec: Mapping, *, models_root=None, data=None) -> dict:
    """The accuracies of one fetched classifier on the suite's data (`data`: the loaded dataset;
    `models_root`: where its directory is, by default the suite's)."""
    from .data import load_suite_dataset
    from .models import zoo
    from .models.evaluate import evaluate

    data = data or load_suite_dataset(params["data"])
    net = zoo.load(model_id, spec, models_root or model_root(spec)).to(resolve_device(params["device"]))
    return evaluate(net, data, params, spec)


def suite_frame(params: Mapping, points=POINTS, models: Path = MODELS):
    """(x, ids, frame, data meta): the suite's points on the device and the frame at them
    (`models`: the models directory holding the autoencoder)."""
    from .perturbations.frame import build_frame

    device = resolve_device(params["device"])
    x, _, ids, data_meta = load_points(points)
    x = x.to(device)
    autoencoder = suite_autoencoder(params, autoencoder_dir(params, models))
    autoencoder = autoencoder.to(device) if autoencoder is not None else None
    return x, ids, build_frame(params["perturbations"], x, ids, autoencoder), data_meta


def autoencoder_dir(params: Mapping, models: Path = MODELS) -> Path | None:
    """The directory of the protocol's autoencoder under `models`; None without a generative family."""
    if "generative" not in params["perturbations"]:
        return None
    name = params["perturbations"]["generative"]["model"]
    return model_root(params["generative"][name], models) / name


def suite_autoencoder(params: Mapping, directory: str | Path | None = None):
    """The protocol's fetched autoencoder (from `directory`, by default models/<name>), on the CPU;
    None when the perturbations have no generative family."""
    from .models import zoo

    if "generative" not in params["perturbations"]:
        return None
    name = params["perturbations"]["generative"]["model"]
    root = root_of(directory, name, "--autoencoder") if directory else model_root(params["generative"][name])
    return zoo.load(name, params["generative"][name], root)


def model_frames(params: Mapping, model_id: str, spec: Mapping, *, models_root=None, points=POINTS,
                 method: str | None = None, at=None, executor=None):
    """Frames (a FrameResult) of one fetched model at the suite's points with the suite's
    perturbations (`at`: a `suite_frame` result to reuse, built here when None; `models_root`:
    where the model's directory is, by default the suite's; `executor`: shards the points over
    its workers).  Imports torch: the stages that only copy files do not."""
    from .models import store, zoo

    models_root = models_root or model_root(spec)
    at = at or suite_frame(params, points)
    model = zoo.load(model_id, spec, models_root)
    return net_frames(params, model_id, spec, model, at, store.read_manifest(model_id, models_root)["sha256"],
                      method=method, executor=executor)


def net_frames(params: Mapping, model_id: str, spec: Mapping, model, at, sha256: str, *, method: str | None = None,
               executor=None):
    """Frames of a loaded model (`model_frames`); on a Ray executor the points are split into a
    shard per worker, each of whole engine chunks, so each shard pushes exactly the batches the
    one-process run pushes and the Grams are the same bits (on CPU, where the executor keeps the
    driver's thread count)."""
    from tqdm import tqdm

    from .frame_result import FrameResult
    from .frames import compute_frames
    from .models.checks import forward_ad_ready

    x, ids, frame, data_meta = at
    model = model.to(x.device)
    cfg = params["frames"]
    method = method or spec.get("frames_method") or cfg["method"]
    swapped = forward_ad_ready(model, f"model {model_id!r}") if method == "jvp" else []
    engine = {"layers": layers_for(params, spec), "labels": frame.labels, "families": frame.families,
              "chunk_size": cfg["chunk_size"], "method": method, "fd_step": cfg["fd_step"],
              "memory_format": cfg["memory_format"]}
    if executor is None or not executor.address:            # here, as without executors
        with tqdm(total=len(ids), desc=f"frames {model_id}", unit="point", leave=False, disable=None) as bar:
            result = compute_frames(model, x, frame.vectors, point_ids=ids, on_progress=bar.update, **engine)
    else:
        from .executor import Task, run_all

        shared = executor.share(model.cpu())
        shards = point_shards(len(ids), frame.vectors.shape[1], cfg["chunk_size"], executor.workers)
        tasks = [Task(f"{model_id} points {s.start}-{s.stop - 1}",
                      lambda s=s: (shared, x[s].cpu(), frame.vectors[s].cpu(), ids[s], engine, params["device"]))
                 for s in shards]
        result = FrameResult.along_points(run_all(executor, shard_frames, tasks, f"frames {model_id}"))
    pert = params["perturbations"]
    result.provenance.update({
        "model": model_id, "role": spec["role"], "architecture": _architecture(model, spec, model_id),
        "model_sha256": sha256,
        "perturbations": pert, "perturbation_hash": sha256_json(pert), "data_hash": data_meta["content_hash"],
        "suite": params["suite"], "code_version": code_version(), "device": x.device.type,
        **({"swapped_for_forward_ad": swapped} if swapped else {})})
    return result


def _architecture(model, spec: Mapping, model_id: str) -> str | None:
    """The model's architecture family: its class's (`layouts.architecture_family`), or the one its
    spec declares (`architecture:`) for a class nfbench does not know; None when neither says."""
    from .models.layouts import architecture_family

    known, declared = architecture_family(model), spec.get("architecture")
    if known is not None and declared is not None and known != declared:
        raise NFBenchError(f"model {model_id!r}: architecture: {declared!r}, but its class {type(model).__name__} "
                           f"is {known!r} (declare it only for a class nfbench does not know)")
    return known or declared


def point_shards(points: int, vectors: int, chunk_size: int, workers: int) -> list[slice]:
    """Up to `workers` contiguous shards of the points, each a whole number of the engine's chunks
    (`chunk_size // vectors` points), so sharding changes no batch the engine pushes."""
    per_chunk = max(1, chunk_size // vectors)
    chunks = -(-points // per_chunk)
    per_shard = -(-chunks // max(1, min(workers, chunks))) * per_chunk
    return [slice(a, min(a + per_shard, points)) for a in range(0, points, per_shard)]


def shard_frames(model, x, vectors, ids, engine: Mapping, device: str):
    """A worker's job: the Grams of one shard of points, on the worker's device."""
    from .frames import compute_frames

    where = resolve_device(device)
    return compute_frames(model.to(where), x.to(where), vectors.to(where), point_ids=ids, **engine)


def measure(params: Mapping, model_id: str, spec: Mapping, model, data, at, sha256: str):
    """A worker's job for a submitted model: (its accuracies, its frames), on the worker's device;
    `model`, `data` (the suite's dataset) and `at` (`suite_frame`) arrive loaded, not as paths."""
    from .models.evaluate import evaluate

    device = resolve_device(params["device"])
    x, ids, frame, data_meta = at
    accuracy = evaluate(model.to(device), data, params, spec)
    here = (x.to(device), ids, dataclasses.replace(frame, vectors=frame.vectors.to(device)), data_meta)
    return accuracy, net_frames(params, model_id, spec, model, here, sha256)


def model_record(params: Mapping, model_id: str, spec: Mapping | None = None, accuracy: Mapping | None = None,
                 *, architecture: str | None = None) -> dict:
    """What the claims need to know about a model besides its frames: role, architecture family
    (as its frames recorded it), ε, accuracies, …

    spec and accuracy default to the suite's entry and the evaluate stage's metrics/models.json.
    """
    from .attacks import published_threat, robust_key

    spec = spec if spec is not None else params["models"][model_id]
    acc = accuracy if accuracy is not None else evaluated(model_id)["accuracy"]
    eps = params["attack"]["eps"]
    if spec["source"] == "local" and spec.get("recipe") == "augmentation":
        trained = [label for key, labels in _TRAINED_WITH.items() if spec.get(key) for label in labels]
    else:
        trained = list(spec.get("augmentations", []))
    threat = "Linf" if spec.get("recipe") == "adversarial" else spec.get("threat_model")
    own_threat = published_threat(spec.get("threat_model"), spec.get("eps"), eps)
    return {"id": model_id, "role": spec["role"], "architecture": architecture,
            "eps": float(spec.get("eps", 0.0)), "source": spec["source"],
            "seed": spec.get("seed") if spec["source"] == "local" else None, "group": spec.get("group"),
            "threat_model": threat if spec["role"] == "adversarial" else None,
            "display_name": spec.get("display_name", model_id), "suite": params["suite"],
            "accuracy": {"clean_acc": acc.get("clean_acc"), "robust_acc": acc.get(robust_key("Linf", eps)),
                         "rotated_acc": acc.get("rotated_acc"), "translated_acc": acc.get("translated_acc"),
                         "n_test": acc.get("n_test"), "n_attacked": acc.get("n_attacked"), "attack": acc.get("attack"),
                         "own_threat_robust_acc": acc.get(robust_key(*own_threat)) if own_threat else None},
            "reference": dict(spec.get("reference") or {}), "augmentations": trained}


def evaluated(model_id: str, path: str | Path = MODEL_METRICS) -> dict:
    """The evaluate stage's record of a model (identity and accuracies) in metrics/models.json (`path`)."""
    path = Path(path)
    if not path.is_file():
        raise NFBenchError(f"{path} does not exist; run `nfbench evaluate` (dvc repro evaluate) first")
    records = read_json(path)
    if model_id not in records:
        raise NFBenchError(f"{path} has no record of model {model_id!r}; run `nfbench evaluate` "
                           f"(dvc repro evaluate) first")
    return records[model_id]
