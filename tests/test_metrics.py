"""Metrics from Grams, checked against independent computations from explicit vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from benchmark import metrics as M
from benchmark.errors import NFBenchError
from benchmark.frame_result import FrameResult

RNG_SEED = 1234


# --------------------------------------------------------------------------------- helpers


def gram(v: np.ndarray) -> torch.Tensor:
    """v: [..., k, D] vectors as rows -> [..., k, k] float64 Gram."""
    v = np.asarray(v, dtype=np.float64)
    return torch.from_numpy(v @ np.swapaxes(v, -1, -2))


def make_result(vectors: list[np.ndarray], act_norms, layers=None, labels=None,
                families=None) -> FrameResult:
    """vectors: per layer [B, k, D_l] (layer 0 is the input); act_norms: [L, B]."""
    B, k = vectors[0].shape[:2]
    L = len(vectors)
    layers = layers or ["input"] + [f"layer{i}" for i in range(1, L)]
    return FrameResult(
        grams=torch.stack([gram(v) for v in vectors]),
        act_norms=torch.as_tensor(np.asarray(act_norms, dtype=np.float64)),
        dims=torch.tensor([v.shape[-1] for v in vectors], dtype=torch.int64),
        layers=list(layers),
        labels=list(labels or [f"v{i}" for i in range(k)]),
        families=list(families or ["custom"] * k),
        point_ids=torch.arange(B))


def random_setup(seed=RNG_SEED, B=3, k=5, dims=(12, 20, 7, 9)):
    rng = np.random.default_rng(seed)
    vectors = [rng.normal(size=(B, k, d)) * rng.uniform(0.1, 5.0, size=(B, k, 1)) for d in dims]
    acts = [rng.normal(size=(B, d)) for d in dims]     # f_l(x_b) themselves
    norms = np.stack([np.linalg.norm(a, axis=-1) for a in acts])
    return vectors, norms


def qr_log_volume(v: np.ndarray) -> float:
    """log of the k-volume spanned by the rows of v, via QR of vᵀ: Σ log|R_ii|."""
    r = np.linalg.qr(v.T, mode="r")
    return float(np.sum(np.log(np.abs(np.diag(r)))))


def participation_ratio(g: np.ndarray) -> float:
    lam = np.linalg.eigvals(g).real
    return float(lam.sum() ** 2 / np.sum(lam ** 2))


def unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- sensitivity


def test_relative_sensitivity_matches_vector_norms():
    vectors, norms = random_setup()
    result = make_result(vectors, norms)
    s = M.relative_sensitivity(result)
    assert s.shape == (4, 3, 5) and s.dtype == torch.float64
    v_in = np.linalg.norm(vectors[0], axis=-1)                       # [B, k]
    for index, v in enumerate(vectors):
        expected = (np.linalg.norm(v, axis=-1) / norms[index][:, None]) / (v_in / norms[0][:, None])
        np.testing.assert_allclose(s[index].numpy(), expected, rtol=1e-12)
    assert torch.equal(s[0], torch.ones(3, 5, dtype=torch.float64))   # exactly 1 at the input


def test_pure_rescaling_layer_has_sensitivity_one():
    vectors, norms = random_setup(k=4, dims=(10,))
    c = 3.7
    v = vectors[0]
    # layer1: f = c·x (vectors and activation both scaled); layer2: only the vectors scaled
    result = make_result([v, c * v, c * v], [norms[0], c * norms[0], norms[0]])
    s = M.relative_sensitivity(result)
    np.testing.assert_allclose(s[1].numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(s[2].numpy(), c, rtol=1e-12)


def test_sensitivity_edge_cases_are_nan_or_zero_never_inf():
    rng = np.random.default_rng(0)
    v0 = rng.normal(size=(2, 3, 6))
    v0[1, 2] = 0.0                                   # point 1: vector 2 does not move the input
    v1 = rng.normal(size=(2, 3, 6))
    v1[0, 1] = 0.0                                   # point 0: vector 1 killed by layer 1
    norms = np.array([[2.0, 3.0], [0.0, 1.5]])       # point 0: layer 1 dead (‖f_1(x)‖ = 0)
    s = M.relative_sensitivity(make_result([v0, v1], norms))
    assert not torch.isinf(s).any()
    assert torch.isnan(s[1, 0]).all()                # dead layer
    assert torch.isnan(s[:, 1, 2]).all()             # zero input vector, at every layer
    assert torch.isfinite(s[:, 1, :2]).all()
    # a killed perturbation at a live layer: 0 (check on point 1 with a killed vector)
    v1b = v1.copy()
    v1b[1, 0] = 0.0
    s2 = M.relative_sensitivity(make_result([v0, v1b], norms))
    assert s2[1, 1, 0] == 0.0
    # all-zero image: undefined elasticity
    s3 = M.relative_sensitivity(make_result([v0, v1], np.array([[0.0, 3.0], [1.0, 1.5]])))
    assert torch.isnan(s3[:, 0]).all() and torch.isfinite(s3[:, 1, :2]).all()


def test_family_and_label_sensitivity():
    vectors, norms = random_setup(k=5)
    families = ["augmentation", "noise", "augmentation", "generative", "noise"]
    labels = ["rotate", "noise/0", "translate", "vae/0", "noise/1"]
    result = make_result(vectors, norms, labels=labels, families=families)
    s = M.relative_sensitivity(result)
    aug = M.family_sensitivity(result, "augmentation")
    assert aug.shape == (4, 3)
    torch.testing.assert_close(aug, (s[..., 0] + s[..., 2]) / 2, rtol=1e-14, atol=0)
    torch.testing.assert_close(M.family_sensitivity(result, "generative"), s[..., 3],
                               rtol=0, atol=0)
    torch.testing.assert_close(M.label_sensitivity(result, "translate"), s[..., 2], rtol=0, atol=0)
    with pytest.raises(NFBenchError, match="'rotate'"):
        M.label_sensitivity(result, "rotat")
    with pytest.raises(NFBenchError, match="augmentation"):
        M.family_sensitivity(result, "augmentaton")


def test_family_mean_skips_undefined_vectors():
    vectors, norms = random_setup(k=3, dims=(8, 5))
    vectors[0][0, 1] = 0.0                           # point 0, vector 1: zero input vector
    result = make_result(vectors, norms, families=["a", "a", "b"])
    s = M.relative_sensitivity(result)
    fam = M.family_sensitivity(result, "a")
    torch.testing.assert_close(fam[:, 0], s[:, 0, 0], rtol=0, atol=0)
    torch.testing.assert_close(fam[:, 1], (s[:, 1, 0] + s[:, 1, 1]) / 2, rtol=1e-14, atol=0)


# ------------------------------------------------------------------------- cosine / rank


def test_cosine_matrix_matches_unit_vectors_and_zero_vectors():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(2, 3, 4, 9)) * 10.0 ** rng.uniform(-3, 3, size=(2, 3, 4, 1))
    c = M.cosine_matrix(gram(v))
    u = unit_rows(v)
    np.testing.assert_allclose(c.numpy(), u @ np.swapaxes(u, -1, -2), atol=1e-14)
    assert torch.equal(torch.diagonal(c, dim1=-2, dim2=-1), torch.ones(2, 3, 4, dtype=torch.float64))
    v[0, 0, 2] = 0.0
    c = M.cosine_matrix(gram(v))[0, 0]
    assert torch.equal(c[2], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(c[:, 2], torch.zeros(4, dtype=torch.float64))
    assert torch.isfinite(c).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_effective_rank_matches_numpy_eigvals(normalize):
    rng = np.random.default_rng(2)
    v = rng.normal(size=(3, 2, 6, 15)) * rng.uniform(0.05, 4.0, size=(3, 2, 6, 1))
    v[1, 0, 3] = v[1, 0, 1] * 2.5 + v[1, 0, 0]       # some dependent vectors
    got = M.effective_rank(gram(v), normalize=normalize)
    assert got.shape == (3, 2)
    w = unit_rows(v) if normalize else v
    for idx in np.ndindex(3, 2):
        g = w[idx] @ w[idx].T
        assert got[idx].item() == pytest.approx(participation_ratio(g), rel=1e-12)
    assert ((got >= 1 - 1e-12) & (got <= 6 + 1e-12)).all()


def test_effective_rank_analytic_cases():
    k = 5
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(12, k)))
    ortho = q.T                                       # k orthonormal rows
    assert M.effective_rank(gram(ortho)).item() == pytest.approx(k, rel=1e-12)
    assert M.effective_rank(gram(ortho), normalize=False).item() == pytest.approx(k, rel=1e-12)
    parallel = np.outer(np.array([1.0, -2.0, 0.3, 5.0, 1.0]), np.arange(1.0, 13.0))
    assert M.effective_rank(gram(parallel)).item() == pytest.approx(1.0, rel=1e-12)
    assert M.effective_rank(gram(parallel), normalize=False).item() == pytest.approx(1.0, rel=1e-12)
    zero = np.zeros((k, 12))
    assert M.effective_rank(gram(zero)).item() == 0.0
    assert M.effective_rank(gram(zero), normalize=False).item() == 0.0
    # normalisation: orthogonal vectors of very different lengths span 2 directions
    skew = np.diag([1.0, 1e-3])
    assert M.effective_rank(gram(skew)).item() == pytest.approx(2.0, rel=1e-12)
    assert M.effective_rank(gram(skew), normalize=False).item() == pytest.approx(
        (1 + 1e-6) ** 2 / (1 + 1e-12), rel=1e-12)
    # a zero vector does not count as a direction
    assert M.effective_rank(gram(np.vstack([ortho[:3], np.zeros((1, 12))]))).item() == \
        pytest.approx(3.0, rel=1e-12)


# ----------------------------------------------------------------------------------- volume


@pytest.mark.parametrize("normalize", [True, False])
def test_log_volume_matches_qr(normalize):
    rng = np.random.default_rng(4)
    v = rng.normal(size=(2, 3, 5, 11)) * 10.0 ** rng.uniform(-2, 2, size=(2, 3, 5, 1))
    got = M.log_volume(gram(v), normalize=normalize)
    assert got.shape == (2, 3)
    w = unit_rows(v) if normalize else v
    for idx in np.ndindex(2, 3):
        assert got[idx].item() == pytest.approx(qr_log_volume(w[idx]), rel=1e-10, abs=1e-10)
    if normalize:
        assert (got <= 1e-12).all()


def test_log_volume_analytic_cases():
    k = 4
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(9, k)))
    ortho = q.T
    assert M.log_volume(gram(ortho)).item() == pytest.approx(0.0, abs=1e-12)
    assert M.log_volume(gram(ortho), normalize=False).item() == pytest.approx(0.0, abs=1e-12)
    lengths = np.array([2.0, 0.5, 1e-6, 30.0])
    scaled = ortho * lengths[:, None]
    assert M.log_volume(gram(scaled)).item() == pytest.approx(0.0, abs=1e-12)
    assert M.log_volume(gram(scaled), normalize=False).item() == pytest.approx(
        np.log(lengths).sum(), rel=1e-12)
    parallel = np.outer(np.array([1.0, -2.0, 0.3, 5.0]), np.arange(1.0, 10.0))
    for normalize in (True, False):
        assert M.log_volume(gram(parallel), normalize=normalize).item() == -math.inf
        assert M.log_volume(gram(np.zeros((k, 9))), normalize=normalize).item() == -math.inf
        with_zero = np.vstack([ortho[:3], np.zeros((1, 9))])
        assert M.log_volume(gram(with_zero), normalize=normalize).item() == -math.inf
    # dependent but not parallel: rank 3 of 4
    dep = ortho.copy()
    dep[3] = dep[0] - 2 * dep[1]
    assert M.log_volume(gram(dep)).item() == -math.inf
    # nearly dependent but above rtol: finite and matching QR
    near = ortho.copy()
    near[3] = dep[3] + 1e-3 * ortho[3]
    assert M.log_volume(gram(near), normalize=False).item() == pytest.approx(
        qr_log_volume(near), rel=1e-8)


# ---------------------------------------------------------------------------- principal angles


def scipy_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ascending principal angles between the row spans of a and b."""
    return np.sort(scipy.linalg.subspace_angles(a.T, b.T))


def test_principal_angles_match_scipy_different_dimensions():
    rng = np.random.default_rng(6)
    k, D = 7, 10
    v = rng.normal(size=(4, k, D)) * 10.0 ** rng.uniform(-2, 2, size=(4, k, 1))
    mask_a = torch.tensor([True, True, True, False, False, False, False])
    mask_b = torch.tensor([False, False, False, True, True, False, False])
    got = M.principal_angles(gram(v), mask_a, mask_b)
    assert got.shape == (4, 2)
    for b in range(4):
        np.testing.assert_allclose(got[b].numpy(), scipy_angles(v[b, :3], v[b, 3:5]), atol=1e-8)
    # overlapping index lists: A = {0..4}, B = {3..6}: two shared vectors -> two zero angles
    got = M.principal_angles(gram(v), [0, 1, 2, 3, 4], [3, 4, 5, 6])
    assert got.shape == (4, 4)
    for b in range(4):
        np.testing.assert_allclose(got[b].numpy(), scipy_angles(v[b, :5], v[b, 3:]), atol=1e-7)
    assert (got[:, :2].abs() < 1e-6).all() and (got[:, 2:] > 1e-3).all()


def test_principal_angles_rank_deficient():
    rng = np.random.default_rng(7)
    D = 8
    a = rng.normal(size=(3, D))
    a[2] = 0.7 * a[0] - 1.3 * a[1]                   # A: 3 vectors spanning 2 dimensions
    b = rng.normal(size=(3, D))
    v = np.vstack([a, b])
    got = M.principal_angles(gram(v), [0, 1, 2], [3, 4, 5])
    assert got.shape == (2,)                         # r = min(rank A = 2, rank B = 3)
    np.testing.assert_allclose(got.numpy(), scipy_angles(a, b), atol=1e-8)
    # a zero vector in B is dropped too
    v0 = np.vstack([a, b[:2], np.zeros((1, D))])
    got0 = M.principal_angles(gram(v0), [0, 1, 2], [3, 4, 5])
    np.testing.assert_allclose(got0.numpy(), scipy_angles(a[:2], b[:2]), atol=1e-8)


def test_principal_angles_analytic_and_batched_ranks():
    rng = np.random.default_rng(8)
    D = 9
    a = rng.normal(size=(3, D))
    same = rng.normal(size=(3, 3)) @ a               # another basis of the same span
    q, _ = np.linalg.qr(rng.normal(size=(D, 5)))
    o_a, o_b = q[:, :3].T, q[:, 3:5].T * np.array([[3.0], [0.01]])  # orthogonal spans
    deficient = same.copy()
    deficient[2] = deficient[0] + deficient[1]
    v = np.stack([np.vstack([a, same]), np.vstack([o_a, o_b, np.zeros((1, D))]),
                  np.vstack([a, deficient])])
    got = M.principal_angles(gram(v), [0, 1, 2], [3, 4, 5])
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got[0].numpy(), 0.0, atol=1e-6)                 # identical spans
    np.testing.assert_allclose(got[1, :2].numpy(), math.pi / 2, atol=1e-12)    # orthogonal
    assert torch.isnan(got[1, 2])                    # rank B = 2 there: third angle missing
    np.testing.assert_allclose(got[2, :2].numpy(), 0.0, atol=1e-6)             # span ⊂ span
    assert torch.isnan(got[2, 2])
    assert (got[~torch.isnan(got)] >= 0).all() and (got[~torch.isnan(got)] <= math.pi / 2).all()
    # ascending where defined (random case)
    r = M.principal_angles(gram(rng.normal(size=(6, D))), [0, 1, 2], [3, 4, 5])
    assert (r[1:] >= r[:-1]).all() and r[-1] > 0.1


def test_principal_angles_with_family_masks_and_errors():
    vectors, norms = random_setup(k=5, dims=(12,))
    families = ["augmentation", "noise", "augmentation", "generative", "noise"]
    result = make_result(vectors, norms, families=families)
    got = M.principal_angles(result.grams, result.family_mask("augmentation"),
                             result.family_mask("noise"))
    assert got.shape == (1, 3, 2)
    for b in range(3):
        np.testing.assert_allclose(
            got[0, b].numpy(), scipy_angles(vectors[0][b, [0, 2]], vectors[0][b, [1, 4]]), atol=1e-8)
    with pytest.raises(NFBenchError, match="selects no"):
        M.principal_angles(result.grams, torch.zeros(5, dtype=torch.bool), [0])
    with pytest.raises(NFBenchError, match="5 entries"):
        M.principal_angles(result.grams, torch.ones(4, dtype=torch.bool), [0])


# -------------------------------------------------------------------------- depth / layers


def test_relative_depth_and_penultimate_index():
    vectors, norms = random_setup(dims=(6, 5, 4, 3))
    result = make_result(vectors, norms, layers=["input", "conv1", "fc", "logits"])
    torch.testing.assert_close(M.relative_depth(result),
                               torch.tensor([0.0, 1 / 3, 2 / 3, 1.0], dtype=torch.float64))
    assert M.penultimate_index(result) == 2
    no_logits = make_result(vectors, norms, layers=["input", "a", "b", "c"])
    with pytest.raises(NFBenchError, match="logits"):
        M.penultimate_index(no_logits)
    only_input = make_result(vectors[:2], norms[:2], layers=["input", "logits"])
    with pytest.raises(NFBenchError):
        M.penultimate_index(only_input)
    assert M.relative_depth(make_result(vectors[:1], norms[:1])).tolist() == [0.0]


def test_frame_statistics_agree_with_the_metrics_and_round_trip(tmp_path):
    from benchmark.metrics import FrameStatistics, frame_statistics

    torch.manual_seed(3)
    L, B, k, D = 4, 3, 5, 9
    vectors = torch.randn(L, B, k, D, dtype=torch.float64)
    grams = vectors @ vectors.transpose(-1, -2)
    result = FrameResult(grams=grams, act_norms=torch.rand(L, B, dtype=torch.float64) + 0.5,
                         dims=torch.full((L,), D), layers=["input", "a", "b", "logits"],
                         labels=["rotate", "scale", "noise/0", "noise/1", "vae/0"],
                         families=["augmentation", "augmentation", "noise", "noise", "generative"],
                         point_ids=torch.tensor([5, 6, 7]))
    stats = frame_statistics(result, {"id": "m", "role": "standard"})
    assert torch.allclose(stats.family("noise"), M.family_sensitivity(result, "noise"), equal_nan=True)
    assert torch.allclose(stats.label("scale"), M.label_sensitivity(result, "scale"))
    aug = vectors[:, :, :2]
    expected = M.effective_rank(aug @ aug.transpose(-1, -2))
    assert torch.allclose(stats.family_rank[stats.family_names.index("augmentation")], expected)
    assert stats.penultimate == 2 and stats.family_names == ["augmentation", "noise", "generative"]
    path = tmp_path / "m.safetensors"
    path.write_bytes(stats.to_bytes())
    loaded = FrameStatistics.load(path)
    assert torch.equal(loaded.sensitivity, stats.sensitivity) and loaded.meta == stats.meta
    assert loaded.to_bytes() == stats.to_bytes()


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\x08" + bytes(7) + b"{}{}{}{}",
                                     (2**40).to_bytes(8, "little") + b"{}"])
@pytest.mark.parametrize("reader", [FrameResult.load, M.FrameStatistics.load])
def test_a_damaged_file_is_a_one_line_error_naming_it(tmp_path, reader, content):
    path = tmp_path / "m.safetensors"
    path.write_bytes(content)
    with pytest.raises(NFBenchError, match=r"m\.safetensors: not a frame (statistics )?file written by nfbench") as err:
        reader(path)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == content                     # read, never rewritten
