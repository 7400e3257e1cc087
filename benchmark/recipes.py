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

from typing import Any

from .errors import NFBenchError, one_of
from .schema import number
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

# key -> (`schema.number`'s range and kind, description of the valid values); arch: a classifier name
_INT_0, _INT_1 = {"low": 0, "integer": True}, {"low": 1, "integer": True}
_POSITIVE, _NON_NEGATIVE = {"low": 0, "open_low": True}, {"low": 0}
_KINDS = {
    "arch": (None, None),
    "seed": (_INT_0, "a non-negative integer"),
    "epochs": (_INT_1, "a positive integer"),
    "batch_size": (_INT_1, "a positive integer"),
    "width": (_INT_1, "a positive integer"),
    "steps": (_INT_1, "a positive integer"),
    "latent_dim": (_INT_1, "a positive integer"),
    "lr": (_POSITIVE, "a positive number"),
    "rotate_deg": (_NON_NEGATIVE, "a non-negative number (degrees)"),
    "translate_px": (_NON_NEGATIVE, "a non-negative number (pixels)"),
    "scale_range": ({"low": 0, "high": 1, "open_high": True}, "a number in [0, 1)"),
    "eps": (_NON_NEGATIVE, "a non-negative number (L∞ radius in [0, 1] pixel units)"),
    "step_size": (_POSITIVE, "a positive number, or null for 2.5·eps/steps"),   # null allowed
    "sigma": (_NON_NEGATIVE, "a non-negative number"),
    "beta": (_NON_NEGATIVE, "a non-negative number"),
}


def recipe_defaults(recipe: str) -> dict:
    """Every parameter of `recipe` with its default (including `recipe` itself)."""
    if recipe not in RECIPES:
        raise NFBenchError(one_of(recipe, RECIPES, "recipe"))
    return {"recipe": recipe, **_COMMON, **_EXTRA[recipe]}


def _check_value(key: str, value: Any, where: str) -> Any:
    bounds, valid = _KINDS[key]
    if bounds is None:
        if not isinstance(value, str) or value not in CLASSIFIERS:
            raise NFBenchError(f"{where}.{key}: " + one_of(str(value), CLASSIFIERS, "architecture"))
        return value
    if key == "step_size" and value is None:
        return None
    return number(value, f"{where}.{key}", **bounds, valid=valid, verb="expected")


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
