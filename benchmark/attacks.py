"""Projected gradient descent under an L∞ or an L2 budget (Madry et al. 2018)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("Linf", "L2")


def robust_key(norm: str, eps: float) -> str:
    """The metric name of the accuracy under PGD in `norm` at `eps`: robust_acc@0.0313725 (L∞),
    robust_acc_l2@0.5 (L2)."""
    return f"robust_acc@{eps:g}" if norm == "Linf" else f"robust_acc_{norm.lower()}@{eps:g}"


def published_threat(threat_model: str | None, eps: float | None, suite_eps: float) -> tuple[str, float] | None:
    """(norm, ε) of the threat a model's published robust accuracy is measured under, when the
    suite measures it: L2 at the model's own ε, or L∞ at the suite's ε (a model published at
    another L∞ ε is not attacked there); None otherwise (corruption-robust models, …)."""
    if threat_model == "L2" and eps is not None:
        return "L2", float(eps)
    if threat_model == "Linf" and math.isclose(float(suite_eps if eps is None else eps), suite_eps):
        return "Linf", float(suite_eps)
    return None


def _per_sample_l2(t: torch.Tensor) -> torch.Tensor:
    """‖t_i‖₂ of every sample, shaped to broadcast over t."""
    return torch.linalg.vector_norm(t.flatten(1), dim=1).view(-1, *[1] * (t.ndim - 1))


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step_size: float, *,
        norm: str = "Linf", random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial examples for `model` at `x` (pixels in [0, 1]) with ‖x_adv − x‖ ≤ eps in `norm`.

    Each step ascends the summed cross-entropy (L∞: along the gradient's sign; L2: along the
    gradient scaled to length `step_size`), then projects onto the ε-ball around x and onto
    [0, 1] (which, x being in [0, 1], never leaves the ball).  With `random_start` the search
    begins at a uniform point of the ball drawn from `generator`, so the result is deterministic
    given it.  The model runs in eval mode (its mode is restored afterwards); gradients are taken
    with respect to the input only, so nothing is accumulated in the parameters' `.grad`.
    """
    if norm not in NORMS:
        raise ValueError(f"pgd: norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if eps < 0 or steps < 0 or step_size < 0:
        raise ValueError(f"pgd needs eps, steps, step_size >= 0 (got {eps}, {steps}, {step_size})")
    x = x.detach()
    if eps == 0 or steps == 0:
        return x.clone()
    was_training = model.training
    model.eval()
    device = generator.device if generator is not None else x.device
    tiny = torch.finfo(x.dtype).tiny
    try:
        if not random_start:
            x_adv = x.clone()
        elif norm == "Linf":
            noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
            x_adv = (x + (2 * noise.to(x.device) - 1) * eps).clamp(0, 1)
        else:   # uniform in the L2 ball: a uniform direction, radius eps·U^(1/d)
            direction = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
            radius = torch.rand(x.shape[0], generator=generator, device=device, dtype=x.dtype).to(x.device)
            radius = eps * radius.pow(1 / math.prod(x.shape[1:])).view(-1, *[1] * (x.ndim - 1))
            x_adv = (x + radius * direction / _per_sample_l2(direction).clamp_min(tiny)).clamp(0, 1)
        lower, upper = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(x_adv), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x_adv)
            if norm == "Linf":
                x_adv = torch.minimum(torch.maximum(x_adv.detach() + step_size * grad.sign(), lower), upper)
            else:
                delta = x_adv.detach() + step_size * grad / _per_sample_l2(grad).clamp_min(tiny) - x
                delta = delta * (eps / _per_sample_l2(delta).clamp_min(tiny)).clamp(max=1)
                x_adv = (x + delta).clamp(0, 1)
        return x_adv.detach()
    finally:
        model.train(was_training)
