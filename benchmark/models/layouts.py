"""What kind of network a model is, and the layers that mean the same thing across architectures.

Every architecture nfbench knows has an architecture family (vocab.ARCHITECTURE_FAMILIES:
convolutional, fully connected, transformer), which the claims compare and the reports show,
and declares its block outputs.  nfbench's own networks (nets.py) carry both as attributes
(`architecture_family`, `observable_layers`); the imported ones are declared here by class.

With `frames.layers: auto` a model is observed at the layers its architecture declares here:
the stem, every residual stage (block group), the pooled features and the logits.  So the
penultimate layer is the pooled feature vector for every suite model (not the logits, which is
what a model's last child, its classifier, would give), and relative depth — the index among
these layers — puts a WRN-28-10, a WRN-70-16, a PreAct ResNet-18 and a ResNet-50 on one axis.
Transformers and ConvNeXts join it the same way: the patch embedding (for a ViT, the tokens its
blocks receive: patches, class token, positions), four block groups (Swin's and ConvNeXt's
stages; a ViT's twelve blocks in quarters) and the pooled features.

RobustBench's networks pool functionally (`F.avg_pool2d` in `forward`), and so do the
transformers (a ViT's class token, `x[:, 0]`), so their pooled features are observed as what
the classifier receives (`<head>:input`, see frames.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from torch import nn

_RB = "robustbench.model_zoo.architectures."
_TV = "torchvision.models."
_TIMM = "timm.models."


class Architecture(NamedTuple):
    family: str                                     # one of vocab.ARCHITECTURE_FAMILIES
    blocks: Callable[[nn.Module], list[str]]        # the block outputs of a network, in execution order


_CONV = "convolutional"
_TRANSFORMER = "transformer"


def _quarters(path: str, blocks: nn.Module) -> list[str]:
    """The last block of each quarter of a stack of transformer blocks at `path` (blocks 2, 5, 8
    and 11 of a ViT-B's twelve): four block groups, as a ResNet has four stages."""
    names = [name for name, _ in blocks.named_children()]
    ends = dict.fromkeys(math.ceil(len(names) * quarter / 4) - 1 for quarter in range(1, 5))
    return [f"{path}.{names[i]}" for i in ends]


def _odd_features(net: nn.Module) -> list[str]:
    """torchvision's Swin and ConvNeXt `features`: the stem, then each stage followed by its
    downsampling, so the stages are the odd entries."""
    return ["features.0", *(f"features.{i}" for i in range(1, len(net.features), 2))]


# (defining module, class name) -> the architecture of a network of that class or a subclass
# (RobustBench's zoo subclasses these to add input normalization).
_ARCHITECTURES: dict[tuple[str, str], Architecture] = {
    # conv1 → block1..3 → relu(bn1) → pool → fc
    (_RB + "wide_resnet", "WideResNet"): Architecture(
        _CONV, lambda net: ["conv1", "block1", "block2", "block3", "relu", "fc:input"]),
    # relu(bn1(conv1)) is functional: the stem output is what layer1 receives
    (_RB + "resnet", "ResNet"): Architecture(
        _CONV, lambda net: ["layer1:input", "layer1", "layer2", "layer3", "layer4", "linear:input"]),
    (_RB + "resnet", "PreActResNet"): Architecture(
        _CONV, lambda net: ["conv1", "layer1", "layer2", "layer3", "layer4", "linear:input"]),
    # DeepMind's WRN: init_conv → layer (block groups) → relu(batchnorm) → pool → logits
    (_RB + "dm_wide_resnet", "DMWideResNet"): Architecture(
        _CONV, lambda net: ["init_conv"] + [f"layer.{i}" for i in range(len(net.layer))] + ["relu", "logits:input"]),
    (_TV + "resnet", "ResNet"): Architecture(
        _CONV, lambda net: ["maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]),
    # tokens (patches, class token, positions) → four quarters of the blocks → the class token
    # after the final norm (taken functionally, `x[:, 0]`)
    (_TV + "vision_transformer", "VisionTransformer"): Architecture(
        _TRANSFORMER, lambda net: ["encoder.layers:input", *_quarters("encoder.layers", net.encoder.layers),
                                   "heads.head:input"]),
    (_TIMM + "vision_transformer", "VisionTransformer"): Architecture(
        _TRANSFORMER, lambda net: ["blocks:input", *_quarters("blocks", net.blocks), "head:input"]),
    # patch embedding → four stages of shifted-window blocks → the pooled, normed features
    (_TV + "swin_transformer", "SwinTransformer"): Architecture(
        _TRANSFORMER, lambda net: [*_odd_features(net), "head:input"]),
    (_TIMM + "swin_transformer", "SwinTransformer"): Architecture(
        _TRANSFORMER, lambda net: ["patch_embed", *(f"layers.{i}" for i in range(len(net.layers))), "head.fc:input"]),
    # stem → four stages → the pooled features after the head's layer norm
    (_TV + "convnext", "ConvNeXt"): Architecture(_CONV, lambda net: [*_odd_features(net), "classifier.2:input"]),
    (_TIMM + "convnext", "ConvNeXt"): Architecture(
        _CONV, lambda net: ["stem", *(f"stages.{i}" for i in range(len(net.stages))), "head.fc:input"]),
}


def _declared(net: nn.Module) -> tuple[str, Architecture, nn.Module] | None:
    """(prefix, architecture, network) of `net`'s declared class, looking through a plain
    `nn.Sequential` wrapper (RobustBench's ImageNet models: normalize → model) to the inner
    network it names `prefix`."""
    for cls in type(net).__mro__:
        architecture = _ARCHITECTURES.get((cls.__module__, cls.__name__))
        if architecture is not None:
            return "", architecture, net
    if type(net) is nn.Sequential:
        for name, child in net.named_children():
            inner = _declared(child)
            if inner is not None:
                return f"{name}.{inner[0]}", *inner[1:]
    return None


def architecture_family(net: nn.Module) -> str | None:
    """The architecture family of `net` (its own `architecture_family`, or its class's here), or
    None for a class nfbench does not know."""
    own = getattr(net, "architecture_family", None)
    if own is not None:
        return own
    declared = _declared(net)
    return declared[1].family if declared is not None else None


def block_outputs(net: nn.Module) -> list[str] | None:
    """The declared block outputs of `net`'s architecture family, or None if it has none.

    A plain `nn.Sequential` wrapper (RobustBench's ImageNet models: normalize → model) is looked
    through: its inner network's layers, with the wrapper's prefix.
    """
    declared = _declared(net)
    if declared is None:
        return None
    prefix, architecture, inner = declared
    return [prefix + layer for layer in architecture.blocks(inner)]


def declare_block_outputs(net: nn.Module) -> nn.Module:
    """Set `net.observable_layers` (what `layers: auto` observes) from its family, if known."""
    layers = block_outputs(net)
    if layers is not None:
        net.observable_layers = layers
    return net
