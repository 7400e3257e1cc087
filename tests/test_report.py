"""Reports: tables and figures from a claims result and synthetic frame statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark import claims as C
from benchmark import report as R
from benchmark.metrics import FrameStatistics, layer_summary
from tests.conftest import synthetic_stats

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["input", "conv1", "conv2", "logits"]
LABELS = ["rotate", "scale", "noise/0", "noise/1", "vae/0"]
FAMILIES = ["augmentation", "augmentation", "noise", "noise", "generative"]


def make_stats(model_id: str, role: str, *, seed: int, factor: float = 1.0, eps: float = 0.0,
               acc: float = 0.99, points: int = 24) -> FrameStatistics:
    rng = np.random.default_rng(seed)
    n, k = len(LAYERS), len(LABELS)
    s = np.linspace(1, 2, n)[:, None, None] * np.exp(0.2 * rng.normal(size=(n, points, k)))
    s[1:] *= factor
    s[0] = 1.0
    s[2, 0, 0] = float("nan")                                   # an undefined point, as real data have
    rank = np.linspace(4.0, 2.0, n)[:, None] + 0.1 * rng.normal(size=(n, points))
    return synthetic_stats(model_id, s, rank, layers=LAYERS, labels=LABELS, families=FAMILIES, role=role, eps=eps,
                           accuracy={"clean_acc": acc, "robust_acc": 0.2}, source="local",
                           display_name=f"Model {model_id}")


def ladder_suite() -> dict:
    spec = [("std", "standard", 0.0, 1.0), ("aug", "augmentation", 0.0, 0.8), ("adv1", "adversarial", 0.1, 0.7),
            ("adv2", "adversarial", 0.2, 0.5), ("adv3", "adversarial", 0.3, 0.4)]
    return {m: make_stats(m, role, seed=i, eps=eps, factor=f, acc=0.99 - eps / 10)
            for i, (m, role, eps, f) in enumerate(spec)}


@pytest.fixture(scope="module")
def stats():
    return ladder_suite()


@pytest.fixture(scope="module")
def claims(stats):
    return C.evaluate(C.load_tasks(REPO / "tasks"), stats, seed=0)


def table_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_reports_are_written_and_deterministic(tmp_path, stats, claims):
    first = R.write_reports(claims, stats, tmp_path / "a", tasks_dir=REPO / "tasks")
    second = R.write_reports(claims, stats, tmp_path / "b", tasks_dir=REPO / "tasks")
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in first)
    assert names == sorted(p.relative_to(tmp_path / "b").as_posix() for p in second)
    expected = {"claims.md", "claims.tex", "layers.md"} | {
        f"figures/{f}.{ext}" for f in ("sensitivity_augmentation", "sensitivity_noise", "sensitivity_generative",
                                       "rank", "eps_ladder") for ext in ("png", "svg")}
    assert set(names) == expected
    for name in names:
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a, name
        assert a == b, f"{name} differs between two runs"
    svg = (tmp_path / "a" / "figures" / "sensitivity_noise.svg").read_text()
    assert "<dc:date>" not in svg and "<svg" in svg
    assert (tmp_path / "a" / "figures" / "rank.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a different input gives a different figure (the bytes do depend on the data)
    other = dict(stats)
    other["std"] = make_stats("std", "standard", seed=99, factor=3.0)
    R.save_figure(R.sensitivity_figure(other, "noise"), tmp_path / "c" / "sensitivity_noise")
    assert (tmp_path / "c/sensitivity_noise.svg").read_bytes() != \
        (tmp_path / "a/figures/sensitivity_noise.svg").read_bytes()


@pytest.mark.parametrize("family", ["noise", "augmentation"])
def test_the_sensitivity_figure_draws_each_entrys_mean_over_points_and_seeds(stats, family):
    """The plotted curves, read back from the figure, against numpy's nanmean of the statistics."""
    fig = R.sensitivity_figure(stats, family)
    curves = {line.get_label(): line for line in fig.axes[0].lines if line.get_marker() == "o"}
    assert len(curves) == len(R.entries(stats))
    for entry, ids in R.entries(stats).items():
        with np.errstate(all="ignore"):
            per_model = [np.nanmean(stats[m].family(family).numpy(), axis=1) for m in ids]
        expected = np.mean(per_model, axis=0)
        depth = stats[ids[0]].depth.numpy()
        shown = expected > 0
        line = curves[R._label(stats, entry, ids)]
        np.testing.assert_allclose(line.get_xdata(), depth[shown], rtol=0, atol=0)
        np.testing.assert_allclose(line.get_ydata(), expected[shown], rtol=1e-12)


def test_claims_markdown_has_one_row_per_claim_row(tmp_path, claims):
    text = R.claims_markdown(claims, "../tasks")
    lines = table_lines(text)
    assert len(lines) == 2 + len(claims["rows"])                 # header, separator, one per row
    assert "nfbench's own" in text and "[tasks/](../tasks/)" in text
    for row, line in zip(claims["rows"], lines[2:]):
        assert row["task"] in line and row["subject"] in line and row["statistic"] in line
        assert row["verdict"] in line
        if row["value"] is not None:
            assert f"{row['value']:.3g}" in line
    verdicts = {r["verdict"] for r in claims["rows"]}
    assert "finding" in verdicts and "not run" in verdicts        # both kinds are rendered
    assert any("finding: " in line for line in lines)
    assert any("not run: no models with role noise" in line for line in lines)


def test_claims_latex_is_a_booktabs_table(claims):
    tex = R.claims_latex(claims)
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{table}"):
        assert token in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == len(claims["rows"])
    assert all(line.endswith(r"\\") and line.count(" & ") == 6 for line in body)
    assert "ε" not in tex and r"$\varepsilon$" in tex             # unicode mapped to LaTeX
    assert "_" not in tex.replace(r"\_", "")                       # underscores escaped
    assert "< " not in tex.replace("$<$", "")                       # no text-mode < (¡ in OT1)


def test_layers_markdown_and_summary_match_the_statistics(stats):
    text = R.layers_markdown(stats)
    for m in stats:
        assert f"## {m} — Model {m}" in text
    assert len(table_lines(text)) == len(stats) * (2 + len(LAYERS))
    s = layer_summary(stats)
    json.dumps(s, allow_nan=False)
    st = stats["adv2"]
    noise = st.family("noise").numpy()
    for i, layer in enumerate(LAYERS):
        assert s["adv2"][layer]["sensitivity_noise"] == pytest.approx(float(np.nanmean(noise[i])))
        assert s["adv2"][layer]["effective_rank"] == pytest.approx(float(st.rank[i].mean()))
        assert s["adv2"][layer]["depth"] == pytest.approx(float(st.depth[i]))


def test_no_ladder_figure_without_a_ladder(tmp_path):
    stats = {m: st for m, st in ladder_suite().items() if m in ("std", "aug", "adv2")}
    assert R.ladder_figure(stats) is None
    claims = C.evaluate(C.load_tasks(REPO / "tasks"), stats, seed=0)
    written = R.write_reports(claims, stats, tmp_path, tasks_dir=REPO / "tasks")
    assert not any("eps_ladder" in p.name for p in written)
    assert all(p.is_file() for p in written)


def test_an_l2_model_is_not_a_point_of_the_linf_ladder():
    """Claims and figure share one definition: an L2 model at ε = 0.5 is not on the L∞ ε scale."""
    stats = ladder_suite()
    l2 = make_stats("l2", "adversarial", seed=9, eps=0.5, factor=0.6, acc=0.9)
    l2.meta["threat_model"] = "L2"
    with_l2 = {**stats, "l2": l2}
    assert R.ladder_models(with_l2) == sorted(m for m in stats if m != "aug")
    assert C.ladder_models(with_l2) == [m for m in stats if m != "aug"]
    # without the L2 model, two ε levels are left: no ladder at all
    assert R.ladder_models({m: with_l2[m] for m in ("std", "adv1", "l2")}) == []


def test_point_bands_contain_the_mean():
    x = np.random.default_rng(0).lognormal(size=(3, 50))
    mean, lo, hi = R._point_bands(x, "k")
    assert np.allclose(mean, x.mean(1))
    assert np.all(lo < mean) and np.all(mean < hi)


def test_binomial_interval_is_wilsons():
    """Against the closed form at z = 1.96, 8 of 10: (0.4902, 0.9433) (Wilson 1927; Agresti & Coull 1998)."""
    low, high = R.binomial_interval(0.8, 10, z=1.96)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert R.binomial_interval(0.0, 256, 3.0) == (0.0, pytest.approx(9 / 265))    # Wilson at p = 0: z²/(n + z²)


AUTOATTACK = {"method": "autoattack", "version": "standard", "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"],
              "iterations": 100, "points": 256, "seed": 0}
PGD = {"method": "pgd", "steps": 10, "step_size": None, "points": 256, "seed": 0}


def test_measured_accuracy_is_flagged_when_the_published_one_is_outside_its_interval():
    """On 256 points at 3 standard errors a measured 86 % has the Wilson interval [78.3 %, 91.3 %]
    (centre (p + z²/2n)/(1 + z²/n), half-width z√(p(1−p)/n + z²/4n²)/(1 + z²/n)): a published 90 %
    agrees, and differs from a measured 80 % ([71.5 %, 86.4 %]).  A robust
    accuracy by AutoAttack standard is compared both ways; by PGD (an overestimate) one-sided."""
    stats = ladder_suite()
    cases = {"fine": (0.86, 0.5, AUTOATTACK), "off": (0.80, 0.40, AUTOATTACK), "pgd-high": (0.86, 0.62, PGD),
             "pgd-low": (0.86, 0.40, PGD), "corrupt": (0.9, None, PGD)}
    models = {}
    for i, (m, (clean, robust, attack)) in enumerate(cases.items()):
        st = models[m] = make_stats(m, "adversarial", seed=i, acc=clean)
        st.meta["accuracy"].update(n_test=256, n_attacked=256, own_threat_robust_acc=robust, attack=attack)
        st.meta["reference"] = {"clean_acc": 90.0, "robust_acc": 51.0}
    rows = {m: R.published_comparison(st.meta) for m, st in models.items()}
    low, high = rows["fine"][0]["interval"]
    assert (low, high) == (pytest.approx(0.7827, abs=1e-4), pytest.approx(0.9129, abs=1e-4))
    assert {m: [r["flagged"] for r in rs] for m, rs in rows.items()} == {
        "fine": [False, False], "off": [True, True], "pgd-high": [False, False], "pgd-low": [False, True],
        "corrupt": [False, None]}
    assert [r["attack"] for r in rows["fine"]] == ["—", "AutoAttack (standard)"]
    assert rows["pgd-high"][1]["attack"] == "PGD-10" and rows["pgd-high"][1]["one_sided"]
    text = R.layers_markdown({**stats, **models})
    assert "## Accuracy, measured and published" in text
    assert "| off      | clean_acc  | —                     | 80.00%     | [71.5%, 86.4%] | 256      | 90.00%" in text
    assert "ok (one-sided)" in text and "**differs** (one-sided)" in text and "not measured" in text
    assert "measured and published" not in R.layers_markdown(stats)    # no references: no table
