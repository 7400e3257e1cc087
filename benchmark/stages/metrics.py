"""`nfbench metrics`: per-point statistics of every model's frames, and a per-layer summary."""

from __future__ import annotations

from collections.abc import Mapping

from ..frame_result import FrameResult
from ..metrics import FrameStatistics, frame_statistics, layer_summary
from ..pipeline import FRAMES, STATISTICS, SUMMARY, model_record
from ..storage import write_bytes, write_json
from . import announce


def run(params: Mapping) -> dict[str, FrameStatistics]:
    with announce("metrics") as info:
        stats = {}
        for model_id in params["models"]:
            result = FrameResult.load(FRAMES / f"{model_id}.safetensors")
            stats[model_id] = frame_statistics(result, model_record(params, model_id))
            write_bytes(STATISTICS / f"{model_id}.safetensors", stats[model_id].to_bytes())
        write_json(SUMMARY, layer_summary(stats))
        info["did"] = f"statistics of {len(stats)} models"
        info["out"] = f"{STATISTICS}/, {SUMMARY}"
    return stats

