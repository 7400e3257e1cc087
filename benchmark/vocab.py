"""Shared names: the vocabulary of datasets, roles, sources, perturbations, attacks and architectures.

A leaf with no imports, so that validating params.yaml and installing a published checkpoint
need no torch (importing torch costs seconds per process, and a pipeline stage per model pays
it once per model).  The modules that implement these names import them from here.
"""

DATASETS = ("mnist5k", "mnist", "cifar10", "imagenet")
# dataset -> (channels, image size, classes)
DATASET_DIMS = {"mnist5k": (1, 28, 10), "mnist": (1, 28, 10), "cifar10": (3, 32, 10), "imagenet": (3, 224, 1000)}

ROLES = ("standard", "augmentation", "adversarial", "noise", "other")
SOURCES = ("local", "robustbench", "torchvision", "timm", "file")

FAMILIES = ("augmentation", "noise", "generative")
TRANSFORMS = ("rotate", "translate_x", "translate_y", "scale", "shear",
              "brightness", "contrast", "saturation", "hue")
COLOUR_ONLY = frozenset({"saturation", "hue"})

ATTACK_METHODS = ("pgd", "autoattack")
# AutoAttack's standard version, in the order it runs them; a suite may name a subset (same settings)
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")

# the leaderboard's scores, in the order of its columns (benchmark/scores.py defines them)
LEADERBOARD_SCORES = ("augmentation_invariance", "noise_suppression", "on_manifold_retention", "rank_retention",
                      "clean_acc", "robust_acc")

CLASSIFIERS = ("smallcnn", "mlp", "vit")   # local architectures a recipe can train (benchmark/models/nets.py)
# what kind of network a model is (benchmark/models/layouts.py says which class is which)
ARCHITECTURE_FAMILIES = ("convolutional", "fully-connected", "transformer")
UNLISTED_ARCHITECTURE = "unlisted architecture"      # what the reports show for a class layouts.py does not know


def shown_architecture(family: str | None) -> str:
    """A model's architecture family as the reports and the leaderboard show it."""
    return family or UNLISTED_ARCHITECTURE

# what `nfbench bench frames` times (benchmark/bench.py)
BENCH_METHODS = ("plain", "plain-cl", "grams", "engine", "engine-public", "fd", "autograd")

# how the frame engine differentiates (frames.method, and a model's own frames_method)
FRAMES_METHODS = ("jvp", "fd")

# how the frame engine lays out a convolutional model's points and tangents (frames.memory_format)
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
