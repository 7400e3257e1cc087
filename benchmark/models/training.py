"""Local training recipes for the small classifiers and the VAE, and their evaluation.

Deterministic: every random draw (initialisation, shuffling, augmentation, noise, PGD starts)
comes from an explicitly seeded source, and training runs with
`torch.use_deterministic_algorithms(True)`, so the same spec on the same machine gives
bit-identical weights.  Training runs on the CPU.

Recipes (flat keys, as they appear in params.yaml):
  common        arch, seed, epochs, batch_size, lr, width
  standard      —
  augmentation  rotate_deg, translate_px, scale_range: a random rotation in ±rotate_deg,
                translation in ±translate_px (each axis) and isotropic scale in
                [1 − scale_range, 1 + scale_range] (torchvision affine, bilinear), one draw
                per AUGMENT_GROUP = 8 examples of each shuffled batch
  adversarial   eps, steps, step_size: PGD-L∞ adversarial training (Madry et al.) on every
                batch; step_size null means 2.5·eps/steps
  noise         sigma: Gaussian noise of std sigma added to every example, clamped to [0, 1]
VAE: seed, epochs, batch_size, lr, latent_dim, beta.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..attacks import pgd_linf
from ..data import Dataset
from ..errors import NFBenchError, one_of
from .nets import CLASSIFIERS, ConvVAE, build

RECIPES = ("standard", "augmentation", "adversarial", "noise")

# The ε ladder the embedded suite trains adversarial models at; MAIN_EPS is the recipe default.
EPS_LADDER = (0.1, 0.2, 0.3)
MAIN_EPS = 0.2

# Evaluation transforms (fixed): rotations in degrees, shifts (dx, dy) in pixels.
EVAL_ANGLES = (-30.0, -20.0, 20.0, 30.0)
EVAL_SHIFTS = ((3, 0), (-3, 0), (0, 3), (0, -3))
EVAL_BATCH_PIXELS = 2 ** 21   # evaluation batch: at most 500 images, fewer when they are large

_COMMON = {"arch": "smallcnn", "seed": 0, "epochs": 8, "batch_size": 64, "lr": 1e-2, "width": 8}
_EXTRA = {
    "standard": {},
    "augmentation": {"rotate_deg": 30.0, "translate_px": 3.0, "scale_range": 0.1},
    "adversarial": {"eps": MAIN_EPS, "steps": 3, "step_size": None},
    "noise": {"sigma": 0.3},
}
_VAE = {"seed": 0, "epochs": 12, "batch_size": 64, "lr": 5e-3, "latent_dim": 12, "beta": 1.0}

# key -> (kind, description of the valid values)
_KINDS = {
    "arch": ("arch", None),
    "seed": ("int>=0", "a non-negative integer"),
    "epochs": ("int>=1", "a positive integer"),
    "batch_size": ("int>=1", "a positive integer"),
    "width": ("int>=1", "a positive integer"),
    "steps": ("int>=1", "a positive integer"),
    "latent_dim": ("int>=1", "a positive integer"),
    "lr": ("float>0", "a positive number"),
    "rotate_deg": ("float>=0", "a non-negative number (degrees)"),
    "translate_px": ("float>=0", "a non-negative number (pixels)"),
    "scale_range": ("fraction", "a number in [0, 1)"),
    "eps": ("float>=0", "a non-negative number (L∞ radius in [0, 1] pixel units)"),
    "step_size": ("float>0|null", "a positive number, or null for 2.5·eps/steps"),
    "sigma": ("float>=0", "a non-negative number"),
    "beta": ("float>=0", "a non-negative number"),
}


def recipe_defaults(recipe: str) -> dict:
    """Every parameter of `recipe` with its default (including `recipe` itself)."""
    if recipe not in RECIPES:
        raise NFBenchError(one_of(recipe, RECIPES, "recipe"))
    return {"recipe": recipe, **_COMMON, **_EXTRA[recipe]}


def vae_defaults() -> dict:
    return dict(_VAE)


def _check_value(key: str, value: Any, where: str) -> Any:
    kind, valid = _KINDS[key]
    if kind == "arch":
        if not isinstance(value, str) or value not in CLASSIFIERS:
            raise NFBenchError(f"{where}.{key}: " + one_of(str(value), CLASSIFIERS, "architecture"))
        return value
    bad = NFBenchError(f"{where}.{key}: expected {valid}, got {value!r}")
    if kind == "float>0|null" and value is None:
        return None
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if value < (1 if kind == "int>=1" else 0):
            raise bad
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad
    value = float(value)
    if (kind.startswith("float>0") and value <= 0) or (kind == "float>=0" and value < 0) \
            or (kind == "fraction" and not 0 <= value < 1):
        raise bad
    return value


def _validate(spec: dict, defaults: dict, where: str) -> dict:
    if not isinstance(spec, dict):
        raise NFBenchError(f"{where}: expected a mapping of parameters, got {type(spec).__name__}")
    out = dict(defaults)
    for key, value in spec.items():
        if key == "recipe" and "recipe" in defaults:
            continue
        if key not in defaults:
            raise NFBenchError(f"{where}.{key}: " + one_of(str(key), defaults, "parameter"))
        out[key] = _check_value(key, value, where)
    return out


def validate_recipe(spec: dict, where: str) -> dict:
    """Check a recipe spec and fill in its defaults; `recipe` defaults to 'standard'.

    Errors name the offending key as `<where>.<key>` and say what is valid.
    """
    if not isinstance(spec, dict):
        raise NFBenchError(f"{where}: expected a mapping of parameters, got {type(spec).__name__}")
    recipe = spec.get("recipe", "standard")
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise NFBenchError(f"{where}.recipe: " + one_of(str(recipe), RECIPES, "recipe"))
    return _validate(spec, recipe_defaults(recipe), where)


def validate_vae(spec: dict, where: str) -> dict:
    """Check a VAE spec and fill in its defaults (same error style as `validate_recipe`)."""
    return _validate(spec, _VAE, where)


# ---------------------------------------------------------------------------------------------
# Determinism helpers

@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """`torch.use_deterministic_algorithms(True)` for the block; the previous setting after."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent generator per (seed, purpose)."""
    mixed = (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % 2 ** 63
    return torch.Generator().manual_seed(mixed)


_INIT, _SHUFFLE, _DRAW, _EVAL = range(4)


@contextlib.contextmanager
def _float32_default() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _seeded_build(seed: int, arch: str, **kwargs) -> nn.Module:
    """A float32 model whose initial weights depend on `seed` alone.

    The global RNG state and default dtype are the same afterwards as before.
    """
    with torch.random.fork_rng(devices=[]), _float32_default():
        torch.manual_seed(int(_generator(seed, _INIT).initial_seed()))
        return build(arch, **kwargs)


def _train_split(data: Dataset):
    if data.train is None:
        raise NFBenchError(f"dataset {data.name!r} has no training split (evaluation only)")
    return data.train


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False, unit="batch")


# ---------------------------------------------------------------------------------------------
# Classifiers

AUGMENT_GROUP = 8   # examples that share one random draw (F.affine takes one transform per call)


def _affine(x: torch.Tensor, angle: float, translate, scale: float) -> torch.Tensor:
    """torchvision's bilinear affine warp (imported here: torchvision costs seconds to import)."""
    import torchvision.transforms.v2.functional as TF

    return TF.affine(x, angle=angle, translate=list(translate), scale=scale, shear=[0.0, 0.0],
                     interpolation=TF.InterpolationMode.BILINEAR)


def random_affine(x: torch.Tensor, rotate_deg: float, translate_px: float, scale_range: float,
                  generator: torch.Generator, group: int = AUGMENT_GROUP) -> torch.Tensor:
    """x rotated, translated and scaled at random (bilinear, zero fill).

    Consecutive runs of `group` examples (batches are shuffled, so random ones) share one
    draw: a batch of 64 sees 8 different transforms at an eighth of the per-example cost.
    """
    chunks = x.split(group)
    u = torch.rand(len(chunks), 4, generator=generator, dtype=torch.float64) * 2 - 1
    angles = (u[:, 0] * rotate_deg).tolist()
    shifts = (u[:, 1:3] * translate_px).tolist()
    scales = (1 + u[:, 3] * scale_range).tolist()
    return torch.cat([
        _affine(chunk, angles[i], shifts[i], scales[i])
        for i, chunk in enumerate(chunks)
    ])


def _step_size(spec: dict) -> float:
    return spec["step_size"] if spec["step_size"] is not None else 2.5 * spec["eps"] / spec["steps"]


def _fit(model: nn.Module, spec: dict, n: int, label: str, progress: bool,
         batch_loss: Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, int]]) -> tuple[float, int]:
    """The training loop both recipes share: Adam with a one-cycle schedule, seeded shuffles.

    batch_loss(idx, draw) -> (loss, count) for the training examples idx; `draw` is the seeded
    generator for augmentations, attacks and noise.  Returns the last epoch's mean loss and the
    sum of its counts; the model is left in eval mode.
    """
    seed, batch = spec["seed"], spec["batch_size"]
    per_epoch = math.ceil(n / batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=spec["lr"],
                                                   total_steps=spec["epochs"] * per_epoch)
    shuffle, draw = _generator(seed, _SHUFFLE), _generator(seed, _DRAW)
    bar = _progress(spec["epochs"] * per_epoch, label, progress)
    model.train()
    for _epoch in range(spec["epochs"]):
        order = torch.randperm(n, generator=shuffle)
        loss_sum, count = 0.0, 0
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            loss, batch_count = batch_loss(idx, draw)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(idx)
            count += batch_count
            bar.update()
            bar.set_postfix(loss=f"{float(loss.detach()):.4g}", refresh=False)
    bar.close()
    model.eval()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / n, count


def train_classifier(data: Dataset, spec: dict, *, progress: bool = False) -> tuple[nn.Module, dict]:
    """Train a classifier by `spec` (see `validate_recipe`); returns (model in eval mode, stats)."""
    spec = validate_recipe(spec, "recipe")
    split = _train_split(data)
    recipe, seed = spec["recipe"], spec["seed"]
    channels, height, width = data.image_shape
    start = time.perf_counter()

    def batch_loss(idx: torch.Tensor, draw: torch.Generator) -> tuple[torch.Tensor, int]:
        xb, yb = split.images(idx), split.labels[idx]
        if recipe == "augmentation":
            xb = random_affine(xb, spec["rotate_deg"], spec["translate_px"], spec["scale_range"], draw)
        elif recipe == "noise":
            noise = torch.randn(xb.shape, generator=draw, dtype=xb.dtype)
            xb = (xb + spec["sigma"] * noise).clamp(0, 1)
        elif recipe == "adversarial":
            xb = pgd_linf(model, xb, yb, spec["eps"], spec["steps"], _step_size(spec), generator=draw)
        logits = model(xb)
        return F.cross_entropy(logits, yb), int((logits.argmax(1) == yb).sum())

    with deterministic():
        model = _seeded_build(seed, spec["arch"], in_channels=channels, num_classes=data.num_classes,
                              image_size=height, width=spec["width"])
        n = len(split.labels)
        final_loss, correct = _fit(model, spec, n, f"train {recipe} seed {seed}", progress, batch_loss)
    stats = {"seconds": time.perf_counter() - start, "final_train_loss": final_loss,
             "final_train_acc": correct / n, "n_train": n}
    if recipe == "adversarial":
        stats["step_size"] = _step_size(spec)
    return model, stats


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def evaluate_classifier(model: nn.Module, data: Dataset, *, eps: Sequence[float],
                        attack_steps: int = 10, seed: int = 0) -> dict:
    """Accuracies on the full test split (deterministic given `seed`).

    clean_acc; robust_acc@<eps> under PGD-L∞ (`attack_steps` steps of 2.5·eps/steps, random
    start); rotated_acc (mean over EVAL_ANGLES); translated_acc (mean over EVAL_SHIFTS).
    """
    eps = list(dict.fromkeys(float(e) for e in eps))
    start = time.perf_counter()
    device = _model_device(model)
    was_training = model.training
    model.eval()
    y_all = data.test.labels
    n = len(y_all)
    batch = max(1, min(500, EVAL_BATCH_PIXELS // math.prod(data.image_shape)))
    correct: dict[str, int] = {}

    def count(key: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        correct[key] = correct.get(key, 0) + int((logits.argmax(1) == y).sum())

    try:
        with deterministic():
            attack = _generator(seed, _EVAL)
            for i in range(0, n, batch):
                rows = torch.arange(i, min(i + batch, n))
                x, y = data.test.images(rows).to(device), y_all[rows].to(device)
                with torch.no_grad():
                    count("clean_acc", model(x), y)
                    for angle in EVAL_ANGLES:
                        xr = _affine(x, angle, (0.0, 0.0), 1.0)
                        count("rotated_acc", model(xr), y)
                    for dx, dy in EVAL_SHIFTS:
                        xt = _affine(x, 0.0, (dx, dy), 1.0)
                        count("translated_acc", model(xt), y)
                for e in eps:
                    xa = pgd_linf(model, x, y, e, attack_steps, 2.5 * e / max(attack_steps, 1),
                                  generator=attack)
                    with torch.no_grad():
                        count(f"robust_acc@{e:g}", model(xa), y)
    finally:
        model.train(was_training)
    out = {"clean_acc": correct["clean_acc"] / n}
    out.update({f"robust_acc@{e:g}": correct[f"robust_acc@{e:g}"] / n for e in eps})
    out["rotated_acc"] = correct["rotated_acc"] / (n * len(EVAL_ANGLES))
    out["translated_acc"] = correct["translated_acc"] / (n * len(EVAL_SHIFTS))
    out["n_test"] = n
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------------------------
# VAE

def _vae_loss(model: ConvVAE, x: torch.Tensor, beta: float, noise: torch.Tensor | None):
    x_hat, mu, logvar = model(x, noise)
    recon = F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return recon, kl, x_hat


def train_vae(data: Dataset, spec: dict, *, progress: bool = False) -> tuple[nn.Module, dict]:
    """Train the ConvVAE by `spec` (see `validate_vae`); stats: recon_mse and kl on the test split."""
    spec = validate_vae(spec, "vae")
    split = _train_split(data)
    seed = spec["seed"]
    channels, height, _ = data.image_shape
    start = time.perf_counter()

    def batch_loss(idx: torch.Tensor, draw: torch.Generator) -> tuple[torch.Tensor, int]:
        xb = split.images(idx)
        noise = torch.randn(len(xb), spec["latent_dim"], generator=draw, dtype=xb.dtype)
        recon, kl, _ = _vae_loss(model, xb, spec["beta"], noise)
        return (recon + spec["beta"] * kl).mean(), 0

    with deterministic():
        model = _seeded_build(seed, "convvae", in_channels=channels, image_size=height,
                              latent_dim=spec["latent_dim"])
        final_loss, _ = _fit(model, spec, len(split), f"train vae seed {seed}", progress, batch_loss)
        x_test = data.test.images()
        with torch.no_grad():
            _, kl, x_hat = _vae_loss(model, x_test, spec["beta"], None)
            recon_mse = float((x_hat - x_test).pow(2).mean())
    return model, {"recon_mse": recon_mse, "kl": float(kl.mean()), "final_train_loss": final_loss,
                   "seconds": time.perf_counter() - start}
