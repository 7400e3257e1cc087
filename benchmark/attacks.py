"""Projected gradient descent under an L∞ budget (Madry et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
             step_size: float, *, random_start: bool = True,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial examples for `model` at `x` (pixels in [0, 1]) with ‖x_adv − x‖∞ ≤ eps.

    Each step ascends the summed cross-entropy along the gradient's sign, then projects onto
    the ε-ball around x and onto [0, 1].  With `random_start` the search begins at a uniform
    point of the ball drawn from `generator`, so the result is deterministic given it.  The
    model runs in eval mode (its mode is restored afterwards); gradients are taken with
    respect to the input only, so nothing is accumulated in the parameters' `.grad`.
    """
    if eps < 0 or steps < 0 or step_size < 0:
        raise ValueError(f"pgd_linf needs eps, steps, step_size >= 0 (got {eps}, {steps}, {step_size})")
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    was_training = model.training
    model.eval()
    try:
        if random_start:
            device = generator.device if generator is not None else x.device
            noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
            x_adv = (x + (2 * noise.to(x.device) - 1) * eps).clamp(0, 1)
        else:
            x_adv = x.clone()
        lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(x_adv), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = torch.minimum(torch.maximum(x_adv.detach() + step_size * grad.sign(), lower), upper)
        return x_adv.detach()
    finally:
        model.train(was_training)
