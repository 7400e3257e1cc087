"""The model zoo offline: RobustBench and torchvision checkpoints placed by hand, integrity checks, errors."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from benchmark.errors import NFBenchError
from benchmark.models import checks, sources, store, zoo
from benchmark.models.sources.file import entry_point
from benchmark.models.sources.robustbench import robustbench_path
from benchmark.storage import sha256_file

ROOT = Path(__file__).resolve().parents[1]
RB_SPEC = {"role": "adversarial", "source": "robustbench", "name": "Ding2020MMA", "dataset": "cifar10",
           "threat_model": "Linf", "eps": 8 / 255}


class RunsCode:
    """Unpickling this object would create `marker`: a checkpoint that carries code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def robustbench_architecture():
    from benchmark.models.robustbench_compat import zoo_entry

    torch.manual_seed(0)
    return zoo_entry("Ding2020MMA", "cifar10", "Linf")["model"]().eval()


def test_robustbench_without_pkg_resources_is_a_one_line_error_naming_the_fix(monkeypatch):
    import importlib.util

    from benchmark.models import robustbench_compat

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pkg_resources" else real_find_spec(name, *a))
    with pytest.raises(NFBenchError, match=r"pkg_resources.*setuptools<81"):
        robustbench_compat.import_robustbench()


def test_a_robustbench_checkpoint_placed_at_its_path_loads_offline(tmp_path):
    reference = robustbench_architecture()                     # the real WRN-28-4, random weights
    path = robustbench_path(RB_SPEC, tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    net, info, arch = sources.acquire(RB_SPEC, tmp_path, "model 'Ding2020MMA'")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), reference(x))
    assert info["source_checkpoint"]["sha256"] == sha256_file(path)
    assert path == tmp_path / "robustbench" / "cifar10" / "Linf" / "Ding2020MMA.pt"

    # installed as safetensors + manifest, then loaded back verified
    manifest = zoo.install_state("mma", tmp_path, net.state_dict(),
                                 {"source": "robustbench", "role": "adversarial", "spec": RB_SPEC, "architecture": arch,
                                  **info})
    loaded = zoo.load("mma", RB_SPEC, tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert store.status("mma", tmp_path) == "present" and len(manifest["sha256"]) == 64
    # the source checkpoint replaced by other weights: the installed model is stale, not present
    torch.save({"state_dict": robustbench_architecture().state_dict() | {"fc.bias": torch.ones(10)}}, path)
    assert store.status("mma", tmp_path) == "stale"


def test_a_robustbench_download_prints_nothing_on_stdout(tmp_path, monkeypatch, capfd):
    """RobustBench announces each download with print(): the CLI's stdout stays clean."""
    from benchmark.models.robustbench_compat import import_robustbench

    reference = robustbench_architecture()
    rb = import_robustbench()
    monkeypatch.setattr(rb.utils.gdown, "download",
                        lambda id, output: torch.save({"state_dict": reference.state_dict()}, output))
    net, info, _ = sources.acquire(RB_SPEC, tmp_path, "model 'Ding2020MMA'")
    out, _err = capfd.readouterr()
    assert out == "" and robustbench_path(RB_SPEC, tmp_path).is_file()
    assert info["source_checkpoint"]["url"].startswith("https://drive.google.com/uc?id=")


def test_a_robustbench_checkpoint_with_code_in_it_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "code-ran"
    path = robustbench_path(RB_SPEC, tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "extra": RunsCode(marker)}, path)
    with pytest.raises(NFBenchError, match="holds pickled objects other than tensors"):
        sources.acquire(RB_SPEC, tmp_path, "model 'Ding2020MMA'")
    assert not marker.exists()


def _dm_wide_resnets():
    """RobustBench's DMWideResNet (the Rebuffi2021 WRN-70-16's architecture) at depth 10, width 1,
    with its Swish and with nn.SiLU, the same weights."""
    from benchmark.models import robustbench_compat

    robustbench_compat.import_robustbench()
    from robustbench.model_zoo.architectures.dm_wide_resnet import DMWideResNet, Swish

    torch.manual_seed(0)
    swish = DMWideResNet(depth=10, width=1, activation_fn=Swish).eval()
    silu = DMWideResNet(depth=10, width=1, activation_fn=torch.nn.SiLU).eval()
    silu.load_state_dict(swish.state_dict())
    return swish, silu


def test_an_old_style_autograd_function_is_one_line_naming_the_module_and_both_remedies():
    from benchmark.frames import compute_frames

    swish, _ = _dm_wide_resnets()
    x, frame = torch.rand(2, 3, 32, 32), torch.randn(2, 3, 3, 32, 32)
    with pytest.raises(NFBenchError) as info:
        compute_frames(swish, x, frame, "auto")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("layer.0.block.0.relu_0 (Swish -> _Swish) and 6 more runs a custom "
                              "torch.autograd.Function without forward-mode AD")
    assert "frames_method: fd" in message and "--fallback finite-difference" in message


def test_robustbench_swish_is_swapped_for_silu_and_the_frames_stay_exact():
    from benchmark.frames import compute_frames

    swish, silu = _dm_wide_resnets()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = swish(x)
    swapped = checks.forward_ad_ready(swish, "model 'wrn'")
    assert len(swapped) == 7 and swapped[0] == "layer.0.block.0.relu_0"
    assert not any(type(m).__name__ == "Swish" for m in swish.modules())
    with torch.no_grad():
        assert torch.allclose(swish(x), before, rtol=1e-6, atol=1e-6)
    frame = torch.randn(2, 3, 3, 32, 32)
    got, want = compute_frames(swish, x, frame, "auto"), compute_frames(silu, x, frame, "auto")
    assert got.layers == want.layers and torch.allclose(got.grams, want.grams, rtol=1e-10, atol=0)
    assert checks.forward_ad_ready(swish, "model 'wrn'") == []                    # nothing left to swap


def test_source_checkpoints_are_kept_where_the_caller_says_not_where_the_model_installs(tmp_path, monkeypatch):
    """`leaderboard verify` installs into a temporary directory but must find (or download once)
    a RobustBench checkpoint in models/submissions/robustbench/, not in that directory."""
    from benchmark.models import Wanted, fetch

    seen = []

    def acquire(spec, root, what):
        seen.append(root)
        raise NFBenchError(f"{what}: stop here")

    monkeypatch.setattr(sources, "acquire", acquire)
    wanted = Wanted("mma", RB_SPEC, tmp_path / "scratch", downloads=tmp_path / "kept")
    with pytest.raises(NFBenchError, match="model 'mma': stop here"):
        list(fetch([wanted], {"checkpoints": "published"}))
    with pytest.raises(NFBenchError):
        list(fetch([Wanted("mma", RB_SPEC, tmp_path / "scratch")], {"checkpoints": "published"}))
    assert seen == [tmp_path / "kept", tmp_path / "scratch"]


def test_an_html_page_at_the_checkpoint_path_is_named_as_such(tmp_path):
    path = robustbench_path(RB_SPEC, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head></html>")
    with pytest.raises(NFBenchError, match=r"model 'Ding2020MMA': .*Ding2020MMA\.pt is an HTML page .* not a "
                                           r"checkpoint; replace it with the real file and rerun$"):
        sources.acquire(RB_SPEC, tmp_path, "model 'Ding2020MMA'")


def test_a_hand_placed_robustbench_checkpoint_with_the_wrong_sha256_is_refused_and_stays_put(tmp_path):
    """Offline users put the file where nfbench looks; a pinned sha256 that does not match refuses
    it, but the file is theirs, so it is not renamed aside as a download would be."""
    path = robustbench_path(RB_SPEC, tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}}, path)
    before = path.read_bytes()
    with pytest.raises(NFBenchError, match=r"model 'Ding2020MMA': sha256 of .* expected 1{64}; refused$"):
        sources.acquire({**RB_SPEC, "sha256": "1" * 64}, tmp_path, "model 'Ding2020MMA'")
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == [path.name]


def test_missing_checkpoint_without_network_fails_fast_naming_model_path_and_source(tmp_path):
    """Through the CLI, as a user would hit it; the sandbox has no route to Google Drive."""
    shutil.copytree(ROOT / "suites", tmp_path / "suites")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}   # no network, for sure
    subprocess.run([sys.executable, "-m", "benchmark.cli", "suite", "use", "robustbench_cifar10"],
                   cwd=tmp_path, check=True, capture_output=True, env=env)
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "benchmark.cli", "fetch", "Carmon2019Unlabeled", "--no-track"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.monotonic() - start
    assert run.returncode == 2 and elapsed < 30
    message = run.stderr.strip().splitlines()[-1]
    assert "model 'Carmon2019Unlabeled'" in message
    assert "models/robustbench/cifar10/Linf/Carmon2019Unlabeled.pt" in message
    assert "drive.google.com" in message
    assert not any((tmp_path / "models").rglob("*.pt")) and not any((tmp_path / "models").rglob("*.part"))


@pytest.mark.slow
def test_the_sources_stage_records_each_source_checkpoint_and_sees_it_replaced(tmp_path):
    """What each fetch stage depends on: a replaced file changes its entry's record; a missing one
    (offline) fails naming it, and the records already written stay as they were."""
    shutil.copytree(ROOT / "suites", tmp_path / "suites")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    nfbench = [sys.executable, "-m", "benchmark.cli"]
    subprocess.run([*nfbench, "suite", "use", "robustbench_cifar10"], cwd=tmp_path, check=True, env=env,
                   capture_output=True)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["models"] = {"mma": RB_SPEC, "mma-again": {**RB_SPEC, "eps": 4 / 255}}    # one file, two entries
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    path = robustbench_path(RB_SPEC, tmp_path / "models")
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": robustbench_architecture().state_dict()}, path)

    def recorded():
        subprocess.run([*nfbench, "sources"], cwd=tmp_path, check=True, env=env, capture_output=True)
        return {p.name: json.loads(p.read_text()) for p in (tmp_path / "models" / ".sources").iterdir()}

    first = recorded()
    assert first["mma.json"] == {"mma": {"source": "robustbench", "path": str(path.relative_to(tmp_path)),
                                  "sha256": sha256_file(path)}}
    assert first["vae-cifar10.json"] == {"vae-cifar10": {"source": "local"}}
    assert recorded() == first                                    # unchanged file: the same records
    torch.save({"state_dict": robustbench_architecture().state_dict() | {"fc.bias": torch.ones(10)}}, path)
    second = recorded()
    assert second["mma.json"]["mma"]["sha256"] == second["mma-again.json"]["mma-again"]["sha256"] == sha256_file(path)
    assert second["mma.json"] != first["mma.json"] and second["vae-cifar10.json"] == first["vae-cifar10.json"]

    params["models"]["other"] = {**RB_SPEC, "name": "Carmon2019Unlabeled"}    # not on disk, no network
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed = subprocess.run([*nfbench, "sources"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and "model 'other'" in failed.stderr.strip().splitlines()[-1]
    assert "Carmon2019Unlabeled.pt" in failed.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in (tmp_path / "models" / ".sources").iterdir()) == sorted(second)


def test_torchvision_weights_in_the_hub_cache_load_offline(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.get_model_weights("resnet18")["IMAGENET1K_V1"]
    hub = tmp_path / "hub" / "checkpoints" / Path(weights.url).name
    hub.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), hub)
    spec = {"role": "standard", "source": "torchvision", "arch": "resnet18", "weights": "IMAGENET1K_V1"}
    placed = hub.read_bytes()
    with pytest.raises(NFBenchError, match="refused"):          # not torchvision's file: hash prefix differs
        sources.acquire(spec, tmp_path, "model 'r18'")
    assert hub.read_bytes() == placed and not list(hub.parent.glob("*.rejected-*"))   # not ours to move
    net, info, _ = sources.acquire({**spec, "sha256": sha256_file(hub)}, tmp_path, "model 'r18'")
    assert "layer4" in dict(net.named_children())
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(net.pixel_mean, torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
    assert net(x).shape == (1, 1000)


def test_installed_checkpoint_that_changed_is_refused_and_kept_aside(tmp_path):
    net = torch.nn.Linear(3, 2)
    spec = {"role": "other", "source": "file", "entry_point": "torch.nn:Identity", "checkpoint": "x",
            "sha256": "0" * 64}
    zoo.install_state("m", tmp_path, net.state_dict(), {"source": "file", "spec": spec, "architecture": {}})
    checkpoint = tmp_path / "m" / store.CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(NFBenchError, match=r"model 'm': sha256 of .* expected .*; refused; the file is kept as"):
        zoo.load("m", spec, tmp_path)
    assert not checkpoint.exists() and list(checkpoint.parent.glob("model.safetensors.rejected-*"))


def test_a_users_own_checkpoint_with_the_wrong_hash_is_refused_but_not_moved(tmp_path):
    path = tmp_path / "mine.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    spec = {"role": "other", "source": "file", "entry_point": "torch.nn:Identity", "checkpoint": str(path),
            "sha256": "1" * 64}
    with pytest.raises(NFBenchError, match="refused"):
        sources.acquire(spec, tmp_path, "model 'mine'")
    assert path.exists()


def test_a_users_damaged_safetensors_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"\x10" + bytes(7) + b'{"w": broken}   ')
    spec = {"role": "other", "source": "file", "entry_point": "torch.nn:Identity", "checkpoint": str(path),
            "sha256": sha256_file(path)}
    with pytest.raises(NFBenchError, match=r"^model 'mine'\.checkpoint: .*mine\.safetensors is not a readable "
                                           r"safetensors file \(.*header.*\)$"):
        sources.acquire(spec, tmp_path, "model 'mine'")
    assert path.exists()


@pytest.mark.parametrize("entry, message", [
    ("no_such_module_xyz:make", r"cannot import no_such_module_xyz \(ModuleNotFoundError"),
    ("torch.nn:NoSuchNet", r"module torch.nn has no callable 'NoSuchNet'"),
    ("torch.nn.Linear", r"expected 'package.module:factory'"),
])
def test_bad_entry_points_are_one_line_errors(entry, message):
    with pytest.raises(NFBenchError, match=message):
        entry_point(entry)


def test_a_file_model_with_the_wrong_number_of_classes_is_refused():
    from benchmark.data import load_dataset

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 7))
    with pytest.raises(NFBenchError, match=r"maps a batch of 2 mnist5k images to \(2, 7\); "
                                           r"expected logits of shape \(2, 10\)"):
        checks.check_output_shape(net, load_dataset("mnist5k"), "model 'seven'")


def test_unknown_model_id_suggests_close_ids():
    run = subprocess.run([sys.executable, "-m", "benchmark.cli", "fetch", "std-s14"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "unknown model id 'std-s14'; did you mean" in run.stderr
    assert "'std-s4'" in run.stderr and "'std-s1'" in run.stderr and run.stderr.count("\n") == 1


def test_a_download_that_returns_an_html_page_leaves_nothing_behind(tmp_path):
    dest = tmp_path / "ckpt.pt"
    with pytest.raises(NFBenchError, match=r"HTML page.*put the file at"):
        store.download("https://example.invalid/x", dest, "model 'x'",
                     fetcher=lambda out: Path(out).write_text("<!DOCTYPE html><html>quota exceeded</html>"))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Published checkpoints

TINY_SUITE = {
    "description": "one tiny local model",
    "data": {"dataset": "mnist5k", "eval_points": 8, "seed": 0},
    "attack": {"eps": 0.2, "steps": 1},
    "leaderboard": {"primary": "noise_suppression"},
    "perturbations": {"noise": {"count": 2, "seed": 0}},
    "generative": {"vae": {"epochs": 1, "latent_dim": 4}},
    "models": {"m": {"role": "standard", "source": "local", "recipe": "standard", "seed": 3, "epochs": 1,
                     "width": 2, "batch_size": 256},
               "g": {"role": "noise", "source": "local", "recipe": "noise", "seeds": [5, 6], "epochs": 1,
                     "width": 2, "batch_size": 256}},
}


def nfbench(project: Path, *args: str, check_torch_free: bool = False) -> subprocess.CompletedProcess:
    """`nfbench ARGS` in a subprocess; with check_torch_free, fail if the command imported torch."""
    code = "import sys; from benchmark.cli import main; rc = main(sys.argv[1:]); " + \
           ("assert 'torch' not in sys.modules, 'torch was imported'; " if check_torch_free else "") + "sys.exit(rc)"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=project, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": ""})


@pytest.fixture(scope="module")
def published_project(tmp_path_factory):
    """A checkout whose local models and autoencoder were trained and published (zoo/tiny/)."""
    import yaml

    project = tmp_path_factory.mktemp("published")
    (project / "suites").mkdir()
    (project / "suites" / "tiny.yaml").write_text(yaml.safe_dump(TINY_SUITE, sort_keys=False))
    (project / "params.yaml").write_text("# global settings\nsuite: tiny\n")
    assert nfbench(project, "suite", "use", "tiny").returncode == 0
    trained = nfbench(project, "fetch", "m", "g", "vae", "--no-track")
    assert trained.returncode == 0 and trained.stderr.count("trained here") == 4, trained.stderr
    published = nfbench(project, "publish", "m", "g", "vae")
    assert published.returncode == 0, published.stderr
    return project


def test_publishing_records_the_file_and_its_sha256_keeping_comments(published_project):
    import yaml

    zoo_file = published_project / "zoo" / "tiny" / "m.safetensors"
    installed = published_project / "models" / "m" / "model.safetensors"
    assert zoo_file.read_bytes() == installed.read_bytes()
    for path in (published_project / "suites" / "tiny.yaml", published_project / "params.yaml"):
        spec = yaml.safe_load(path.read_text())["models"]["m"]
        assert spec["published"] == {"checkpoint": "zoo/tiny/m.safetensors", "sha256": sha256_file(zoo_file)}
    assert (published_project / "params.yaml").read_text().startswith("# global settings")
    # an entry with seeds: one file per seed, their hashes by seed
    group = yaml.safe_load((published_project / "params.yaml").read_text())["models"]["g"]["published"]
    assert group["dir"] == "zoo/tiny/g"
    for seed in (5, 6):
        path = published_project / "zoo" / "tiny" / "g" / f"g-s{seed}.safetensors"
        installed = published_project / "models" / "g" / f"g-s{seed}" / "model.safetensors"
        assert path.read_bytes() == installed.read_bytes()
        assert group["sha256"][seed] == sha256_file(path)


def test_a_published_checkpoint_installs_as_a_verified_copy_without_torch(published_project, tmp_path):
    project = tmp_path / "clone"
    shutil.copytree(published_project, project, ignore=shutil.ignore_patterns("models"))
    run = nfbench(project, "fetch", "m", "g", check_torch_free=True)
    assert run.returncode == 0, run.stderr
    assert "published checkpoint zoo/tiny/m.safetensors" in run.stderr and "verified" in run.stderr
    assert "published checkpoint zoo/tiny/g/g-s6.safetensors" in run.stderr and "3 models (3 published)" in run.stderr
    manifest = store.read_manifest("m", project / "models")
    assert manifest["sha256"] == sha256_file(project / "zoo" / "tiny" / "m.safetensors")
    assert store.obtained(manifest) == "published" and store.status("m", project / "models") == "present"
    # the same network as the one trained and published
    reference = zoo.load("m", manifest["spec"], published_project / "models")
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(zoo.load("m", manifest["spec"], project / "models")(x), reference(x))


@pytest.mark.parametrize("model_id, what", [("m", "model 'm'"), ("vae", "generative model 'vae'")])
def test_a_published_checkpoint_with_other_bytes_is_refused_and_nothing_is_installed(published_project, tmp_path,
                                                                                      model_id, what):
    project = tmp_path / "clone"
    shutil.copytree(published_project, project)
    zoo_file = project / "zoo" / "tiny" / f"{model_id}.safetensors"
    data = bytearray(zoo_file.read_bytes())
    data[-1] ^= 0xFF
    zoo_file.write_bytes(bytes(data))
    before = {p: p.read_bytes() for p in (project / "models").rglob("*") if p.is_file()}
    run = nfbench(project, "fetch", model_id)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert re.match(rf"nfbench: error: {what}: published checkpoint zoo/tiny/{model_id}.safetensors has sha256 "
                    r"[0-9a-f]{64}, expected [0-9a-f]{64}; refused \(restore the published file", lines[0]), lines[0]
    assert {p: p.read_bytes() for p in (project / "models").rglob("*") if p.is_file()} == before
    assert not [p for p in (project / "models").iterdir() if p.name.startswith(".")]     # no staging left
    assert zoo_file.read_bytes() == bytes(data)                                          # the repository's file stays


@pytest.mark.parametrize("change, why", [
    ({"models": {"m": {"seed": 4}}}, "its recipe differs from the published checkpoint's in seed"),
    ({"checkpoints": "train"}, "checkpoints: train"),
])
def test_a_model_whose_recipe_is_not_the_published_ones_is_trained(published_project, tmp_path, change, why):
    import yaml

    project = tmp_path / "clone"
    shutil.copytree(published_project, project, ignore=shutil.ignore_patterns("models"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["m"].update(change.get("models", {}).get("m", {}))
    params.update({k: v for k, v in change.items() if k != "models"})
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run = nfbench(project, "fetch", "m", "--no-track")
    assert run.returncode == 0 and "trained here" in run.stderr and why in run.stderr, run.stderr
    assert store.obtained(store.read_manifest("m", project / "models")) == "trained"


def test_only_a_model_trained_here_can_be_published(published_project, tmp_path):
    project = tmp_path / "clone"
    shutil.copytree(published_project, project, ignore=shutil.ignore_patterns("models"))
    assert nfbench(project, "fetch", "m").returncode == 0                     # installs the published file
    run = nfbench(project, "publish", "m")
    assert run.returncode == 2 and "does not hold a model trained here" in run.stderr


def test_the_committed_published_checkpoints_are_the_suites(tmp_path):
    """Every `published` checkpoint a suite names ships with the repository, with its sha256 and the
    recipe it was trained with (what `nfbench fetch` checks)."""
    import json

    from benchmark.config import SUITE_SECTIONS, load_suite, suite_names, validate_params
    from benchmark.models.published import METADATA_KEY, recipe
    from benchmark.storage import safetensors_metadata

    count = 0
    for name in suite_names(ROOT / "suites"):
        preset = load_suite(name, ROOT / "suites")
        params = validate_params({"suite": name, **{k: preset[k] for k in SUITE_SECTIONS}}, name, ROOT / "suites")
        for group in ("generative", "models"):
            for spec in params[group].values():
                if "published" not in spec:
                    continue
                path = ROOT / spec["published"]["checkpoint"]
                assert sha256_file(path) == spec["published"]["sha256"], path
                record = json.loads(safetensors_metadata(path.read_bytes())[METADATA_KEY])
                assert record["recipe"] == recipe(spec, group == "generative"), path
                count += 1
    assert count > 0


def _suite_models():
    from benchmark import config

    for suite in config.suite_names():
        preset = {k: v for k, v in config.load_suite(suite).items() if k != "description"}
        params = config.validate_params({**config.read_yaml(ROOT / "params.yaml"), **preset, "suite": suite})
        for model_id, spec in params["models"].items():
            yield pytest.param(params["data"]["dataset"], spec, id=f"{suite}/{model_id}")


@pytest.mark.slow
@pytest.mark.parametrize("dataset, spec", list(_suite_models()))
def test_every_suite_model_is_observed_at_its_block_outputs_with_pooled_features_as_penultimate(dataset, spec):
    """`layers: auto` on the real architectures (random weights): at least 4 hidden layers, and
    the penultimate layer is a representation before the classifier, not a copy of the logits."""
    from benchmark.frames import compute_frames
    from benchmark.metrics import penultimate_index
    from benchmark.recipes import architecture
    from benchmark.vocab import DATASET_DIMS

    channels, size, classes = DATASET_DIMS[dataset]
    torch.manual_seed(0)
    local = spec["source"] == "local"
    arch = architecture(spec, DATASET_DIMS[dataset]) if local else {"kwargs": {"num_classes": classes}}
    net = sources.build_architecture(spec, arch).eval()
    checks.forward_ad_ready(net, "test")
    x, v = torch.rand(1, channels, size, size), torch.randn(1, 2, channels, size, size)
    result = compute_frames(net, x, v, "auto")
    hidden = result.layers[1:-1]
    assert len(hidden) >= 4, result.layers
    p = penultimate_index(result)
    assert result.dims[p] != classes, result.layers[p]
    assert not torch.allclose(result.grams[p], result.grams[-1]), result.layers[p]
    assert result.layers[p].endswith((":input", "pool", "relu4")), result.layers   # the pooled features
