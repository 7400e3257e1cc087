"""`nfbench data`: the suite's fixed evaluation points and a summary of its dataset."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..data import eval_indices, load_suite_dataset
from ..pipeline import DATA_SUMMARY, POINTS
from ..storage import tensors_to_bytes, write_bytes, write_json
from . import announce


def run(params: Mapping, *, download: bool = False, out: Path = POINTS, summary: Path = DATA_SUMMARY) -> None:
    """Write the suite's evaluation points to `out` and its dataset's summary to `summary`;
    `download`: fetch a torchvision dataset into data.root first."""
    with announce("data") as info:
        cfg = params["data"]
        data = load_suite_dataset(cfg, download=download)
        ids = eval_indices(data.test.labels, cfg["eval_points"], cfg["seed"])
        x, y = data.test.images(ids), data.test.labels[ids]
        meta = {"dataset": data.name, "content_hash": data.content_hash, "seed": cfg["seed"],
                "num_classes": data.num_classes}
        write_bytes(out, tensors_to_bytes({"x": x, "y": y, "ids": ids}, meta))
        write_json(summary, {
            **meta, "eval_points": len(ids), "image_shape": list(data.image_shape),
            "train_size": len(data.train) if data.train is not None else 0, "test_size": len(data.test),
            "eval_points_per_class": torch.bincount(y, minlength=data.num_classes).tolist()})
        info["did"] = f"{len(ids)} evaluation points of {data.name} ({data.content_hash[:12]})"
        info["out"] = str(out)

