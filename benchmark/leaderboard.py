"""The leaderboard: what an entry records, verification, and its tables.

A researcher describes a model in a card, `submissions/<id>.yaml` (SUBMITTING.md, `cards.py`); `nfbench
submit` scores it on the suite's fixed points and perturbations and writes one entry,
`leaderboard/<suite>/<id>.json`.  The suite's own models get entries of the same form,
derived from their frame statistics.  Tables are rendered from the entries alone.

The scores and their intervals are claims statistics against the suite's standard models
(benchmark/scores.py); an entry also records the standard models' penultimate summary
(`reference_summary`) and its model's layer profile.  Everything here is pure.
"""

from __future__ import annotations

import html
import math
import string
from collections.abc import Iterable, Mapping
from pathlib import Path

from tabulate import tabulate

from .attacks import attack_name
from .errors import NFBenchError, one_of
from .metrics import FrameStatistics, as_float64, layer_means, nanmean
from .regression import ROUNDING
from .scores import BY_LABEL, SCORES, reproduces

__all__ = ["layer_profile", "reference_summary", "compare", "sort_entries", "format_score", "format_interval",
           "leaderboard_markdown", "leaderboard_html"]


# ---------------------------------------------------------------------------------------------
# What an entry records of a model's frames (its scores: benchmark/scores.py)


def layer_profile(stats: FrameStatistics) -> dict:
    """Per observed layer, each family's mean relative sensitivity (for the sparklines)."""
    families, _ = layer_means(stats)
    return {"layers": list(stats.layers), "depth": [float(d) for d in stats.depth],
            "families": {f: [_finite(v) for v in values] for f, values in families.items()}}


def reference_summary(reference: Mapping[str, FrameStatistics]) -> dict:
    """The standard models' penultimate summary, for readers and for verify: per augmentation
    label and per family, the mean over the models of their point means (None where undefined)."""
    def mean(values: list) -> float | None:
        return None if any(v is None for v in values) else sum(values) / len(values)

    def point_means(st: FrameStatistics) -> dict:
        p = st.penultimate
        labels = dict.fromkeys(lb for lb, f in zip(st.labels, st.families) if f == "augmentation")
        return {"labels": {lb: _finite(nanmean(as_float64(st.label(lb)[p]), 0)) for lb in labels},
                "families": {f: _finite(values[p]) for f, values in layer_means(st)[0].items()}}

    summaries = [point_means(st) for st in reference.values()]
    return {part: {key: mean([s[part].get(key) for s in summaries]) for key in summaries[0][part]}
            for part in ("labels", "families")}


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Verification

# provenance that must be identical for a recomputed entry to count as the same computation
EXACT_PROVENANCE = ("card_sha256", "checkpoint_sha256", "points_sha256", "generative_sha256", "reference_models")


def compare(entry: Mapping, recomputed: Mapping) -> tuple[bool, list[dict]]:
    """Compare an entry with its recomputation: (all reproduce, one row per checked value).

    Every score, its interval's ends and the standard models' summary are frame values or
    accuracies, so they reproduce within their score's tolerance, not bit for bit."""
    rows = []
    for name, score in SCORES.items():
        keys = [(name, None)] + [(BY_LABEL, label) for label in _labels(entry, recomputed)] * (
            name == "augmentation_invariance")
        for key, label in keys:
            shown = name if label is None else f"{name}[{label}]"
            values = [_value(e, "scores", key, label) for e in (entry, recomputed)]
            bounds = [_value(e, "intervals", key, label) or [None, None] for e in (entry, recomputed)]
            rows += [_row(shown, *values, score.tolerance),
                     *(_row(f"{shown} interval {end}", bounds[0][i], bounds[1][i], score.tolerance)
                       for i, end in enumerate(("low", "high")))]
    for key in EXACT_PROVENANCE:
        old, new = entry["provenance"].get(key), recomputed["provenance"].get(key)
        rows.append({"value": key, "entry": old, "recomputed": new, "tolerance": "exact",
                     "status": "ok" if old == new else "differs"})
    old, new = entry["provenance"].get("reference") or {}, recomputed["provenance"].get("reference") or {}
    rows += [_row(f"reference.{part}[{key}]", old.get(part, {}).get(key), new.get(part, {}).get(key), ROUNDING)
             for part in ("families", "labels") for key in dict.fromkeys([*old.get(part, {}), *new.get(part, {})])]
    return all(r["status"] == "ok" for r in rows), rows


def _labels(*entries: Mapping) -> list[str]:
    return list(dict.fromkeys(label for e in entries for label in e["scores"].get(BY_LABEL) or {}))


def _value(entry: Mapping, part: str, key: str, label: str | None):
    value = (entry.get(part) or {}).get(key)
    return (value or {}).get(label) if label is not None else value


def _row(name: str, old, new, tolerance: Mapping) -> dict:
    shown = " or ".join([f"{tolerance['relative']:g} relative"] * bool(tolerance["relative"])
                        + [f"{tolerance['absolute']:g} absolute"] * bool(tolerance["absolute"])) or "exact"
    return {"value": name, "entry": old, "recomputed": new, "tolerance": shown,
            "status": "ok" if reproduces(old, new, tolerance) else "differs"}


# ---------------------------------------------------------------------------------------------
# Tables

_FAMILY_COLOURS = {"augmentation": "#2ca02c", "noise": "#9467bd", "generative": "#ff7f0e"}


def sort_entries(entries: Iterable[Mapping], by: str) -> list[Mapping]:
    """Best first by one score (its `better` end first); undefined values last, then by id."""
    if by not in SCORES:
        raise NFBenchError(f"--sort: {one_of(by, SCORES, 'score')}")
    sign = 1 if SCORES[by].better == "lower" else -1
    return sorted(entries, key=lambda e: (e["scores"].get(by) is None, sign * (e["scores"].get(by) or 0), e["id"]))


def format_score(name: str, value) -> str:
    """A score as the tables show it: accuracies in percent, the rest to three decimals."""
    if value is None:
        return "—"
    return f"{value:.1%}" if name.endswith("_acc") else f"{value:.3f}"


def format_interval(name: str, bounds) -> str:
    """A score's 95 % interval as the tables show it, "[low, high]"; "" where it has none."""
    return f"[{format_score(name, bounds[0])}, {format_score(name, bounds[1])}]" if bounds else ""


def _shown(entry: Mapping, name: str, label: str | None = None) -> tuple[str, str]:
    """(value, interval) texts of one score of an entry (a per-label one with `label`)."""
    if label is None:
        return format_score(name, entry["scores"].get(name)), format_interval(name, entry["intervals"].get(name))
    value = (entry["scores"].get(BY_LABEL) or {}).get(label)
    return format_score(name, value), format_interval(name, (entry["intervals"].get(BY_LABEL) or {}).get(label))


def _link(entry: Mapping) -> str | None:
    card = entry.get("card") or {}
    return card.get("paper") or card.get("url")


def _kind(entry: Mapping) -> str:
    return "suite" if entry["kind"] == "suite" else "submitted"


def _headers(entries: list[Mapping]) -> list[str]:
    measured = {(e.get("attack") and attack_name(e["attack"]), e["eps"]) for e in entries}
    if len(measured) == 1:
        attack, eps = measured.pop()
        robust = f"robust acc. ({attack + ', ' if attack else ''}ε={eps:g})"
    else:
        robust = "robust acc."
    return [SCORES[k].title if k != "robust_acc" else robust for k in SCORES]


def leaderboard_markdown(entries: Iterable[Mapping], suite: str, by: str) -> str:
    """reports/leaderboard.md: the scores table, then invariance per augmentation."""
    entries = sort_entries(entries, by)
    rows = []
    for i, e in enumerate(entries, 1):
        name = e["display_name"].replace("|", "\\|")
        link = _link(e)
        rows.append([i, f"[{name}]({link})" if link else name, f"`{e['id']}`", _kind(e), e["role"],
                     *(" ".join(_shown(e, k)).strip() for k in SCORES)])
    labels = _labels(*entries)
    per_label = [[f"`{e['id']}`", *(" ".join(_shown(e, "augmentation_invariance", label)).strip()
                                    for label in labels)]
                 for e in entries]
    lines = [f"# Leaderboard — suite `{suite}`", "",
             f"Neural-frame profile of every model, sorted by {SCORES[by].title.rstrip(' ↑↓')} "
             f"({SCORES[by].better} first).  Scores are read at each model's penultimate layer from its "
             f"frame statistics on the suite's fixed evaluation points, each with its 95 % interval in "
             f"brackets (bootstrap over the points and the standard models, as the claims draw; accuracies: "
             f"Wilson); ↓/↑ mark the end that sorts first.  Definitions and how to submit a model: "
             f"[SUBMITTING.md](../SUBMITTING.md).", "",
             tabulate(rows, headers=["#", "model", "id", "entry", "training", *_headers(entries)],
                      tablefmt="github", disable_numparse=True), "",
             "## Augmentation invariance per transform", "",
             "Augmentation invariance for each augmentation tangent alone: the factor by which the model "
             "suppresses it relative to the suite's standard models over the factor for noise, at the "
             "penultimate layer (> 1: more invariant), with its 95 % interval.", "",
             tabulate(per_label, headers=["id", *labels], tablefmt="github", disable_numparse=True), "",
             "## Definitions", ""]
    lines += [f"- **{s.title.rstrip(' ↑↓')}** (`{k}`): {s.definition}." for k, s in SCORES.items()]
    return "\n".join(lines) + "\n"


def _sparkline(profile: Mapping, low: float, high: float, width: int = 120, height: int = 28) -> str:
    """Inline SVG: each family's sensitivity against relative depth, log scale shared by all rows."""
    top, span = math.log10(high), math.log10(high) - math.log10(low) or 1.0
    lines = []
    for family, values in profile["families"].items():
        points = [(d, v) for d, v in zip(profile["depth"], values) if v is not None and v > 0]
        coords = " ".join(f"{1 + d * (width - 2):.1f},{1 + (height - 2) * (top - math.log10(v)) / span:.1f}"
                          for d, v in points)
        lines.append(f'<polyline fill="none" stroke="{_FAMILY_COLOURS.get(family, "#7f7f7f")}" '
                     f'stroke-width="1.5" points="{coords}"><title>{html.escape(family)}</title></polyline>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">{"".join(lines)}</svg>')


def leaderboard_html(entries: Iterable[Mapping], suite: str, by: str) -> str:
    """reports/leaderboard.html: the scores table, sortable by clicking a header, with one
    sparkline per model of its family sensitivities along depth; no external resources."""
    entries = sort_entries(entries, by)
    values = [v for e in entries for vs in e["profile"]["families"].values() for v in vs if v is not None and v > 0]
    low, high = (min(values), max(values)) if values else (0.1, 1.0)
    esc = html.escape

    def cell(value, text: str, kind: str = "") -> str:
        return f'<td class="{kind}" data-value="{esc(str(value))}">{text}</td>'

    head = [("#", ""), ("model", "text"), ("entry", "text"), ("training", "text"),
            *((h, "") for h in _headers(entries)), ("profile (sensitivity vs depth)", "text")]
    header = "".join(f'<th class="{kind}" data-col>{esc(h)}</th>' if i < len(head) - 1
                     else f'<th class="{kind}">{esc(h)}</th>' for i, (h, kind) in enumerate(head))
    rows = []
    for i, e in enumerate(entries, 1):
        link = _link(e)
        name = esc(e["display_name"])
        name = f'<a href="{esc(link)}">{name}</a>' if link else name
        scores_cells = [cell("" if e["scores"].get(k) is None else repr(e["scores"][k]),
                             '{}<br><small class="ci">{}</small>'.format(*map(esc, _shown(e, k)))) for k in SCORES]
        rows.append("<tr>" + cell(i, str(i)) + cell(e["display_name"], f"{name}<br><code>{esc(e['id'])}</code>", "text")
                    + cell(_kind(e), _kind(e), "text") + cell(e["role"], esc(e["role"]), "text")
                    + "".join(scores_cells) + f'<td class="text">{_sparkline(e["profile"], low, high)}</td></tr>')
    legend = "".join(f'<span style="color:{c}">━ {f}</span>' for f, c in _FAMILY_COLOURS.items())
    definitions = "".join(f"<li><b>{esc(s.title.rstrip(' ↑↓'))}</b>: {esc(s.definition)}.</li>"
                          for s in SCORES.values())
    page = string.Template((Path(__file__).parent / "templates" / "leaderboard.html").read_text())
    return page.substitute(suite=esc(suite), sorted_by=esc(SCORES[by].title), legend=legend, header=header,
                           rows="".join(f"\n{row}" for row in rows) + "\n", definitions=definitions)

