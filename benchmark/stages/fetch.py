"""`nfbench fetch ID | --suite S`: train, download or import models into models/<id>/."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import NFBenchError, one_of
from ..models import zoo
from ..storage import sha256_json, write_json
from ..tracking import log_run
from . import MODEL_METRICS, MODELS, announce


def model_spec(params: Mapping, model_id: str) -> tuple[dict, bool]:
    """(spec, is_generative) of a model id of the suite; unknown ids list the close ones."""
    if model_id in params["models"]:
        return params["models"][model_id], False
    if model_id in params["generative"]:
        return params["generative"][model_id], True
    known = list(params["models"]) + list(params["generative"])
    raise NFBenchError(f"{one_of(model_id, known, 'model id')} (suite {params['suite']})")


def run(params: Mapping, model_ids: list[str], *, track: bool = True) -> None:
    for model_id in model_ids:
        spec, generative = model_spec(params, model_id)
        with announce(f"fetch {model_id}") as info:
            manifest = zoo.fetch(model_id, spec, params, root=MODELS, generative=generative)
            summary = zoo.manifest_summary(manifest)
            write_json(MODEL_METRICS / f"{model_id}.json", summary)
            acc = manifest.get("accuracy") or {}
            eps = params["attack"]["eps"]
            info["did"] = (f"{spec['source']} {manifest['role']} model, sha256 {manifest['sha256'][:12]}"
                           + (f"; clean {acc['clean_acc']:.1%}, PGD@{eps:g} {acc[f'robust_acc@{eps:g}']:.1%}"
                              if acc else ""))
            info["out"] = str(MODELS / model_id)
            if track:
                flat = {f"spec.{k}": v for k, v in spec.items()}
                log_run(params, model=model_id, stage="fetch",
                        run_params={"source": spec["source"], "role": manifest["role"], **flat,
                                    "data_hash": manifest["data_hash"], "sha256": manifest["sha256"],
                                    "spec_hash": sha256_json(spec)},
                        metrics={k: v for k, v in _numbers(summary).items()},
                        artifacts=[MODELS / model_id / zoo.MANIFEST])


def _numbers(tree: Mapping, prefix: str = "") -> dict[str, float]:
    """Flatten the numeric leaves of a nested dict (`training.seconds`, `clean_acc`, …)."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}".replace("@", "_at_")
        if isinstance(value, Mapping):
            out.update(_numbers(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
