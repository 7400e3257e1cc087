"""`nfbench replicate`: the seeds it maps, the workspace it prepares, the one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from benchmark import replicate
from benchmark.cli import main
from benchmark.config import load_params
from benchmark.errors import NFBenchError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A copy of the pipeline files of this repository, as the working directory."""
    for name in replicate.PIPELINE + ("params.yaml",):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "zoo" / "embedded", tmp_path / "zoo" / "embedded",
                    ignore=shutil.ignore_patterns("std", "aug", "adv-*", "noise"))     # the autoencoder is enough
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_suites_seeds_map_onto_new_ones_in_order(checkout):
    params = load_params()
    mapping = replicate.seed_map(params, list(range(100, 114)))
    assert mapping == {s: 100 + s for s in range(14)}


@pytest.mark.parametrize("seeds, message", [
    ([100, 101], r"--seeds: suite embedded's models use 14 seeds \(0, 1, .*13\); give 14 new ones, got 2"),
    (list(range(1, 15)), r"--seeds: 1, 2, .*13 already train the reference models"),
    ([100] * 14, r"--seeds: must be 14 distinct non-negative integers"),
])
def test_bad_seeds_are_one_line_errors(checkout, seeds, message):
    with pytest.raises(NFBenchError, match=message):
        replicate.seed_map(load_params(), seeds)


def test_the_workspace_retrains_every_model_and_keeps_the_protocol(checkout):
    params = load_params()
    workspace = replicate.prepare(params, list(range(100, 114)), tracking_uri="sqlite:///x.db")
    assert workspace == Path(".replicate/seeds-" + "-".join(map(str, range(100, 114))))
    replicated = yaml.safe_load((workspace / "params.yaml").read_text())
    for entry in replicated["models"].values():
        assert "published" not in entry and min(entry["seeds"]) >= 100
    assert replicated["models"]["adv-eps0_2"]["seeds"] == [100, 101, 102, 103, 104, 105]
    original = yaml.safe_load(Path("params.yaml").read_text())
    for section in ("data", "attack", "perturbations", "generative"):          # the protocol, unchanged
        assert replicated[section] == original[section]
    vae = Path(original["generative"]["vae"]["published"]["checkpoint"])
    assert (workspace / vae).read_bytes() == vae.read_bytes()
    assert (workspace / "dvc.yaml").read_bytes() == Path("dvc.yaml").read_bytes()
    assert (workspace / ".dvc").is_dir() and (workspace / "tasks").is_dir()
    assert replicated["tracking"]["experiment"] == "nfbench-embedded-replications"


def test_without_a_reference_the_command_says_how_to_make_one(checkout, capsys):
    code = main(["replicate", "--seeds", *map(str, range(100, 114)), "--reference", "nowhere"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no reference at nowhere/claims.json" in err[0]
