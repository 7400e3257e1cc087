"""Model cards, `submissions/<id>.yaml`: their fields declared once, the validator and the JSON Schema.

`CARD` declares every field (kind, required, what it is; SUBMITTING.md documents them in this
order).  `load_card` checks a card with it and then against the suite (id, dataset, channels,
the local-recipe rules); `card_json_schema` derives the JSON Schema (draft 2020-12) that is
published as submissions/card.schema.json for editors and CI.  The schema holds everything
that does not depend on the suite; the checks only `load_card` makes are listed in its
description.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import MODEL_ID, validate_model
from .errors import NFBenchError, one_of
from .schema import Choice, Field, ListOf, Number, Pattern, Record, String, Text, mapping, sub
from .storage import read_yaml
from .vocab import DATASET_DIMS, DATASETS, ROLES, SOURCES, TRANSFORMS

__all__ = ["Card", "load_card", "card_json_schema", "card_schema_text", "CARD", "CARD_FIELDS", "TRAINING_TYPES",
           "THREAT_MODELS"]

TRAINING_TYPES = ROLES
THREAT_MODELS = ("Linf", "L2")
SCHEMA_FILE = Path("submissions") / "card.schema.json"


@dataclass(frozen=True)
class Model:
    """`model`: a params.yaml model spec without role (`config.validate_model` checks the rest)."""

    def check(self, value: Any, where: str) -> dict:
        model = mapping(value, where, "a mapping with source and the source's fields")
        for key in ("mean", "std"):
            if key in model:
                raise NFBenchError(f"{where}.{key}: give the normalization as preprocessing: {{mean, std}}")
        if "source" not in model:
            raise NFBenchError(f"{where}: missing 'source'")
        Choice(SOURCES, "source").check(model["source"], f"{where}.source")
        return model

    def json(self) -> dict:
        return {"type": "object", "required": ["source"],
                "properties": {"source": Choice(SOURCES).json(), "mean": False, "std": False}}


# the details each training type may declare (besides type and free-text details), and must
TRAINING_DETAILS = {"augmentations": ListOf(Choice(TRANSFORMS, "frame transform"), "a list of frame transforms"),
                    "threat_model": Choice(THREAT_MODELS, "threat model"), "eps": Number(0), "sigma": Number(0)}
_ALLOWED = {"standard": (), "augmentation": ("augmentations",), "adversarial": ("threat_model", "eps"),
            "noise": ("sigma",), "other": ("augmentations", "threat_model", "eps", "sigma")}
_REQUIRED = {"augmentation": ("augmentations",), "adversarial": ("threat_model", "eps")}


@dataclass(frozen=True)
class Training:
    """`training`: {type, details?, and the type's details}; a local model's details are its recipe."""

    def check(self, value: Any, where: str, local: bool = False) -> dict:
        training = mapping(value, where, f"a mapping with type ({', '.join(TRAINING_TYPES)})")
        kind = training.get("type")
        if kind is None:
            raise NFBenchError(f"{where}.type: missing (one of {', '.join(TRAINING_TYPES)})")
        Choice(TRAINING_TYPES, "training type").check(kind, f"{where}.type")
        allowed = ("type", "details") + (() if local else _ALLOWED[kind])
        for key in training:
            if key not in allowed:
                if local and key in TRAINING_DETAILS:
                    raise NFBenchError(f"{where}.{key}: a local model's training is its recipe; set it under model")
                raise NFBenchError(f"{where}.{key}: {one_of(str(key), allowed, f'field for training type {kind}')}")
        if "details" in training:
            String().check(training["details"], f"{where}.details")
        if local:
            return training
        for key in _REQUIRED.get(kind, ()):
            if key not in training:
                raise NFBenchError(f"{where}.{key}: missing (training type {kind} declares "
                                   f"{' and '.join(_REQUIRED[kind])})")
        for key, detail in TRAINING_DETAILS.items():
            if key in training:
                detail.check(training[key], f"{where}.{key}")
        return training

    def json(self) -> dict:
        return {"type": "object", "required": ["type"],
                "properties": {"type": Choice(TRAINING_TYPES).json(), "details": String().json(),
                               **{key: kind.json() for key, kind in TRAINING_DETAILS.items()}}}

    @staticmethod
    def rules() -> dict:
        """The card-level JSON Schema of the rules above: which details a type allows and needs
        (all but type and details under model.source local)."""
        def only(keys, required=()) -> dict:
            training = {"propertyNames": {"enum": ["type", "details", *keys]}}
            return {"properties": {"training": {**training, **({"required": list(required)} if required else {})}}}

        by_type = [{"if": {"properties": {"training": {"properties": {"type": {"const": kind}}, "required": ["type"]}},
                           "required": ["training"]},
                    "then": only(keys, _REQUIRED.get(kind, ()))} for kind, keys in _ALLOWED.items()]
        return {"if": {"properties": {"model": {"properties": {"source": {"const": "local"}}, "required": ["source"]}},
                       "required": ["model"]},
                "then": only(()), "else": {"allOf": by_type}}


@dataclass(frozen=True)
class Preprocessing:
    """`preprocessing`: none, or {mean, std} with one value per channel (source file only)."""

    stats: Record = Record({"mean": Field(ListOf(Number(), "a list of numbers, one per channel", 1), True),
                            "std": Field(ListOf(Number(1e-12), "a list of numbers, one per channel", 1), True)},
                           "none or {mean: [...], std: [...]} with one value per channel", what="key")

    def check(self, value: Any, where: str, channels: int | None = None) -> dict:
        """{} for none; else {mean, std} as floats; with `channels`, one value per channel."""
        if value == "none":
            return {}
        stats = self.stats.check_keys(value, where)
        for key, values in stats.items():
            if channels is not None and (not isinstance(values, list) or len(values) != channels):
                raise NFBenchError(f"{where}.{key}: must be a list of {channels} number(s), one per channel, "
                                   f"got {values!r}")
            self.stats.fields[key].kind.check(values, f"{where}.{key}")
        return {key: [float(v) for v in stats[key]] for key in ("mean", "std")}

    def json(self) -> dict:
        return {"oneOf": [{"const": "none"}, self.stats.json()]}


_SUITE_CHECKS = ("the id equals the file name and is not a model id of the suite; dataset is the suite's; "
                 "preprocessing has one value per channel of the suite's data; a local model's training.type "
                 "equals its model.recipe; the model's own fields are checked as params.yaml's are")
_REPORTED = {"clean_acc": Field(Number(0, 1), doc="published clean accuracy, a fraction"),
             "robust_acc": Field(Number(0, 1), doc="published robust accuracy, a fraction"),
             "eps": Field(Number(0), doc="the radius robust_acc was measured at"),
             "note": Field(String(), doc="how the published numbers were measured")}
CARD = Record({
    "id": Field(Pattern(MODEL_ID.pattern, "letters, digits, '_' and '-' (starting with a letter or digit)"), True,
                "the entry's id: equal to the file name, not a model id of the suite"),
    "display_name": Field(Text(), True, "the leaderboard's model column"),
    "authors": Field(ListOf(Text(), "a non-empty list of names", 1, whole=True), True, "non-empty list of names"),
    "paper": Field(Text(), doc="the model column links to paper, else url"),
    "url": Field(Text(), doc="the model column links to paper, else url"),
    "dataset": Field(Choice(DATASETS, "dataset"), True, "the suite's dataset (mnist5k for the embedded suite)"),
    "model": Field(Model(), True, "where the model comes from: source and the source's fields, as in params.yaml "
                                  "models: (without role: that is training.type)"),
    "preprocessing": Field(Preprocessing(), True, "none when the network takes [0, 1] pixels; {mean, std}, one "
                                                  "value per channel, for source file only"),
    "training": Field(Training(), True, "type, free-text details, and the type's details"),
    "reported": Field(Record(_REPORTED, f"a mapping of {', '.join(_REPORTED)}"), doc="your published numbers"),
    "license": Field(Text(), True, "the checkpoint's licence, e.g. MIT"),
}, "a mapping of the card's fields", extra={"allOf": [
    Training.rules(),
    {"if": {"properties": {"preprocessing": {"type": "object"}}, "required": ["preprocessing"]},
     "then": {"properties": {"model": {"properties": {"source": {"const": "file"}}}}}}]})
CARD_FIELDS = {key: f.required for key, f in CARD.fields.items()}     # field -> required?


@dataclass(frozen=True)
class Card:
    """A validated model card: the card as written and the model spec it defines.

    spec is a params.yaml model entry (`config.validate_model`'s form): role = training type,
    the source's own fields, display name, ε and trained augmentations.
    """

    path: Path
    id: str
    raw: dict
    spec: dict


def load_card(path: str | Path, params: Mapping) -> Card:
    """Read and check a model card against `CARD` and the suite; errors name the card file and field."""
    path = Path(path)
    raw = read_yaml(path)
    where = str(path)
    if not isinstance(raw, Mapping):
        raise NFBenchError(f"{where}: must be a mapping of {', '.join(CARD.fields)}")
    CARD.check_keys(raw, where)
    model = CARD.fields["model"].kind.check(raw["model"], f"{where}: model")
    local = model["source"] == "local"
    channels = DATASET_DIMS[params["data"]["dataset"]][0]
    for key, value in raw.items():              # each field by its declared kind, in the card's order
        kind, at = CARD.fields[key].kind, sub(where, key)
        if key == "training":
            training = kind.check(value, at, local=local)
        elif key == "preprocessing":
            normalization = kind.check(value, at, channels)
        elif key != "model":
            kind.check(value, at)
    _against_suite(raw, path, params)
    if local and model.get("recipe", "standard") != training["type"]:
        raise NFBenchError(f"{where}: training.type: {training['type']!r}, but model.recipe is "
                           f"{model.get('recipe', 'standard')!r} (a local model's training type is its recipe)")
    if raw["preprocessing"] != "none" and model["source"] != "file":
        raise NFBenchError(f"{where}: preprocessing: source {model['source']} models normalize inside; "
                           f"use none (mean/std are for source file)")
    spec = {**model, **normalization, "role": training["type"], "display_name": raw["display_name"]}
    if not local:
        spec.update({k: training[k] for k in ("eps", "augmentations") if k in training})
    return Card(path, raw["id"], dict(raw), validate_model(raw["id"], spec, f"{where}: model"))


def _against_suite(raw: Mapping, path: Path, params: Mapping) -> None:
    """The card's id and dataset, against its file name and the suite it is submitted to."""
    card_id = raw["id"]
    if card_id != path.stem:
        raise NFBenchError(f"{path}: id: {card_id!r} must match the file name ({path.stem}.yaml)")
    if card_id in params["models"] or card_id in params["generative"]:
        raise NFBenchError(f"{path}: id: {card_id!r} is a model of suite {params['suite']}; choose another id")
    if raw["dataset"] != params["data"]["dataset"]:
        raise NFBenchError(f"{path}: dataset: {raw['dataset']!r}, but suite {params['suite']} evaluates on "
                           f"{params['data']['dataset']!r}")


def card_json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a model card, derived from `CARD`: submissions/card.schema.json."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "nfbench model card",
            "description": "A model card, submissions/<id>.yaml (SUBMITTING.md).  Generated from benchmark/cards.py "
                           "by `nfbench leaderboard schema`; do not edit.  `nfbench submit` also checks what "
                           f"depends on the suite: {_SUITE_CHECKS}.",
            **CARD.json()}


def card_schema_text() -> str:
    """`card_json_schema` as committed in submissions/card.schema.json: indented, keys in declared order."""
    return json.dumps(card_json_schema(), indent=2, ensure_ascii=False) + "\n"
