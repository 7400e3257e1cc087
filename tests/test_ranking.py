"""Ranking on a small suite of trained models (three published standard SmallCNNs): a random-weight
network is listed apart, not ranked; rank ranges and intervals against independent recomputations
from the same replicates and from the statistics files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from benchmark import leaderboard as lb
from benchmark import scores
from benchmark.cli import main
from benchmark.metrics import FrameStatistics
from benchmark.storage import read_json, sha256_file
from tests.conftest import run_suite

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A checkout of three of the embedded suite's standard models (published checkpoints) on 32
    points, after the pipeline: their statistics and suite entries."""
    root = tmp_path_factory.mktemp("ranking")
    shutil.copytree(ROOT / "suites", root / "suites")
    (root / "zoo" / "embedded").mkdir(parents=True)
    shutil.copytree(ROOT / "zoo" / "embedded" / "std", root / "zoo" / "embedded" / "std")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    std = params["models"]["std"]
    std.update(seeds=SEEDS, published={"dir": std["published"]["dir"],
                                       "sha256": {s: std["published"]["sha256"][s] for s in SEEDS}})
    params.update(device="cpu", models={"std": std}, generative={"vae": {"seed": 0}},
                  data={"dataset": "mnist5k", "eval_points": 32, "seed": 0}, attack={"eps": 0.2, "steps": 2},
                  perturbations={"augmentation": {"transforms": ["rotate", "translate_x"]},
                                 "noise": {"count": 4, "seed": 0}})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        run_suite(params)
    return root


@pytest.fixture
def project(suite, tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    shutil.copytree(suite, root)
    monkeypatch.chdir(root)
    return root


def ranked_rows(markdown: str) -> list[str]:
    """The ranked table's rows of reports/leaderboard.md, as written."""
    table = markdown.split("## Not ranked")[0]
    return [line for line in table.splitlines() if re.match(r"\| \d", line)]


def test_a_random_weight_network_is_not_ranked_and_leaves_the_ranked_table_as_it_was(project, capsys):
    before = ranked_rows((project / "reports" / "leaderboard.md").read_text())
    assert [row.split("|")[3].strip(" `") for row in before] and len(before) == len(SEEDS)
    torch.manual_seed(0)
    from benchmark.models.nets import SmallCNN

    checkpoint = project / "checkpoints" / "random-cnn.safetensors"
    checkpoint.parent.mkdir()
    save_file(SmallCNN().state_dict(), str(checkpoint))
    card = {"id": "random-cnn", "display_name": "SmallCNN, untrained", "authors": ["A. Tester"],
            "url": "https://example.org/random", "dataset": "mnist5k",
            "model": {"source": "file", "entry_point": "benchmark.models.nets:SmallCNN",
                      "checkpoint": "checkpoints/random-cnn.safetensors", "sha256": sha256_file(checkpoint)},
            "preprocessing": "none", "training": {"type": "standard"}, "license": "MIT"}
    (project / "submissions" / "random-cnn.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    assert main(["submit", "submissions/random-cnn.yaml"]) == 0
    err = capsys.readouterr().err
    entry = read_json(project / "leaderboard" / "embedded" / "random-cnn.json")
    acc = entry["scores"]["clean_acc"]
    assert acc < 0.6                                            # chance 10 % + the suite's 50 %
    assert "; not ranked: clean accuracy" in err and "less than 50 points above chance (10.0%)" in err
    markdown = (project / "reports" / "leaderboard.md").read_text()
    assert ranked_rows(markdown) == before
    not_ranked = markdown.split("## Not ranked")[1].split("##")[0]
    assert "`random-cnn`" in not_ranked
    assert f"clean accuracy {acc:.1%} is less than 50 points above chance" in not_ranked
    page = (project / "reports" / "leaderboard.html").read_text()
    assert page.index("<h2>Not ranked</h2>") < page.index("random-cnn") and "ranks" in page


def test_rank_ranges_are_the_central_ranks_over_the_same_replicates(suite):
    entries = [read_json(p) for p in sorted((suite / "leaderboard" / "embedded-suite").glob("*.json"))]
    primary = "augmentation_invariance"
    reps = {e["id"]: scores.decode_replicates(e["replicates"][primary]) for e in entries}
    ranges = scores.rank_ranges(reps, "higher")
    ids = list(reps)
    values = np.stack([reps[m][1:] for m in ids])                          # [models, replicates]
    ranks = np.empty_like(values, dtype=int)
    for r in range(values.shape[1]):                                      # rank 1 = highest, ties share the better
        for i in range(len(ids)):
            ranks[i, r] = 1 + int((values[:, r] > values[i, r]).sum())
    for i, m in enumerate(ids):
        ordered = np.sort(ranks[i])
        n = len(ordered)
        assert ranges[m] == (ordered[int(np.floor(0.025 * (n - 1)))], ordered[int(np.ceil(0.975 * (n - 1)))])
    assert any(lo < hi for lo, hi in ranges.values())                     # three seeds are not strictly ordered
    shown = dict((e["id"], text) for text, e in lb.rank(entries, lb.Ranking(primary, primary, 0.1, 0.5))[0])
    assert shown == {m: f"{lo}" if lo == hi else f"{lo}–{hi}" for m, (lo, hi) in ranges.items()}


def test_a_score_interval_agrees_with_an_independent_bootstrap_of_the_statistics_files(suite):
    """noise sensitivity of std-s0 against the three standard models, resampling the points and
    the reference models as the claims do, written here from the per-point values of
    metrics/points/ (Monte Carlo error: the ends agree to a few percent of the width)."""
    stats = {f"std-s{s}": FrameStatistics.load(suite / "metrics" / "points" / f"std-s{s}.safetensors") for s in SEEDS}
    entry = read_json(suite / "leaderboard" / "embedded-suite" / "std-s0.json")

    def noise(st: FrameStatistics) -> np.ndarray:                       # [points] at the penultimate layer
        mask = [f == "noise" for f in st.families]
        return st.sensitivity[st.penultimate][:, mask].double().numpy().mean(1)

    per_point = np.stack([noise(stats[m]) for m in sorted(stats)])        # [3, points]
    rng = np.random.default_rng(7)
    n_points = per_point.shape[1]
    points = rng.integers(0, n_points, size=(20000, n_points))
    models = rng.integers(0, len(SEEDS), size=(20000, len(SEEDS)))
    means = per_point[:, points].mean(2)                                 # [3, R]: each model's point mean
    ratio = means[0] / np.take_along_axis(means.T, models, 1).mean(1)
    low, high = np.quantile(ratio, [0.025, 0.975])
    assert entry["scores"]["noise_suppression"] == pytest.approx(per_point[0].mean() / per_point.mean(1).mean())
    width = high - low
    assert entry["intervals"]["noise_suppression"] == [pytest.approx(low, abs=0.05 * width),
                                                       pytest.approx(high, abs=0.05 * width)]
