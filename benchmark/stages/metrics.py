"""`nfbench metrics`: per-point statistics of every model's frames, and a per-layer summary.

Reads each model's frame file and its accuracies (the evaluate stage's metrics/models.json);
the rest of its record comes from params.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import NFBenchError
from ..frame_result import FrameResult
from ..metrics import FrameStatistics, frame_statistics, layer_summary
from ..pipeline import FRAMES, MODEL_METRICS, STATISTICS, SUMMARY, evaluated, model_record
from ..storage import write_bytes, write_json
from . import announce


def run(params: Mapping, *, frames: Path = FRAMES, accuracies: Path = MODEL_METRICS, out: Path = STATISTICS,
        summary: Path = SUMMARY) -> dict[str, FrameStatistics]:
    """Statistics of the frames in `frames` with the accuracies in `accuracies`, into `out`/<id>.safetensors,
    and their per-layer means into `summary`."""
    with announce("metrics") as info:
        stats = {}
        for model_id in params["models"]:
            path = Path(frames) / f"{model_id}.safetensors"
            if not path.is_file():
                raise NFBenchError(f"{path} does not exist; run `nfbench frames` (dvc repro frames) first")
            accuracy = evaluated(model_id, accuracies)["accuracy"]
            result = FrameResult.load(path)
            record = model_record(params, model_id, accuracy=accuracy,
                                  architecture=result.provenance.get("architecture"))
            stats[model_id] = frame_statistics(result, record)
            write_bytes(Path(out) / f"{model_id}.safetensors", stats[model_id].to_bytes())
        write_json(summary, layer_summary(stats))
        info["did"] = f"statistics of {len(stats)} models"
        info["out"] = f"{out}/, {summary}"
    return stats
