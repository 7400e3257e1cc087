"""Training recipes as data: their parameters, defaults, validation and the architecture they build.

Torch-free (training itself is `training.py`), so params.yaml can be validated and a published
checkpoint matched against its recipe without importing torch.

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

import math
from typing import Any

from .errors import NFBenchError, one_of
from .vocab import CLASSIFIERS

RECIPES = ("standard", "augmentation", "adversarial", "noise")
MAIN_EPS = 0.2                 # the adversarial recipe's default L∞ radius

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


def step_size(spec: dict) -> float:
    """The adversarial recipe's PGD step: its step_size, or 2.5·eps/steps when that is null."""
    return spec["step_size"] if spec["step_size"] is not None else 2.5 * spec["eps"] / spec["steps"]


def architecture(recipe: dict, dims: tuple[int, int, int]) -> dict:
    """The manifest's architecture record of a validated classifier recipe or VAE spec on data of
    `dims` (channels, image size, classes): what `nets.build` is called with."""
    channels, size, classes = dims
    if "recipe" in recipe:
        return {"name": recipe["arch"], "kwargs": {"in_channels": channels, "num_classes": classes,
                                                   "image_size": size, "width": recipe["width"]}}
    return {"name": "convvae", "kwargs": {"in_channels": channels, "image_size": size,
                                          "latent_dim": recipe["latent_dim"]}}
