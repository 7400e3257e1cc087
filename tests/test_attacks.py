"""The robustness attacks against a model whose robust accuracy is known exactly.

A linear classifier z = Wx on points well inside [0, 1]: a point of class y is misclassified
within an ε-ball iff some other class j can overtake y, and the best an attacker can do against
j lowers the margin (w_y − w_j)·x by ε‖w_y − w_j‖_* (the dual norm: ℓ1 for L∞, ℓ2 for L2), the
box [0, 1] never binding.  So the exact robust accuracy at ε is the fraction of points whose
radius min_j (w_y − w_j)·x / ‖w_y − w_j‖_* exceeds ε; both attacks must reach it.
"""

import math

import pytest
import torch
from torch import nn

from benchmark.attacks import PGD10, adversarial_examples, attack_record, autoattack, pgd, pgd_step_size

CLASSES, SHAPE, POINTS = 10, (1, 6, 6), 200
AUTOATTACK = {"method": "autoattack", "version": "standard", "iterations": None}


class Linear(nn.Module):
    """z = scale · W x: `scale` 10⁴ saturates the softmax, so the cross-entropy's gradient
    underflows to 0 at every confidently classified point (gradient masking)."""

    def __init__(self, weight: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.weight, self.scale = weight, scale

    def forward(self, x):
        return self.scale * x.flatten(1) @ self.weight.T


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(CLASSES, math.prod(SHAPE), generator=g)
    x = 0.25 + 0.5 * torch.rand(POINTS, *SHAPE, generator=g)      # ε ≤ 0.25 never meets the box
    y = (x.flatten(1) @ weight.T).argmax(1)                          # every point classified correctly
    return weight, x, y


def robust_radius(weight, x, y, norm):
    """Each point's exact distance, in `norm`, to the linear model's decision boundary."""
    dual = {"Linf": 1, "L2": 2}[norm]
    logits = x.flatten(1) @ weight.T
    margins = logits.gather(1, y[:, None]) - logits                                # n × classes
    lengths = torch.linalg.vector_norm(weight[y][:, None] - weight[None], ord=dual, dim=-1)
    radius = margins / lengths.clamp_min(1e-12)
    radius[torch.arange(len(y)), y] = math.inf
    return radius.min(1).values


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


def binomial_half_width(p: float, n: int) -> float:
    return 1.96 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_both_attacks_reach_the_exact_robust_accuracy(problem, norm):
    weight, x, y = problem
    radius = robust_radius(weight, x, y, norm)
    eps = radius.quantile(0.5).item()
    exact = (radius > eps).double().mean().item()
    model = Linear(weight)
    found = {"pgd": pgd(model, x, y, eps, 10, pgd_step_size(PGD10, eps), norm=norm,
                        generator=torch.Generator().manual_seed(0)),
             "autoattack": autoattack(model, x, y, eps, norm=norm, seed=0)}
    for name, x_adv in found.items():
        distance = (x_adv - x).flatten(1).abs().amax(1) if norm == "Linf" else (x_adv - x).flatten(1).norm(dim=1)
        assert distance.max() <= eps * (1 + 1e-5), name
        assert abs(accuracy(model, x_adv, y) - exact) <= binomial_half_width(exact, POINTS), name


def test_autoattack_sees_through_the_gradient_masking_that_fools_pgd(problem):
    weight, x, y = problem
    radius = robust_radius(weight, x, y, "Linf")
    eps = radius.quantile(0.5).item()
    exact = (radius > eps).double().mean().item()
    model = Linear(weight, scale=1e4)
    setting = {**PGD10, "eps": eps}
    by_pgd = accuracy(model, adversarial_examples(model, x, y, "Linf", eps, setting, seed=0,
                                                  generator=torch.Generator().manual_seed(0)), y)
    by_autoattack = accuracy(model, adversarial_examples(model, x, y, "Linf", eps, {**AUTOATTACK, "eps": eps},
                                                         seed=0), y)
    assert by_autoattack <= by_pgd - 2 * binomial_half_width(exact, POINTS)      # PGD-10 overestimates here
    assert abs(by_autoattack - exact) <= binomial_half_width(exact, POINTS)


def test_autoattack_is_deterministic_and_leaves_the_global_random_state_alone(problem):
    weight, x, y = problem
    model = Linear(weight).train()
    state = torch.random.get_rng_state()
    first = autoattack(model, x[:20], y[:20], 0.05, attacks=["apgd-ce"], iterations=5, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state) and model.training
    assert torch.equal(first, autoattack(model, x[:20], y[:20], 0.05, attacks=["apgd-ce"], iterations=5, seed=3))
    with pytest.raises(ValueError, match="subset of apgd-ce, apgd-t, fab-t, square"):
        autoattack(model, x, y, 0.05, attacks=["apgd-dlr"])


def test_the_attack_record_says_how_a_robust_accuracy_was_measured():
    assert attack_record({**PGD10, "eps": 0.2}, 256, 0) == {"method": "pgd", "points": 256, "seed": 0,
                                                          "steps": 10, "step_size": None}
    assert attack_record(AUTOATTACK, 256, 0) == {"method": "autoattack", "points": 256, "seed": 0,
                                                "version": "standard", "iterations": 100,
                                                "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"]}
    quick = attack_record({**AUTOATTACK, "version": ["square", "apgd-ce"], "iterations": 5}, 4, 1)
    assert quick["version"] == "custom" and quick["attacks"] == ["apgd-ce", "square"] and quick["iterations"] == 5
