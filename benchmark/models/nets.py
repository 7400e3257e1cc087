"""The small networks trained locally: a CNN classifier and a convolutional VAE.

Both take pixels in [0, 1] (any normalisation happens inside), use no in-place operations,
and name every block so that layer names read well in frame reports.  Downloaded and imported
networks are given the same [0, 1] input by `add_pixel_normalization`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import NFBenchError, one_of
from ..vocab import CLASSIFIERS

# torchvision's ImageNet statistics, which its weights expect
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Per-channel statistics of the training images the models are meant for.
_NORMALIZATION = {
    1: ((0.1307,), (0.3081,)),                                   # MNIST
    3: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),     # CIFAR-10
}


class Normalize(nn.Module):
    """(x - mean) / std per channel, with the statistics stored as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def add_pixel_normalization(net: nn.Module, mean, std) -> nn.Module:
    """Make `net` take [0,1] pixels: a forward pre-hook applies (x − mean)/std first.

    A hook rather than a wrapper module keeps the network's own layer names (no `net.`
    prefix) in frames and reports.  The statistics are non-persistent buffers, so the state
    dict stays the network's own.
    """
    net.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
    net.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
    net.register_forward_pre_hook(
        lambda module, args: ((args[0] - module.pixel_mean.to(args[0].dtype)) / module.pixel_std.to(args[0].dtype),
                              *args[1:]))
    return net


def _normalize(in_channels: int) -> Normalize:
    mean, std = _NORMALIZATION.get(in_channels, ((0.5,) * in_channels, (0.25,) * in_channels))
    return Normalize(mean, std)


class SmallCNN(nn.Module):
    """conv(3×3)-relu-pool ×3, fc-relu, fc: 44k parameters at width 8, 28×28 input (180 kB as
    safetensors, small enough for a suite to publish dozens of seeds with the repository).

    Layers: normalize, conv1, relu1, pool1, conv2, relu2, pool2, conv3, relu3, pool3, flatten,
    fc1, relu4, fc2 (logits).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 width: int = 8, hidden: int = 128):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"SmallCNN needs an image size divisible by 4, got {image_size}")
        self.normalize = _normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.MaxPool2d(2)                      # 7×7 -> 3×3 at 28×28 (floor)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4 * width * (image_size // 8) ** 2, hidden)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)
        # Block outputs worth looking at (the logits are handled by the frame engine itself).
        self.observable_layers: list[str] = ["relu1", "pool1", "relu2", "pool2", "relu3", "pool3", "relu4"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3(self.conv3(x)))
        return self.fc2(self.relu4(self.fc1(self.flatten(x))))


class ConvVAE(nn.Module):
    """Convolutional VAE with smooth (ELU) activations, so `decode` has continuous Jacobians.

    encode(x) -> mu (posterior mean); decode(z) -> x̂ in [0, 1]; forward(x, noise) ->
    (x̂, mu, logvar), decoding mu + noise·σ (just mu when noise is None).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, latent_dim: int = 12,
                 width: int = 16, hidden: int = 256):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"ConvVAE needs an image size divisible by 4, got {image_size}")
        self.latent_dim = latent_dim
        self._grid = (2 * width, image_size // 4, image_size // 4)
        flat = 2 * width * (image_size // 4) ** 2
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.ELU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ELU(),
            nn.Flatten(), nn.Linear(flat, hidden), nn.ELU(),
        )
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder_fc = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ELU(), nn.Linear(hidden, flat), nn.ELU(),
        )
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ELU(),
            nn.ConvTranspose2d(width, in_channels, 4, stride=2, padding=1), nn.Sigmoid(),
        )

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_stats(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder_fc(z).reshape(z.shape[0], *self._grid)
        return self.decoder_conv(h)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        mu, logvar = self.encode_stats(x)
        z = mu if noise is None else mu + noise * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


ARCHITECTURES: dict[str, type] = {"smallcnn": SmallCNN, "convvae": ConvVAE}
assert set(CLASSIFIERS) <= set(ARCHITECTURES)


def build(arch: str, **kwargs) -> nn.Module:
    """Instantiate an architecture by name (keyword arguments go to its constructor)."""
    if arch not in ARCHITECTURES:
        raise NFBenchError(one_of(arch, ARCHITECTURES, "architecture"))
    return ARCHITECTURES[arch](**kwargs)
