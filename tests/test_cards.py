"""Model cards: the published JSON Schema is the one `cards.py` derives, and the schema and
`load_card` accept and refuse the same cards (so an editor's or CI's check and `nfbench submit`
cannot drift apart)."""

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from benchmark.cards import SCHEMA_FILE, card_json_schema, card_schema_text, load_card
from benchmark.config import load_params
from benchmark.errors import NFBenchError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "submissions").glob("*.yaml"))
VALIDATOR = jsonschema.Draft202012Validator(card_json_schema())


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml", ROOT / "suites")


def test_the_committed_schema_is_the_derived_one():
    assert (ROOT / SCHEMA_FILE).read_text() == card_schema_text(), \
        "regenerate it: nfbench leaderboard schema > submissions/card.schema.json"
    jsonschema.Draft202012Validator.check_schema(card_json_schema())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_card_in_submissions_validates(path, params):
    VALIDATOR.validate(yaml.safe_load(path.read_text()))
    assert load_card(path, params).id == path.stem


BASE = {"id": "card", "display_name": "A card", "authors": ["A. Tester"], "dataset": "mnist5k",
        "model": {"source": "torchvision", "arch": "resnet18", "weights": "IMAGENET1K_V1"},
        "preprocessing": "none", "training": {"type": "standard"}, "license": "MIT"}
FILE_MODEL = {"source": "file", "entry_point": "nets:make", "checkpoint": "c.pt", "sha256": "a" * 64}


def card(**changes) -> dict:
    """BASE with top-level fields replaced (None deletes one)."""
    out = copy.deepcopy(BASE)
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def check_both(tmp_path: Path, params, raw: dict) -> tuple[bool, str | None]:
    """(valid by the JSON Schema, load_card's error or None)."""
    path = tmp_path / f"{raw.get('id', 'card')}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        load_card(path, params)
        error = None
    except NFBenchError as exc:
        error = str(exc)
    return VALIDATOR.is_valid(raw), error


@pytest.mark.parametrize("raw", [
    card(),
    card(paper="https://arxiv.org/abs/1", url="https://example.org", reported={
        "clean_acc": 0.9, "robust_acc": 0, "eps": 0.3, "note": "AutoAttack"}),
    card(model=FILE_MODEL, preprocessing={"mean": [0.1307], "std": [0.3081]}),
    card(training={"type": "adversarial", "threat_model": "L2", "eps": 0.5, "details": "PGD"}),
    card(training={"type": "other", "augmentations": [], "sigma": 0}),
    card(model={"source": "local", "recipe": "noise"}, training={"type": "noise", "details": "σ = 0.3"}),
], ids=["minimal", "every-optional-field", "file-with-normalization", "adversarial", "other", "local"])
def test_both_accept_a_good_card(tmp_path, params, raw):
    assert check_both(tmp_path, params, raw) == (True, None)


@pytest.mark.parametrize("raw, message", [
    (card(license=None), r"license: missing \(required: id, display_name"),
    (card(licence="MIT"), r"unknown field 'licence'; did you mean 'license'"),
    (card(id="bad.id"), r"id: must be letters, digits"),
    (card(authors=[]), r"authors: must be a non-empty list of names"),
    (card(display_name="  "), r"display_name: must be a non-empty string"),
    (card(dataset="svhn"), r"dataset: unknown dataset 'svhn'"),
    (card(training={"type": "robust"}), r"training.type: unknown training type 'robust'"),
    (card(training={"details": "x"}), r"training.type: missing"),
    (card(training={"type": "adversarial", "threat_model": "Linf", "eps": -0.1}),
     r"training.eps: must be a number ≥ 0, got -0.1"),
    (card(training={"type": "adversarial", "threat_model": "Linf", "eps": True}), r"training.eps: must be a number"),
    (card(training={"type": "adversarial", "threat_model": "Linf"}), r"training.eps: missing"),
    (card(training={"type": "adversarial", "threat_model": "Lp", "eps": 1}), r"unknown threat model 'Lp'"),
    (card(training={"type": "augmentation", "augmentations": ["mixup"]}), r"unknown frame transform 'mixup'"),
    (card(training={"type": "standard", "sigma": 0.1}), r"training.sigma: unknown field for training type standard"),
    (card(model={"source": "local", "recipe": "augmentation"},
          training={"type": "augmentation", "augmentations": ["rotate"]}),
     r"training.augmentations: a local model's training is its recipe"),
    (card(model={"arch": "resnet18"}), r"model: missing 'source'"),
    (card(model={"source": "onnx"}), r"model.source: unknown source 'onnx'"),
    (card(model={**FILE_MODEL, "mean": [0.5]}), r"model.mean: give the normalization as preprocessing"),
    (card(preprocessing={"mean": [0.5], "std": [0.5]}), r"preprocessing: source torchvision models normalize"),
    (card(model=FILE_MODEL, preprocessing={"mean": [0.5], "std": [0]}), r"preprocessing.std: must be a number ≥"),
    (card(model=FILE_MODEL, preprocessing={"mean": [0.5], "std": [0.5], "eps": 1}), r"preprocessing: unknown key"),
    (card(model=FILE_MODEL, preprocessing={"mean": [0.5]}), r"preprocessing.std: missing"),
    (card(preprocessing="None"), r"preprocessing: must be none or"),
    (card(reported={"clean_acc": 1.5}), r"reported.clean_acc: must be a number in \[0, 1\], got 1.5"),
    (card(reported={"top1": 0.5}), r"reported: unknown field 'top1'"),
])
def test_both_refuse_a_broken_card(tmp_path, params, raw, message):
    valid, error = check_both(tmp_path, params, raw)
    assert not valid, "the JSON Schema accepts a card load_card refuses"
    assert error is not None and re.search(message, error), error
