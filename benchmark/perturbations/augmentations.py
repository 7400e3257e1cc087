"""Exact tangent vectors of image augmentations at the identity.

For a one-parameter augmentation T_t with T_0 = id, the tangent at an image x is d/dt T_t(x) at
t = 0: the direction in pixel space in which the augmentation starts to move x.  Each tangent
here is the derivative of the torchvision.transforms.v2.functional (F) operation named below,
in the stated units, computed in closed form (no finite differences).  They are derivatives of
the unclipped operations: torchvision clamps the output of its colour ops to [0, 1], which
has no effect at t = 0 for an image inside (0, 1).

Geometric (bilinear interpolation, zero fill, i.e. `grid_sample(align_corners=False)`; the
fill makes the border move even for a constant image):
  rotate       per radian, F.rotate(x, degrees(t))                       (counter-clockwise)
  translate_x  per pixel,  F.affine(x, 0, [t, 0], 1, [0, 0])             (content moves right)
  translate_y  per pixel,  F.affine(x, 0, [0, t], 1, [0, 0])             (content moves down)
  scale        at s = 1,   F.affine(x, 0, [0, 0], s, [0, 0])
  shear        per radian, F.affine(x, 0, [0, 0], 1, [degrees(t), 0])    (x-shear)
Colour:
  brightness   x + t: a uniform shift of every pixel, tangent ones (F.adjust_brightness
               multiplies by 1 + t instead, whose tangent would be x itself)
  contrast     F.adjust_contrast(x, 1 + t)     → x − mean(gray(x))
  saturation   F.adjust_saturation(x, 1 + t)   → x − gray(x)                      (RGB only)
  hue          F.adjust_hue(x, t), t in turns  → see `_hue`                      (RGB only)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import NFBenchError, one_of
from ..vocab import COLOUR_ONLY, TRANSFORMS

# torchvision's luma weights (rgb_to_grayscale); note they sum to 0.9999, not 1.
_LUMA = (0.2989, 0.587, 0.114)

# Geometric transforms: torchvision samples output pixel p at source point A_t p, where
# p = (u, v) is the pixel position relative to the image centre ((W−1)/2, (H−1)/2), u to the
# right and v down, and A_t is the 2×3 matrix of
# `_geometry._get_inverse_affine_matrix(center=[0, 0], ...)` (rotate passes −angle to it).
# Each entry is dA_t/dt at t = 0, so the velocity of the sample point is G·(u, v, 1).
_GENERATORS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "rotate": ((0.0, -1.0, 0.0), (1.0, 0.0, 0.0)),       # A = [[cos t, −sin t], [sin t, cos t]]
    "translate_x": ((0.0, 0.0, -1.0), (0.0, 0.0, 0.0)),  # A = p − (t, 0)
    "translate_y": ((0.0, 0.0, 0.0), (0.0, 0.0, -1.0)),  # A = p − (0, t)
    "scale": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),       # A = p / s
    "shear": ((0.0, 1.0, 0.0), (0.0, 0.0, 0.0)),         # A = [[1, tan t], [0, 1]]
}


def _central_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂/∂u, ∂/∂v) of x as central differences, with zeros outside the image.

    Bilinear interpolation is piecewise bilinear with kinks at the pixel centres, so a warp
    that is the identity at t = 0 has different one-sided derivatives there; their mean (the
    symmetric derivative) is the velocity contracted with exactly these differences, and the
    zeros are torchvision's zero fill.
    """
    p = torch.nn.functional.pad(x, (1, 1, 1, 1))
    du = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    dv = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    return du, dv


def _geometric(grad: tuple[torch.Tensor, torch.Tensor], name: str) -> torch.Tensor:
    """Symmetric derivative of a warp: image gradient · velocity of the sample point."""
    du, dv = grad
    h, w = du.shape[-2:]
    u = torch.arange(w, dtype=du.dtype, device=du.device) - (w - 1) / 2
    v = (torch.arange(h, dtype=du.dtype, device=du.device) - (h - 1) / 2)[:, None]
    (a, b, c), (d, e, f) = _GENERATORS[name]
    return (a * u + b * v + c) * du + (d * u + e * v + f) * dv


def _gray(x: torch.Tensor) -> torch.Tensor:
    """torchvision's grayscale, B×1×H×W: the image itself for one channel, luma for RGB."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b)[:, None]


def _contrast(x: torch.Tensor) -> torch.Tensor:
    return x - _gray(x).mean(dim=(1, 2, 3), keepdim=True)


def _saturation(x: torch.Tensor) -> torch.Tensor:
    return x - _gray(x)


def _hue(x: torch.Tensor) -> torch.Tensor:
    """Tangent of a hue rotation (per full turn) of an RGB image.

    Shifting the hue keeps each pixel's max and min channel (value and saturation) and moves
    the middle channel linearly, at 6·(x[c−1] − x[c+1]) with channels cyclic R→G→B.  Where two
    channels tie the pixel sits on a sector boundary, a kink; as for the warps we take the
    symmetric derivative there, which gives each tied channel half its rate.  Both cases are
    weight 1 − |rank − 1| on the rate, rank being the channel's mid-rank (0…2) in its pixel.
    """
    xc, xo = x[:, :, None], x[:, None, :]
    rank = (xo < xc).sum(2) + ((xo == xc).sum(2) - 1) / 2
    weight = (1 - (rank - 1).abs()).to(x.dtype)
    return 6 * weight * (x.roll(1, dims=1) - x.roll(-1, dims=1))


_COLOUR: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "brightness": torch.ones_like,
    "contrast": _contrast,
    "saturation": _saturation,
    "hue": _hue,
}


def tangents(x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Tangents of the named augmentations at each image.

    x: B×C×H×W floating point, pixels in [0, 1]; returns B×len(names)×C×H×W, same dtype and
    device as x, in the units of the module docstring.
    """
    names = tuple(names)
    channels = x.shape[1]
    for name in names:
        if name not in TRANSFORMS:
            raise NFBenchError(one_of(name, TRANSFORMS, "augmentation"))
        if name in COLOUR_ONLY and channels != 3:
            need = "3-channel (RGB)"
        elif name == "contrast" and channels not in (1, 3):
            need = "1- or 3-channel"
        else:
            continue
        raise NFBenchError(f"augmentation {name!r} needs {need} images; the data has {channels}")
    out = x.new_empty((x.shape[0], len(names), *x.shape[1:]))
    grad = None
    for k, name in enumerate(names):
        if name in _GENERATORS:
            if grad is None:
                grad = _central_gradient(x)
            out[:, k] = _geometric(grad, name)
        else:
            out[:, k] = _COLOUR[name](x)
    return out
