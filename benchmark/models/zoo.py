"""The model zoo: obtain (train, download or import) a model once, then load it verified.

Models live in the store (`store.py`: `models/<id>/` = model.safetensors + manifest.json).
A local model is trained here by a recipe (`training.py`), deterministic on one CPU type; a
suite may publish the checkpoint instead (`published.py`).  Any other is acquired from its
source (`sources/`: robustbench, torchvision, timm, file) and checked (`checks.py`) on two of
the suite's images before it is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import NFBenchError
from ..executor import resolve_device
from ..recipes import architecture
from . import sources, store
from .checkpoints import load_into
from .checks import check_autoencoder, check_classifier
from .store import MODELS_DIR, model_dir, read_manifest, verify_sha256


def install_state(model_id: str, root: Path, state: Mapping[str, torch.Tensor], manifest: dict) -> dict:
    """`store.install` with the state dict as the checkpoint: safetensors (tensors only, so loading
    can never run code); returns the manifest as written."""
    from safetensors.torch import save_file

    return store.install(model_id, root, lambda dest: save_file(
        {k: v.detach().cpu().contiguous() for k, v in state.items()}, str(dest)), manifest)


def load(model_id: str, spec: Mapping, root: Path = MODELS_DIR) -> nn.Module:
    """The fetched model, verified against its manifest, in eval mode, taking [0,1] pixels."""
    manifest = read_manifest(model_id, root)
    if manifest is None:
        raise NFBenchError(f"model {model_id!r} has not been fetched ({model_dir(model_id, root)} is missing); "
                           f"run `nfbench fetch {model_id}`")
    checkpoint = model_dir(model_id, root) / manifest["checkpoint"]
    verify_sha256(checkpoint, manifest["sha256"], f"model {model_id!r}")
    from safetensors.torch import load_file

    net = sources.build_architecture(spec, manifest["architecture"])
    return load_into(net, load_file(str(checkpoint)), f"model {model_id!r}")


def train(spec: Mapping, params: Mapping, *, generative: bool = False, progress: bool = True,
          data=None) -> tuple[bytes, dict]:
    """Train a local model by its recipe: (its checkpoint as safetensors bytes, whose metadata
    records the recipe (`published.file_metadata`, so the file can be published as it is), and
    its manifest fields); `data`: the suite's dataset, loaded here when None."""
    from safetensors.torch import save

    from ..data import load_suite_dataset
    from . import published
    from .training import train_classifier, train_vae

    data = data or load_suite_dataset(params["data"])
    recipe = published.recipe(spec, generative)
    if generative:   # the protocol's autoencoder: on the suite's device (hours on a CPU at CIFAR-10 scale)
        net, stats = train_vae(data, recipe, progress=progress, device=resolve_device(params["device"]))
    else:            # the embedded classifiers: on the CPU, the one place their recipe is bit-identical
        net, stats = train_classifier(data, recipe, progress=progress)
    arch = architecture(recipe, (*data.image_shape[:2], data.num_classes))
    checkpoint = save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                      metadata=published.file_metadata(recipe, arch))
    # which kernels trained it: training is bit-identical only on one CPU type
    training = {**stats, "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    return checkpoint, {"source": "local", "role": "generative" if generative else spec["role"], "spec": dict(spec),
                        "architecture": arch, "data_hash": data.content_hash, "training": training}


def obtain(model_id: str, spec: Mapping, params: Mapping, *, root: Path = MODELS_DIR,
           generative: bool = False, progress: bool = True, what: str | None = None,
           downloads: Path | None = None) -> dict:
    """Make `<root>/<id>/` by training (local), downloading or importing the model; its manifest.

    Downloaded and imported models are acquired before the dataset is touched, so a missing
    checkpoint is reported at once; then they are checked on two of the suite's images.
    `what` starts every error message (default `model '<id>'`); `downloads` is where source
    checkpoints are downloaded to or placed by the user (`sources.acquire`), by default `root`.
    """
    from ..data import load_suite_dataset

    if spec["source"] == "local":
        checkpoint, manifest = train(spec, params, generative=generative, progress=progress)
        return store.install(model_id, root, lambda dest: dest.write_bytes(checkpoint), manifest)
    what = what or f"model {model_id!r}"
    net, source_info, arch = sources.acquire(spec, downloads or root, what)
    data = load_suite_dataset(params["data"])
    (check_autoencoder if generative else check_classifier)(net, data, what)
    manifest = {"source": spec["source"], "role": "generative" if generative else spec["role"],
                "spec": dict(spec), "architecture": arch, "data_hash": data.content_hash, **source_info}
    return install_state(model_id, root, net.state_dict(), manifest)
