"""Frame specs, noise directions and decoder-Jacobian directions."""

import pytest
import torch
from torch import nn

from benchmark.errors import NFBenchError
from benchmark.perturbations import validate_spec
from benchmark.perturbations.frame import build_frame
from benchmark.perturbations.generative import decoder_directions
from benchmark.perturbations.noise import noise_directions


class LinearDecoder(nn.Module):
    """decode(z) = reshape(W z + b): its Jacobian columns are the columns of W, exactly."""

    def __init__(self, latent=4, shape=(1, 6, 6)):
        super().__init__()
        torch.manual_seed(0)
        self.shape = shape
        self.enc = nn.Linear(36, latent)
        self.dec = nn.Linear(latent, 36)

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, z):
        return self.dec(z).reshape(z.shape[0], *self.shape)


class SmoothDecoder(LinearDecoder):
    def decode(self, z):
        return torch.sigmoid(self.dec(torch.tanh(z))).reshape(z.shape[0], *self.shape)


def test_noise_is_unit_norm_and_depends_only_on_seed_and_point_id():
    x = torch.rand(4, 1, 6, 6)
    ids = torch.tensor([3, 7, 11, 12])
    v = noise_directions(x, ids, count=5, seed=9)
    assert v.shape == (4, 5, 1, 6, 6)
    assert torch.allclose(v.flatten(2).norm(dim=2), torch.ones(4, 5))
    alone = noise_directions(x[2:3], ids[2:3], count=5, seed=9)       # another batch, same point
    assert torch.equal(alone[0], v[2])
    assert not torch.allclose(noise_directions(x, ids, count=5, seed=10), v)
    assert not torch.allclose(v[0], v[1])


def test_decoder_directions_of_a_linear_decoder_are_its_weight_columns():
    ae = LinearDecoder()
    x = torch.rand(3, 1, 6, 6)
    cols = decoder_directions(x, ae)
    expected = ae.dec.weight.T.reshape(4, 1, 6, 6).detach()
    assert cols.shape == (3, 4, 1, 6, 6)
    for b in range(3):
        assert torch.allclose(cols[b], expected, atol=1e-6)


def test_decoder_directions_match_finite_differences_and_top_m_sorts_by_norm():
    ae = SmoothDecoder().double()
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    cols = decoder_directions(x, ae)
    with torch.no_grad():
        z = ae.encode(x)
        h = 1e-6
        for j in range(4):
            e = torch.zeros_like(z)
            e[:, j] = h
            fd = (ae.decode(z + e) - ae.decode(z - e)) / (2 * h)
            assert torch.allclose(cols[:, j], fd, rtol=1e-6, atol=1e-9)
    top = decoder_directions(x, ae, count=2)
    norms = cols.flatten(2).norm(dim=2)
    for b in range(2):
        best = norms[b].argsort(descending=True)[:2]
        assert torch.equal(top[b], cols[b, best])
    with pytest.raises(NFBenchError, match="exceeds the autoencoder's latent dimension 4"):
        decoder_directions(x, ae, count=5)


def test_build_frame_orders_families_and_labels():
    spec = {"generative": {"model": "vae", "count": 2}, "noise": {"count": 3, "seed": 1},
            "augmentation": {"transforms": ["rotate", "brightness"]}}
    x = torch.rand(2, 1, 6, 6)
    frame = build_frame(spec, x, torch.tensor([0, 1]), autoencoder=LinearDecoder())
    assert frame.vectors.shape == (2, 7, 1, 6, 6)
    assert frame.labels == ["rotate", "brightness", "noise/0", "noise/1", "noise/2", "vae/0", "vae/1"]
    assert frame.families == ["augmentation"] * 2 + ["noise"] * 3 + ["generative"] * 2
    assert torch.equal(frame.vectors[:, 1], torch.ones(2, 1, 6, 6))


@pytest.mark.parametrize("spec, message", [
    ({"nois": {}}, r"frame: unknown perturbation family 'nois'; did you mean 'noise'"),
    ({"noise": {"cout": 3}}, r"frame.noise: unknown parameter 'cout'; did you mean 'count'"),
    ({"noise": {"count": -2}}, r"frame.noise.count: must be a positive integer"),
    ({"augmentation": {"transforms": ["rotat"]}}, r"did you mean 'rotate'"),
    ({"augmentation": {"transforms": ["hue"]}}, r"'hue' needs colour images; this data has 1"),
    ({"generative": {"count": 2}}, r"frame.generative.model: must name the autoencoder"),
    ({}, r"frame: must be a mapping with at least one of"),
])
def test_spec_errors_name_the_key_and_the_valid_choices(spec, message):
    with pytest.raises(NFBenchError, match=message):
        validate_spec(spec, "frame", channels=1)


def test_generative_frame_needs_an_autoencoder():
    with pytest.raises(NFBenchError, match="no autoencoder was given"):
        build_frame({"generative": {"model": "vae"}}, torch.rand(1, 1, 6, 6), torch.tensor([0]))
