"""`nfbench metrics`: per-point statistics of every model's frames, and a per-layer summary."""

from __future__ import annotations

from collections.abc import Mapping

from ..attacks import published_threat, robust_key
from ..errors import NFBenchError
from ..frames import FrameResult
from ..metrics import FrameStatistics, frame_statistics
from ..storage import read_json, write_bytes, write_json
from . import FRAMES, MODEL_METRICS, STATISTICS, SUMMARY, announce

_TRAINED_WITH = {"rotate_deg": ["rotate"], "translate_px": ["translate_x", "translate_y"], "scale_range": ["scale"]}


def model_record(params: Mapping, model_id: str, spec: Mapping | None = None, accuracy: Mapping | None = None) -> dict:
    """What the claims need to know about a model besides its frames: role, ε, accuracies, …

    spec and accuracy default to the suite's entry and the evaluate stage's metrics/models.json.
    """
    spec = spec if spec is not None else params["models"][model_id]
    acc = accuracy if accuracy is not None else evaluated(model_id)["accuracy"]
    eps = params["attack"]["eps"]
    if spec["source"] == "local" and spec.get("recipe") == "augmentation":
        trained = [label for key, labels in _TRAINED_WITH.items() if spec.get(key) for label in labels]
    else:
        trained = list(spec.get("augmentations", []))
    threat = "Linf" if spec.get("recipe") == "adversarial" else spec.get("threat_model")
    own_threat = published_threat(spec.get("threat_model"), spec.get("eps"), eps)
    return {"id": model_id, "role": spec["role"], "eps": float(spec.get("eps", 0.0)), "source": spec["source"],
            "seed": spec.get("seed") if spec["source"] == "local" else None, "group": spec.get("group"),
            "threat_model": threat if spec["role"] == "adversarial" else None,
            "display_name": spec.get("display_name", model_id), "suite": params["suite"],
            "accuracy": {"clean_acc": acc.get("clean_acc"), "robust_acc": acc.get(robust_key("Linf", eps)),
                         "rotated_acc": acc.get("rotated_acc"), "translated_acc": acc.get("translated_acc"),
                         "n_test": acc.get("n_test"), "n_attacked": acc.get("n_attacked"),
                         "own_threat_robust_acc": acc.get(robust_key(*own_threat)) if own_threat else None},
            "reference": dict(spec.get("reference") or {}), "augmentations": trained}


def evaluated(model_id: str) -> dict:
    """The evaluate stage's record of a model (identity and accuracies) in metrics/models.json."""
    records = read_json(MODEL_METRICS) if MODEL_METRICS.is_file() else {}
    if model_id not in records:
        raise NFBenchError(f"{MODEL_METRICS} has no record of model {model_id!r}; run `nfbench evaluate` "
                           f"(dvc repro evaluate) first")
    return records[model_id]


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

