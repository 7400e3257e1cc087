"""The model zoo offline: RobustBench and torchvision checkpoints placed by hand, integrity checks, errors."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.errors import NFBenchError
from benchmark.models import zoo

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
    path = zoo.robustbench_path(RB_SPEC, tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    net, info, arch = zoo.acquire(RB_SPEC, tmp_path, "model 'Ding2020MMA'")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), reference(x))
    assert info["source_checkpoint"]["sha256"] == zoo.sha256_file(path)
    assert path == tmp_path / "robustbench" / "cifar10" / "Linf" / "Ding2020MMA.pt"

    # installed as safetensors + manifest, then loaded back verified
    manifest = zoo._install("mma", tmp_path, net.state_dict(),
                            {"source": "robustbench", "role": "adversarial", "spec": RB_SPEC, "architecture": arch})
    loaded = zoo.load("mma", RB_SPEC, tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert zoo.status("mma", tmp_path) == "present" and len(manifest["sha256"]) == 64


def test_a_robustbench_checkpoint_with_code_in_it_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "code-ran"
    path = zoo.robustbench_path(RB_SPEC, tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "extra": RunsCode(marker)}, path)
    with pytest.raises(NFBenchError, match="holds pickled objects other than tensors"):
        zoo.acquire(RB_SPEC, tmp_path, "model 'Ding2020MMA'")
    assert not marker.exists()


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


def test_torchvision_weights_in_the_hub_cache_load_offline(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.get_model_weights("resnet18")["IMAGENET1K_V1"]
    hub = tmp_path / "hub" / "checkpoints" / Path(weights.url).name
    hub.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), hub)
    spec = {"role": "standard", "source": "torchvision", "arch": "resnet18", "weights": "IMAGENET1K_V1"}
    with pytest.raises(NFBenchError, match="refused"):          # not torchvision's file: hash prefix differs
        zoo.acquire(spec, tmp_path, "model 'r18'")
    assert list(hub.parent.glob("*.rejected-*"))                  # kept aside for inspection
    torch.save(torchvision.models.resnet18().state_dict(), hub)
    net, info, _ = zoo.acquire({**spec, "sha256": zoo.sha256_file(hub)}, tmp_path, "model 'r18'")
    assert "layer4" in dict(net.named_children())
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(net.pixel_mean, torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
    assert net(x).shape == (1, 1000)


def test_installed_checkpoint_that_changed_is_refused_and_kept_aside(tmp_path):
    net = torch.nn.Linear(3, 2)
    spec = {"role": "other", "source": "file", "entry_point": "torch.nn:Identity", "checkpoint": "x", "sha256": "0" * 64}
    zoo._install("m", tmp_path, net.state_dict(), {"source": "file", "spec": spec, "architecture": {}})
    checkpoint = tmp_path / "m" / zoo.CHECKPOINT
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
        zoo.acquire(spec, tmp_path, "model 'mine'")
    assert path.exists()


@pytest.mark.parametrize("entry, message", [
    ("no_such_module_xyz:make", r"cannot import no_such_module_xyz \(ModuleNotFoundError"),
    ("torch.nn:NoSuchNet", r"module torch.nn has no callable 'NoSuchNet'"),
    ("torch.nn.Linear", r"expected 'package.module:factory'"),
])
def test_bad_entry_points_are_one_line_errors(entry, message):
    with pytest.raises(NFBenchError, match=message):
        zoo.entry_point(entry)


def test_a_file_model_with_the_wrong_number_of_classes_is_refused():
    from benchmark.data import load_dataset

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 7))
    with pytest.raises(NFBenchError, match=r"maps a batch of 2 mnist5k images to \(2, 7\); expected logits of shape \(2, 10\)"):
        zoo.check_output_shape(net, load_dataset("mnist5k"), "model 'seven'")


def test_unknown_model_id_suggests_close_ids():
    run = subprocess.run([sys.executable, "-m", "benchmark.cli", "fetch", "std-s9"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "unknown model id 'std-s9'; did you mean" in run.stderr
    assert "'std-s0'" in run.stderr and "'std-s1'" in run.stderr and run.stderr.count("\n") == 1


def test_a_download_that_returns_an_html_page_leaves_nothing_behind(tmp_path):
    dest = tmp_path / "ckpt.pt"
    with pytest.raises(NFBenchError, match=r"HTML page.*put the file at"):
        zoo.download("https://example.invalid/x", dest, "model 'x'",
                     fetcher=lambda out: Path(out).write_text("<!DOCTYPE html><html>quota exceeded</html>"))
    assert list(tmp_path.iterdir()) == []
