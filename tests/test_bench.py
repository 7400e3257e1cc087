"""The benchmark's methods compute the same Grams, so its timings compare like with like."""

import pytest
import torch

from benchmark.bench import Case, run_method, time_methods


@pytest.mark.parametrize("layers", ["all", "auto"])
def test_autograd_alternative_gives_the_engines_grams_on_the_same_layers(layers):
    case = Case("smallcnn", 8, points=2, vectors=3, layers=layers)
    model, x, v = case.build()
    engine = run_method(case, "engine", model, x, v)
    autograd = run_method(case, "autograd", model, x, v)
    inner = engine.grams[1:-1]                       # engine adds `input` and `logits` around the layers
    assert len(autograd) == len(inner) + 1           # autograd returns the layers, then the logits
    for got, want in zip(autograd, list(inner) + [engine.grams[-1]]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_time_methods_reports_every_method_and_a_small_fd_error():
    times, fd_error = time_methods(Case("smallcnn", 8, points=2, vectors=3), repeats=1, min_seconds=0)
    assert set(times) == {"plain", "engine", "fd", "autograd"} and min(times.values()) > 0
    assert fd_error < 0.05
