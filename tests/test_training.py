"""Networks, PGD, recipe validation, deterministic training; full-model checks are marked slow."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.attacks import pgd
from benchmark.data import Dataset, load_dataset
from benchmark.errors import NFBenchError
from benchmark.models.nets import ARCHITECTURES, ConvVAE, SmallCNN, build
from benchmark.models.training import evaluate_classifier, train_classifier, train_vae
from benchmark.recipes import MAIN_EPS, RECIPES, recipe_defaults, validate_recipe, validate_vae


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist5k")


@pytest.fixture(scope="module")
def tiny(mnist5k) -> Dataset:
    """256 training and 100 test digits: enough to exercise every code path in seconds."""
    return Dataset("mnist5k-tiny", 10, (1, 28, 28), mnist5k.train.subset(torch.arange(0, 4000, 16)),
                   mnist5k.test.subset(torch.arange(0, 1000, 10)), "tiny")


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------------- networks

@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_smallcnn_shapes_and_layers(channels, size):
    model = SmallCNN(in_channels=channels, image_size=size)
    assert model(torch.rand(2, channels, size, size)).shape == (2, 10)
    names = dict(model.named_modules())
    assert model.observable_layers and all(layer in names for layer in model.observable_layers)
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_convvae_shapes_and_smooth_decoder():
    vae = ConvVAE(latent_dim=5)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        x_hat, mu, logvar = vae(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (3, 5)
    assert torch.equal(vae.encode(x), mu)
    assert 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
    assert not any(isinstance(m, nn.ReLU) for m in vae.modules())
    z, v = torch.randn(3, 5), torch.randn(3, 5)
    out, tangent = torch.func.jvp(vae.decode, (z,), (v,))    # forward-mode AD works
    h = 1e-3
    with torch.no_grad():
        fd = (vae.decode(z + h * v) - vae.decode(z - h * v)) / (2 * h)
    assert torch.allclose(tangent, fd, atol=1e-3)


def test_build_unknown_arch():
    assert isinstance(build("smallcnn"), SmallCNN) and set(ARCHITECTURES) >= {"smallcnn", "convvae"}
    with pytest.raises(NFBenchError, match="did you mean 'smallcnn'"):
        build("smalcnn")


# ---------------------------------------------------------------------------------------- PGD

def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))


@pytest.mark.parametrize("norm, eps", [("Linf", 0.1), ("L2", 0.5)])
def test_pgd_stays_in_its_ball_and_increases_loss(norm, eps):
    model = _tiny_model().train()
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(32) % 10
    x_adv = pgd(model, x, y, eps, steps=10, step_size=eps / 4, norm=norm,
                generator=torch.Generator().manual_seed(2))
    distance = (x_adv - x).flatten(1).abs().amax(1) if norm == "Linf" else (x_adv - x).flatten(1).norm(dim=1)
    assert distance.max() <= eps + 1e-6 and distance.max() > 0.9 * eps
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 0.05
    assert model.training                                           # mode restored
    assert all(p.grad is None for p in model.parameters())         # no grads left behind
    again = pgd(model, x, y, eps, steps=10, step_size=eps / 4, norm=norm,
                generator=torch.Generator().manual_seed(2))
    assert torch.equal(x_adv, again)
    assert torch.equal(pgd(model, x, y, 0.0, 10, 0.1, norm=norm), x)
    model.eval()
    pgd(model, x, y, eps, 2, 0.05, norm=norm, random_start=False)
    assert not model.training


def test_one_l2_pgd_step_on_a_linear_model_follows_the_analytic_gradient():
    """For logits Wx + b the cross-entropy gradient is Wᵀ(softmax − onehot): one L2 step from x
    (no random start, inside [0, 1] and the ball) moves exactly step_size along it."""
    torch.manual_seed(0)
    linear = nn.Linear(64, 10)
    model = nn.Sequential(nn.Flatten(), linear)
    x = 0.25 + 0.5 * torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 5, 9])
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1) - F.one_hot(y, 10)
        g = (p @ linear.weight).view_as(x)
    expected = x + 0.05 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    actual = pgd(model, x, y, 0.5, 1, 0.05, norm="L2", random_start=False)
    assert torch.allclose(actual, expected, atol=1e-6)
    with pytest.raises(ValueError, match="Linf, L2"):
        pgd(model, x, y, 0.5, 1, 0.05, norm="L1")


# ------------------------------------------------------------------------------- validation

def test_recipe_defaults_and_fill():
    for recipe in RECIPES:
        defaults = recipe_defaults(recipe)
        assert defaults["recipe"] == recipe
        assert {"arch", "seed", "epochs", "batch_size", "lr"} <= set(defaults)
        assert validate_recipe({"recipe": recipe}, "models.x") == defaults
    assert validate_recipe({}, "m")["recipe"] == "standard"
    assert recipe_defaults("adversarial")["eps"] == MAIN_EPS
    spec = validate_recipe({"recipe": "adversarial", "eps": 0.3, "lr": 1, "step_size": None}, "m")
    assert spec["eps"] == 0.3 and spec["lr"] == 1.0 and isinstance(spec["lr"], float)
    assert set(recipe_defaults("augmentation")) >= {"rotate_deg", "translate_px", "scale_range"}
    assert "sigma" in recipe_defaults("noise")


@pytest.mark.parametrize("spec,message", [
    ({"recipe": "standard", "epoch": 3}, r"^models\.a\.epoch: unknown parameter 'epoch'; did you mean 'epochs'"),
    ({"recipe": "standard", "sigma": 0.1}, r"^models\.a\.sigma: unknown parameter 'sigma'; valid: .*seed"),
    ({"recipe": "adverserial"}, r"^models\.a\.recipe: unknown recipe 'adverserial'; did you mean 'adversarial'"),
    ({"epochs": -1}, r"^models\.a\.epochs: expected a positive integer, got -1$"),
    ({"epochs": 0}, r"^models\.a\.epochs: expected a positive integer"),
    ({"seed": True}, r"^models\.a\.seed: expected a non-negative integer, got True$"),
    ({"batch_size": 32.0}, r"^models\.a\.batch_size: expected a positive integer"),
    ({"lr": "fast"}, r"^models\.a\.lr: expected a positive number, got 'fast'$"),
    ({"recipe": "adversarial", "eps": -0.1}, r"^models\.a\.eps: expected a non-negative number"),
    ({"recipe": "augmentation", "scale_range": 1.0}, r"^models\.a\.scale_range: expected a number in \[0, 1\)"),
    ({"arch": "resnet"}, r"^models\.a\.arch: unknown architecture 'resnet'"),
])
def test_validate_recipe_errors(spec, message):
    with pytest.raises(NFBenchError, match=message):
        validate_recipe(spec, "models.a")


def test_validate_vae():
    assert validate_vae({}, "vae")["latent_dim"] > 0
    with pytest.raises(NFBenchError, match=r"^vae\.latent: unknown parameter 'latent'; did you mean 'latent_dim'"):
        validate_vae({"latent": 3}, "vae")
    with pytest.raises(NFBenchError, match=r"^vae\.beta: expected a non-negative number"):
        validate_vae({"beta": -1}, "vae")


# ------------------------------------------------------------------------------ determinism

@pytest.mark.parametrize("recipe", RECIPES)
def test_training_is_bit_identical(tiny, recipe):
    spec = {"recipe": recipe, "epochs": 1, "batch_size": 64, "seed": 3}
    if recipe == "adversarial":
        spec["steps"] = 2
    rng = torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    a, stats = train_classifier(tiny, spec)
    b, _ = train_classifier(tiny, spec)
    assert state_equal(a, b)
    assert not a.training and all(p.grad is None for p in a.parameters())
    assert stats["seconds"] > 0 and stats["final_train_loss"] > 0
    assert torch.equal(torch.get_rng_state(), rng)                  # global RNG untouched
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    c, _ = train_classifier(tiny, {**spec, "seed": 4})
    assert not state_equal(a, c)


def test_training_ignores_the_default_dtype(tiny):
    spec = {"recipe": "noise", "epochs": 1, "seed": 2}
    a, _ = train_classifier(tiny, spec)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        b, _ = train_classifier(tiny, spec)
        vae, _ = train_vae(tiny, {"epochs": 1, "latent_dim": 2})
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert state_equal(a, b) and all(p.dtype == torch.float32 for p in b.parameters())
    assert all(p.dtype == torch.float32 for p in vae.parameters())


def test_evaluate_classifier_is_deterministic(tiny):
    model, _ = train_classifier(tiny, {"epochs": 3})     # past chance (75 %), so the attack has work to do
    first = evaluate_classifier(model, tiny, eps=(0.1, 0.3), attack={"method": "pgd", "steps": 3}, seed=1)
    second = evaluate_classifier(model, tiny, eps=(0.1, 0.3), attack={"method": "pgd", "steps": 3}, seed=1)
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert set(first) == {"clean_acc", "robust_acc@0.1", "robust_acc@0.3", "rotated_acc",
                          "translated_acc", "n_test", "n_attacked", "device", "attack"}
    assert first["attack"] == {"method": "pgd", "points": 100, "seed": 1, "steps": 3, "step_size": None}
    assert first["n_test"] == 100
    assert all(0 <= v <= 1 for k, v in first.items() if k.endswith("acc") or "@" in k)
    assert first["robust_acc@0.3"] <= first["robust_acc@0.1"] <= first["clean_acc"]


def test_an_l2_trained_model_is_also_attacked_in_l2_at_its_own_eps(tiny):
    """The suite's L∞ figure for every model, and for threat_model L2 the L2 one RobustBench publishes."""
    from benchmark.models.evaluate import evaluate

    model, _ = train_classifier(tiny, {"epochs": 3})
    params = {"attack": {"method": "pgd", "eps": 0.1, "steps": 3}, "data": {"eval_points": 40, "seed": 0}}
    l2 = evaluate(model, tiny, params, {"source": "robustbench", "threat_model": "L2", "eps": 1.5})
    linf = evaluate(model, tiny, params, {"source": "robustbench", "threat_model": "Linf", "eps": 0.1})
    assert {k for k in l2 if "@" in k} == {"robust_acc@0.1", "robust_acc_l2@1.5"}
    assert {k for k in linf if "@" in k} == {"robust_acc@0.1"}
    assert l2["robust_acc@0.1"] == linf["robust_acc@0.1"]          # the L∞ figure does not move
    assert l2["robust_acc_l2@1.5"] < l2["clean_acc"]


def test_a_suite_attacking_with_autoattack_records_it(tiny):
    """The suite's `attack` setting reaches the evaluation: AutoAttack's APGD-CE on the evaluation
    points, in L∞ at the suite's ε and in L2 at an L2 model's own, recorded beside the figures."""
    from benchmark.models.evaluate import evaluate

    model, _ = train_classifier(tiny, {"epochs": 3})
    params = {"attack": {"method": "autoattack", "eps": 0.1, "version": ["apgd-ce"], "iterations": 5},
              "data": {"eval_points": 40, "seed": 0}}
    result = evaluate(model, tiny, params, {"source": "robustbench", "threat_model": "L2", "eps": 1.5})
    assert result["attack"] == {"method": "autoattack", "version": "custom", "attacks": ["apgd-ce"],
                                "iterations": 5, "points": 40, "seed": 0}
    pgd_result = evaluate(model, tiny, {**params, "attack": {"method": "pgd", "eps": 0.1, "steps": 5}},
                          {"source": "robustbench", "threat_model": "L2", "eps": 1.5})
    for key in ("robust_acc@0.1", "robust_acc_l2@1.5"):
        assert result[key] < pgd_result["clean_acc"]
        assert result[key] <= pgd_result[key] + 2 / 40     # APGD-CE-5 is no weaker than PGD-5, up to a point or two


def test_vae_training_is_bit_identical(tiny):
    a, stats = train_vae(tiny, {"epochs": 1, "latent_dim": 4})
    b, _ = train_vae(tiny, {"epochs": 1, "latent_dim": 4})
    assert state_equal(a, b) and not a.training
    assert stats["recon_mse"] > 0 and stats["kl"] >= 0 and stats["seconds"] > 0
    assert stats["device"] == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_vae_training_and_attacks_run_on_the_gpu(tiny):
    """The suite's device is honoured: the VAE trains there (and comes back on the CPU), and the
    attack's backward passes run in deterministic mode without a missing-kernel error."""
    cpu, _ = train_vae(tiny, {"epochs": 1, "latent_dim": 4})
    gpu, stats = train_vae(tiny, {"epochs": 1, "latent_dim": 4}, device="cuda")
    assert stats["device"] == "cuda" and next(gpu.parameters()).device.type == "cpu"
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(cpu.state_dict().values(),
                                                                         gpu.state_dict().values()))
    model, _ = train_classifier(tiny, {"epochs": 1})
    on_cpu = evaluate_classifier(model, tiny, eps=(0.1,), attack={"method": "pgd", "steps": 2})
    on_gpu = evaluate_classifier(model.cuda(), tiny, eps=(0.1,), attack={"method": "pgd", "steps": 2})
    assert on_gpu["device"] == "cuda" and abs(on_gpu["clean_acc"] - on_cpu["clean_acc"]) <= 0.02


def test_imagenet_cannot_be_trained_on(tiny):
    evaluation_only = Dataset("imagenet", 1000, (3, 224, 224), None, tiny.test, "x")
    with pytest.raises(NFBenchError, match="no training split"):
        train_classifier(evaluation_only, {})


# ---------------------------------------------------------------- full models (slow, < 30 s each)

@pytest.fixture(scope="module")
def standard(mnist5k):
    model, _ = train_classifier(mnist5k, {"recipe": "standard", "seed": 0})
    return model, evaluate_classifier(model, mnist5k, eps=(MAIN_EPS,))


@pytest.mark.slow
def test_standard_model_accuracy(standard):
    _, metrics = standard
    assert metrics["clean_acc"] >= 0.97


@pytest.mark.slow
def test_augmentation_helps_on_rotated_digits(mnist5k, standard):
    model, _ = train_classifier(mnist5k, {"recipe": "augmentation", "seed": 0})
    metrics = evaluate_classifier(model, mnist5k, eps=())
    assert metrics["rotated_acc"] >= standard[1]["rotated_acc"] + 0.10
    assert metrics["translated_acc"] >= standard[1]["translated_acc"] + 0.10


@pytest.mark.slow
def test_adversarial_training_buys_robustness(mnist5k, standard):
    model, _ = train_classifier(mnist5k, {"recipe": "adversarial", "seed": 0})
    metrics = evaluate_classifier(model, mnist5k, eps=(MAIN_EPS,))
    key = f"robust_acc@{MAIN_EPS:g}"
    assert metrics[key] >= standard[1][key] + 0.5
    assert metrics["clean_acc"] >= standard[1]["clean_acc"] - 0.03


@pytest.mark.parametrize("threat, eps, expected", [
    ("L2", 0.5, ("L2", 0.5)), ("Linf", None, ("Linf", 0.1)), ("Linf", 0.1, ("Linf", 0.1)),
    ("Linf", 0.3, None), ("corruptions", None, None), (None, None, None),
])
def test_the_published_threat_is_measured_only_where_the_suite_attacks(threat, eps, expected):
    from benchmark.attacks import published_threat

    assert published_threat(threat, eps, 0.1) == expected
