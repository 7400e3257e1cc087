"""Shared test builders: `synthetic_stats`, the one way the tests make FrameStatistics by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from benchmark.metrics import FrameStatistics


def synthetic_stats(model_id: str, sensitivity, rank, *, layers: Sequence[str], labels: Sequence[str],
                    families: Sequence[str], role: str | None = None, eps: float = 0.0,
                    accuracy: Mapping | None = None, augmentations: Sequence[str] = ("rotate", "scale"),
                    architecture: str = "convolutional", family_rank=None, **meta) -> FrameStatistics:
    """FrameStatistics of a synthetic model from its arrays.

    sensitivity: layers × points × vectors; rank: layers × points (every family's rank too,
    unless `family_rank`, families × layers × points, is given).  Depth runs evenly from 0 to 1,
    the penultimate layer is the one before "logits".  With a `role`, the record is a synthetic
    suite's (role, eps, accuracy, the augmentations an augmentation model was trained with, its
    architecture family, and `meta`'s keys); without one it holds the id alone.
    """
    sensitivity = torch.as_tensor(sensitivity, dtype=torch.float64).clone()
    rank = torch.as_tensor(rank, dtype=torch.float64).clone()
    names = list(dict.fromkeys(families))
    record = {"id": model_id, **meta}
    if role is not None:
        record = {"id": model_id, "role": role, "eps": eps, "architecture": architecture, **meta, "suite": "synthetic",
                  "accuracy": dict(accuracy or {}),
                  "augmentations": list(augmentations) if role == "augmentation" else []}
    return FrameStatistics(
        layers=list(layers), labels=list(labels), families=list(families), family_names=names,
        point_ids=torch.arange(sensitivity.shape[1]),
        depth=torch.linspace(0, 1, len(layers), dtype=torch.float64), sensitivity=sensitivity, rank=rank,
        family_rank=torch.stack([rank] * len(names)) if family_rank is None else family_rank,
        penultimate=list(layers).index("logits") - 1 if "logits" in layers else None, meta=record)



def run_suite(params: Mapping) -> None:
    """A miniature suite's pipeline in the working directory, in-process (no DVC, no MLflow):
    `params` becomes params.yaml, then points, every model, accuracies, frames, statistics and
    the suite's leaderboard entries; submissions/ is left empty for cards."""
    import yaml

    from benchmark import pipeline
    from benchmark.config import PARAMS_FILE, load_params
    from benchmark.stages import data, evaluate, fetch, frames, leaderboard, metrics

    PARAMS_FILE.write_text(yaml.safe_dump(dict(params)))
    params = load_params()
    data.run(params)
    fetch.run(params, list(params["model_groups"]), track=False)
    evaluate.run(params, track=False)
    frames.run(params, track=False)
    metrics.run(params)
    leaderboard.run(params)
    pipeline.SUBMISSIONS.mkdir()
