"""Published checkpoints: the files a suite's reference results were computed from, installed verified.

A local model (trained here by a recipe) may name one in its spec, `published: {checkpoint,
sha256}`; the embedded suite ships them with the repository (`zoo/embedded/<id>.safetensors`),
the way RobustBench publishes its zoo.  Training is bit-reproducible on one CPU type only, so
the published checkpoint, not a retrained model, is what makes a suite's numbers reproduce on
any machine.

A published file is exactly the model.safetensors that training wrote: its metadata (key
`nfbench`) records the recipe and architecture it was trained with, and it is installed only
for that exact recipe.  A model whose recipe differs (another seed, as a replication uses, or
another parameter in an experiment) is trained instead, and so is every local model under
`checkpoints: train`.  Installing is a verified copy and needs no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from ..config import recipe_of
from ..errors import NFBenchError
from ..recipes import architecture
from ..storage import safetensors_metadata
from ..vocab import DATASET_DIMS
from . import store

METADATA_KEY = "nfbench"
ZOO = Path("zoo")              # published checkpoints: zoo/<suite>/<id>.safetensors


def recipe(spec: Mapping, generative: bool) -> dict:
    """The training recipe of a validated local spec (a classifier's recipe, or the VAE's)."""
    if generative:
        return {k: v for k, v in spec.items() if k not in ("source", "published")}
    return recipe_of(spec)


def file_metadata(recipe: Mapping, arch: Mapping) -> dict[str, str]:
    """The safetensors metadata training writes into a local model's checkpoint."""
    return {METADATA_KEY: json.dumps({"recipe": dict(recipe), "architecture": dict(arch)}, sort_keys=True)}


def install(model_id: str, spec: Mapping, params: Mapping, *, root: Path, generative: bool,
            what: str) -> tuple[dict | None, str]:
    """Install the published checkpoint of a local model: (manifest, "") or, when the model must
    be trained instead, (None, why)."""
    if "published" not in spec:
        return None, ""
    if params["checkpoints"] == "train":
        return None, "checkpoints: train"
    path, expected = Path(spec["published"]["checkpoint"]), spec["published"]["sha256"]
    if not path.is_file():
        raise NFBenchError(f"{what}: published checkpoint {path} does not exist (it ships with the "
                           f"repository: restore it, or retrain the model with checkpoints: train)")
    data = path.read_bytes()                     # read once: what is verified is what is installed
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise NFBenchError(f"{what}: published checkpoint {path} has sha256 {actual}, expected {expected}; "
                           f"refused (restore the published file, e.g. `git checkout -- {path}`, "
                           f"or retrain with checkpoints: train)")
    try:
        record = json.loads(safetensors_metadata(data)[METADATA_KEY])
    except (ValueError, KeyError) as exc:
        raise NFBenchError(f"{what}: published checkpoint {path} was not written by nfbench's training "
                           f"(no recipe in its metadata: {exc})") from exc
    ours = recipe(spec, generative)
    wanted = {"recipe": ours, "architecture": architecture(ours, DATASET_DIMS[params["data"]["dataset"]])}
    if record != wanted:
        theirs = record.get("recipe") or {}
        changed = sorted(k for k in {*theirs, *wanted["recipe"]} if theirs.get(k) != wanted["recipe"].get(k))
        return None, f"its recipe differs from the published checkpoint's in {', '.join(changed) or 'architecture'}"
    manifest = {"source": "local", "role": "generative" if generative else spec["role"], "spec": dict(spec),
                "architecture": wanted["architecture"], "published": dict(spec["published"])}
    return store.install(model_id, root, lambda dest: dest.write_bytes(data), manifest), ""


def publish(params: Mapping, ids: list[str], *, models_root: Path = store.MODELS_DIR,
            zoo: Path = ZOO) -> dict[str, dict]:
    """Publish models trained here: copy each one's model.safetensors into zoo/<suite>/ and record
    it, with its sha256, as the model's `published` checkpoint in the suite preset (and in
    params.yaml when it holds the suite).  An id is an entry (an entry with seeds: all its
    models, as zoo/<suite>/<entry>/<id>.safetensors), one of its models, or an autoencoder.
    Returns model id -> {checkpoint, sha256}."""
    from ..config import record_published
    from ..storage import write_bytes, write_text

    records: dict[str, tuple[str, dict]] = {}          # entry -> (section, published record)
    written: dict[str, dict] = {}
    files: dict[Path, bytes] = {}
    for model_id, section, spec in _models_to_publish(params, ids):
        root = store.entry_root(spec, models_root)
        manifest = store.read_manifest(model_id, root)
        if store.status(model_id, root) != "present" or store.obtained(manifest) != "trained":
            raise NFBenchError(f"{model_id!r}: {store.model_dir(model_id, root)} does not hold a model trained "
                               f"here; train it first (checkpoints: train, then `nfbench fetch {model_id}`)")
        if recipe(manifest["spec"], section == "generative") != recipe(spec, section == "generative"):
            raise NFBenchError(f"{model_id!r}: the installed model was trained with another recipe than "
                               f"params.yaml's; fetch it again first")
        folder = store.entry_root(spec, Path(zoo) / params["suite"])
        dest = folder / f"{model_id}.safetensors"
        files[dest] = (store.model_dir(model_id, root) / store.CHECKPOINT).read_bytes()
        written[model_id] = {"checkpoint": dest.as_posix(), "sha256": manifest["sha256"]}
        if "group" in spec:
            _, group = records.setdefault(spec["group"], (section, {"dir": folder.as_posix(), "sha256": {}}))
            group["sha256"][spec["seed"]] = manifest["sha256"]
        else:
            records[model_id] = (section, written[model_id])
    texts = record_published(params["suite"], records)      # validated before anything is written
    for dest, data in files.items():
        write_bytes(dest, data)
    for path, text in texts.items():
        write_text(path, text)
    return written


def _models_to_publish(params: Mapping, ids: list[str]):
    """(model id, section, spec) of every local model the ids name, each once."""
    seen: set[str] = set()
    for name in ids:
        if name in params["generative"]:
            members, section = [name], "generative"
        elif name in params["model_groups"] or name in params["models"]:
            members, section = params["model_groups"].get(name, [name]), "models"
        else:
            raise NFBenchError(f"{name!r} is not a model of suite {params['suite']}")
        for model_id in members:
            spec = params[section][model_id]
            if spec["source"] != "local":
                raise NFBenchError(f"{model_id!r} has source {spec['source']}: only models trained here by a recipe "
                                   f"are published (other sources pin their own checkpoint with sha256)")
            if model_id not in seen:
                seen.add(model_id)
                yield model_id, section, spec
