"""Local training of the small classifiers and the VAE by their recipes, and their evaluation.

Deterministic: every random draw (initialisation, shuffling, augmentation, noise, PGD starts)
comes from an explicitly seeded source, and training runs with
`torch.use_deterministic_algorithms(True)` on one CPU thread (a thread count splits reductions
differently, so it would make the weights depend on the machine's cores), so the same spec on
the same CPU type gives bit-identical weights; several models train in parallel processes
instead.  Another CPU type's kernels round differently, so retraining there gives other
weights, like another seed (the suites' published checkpoints are what reproduces everywhere).  The recipes themselves
(parameters, defaults, validation) are data, in `recipes.py`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..attacks import PGD10, adversarial_examples, attack_record, pgd, robust_key
from ..data import Dataset
from ..errors import NFBenchError
from ..recipes import step_size, validate_recipe, validate_vae
from .nets import ConvVAE, build

# Evaluation transforms (fixed): rotations in degrees, shifts (dx, dy) in pixels.
EVAL_ANGLES = (-30.0, -20.0, 20.0, 30.0)
EVAL_SHIFTS = ((3, 0), (-3, 0), (0, 3), (0, -3))
EVAL_BATCH_PIXELS = 2 ** 21   # evaluation batch: at most 500 images, fewer when they are large
TRAINING_THREADS = 1          # the weights must not depend on the machine's core count


# ---------------------------------------------------------------------------------------------
# Determinism helpers

@contextlib.contextmanager
def deterministic(threads: int | None = None, device: torch.device | None = None) -> Iterator[None]:
    """`torch.use_deterministic_algorithms(True)` (and `threads` CPU threads, when given) for the
    block; the previous settings after.  On a CUDA `device` some backward kernels the attacks
    need (adaptive average pooling's) have no deterministic version: there it only warns, and
    cuBLAS gets the workspace setting it needs to be deterministic."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_threads = torch.get_num_threads()
    on_cuda = device is not None and torch.device(device).type == "cuda"
    if on_cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=on_cuda)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.set_num_threads(previous_threads)


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
            xb = pgd(model, xb, yb, spec["eps"], spec["steps"], step_size(spec), generator=draw)
        logits = model(xb)
        return F.cross_entropy(logits, yb), int((logits.argmax(1) == yb).sum())

    with deterministic(threads=TRAINING_THREADS):
        model = _seeded_build(seed, spec["arch"], in_channels=channels, num_classes=data.num_classes,
                              image_size=height, width=spec["width"])
        n = len(split.labels)
        final_loss, correct = _fit(model, spec, n, f"train {recipe} seed {seed}", progress, batch_loss)
    stats = {"seconds": time.perf_counter() - start, "final_train_loss": final_loss,
             "final_train_acc": correct / n, "n_train": n}
    if recipe == "adversarial":
        stats["step_size"] = step_size(spec)
    return model, stats


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def evaluate_classifier(model: nn.Module, data: Dataset, *, eps: Sequence[float], l2_eps: Sequence[float] = (),
                        attack: Mapping = PGD10, seed: int = 0, attack_data: Dataset | None = None) -> dict:
    """Accuracies on the test split of `data` (deterministic given `seed`).

    clean_acc; rotated_acc (mean over EVAL_ANGLES); translated_acc (mean over EVAL_SHIFTS); and
    robust_acc@<eps> under the L∞ attack and robust_acc_l2@<eps> under the L2 one at each of `l2_eps`
    (`robust_key`; the suite's `attack` setting: PGD from a seeded random start, or AutoAttack) on
    the test split of `attack_data` (default: the same; PGD costs 2·steps passes per image), and
    how they were measured (`attack_record`).
    The model runs in channels-last memory format meanwhile (max-pooling is several times
    faster so; it is restored after).
    """
    threats = list(dict.fromkeys([("Linf", float(e)) for e in eps] + [("L2", float(e)) for e in l2_eps]))
    attack_data = attack_data or data
    start = time.perf_counter()
    device = _model_device(model)
    was_training = model.training
    model.eval()
    correct: dict[str, int] = {}

    def count(key: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        correct[key] = correct.get(key, 0) + int((logits.argmax(1) == y).sum())

    def batches(split_of: Dataset):
        labels = split_of.test.labels
        batch = max(1, min(500, EVAL_BATCH_PIXELS // math.prod(split_of.image_shape)))
        for i in range(0, len(labels), batch):
            rows = torch.arange(i, min(i + batch, len(labels)))
            x = split_of.test.images(rows).to(device).contiguous(memory_format=torch.channels_last)
            yield x, labels[rows].to(device)

    try:
        model.to(memory_format=torch.channels_last)
        with deterministic(device=device):
            with torch.no_grad():
                for x, y in batches(data):
                    count("clean_acc", model(x), y)
                    for angle in EVAL_ANGLES:
                        count("rotated_acc", model(_affine(x, angle, (0.0, 0.0), 1.0)), y)
                    for dx, dy in EVAL_SHIFTS:
                        count("translated_acc", model(_affine(x, 0.0, (dx, dy), 1.0)), y)
            draw = _generator(seed, _EVAL)
            for x, y in batches(attack_data):
                for norm, e in threats:
                    xa = adversarial_examples(model, x, y, norm, e, attack, seed=seed, generator=draw)
                    with torch.no_grad():
                        count(robust_key(norm, e), model(xa), y)
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    n, n_attacked = len(data.test), len(attack_data.test)
    out = {"clean_acc": correct["clean_acc"] / n}
    out.update({robust_key(*t): correct[robust_key(*t)] / n_attacked for t in threats})
    out["rotated_acc"] = correct["rotated_acc"] / (n * len(EVAL_ANGLES))
    out["translated_acc"] = correct["translated_acc"] / (n * len(EVAL_SHIFTS))
    out.update(n_test=n, n_attacked=n_attacked, attack=attack_record(attack, n_attacked, seed))
    out["device"] = device.type
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------------------------
# VAE

def _vae_loss(model: ConvVAE, x: torch.Tensor, beta: float, noise: torch.Tensor | None):
    x_hat, mu, logvar = model(x, noise)
    recon = F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return recon, kl, x_hat


def train_vae(data: Dataset, spec: dict, *, progress: bool = False,
              device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Train the ConvVAE by `spec` (see `validate_vae`) on `device`; stats: recon_mse and kl on
    the test split, and the device.  The seeded draws are made on the CPU, so a device changes
    only the arithmetic's rounding (bit-identical training holds on one CPU type only anyway)."""
    spec = validate_vae(spec, "vae")
    split = _train_split(data)
    seed = spec["seed"]
    channels, height, _ = data.image_shape
    device = torch.device(device)
    start = time.perf_counter()

    def batch_loss(idx: torch.Tensor, draw: torch.Generator) -> tuple[torch.Tensor, int]:
        xb = split.images(idx)
        noise = torch.randn(len(xb), spec["latent_dim"], generator=draw, dtype=xb.dtype)
        recon, kl, _ = _vae_loss(model, xb.to(device), spec["beta"], noise.to(device))
        return (recon + spec["beta"] * kl).mean(), 0

    with deterministic(threads=TRAINING_THREADS, device=device):
        model = _seeded_build(seed, "convvae", in_channels=channels, image_size=height,
                              latent_dim=spec["latent_dim"]).to(device)
        final_loss, _ = _fit(model, spec, len(split), f"train vae seed {seed} ({device.type})", progress, batch_loss)
        squared, kl_sum, n = 0.0, 0.0, len(data.test)
        with torch.no_grad():
            for rows in torch.arange(n).split(1000):
                x_test = data.test.images(rows).to(device)
                _, kl, x_hat = _vae_loss(model, x_test, spec["beta"], None)
                squared += float((x_hat - x_test).pow(2).sum())
                kl_sum += float(kl.sum())
    return model.cpu(), {"recon_mse": squared / (n * math.prod(data.image_shape)), "kl": kl_sum / n,
                         "final_train_loss": final_loss, "seconds": time.perf_counter() - start,
                         "device": device.type}
