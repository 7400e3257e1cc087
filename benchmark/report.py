"""Tables and figures from the claims result and the per-model statistics (nothing recomputed from frames).

`write_reports` writes, under the output directory:

    claims.md        GitHub table of every claim row: value [CI], expectation, verdict
    claims.tex       the same as a booktabs LaTeX table
    layers.md        measured vs published accuracy (models with a `reference`, with the attack,
                     the points and the binomial interval of `published_comparison`); per model and layer: mean relative
                     sensitivity per family, effective rank
    figures/         PNG + SVG: per family, relative sensitivity vs relative depth (one line per
                     params.yaml entry — the mean over its seeds — coloured by role, with bootstrap
                     bands over points and seeds); effective rank vs depth; the ε-ladder
                     dose-response when the suite has a ladder

Every file is a pure function of the inputs: figures carry no dates, a fixed SVG hash salt and
fixed bootstrap seeds, so a rerun writes identical bytes.
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tabulate import tabulate

from .attacks import attack_name
from .claims import ladder_models as claims_ladder_models
from .metrics import FrameStatistics, as_float64, binomial_interval, layer_means
from .storage import write_bytes, write_text
from .vocab import shown_architecture

__all__ = ["write_reports", "claims_markdown", "claims_latex", "layers_markdown", "published_comparison",
           "sensitivity_figure", "rank_figure", "ladder_figure", "ladder_models", "save_figure"]

ROLE_COLOURS = {"standard": "#1f77b4", "augmentation": "#2ca02c", "adversarial": "#d62728",
                "noise": "#9467bd", "other": "#7f7f7f"}
_LINESTYLES = ("-", "--", ":", "-.")
_FAMILY_MARKERS = {"augmentation": "s", "noise": "o", "generative": "^"}
_BAND_SAMPLES = 1000
_LADDER_MIN_LEVELS = 3
_RC = {"svg.hashsalt": "nfbench", "svg.fonttype": "path", "path.simplify": False}
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


# ---------------------------------------------------------------------------------------------
# Entry point


REPORT_FILES = ("claims.md", "claims.tex", "layers.md", "figures")


def write_reports(claims: Mapping, stats: Mapping[str, FrameStatistics], out_dir: str | Path,
                  *, tasks_dir: str | Path = "tasks", files: Mapping[str, str | Path] | None = None) -> list[Path]:
    """Write every table and figure under `out_dir` (`files`: other paths for any of REPORT_FILES);
    return the paths written, in order."""
    where = {name: Path(out_dir) / name for name in REPORT_FILES} | {k: Path(v) for k, v in (files or {}).items()}
    stats = {m: stats[m] for m in sorted(stats)}
    link = Path(os.path.relpath(Path(tasks_dir).resolve(), where["claims.md"].parent.resolve())).as_posix()
    written = []
    for name, text in (("claims.md", claims_markdown(claims, link)), ("claims.tex", claims_latex(claims)),
                       ("layers.md", layers_markdown(stats))):
        write_text(where[name], text)
        written.append(where[name])
    figures = {f"sensitivity_{f}": sensitivity_figure(stats, f) for f in _families(stats)}
    if stats:
        figures["rank"] = rank_figure(stats)
    ladder = ladder_figure(stats)
    if ladder is not None:
        figures["eps_ladder"] = ladder
    for name, fig in figures.items():
        written += save_figure(fig, where["figures"] / name)
    return written


# ---------------------------------------------------------------------------------------------
# Tables


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.3g}"


def _value_ci(row: Mapping) -> str:
    if row.get("value") is None:
        return "—"
    ci = f" [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]" if row.get("ci_low") is not None else " [—]"
    return _fmt(row["value"]) + ci


def _verdict(row: Mapping) -> str:
    v = row["verdict"]
    if v == "finding":
        rng = f" (CI: {row['category_range'].replace('..', '–')})" if row.get("category_range") else ""
        return f"finding: {row['category']}{rng}"
    if row.get("reason"):
        return f"{v}: {row['reason']}"
    return v


def _confidence_header(rows) -> str:
    levels = {r.get("confidence") for r in rows} - {None}
    return f"value [{levels.pop():.0%} CI]" if len(levels) == 1 else "value [CI]"


_HEADERS = ("claim", "subject", "statistic", "value [CI]", "expected", "verdict", "suite")


def _table_rows(claims: Mapping, claim_cell) -> list[list[str]]:
    tasks = claims.get("tasks") or {}
    return [[claim_cell(r["task"], (tasks.get(r["task"]) or {}).get("file", f"{r['task']}.yaml")),
             r["subject"], r["statistic"], _value_ci(r), r["expected"], _verdict(r), claims.get("suite", "")]
            for r in claims["rows"]]


def claims_markdown(claims: Mapping, tasks_link: str = "tasks") -> str:
    """claims.md: one table row per claim row, then each task's claim and operationalization."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    rows = [[cell(c) for c in row] for row in
            _table_rows(claims, lambda task, file: f"[{task}]({tasks_link}/{file})")]
    headers = list(_HEADERS)
    headers[3] = _confidence_header(claims["rows"])
    lines = [f"# Claims — suite `{claims.get('suite', '')}`, bootstrap seed {claims.get('seed', 0)}", "",
             f"The operationalizations are nfbench's own, not the paper's (its body is not available to us); "
             f"each claim is declared, with its statistic, threshold and margin, in [tasks/]({tasks_link}/). "
             f"Intervals are paired, hierarchical bootstrap intervals: the points, shared by every model, then "
             f"the models within a role — by seed across roles when their models are seeds of matched recipes, "
             f"within each ε when a role holds several seeds of several ε. "
             f"Verdicts: supported / not supported when the interval lies wholly on one side of "
             f"threshold ± margin, inconclusive when it straddles it; findings are reported, not tested.", "",
             tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    tasks = claims.get("tasks") or {}
    if tasks:
        lines += ["## The claims in words", ""]
        for task_id, t in tasks.items():
            lines += [f"- **{task_id}** ([{t.get('file', '')}]({tasks_link}/{t.get('file', '')})): "
                      f"{t.get('claim', '')} *Operationalization:* {t.get('operationalization', '')}"]
        lines.append("")
    return "\n".join(lines)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": "$<$", ">": "$>$", "|": r"\textbar{}"}
_LATEX_UNICODE = {"ε": r"$\varepsilon$", "≥": r"$\geq$", "≤": r"$\leq$", "−": "$-$", "×": r"$\times$",
                  "—": "---", "–": "--", "…": r"\ldots{}", "·": r"$\cdot$", "ρ": r"$\rho$", "±": r"$\pm$"}


def _latex(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return "".join(_LATEX_UNICODE.get(ch, ch) for ch in out)


def claims_latex(claims: Mapping) -> str:
    """claims.tex: a booktabs table of the claim rows (needs \\usepackage{booktabs})."""
    rows = _table_rows(claims, lambda task, file: task)
    headers = list(_HEADERS)
    headers[3] = _confidence_header(claims["rows"])
    body = [" & ".join(_latex(c) for c in row) + r" \\" for row in rows]
    return "\n".join([
        "% Generated by `nfbench report`; the operationalizations are nfbench's own (see tasks/).",
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{" + "l" * len(headers) + "}", r"\toprule",
        " & ".join(rf"\textbf{{{_latex(h)}}}" for h in headers) + r" \\", r"\midrule",
        *body, r"\bottomrule", r"\end{tabular}",
        rf"\caption{{Claims of Kvinge et al.\ (arXiv 2211.10558) as operationalized by nfbench on suite "
        rf"\texttt{{{_latex(claims.get('suite', ''))}}}: point estimates with bootstrap intervals and verdicts.}}",
        r"\label{tab:nfbench-claims}", r"\end{table}", ""])


def _families(stats: Mapping[str, FrameStatistics]) -> list[str]:
    names: dict[str, None] = {}
    for st in stats.values():
        for f in st.family_names:
            names[f] = None
    order = {"augmentation": 0, "noise": 1, "generative": 2}
    return sorted(names, key=lambda f: (order.get(f, len(order)), f))


PUBLISHED_Z = 3.0     # the binomial interval's width in standard errors (99.7 %): many rows are compared


def published_comparison(meta: Mapping) -> list[dict]:
    """A model's measured clean and robust accuracy beside its published `reference` (percent).

    The measured figures come from the suite's evaluation points, the published ones from the
    full test set (RobustBench: 10,000 or 5,000 images, AutoAttack standard; torchvision's
    weights: their top-1 on ImageNet's 50,000 validation images), so each measured value
    carries its binomial interval on the points it was measured on (`binomial_interval`) and is
    flagged only when the published value lies outside it: a flag is the first sign of a wrong
    preprocessing or a bad download.  The robust accuracy is compared only when it was measured
    under the published threat (L∞ at the suite's ε, or L2 at the model's own ε); measured with
    AutoAttack standard it is like with like, with PGD (which overestimates AutoAttack's robust
    accuracy) or a subset of AutoAttack's attacks only a published value above the interval flags.
    """
    reference, accuracy = meta.get("reference") or {}, meta.get("accuracy") or {}
    attack = accuracy.get("attack")
    rows = []
    for metric, measured_key, n_key in (("clean_acc", "clean_acc", "n_test"),
                                         ("robust_acc", "own_threat_robust_acc", "n_attacked")):
        if metric not in reference:
            continue
        published, measured, n = reference[metric] / 100, accuracy.get(measured_key), accuracy.get(n_key)
        row = {"metric": metric, "published": published, "measured": measured, "n": n, "interval": None,
               "flagged": None, "attack": attack_name(attack) if metric == "robust_acc" else "—",
               "one_sided": metric == "robust_acc" and not (attack and attack.get("version") == "standard")}
        if measured is not None and n:
            low, high = row["interval"] = binomial_interval(measured, n, PUBLISHED_Z)
            row["flagged"] = published < low and not row["one_sided"] or published > high
        rows.append(row)
    return rows


def _published_table(stats: Mapping[str, FrameStatistics]) -> list[str]:
    rows = [[m, r["metric"], r["attack"], _pct(r["measured"]), _interval(r["interval"]), str(r["n"] or "—"),
             _pct(r["published"]), {True: "**differs**", False: "ok", None: "not measured"}[r["flagged"]]
             + (" (one-sided)" if r["one_sided"] and r["flagged"] is not None else "")]
            for m in sorted(stats) for r in published_comparison(stats[m].meta)]
    if not rows:
        return []
    return ["## Accuracy, measured and published", "",
            f"Measured on the suite's evaluation points (their number: `points`), with the binomial (Wilson) "
            f"interval at {PUBLISHED_Z:g} standard errors on that many points; published on the full test set "
            f"(RobustBench: its test set under AutoAttack standard; torchvision: top-1 on ImageNet's 50,000 "
            f"validation images, at its own resize).  A published value outside the interval differs: "
            f"check the checkpoint's download and the preprocessing first.  A robust accuracy measured with PGD "
            f"or a part of AutoAttack overestimates AutoAttack's, so it differs only when below the published "
            f"value (one-sided).", "",
            tabulate(rows, headers=["model", "metric", "attack", "measured", "interval", "points", "published",
                                    "agreement"], tablefmt="github", disable_numparse=True), ""]


def _interval(interval) -> str:
    return "—" if interval is None else f"[{interval[0]:.1%}, {interval[1]:.1%}]"


def _pct(v) -> str:
    return "—" if v is None else f"{v:.2%}"


def layers_markdown(stats: Mapping[str, FrameStatistics]) -> str:
    """layers.md: measured vs published accuracy, then one table per model, one row per observed layer."""
    lines = ["# Per-layer statistics", "",
             "Mean over the evaluation points of the relative sensitivity (elasticity, 1 at the input) "
             "of each perturbation family, and of the frame's effective rank (normalized), at every "
             "observed layer.", "", *_published_table(stats)]
    for m in sorted(stats):
        st = stats[m]
        meta = st.meta
        acc = (meta.get("accuracy") or {}).get("clean_acc")
        lines += [f"## {m} — {meta.get('display_name', m)}", "",
                  f"role {meta.get('role', '?')}, {shown_architecture(meta.get('architecture'))}, "
                  f"ε = {float(meta.get('eps') or 0):g}"
                  + (f", clean accuracy {acc:.2%}" if isinstance(acc, (int, float)) else ""), ""]
        fam, rank = layer_means(st)
        rows = [[layer, f"{float(st.depth[i]):.2f}", *(_fmt(float(fam[f][i])) for f in st.family_names),
                 _fmt(float(rank[i]))] for i, layer in enumerate(st.layers)]
        lines += [tabulate(rows, headers=["layer", "depth", *st.family_names, "effective rank"],
                           tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Figures


def _point_bands(x: np.ndarray, key: str, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [S, B] -> (mean, low, high) [S]: nan-aware mean over points with a bootstrap interval."""
    return _bands(x[None], key, confidence)


def _bands(x: np.ndarray, key: str, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [n, S, B] of n models -> (mean, low, high) [S]: the mean over the models of their nan-aware
    point means, with a bootstrap interval that resamples the points (shared by the models) and,
    when there are several, the models — as the claims' intervals do."""
    n, _, b = x.shape
    rng = np.random.default_rng([0, zlib.crc32(key.encode())])
    counts = np.vstack([np.ones(b), rng.multinomial(b, np.full(b, 1 / b), size=_BAND_SAMPLES)])   # [R, B]
    ok = ~np.isnan(x)
    den = np.einsum("rb,nsb->nrs", counts, ok.astype(np.float64))
    num = np.einsum("rb,nsb->nrs", counts, np.where(ok, x, 0.0))
    means = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)                     # [n, R, S]
    drawn = np.tile(np.arange(n), (_BAND_SAMPLES + 1, 1))
    if n > 1:
        drawn[1:] = rng.integers(0, n, size=(_BAND_SAMPLES, n))
    with np.errstate(all="ignore"):
        curves = np.nanmean(means[drawn.T, np.arange(_BAND_SAMPLES + 1)[None, :]], axis=0)    # [R, S]
        alpha = 1 - confidence
        lo, hi = np.nanquantile(curves[1:], [alpha / 2, 1 - alpha / 2], axis=0) \
            if np.isfinite(curves[1:]).any() else (curves[0], curves[0])
    return curves[0], lo, hi


def entries(stats: Mapping[str, FrameStatistics]) -> dict[str, list[str]]:
    """The models by the params.yaml entry they come from (the seeds of one recipe are one entry)."""
    out: dict[str, list[str]] = {}
    for m in sorted(stats):
        out.setdefault(str(stats[m].meta.get("group") or m), []).append(m)
    return out


def _styles(stats: Mapping[str, FrameStatistics]) -> dict[str, tuple[str, str]]:
    """Entry -> (colour of its role, a line style per entry within the role)."""
    seen: dict[str, int] = {}
    out = {}
    for entry, ids in entries(stats).items():
        role = str(stats[ids[0]].meta.get("role", "other"))
        out[entry] = (ROLE_COLOURS.get(role, ROLE_COLOURS["other"]),
                      _LINESTYLES[seen.get(role, 0) % len(_LINESTYLES)])
        seen[role] = seen.get(role, 0) + 1
    return out


def _label(stats: Mapping[str, FrameStatistics], entry: str, ids: list[str]) -> str:
    meta = stats[ids[0]].meta
    eps = float(meta.get("eps") or 0)
    name = f"{entry}, {len(ids)} seeds" if len(ids) > 1 else meta.get("display_name", entry)
    return (f"{name} ({meta.get('role', '?')}, {shown_architecture(meta.get('architecture'))}"
            + (f", ε={eps:g})" if eps else ")"))


def _figure(width: float = 8.0, height: float = 4.2, **adjust):
    """A figure outside pyplot (no global state), with fixed margins (faster than a layout engine)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(**{"left": 0.12, "right": 0.66, "bottom": 0.12, "top": 0.92, **adjust})
    return fig


def _legend(ax) -> None:
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _depth_figure(stats: Mapping[str, FrameStatistics], values, key: str, positive: bool):
    """One line per entry of `values(st)` [L, B] against relative depth, with its band."""
    fig = _figure()
    ax = fig.add_subplot()
    styles = _styles(stats)
    for entry, ids in entries(stats).items():
        rows = [values(stats[m]) for m in ids]
        if any(r is None for r in rows) or len({r.shape for r in rows}) != 1:
            continue
        mean, lo, hi = _bands(np.stack(rows), f"{entry}|{key}")
        depth = as_float64(stats[ids[0]].depth)
        colour, ls = styles[entry]
        ok = np.isfinite(mean) & ((mean > 0) if positive else True)
        ax.plot(depth[ok], mean[ok], color=colour, linestyle=ls, marker="o", markersize=3,
                linewidth=1.4, label=_label(stats, entry, ids))
        band = ok & np.isfinite(lo) & np.isfinite(hi) & ((lo > 0) if positive else True)
        ax.fill_between(depth[band], lo[band], hi[band], color=colour, alpha=0.15, linewidth=0)
    if ax.lines:
        _legend(ax)
    return fig, ax


def sensitivity_figure(stats: Mapping[str, FrameStatistics], family: str):
    """Relative sensitivity of one family vs relative depth, one line per entry (the mean over its
    seeds; bands: bootstrap over points and seeds)."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, ax = _depth_figure(stats, lambda st: as_float64(st.family(family)) if family in st.family_names else None,
                                family, positive=True)
        ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        _log_y(ax)
        ax.set_xlabel("relative depth (input 0, last observed layer 1)")
        ax.set_ylabel("relative sensitivity (elasticity)")
        ax.set_title(f"{family} directions (mean over points and seeds, 95% band)")
    return fig


def rank_figure(stats: Mapping[str, FrameStatistics]):
    """Effective rank of the whole frame vs relative depth, one line per entry."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, ax = _depth_figure(stats, lambda st: as_float64(st.rank), "rank", positive=False)
        ax.set_xlabel("relative depth (input 0, last observed layer 1)")
        ax.set_ylabel("effective rank of the frame (normalized)")
        ax.set_title("frame collapse (mean over points and seeds, 95% band)")
    return fig


def ladder_models(stats: Mapping[str, FrameStatistics]) -> list[str]:
    """The ε ladder's adversarial models and the standard models of their architecture families
    (`claims.ladder_models`: L∞ only; a standard transformer is no rung of a CNNs' ladder) when
    they span ≥ 3 distinct ε, else []."""
    ids = sorted(claims_ladder_models(stats))
    families = {stats[m].meta.get("architecture") for m in ids if stats[m].meta.get("role") == "adversarial"}
    ids = [m for m in ids if stats[m].meta.get("architecture") in families]
    levels = {float(stats[m].meta.get("eps") or 0) for m in ids}
    return ids if len(levels) >= _LADDER_MIN_LEVELS else []


def ladder_figure(stats: Mapping[str, FrameStatistics]):
    """ε vs sensitivity at the logits (per family) and vs clean accuracy; None without a ladder."""
    import matplotlib

    ids = [m for m in ladder_models(stats) if "logits" in stats[m].layers]
    if len({float(stats[m].meta.get("eps") or 0) for m in ids}) < _LADDER_MIN_LEVELS:
        return None
    families = [f for f in _families({m: stats[m] for m in ids})]
    with matplotlib.rc_context(_RC):
        fig = _figure(10.0, 4.0, left=0.08, right=0.98, wspace=0.28)
        ax_s, ax_a = fig.subplots(1, 2)
        for k, family in enumerate(families):
            colour = f"C{k}"
            xs, ys = [], []
            for m in ids:
                st = stats[m]
                if family not in st.family_names:
                    continue
                i = st.layers.index("logits")
                mean, lo, hi = _point_bands(as_float64(st.family(family))[i:i + 1], f"{m}|{family}|logits")
                eps = float(st.meta.get("eps") or 0)
                if not (np.isfinite(mean[0]) and mean[0] > 0):
                    continue
                err = np.array([[max(mean[0] - lo[0], 0.0)], [max(hi[0] - mean[0], 0.0)]])
                ax_s.errorbar([eps], mean, yerr=err, color=colour, marker=_FAMILY_MARKERS.get(family, "D"),
                              markersize=4, linestyle="none", capsize=2)
                xs.append(eps)
                ys.append(mean[0])
            if xs:
                lx, ly = _level_means(xs, ys)
                ax_s.plot(lx, ly, color=colour, linewidth=1.2, label=family,
                          marker=_FAMILY_MARKERS.get(family, "D"), markersize=0)
        _log_y(ax_s)
        ax_s.set_xlabel("training ε (0: standard)")
        ax_s.set_ylabel("relative sensitivity at the logits")
        ax_s.set_title("sensitivity vs ε (models; line: mean per ε)")
        if ax_s.lines:
            ax_s.legend(fontsize=7, frameon=False, loc="lower left")
        xs, ys = [], []
        for m in ids:
            acc = (stats[m].meta.get("accuracy") or {}).get("clean_acc")
            if isinstance(acc, (int, float)):
                xs.append(float(stats[m].meta.get("eps") or 0))
                ys.append(float(acc))
        if xs:
            ax_a.plot(xs, ys, color="k", marker="o", linestyle="none", markersize=4)
            lx, ly = _level_means(xs, ys)
            ax_a.plot(lx, ly, color="k", linewidth=1.2)
        ax_a.set_xlabel("training ε (0: standard)")
        ax_a.set_ylabel("clean accuracy")
        ax_a.set_title("clean accuracy vs ε")
    return fig


def _level_means(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    levels = sorted(set(xs))
    return levels, [float(np.mean([y for x, y in zip(xs, ys) if x == e])) for e in levels]


def _log_y(ax) -> None:
    """Log y-axis when there is positive data to show (an empty axis stays linear)."""
    ys = [y for line in ax.lines for y in np.atleast_1d(line.get_ydata()) if np.isfinite(y) and y > 0]
    if ys:
        from matplotlib import ticker

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.LogFormatter())                 # 0.5, 1, 2 rather than 10^x
        ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def save_figure(fig, stem: Path) -> list[Path]:
    """PNG and SVG of a figure, with fixed metadata so that identical inputs give identical bytes."""
    import matplotlib

    paths = []
    with matplotlib.rc_context(_RC):
        for fmt in ("png", "svg"):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, metadata=_METADATA[fmt])
            path = stem.with_suffix(f".{fmt}")
            write_bytes(path, buf.getvalue())
            paths.append(path)
    return paths
