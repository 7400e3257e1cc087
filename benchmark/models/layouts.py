"""Layers that mean the same thing across architectures: each family's block outputs.

With `frames.layers: auto` a model is observed at the layers its architecture declares here:
the stem, every residual stage (block group), the pooled features and the logits.  So the
penultimate layer is the pooled feature vector for every suite model (not the logits, which is
what a model's last child, its classifier, would give), and relative depth — the index among
these layers — puts a WRN-28-10, a WRN-70-16, a PreAct ResNet-18 and a ResNet-50 on one axis.

RobustBench's networks pool functionally (`F.avg_pool2d` in `forward`), so their pooled
features are observed as what the classifier receives (`<head>:input`, see frames.py).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_RB = "robustbench.model_zoo.architectures."

# (defining module, class name) -> the block outputs, in execution order, of a network of that
# class or a subclass (RobustBench's zoo subclasses these to add input normalization).
_FAMILIES: dict[tuple[str, str], Callable[[nn.Module], list[str]]] = {
    # conv1 → block1..3 → relu(bn1) → pool → fc
    (_RB + "wide_resnet", "WideResNet"): lambda net: ["conv1", "block1", "block2", "block3", "relu", "fc:input"],
    # relu(bn1(conv1)) is functional: the stem output is what layer1 receives
    (_RB + "resnet", "ResNet"): lambda net: ["layer1:input", "layer1", "layer2", "layer3", "layer4", "linear:input"],
    (_RB + "resnet", "PreActResNet"): lambda net: ["conv1", "layer1", "layer2", "layer3", "layer4", "linear:input"],
    # DeepMind's WRN: init_conv → layer (block groups) → relu(batchnorm) → pool → logits
    (_RB + "dm_wide_resnet", "DMWideResNet"): lambda net: (
        ["init_conv"] + [f"layer.{i}" for i in range(len(net.layer))] + ["relu", "logits:input"]),
    ("torchvision.models.resnet", "ResNet"): lambda net: ["maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"],
}


def block_outputs(net: nn.Module) -> list[str] | None:
    """The declared block outputs of `net`'s architecture family, or None if it has none.

    A plain `nn.Sequential` wrapper (RobustBench's ImageNet models: normalize → model) is looked
    through: its inner network's layers, with the wrapper's prefix.
    """
    for cls in type(net).__mro__:
        family = _FAMILIES.get((cls.__module__, cls.__name__))
        if family is not None:
            return family(net)
    if type(net) is nn.Sequential:
        for name, child in net.named_children():
            inner = block_outputs(child)
            if inner is not None:
                return [f"{name}.{layer}" for layer in inner]
    return None


def declare_block_outputs(net: nn.Module) -> nn.Module:
    """Set `net.observable_layers` (what `layers: auto` observes) from its family, if known."""
    layers = block_outputs(net)
    if layers is not None:
        net.observable_layers = layers
    return net
