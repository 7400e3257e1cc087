"""`nfbench metrics`: per-point statistics of every model's frames, and a per-layer summary."""

from __future__ import annotations

from collections.abc import Mapping

from ..frames import FrameResult
from ..metrics import FrameStatistics, frame_statistics
from ..models import zoo
from ..storage import write_bytes, write_json
from . import FRAMES, MODELS, STATISTICS, SUMMARY, announce

_TRAINED_WITH = {"rotate_deg": ["rotate"], "translate_px": ["translate_x", "translate_y"], "scale_range": ["scale"]}


def model_record(params: Mapping, model_id: str, spec: Mapping | None = None, manifest: Mapping | None = None) -> dict:
    """What the claims need to know about a model besides its frames: role, ε, accuracies, …

    spec and manifest default to the suite's entry and models/<id>/manifest.json.
    """
    spec = spec if spec is not None else params["models"][model_id]
    manifest = manifest if manifest is not None else (zoo.read_manifest(model_id, MODELS) or {})
    acc = manifest.get("accuracy") or {}
    eps = params["attack"]["eps"]
    if spec["source"] == "local" and spec.get("recipe") == "augmentation":
        trained = [label for key, labels in _TRAINED_WITH.items() if spec.get(key) for label in labels]
    else:
        trained = list(spec.get("augmentations", []))
    threat = "Linf" if spec.get("recipe") == "adversarial" else spec.get("threat_model")
    return {"id": model_id, "role": spec["role"], "eps": float(spec.get("eps", 0.0)), "source": spec["source"],
            "threat_model": threat if spec["role"] == "adversarial" else None,
            "display_name": spec.get("display_name", model_id), "suite": params["suite"],
            "accuracy": {"clean_acc": acc.get("clean_acc"), "robust_acc": acc.get(f"robust_acc@{eps:g}"),
                         "rotated_acc": acc.get("rotated_acc"), "translated_acc": acc.get("translated_acc")},
            "reference": dict(spec.get("reference") or {}), "augmentations": trained}


def run(params: Mapping) -> dict[str, FrameStatistics]:
    from ..report import summary

    with announce("metrics") as info:
        stats = {}
        for model_id in params["models"]:
            result = FrameResult.load(FRAMES / f"{model_id}.safetensors")
            stats[model_id] = frame_statistics(result, model_record(params, model_id))
            write_bytes(STATISTICS / f"{model_id}.safetensors", stats[model_id].to_bytes())
        write_json(SUMMARY, summary(stats))
        info["did"] = f"statistics of {len(stats)} models"
        info["out"] = f"{STATISTICS}/, {SUMMARY}"
    return stats


def load_statistics(params: Mapping) -> dict[str, FrameStatistics]:
    return {m: FrameStatistics.load(STATISTICS / f"{m}.safetensors") for m in params["models"]}
