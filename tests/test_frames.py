"""The frame engine against independent computations: finite differences, closed forms, symmetries."""

import math

import pytest
import torch
from torch import nn

from benchmark.errors import NFBenchError
from benchmark.frame_result import FrameResult
from benchmark.frames import compute_frames, layer_point


@pytest.fixture(autouse=True)
def float64():
    """Finite differences need float64; the default dtype is restored for other test files."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def fd_grams(model, x, frame, modules, h=1e-5):
    """Grams of central differences (f(x+hv) − f(x−hv))/2h at the outputs of `modules` (what a
    module receives for `name:input`), by hand."""
    outputs = {}
    named = dict(model.named_modules())

    def hook(name, seen):
        module, at = layer_point(name)
        if at == "input":
            return named[module].register_forward_pre_hook(lambda _m, i: seen.append(i[0].detach().clone()))
        return named[module].register_forward_hook(lambda _m, _i, o: seen.append(o.detach().clone()))

    def run(inp):
        seen = []
        handles = [hook(m, seen) for m in modules]
        try:
            with torch.no_grad():
                logits = model(inp)
        finally:
            for hd in handles:
                hd.remove()
        return seen + [logits]

    model.eval()
    B, k = frame.shape[:2]
    grams = None
    for b in range(B):
        tangents = []
        for i in range(k):
            plus, minus = run(x[b:b + 1] + h * frame[b, i:i + 1]), run(x[b:b + 1] - h * frame[b, i:i + 1])
            tangents.append([((p - m) / (2 * h)).flatten() for p, m in zip(plus, minus)])
        per_layer = [torch.stack([t[depth] for t in tangents]) for depth in range(len(modules) + 1)]
        g = torch.stack([T @ T.T for T in per_layer])
        grams = g[:, None] if grams is None else torch.cat([grams, g[:, None]], dim=1)
    outputs["grams"] = grams
    return grams


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def smooth_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 6, 3, stride=2),
                         nn.Softplus(), nn.Flatten(), nn.Linear(6 * 3 * 3, 5))


def points(B=3, k=4, shape=(2, 8, 8), seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, *shape, generator=g), torch.randn(B, k, *shape, generator=g)


def test_matches_central_differences_on_a_smooth_model():
    model = smooth_cnn()
    x, v = points()
    result = compute_frames(model, x, v, ["1", "3", "4", "logits"])       # 4: a Flatten, reusing 3's Gram
    reference = fd_grams(model, x, v, ["1", "3", "4"])
    assert result.layers == ["input", "1", "3", "4", "logits"]
    assert rel_err(result.grams[1:], reference) <= 1e-5
    assert rel_err(result.grams[0], torch.einsum("bic,bjc->bij", v.flatten(2), v.flatten(2))) == 0
    norms = torch.stack([x.flatten(1).norm(dim=1)])
    assert torch.allclose(result.act_norms[0], norms[0])


@pytest.mark.parametrize("arch, kwargs", [
    ("mlp", {"width": 2}),                                                   # the fully connected family
    ("vit", {"width": 2, "patch": 4, "depth": 2, "heads": 2}),               # the transformer family
])
def test_matches_central_differences_at_the_block_outputs_of_each_architecture_family(arch, kwargs):
    from benchmark.models.nets import build

    torch.manual_seed(0)
    model = build(arch, in_channels=1, image_size=8, **kwargs)
    x, v = points(k=5, shape=(1, 8, 8))
    layers = list(model.observable_layers)
    result = compute_frames(model, x, v, [*layers, "logits"])
    assert result.layers == ["input", *layers, "logits"]
    assert rel_err(result.grams[1:], fd_grams(model, x, v, layers)) <= 1e-5


def test_linear_model_gram_is_exactly_wv_transpose_wv():
    torch.manual_seed(0)
    lin = nn.Linear(2 * 8 * 8, 7)
    model = nn.Sequential(nn.Flatten(), lin)
    x, v = points(k=5)
    result = compute_frames(model, x, v, ["logits"])
    wv = v.flatten(2) @ lin.weight.T                    # B×k×7
    assert rel_err(result.grams[-1], wv @ wv.transpose(1, 2)) < 1e-13
    assert torch.allclose(result.act_norms[-1], model(x).norm(dim=1))


class MeanFree(nn.Module):
    def forward(self, x):
        return x - x.mean(dim=(1, 2, 3), keepdim=True)


def test_mean_subtraction_makes_brightness_invisible_at_every_later_layer():
    model = nn.Sequential(MeanFree(), smooth_cnn())
    x, v = points(k=3)
    v[:, 0] = 1.0                                        # the brightness tangent
    result = compute_frames(model, x, v, "all")
    later = result.grams[1:, :, 0, 0]
    others = result.grams[1:, :, 1, 1]
    assert later.abs().max() < 1e-20 * others.abs().max() + 1e-25
    assert (others > 0).all()


def test_global_pooling_of_a_circular_convolution_ignores_circular_shifts():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("head", nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)))
    x, _ = points(k=1, shape=(1, 8, 8))
    shifts = torch.stack([torch.roll(x, s, dims=d) - x for s, d in [(1, 3), (2, 2), (-3, 3)]], dim=1)
    assert torch.allclose(model(torch.roll(x, 2, dims=3)), model(x))     # invariant by construction
    result = compute_frames(model, x, shifts, ["conv", "pool", "logits"])
    conv, pool, logits = (result.grams[result.layer_index(n)].diagonal(dim1=1, dim2=2)
                          for n in ["conv", "pool", "logits"])
    assert (conv > 1e-3).all()
    assert pool.max() < 1e-28 and logits.max() < 1e-28


def test_batchnorm_and_dropout_are_measured_in_eval_mode_and_mode_is_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Tanh(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(4 * 36, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        for bn in (model[1], model[6]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    model.train()
    x, v = points()
    result = compute_frames(model, x, v, ["1", "3", "logits"])
    assert model.training and all(m.training for m in model.modules())
    reference = fd_grams(model, x, v, ["1", "3"])            # plain eval-mode BatchNorm
    assert rel_err(result.grams[1:], reference) <= 1e-5
    assert "forward" not in model[1].__dict__                 # the affine stand-in is gone


class Residual(nn.Module):
    """Two branches into one output, with the in-place ops torchvision ResNets use."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.skip = nn.Conv2d(2, 2, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * 64, 4))

    def forward(self, x):
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        out += self.skip(x)                  # mutates conv2's output after it was observed
        return self.head(self.relu(out))     # the shared ReLU runs twice


def test_inplace_ops_and_residual_branches():
    torch.manual_seed(0)
    model = Residual()
    with torch.no_grad():
        model.skip.bias.fill_(0.5)           # keep the final ReLU alive
    x, v = points()
    result = compute_frames(model, x, v, ["conv1", "relu", "conv2", "skip", "logits"])
    assert result.layers == ["input", "conv1", "relu#0", "conv2", "skip", "relu#1", "logits"]

    def layers_without_inplace_ops(inp):     # the same function, written out by hand
        a = model.conv1(inp)
        r0 = torch.relu(a)
        c2 = model.conv2(r0)
        s = model.skip(inp)
        r1 = torch.relu(c2 + s)
        return [a, r0, c2, s, r1, model.head(r1)]

    h = 1e-6
    with torch.no_grad():
        for b in range(x.shape[0]):
            plus = [layers_without_inplace_ops(x[b:b + 1] + h * v[b, i:i + 1]) for i in range(v.shape[1])]
            minus = [layers_without_inplace_ops(x[b:b + 1] - h * v[b, i:i + 1]) for i in range(v.shape[1])]
            for layer in range(1, 7):
                t = torch.stack([(p[layer - 1] - m[layer - 1]).flatten() / (2 * h) for p, m in zip(plus, minus)])
                assert rel_err(result.grams[layer, b], t @ t.T) < 1e-5, result.layers[layer]


class ConstantBranch(nn.Module):
    """logits = head(x) + offset(1): the offset branch never sees the input."""

    def __init__(self):
        super().__init__()
        self.flatten, self.head, self.offset = nn.Flatten(), nn.Linear(128, 3), nn.Linear(128, 3)

    def forward(self, x):
        h = self.flatten(x)
        return self.head(h) + self.offset(torch.ones_like(h))


def test_a_layer_that_does_not_depend_on_the_input_has_zero_frames():
    torch.manual_seed(0)
    model = ConstantBranch()
    x, v = points()
    result = compute_frames(model, x, v, ["head", "offset", "logits"])
    offset = result.layer_index("offset")
    assert result.grams[offset].abs().max() == 0
    expected_norm = model.offset(torch.ones(1, 128)).norm()
    assert torch.allclose(result.act_norms[offset], expected_norm.expand(x.shape[0]), rtol=1e-12)
    W = model.head.weight
    for b in range(x.shape[0]):   # the logits move only through the head: (WV)ᵀ(WV)
        t = v[b].flatten(1) @ W.T
        assert rel_err(result.grams[result.layer_index("logits"), b], t @ t.T) < 1e-12


def test_vector_chunks_give_the_same_grams_as_one_pass():
    model = smooth_cnn()
    x, v = points(B=5, k=7)
    whole = compute_frames(model, x, v, "all", chunk_size=64)
    for chunk in (1, 3, 6):
        part = compute_frames(model, x, v, "all", chunk_size=chunk)
        assert rel_err(part.grams, whole.grams) < 1e-12
        assert torch.allclose(part.act_norms, whole.act_norms, rtol=1e-13, atol=0)


@pytest.mark.parametrize("memory_format, channels_last", [("channels_last", True), ("contiguous", False),
                                                           ("auto", True)])   # auto: channels-last on the CPU
def test_the_engine_runs_in_the_memory_format_asked_for_and_gives_the_same_grams(memory_format, channels_last):
    model = smooth_cnn()
    x, v = points()
    layouts = []      # whether the second convolution's input has channels innermost (stride 1)
    model[2].register_forward_pre_hook(lambda _m, inputs: layouts.append(inputs[0].stride(1) == 1))
    result = compute_frames(model, x, v, "all", memory_format=memory_format)
    assert layouts == [False, channels_last]          # the probe pass at one point, then the push
    assert result.provenance["memory_format"] == ("channels_last" if channels_last else "contiguous")
    assert rel_err(result.grams, compute_frames(model, x, v, "all", memory_format="contiguous").grams) < 1e-12


def test_an_observed_batchnorms_gram_comes_from_its_observed_convolutions_per_channel_grams(monkeypatch):
    """conv → eval BatchNorm, both observed, NCHW: the BatchNorm's Gram is Σ_c s_c² G_c of the
    convolution's per-channel Grams, no pass over its own tangent; the same Grams as reducing
    each tangent (channels-last, where a channel's coordinates are not contiguous) and as central
    differences."""
    from benchmark import frames

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.Flatten(), nn.Linear(4 * 256, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 2)
    x, v = points(shape=(2, 16, 16))
    reduced = []                      # which reduction ran, per call

    def counted(name, reduction):
        return lambda t: reduced.append(name) or reduction(t)

    for name in ("tangent_grams", "channel_grams"):
        monkeypatch.setattr(frames, name, counted(name, getattr(frames, name)))
    shared = compute_frames(model, x, v, ["0", "1", "2", "logits"], memory_format="contiguous")
    # input, logits, and per push: the conv per channel (its BatchNorm none), the ReLU whole
    assert sorted(reduced) == ["channel_grams", "tangent_grams", "tangent_grams", "tangent_grams"]
    reduced.clear()
    each = compute_frames(model, x, v, ["0", "1", "2", "logits"], memory_format="channels_last")
    assert reduced.count("tangent_grams") == 5               # channels-last: every layer reduces its own
    assert rel_err(shared.grams, each.grams) < 1e-12
    assert rel_err(shared.grams[1:4], fd_grams(model, x, v, ["0", "1", "2"])[:3]) <= 1e-5


def test_per_channel_grams_sum_to_the_gram_and_refuse_what_they_cannot_do_fast():
    from benchmark.grams import channel_grams, tangent_grams

    t = torch.randn(5, 2, 3, 16, 16)
    per_channel = channel_grams(t)
    assert per_channel.shape == (2, 3, 5, 5)
    assert rel_err(per_channel.sum(dim=1), tangent_grams(t)) < 1e-13
    s = torch.tensor([0.5, 2.0, -3.0])
    assert rel_err(torch.einsum("pcij,c->pij", per_channel, s.square()), tangent_grams(t * s.view(3, 1, 1))) < 1e-13
    assert channel_grams(torch.randn(5, 2, 3, 8, 8)) is None                     # 64 coordinates a channel
    assert channel_grams(t.movedim(2, -1).contiguous().movedim(-1, 2)) is None  # channels-last


@pytest.mark.parametrize("arguments, message", [
    ({"memory_format": "nhwc"}, r"^unknown memory format 'nhwc'; valid: auto, channels_last, contiguous$"),
    ({"method": "fdd"}, r"^unknown method 'fdd'; did you mean 'fd'\?$"),
    ({"chunk_size": 0}, r"^chunk_size must be a positive integer, got 0$"),
    ({"labels": ["a", "b"]}, r"^2 labels and 4 families given for 4 frame vectors$"),
    ({"frame": torch.zeros(3, 4, 2, 8, 7)}, r"^frame must have shape B×k×C×H×W = 3×k×2×8×8 to match the points, "
                                            r"got 3×4×2×8×7$"),
])
def test_a_wrong_argument_is_a_one_line_error_saying_what_is_valid(arguments, message):
    x, v = points()
    frame = arguments.pop("frame", v)
    with pytest.raises(NFBenchError, match=message):
        compute_frames(smooth_cnn(), x, frame, "all", **arguments)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_grams():
    model = smooth_cnn()
    x, v = points(B=5, k=7)
    cpu = compute_frames(model, x, v, "all")
    for chunk in (64, 3):                    # one push, and vector blocks pushed in pairs
        gpu = compute_frames(model.cuda(), x, v, "all", chunk_size=chunk)   # points stay on the CPU
        assert gpu.grams.device.type == "cpu" and gpu.layers == cpu.layers
        assert rel_err(gpu.grams, cpu.grams) < 1e-10
        assert torch.allclose(gpu.act_norms, cpu.act_norms, rtol=1e-12, atol=0)
    model.cpu()


def test_finite_difference_fallback_is_close_to_the_exact_frames():
    model = smooth_cnn()
    x, v = points()
    exact = compute_frames(model, x, v, "all")
    approx = compute_frames(model, x, v, "all", method="fd", fd_step=1e-5)
    assert approx.provenance["method"] == "fd"
    assert 0 < rel_err(approx.grams, exact.grams) < 1e-6


def test_float32_model_grams_are_float64_and_accurate():
    model = smooth_cnn().float()
    x, v = points()
    result = compute_frames(model, x.float(), v.float(), ["3"])
    reference = compute_frames(model.double(), x, v, ["3"])
    assert result.grams.dtype == torch.float64
    assert rel_err(result.grams, reference.grams) < 1e-5


def test_save_load_round_trip_is_exact_and_byte_stable(tmp_path):
    model = smooth_cnn()
    x, v = points()
    result = compute_frames(model, x, v, "all", labels=["rotate", "noise/0", "noise/1", "vae/0"],
                            families=["augmentation", "noise", "noise", "generative"],
                            point_ids=torch.tensor([4, 9, 11]))
    result.provenance["model"] = "test"
    result.save(tmp_path / "a.safetensors")
    loaded = FrameResult.load(tmp_path / "a.safetensors")
    for field in ("grams", "act_norms", "dims", "point_ids"):
        assert torch.equal(getattr(loaded, field), getattr(result, field))
    assert (loaded.layers, loaded.labels, loaded.families, loaded.provenance) == \
        (result.layers, result.labels, result.families, result.provenance)
    assert loaded.to_bytes() == result.to_bytes()
    assert list(tmp_path.iterdir()) == [tmp_path / "a.safetensors"]        # no temporary left


def test_dims_and_repeated_module_calls():
    model = Residual()
    x, v = points(k=2)
    result = compute_frames(model, x, v, ["relu#1", "head.1"])
    assert result.layers == ["input", "relu#1", "head.1"]
    assert result.dims.tolist() == [2 * 64, 2 * 64, 4]


class PooledHead(nn.Module):
    """Pools functionally before its classifier, as RobustBench's networks do."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.fc = nn.Conv2d(2, 5, 3, padding=1), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(torch.nn.functional.avg_pool2d(torch.tanh(self.conv(x)), 8).flatten(1))


@pytest.mark.parametrize("method", ["jvp", "fd"])
def test_the_input_of_a_module_is_observed_as_name_colon_input(method):
    """`fc:input` is the pooled vector the classifier receives, checked against finite
    differences of that vector computed by hand."""
    model = PooledHead()
    x, v = points(B=2, k=3)
    result = compute_frames(model, x, v, ["conv", "fc:input", "logits"], method=method, fd_step=1e-5)
    assert result.layers == ["input", "conv", "fc:input", "logits"]
    assert result.dims.tolist() == [2 * 64, 5 * 64, 5, 3]
    pooled = nn.Sequential(model.conv, nn.Tanh(), nn.AvgPool2d(8), nn.Flatten())
    expected = fd_grams(pooled, x, v, [])[0]
    assert rel_err(result.grams[2], expected) < 1e-6
    with pytest.raises(NFBenchError, match="did you mean 'fc'"):
        compute_frames(model, x, v, ["fcx:input"])


@pytest.mark.parametrize("layers, message", [
    (["conv2x"], "did you mean 'conv2'"),
    (["relu#5"], "called 2 times"),
])
def test_unknown_layers_are_named_with_close_matches(layers, message):
    x, v = points(k=2)
    with pytest.raises(NFBenchError, match=message):
        compute_frames(Residual(), x, v, layers)


def test_frame_shape_must_match_points():
    x, v = points()
    with pytest.raises(NFBenchError, match=r"3×k×2×8×8"):
        compute_frames(smooth_cnn(), x, v[:, :, :1], "all")


def test_nan_activation_names_the_layer():
    model = smooth_cnn()
    with torch.no_grad():
        model[2].bias[0] = math.nan
    x, v = points()
    with pytest.raises(NFBenchError, match="layer '2' has NaN/Inf"):
        compute_frames(model, x, v, "all")


class Prototypes(nn.Module):
    """Distances to learned prototypes: torch.cdist has no forward-mode AD rule."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(2 * 64, 6))
        self.prototypes = nn.Parameter(torch.randn(3, 6))

    def forward(self, x):
        return -torch.cdist(self.embed(x), self.prototypes)


def test_missing_forward_ad_rule_names_the_operator_and_the_fallback():
    x, v = points()
    with pytest.raises(NFBenchError, match=r"operator _cdist_forward.*finite-difference"):
        compute_frames(Prototypes(), x, v, "all")
    approx = compute_frames(Prototypes(), x, v, "all", method="fd")
    assert torch.isfinite(approx.grams).all()


def batchnorm_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(4 * 36, 3)).eval()
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2)
    return model


@pytest.mark.parametrize("build, layers", [
    (smooth_cnn, "all"),
    (lambda: Residual(), ["conv1", "relu", "conv2", "skip", "logits"]),   # in-place ops after observation
    (lambda: ConstantBranch(), ["head", "offset", "logits"]),             # a layer with no tangent
    (lambda: PooledHead(), ["conv", "fc:input", "logits"]),               # an observed module input
    (batchnorm_net, "all"),                                               # Flatten reuses its input's Gram
])
def test_the_public_torch_func_path_gives_the_fast_paths_frames(build, layers, monkeypatch):
    """The engine's fast path reads tangents through torch internals (benchmark/_functorch.py);
    without them it pushes the frame through public `torch.func` alone.  Both give one frame."""
    from benchmark import _functorch

    assert _functorch.AVAILABLE                       # the pinned torch: the fast path is the one in use
    torch.manual_seed(1)
    model = build()
    x, v = points()
    fast = compute_frames(model, x, v, layers)
    monkeypatch.setattr(_functorch, "AVAILABLE", False)
    public = compute_frames(model, x, v, layers)
    assert public.layers == fast.layers
    assert rel_err(public.grams, fast.grams) < 1e-13
    assert torch.allclose(public.act_norms, fast.act_norms, rtol=1e-14, atol=0)


def test_the_fast_path_is_refused_on_an_untested_torch(monkeypatch):
    from benchmark import _functorch

    monkeypatch.setattr(torch, "__version__", "9.9.0")
    assert not _functorch._available()


def _robustbench_stems():
    """RobustBench's convolutional stems (Singh et al.'s ConvStem models), at a tiny width."""
    from benchmark.models.robustbench_compat import import_robustbench

    import_robustbench()
    from robustbench.model_zoo.architectures import convstem_models

    return convstem_models


def _tiny_vit_with_a_conv_stem():
    """timm's ViT with RobustBench's ConvStem patch embedding, behind RobustBench's normalize →
    model wrapper, as Singh2023Revisiting_ViT-S-ConvStem is built."""
    import timm

    stems = _robustbench_stems()
    from robustbench.model_zoo.architectures.utils_architectures import normalize_model

    net = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=4,
                                                           num_heads=2, num_classes=5)
    net.patch_embed.proj = stems.ConvBlock(4, end_siz=4)
    return normalize_model(net, stems.IMAGENET_MEAN, stems.IMAGENET_STD)


def _tiny_convnext_with_a_conv_stem():
    import timm

    net = timm.models.convnext.ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), ls_init_value=0.5, num_classes=5)
    net.stem = _robustbench_stems().ConvBlock3(4)
    return net


def _tiny_torchvision_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    net = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=5)
    nn.init.normal_(net.heads.head.weight)        # torchvision starts the head at zero: constant logits
    return net


def _tiny_torchvision_swin():
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 2], num_heads=[2, 2], window_size=[2, 2],
                           num_classes=5)


def _tiny_torchvision_convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], layer_scale=0.5, num_classes=5)


def _tiny_timm_swin():
    import timm

    return timm.models.swin_transformer.SwinTransformer(img_size=32, patch_size=4, embed_dim=8, depths=(2, 2),
                                                        num_heads=(2, 2), window_size=2, num_classes=5)


# The ImageNet suite's transformer and ConvNeXt classes (and their siblings in torchvision and
# timm), small, random weights, 32×32 pixels: (builder, architecture family).
TINY_ARCHITECTURES = {
    "torchvision-vit": (_tiny_torchvision_vit, "transformer"),          # nn.MultiheadAttention
    "torchvision-swin": (_tiny_torchvision_swin, "transformer"),        # shifted windows
    "torchvision-convnext": (_tiny_torchvision_convnext, "convolutional"),
    "timm-vit-convstem": (_tiny_vit_with_a_conv_stem, "transformer"),   # scaled_dot_product_attention
    "timm-swin": (_tiny_timm_swin, "transformer"),
    "timm-convnext-convstem": (_tiny_convnext_with_a_conv_stem, "convolutional"),
}


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "public-path"])
@pytest.mark.parametrize("name", TINY_ARCHITECTURES)
def test_transformers_and_convnexts_match_central_differences_at_their_block_outputs(name, fast, monkeypatch):
    """Exact frames through attention (fused kernels have no forward-mode AD rule) and ConvNeXt
    blocks, observed with `layers: auto` at the block outputs layouts.py declares."""
    from benchmark import _functorch
    from benchmark.models.layouts import architecture_family, declare_block_outputs

    build, family = TINY_ARCHITECTURES[name]
    torch.manual_seed(0)
    model = declare_block_outputs(build()).eval()
    assert architecture_family(model) == family
    monkeypatch.setattr(_functorch, "AVAILABLE", fast and _functorch.AVAILABLE)
    x, v = points(B=2, k=3, shape=(3, 32, 32))
    result = compute_frames(model, x, v, "auto")
    assert result.layers == ["input", *model.observable_layers, "logits"]
    errors = [rel_err(r, ref) for r, ref in zip(result.grams[1:], fd_grams(model, x, v, model.observable_layers))]
    assert max(errors) <= 1e-5, dict(zip(result.layers[1:], errors))


class OneLogit(nn.Module):
    """A binary classifier that returns one number per point (logits of shape [B])."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Linear(3 * 36, 1)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1)).squeeze(1)


def test_a_model_with_one_number_per_point_gets_per_point_norms_and_frames():
    torch.manual_seed(0)
    model = OneLogit()
    x, v = points()
    result = compute_frames(model, x, v, ["conv", "logits"])
    logits = model(x)
    assert torch.allclose(result.act_norms[result.layer_index("logits")], logits.abs(), rtol=1e-12)
    reference = fd_grams(model, x, v, ["conv"])
    assert rel_err(result.grams[1:], reference) <= 1e-5
