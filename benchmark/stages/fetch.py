"""`nfbench fetch ID [ID ...] | --suite S`: install models into models/ (one DVC stage per entry).

An id is a params.yaml entry (an entry with seeds fetches all its models), one model of such
an entry (`std-s3`), or an autoencoder.  A local model's published checkpoint is installed as
a verified copy (no torch, no MLflow: nothing is computed); the models to train are trained in
parallel; a model that is trained, downloaded or imported is mirrored to MLflow with what its
manifest records.  Accuracies are measured by the evaluate stage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import NFBenchError, one_of
from ..models import Wanted, fetch, store
from ..pipeline import MODELS, model_root, model_spec, root_of
from ..storage import sha256_json
from ..tracking import Record, log_failure, log_run, now_ms, numbers
from . import announce


def wanted(params: Mapping, ids: list[str], models: Path = MODELS) -> list[Wanted]:
    """The models named by entry, model or autoencoder ids, in order, each once (under `models`)."""
    out: dict[str, Wanted] = {}
    for name in ids:
        known = {*params["model_groups"], *params["models"], *params["generative"]}
        if name not in known:
            raise NFBenchError(f"{one_of(name, known, 'model id')} (suite {params['suite']})")
        for model_id in params["model_groups"].get(name, [name]):
            spec, generative = model_spec(params, model_id)
            out.setdefault(model_id, Wanted(model_id, spec, model_root(spec, models), generative))
    return list(out.values())


def run(params: Mapping, ids: list[str], *, track: bool = True, out: Path | None = None) -> None:
    """Install the models of `ids` under models/; `out`: the directory of the one entry in `ids`
    (models/<entry>, what its DVC stage declares), in place of models/<entry>."""
    if out is not None and (len(ids) != 1 or ids[0] not in {*params["model_groups"], *params["generative"]}):
        raise NFBenchError(f"--out {out}: the directory of one params.yaml entry; give that entry's id alone "
                           f"(not {' '.join(ids) or 'none'})")
    models = MODELS if out is None else root_of(out, ids[0], "--out")
    items = wanted(params, ids, models)
    with announce(f"fetch {' '.join(ids)}") as info:
        start, begun = time.perf_counter(), now_ms()   # a model's run spans from the stage's start:
        counts: dict[str, int] = {}                     # the models to train are trained in parallel
        try:
            for w, manifest, why_not in fetch(items, params):
                how = store.obtained(manifest)
                counts[how] = counts.get(how, 0) + 1
                print(f"[fetch {w.id}] {_did(w.spec, manifest, how, why_not)} "
                      f"({time.perf_counter() - start:.1f} s) -> {w.root / w.id}", file=sys.stderr)
                if track and how != "published":
                    _log(params, w, manifest, begun)
        except Exception as exc:
            if track:
                log_failure(params, model=" ".join(ids), stage="fetch", start=begun, error=exc)
            raise
        info["did"] = f"{len(items)} models (" + ", ".join(f"{n} {how}" for how, n in sorted(counts.items())) + ")"
        info["out"] = f"{out or MODELS}/"


def _did(spec: Mapping, manifest: Mapping, how: str, why_not: str) -> str:
    sha = manifest["sha256"][:12]
    if how == "published":
        return f"published checkpoint {spec['published']['checkpoint']} (sha256 {sha}) verified"
    if how == "trained":
        device = (manifest.get("training") or {}).get("device", "cpu")
        return (f"trained here ({spec.get('recipe', 'vae')} recipe, seed {spec['seed']}, on {device}"
                + (f"; not the published checkpoint: {why_not}" if why_not else "") + f"), sha256 {sha}")
    return f"{spec['source']} {manifest['role']} model, sha256 {sha}"


def _log(params: Mapping, w: Wanted, manifest: Mapping, start: int) -> None:
    log_run(params, model=w.id, stage="fetch", start=start, record=Record(
        params={"source": w.spec["source"], "role": manifest["role"], **{f"spec.{k}": v for k, v in w.spec.items()},
                "data_hash": manifest["data_hash"], "sha256": manifest["sha256"], "spec_hash": sha256_json(w.spec)},
        metrics=numbers({"training": manifest.get("training") or {}}), artifacts=[w.root / w.id / store.MANIFEST]))


