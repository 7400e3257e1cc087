"""Format-exact stand-ins for the paper-scale suites' real files (no network here).

Each writer produces files in the exact layout and format the real ones have, with random
content, and returns what a check of them needs (md5s, sha256s).
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_batch: int = 100, test: int = 200, seed: int = 0) -> dict[str, str]:
    """torchvision's `cifar-10-batches-py` under root/cifar10: five training batches, a test batch
    and batches.meta, pickled dicts with uint8 rows of 3072 pixels (R, G, B planes) and labels.
    Returns each file's md5 (for `data.md5`)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test if name == "test_batch" else per_batch
        batch = {"batch_label": name, "labels": [int(v) for v in np.arange(n) % 10],
                 "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": labels, "num_cases_per_batch": per_batch,
                                                        "num_vis": 3072}, protocol=2))
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# RobustBench's checkpoints come in several layouts; `robustbench.utils.load_model` unwraps each.
_ROBUSTBENCH_LAYOUTS = {
    "Standard": "module",                      # {'state_dict': {'module.…': …}}
    "Carmon2019Unlabeled": "module",
    "Engstrom2019Robustness": "no_norm",       # a plain state dict without the mu/sigma buffers
    "Hendrycks2020AugMix_WRN": "no_norm",
    "Rebuffi2021Fixing_70_16_cutmix_extra": "plain",
    "Kireev2021Effectiveness_Gauss50percent": "last_best",   # {'last': …, 'best': …}
}


def write_robustbench(models_root: Path, spec: dict, seed: int = 0) -> Path:
    """The model's real RobustBench architecture with random weights, saved where
    `sources.robustbench.robustbench_path` looks, in the layout its real checkpoint has.  ImageNet checkpoints
    hold the network's weights without RobustBench's normalize → model wrapper, where it has one (RobustBench
    adds the `model.` prefix and the normalization back; Singh et al.'s ConvStem ConvNeXts have none)."""
    import torch

    from benchmark.models.robustbench_compat import zoo_entry
    from benchmark.models.sources.robustbench import robustbench_path

    torch.manual_seed(seed)
    state = zoo_entry(spec["name"], spec["dataset"], spec["threat_model"])["model"]().state_dict()
    if spec["dataset"] == "imagenet":
        layout = "imagenet"
        payload = {k.removeprefix("model."): v for k, v in state.items() if not k.startswith("normalize.")}
    else:
        layout = _ROBUSTBENCH_LAYOUTS.get(spec["name"], "module")
        without_norm = {k: v for k, v in state.items() if k not in ("mu", "sigma")}
        payload = {"module": lambda: {"state_dict": {f"module.{k}": v for k, v in state.items()}},
                   "plain": lambda: state, "no_norm": lambda: without_norm,
                   "last_best": lambda: {"last": without_norm, "best": without_norm}}[layout]()
    path = robustbench_path(spec, models_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def write_torchvision_weights(torch_home: Path, arch: str, weights: str, seed: int = 0) -> str:
    """Random weights of a torchvision architecture in the torch hub cache, under the file name
    torchvision's weights enum downloads to; returns their sha256 (to pin: the name's hash
    prefix is that of the real file)."""
    import torch
    import torchvision

    from benchmark.storage import sha256_file

    entry = torchvision.models.get_model_weights(arch)[weights]
    torch.manual_seed(seed)
    net = torchvision.models.get_model(arch, weights=None, num_classes=len(entry.meta["categories"]))
    path = Path(torch_home) / "hub" / "checkpoints" / Path(entry.url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return sha256_file(path)


def write_imagenet_val(root: Path, wnids: list[str], per_class: int = 2, seed: int = 0) -> None:
    """JPEGs in the ImageFolder layout root/imagenet/val/<wnid>/*.JPEG, in ImageNet's sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for wnid in wnids:
        folder = Path(root) / "imagenet" / "val" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(300 + 10 * i, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"ILSVRC2012_val_{wnid}_{i:05d}.JPEG", quality=90)


AUTOENCODER_MODULE = '''"""A tiny autoencoder for 224×224 pixels: the documented factory of a `file`
generative model."""
import torch
from torch import nn


class TinyAutoencoder(nn.Module):
    def __init__(self, latent_dim: int = 8):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.enc = nn.Linear(3 * 64, latent_dim)
        self.dec = nn.Linear(latent_dim, 3 * 64)
        self.up = nn.Upsample(size=224, mode="bilinear", align_corners=False)

    def encode(self, x):
        return self.enc(self.pool(x).flatten(1))

    def decode(self, z):
        return torch.sigmoid(self.up(self.dec(z).view(-1, 3, 8, 8)))


def imagenet_autoencoder():
    return TinyAutoencoder()
'''


def write_autoencoder(project: Path, module: str, checkpoint: Path, seed: int = 0) -> str:
    """`module`.py in `project` defining `imagenet_autoencoder()`, and its random weights as
    safetensors at `checkpoint`; returns the checkpoint's sha256."""
    import importlib.util

    import torch
    from safetensors.torch import save_file

    from benchmark.storage import sha256_file

    source = Path(project) / f"{module}.py"
    source.write_text(AUTOENCODER_MODULE)
    spec = importlib.util.spec_from_file_location(module, source)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    torch.manual_seed(seed)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_file(loaded.imagenet_autoencoder().state_dict(), str(checkpoint))
    return sha256_file(checkpoint)
