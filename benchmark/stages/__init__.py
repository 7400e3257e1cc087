"""Pipeline stages: thin shells that read files, call the math, write files.

One module per DVC stage and `nfbench` subcommand:  data, sources → fetch → evaluate, frames →
metrics → claims → report, and leaderboard.  Stages talk only through the files below (DVC tracks them),
read with the helpers here; MLflow mirrors them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

POINTS = Path("data/points.safetensors")          # the suite's fixed evaluation points
DATA_SUMMARY = Path("metrics/data.json")
MODELS = Path("models")                           # models/<id>/ (checkpoint + manifest)
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


def model_root(spec: Mapping) -> Path:
    """Where a suite model's directory lives: models/<id>/, or models/<entry>/<id>/ for the models
    of an entry with seeds (that entry's one DVC output)."""
    from ..models.store import entry_root

    return entry_root(spec, MODELS)


def model_spec(params: Mapping, model_id: str) -> tuple[dict, bool]:
    """(spec, is_generative) of a model id of the suite; unknown ids list the close ones."""
    if model_id in params["models"]:
        return params["models"][model_id], False
    if model_id in params["generative"]:
        return params["generative"][model_id], True
    from ..errors import NFBenchError, one_of

    known = list(params["models"]) + list(params["generative"])
    raise NFBenchError(f"{one_of(model_id, known, 'model id')} (suite {params['suite']})")


def load_points(path=POINTS):
    """(x, y, ids, meta) written by the data stage."""
    from ..storage import tensors_from_file

    tensors, meta = tensors_from_file(path, "points file (run `nfbench data`)")
    return tensors["x"], tensors["y"], tensors["ids"], meta


def load_statistics(params: Mapping) -> dict:
    """Every suite model's FrameStatistics, written by the metrics stage."""
    from ..metrics import FrameStatistics

    return {m: FrameStatistics.load(STATISTICS / f"{m}.safetensors") for m in params["models"]}


@contextmanager
def announce(stage: str) -> Iterator[dict]:
    """Time a stage and print its one-line summary: `[stage] what it did in N s -> where`."""
    info: dict = {"did": "done", "out": ""}
    start = time.perf_counter()
    yield info
    out = f" -> {info['out']}" if info["out"] else ""
    print(f"[{stage}] {info['did']} in {time.perf_counter() - start:.1f} s{out}", file=sys.stderr)


def suite_params(params: Mapping, suite: str | None) -> dict:
    """params.yaml, or another suite's preset with params.yaml's global settings."""
    if suite is None or suite == params["suite"]:
        return dict(params)
    from ..config import SUITE_SECTIONS, load_suite, validate_params

    preset = load_suite(suite)
    return validate_params({**params, "suite": suite, **{k: preset[k] for k in SUITE_SECTIONS}},
                           f"suites/{suite}.yaml")
