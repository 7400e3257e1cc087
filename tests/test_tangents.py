"""The engine's tangent rules (benchmark/tangents.py) against torch's own forward-AD rules: the
same primal and tangent for every layer type they cover, in both memory formats, with torch's
in-place semantics, and nothing of the model changed after."""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import jvp, vmap

from benchmark.grams import tangent_grams
from benchmark.tangents import as_channels_last, tangent_rules


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def push(model, x, v):
    """(primal, tangents [m, ...]) of `model` at x along the m vectors v, by vmap(jvp)."""
    with torch.no_grad():
        return vmap(lambda t: jvp(model, (x,), (t,)), out_dims=(None, 0))(v)


def compare_with_torch(model, x, v, channels_last=False):
    torch.manual_seed(0)
    model.double().eval()
    if channels_last:
        x, v = as_channels_last(x), as_channels_last(v)
    want = push(model, x, v)
    with tangent_rules(model, channels_last_weights=channels_last):
        got = push(model, x, v)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert (g - w).abs().max() <= 1e-12 * w.abs().max().clamp_min(1)


def bn(kind, channels):
    layer = kind(channels)
    with torch.no_grad():
        layer.running_mean.uniform_(-1, 1)
        layer.running_var.uniform_(0.5, 2)
        layer.weight.uniform_(0.5, 2)
        layer.bias.uniform_(-1, 1)
    return layer


IMAGE_LAYERS = [
    lambda: nn.Conv2d(3, 4, 3, padding=1),
    lambda: nn.Conv2d(3, 6, 3, stride=2, bias=False, groups=3),
    lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular", dilation=1),
    lambda: nn.Conv2d(1, 4, 3),                                  # 1 channel: the weight decides the layout
    lambda: bn(nn.BatchNorm2d, 3),
    lambda: nn.ReLU(),
    lambda: nn.ReLU(inplace=True),
    lambda: nn.MaxPool2d(2),
    lambda: nn.MaxPool2d(3, stride=2, padding=1),
    lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True, dilation=2),
    lambda: nn.AdaptiveAvgPool2d(1),
    lambda: nn.AdaptiveAvgPool2d((1, 1)),
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), bn(nn.BatchNorm2d, 4), nn.ReLU(inplace=True),
                          nn.MaxPool2d(3, 2, 1), nn.Flatten(), nn.Linear(4 * 9, 5), bn(nn.BatchNorm1d, 5)),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
@pytest.mark.parametrize("build", IMAGE_LAYERS)
def test_each_image_layer_gives_torchs_primal_and_tangent(build, channels_last):
    torch.manual_seed(1)
    layer = build()
    channels = next((m.in_channels for m in layer.modules() if isinstance(m, nn.Conv2d)), 3)
    x, v = randn(2, channels, 7, 7), randn(5, 2, channels, 7, 7)
    compare_with_torch(layer, x, v, channels_last)


def test_a_one_channel_convolution_hands_the_rest_of_the_model_channels_last_outputs():
    """A 1-channel input whose strides are valid for both layouts (as the model's own ops before
    the convolution may leave it: contiguous NCHW here) makes the convolution's output follow the
    weight: the engine's channels-last weight must make both outputs channels-last (else an MNIST
    model runs NCHW from its first layer on, the slower format on the CPU)."""
    conv = nn.Conv2d(1, 4, 3, padding=1).double().eval()
    x, v = randn(2, 1, 7, 7), randn(5, 2, 1, 7, 7)
    assert x.is_contiguous(memory_format=torch.channels_last) and x.stride(1) != 1
    with tangent_rules(conv, channels_last_weights=True):
        primal, tangents = push(conv, x, v)
    assert primal.stride(1) == 1 and primal.is_contiguous(memory_format=torch.channels_last)
    assert tangents.stride(2) == 1 and tangents[0].is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous() and conv.weight.stride(1) == 9     # the model's own weight untouched


@pytest.mark.parametrize("build, shape", [
    (lambda: nn.Conv1d(3, 4, 3, padding=2), (3, 9)),
    (lambda: nn.Conv3d(2, 3, 2), (2, 4, 4, 4)),
    (lambda: nn.Linear(6, 4), (6,)),
    (lambda: bn(nn.BatchNorm1d, 3), (3, 5)),
    (lambda: bn(nn.BatchNorm3d, 2), (2, 3, 3, 3)),
])
def test_other_layers_give_torchs_primal_and_tangent(build, shape):
    torch.manual_seed(1)
    compare_with_torch(build(), randn(2, *shape), randn(4, 2, *shape))


class Arithmetic(nn.Module):
    """A normalization by constants, a residual join in place, and a constant product."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.2, -0.1, 0.4]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.5, 2.0, 1.5]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        z = (x - self.mean) / self.std
        out = self.conv(z)
        out += z
        return torch.mul(out, self.std) + self.mean


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
def test_arithmetic_with_constants_and_in_place_residual_joins_give_torchs_tangents(channels_last):
    torch.manual_seed(2)
    compare_with_torch(Arithmetic(), randn(2, 3, 5, 5), randn(3, 2, 3, 5, 5), channels_last)


class SideEffects(nn.Module):
    """Code that relies on in-place modules and operators mutating their argument."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.shift = nn.Parameter(torch.tensor(0.3))

    def forward(self, x):
        y = x * 2.0
        kept = y - self.shift.detach().expand_as(y)     # a dual minus a constant: its own tangent
        self.relu(y)                                    # the result unused: y itself is changed
        kept += y                                       # in place, into a tensor made by a rule
        return torch.cat([y, kept], dim=1)


def test_in_place_rules_mutate_their_argument_as_torch_does_and_alias_nothing():
    torch.manual_seed(3)
    compare_with_torch(SideEffects(), randn(2, 3, 4, 4), randn(3, 2, 3, 4, 4))


class OwnConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 3.0


def test_rules_leave_subclasses_and_the_models_own_state_alone():
    torch.manual_seed(4)
    model = nn.Sequential(OwnConv(2, 3, 3), bn(nn.BatchNorm2d, 3), nn.ReLU()).double().eval()
    weights = {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()}
    x = randn(2, 2, 6, 6)
    with torch.no_grad():
        plain = model(x)
        with tangent_rules(model, channels_last_weights=True):
            assert "forward" not in model[0].__dict__                    # a subclass keeps its forward
            assert "forward" in model[1].__dict__
            inside = model(x)                                           # no tangent: the modules' own values
    torch.testing.assert_close(inside, plain, rtol=1e-14, atol=1e-14)
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert weights == {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()}
    compare_with_torch(model, x, randn(4, 2, 2, 6, 6), channels_last=True)


def test_a_dual_made_outside_the_rules_is_still_differentiated_by_them():
    """The rules read duals by the public forward-AD API, so a plain fwAD.dual_level works too."""
    torch.manual_seed(5)
    conv = nn.Conv2d(2, 3, 3).double().eval()
    x, t = randn(1, 2, 5, 5), randn(1, 2, 5, 5)
    with torch.no_grad(), fwAD.dual_level():
        want = fwAD.unpack_dual(conv(fwAD.make_dual(x, t))).tangent
        with tangent_rules(conv):
            got = fwAD.unpack_dual(conv(fwAD.make_dual(x, t))).tangent
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("channels", [3, 1])
def test_channels_last_tangents_keep_their_values_and_their_grams(channels):
    """With one channel too, the strides say channels-last (C stride 1), so oneDNN reads them so."""
    torch.manual_seed(6)
    t = randn(4, 3, channels, 6, 7)
    cl = as_channels_last(t)
    assert torch.equal(cl, t) and cl.stride()[2] == 1
    assert cl.permute(0, 1, 3, 4, 2).is_contiguous()
    assert cl[0].is_contiguous(memory_format=torch.channels_last) and as_channels_last(cl) is cl
    rows = t.flatten(2).transpose(0, 1)
    torch.testing.assert_close(tangent_grams(cl), rows @ rows.mT, rtol=1e-13, atol=0)


class ConvBatchNorm(nn.Module):
    """conv → BatchNorm → ReLU, with the convolution's output also used another way (`reuse`)."""

    def __init__(self, reuse=None):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(2, 3, 3, bias=False), bn(nn.BatchNorm2d, 3), nn.ReLU()
        self.reuse = reuse

    def forward(self, x):
        out = self.conv(x)
        if self.reuse == "before":
            scale = out.abs().mean()            # a torch call on it before the BatchNorm takes it
            return self.relu(self.bn(out)) * scale
        if self.reuse == "after":
            return self.relu(self.bn(out)) + out   # a torch call after, no module call in between
        if self.reuse == "kept":
            self.kept = out                     # still referenced at the next module call
        if self.reuse == "shape":
            assert out.shape[1] == out.size(1) == 3 and out.dim() == 4   # its metadata read, not its values
        out = self.bn(out)
        return self.relu(out)


@pytest.mark.parametrize("reuse, observed, folds", [
    (None, set(), 1), ("before", set(), 0), ("after", set(), 0), ("kept", set(), 0), ("shape", set(), 1),
    (None, {"conv"}, 0),                                                   # the engine reads the conv's output
])
def test_batchnorm_folds_into_its_convolution_only_where_nothing_else_sees_the_convolution(reuse, observed, folds):
    torch.manual_seed(7)
    model = ConvBatchNorm(reuse).double().eval()
    x, v = randn(2, 2, 6, 6), randn(4, 2, 2, 6, 6)
    want = push(model, x, v)
    with tangent_rules(model) as found:
        with found.watching(), torch.no_grad():
            model(x[:1])
        found.fold(observed, set())
        assert len(found.folded) == folds
        got = push(model, x, v)
    for g, w in zip(got, want):
        assert (g - w).abs().max() <= 1e-12 * w.abs().max()


def test_the_engine_folds_a_resnets_inner_batchnorms_and_keeps_its_frames():
    """torchvision's ResNet-18 with its stages observed: the 19 convolution → BatchNorm pairs
    inside the stages fold, the observed stem's does not; frames agree with central differences."""
    import torchvision

    from benchmark import frames, tangents

    torch.manual_seed(8)
    model = torchvision.models.resnet18(num_classes=5).double().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.load_state_dict(bn(nn.BatchNorm2d, m.num_features).double().state_dict())
    counted = []
    fold = tangents._Folds.fold

    def spy(self, *args):
        fold(self, *args)
        counted.append(len(self.folded))

    x, v = torch.rand(2, 3, 32, 32, dtype=torch.float64), randn(2, 3, 3, 32, 32)
    tangents._Folds.fold = spy
    try:
        result = frames.compute_frames(model, x, v, "auto")
    finally:
        tangents._Folds.fold = fold
    assert counted == [19]
    h = 1e-6
    with torch.no_grad():
        for b in range(2):
            point, vectors = x[b:b + 1], v[b]
            diffs = torch.stack([(model(point + h * u) - model(point - h * u)).flatten() / (2 * h)
                                 for u in vectors.split(1)])
            want = diffs @ diffs.T
            got = result.grams[result.layer_index("logits"), b]
            assert (got - want).abs().max() <= 1e-6 * want.abs().max()


class AddsIntoItsInput(nn.Module):
    """`x += …` and an in-place ReLU on the very tensor the transform was given."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x += torch.sin(x)
        return self.relu(x)


def test_which_pairs_fold_does_not_depend_on_where_python_puts_tensors():
    """A freed convolution output passes its id on to later tensors; the probe counts the uses
    of each convolution's own output, so the object allocator's state (what earlier tests left
    behind) never changes which pairs fold.  Counting uses by id, 1 probe in 6 found 15-18 of
    ResNet-18's 19 pairs."""
    import random

    import torchvision

    from benchmark.frames import resolve_layers

    model = torchvision.models.resnet18(num_classes=5).eval()
    x, pick = torch.rand(1, 3, 32, 32), random.Random(3)
    found = []
    for _ in range(60):
        kept = [torch.empty(1) for _ in range(pick.randrange(50))]    # a different allocator state each time
        with torch.no_grad(), tangent_rules(model) as folds:
            with folds.watching():
                layers = resolve_layers(model, x, "auto")
            folds.fold({layer.module for layer in layers if layer.at == "output"}, set())
        found.append(len(folds.folded))
        del kept
    assert found == [19] * 60


def test_in_place_ops_on_the_transforms_own_input_fall_back_to_torchs_rules():
    torch.manual_seed(9)
    compare_with_torch(AddsIntoItsInput(), randn(2, 3, 4, 4), randn(3, 2, 3, 4, 4))
