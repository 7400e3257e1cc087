"""Leaderboard: scores by hand, model cards, `nfbench submit`, `nfbench leaderboard [verify]`.

The CLI tests run on a miniature suite built once per module (8 points, a 6-vector frame, one
standard `file` model from tests/submission_nets.py), so every bad card is refused in seconds;
the test that trains the example local submission is marked slow.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml

from benchmark import leaderboard as lb
from benchmark.cli import main
from benchmark.scores import BY_LABEL, SCORES
from benchmark.storage import read_json, sha256_file, write_json
from tests.conftest import run_suite

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


# ---------------------------------------------------------------------------------------------
# Verification (the scores themselves: tests/test_scores.py)


def test_verification_tolerances_rounding_for_frames_an_image_for_pgd_exact_for_clean_accuracy():
    from benchmark.regression import ROUNDING

    entry = {"scores": {"augmentation_invariance": 1.0, BY_LABEL: {"rotate": 0.5}, "noise_suppression": 0.5,
                        "on_manifold_retention": None, "rank_retention": 0.6, "clean_acc": 0.9, "robust_acc": 0.25},
             "intervals": {"augmentation_invariance": [0.9, 1.1], BY_LABEL: {"rotate": [0.4, 0.6]},
                           "noise_suppression": [0.4, 0.6], "on_manifold_retention": None,
                           "rank_retention": [0.5, 0.7], "clean_acc": [0.6, 0.98], "robust_acc": None},
             "provenance": {**{k: "x" for k in lb.EXACT_PROVENANCE},
                            "reference": {"families": {"noise": 0.2}, "labels": {"rotate": 0.4}}}}
    near = {**entry, "scores": {**entry["scores"], "augmentation_invariance": 1.0 + 0.9 * ROUNDING["relative"],
                                "robust_acc": 0.25 + 1 / 256}}
    assert lb.compare(entry, near)[0]
    for key, value in (("augmentation_invariance", 1.0 + 1.1 * ROUNDING["relative"]), ("clean_acc", 0.9 + 1e-12),
                       ("robust_acc", 0.25 + 3 / 256), ("on_manifold_retention", 2.0)):
        ok, rows = lb.compare(entry, {**entry, "scores": {**entry["scores"], key: value}})
        assert not ok and [r["value"] for r in rows if r["status"] != "ok"] == [key]
    # the intervals' ends are checked like their scores, the per-tangent ones too
    moved = {**entry["intervals"], BY_LABEL: {"rotate": [0.4, 0.6 * 1.01]}}
    ok, rows = lb.compare(entry, {**entry, "intervals": moved})
    differing = [r["value"] for r in rows if r["status"] != "ok"]
    assert not ok and differing == ["augmentation_invariance[rotate] interval high"]
    ok, rows = lb.compare(entry, {**entry, "provenance": {**entry["provenance"], "checkpoint_sha256": "y"}})
    assert not ok and [r["value"] for r in rows if r["status"] != "ok"] == ["checkpoint_sha256"]
    # the reference is frame values: another CPU's rounding passes, a changed value does not
    for noise, differing in ((0.2 * (1 + 0.9 * ROUNDING["relative"]), []), (0.2 * 1.01, ["reference.families[noise]"])):
        moved = {**entry["provenance"], "reference": {"families": {"noise": noise}, "labels": {"rotate": 0.4}}}
        ok, rows = lb.compare(entry, {**entry, "provenance": moved})
        assert ok == (not differing) and [r["value"] for r in rows if r["status"] != "ok"] == differing


# ---------------------------------------------------------------------------------------------
# A miniature suite to submit to

SUITE = {
    "data": {"dataset": "mnist5k", "eval_points": 8, "seed": 0},
    "attack": {"eps": 0.2, "steps": 3},
    "perturbations": {"augmentation": {"transforms": ["rotate", "translate_x"]}, "noise": {"count": 4, "seed": 0}},
    "generative": {"vae": {"seed": 0}},
}


def save_checkpoint(factory: str, path: Path, seed: int) -> str:
    """A seeded state dict of `submission_nets.<factory>()` at `path`; returns its sha256."""
    import submission_nets

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(getattr(submission_nets, factory)().state_dict(), path)
    return sha256_file(path)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The miniature suite's checkout after its pipeline: points, its model's statistics, suite entries."""
    root = tmp_path_factory.mktemp("suite")
    shutil.copytree(ROOT / "suites", root / "suites")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(TESTS))
        mp.chdir(root)
        sha = save_checkpoint("tiny", root / "checkpoints" / "base-std.pt", seed=0)
        # TinyNet is a class nfbench does not know: its spec declares its family, the reference's
        params.update(SUITE, device="cpu", models={"base-std": {
            "role": "standard", "source": "file", "entry_point": "submission_nets:tiny",
            "checkpoint": "checkpoints/base-std.pt", "sha256": sha, "architecture": "fully-connected"}})
        params["leaderboard"]["reference"] = "fully-connected"
        run_suite(params)
    return root


@pytest.fixture
def project(suite, tmp_path, monkeypatch):
    """A private copy of the miniature suite's checkout, as the working directory."""
    root = tmp_path / "checkout"
    shutil.copytree(suite, root)
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(TESTS))
    return root


def write_card(root: Path, card_id: str, *, factory: str = "tiny", seed: int = 1, model: dict | None = None,
               **fields) -> Path:
    """submissions/<id>.yaml for a submission_nets model (its checkpoint saved beside); `fields`
    replace top-level card fields (None deletes one), `model` updates the model section."""
    checkpoint = Path("checkpoints") / f"{card_id}.pt"
    sha = save_checkpoint(factory, root / checkpoint, seed)
    card = {"id": card_id, "display_name": f"Tiny {card_id}", "authors": ["A. Tester"],
            "url": "https://example.org/tiny", "dataset": "mnist5k",
            "model": {"source": "file", "entry_point": f"submission_nets:{factory}", "checkpoint": str(checkpoint),
                      "sha256": sha, **(model or {})},
            "preprocessing": "none", "training": {"type": "standard"}, "license": "MIT"}
    card.update(fields)
    path = root / "submissions" / f"{card_id}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in card.items() if v is not None}, sort_keys=False))
    return path.relative_to(root)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under leaderboard/ and reports/, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes()
            for d in ("leaderboard", "reports") for p in sorted((root / d).rglob("*")) if p.is_file()}


def refused(root: Path, capsys, argv: list[str], pattern: str) -> str:
    """Run nfbench; assert exit 2, one line on stderr matching `pattern`, leaderboard untouched."""
    before = snapshot(root)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert re.search(pattern, err[0]), err[0]
    assert snapshot(root) == before
    return err[0]


def submitted(capsys, *argv: str) -> None:
    code = main(["submit", *argv])
    err = capsys.readouterr().err
    assert code == 0, err


# ---------------------------------------------------------------------------------------------
# nfbench submit


def test_a_suite_entry_is_its_own_reference(suite):
    entry = read_json(suite / "leaderboard" / "embedded-suite" / "base-std.json")
    assert entry["kind"] == "suite" and entry["provenance"]["reference_models"] == ["base-std"]
    assert entry["scores"]["augmentation_invariance"] == pytest.approx(1.0, rel=1e-12)
    assert entry["scores"]["noise_suppression"] == pytest.approx(1.0, rel=1e-12)
    assert entry["scores"]["on_manifold_retention"] is None            # this suite has no generative directions
    assert "base-std" in (suite / "reports" / "leaderboard.md").read_text()


def test_submit_writes_one_entry_with_scores_and_provenance(project, capsys):
    card = write_card(project, "tiny-a", preprocessing={"mean": [0.1307], "std": [0.3081]},
                      reported={"clean_acc": 0.5, "note": "from the paper"})
    submitted(capsys, str(card))
    entry = read_json(project / "leaderboard" / "embedded" / "tiny-a.json")
    assert entry["kind"] == "submission" and entry["card"]["display_name"] == "Tiny tiny-a"
    assert entry["spec"]["mean"] == [0.1307] and entry["spec"]["std"] == [0.3081]
    assert set(entry["scores"]) == set(entry["intervals"]) == set(SCORES) | {BY_LABEL}
    assert set(entry["scores"][BY_LABEL]) == set(entry["intervals"][BY_LABEL]) == {"rotate", "translate_x"}
    assert list(read_json(project / "leaderboard" / "embedded-suite" / "base-std.json")["provenance"]["reference"]
                ["labels"]) == ["rotate", "translate_x"]
    from benchmark.models import zoo
    from benchmark.pipeline import load_points

    x, y, _, _ = load_points(project / "data" / "points.safetensors")   # its accuracy, recomputed by hand
    net = zoo.load("tiny-a", entry["spec"], project / "models" / "submissions")
    with torch.no_grad():
        assert entry["scores"]["clean_acc"] == (net(x).argmax(1) == y).double().mean().item()
    provenance = entry["provenance"]
    for key in ("code_version", "params_sha256", "dataset_hash", "points_sha256", "checkpoint_sha256",
                "card_sha256", "reference", "reference_models", "date"):
        assert provenance[key], key
    assert provenance["card_file"] == "submissions/tiny-a.yaml"
    assert provenance["points_sha256"] == sha256_file(project / "data" / "points.safetensors")
    assert (project / "models" / "submissions" / "tiny-a" / "model.safetensors").is_file()
    markdown = (project / "reports" / "leaderboard.md").read_text()
    assert "[Tiny tiny-a](https://example.org/tiny)" in markdown and "| submitted |" in markdown


def test_two_submissions_in_a_row_keep_both_entries(project, capsys):
    submitted(capsys, str(write_card(project, "tiny-a", seed=1)))
    first = (project / "leaderboard" / "embedded" / "tiny-a.json").read_bytes()
    # the second one's architecture lives beside the cards, as submissions/card_net.py
    (project / "submissions" / "card_net.py").write_text("from submission_nets import TinyNet as make\n")
    submitted(capsys, str(write_card(project, "tiny-b", seed=2, model={"entry_point": "card_net:make"})))
    assert (project / "leaderboard" / "embedded" / "tiny-a.json").read_bytes() == first
    assert sorted(p.name for p in (project / "leaderboard" / "embedded").iterdir()) == ["tiny-a.json", "tiny-b.json"]
    for page in ("leaderboard.md", "leaderboard.html"):
        text = (project / "reports" / page).read_text()
        assert "tiny-a" in text and "tiny-b" in text and "base-std" in text


def test_a_duplicate_id_is_refused_unless_replaced(project, capsys):
    card = write_card(project, "tiny-a")
    submitted(capsys, str(card))
    refused(project, capsys, ["submit", str(card)],
            r"^nfbench: error: submissions/tiny-a.yaml: id: 'tiny-a' already has an entry .*pass --replace")
    write_card(project, "tiny-a", display_name="Tiny, renamed")
    submitted(capsys, str(card), "--replace")
    assert read_json(project / "leaderboard" / "embedded" / "tiny-a.json")["display_name"] == "Tiny, renamed"


@pytest.mark.parametrize("card_id, changes, pattern", [
    ("no-licence", {"license": None}, r"submissions/no-licence.yaml: license: missing \(required: id, display_name"),
    ("bad-type", {"authors": 5}, r"submissions/bad-type.yaml: authors: must be a non-empty list of names, got 5"),
    ("odd-training", {"training": {"type": "robust"}},
     r"submissions/odd-training.yaml: training.type: unknown training type 'robust'; valid: adversarial, augmentation"),
    ("no-eps", {"training": {"type": "adversarial", "threat_model": "Linf"}},
     r"submissions/no-eps.yaml: training.eps: missing \(training type adversarial declares threat_model and eps\)"),
    ("odd-augmentation", {"training": {"type": "augmentation", "augmentations": ["rotate", "mixup"]}},
     r"submissions/odd-augmentation.yaml: training.augmentations: unknown frame transform 'mixup'"),
    ("wrong-data", {"dataset": "cifar10"}, r"submissions/wrong-data.yaml: dataset: 'cifar10', but suite embedded"),
    ("bad-mean", {"preprocessing": {"mean": [0.5, 0.5, 0.5], "std": [0.5]}},
     r"submissions/bad-mean.yaml: preprocessing.mean: must be a list of 1 number\(s\)"),
    ("base-std", {}, r"submissions/base-std.yaml: id: 'base-std' is a model of suite embedded"),
    ("local-mismatch", {"model": {"source": "local", "recipe": "augmentation"}},
     r"submissions/local-mismatch.yaml: training.type: 'standard', but model.recipe is 'augmentation'"),
])
def test_a_malformed_card_names_its_field(project, capsys, card_id, changes, pattern):
    refused(project, capsys, ["submit", str(write_card(project, card_id, **changes))], pattern)


@pytest.mark.parametrize("factory, model, pattern", [
    ("tiny", {"entry_point": "no_such_module_xyz:tiny"},
     r"model.entry_point: entry point 'no_such_module_xyz:tiny': cannot import no_such_module_xyz"),
    ("tiny", {"sha256": "0" * 64},
     r"model.sha256: sha256 of checkpoints/bad.pt is [0-9a-f]{64}, expected 0{64}; refused"),
    ("seven_classes", {},
     r"model: the model maps a batch of 2 mnist5k images to \(2, 7\); expected logits of shape \(2, 10\)"),
    ("nan_outputs", {}, r"model: the model's logits for 2 mnist5k images contain NaN"),
])
def test_a_bad_model_is_refused_naming_the_field(project, capsys, factory, model, pattern):
    card = write_card(project, "bad", factory=factory, model=model)
    refused(project, capsys, ["submit", str(card)], r"^nfbench: error: submissions/bad.yaml: " + pattern)
    assert not (project / "models" / "submissions" / "bad").exists()


def test_an_unreachable_url_fails_in_seconds(project, capsys):
    card = write_card(project, "far", model={"checkpoint": "checkpoints/absent.pt", "url": "http://127.0.0.1:9/far.pt"})
    start = time.monotonic()
    refused(project, capsys, ["submit", str(card)],
            r"submissions/far.yaml: model.url: the checkpoint is not at checkpoints/absent.pt and downloading it "
            r"from http://127.0.0.1:9/far.pt failed")
    assert time.monotonic() - start < 10
    assert not list((project / "checkpoints").glob("*.part"))


class RunsCode:
    """Unpickling this object would create `marker`: a checkpoint that carries code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_checkpoint_with_code_in_it_is_never_unpickled(project, capsys):
    marker = project / "code-ran"
    card = write_card(project, "evil")
    checkpoint = project / "checkpoints" / "evil.pt"
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, "payload": RunsCode(marker)}, checkpoint)
    raw = yaml.safe_load((project / card).read_text())
    raw["model"]["sha256"] = sha256_file(checkpoint)                  # the hash is right: only the content is bad
    (project / card).write_text(yaml.safe_dump(raw))
    refused(project, capsys, ["submit", str(card)],
            r"submissions/evil.yaml: model.checkpoint: checkpoints/evil.pt holds pickled objects other than tensors")
    assert not marker.exists()


def test_timm_without_network_or_cached_weights_fails_fast(project, capsys, monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(project / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(project / "torch-cache"))
    card = write_card(project, "timm-r18")
    raw = yaml.safe_load((project / card).read_text())
    raw["model"] = {"source": "timm", "name": "resnet18"}
    (project / card).write_text(yaml.safe_dump(raw))
    start = time.monotonic()
    refused(project, capsys, ["submit", str(card)],
            r"submissions/timm-r18.yaml: model: timm could not load the pretrained weights of resnet18 \(.*\); "
            r"without network they must already be in timm's cache")
    assert time.monotonic() - start < 30
    raw["model"]["name"] = "resnet_18"
    (project / card).write_text(yaml.safe_dump(raw))
    refused(project, capsys, ["submit", str(card)], r"model: unknown timm model 'resnet_18'; did you mean 'resnet18'")


def test_a_checkout_that_computes_differently_from_the_suite_entries_is_refused(project, capsys):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["perturbations"]["noise"]["count"] = 5
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    refused(project, capsys, ["submit", str(write_card(project, "tiny-a"))],
            r"this checkout's parameter set \(params.yaml\) is not the one the entries in leaderboard/embedded-suite/")


def test_a_card_outside_submissions_is_refused(project, capsys):
    card = write_card(project, "elsewhere")
    moved = project / "elsewhere.yaml"
    (project / card).rename(moved)
    refused(project, capsys, ["submit", str(moved)], r"model cards live in submissions/")


# ---------------------------------------------------------------------------------------------
# nfbench leaderboard [verify]


def test_verify_reproduces_an_entry_and_catches_a_changed_score(project, capsys):
    submitted(capsys, str(write_card(project, "tiny-a")))
    assert main(["leaderboard", "verify", "tiny-a"]) == 0
    # (6 scores + 2 labels) × (value, interval low, high), 5 provenance, 4 reference
    assert "all 33 values reproduce" in capsys.readouterr().out
    path = project / "leaderboard" / "embedded" / "tiny-a.json"
    entry = read_json(path)
    entry["scores"]["noise_suppression"] *= 1 + 1e-2
    entry["scores"]["clean_acc"] += 0.001
    write_json(path, entry)
    code = main(["leaderboard", "verify", "tiny-a"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "does not reproduce from its card: noise_suppression, clean_acc beyond tolerance" in err[0]


def test_verify_names_unknown_and_suite_ids(project, capsys):
    refused(project, capsys, ["leaderboard", "verify", "tiny-z"], r"unknown submitted entry 'tiny-z'")
    refused(project, capsys, ["leaderboard", "verify", "base-std"], r"'base-std' is a model of suite embedded")


def test_the_leaderboard_renders_from_the_entries_alone(project, capsys):
    submitted(capsys, str(write_card(project, "tiny-a", seed=1)))
    submitted(capsys, str(write_card(project, "tiny-b", seed=2)))
    shutil.rmtree(project / "metrics" / "points")                      # no statistics: entries as committed
    assert main(["leaderboard", "--sort", "robust_acc"]) == 0
    assert "kept (no statistics of the suite here) 1 suite entries, 2 submitted" in capsys.readouterr().err
    entries = [read_json(p) for p in sorted((project / "leaderboard").rglob("*.json"))]
    best_first = sorted(entries, key=lambda e: (-e["scores"]["robust_acc"], e["id"]))
    markdown = (project / "reports" / "leaderboard.md").read_text()
    ranked_part, _, rest = markdown.partition("## Not ranked")
    ranked = [line.split("|")[3].strip(" `") for line in ranked_part.splitlines() if re.match(r"\| \d", line)]
    unranked = [line.split("|")[2].strip(" `") for line in rest.split("##")[0].splitlines()[4:] if line]
    order = [e["id"] for e in best_first]      # untrained tiny nets: near chance, so listed apart, in the same order
    assert sorted(ranked + unranked) == sorted(order)
    assert ranked == [m for m in order if m in ranked] and unranked == [m for m in order if m in unranked]
    page = (project / "reports" / "leaderboard.html").read_text()
    assert page.count("<svg") == len(ranked) and all(f"<code>{m}</code>" in page for m in order)  # profiles: ranked
    assert "<script>" in page and ("<polyline" in page or not ranked)
    assert "src=" not in page and "<link" not in page and "@import" not in page      # nothing external
    refused(project, capsys, ["leaderboard", "--sort", "speed"], r"--sort: unknown score 'speed'")


# ---------------------------------------------------------------------------------------------
# The example submission


@pytest.mark.slow
def test_the_example_submission_reproduces_its_committed_entry(tmp_path, monkeypatch, capsys):
    """submissions/aug-rot45-s0.yaml, trained and scored offline, against leaderboard/embedded/."""
    from benchmark.config import load_params
    from benchmark.pipeline import MODELS, POINTS
    from benchmark.stages import data, fetch

    root = tmp_path / "checkout"
    for name in ("suites", "submissions", "leaderboard", "zoo"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    monkeypatch.chdir(root)
    params = load_params()
    if (ROOT / POINTS).is_file() and (ROOT / MODELS / "vae").is_dir():   # else build them, as a fresh clone would
        shutil.copytree(ROOT / POINTS.parent, root / POINTS.parent, ignore=shutil.ignore_patterns("raw"))
        shutil.copytree(ROOT / MODELS / "vae", root / MODELS / "vae")
    else:
        data.run(params)
        fetch.run(params, ["vae"], track=False)
    start = time.monotonic()
    assert main(["leaderboard", "verify", "aug-rot45-s0"]) == 0, capsys.readouterr().err
    # (6 scores + 7 labels) × (value, interval low, high), 5 provenance, 10 reference
    assert "all 54 values reproduce" in capsys.readouterr().out
    assert time.monotonic() - start < 120
    entry = read_json(root / "leaderboard" / "embedded" / "aug-rot45-s0.json")
    assert entry["role"] == "augmentation" and math.isfinite(entry["scores"]["augmentation_invariance"])
