"""params.yaml validation and suite switching: bad input is named by its key path, nothing is written."""

import shutil
from pathlib import Path

import pytest
import yaml

from benchmark.config import load_params, use_suite, validate_params
from benchmark.errors import NFBenchError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of params.yaml and suites/ in a temporary working directory."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "suites", tmp_path / "suites")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def edit(project, change):
    params = yaml.safe_load((project / "params.yaml").read_text())
    change(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def test_committed_params_are_valid_and_filled_with_defaults(project):
    params = load_params()
    assert params["suite"] == "embedded" and params["checkpoints"] == "published"
    assert params["models"]["std-s0"]["recipe"] == "standard"
    assert params["models"]["adv-eps0_3-s1"]["eps"] == 0.3
    assert params["models"]["std-s0"]["eps"] == 0.0
    assert params["perturbations"]["noise"]["count"] == 8


def test_an_entry_with_seeds_is_one_model_per_seed_with_its_published_file(project):
    sha = {0: "a" * 64, 2: "b" * 64}
    edit(project, lambda p: p["models"].update(
        demo={"role": "standard", "source": "local", "recipe": "standard", "epochs": 2, "seeds": [2, 0, 5],
              "published": {"dir": "zoo/x/demo/", "sha256": sha}}))
    params = load_params()
    assert params["model_groups"]["demo"] == ["demo-s2", "demo-s0", "demo-s5"]
    member = params["models"]["demo-s2"]
    assert (member["seed"], member["epochs"], member["group"]) == (2, 2, "demo")
    assert member["published"] == {"checkpoint": "zoo/x/demo/demo-s2.safetensors", "sha256": "b" * 64}
    assert "published" not in params["models"]["demo-s5"]           # no published file: it is trained
    assert params["model_groups"]["std"] == [f"std-s{s}" for s in range(14)]


@pytest.mark.parametrize("entry, message", [
    ({"role": "standard", "source": "local", "seeds": [0, 0]},
     r"models.demo.seeds: must be a non-empty list of distinct"),
    ({"role": "standard", "source": "local", "seeds": [1, -1]}, r"models.demo.seeds: must be a non-empty list"),
    ({"role": "standard", "source": "local", "seeds": [1], "seed": 1}, r"models.demo: give seed .* or seeds"),
    ({"role": "standard", "source": "file", "seeds": [1]}, r"models.demo.seeds: only local models"),
    ({"role": "standard", "source": "local", "seeds": [1], "published": {"checkpoint": "x", "sha256": "a" * 64}},
     r"models.demo.published: must be \{dir: <folder>, sha256: \{<seed>: <64 hex digits>"),
    ({"role": "standard", "source": "local", "seeds": [1], "published": {"dir": "d", "sha256": {1: "xyz"}}},
     r"models.demo.published.sha256.1: must be 64 lowercase hex digits"),
    ({"role": "standard", "source": "local", "seeds": [1], "epoch": 3}, r"models.demo.epoch: unknown parameter"),
])
def test_a_malformed_entry_with_seeds_names_its_key(project, entry, message):
    edit(project, lambda p: p["models"].update(demo=entry))
    with pytest.raises(NFBenchError, match=message):
        load_params()


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(suite="imagenet-xl"), r"params.yaml: suite: unknown suite 'imagenet-xl'"),
    (lambda p: p["perturbations"].update(blur={}), r"params.yaml: perturbations: unknown perturbation family 'blur'"),
    (lambda p: p["perturbations"]["noise"].update(count=-4),
     r"params.yaml: perturbations.noise.count: must be a positive integer"),
    (lambda p: p["models"]["std"].update(epochs=-1), r"params.yaml: models.std.epochs: expected a positive integer"),
    (lambda p: p["models"]["std"].update(role="robust"), r"params.yaml: models.std.role: unknown role 'robust'"),
    (lambda p: p["models"]["std"].update(recipe="mixup"), r"params.yaml: models.std.recipe: unknown recipe 'mixup'"),
    (lambda p: p["models"]["std"].update(frames_method="fdd"),
     r"params.yaml: models.std.frames_method: unknown method 'fdd'"),
    (lambda p: p.update(checkpoints="retrain"), r"params.yaml: checkpoints: unknown setting 'retrain'"),
    (lambda p: p["data"].update(eval_points=0), r"params.yaml: data.eval_points: must be positive"),
    (lambda p: p["data"].update(dataset="svhn"), r"params.yaml: data.dataset: unknown dataset 'svhn'"),
    (lambda p: p.update(device="tpu"), r"params.yaml: device: must be auto, cpu"),
    (lambda p: p["frames"].update(chunk_size=0), r"params.yaml: frames.chunk_size: must be positive"),
    (lambda p: p["frames"].update(memory_format="nhwc"),
     r"params.yaml: frames.memory_format: unknown memory format 'nhwc'; valid: auto, channels_last, contiguous"),
    (lambda p: p["perturbations"]["generative"].update(model="gan"),
     r"perturbations.generative.model: unknown generative model 'gan'"),
    (lambda p: p.update(extra=1), r"params.yaml: unknown section 'extra'"),
    (lambda p: p["leaderboard"].update(primary="speed"), r"params.yaml: leaderboard.primary: unknown score 'speed'"),
    (lambda p: p["leaderboard"]["ranked_if"].update(above_chance=1.5),
     r"params.yaml: leaderboard.ranked_if.above_chance: must be a clean-accuracy margin in \[0, 1\], got 1.5"),
    (lambda p: p["leaderboard"]["ranked_if"].update(above_chance=None),
     r"leaderboard.ranked_if.above_chance: must be a clean-accuracy margin"),
    (lambda p: p["leaderboard"].update(rank_by="x"), r"params.yaml: leaderboard.rank_by: unknown key 'rank_by'"),
    (lambda p: p["leaderboard"].update(reference="recurrent"),
     r"params.yaml: leaderboard.reference: unknown architecture family 'recurrent'; valid: convolutional, "),
    (lambda p: p["models"]["std"].update(architecture="cnn"),
     r"params.yaml: models.std.architecture: unknown family 'cnn'; valid: convolutional, fully-connected, transformer"),
    (lambda p: p.update(suite="robustbench_cifar10"),
     r"params.yaml: suite: 'robustbench_cifar10' is a cifar10 suite but data.dataset is 'mnist5k'; "
     r".*nfbench suite use"),
])
def test_malformed_params_name_the_key_path(project, change, message):
    edit(project, change)
    with pytest.raises(NFBenchError, match=message):
        load_params()


def test_layer_name_not_in_the_model_is_rejected(project):
    from benchmark.models.checks import check_layer_names

    edit(project, lambda p: p["frames"].update(layers={"smallcnn": ["relu1", "relu9"]}))
    with pytest.raises(NFBenchError, match=r"frames.layers: model \S+: unknown layer 'relu9'; did you mean 'relu4'"):
        check_layer_names(load_params())


def test_malformed_yaml_names_the_file_and_line(project):
    (project / "params.yaml").write_text("suite: embedded\nmodels: [unclosed\n")
    with pytest.raises(NFBenchError, match=r"params.yaml: line 3, column 1: malformed YAML"):
        load_params()


def test_switching_suites_keeps_global_settings_and_comments(project):
    edit(project, lambda p: p["frames"].update(chunk_size=64))
    (project / "params.yaml").write_text("# my note\n" + (project / "params.yaml").read_text())
    params = use_suite("robustbench_cifar10")
    text = (project / "params.yaml").read_text()
    assert params["suite"] == "robustbench_cifar10" and params["frames"]["chunk_size"] == 64
    assert text.startswith("# my note") and "Engstrom2019Robustness" in text
    assert params["models"]["Carmon2019Unlabeled"]["reference"]["robust_acc"] == 59.53
    assert params["leaderboard"]["ranked_if"]["below_standard"] is None          # the preset's, not embedded's 0.1
    back = use_suite("embedded")
    assert back["leaderboard"]["ranked_if"] == {"above_chance": 0.5, "below_standard": 0.1}
    assert set(back["model_groups"]) == set(yaml.safe_load((project / "suites/embedded.yaml").read_text())["models"])


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "suites").glob("*.yaml")))
def test_every_committed_suite_can_be_switched_to_and_back(project, name):
    """`nfbench suite use NAME` for each preset (robustbench_imagenet's placeholder sha256 of 64
    zeros once parsed as the integer 0 and refused the switch), and back to the embedded suite."""
    assert use_suite(name)["suite"] == name
    assert use_suite("embedded")["suite"] == "embedded"


def test_accuracies_rerun_when_the_points_or_the_attack_change():
    """The evaluate stage measures on data.eval_points/data.seed under the attack section: DVC must
    rerun it when they change (accuracies once lived in fetch, whose params omitted them)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert {"data", "attack", "models"} <= set(stages["evaluate"]["params"])
    assert stages["evaluate"]["cmd"].startswith("nfbench evaluate ") and "models" in stages["evaluate"]["deps"]


def test_a_bad_suite_leaves_params_untouched(project):
    before = (project / "params.yaml").read_text()
    broken = yaml.safe_load((project / "suites/embedded.yaml").read_text())
    broken["models"]["std"]["role"] = "robust"
    (project / "suites/broken.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(NFBenchError, match="models.std.role"):
        use_suite("broken")
    assert (project / "params.yaml").read_text() == before


def test_file_models_need_an_entry_point_checkpoint_and_sha256(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["mine"] = {"role": "other", "source": "file", "entry_point": "pkg:make"}
    with pytest.raises(NFBenchError, match=r"models.mine: missing 'checkpoint'"):
        validate_params(params)
    params["models"]["mine"].update(checkpoint="m.pt", sha256="abc")
    with pytest.raises(NFBenchError, match=r"models.mine.sha256: must be 64 lowercase hex digits"):
        validate_params(params)


def test_another_suite_s_params_take_its_own_sections_and_these_global_settings(project):
    """`--suite S` (submit, leaderboard, models list): S's preset sections with params.yaml's
    global settings; the validated extras of params.yaml (model_groups) are not passed back in."""
    from benchmark.pipeline import suite_params

    edit(project, lambda p: p["frames"].update(chunk_size=64))
    other = suite_params(load_params(), "robustbench_imagenet")
    assert other["suite"] == "robustbench_imagenet" and other["frames"]["chunk_size"] == 64
    assert other["leaderboard"]["ranked_if"]["above_chance"] == 0.3 and "Standard_R50" in other["models"]
