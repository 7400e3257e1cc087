"""The frame gallery: what it draws is the perturbation code's vectors at the point and the
relative sensitivities of that point's Grams, read back from the figure itself.

A tiny suite in memory (random-weight SmallCNNs and VAE, six smooth images), framed by the
engine and saved as the frames stage saves it: seconds, no pipeline run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark import gallery as G
from benchmark.errors import NFBenchError
from benchmark.frame_result import FrameResult
from benchmark.frames import compute_frames
from benchmark.models.nets import ConvVAE, SmallCNN
from benchmark.perturbations.frame import build_frame
from benchmark.stages import report as report_stage
from benchmark.storage import tensors_to_bytes, write_bytes

REPO = Path(__file__).resolve().parents[1]
SPEC = {"augmentation": {"transforms": ["rotate", "translate_x", "brightness"]},
        "noise": {"count": 3, "seed": 0}, "generative": {"model": "vae", "count": 2}}
ROLES = {"std": "standard", "aug": "augmentation", "adv": "adversarial", "noisy": "noise"}
PARAMS = {"suite": "tiny", "models": {m: {"role": r} for m, r in ROLES.items()}, "perturbations": SPEC,
          "generative": {"vae": {}}}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Points, autoencoder and the frame files of four models, as the data and frames stages write them."""
    root = tmp_path_factory.mktemp("gallery")
    torch.manual_seed(0)
    x = F.interpolate(torch.rand(6, 1, 7, 7), size=28, mode="bilinear", align_corners=False).clamp(0, 1)
    y, ids = torch.tensor([3, 1, 4, 1, 5, 9]), torch.tensor([11, 23, 35, 47, 59, 61])
    vae = ConvVAE(latent_dim=4, width=4, hidden=16).eval()
    frame = build_frame(SPEC, x, ids, vae)                          # all points at once, as the frames stage
    for model_id in ROLES:
        net = SmallCNN(width=4, hidden=16).eval()
        result = compute_frames(net, x, frame.vectors, "auto", labels=frame.labels, families=frame.families,
                                point_ids=ids)
        result.save(root / "frames" / f"{model_id}.safetensors")
    write_bytes(root / "points.safetensors", tensors_to_bytes({"x": x, "y": y, "ids": ids}, {}))
    return {"root": root, "x": x, "y": y, "ids": ids, "vae": vae, "frame": frame}


def results(suite, models=ROLES) -> dict[str, FrameResult]:
    return {m: FrameResult.load(suite["root"] / "frames" / f"{m}.safetensors") for m in models}


def independent_sensitivity(result: FrameResult, b: int) -> np.ndarray:
    """[L, k] (‖J_l v‖/‖f_l(x)‖)/(‖v‖/‖x‖) at point b, straight from its Grams (input layer first)."""
    grams, norms = result.grams[:, b].numpy(), result.act_norms[:, b].numpy()
    tangent = np.sqrt(np.einsum("lii->li", grams))
    return (tangent / norms[:, None]) / (tangent[0] / norms[0])[None, :]


def drawn(fig) -> dict[str, np.ndarray]:
    """Every image the figure draws that the gallery tagged, by its gid."""
    return {im.get_gid(): np.ma.getdata(im.get_array()) for ax in fig.axes for im in ax.images if im.get_gid()}


def test_the_figure_draws_the_perturbation_vectors_and_the_grams_sensitivities(suite):
    point = 4
    loaded = results(suite, ["std", "aug", "adv"])
    shown = G.point_gallery(point, suite["x"], suite["y"], suite["ids"], SPEC, loaded, ROLES, suite["vae"])
    images = drawn(G.gallery_figure([shown]))
    frame = suite["frame"]
    assert shown.labels == frame.labels == ["rotate", "translate_x", "brightness", "noise/0", "noise/1", "noise/2",
                                            "vae/0", "vae/1"]
    assert (shown.point_id, shown.label) == (59, 5)
    np.testing.assert_array_equal(shown.image, suite["x"][point].numpy())
    for j, label in enumerate(frame.labels):                 # each rendered vector is the perturbation code's
        expected = frame.vectors[point, j, 0].double().numpy()
        np.testing.assert_allclose(images[f"vector:{point}:{label}"], expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(shown.vectors[j, 0], expected, rtol=1e-5, atol=1e-7)
    assert np.abs(images[f"vector:{point}:brightness"] - 1).max() == 0      # a tangent of ones, exactly
    for model_id, result in loaded.items():                 # each heat map is the point's Grams' sensitivity
        expected = independent_sensitivity(result, point)
        assert expected.shape == (len(result.layers), len(frame.labels)) and np.isfinite(expected).all()
        np.testing.assert_allclose(images[f"sensitivity:{point}:{model_id}"].T, expected, rtol=1e-12)
        np.testing.assert_allclose(shown.sensitivity[shown.models.index(model_id)], expected, rtol=1e-12)
    assert shown.roles == ["standard", "augmentation", "adversarial"]
    assert np.allclose(shown.sensitivity[0][0], 1.0) and not np.allclose(shown.sensitivity[0][-1], 1.0)


def test_the_stage_reads_the_files_and_checks_the_point_and_models(suite, monkeypatch):
    monkeypatch.setattr(report_stage, "suite_autoencoder", lambda params, directory=None: suite["vae"])
    files = {"points": suite["root"] / "points.safetensors", "frames": suite["root"] / "frames"}
    shown = report_stage.frame_gallery(PARAMS, None, None, **files)
    assert [p.index for p in shown] == [1, 2, 5]               # classes 1, 4, 9: lowest, middle, highest
    assert [p.label for p in shown] == [1, 4, 9] and shown[0].models == ["std", "aug", "adv"]
    one = report_stage.frame_gallery(PARAMS, [3], ["noisy"], **files)[0]
    np.testing.assert_allclose(one.sensitivity[0], independent_sensitivity(results(suite)["noisy"], 3), rtol=1e-12)
    for bad in (6, -1):
        with pytest.raises(NFBenchError, match=r"^point -?\d is not an evaluation point: valid 0\.\.5 \(6 points in "
                                               r".*points\.safetensors\)$"):
            report_stage.frame_gallery(PARAMS, [bad], None, **files)
    with pytest.raises(NFBenchError, match=r"unknown model id 'sdt'; did you mean 'std'") as err:
        report_stage.frame_gallery(PARAMS, [0], ["sdt"], **files)
    assert "\n" not in str(err.value)


def test_show_with_a_point_outside_the_evaluation_set_is_a_one_line_error(suite, tmp_path, monkeypatch, capsys):
    from benchmark import cli

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "points.safetensors").write_bytes((suite["root"] / "points.safetensors").read_bytes())
    (tmp_path / "suites").symlink_to(REPO / "suites")
    (tmp_path / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert cli.main(["show", "6"]) == 2
    assert capsys.readouterr().err == ("nfbench: error: point 6 is not an evaluation point: valid 0..5 "
                                       "(6 points in data/points.safetensors)\n")
    assert cli.main(["show", "0", "--model", "std-s0", "vae"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nfbench: error: unknown model id 'vae'") and err.count("\n") == 1


def test_a_frame_file_of_other_vectors_is_refused(suite):
    loaded = results(suite, ["std"])
    other = {**SPEC, "noise": {"count": 2, "seed": 0}}
    with pytest.raises(NFBenchError, match="are of other vectors"):
        G.point_gallery(0, suite["x"], suite["y"], suite["ids"], other, loaded, ROLES, suite["vae"])
    with pytest.raises(NFBenchError, match="at other points"):
        G.point_gallery(0, suite["x"][:5], suite["y"][:5], suite["ids"][:5], SPEC, loaded, ROLES, suite["vae"])


def test_the_gallery_files_are_deterministic(suite, tmp_path):
    shown = [G.point_gallery(i, suite["x"], suite["y"], suite["ids"], SPEC, results(suite, ["std", "adv"]), ROLES,
                             suite["vae"]) for i in (0, 5)]
    first = G.write_gallery(shown, tmp_path / "a" / "g.png")
    second = G.write_gallery(shown, tmp_path / "b" / "g.png")
    assert [p.name for p in first] == ["g.png", "g.svg"]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))
    assert first[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_models_and_report_points():
    assert G.default_models({"a": "noise", "s1": "standard", "s2": "standard", "v": "adversarial"}) == ["s1", "v"]
    assert G.report_points([2, 7, 0, 7, 2, 0]) == [2, 0, 1]          # first of classes 0, 2, 7
    assert G.report_points(np.arange(10).repeat(3)) == [0, 12, 27]   # MNIST order: digits 0, 4, 9
