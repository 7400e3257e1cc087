"""Augmentation tangents against central finite differences of the torchvision ops they claim
to differentiate, plus the structural facts (ones, zero means, shapes, errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from scipy.ndimage import gaussian_filter
from torchvision.transforms import InterpolationMode

from benchmark.errors import NFBenchError
from benchmark.perturbations.augmentations import tangents
from benchmark.vocab import COLOUR_ONLY, TRANSFORMS

BILINEAR = InterpolationMode.BILINEAR
H, W = 24, 28  # not square, so a swapped axis shows up


def _affine(x, translate=(0.0, 0.0), scale=1.0, shear=0.0):
    return F.affine(x, angle=0.0, translate=list(translate), scale=scale, shear=[shear, 0.0],
                    interpolation=BILINEAR)


# The operation each tangent claims to be the derivative of, as a function of t (at t = 0).
OPS = {
    "rotate": lambda x, t: F.rotate(x, math.degrees(t), interpolation=BILINEAR),
    "translate_x": lambda x, t: _affine(x, translate=(t, 0.0)),
    "translate_y": lambda x, t: _affine(x, translate=(0.0, t)),
    "scale": lambda x, t: _affine(x, scale=1.0 + t),
    "shear": lambda x, t: _affine(x, shear=math.degrees(t)),
    "contrast": lambda x, t: F.adjust_contrast(x, 1.0 + t),
    "saturation": lambda x, t: F.adjust_saturation(x, 1.0 + t),
    "hue": lambda x, t: F.adjust_hue(x, t),
}
GEOMETRIC = ("rotate", "translate_x", "translate_y", "scale", "shear")


def smooth_images(channels: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Gaussian-blurred noise rescaled to [0.2, 0.8] per image, float64."""
    noise = np.random.default_rng(seed).random((batch, channels, H, W))
    img = gaussian_filter(noise, sigma=(0, 0, 2, 2))
    lo, hi = img.min(axis=(1, 2, 3), keepdims=True), img.max(axis=(1, 2, 3), keepdims=True)
    return torch.from_numpy(0.2 + 0.6 * (img - lo) / (hi - lo))


def separated_rgb(batch: int = 2, seed: int = 1) -> torch.Tensor:
    """RGB pixels whose low/middle/high channels are ≥ 0.1 apart, in random channel order."""
    rng = np.random.default_rng(seed)
    levels = np.stack([rng.uniform(a, b, (batch, H, W)) for a, b in ((0.2, 0.3), (0.4, 0.6), (0.7, 0.8))], 1)
    order = np.argsort(rng.random((batch, 3, H, W)), axis=1)
    return torch.from_numpy(np.take_along_axis(levels, order, axis=1))


def central_fd(name: str, x: torch.Tensor, h: float) -> torch.Tensor:
    op = OPS[name]
    return (op(x, h).double() - op(x, -h).double()) / (2 * h)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# Measured with h = 1e-6: rotate 1.3e-6, scale 2.2e-6 (the O(h) error of bilinear warps,
# ∝ h·|velocity|², largest for these two), translate ~2e-9, shear ~3e-10.  A wrong sign gives 2,
# a wrong centre or axis O(1e-2 – 1).
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_tangent_matches_torchvision_fd(name, channels):
    x = smooth_images(channels)
    assert rel_err(tangents(x, [name])[:, 0], central_fd(name, x, 1e-6)) < 1e-5


# Linear in t before clamping, so only rounding: measured ~4e-12 with h = 1e-4.
@pytest.mark.parametrize(("name", "channels"), [("contrast", 1), ("contrast", 3), ("saturation", 3)])
def test_blend_tangent_matches_torchvision_fd(name, channels):
    x = smooth_images(channels)
    assert rel_err(tangents(x, [name])[:, 0], central_fd(name, x, 1e-4)) < 1e-8


def test_hue_tangent_matches_torchvision_fd():
    # adjust_hue is linear in t while no channel crosses another, which with gaps ≥ 0.1 holds
    # for |t| ≤ 1e-2; it runs in float32, so rounding sets the error: measured 1e-6.
    x = separated_rgb()
    assert rel_err(tangents(x, ["hue"])[:, 0], central_fd("hue", x, 1e-2)) < 1e-5


def test_hue_tangent_by_hand_and_at_ties():
    # Columns are pixels (R, G, B); all values exact in float32.  The last two have a strict
    # middle channel (rate 6·(previous − next channel)); the others tie two channels, where the
    # tangent is the symmetric derivative, i.e. the mean of the two sides of the sector boundary.
    pixels = torch.tensor([
        [0.75, 0.25, 0.75, 0.75, 0.25, 0.25, 0.5, 0.75, 0.25],
        [0.75, 0.75, 0.25, 0.25, 0.75, 0.25, 0.5, 0.5, 0.5],
        [0.25, 0.75, 0.75, 0.25, 0.25, 0.75, 0.5, 0.25, 0.75],
    ], dtype=torch.float64)
    x = pixels[None, :, None, :]
    t = tangents(x, ["hue"])[0, 0, :, 0]
    assert torch.allclose(t[:, -2], torch.tensor([0.0, 3.0, 0.0], dtype=torch.float64))
    assert torch.allclose(t[:, -1], torch.tensor([0.0, -3.0, 0.0], dtype=torch.float64))
    assert torch.allclose(t[:, 0], torch.tensor([-1.5, 1.5, 0.0], dtype=torch.float64))
    assert rel_err(t, central_fd("hue", x, 1e-3)[0, :, 0]) < 1e-4


def test_brightness_is_ones():
    x = smooth_images(3).float()
    t = tangents(x, ["brightness"])
    assert t.dtype == torch.float32
    assert torch.equal(t, torch.ones_like(t))


def test_contrast_tangent_has_zero_grayscale_mean():
    gray = smooth_images(1)
    assert tangents(gray, ["contrast"]).mean(dim=(2, 3, 4)).abs().max() < 1e-12
    # torchvision's luma weights sum to 0.9999, so the luma mean of x − mean(luma x) is
    # 1e-4 · mean(luma x) rather than exactly 0.
    rgb = smooth_images(3)
    luma_mean = F.rgb_to_grayscale(tangents(rgb, ["contrast"])[:, 0]).mean(dim=(1, 2, 3))
    assert luma_mean.abs().max() < 1.01e-4 * F.rgb_to_grayscale(rgb).mean(dim=(1, 2, 3)).min()


def test_constant_image_moves_only_at_the_zero_filled_border():
    c = 0.5
    x = torch.full((1, 3, H, W), c, dtype=torch.float64)
    t = tangents(x, GEOMETRIC)
    assert t[..., 1:-1, 1:-1].abs().max() == 0
    # Translating right pulls the zero fill in from the left: −c for t > 0, 0 for t < 0, mean −c/2.
    shift = t[0, GEOMETRIC.index("translate_x"), 0]
    assert torch.allclose(shift[:, 0], torch.full((H,), -c / 2, dtype=torch.float64))
    assert torch.allclose(shift[:, -1], torch.full((H,), c / 2, dtype=torch.float64))
    assert rel_err(t[0, 0], central_fd("rotate", x, 1e-6)[0]) < 1e-5


def test_shapes_dtype_and_order():
    x = smooth_images(3, batch=3).float()
    t = tangents(x, TRANSFORMS)
    assert t.shape == (3, len(TRANSFORMS), 3, H, W) and t.dtype == torch.float32
    assert torch.equal(tangents(x, ["hue", "rotate"])[:, 1], t[:, TRANSFORMS.index("rotate")])
    assert tangents(x, []).shape == (3, 0, 3, H, W)
    gray = smooth_images(1).float()
    assert tangents(gray, [n for n in TRANSFORMS if n not in COLOUR_ONLY]).shape == (2, 7, 1, H, W)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(NFBenchError, match=r"unknown augmentation 'rotat'; did you mean 'rotate'"):
        tangents(smooth_images(3), ["rotat"])


@pytest.mark.parametrize(("name", "channels"), [("hue", 1), ("saturation", 4), ("contrast", 2)])
def test_colour_transform_on_wrong_channel_count(name, channels):
    with pytest.raises(NFBenchError, match=rf"'{name}' needs .*the data has {channels}$"):
        tangents(torch.rand(1, channels, 4, 4), [name])
