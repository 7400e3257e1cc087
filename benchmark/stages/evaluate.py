"""`nfbench evaluate [ID ...]`: the accuracies of the suite's fetched classifiers.

Clean accuracy, robust accuracy under the suite's attack (PGD or AutoAttack) in L∞ at its ε (and in L2
at its own ε for an L2-trained model), with how it was measured (`attacks.attack_record`),
accuracy on rotated and on translated images (`models.evaluate`), written with each model's
identity to metrics/models.json (committed, `dvc metrics show`).  One process for all models:
a stage per model would pay the import of torch and MLflow once per model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..attacks import attack_name, robust_key
from ..errors import NFBenchError
from ..models import store
from ..pipeline import MODEL_METRICS, MODELS, model_accuracy, model_root, model_spec
from ..storage import read_json, sha256_json, write_json
from ..tracking import dataset, numbers, stage_run
from . import announce


def run(params: Mapping, model_ids: list[str] | None = None, *, track: bool = True, models_dir: Path = MODELS,
        out: Path = MODEL_METRICS) -> None:
    """Evaluate the given models (default: all of the suite's) in `models_dir` into `out` (metrics/models.json)."""
    from ..data import load_suite_dataset

    ids = model_ids or list(params["models"])
    for model_id in ids:
        if model_spec(params, model_id)[1]:
            raise NFBenchError(f"{model_id!r} is a generative model; accuracies are measured for classifiers")
    data = load_suite_dataset(params["data"])
    eps = params["attack"]["eps"]
    records = read_json(out) if model_ids and Path(out).is_file() else {}
    for i, model_id in enumerate(ids, 1):
        spec = params["models"][model_id]
        root = model_root(spec, models_dir)
        with (announce(f"evaluate {i}/{len(ids)} {model_id}") as info,
              stage_run(params, model=model_id, stage="evaluate", enabled=track) as run):
            accuracy = model_accuracy(params, model_id, spec, models_root=root, data=data)
            manifest = store.read_manifest(model_id, root)
            record = records[model_id] = {**store.manifest_summary(manifest), "accuracy": accuracy}
            own = {k: v for k, v in accuracy.items() if k.startswith("robust_acc_")}
            info["did"] = (f"clean {accuracy['clean_acc']:.1%}, {attack_name(accuracy['attack'])}@{eps:g} "
                           f"{accuracy[robust_key('Linf', eps)]:.1%}"
                           + "".join(f", {k.removeprefix('robust_acc_')} {v:.1%}" for k, v in own.items())
                           + f" on the {accuracy['evaluated_on']} ({accuracy['device']})")
            run.params.update({"source": spec["source"], "role": manifest["role"],
                               "obtained": store.obtained(manifest), "sha256": manifest["sha256"],
                               "data_hash": data.content_hash, "spec_hash": sha256_json(spec),
                               **{f"spec.{k}": v for k, v in spec.items()},
                               **{f"attack.{k}": v for k, v in accuracy["attack"].items()}})
            run.metrics.update(numbers(record))
            run.artifacts.append(root / model_id / store.MANIFEST)
            run.dataset = dataset(data.name, data.content_hash,
                                  {"dataset": data.name, "content_hash": data.content_hash},
                                  evaluated_on=accuracy["evaluated_on"], attacked_on=accuracy["attacked_on"])
    write_json(out, {m: records[m] for m in sorted(records)})
