"""The accuracies of a model: clean, rotated, translated, and robust under the suite's attack."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from torch import nn

from ..attacks import published_threat


def evaluate(net: nn.Module, data, params: Mapping, spec: Mapping) -> dict:
    """Clean, rotated and translated accuracy, and robust accuracy under the suite's attack (PGD or
    AutoAttack, its `attack` setting) in L∞ at the suite's ε, of a model (an L2-trained one,
    threat_model L2, is also attacked in L2 at its own ε: its published figure).

    The attack runs on the suite's fixed evaluation points (a full CIFAR-10/ImageNet attack is a
    GPU job, and RobustBench publishes full-test-set AutoAttack numbers, recorded as `reference`;
    `report.published_comparison` holds them side by side); the other accuracies on the whole test
    split for local models, on the evaluation points for downloaded ones.
    """
    from ..data import eval_indices
    from .training import evaluate_classifier

    attack = params["attack"]
    ids = eval_indices(data.test.labels, params["data"]["eval_points"], params["data"]["seed"])
    points = dataclasses.replace(data, test=data.test.subset(ids))
    local = spec["source"] == "local"
    threat = published_threat(spec.get("threat_model"), spec.get("eps"), float(attack["eps"]))
    l2_eps = [threat[1]] if threat and threat[0] == "L2" else []
    result = evaluate_classifier(net, data if local else points, eps=[float(attack["eps"])], l2_eps=l2_eps,
                                 attack=attack, seed=params["data"]["seed"], attack_data=points)
    where = f"{params['data']['eval_points']} evaluation points"
    result["evaluated_on"] = "test split" if local else where
    result["attacked_on"] = where
    return result
