"""Networks, PGD, recipe validation, deterministic training; full-model checks are marked slow."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.attacks import pgd_linf
from benchmark.data import Dataset, load_dataset
from benchmark.errors import NFBenchError
from benchmark.models.nets import ARCHITECTURES, ConvVAE, SmallCNN, build
from benchmark.models.recipes import MAIN_EPS, RECIPES, recipe_defaults, validate_recipe, validate_vae
from benchmark.models.training import evaluate_classifier, train_classifier, train_vae


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


def test_pgd_linf_stays_in_ball_and_increases_loss():
    model = _tiny_model().train()
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(32) % 10
    eps = 0.1
    x_adv = pgd_linf(model, x, y, eps, steps=10, step_size=0.025,
                     generator=torch.Generator().manual_seed(2))
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 0.05
    assert model.training                                           # mode restored
    assert all(p.grad is None for p in model.parameters())         # no grads left behind
    again = pgd_linf(model, x, y, eps, steps=10, step_size=0.025,
                     generator=torch.Generator().manual_seed(2))
    assert torch.equal(x_adv, again)
    assert torch.equal(pgd_linf(model, x, y, 0.0, 10, 0.1), x)
    model.eval()
    pgd_linf(model, x, y, eps, 2, 0.05, random_start=False)
    assert not model.training


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
    first = evaluate_classifier(model, tiny, eps=(0.1, 0.3), attack_steps=3, seed=1)
    second = evaluate_classifier(model, tiny, eps=(0.1, 0.3), attack_steps=3, seed=1)
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert set(first) == {"clean_acc", "robust_acc@0.1", "robust_acc@0.3", "rotated_acc",
                          "translated_acc", "n_test", "n_attacked"}
    assert first["n_test"] == 100
    assert all(0 <= v <= 1 for k, v in first.items() if k.endswith("acc") or "@" in k)
    assert first["robust_acc@0.3"] <= first["robust_acc@0.1"] <= first["clean_acc"]


def test_vae_training_is_bit_identical(tiny):
    a, stats = train_vae(tiny, {"epochs": 1, "latent_dim": 4})
    b, _ = train_vae(tiny, {"epochs": 1, "latent_dim": 4})
    assert state_equal(a, b) and not a.training
    assert stats["recon_mse"] > 0 and stats["kl"] >= 0 and stats["seconds"] > 0


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
