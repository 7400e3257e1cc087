"""The model zoo: obtain (train, download or import) a model once, then load it verified.

Models live in the store (`store.py`: `models/<id>/` = model.safetensors + manifest.json).

Sources:
  local        trained here by a recipe (benchmark/models/training.py), deterministic on one CPU
               type; a suite may publish the checkpoint instead (`published.py`)
  robustbench  {name, dataset, threat_model}: RobustBench's checkpoint in
               models/robustbench/<dataset>/<threat_model>/<name>.pt, downloaded if absent
  torchvision  {arch, weights}: torchvision's weights through the torch hub cache
  timm         {name}: `timm.create_model(name, pretrained=True)` (timm's own cache or download);
               its sha256, when pinned, is that of the weights as installed here (model.safetensors)
  file         {entry_point "pkg.module:factory", checkpoint path or url, sha256}

Integrity: downloads go to a temporary name, are checked (not an HTML error page, sha256 when
pinned, loadable with weights_only) and only then renamed into place; a file whose sha256 does
not match is refused and kept beside under `<name>.rejected-<sha>` for inspection.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import layers_for, resolve_device
from ..errors import NFBenchError, one_of
from ..frames import layer_point
from ..recipes import architecture
from ..storage import network_timeout
from ..vocab import DATASET_DIMS
from . import sources, store
from .checks import check_autoencoder, check_classifier
from .layouts import declare_block_outputs
from .store import MODELS_DIR, is_html_page, model_dir, read_manifest, verify_sha256

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# Pixel-space models


def add_pixel_normalization(net: nn.Module, mean, std) -> nn.Module:
    """Make `net` take [0,1] pixels: a forward pre-hook applies (x − mean)/std first.

    A hook rather than a wrapper module keeps the network's own layer names (no `net.`
    prefix) in frames and reports.  The statistics are non-persistent buffers, so the state
    dict stays the network's own.
    """
    net.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
    net.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
    net.register_forward_pre_hook(
        lambda module, args: ((args[0] - module.pixel_mean.to(args[0].dtype)) / module.pixel_std.to(args[0].dtype),
                              *args[1:]))
    return net


# ---------------------------------------------------------------------------------------------
# Files


def safe_torch_load(path: Path, what: str) -> Any:
    """torch.load restricted to tensors and plain containers: a checkpoint cannot run code."""
    import pickle

    if is_html_page(path):       # saved by a browser or an old download: say so, not "pickled objects"
        raise NFBenchError(f"{what}: {path} is an HTML page (a download or quota page saved under the "
                           f"checkpoint's name), not a checkpoint; replace it with the real file and rerun")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        first = next((line for line in lines if "Unsupported global" in line), lines[-1]).split(". ")[0][:160]
        raise NFBenchError(f"{what}: {path} holds pickled objects other than tensors ({first}); "
                           f"refusing to load it — save the state dict (or use safetensors)") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise NFBenchError(f"{what}: {path} is not a readable PyTorch checkpoint ({exc})") from exc


def load_state_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = safe_torch_load(path, what)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NFBenchError(f"{what}: {path} is not a state dict (a mapping of names to tensors)")
    return dict(state)


def install_state(model_id: str, root: Path, state: Mapping[str, torch.Tensor], manifest: dict) -> dict:
    """`store.install` with the state dict as the checkpoint: safetensors (tensors only, so loading
    can never run code); returns the manifest as written."""
    from safetensors.torch import save_file

    return store.install(model_id, root, lambda dest: save_file(
        {k: v.detach().cpu().contiguous() for k, v in state.items()}, str(dest)), manifest)


# ---------------------------------------------------------------------------------------------
# Architectures


def build_architecture(spec: Mapping, arch: Mapping) -> nn.Module:
    """The untrained network of a model, in pixel space (`arch` is the manifest's record)."""
    source = spec["source"]
    if source == "local":
        from .nets import build

        return build(arch["name"], **arch["kwargs"])
    if source == "robustbench":
        from .robustbench_compat import zoo_entry

        return declare_block_outputs(zoo_entry(spec["name"], spec["dataset"], spec["threat_model"])["model"]())
    if source == "torchvision":
        import torchvision

        net = torchvision.models.get_model(spec["arch"], weights=None, **arch.get("kwargs", {}))
        return declare_block_outputs(add_pixel_normalization(net, IMAGENET_MEAN, IMAGENET_STD))
    if source == "timm":
        import timm

        net = timm.create_model(spec["name"], pretrained=False, **arch.get("kwargs", {}))
        return add_pixel_normalization(net, net.pretrained_cfg["mean"], net.pretrained_cfg["std"])
    if source == "file":
        net = entry_point(spec["entry_point"])()
        if not isinstance(net, nn.Module):
            raise NFBenchError(f"entry point {spec['entry_point']} returned {type(net).__name__}, not an nn.Module")
        if "mean" in spec or "std" in spec:
            net = add_pixel_normalization(net, spec.get("mean", [0.0]), spec.get("std", [1.0]))
        if "layers" in spec:
            net.observable_layers = list(spec["layers"])
        return net
    raise NFBenchError(f"unknown source {source!r}")


def entry_point(path: str):
    """`package.module:factory` -> the factory; import problems become one-line errors."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise NFBenchError(f"entry point {path!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code
        raise NFBenchError(f"entry point {path!r}: cannot import {module_name} ({type(exc).__name__}: {exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise NFBenchError(f"entry point {path!r}: module {module_name} has no callable {attr!r}")
    return factory


def _load_into(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            more = " …" if len(result.missing_keys) > 3 else ""
            parts.append(f"missing {', '.join(result.missing_keys[:3])}{more}")
        if result.unexpected_keys:
            parts.append(f"unexpected {', '.join(result.unexpected_keys[:3])}"
                         + (" …" if len(result.unexpected_keys) > 3 else ""))
        raise NFBenchError(f"{what}: the checkpoint does not fit the architecture ({'; '.join(parts)})")
    return net.eval()


def check_layer_names(params: Mapping, where: str = "params.yaml") -> None:
    """Explicit layer names must exist in each model's architecture (built without weights)."""
    dims = DATASET_DIMS[params["data"]["dataset"]]
    for model_id, spec in params["models"].items():
        layers = layers_for(params, spec)
        if layers in ("auto", "all"):
            continue
        arch = architecture(spec, dims) if spec["source"] == "local" else {"kwargs": {"num_classes": dims[2]}}
        names = {n for n, _ in build_architecture(spec, arch).named_modules() if n} | {"input", "logits"}
        for name in layers:
            if layer_point(name)[0] not in names:
                raise NFBenchError(f"{where}: frames.layers: model {model_id}: "
                                   f"{one_of(name, sorted(names), 'layer')}")


def load(model_id: str, spec: Mapping, root: Path = MODELS_DIR) -> nn.Module:
    """The fetched model, verified against its manifest, in eval mode, taking [0,1] pixels."""
    manifest = read_manifest(model_id, root)
    if manifest is None:
        raise NFBenchError(f"model {model_id!r} has not been fetched ({model_dir(model_id, root)} is missing); "
                           f"run `nfbench fetch {model_id}`")
    checkpoint = model_dir(model_id, root) / manifest["checkpoint"]
    verify_sha256(checkpoint, manifest["sha256"], f"model {model_id!r}")
    from safetensors.torch import load_file

    net = build_architecture(spec, manifest["architecture"])
    return _load_into(net, load_file(str(checkpoint)), f"model {model_id!r}")


# ---------------------------------------------------------------------------------------------
# Fetching


def train(spec: Mapping, params: Mapping, *, generative: bool = False, progress: bool = True) -> tuple[bytes, dict]:
    """Train a local model by its recipe: (its checkpoint as safetensors bytes, whose metadata
    records the recipe (`published.file_metadata`, so the file can be published as it is), and
    its manifest fields)."""
    from safetensors.torch import save

    from ..data import load_suite_dataset
    from . import published
    from .training import train_classifier, train_vae

    data = load_suite_dataset(params["data"])
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
    checkpoints are downloaded to or placed by the user (`acquire`), by default `root`.
    """
    from ..data import load_suite_dataset

    if spec["source"] == "local":
        checkpoint, manifest = train(spec, params, generative=generative, progress=progress)
        return store.install(model_id, root, lambda dest: dest.write_bytes(checkpoint), manifest)
    what = what or f"model {model_id!r}"
    net, source_info, arch = acquire(spec, downloads or root, what)
    data = load_suite_dataset(params["data"])
    (check_autoencoder if generative else check_classifier)(net, data, what)
    manifest = {"source": spec["source"], "role": "generative" if generative else spec["role"],
                "spec": dict(spec), "architecture": arch, "data_hash": data.content_hash, **source_info}
    return install_state(model_id, root, net.state_dict(), manifest)


def acquire(spec: Mapping, root: Path, what: str) -> tuple[nn.Module, dict, dict]:
    """Download or import a non-local model and verify it: (network, source record, architecture record).
    `root` holds downloaded RobustBench checkpoints, `<root>/robustbench/…` (`sources.robustbench_path`)."""
    return {"robustbench": _acquire_robustbench, "torchvision": _acquire_torchvision,
            "timm": _acquire_timm, "file": _acquire_file}[spec["source"]](spec, root, what)


def _acquire_robustbench(spec: Mapping, root: Path, what: str):
    from .robustbench_compat import import_robustbench

    source = sources.source_file(spec, root, what)
    sha = sources.obtain(source, what)
    safe_torch_load(source.path, what)     # refuse pickled code before robustbench unpickles it
    net = import_robustbench().utils.load_model(spec["name"], model_dir=str(Path(root) / "robustbench"),
                                                dataset=spec["dataset"], threat_model=spec["threat_model"])
    info = {"source_checkpoint": {"path": str(source.path), "sha256": sha, "url": source.url}}
    return net.eval(), info, {"name": spec["name"]}


def _acquire_torchvision(spec: Mapping, root: Path, what: str):
    source = sources.source_file(spec, root, what)
    sha = sources.obtain(source, what)
    state = load_state_file(source.path, what)
    classes = len(sources.torchvision_weights(spec, what).meta["categories"])
    net = _load_into(build_architecture(spec, {"kwargs": {"num_classes": classes}}), state, what)
    info = {"source_checkpoint": {"path": str(source.path), "sha256": sha, "url": source.url}}
    return net, info, {"name": spec["arch"], "kwargs": {"num_classes": classes}}


@contextlib.contextmanager
def _hub_offline_unless_reachable(host: str) -> Iterator[None]:
    """Without a route to the Hugging Face hub, read its cache only: huggingface_hub would
    otherwise retry a failing download for most of a minute before giving up."""
    import huggingface_hub.constants as hub

    try:
        socket.create_connection((host, 443), timeout=5).close()
        reachable = True
    except OSError:
        reachable = False
    previous = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = previous or not reachable
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = previous


def _acquire_timm(spec: Mapping, root: Path, what: str):
    import timm

    if not timm.is_model(spec["name"]):
        raise NFBenchError(f"{what}: {one_of(spec['name'], timm.list_models(), 'timm model')}")
    try:
        with network_timeout(), _hub_offline_unless_reachable("huggingface.co"):
            net = timm.create_model(spec["name"], pretrained=True)
    except Exception as exc:   # timm, huggingface_hub and urllib each raise their own types
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise NFBenchError(f"{what}: timm could not load the pretrained weights of {spec['name']} ({reason}); "
                           f"without network they must already be in timm's cache") from exc
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    installed = hashlib.sha256(save(state)).hexdigest()
    if "sha256" in spec and installed != spec["sha256"]:
        raise NFBenchError(f"{what}: the sha256 of {spec['name']}'s weights (as model.safetensors) is "
                           f"{installed}, expected {spec['sha256']}; refused")
    info = {"source_checkpoint": {"timm": spec["name"], "sha256": installed}}
    net = add_pixel_normalization(net, net.pretrained_cfg["mean"], net.pretrained_cfg["std"]).eval()
    return net, info, {"name": spec["name"], "kwargs": {"num_classes": net.num_classes}}


def _acquire_file(spec: Mapping, root: Path, what: str):
    field = f"{what}.{{}}".format                          # errors name the spec key they concern
    try:
        entry_point(spec["entry_point"])                  # fail on a bad entry point before any download
    except NFBenchError as exc:
        raise NFBenchError(f"{field('entry_point')}: {exc}") from exc
    source = sources.source_file(spec, root, what)
    sha = sources.obtain(source, what)
    state = load_state_file(source.path, field("checkpoint"))
    net = _load_into(build_architecture(spec, {}), state, field("checkpoint"))
    info = {"source_checkpoint": {"path": str(source.path), "sha256": sha,
                                  **({"url": source.url} if source.url else {})}}
    return net, info, {"name": spec["entry_point"]}
