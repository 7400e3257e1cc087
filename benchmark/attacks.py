"""The robustness attacks: projected gradient descent under an L∞ or an L2 budget (Madry et al.
2018), and AutoAttack (Croce & Hein 2020, the implementation RobustBench publishes its numbers with).

A suite's `attack` setting picks one (`adversarial_examples`), and `attack_record` is what is
recorded beside every robust accuracy so that two figures are compared only when measured alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from .vocab import AUTOATTACK_STANDARD

NORMS = ("Linf", "L2")
# the embedded suite's attack, and evaluate_classifier's default
PGD10 = MappingProxyType({"method": "pgd", "steps": 10, "step_size": None})
# APGD-T's and FAB-T's target classes in the standard version (at most the model's classes − 1),
# and APGD's and FAB's iterations there
_TARGET_CLASSES, _ITERATIONS = 9, 100


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


def pgd_step_size(setting: Mapping, eps: float) -> float:
    """The PGD step of an `attack` setting at radius eps: its step_size, or 2.5·eps/steps when null."""
    return setting["step_size"] if setting.get("step_size") is not None else 2.5 * eps / max(setting["steps"], 1)


def autoattack_attacks(setting: Mapping) -> tuple[str, ...]:
    """The AutoAttack attacks an `attack` setting runs: version `standard`, or its named subset."""
    version = setting.get("version", "standard")
    return AUTOATTACK_STANDARD if version == "standard" else tuple(a for a in AUTOATTACK_STANDARD if a in version)


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "Linf",
               attacks: Sequence[str] = AUTOATTACK_STANDARD, iterations: int | None = None,
               seed: int = 0) -> torch.Tensor:
    """Adversarial examples for `model` at `x` (pixels in [0, 1], N×C×H×W) from AutoAttack.

    The standard version's settings (one restart each; APGD-T and FAB-T against the 9 most likely
    other classes, fewer when the model has fewer; Square with 5,000 queries), running `attacks`
    (a subset of the standard version's, in its order) one after the other on the points still
    robust; `iterations` replaces APGD's and FAB's 100 for quick runs.  Deterministic given
    `seed`: the global random state AutoAttack reseeds is restored afterwards.  The model runs in
    eval mode (its mode is restored).
    """
    from pyautoattack import AutoAttack

    unknown = [a for a in attacks if a not in AUTOATTACK_STANDARD]
    if unknown or not attacks:
        raise ValueError(f"autoattack: attacks must be a non-empty subset of {', '.join(AUTOATTACK_STANDARD)}, "
                         f"got {list(attacks)}")
    if norm not in NORMS:
        raise ValueError(f"autoattack: norm must be one of {', '.join(NORMS)}, got {norm!r}")
    x = x.detach()
    if eps == 0 or len(x) == 0:
        return x.clone()
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            adversary = AutoAttack(model, norm=norm, eps=eps, seed=seed, device=x.device, version="standard")
            adversary.attacks_to_run = [a for a in AUTOATTACK_STANDARD if a in attacks]
            with torch.no_grad():
                targets = min(_TARGET_CLASSES, model(x[:1]).shape[1] - 1)
            adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = targets
            if iterations is not None:
                adversary.apgd.n_iter = adversary.apgd_targeted.n_iter = adversary.fab.n_iter = iterations
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv.detach()
    finally:
        model.train(was_training)


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float,
                         setting: Mapping, *, seed: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial examples at radius eps in `norm` from the attack a suite's `attack` setting names:
    PGD (`steps` steps of `pgd_step_size`, random start from `generator`) or AutoAttack (`seed`)."""
    if setting["method"] == "pgd":
        return pgd(model, x, y, eps, setting["steps"], pgd_step_size(setting, eps), norm=norm, generator=generator)
    return autoattack(model, x, y, eps, norm=norm, attacks=autoattack_attacks(setting),
                      iterations=setting.get("iterations"), seed=seed)


def attack_record(setting: Mapping, points: int, seed: int) -> dict:
    """How a model's robust accuracies were measured: the attack, its version, the points, the seed."""
    record = {"method": setting["method"], "points": points, "seed": seed}
    if setting["method"] == "pgd":
        record.update(steps=setting["steps"], step_size=setting.get("step_size"))   # null: 2.5·eps/steps
    else:
        attacks = autoattack_attacks(setting)
        record.update(version="standard" if attacks == AUTOATTACK_STANDARD else "custom", attacks=list(attacks),
                      iterations=setting.get("iterations") or _ITERATIONS)
    return record


def attack_name(record: Mapping | None) -> str:
    """How a robust accuracy was measured, for a table: PGD-10, AutoAttack (standard), AutoAttack (apgd-ce)."""
    if not record:
        return "—"
    if record["method"] == "pgd":
        return f"PGD-{record['steps']}"
    return f"AutoAttack ({record['version'] if record['version'] == 'standard' else ', '.join(record['attacks'])})"
