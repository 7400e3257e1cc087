"""params.yaml and the suite presets: loading, validation, switching suites.

params.yaml is the pipeline's single source of parameters (DVC tracks it key by key).  A
suite preset (suites/<name>.yaml) holds the suite-dependent sections — data, attack,
perturbations, generative, models, leaderboard — and `nfbench suite use NAME` copies them into
params.yaml, keeping the global settings (device, checkpoints, frames, tracking, executor).

Local models (trained by a recipe) may name a published checkpoint, `published: {checkpoint,
sha256}`: the file the suite's reference results were computed from.  `checkpoints: published`
(the default) installs it, verified, wherever its recipe is the model's; `checkpoints: train`
retrains every local model here instead.

A local entry with `seeds: [s, …]` instead of `seed` is one recipe trained with several seeds:
its members `<id>-s<seed>` are models of their own everywhere (frames, claims, leaderboard) and
are fetched together (one DVC stage, trained in parallel); its published checkpoints are
`published: {dir, sha256: {seed: hex}}`, one file `<dir>/<member>.safetensors` per seed.

Everything is validated before any training or download; an error names the file, the key
path and what is valid.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import NFBenchError, one_of
from .schema import is_number, known_keys, mapping, number, one_name, typed
from .storage import read_yaml
from .vocab import (
    ARCHITECTURE_FAMILIES,
    ATTACK_METHODS,
    AUTOATTACK_STANDARD,
    DATASETS,
    FRAMES_METHODS,
    LEADERBOARD_SCORES,
    MEMORY_FORMATS,
    ROLES,
    SOURCES,
    TRANSFORMS,
)

PARAMS_FILE = Path("params.yaml")
SUITES_DIR = Path("suites")
SUITE_SECTIONS = ("data", "attack", "perturbations", "generative", "models", "leaderboard")
# leaderboard: how the suite's leaderboard ranks: its primary score (the default sort and the rank column),
# and the clean accuracy an entry needs to be ranked: at least chance (1 / classes) + above_chance, and at
# least the suite's standard models' mean − below_standard (null: no such floor); SUBMITTING.md, "Ranking";
# and the architecture family of the standard models every score is relative to (`scores.is_reference`).
# A preset must have the section (dvc.yaml tracks it); its keys default to these.
LEADERBOARD = {"primary": "augmentation_invariance", "ranked_if": {"above_chance": 0.5, "below_standard": None},
               "reference": "convolutional"}
GLOBAL_SECTIONS = ("suite", "device", "checkpoints", "frames", "tracking", "executor")
CHECKPOINTS = ("published", "train")    # local models: install the published checkpoint, or retrain here
EXECUTORS = ("local", "ray")            # where tasks run: this process, or a Ray cluster (benchmark/executor.py)
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")   # no dots: ids are DVC param key paths
# model keys that describe the model rather than configure its source or recipe
MODEL_META = ("role", "source", "eps", "reference", "display_name", "augmentations", "published", "group",
              "architecture", "frames_method")
_SOURCE_KEYS = {
    "robustbench": {"name": str, "dataset": str, "threat_model": str, "sha256": str},
    "torchvision": {"arch": str, "weights": str, "sha256": str},
    "timm": {"name": str, "sha256": str},
    "file": {"entry_point": str, "checkpoint": str, "sha256": str, "url": str,
             "mean": list, "std": list, "layers": list},
}
_REQUIRED = {"robustbench": ("name", "dataset", "threat_model"), "torchvision": ("arch", "weights"),
             "timm": ("name",), "file": ("entry_point", "checkpoint", "sha256")}


def suite_names(suites_dir: Path = SUITES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(suites_dir).glob("*.yaml"))


def load_suite(name: str, suites_dir: Path = SUITES_DIR) -> dict:
    path = Path(suites_dir) / f"{name}.yaml"
    if not path.is_file():
        raise NFBenchError(f"{one_of(name, suite_names(suites_dir), 'suite')} (presets live in {suites_dir}/)")
    suite = read_yaml(path) or {}
    if not isinstance(suite, Mapping):
        raise NFBenchError(f"{path}: must be a mapping of {', '.join(SUITE_SECTIONS)}")
    known_keys(suite, (*SUITE_SECTIONS, "description"), str(path), "section")
    return dict(suite)


def load_params(path: str | Path = PARAMS_FILE, suites_dir: Path = SUITES_DIR) -> dict:
    raw = read_yaml(path)
    return validate_params(raw, str(path), suites_dir)


def validate_params(raw: Any, where: str = "params.yaml", suites_dir: Path = SUITES_DIR) -> dict:
    """Check every section of params.yaml; return it with defaults filled in."""
    from .perturbations import validate_spec

    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping of {', '.join(GLOBAL_SECTIONS + SUITE_SECTIONS)}")
    known_keys(raw, GLOBAL_SECTIONS + SUITE_SECTIONS, where, "section")
    for key in ("suite", *SUITE_SECTIONS):
        if key not in raw:
            raise NFBenchError(f"{where}: missing section {key!r}")
    p = dict(raw)
    if p["suite"] not in suite_names(suites_dir):
        raise NFBenchError(f"{where}: suite: {one_of(str(p['suite']), suite_names(suites_dir), 'suite')}")
    p["device"] = _device(p.get("device", "auto"), f"{where}: device")
    p["checkpoints"] = p.get("checkpoints", "published")
    if p["checkpoints"] not in CHECKPOINTS:
        raise NFBenchError(f"{where}: checkpoints: {one_of(str(p['checkpoints']), CHECKPOINTS, 'setting')} "
                           f"(published: install the suite's published checkpoints; train: retrain here)")

    p["executor"] = p.get("executor", "local")
    if p["executor"] not in EXECUTORS:
        raise NFBenchError(f"{where}: executor: must be local (this process) or ray (a Ray cluster), "
                           f"got {p['executor']!r}")

    data = _data_section(p, where, suites_dir)

    _attack_section(p, where)
    _leaderboard_section(p, where)

    frames = _section(p, "frames", where, {"layers": object, "chunk_size": int, "method": str, "fd_step": float,
                                            "memory_format": str},
                      {"layers": "auto", "chunk_size": 512, "method": "jvp", "fd_step": 1e-3, "memory_format": "auto"})
    number(frames["chunk_size"], f"{where}: frames.chunk_size", 0, open_low=True, integer=True, valid="positive")
    for key, valid in (("method", FRAMES_METHODS), ("memory_format", MEMORY_FORMATS)):
        if frames[key] not in valid:
            raise NFBenchError(f"{where}: frames.{key}: {one_of(str(frames[key]), valid, key.replace('_', ' '))}")
    _layers_setting(frames["layers"], f"{where}: frames.layers")

    p["tracking"] = _section(p, "tracking", where, {"uri": str, "experiment": str},
                             {"uri": None, "experiment": None})

    channels = 3 if data["dataset"] in ("cifar10", "imagenet") else 1
    p["perturbations"] = validate_spec(p["perturbations"], f"{where}: perturbations", channels)

    p["generative"] = _models(p["generative"], f"{where}: generative", generative=True)
    if "generative" in p["perturbations"]:
        wanted = p["perturbations"]["generative"]["model"]
        if wanted not in p["generative"]:
            raise NFBenchError(f"{where}: perturbations.generative.model: "
                               f"{one_of(wanted, p['generative'], 'generative model')}")
    p["models"], p["model_groups"] = _model_groups(p["models"], f"{where}: models")
    clash = set(p["models"]) & set(p["generative"])
    if clash:
        raise NFBenchError(f"{where}: id {sorted(clash)[0]!r} is used by a model and a generative model")
    return p


def _data_section(p: dict, where: str, suites_dir: Path) -> dict:
    """params.yaml `data`, checked against the suite it belongs to."""
    data = _section(p, "data", where, {"dataset": str, "root": str, "eval_points": int, "seed": int, "md5": dict},
                    {"root": "data/raw", "seed": 0, "md5": None})
    if data["dataset"] not in DATASETS:
        raise NFBenchError(f"{where}: data.dataset: {one_of(data['dataset'], DATASETS, 'dataset')}")
    _md5_table(data, f"{where}: data.md5")
    preset_dataset = (load_suite(p["suite"], suites_dir).get("data") or {}).get("dataset")
    if preset_dataset not in (None, data["dataset"]):   # e.g. `dvc exp run -S suite=…` alone
        raise NFBenchError(f"{where}: suite: {p['suite']!r} is a {preset_dataset} suite but data.dataset is "
                           f"{data['dataset']!r}; switch suites with `nfbench suite use {p['suite']}`, "
                           f"which copies all of the suite's sections")
    number(data["eval_points"], f"{where}: data.eval_points", 0, open_low=True, integer=True, valid="positive")
    return data


def _section(p: dict, name: str, where: str, types: dict[str, type], defaults: dict) -> dict:
    value = p.get(name) or {}
    if not isinstance(value, Mapping):
        raise NFBenchError(f"{where}: {name}: must be a mapping of {', '.join(types)}")
    known_keys(value, types, f"{where}: {name}")
    out = {**defaults, **value}
    for key, kind in types.items():
        if key not in out:
            raise NFBenchError(f"{where}: {name}.{key}: missing")
        typed(out[key], kind, f"{where}: {name}.{key}", allow_none=key in defaults and defaults[key] is None)
    p[name] = out
    return out


def _attack_section(p: dict, where: str) -> None:
    """attack: the robust accuracies' attack (method pgd: steps, step_size; autoattack: version
    `standard` or a subset of its attacks, iterations null for AutoAttack's own) and L∞ radius."""
    attack = _section(p, "attack", where, {"method": str, "eps": float, "steps": int, "step_size": float,
                                           "version": object, "iterations": int},
                      {"method": "pgd", "steps": 10, "step_size": None, "version": "standard", "iterations": None})
    if attack["method"] not in ATTACK_METHODS:
        raise NFBenchError(f"{where}: attack.method: {one_of(attack['method'], ATTACK_METHODS, 'attack')}")
    number(attack["eps"], f"{where}: attack.eps", 0, valid="non-negative")
    number(attack["steps"], f"{where}: attack.steps", 0, open_low=True, integer=True, valid="positive")
    if attack["step_size"] is not None:
        number(attack["step_size"], f"{where}: attack.step_size", 0, open_low=True, valid="positive")
    if attack["iterations"] is not None:
        number(attack["iterations"], f"{where}: attack.iterations", 0, open_low=True, integer=True, valid="positive")
    version = attack["version"]
    names = [version] if isinstance(version, str) and version != "standard" else version
    if version != "standard" and (not isinstance(names, list) or not names or len(set(names)) < len(names)
                                  or not set(names) <= set(AUTOATTACK_STANDARD)):
        raise NFBenchError(f"{where}: attack.version: must be 'standard' or a list of distinct attacks of its "
                           f"({', '.join(AUTOATTACK_STANDARD)}), got {version!r}")
    attack["version"] = version if version == "standard" else list(names)


def _leaderboard_section(p: dict, where: str) -> None:
    """leaderboard: the primary score and the clean-accuracy floors of ranking (`LEADERBOARD`)."""
    value = mapping(p["leaderboard"] or {}, f"{where}: leaderboard", "a mapping of primary, ranked_if")
    known_keys(value, LEADERBOARD, f"{where}: leaderboard", at_key=True)
    out = {**LEADERBOARD, **value}
    one_name(out["primary"], LEADERBOARD_SCORES, f"{where}: leaderboard.primary", "score")
    floors = mapping(out["ranked_if"], f"{where}: leaderboard.ranked_if", "a mapping of above_chance, below_standard")
    known_keys(floors, LEADERBOARD["ranked_if"], f"{where}: leaderboard.ranked_if", at_key=True)
    out["ranked_if"] = {**LEADERBOARD["ranked_if"], **floors}
    if out["reference"] is not None:
        one_name(out["reference"], ARCHITECTURE_FAMILIES, f"{where}: leaderboard.reference", "architecture family")
    for key, margin in out["ranked_if"].items():
        if margin is not None or key == "above_chance":
            number(margin, f"{where}: leaderboard.ranked_if.{key}", 0, 1, valid="a clean-accuracy margin in [0, 1]")
    p["leaderboard"] = out


def _md5_table(data: dict, where: str) -> None:
    """data.md5 (optional): the md5 of each file of a re-packed CIFAR-10, checked in place of
    torchvision's table of the original files (the check itself always runs)."""
    table = data.pop("md5")
    if table is None:
        return
    if data["dataset"] != "cifar10":
        raise NFBenchError(f"{where}: only for dataset cifar10, whose files torchvision checks by md5")
    for name, digest in table.items():
        if name not in CIFAR10_FILES:
            raise NFBenchError(f"{where}: {one_of(str(name), CIFAR10_FILES, 'CIFAR-10 file')}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{32}", digest):
            raise NFBenchError(f"{where}.{name}: must be 32 lowercase hex digits (an md5), got {digest!r}")
    data["md5"] = dict(table)


CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")


def _device(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
        raise NFBenchError(f"{where}: must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


def _layers_setting(value: Any, where: str) -> None:
    """`auto`, `all`, a list of names, or a mapping architecture -> one of those."""
    def one(v, w):
        if v in ("auto", "all"):
            return
        if not isinstance(v, list) or not v or not all(isinstance(n, str) for n in v):
            raise NFBenchError(f"{w}: must be auto, all or a non-empty list of layer names, got {v!r}")

    if isinstance(value, Mapping):
        for arch, v in value.items():
            one(v, f"{where}.{arch}")
    else:
        one(value, where)


def _models(models: Any, where: str, generative: bool) -> dict:
    if not isinstance(models, Mapping) or not models:
        raise NFBenchError(f"{where}: must be a non-empty mapping of model id -> model spec")
    return {str(mid): validate_model(mid, spec, f"{where}.{mid}", generative) for mid, spec in models.items()}


def _model_groups(models: Any, where: str) -> tuple[dict, dict[str, list[str]]]:
    """(every model's spec, entry id -> the ids of its models): an entry with `seeds` is a group
    of models `<id>-s<seed>`, one per seed; any other entry is one model of its own id."""
    if not isinstance(models, Mapping) or not models:
        raise NFBenchError(f"{where}: must be a non-empty mapping of model id -> model spec")
    specs: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    for entry, spec in models.items():
        entry = str(entry)
        if not (isinstance(spec, Mapping) and "seeds" in spec):
            specs[entry] = validate_model(entry, spec, f"{where}.{entry}")
            groups[entry] = [entry]
            continue
        at = f"{where}.{entry}"
        seeds = spec["seeds"]
        if spec.get("source") != "local":
            raise NFBenchError(f"{at}.seeds: only local models (trained here by a recipe) have seeds")
        if "seed" in spec:
            raise NFBenchError(f"{at}: give seed (one model) or seeds (one model per seed), not both")
        if not isinstance(seeds, list) or not seeds or len(set(map(repr, seeds))) != len(seeds) or any(
                not is_number(s, 0, integer=True) for s in seeds):
            raise NFBenchError(f"{at}.seeds: must be a non-empty list of distinct non-negative integers, got {seeds!r}")
        published = _group_published(spec.get("published"), f"{at}.published")
        base = {k: v for k, v in spec.items() if k not in ("seeds", "published")}
        groups[entry] = []
        for seed in seeds:
            member = f"{entry}-s{seed}"
            record = ({"published": {"checkpoint": f"{published['dir']}/{member}.safetensors",
                                     "sha256": published["sha256"][seed]}}
                      if seed in published.get("sha256", {}) else {})
            specs[member] = {**validate_model(member, {**base, "seed": seed, **record}, at), "group": entry}
            groups[entry].append(member)
    clash = [m for m in specs if m in groups and groups[m] != [m]]
    if clash:
        raise NFBenchError(f"{where}: id {clash[0]!r} is both an entry and a model of the entry with seeds")
    return specs, groups


def _group_published(value: Any, where: str) -> dict:
    """`published: {dir, sha256: {seed: hex}}` of an entry with seeds, checked; {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or set(value) != {"dir", "sha256"} or not isinstance(value["sha256"], Mapping):
        raise NFBenchError(f"{where}: must be {{dir: <folder>, sha256: {{<seed>: <64 hex digits>, …}}}} for an "
                           f"entry with seeds, got {value!r}")
    typed(value["dir"], str, f"{where}.dir")
    for seed, digest in value["sha256"].items():
        if not is_number(seed, integer=True):
            raise NFBenchError(f"{where}.sha256: keys must be the seeds (integers), got {seed!r}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise NFBenchError(f"{where}.sha256.{seed}: must be 64 lowercase hex digits")
    return {"dir": value["dir"].rstrip("/"), "sha256": dict(value["sha256"])}


def validate_model(model_id: Any, spec: Any, where: str, generative: bool = False) -> dict:
    """One model entry: role, source and the source's own fields (a local recipe, a RobustBench name, …)."""
    from .recipes import validate_recipe, validate_vae

    if not isinstance(model_id, str) or not MODEL_ID.match(model_id):
        raise NFBenchError(f"{where}: model ids may use letters, digits, '_' and '-' "
                           f"(ids are DVC parameter keys; got {model_id!r})")
    if not isinstance(spec, Mapping):
        raise NFBenchError(f"{where}: must be a mapping with role and source")
    spec = dict(spec)
    if generative:   # a VAE trained here, or a pretrained autoencoder from a file
        source = spec.get("source", "local")
        if source == "file":
            return {"source": "file", **_source_fields("file", {k: v for k, v in spec.items() if k != "source"},
                                                        where, allowed_meta=())}
        if source != "local":
            raise NFBenchError(f"{where}.source: generative models are local (a VAE trained here) or file")
        recipe = {k: v for k, v in spec.items() if k not in ("source", "published")}
        return {"source": "local", **validate_vae(recipe, where), **_published(spec, where)}
    for key in ("role", "source"):
        if key not in spec:
            raise NFBenchError(f"{where}: missing {key!r}")
    if spec["role"] not in ROLES:
        raise NFBenchError(f"{where}.role: {one_of(str(spec['role']), ROLES, 'role')}")
    if spec["source"] not in SOURCES:
        raise NFBenchError(f"{where}.source: {one_of(str(spec['source']), SOURCES, 'source')}")
    if "eps" in spec:
        number(spec["eps"], f"{where}.eps")
    if "frames_method" in spec and spec["frames_method"] not in FRAMES_METHODS:
        raise NFBenchError(f"{where}.frames_method: {one_of(str(spec['frames_method']), FRAMES_METHODS, 'method')} "
                           f"(fd: central differences, for a model whose operators lack forward-mode AD)")
    if "architecture" in spec and spec["architecture"] not in ARCHITECTURE_FAMILIES:   # for a class layouts.py lacks
        raise NFBenchError(f"{where}.architecture: "
                           f"{one_of(str(spec['architecture']), ARCHITECTURE_FAMILIES, 'family')}")
    if "reference" in spec and not isinstance(spec["reference"], Mapping):
        raise NFBenchError(f"{where}.reference: must map clean_acc/robust_acc to published values")
    meta = {k: spec[k] for k in MODEL_META if k in spec}
    rest = {k: v for k, v in spec.items() if k not in MODEL_META}
    if spec["source"] == "local":
        recipe = validate_recipe(recipe_of(spec), where)
        meta["eps"] = float(recipe["eps"]) if recipe["recipe"] == "adversarial" else float(meta.get("eps", 0.0))
        return {**meta, **recipe, **_published(spec, where)}
    if "published" in spec:
        raise NFBenchError(f"{where}.published: only local models have published checkpoints "
                           f"(source {spec['source']} pins its file with sha256)")
    if "augmentations" in meta:
        for name in meta["augmentations"]:
            if name not in TRANSFORMS:
                raise NFBenchError(f"{where}.augmentations: {one_of(str(name), TRANSFORMS, 'augmentation')}")
    meta.setdefault("eps", 0.0)
    return {**meta, **_source_fields(spec["source"], rest, where, allowed_meta=MODEL_META)}


def _published(spec: Mapping, where: str) -> dict:
    """`published: {checkpoint, sha256}` of a local model, checked; {} when it has none."""
    if "published" not in spec:
        return {}
    value = spec["published"]
    if not isinstance(value, Mapping) or set(value) != {"checkpoint", "sha256"}:
        raise NFBenchError(f"{where}.published: must be {{checkpoint: <path>, sha256: <64 hex digits>}}, "
                           f"got {value!r}")
    typed(value["checkpoint"], str, f"{where}.published.checkpoint")
    if not isinstance(value["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", value["sha256"]):
        raise NFBenchError(f"{where}.published.sha256: must be 64 lowercase hex digits")
    return {"published": dict(value)}


def recipe_of(spec: Mapping) -> dict:
    """The training recipe inside a local model's spec (its ε is the recipe's for adversarial training)."""
    adversarial = spec.get("recipe") == "adversarial"
    return {k: v for k, v in spec.items() if k not in MODEL_META or (k == "eps" and adversarial)}


def _source_fields(source: str, fields: dict, where: str, allowed_meta) -> dict:
    keys = _SOURCE_KEYS[source]
    for key, value in fields.items():
        if key not in keys:
            raise NFBenchError(f"{where}: {one_of(key, list(keys) + list(allowed_meta), 'key')} for source {source}")
        typed(value, keys[key], f"{where}.{key}")
    for key in _REQUIRED[source]:
        if key not in fields:
            raise NFBenchError(f"{where}: missing {key!r} (source {source} needs {', '.join(_REQUIRED[source])})")
    if "sha256" in fields and not re.fullmatch(r"[0-9a-f]{64}", fields["sha256"]):
        raise NFBenchError(f"{where}.sha256: must be 64 lowercase hex digits")
    return dict(fields)


def layers_for(params: Mapping, spec: Mapping):
    """frames.layers: one setting for all models, or per architecture (`smallcnn: [relu1, …]`)."""
    setting = params["frames"]["layers"]
    if isinstance(setting, Mapping):
        arch = spec.get("arch") or spec.get("name") or spec.get("entry_point")
        return setting.get(arch, setting.get("default", "auto"))
    return setting


def use_suite(name: str, params_path: Path = PARAMS_FILE, suites_dir: Path = SUITES_DIR) -> dict:
    """Copy a suite preset's sections into params.yaml, keeping everything else and all comments.

    The result is validated before it is written (atomically), so a bad preset changes nothing.
    """
    from ruamel.yaml import YAML

    from .storage import write_text

    load_suite(name, suites_dir)                          # exists, parses, known sections
    rt = YAML()
    rt.width = 4096
    preset = rt.load(Path(suites_dir) / f"{name}.yaml")
    for key in SUITE_SECTIONS:
        if key not in preset:
            raise NFBenchError(f"{suites_dir}/{name}.yaml: missing section {key!r}")
    params_path = Path(params_path)
    current = rt.load(params_path) if params_path.is_file() else None
    if current is None:
        current = rt.load("suite: null\n")
    current["suite"] = name
    for key in SUITE_SECTIONS:
        current[key] = preset[key]
    buffer = io.StringIO()
    rt.dump(current, buffer)
    text = buffer.getvalue()
    validated = validate_params(yaml.safe_load(text), f"{suites_dir}/{name}.yaml", suites_dir)
    write_text(params_path, text)
    return validated


def record_published(suite: str, records: Mapping[str, tuple[str, dict]], params_path: Path = PARAMS_FILE,
                     suites_dir: Path = SUITES_DIR) -> dict[Path, str]:
    """The suite preset, and params.yaml when it holds that suite, with published checkpoints
    recorded: records: entry id -> (section `models` or `generative`, {checkpoint, sha256}, or for
    an entry with seeds {dir, sha256: {seed: hex}}, merged into the seeds already recorded).

    Returns path -> new text, validated, for the caller to write (comments and layout kept).
    """
    from ruamel.yaml import YAML

    rt = YAML()
    rt.width = 4096
    params_path = Path(params_path)
    targets = [Path(suites_dir) / f"{suite}.yaml"]
    if params_path.is_file() and (yaml.safe_load(params_path.read_text()) or {}).get("suite") == suite:
        targets.append(params_path)
    texts = {}
    for path in targets:
        doc = rt.load(path)
        for entry_id, (section, record) in records.items():
            if entry_id not in (doc.get(section) or {}):
                raise NFBenchError(f"{path}: {section}: no entry {entry_id!r} to record a published checkpoint for")
            entry = doc[section][entry_id]
            if "dir" in record:                      # an entry with seeds: one file per seed
                previous = entry.get("published") or {}
                shas = ({int(seed): str(digest) for seed, digest in (previous.get("sha256") or {}).items()}
                        if previous.get("dir") == record["dir"] else {})
                shas.update(record["sha256"])
                record = {"dir": record["dir"], "sha256": {seed: shas[seed] for seed in sorted(shas)}}
            entry["published"] = rt.load(yaml.safe_dump(record, default_flow_style=False, sort_keys=False))
            if hasattr(entry, "fa"):                 # one line per hash, not one line per entry
                entry.fa.set_block_style()
        buffer = io.StringIO()
        rt.dump(doc, buffer)
        texts[path] = buffer.getvalue()
    preset = yaml.safe_load(texts[targets[0]])
    validate_params({"suite": suite, **{k: preset[k] for k in SUITE_SECTIONS}}, str(targets[0]), suites_dir)
    if params_path in texts:
        validate_params(yaml.safe_load(texts[params_path]), str(params_path), suites_dir)
    return texts
