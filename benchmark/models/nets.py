"""The small networks trained locally: classifiers of three architecture families (a CNN, a
fully connected network and a vision transformer) and a convolutional VAE.

Both take pixels in [0, 1] (any normalisation happens inside), use no in-place operations,
and name every block so that layer names read well in frame reports.  Downloaded and imported
networks are given the same [0, 1] input by `add_pixel_normalization`.
"""

from __future__ import annotations

import math

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

    architecture_family = "convolutional"

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


class MLP(nn.Module):
    """A fully connected classifier, no spatial inductive bias: flatten, (fc-relu) ×4, fc, with
    8·width hidden units (64 at width 8: 63k parameters at 28×28).

    Its block outputs, like SmallCNN's three stages and hidden layer, are three hidden layers and
    the penultimate one: relu1, relu2, relu3, relu4 (then the logits).
    """

    architecture_family = "fully-connected"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 8):
        super().__init__()
        hidden = 8 * width
        self.normalize = _normalize(in_channels)
        self.flatten = nn.Flatten()
        sizes = [in_channels * image_size ** 2] + [hidden] * 4
        for i in range(1, 5):
            setattr(self, f"fc{i}", nn.Linear(sizes[i - 1], sizes[i]))
            setattr(self, f"relu{i}", nn.ReLU())
        self.fc5 = nn.Linear(hidden, num_classes)
        self.observable_layers: list[str] = ["relu1", "relu2", "relu3", "relu4"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.normalize(x))
        for i in range(1, 5):
            x = getattr(self, f"relu{i}")(getattr(self, f"fc{i}")(x))
        return self.fc5(x)


class PatchEmbedding(nn.Module):
    """Non-overlapping patch×patch patches as tokens (a strided convolution), a learned class
    token in front, learned positions added: [B, C, H, W] -> [B, 1 + (H/patch)², dim]."""

    def __init__(self, in_channels: int, dim: int, patch: int, image_size: int):
        super().__init__()
        self.project = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(0.02 * torch.randn(1, 1 + (image_size // patch) ** 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.project(x).flatten(2).transpose(1, 2)
        return torch.cat([self.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.position


class SelfAttention(nn.Module):
    """Multi-head self-attention written out in matmuls and a softmax (no fused kernel), so that
    forward-mode AD and vmap see plain differentiable operations."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"SelfAttention needs dim divisible by heads, got {dim} and {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """A pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x)) (GELU)."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassToken(nn.Module):
    """The class token of a token sequence: [B, N, dim] -> [B, dim]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class SmallViT(nn.Module):
    """A small vision transformer (Dosovitskiy et al.'s layout): 7×7 patches, 3 pre-norm blocks of
    4 heads at dim 4·width, layer norm, the class token, a linear head (29k parameters at width 8,
    28×28 input).

    Its block outputs, like SmallCNN's stages: the patch embedding, each block, and the class
    token after the final norm (the penultimate representation): embed, blocks.0, blocks.1,
    blocks.2, pool (then the logits).
    """

    architecture_family = "transformer"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 8,
                 patch: int = 7, depth: int = 3, heads: int = 4):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"SmallViT needs an image size divisible by its patch size {patch}, got {image_size}")
        dim = 4 * width
        self.normalize = _normalize(in_channels)
        self.embed = PatchEmbedding(in_channels, dim, patch, image_size)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, 2 * dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.pool = ClassToken()
        self.head = nn.Linear(dim, num_classes)
        self.observable_layers: list[str] = ["embed", *(f"blocks.{i}" for i in range(depth)), "pool"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.norm(self.blocks(self.embed(self.normalize(x))))))


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


ARCHITECTURES: dict[str, type] = {"smallcnn": SmallCNN, "mlp": MLP, "vit": SmallViT, "convvae": ConvVAE}
assert set(CLASSIFIERS) <= set(ARCHITECTURES)


def build(arch: str, **kwargs) -> nn.Module:
    """Instantiate an architecture by name (keyword arguments go to its constructor)."""
    if arch not in ARCHITECTURES:
        raise NFBenchError(one_of(arch, ARCHITECTURES, "architecture"))
    return ARCHITECTURES[arch](**kwargs)
