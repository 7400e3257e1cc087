"""The leaderboard: scores from frame statistics, verification, and its tables.

A researcher describes a model in a card, `submissions/<id>.yaml` (SUBMITTING.md, `cards.py`); `nfbench
submit` scores it on the suite's fixed points and perturbations and writes one entry,
`leaderboard/<suite>/<id>.json`.  The suite's own models get entries of the same form,
derived from their frame statistics.  Tables are rendered from the entries alone.

Every score is a function of two small summaries (`penultimate_summary`): the model's and the
mean of the suite's standard models' (`reference`), so an entry carries everything needed to
read and re-check its scores.  Everything here is pure.
"""

from __future__ import annotations

import html
import math
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

from .attacks import attack_name
from .errors import NFBenchError, one_of
from .metrics import FrameStatistics
from .regression import ROUNDING

__all__ = ["Score", "SCORES", "penultimate_summary", "layer_profile", "reference",
           "scores", "compare", "sort_entries", "format_score", "leaderboard_markdown", "leaderboard_html"]


# ---------------------------------------------------------------------------------------------
# Scores


@dataclass(frozen=True)
class Score:
    """One leaderboard column.

    better:    which end the leaderboard sorts first ("lower" or "higher")
    tolerance: relative: a recomputed value reproduces when |new − old| ≤ tolerance·max(|new|, |old|)
               (or ≤ absolute); 0 and 0 mean exactly
    """

    title: str
    better: str
    tolerance: float
    definition: str
    absolute: float = 0.0


# Frames of the same checkpoint reproduce to float rounding on any machine: the reproduce check's tolerance.
FRAME_TOLERANCE = ROUNDING["relative"]
SCORES = {
    "augmentation_invariance": Score(
        "aug. invariance ↓", "lower", FRAME_TOLERANCE,
        "geometric mean over the frame's augmentations of the model's relative sensitivity along each "
        "augmentation tangent at the penultimate layer, relative to the suite's standard models' and "
        "divided by the same ratio for noise directions (< 1: more invariant to the augmentation than a "
        "standard model, beyond any general change in sensitivity)"),
    "noise_suppression": Score(
        "noise sensitivity ↓", "lower", FRAME_TOLERANCE,
        "relative sensitivity along random noise directions at the penultimate layer, divided by the "
        "suite's standard models' (< 1: suppresses noise more than a standard model)"),
    "on_manifold_retention": Score(
        "on-manifold retention ↑", "higher", FRAME_TOLERANCE,
        "relative sensitivity along the generative model's decoder directions over that along noise, "
        "at the penultimate layer (> 1: on-manifold changes are kept more than random ones)"),
    "effective_rank": Score(
        "eff. rank ↑", "higher", FRAME_TOLERANCE,
        "effective rank (participation ratio of the cosine Gram) of the whole frame at the penultimate "
        "layer: how many directions the perturbations still span there"),
    "clean_acc": Score("clean acc.", "higher", 0.0, "accuracy on the suite's evaluation split"),
    # PGD's sign steps amplify rounding: on another CPU's kernels one image of 256 changed for 6 of 48 models
    "robust_acc": Score("robust acc.", "higher", 0.0, "accuracy under the suite's L∞ attack at its ε (PGD or "
                        "AutoAttack: the entry's `attack`), on the suite's evaluation points", absolute=0.01),
}
BY_LABEL = "augmentation_invariance_by_label"    # per-augmentation ratios, same tolerance as their mean


def _point_mean(values: torch.Tensor) -> float | None:
    """nan-aware mean over the evaluation points; None where no point defines it."""
    mean = float(values.to(torch.float64).nanmean())
    return mean if math.isfinite(mean) else None


def penultimate_summary(stats: FrameStatistics) -> dict:
    """What the scores read from a model's statistics: point means at the penultimate layer.

    labels: relative sensitivity along each augmentation tangent; families: mean relative
    sensitivity of each family; effective_rank: of the whole frame.
    """
    p = stats.penultimate
    if p is None:
        raise NFBenchError(f"model {stats.meta.get('id', '?')}: no penultimate layer was observed "
                           f"(layers: {', '.join(stats.layers)}); the scores are defined there")
    augmentations = [label for label, f in zip(stats.labels, stats.families) if f == "augmentation"]
    return {"layer": stats.layers[p],
            "labels": {label: _point_mean(stats.label(label)[p]) for label in dict.fromkeys(augmentations)},
            "families": {f: _point_mean(stats.family(f)[p]) for f in stats.family_names},
            "effective_rank": _point_mean(stats.rank[p])}


def layer_profile(stats: FrameStatistics) -> dict:
    """Per observed layer, each family's mean relative sensitivity (for the sparklines)."""
    return {"layers": list(stats.layers), "depth": [float(d) for d in stats.depth],
            "families": {f: [_point_mean(row) for row in stats.family(f)] for f in stats.family_names}}


def reference(summaries: Iterable[Mapping]) -> dict:
    """The standard models' summary: per label and family, the mean over models of their summaries."""
    summaries = list(summaries)
    if not summaries:
        raise NFBenchError("the suite has no standard models with statistics; the scores are relative to them")

    def mean(values: list) -> float | None:
        return None if any(v is None for v in values) else sum(values) / len(values)

    return {part: {key: mean([s[part].get(key) for s in summaries]) for key in summaries[0][part]}
            for part in ("labels", "families")}


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den <= 0 else num / den


def _geometric_mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return 0.0 if min(values) == 0 else math.exp(sum(math.log(v) for v in values) / len(values))


def scores(summary: Mapping, ref: Mapping, accuracy: Mapping) -> dict:
    """The leaderboard scores of one model (see SCORES); None where undefined for this suite."""
    missing = set(summary["labels"]) ^ set(ref["labels"])
    if missing:
        raise NFBenchError(f"the model's frame and the reference's differ in augmentations "
                           f"({', '.join(sorted(missing))}); both must come from the suite's perturbation settings")
    families = summary["families"]
    noise = _ratio(families.get("noise"), ref["families"].get("noise"))
    by_label = {label: _ratio(_ratio(v, ref["labels"][label]), noise) for label, v in summary["labels"].items()}
    return {"augmentation_invariance": _geometric_mean(list(by_label.values())),
            BY_LABEL: by_label,
            "noise_suppression": noise,
            "on_manifold_retention": _ratio(families.get("generative"), families.get("noise")),
            "effective_rank": summary["effective_rank"],
            "clean_acc": accuracy.get("clean_acc"), "robust_acc": accuracy.get("robust_acc")}


# ---------------------------------------------------------------------------------------------
# Verification

# provenance that must be identical for a recomputed entry to count as the same computation
EXACT_PROVENANCE = ("card_sha256", "checkpoint_sha256", "points_sha256", "generative_sha256", "reference_models")
# the standard models' mean the scores are relative to: frame values, so equal to float rounding, not bit for bit
REFERENCE = Score("reference", "lower", FRAME_TOLERANCE, "the standard models' mean penultimate summary")


def _close(old, new, score: Score) -> bool:
    if old is None or new is None:
        return old is None and new is None
    return abs(new - old) <= max(score.tolerance * max(abs(new), abs(old)), score.absolute)


def compare(entry: Mapping, recomputed: Mapping) -> tuple[bool, list[dict]]:
    """Compare an entry with its recomputation: (all reproduce, one row per checked value)."""
    rows = []
    for name, score in SCORES.items():
        rows.append(_row(name, entry["scores"].get(name), recomputed["scores"].get(name), score))
        if name == "augmentation_invariance":
            old, new = entry["scores"].get(BY_LABEL) or {}, recomputed["scores"].get(BY_LABEL) or {}
            rows += [_row(f"{name}[{label}]", old.get(label), new.get(label), score)
                     for label in dict.fromkeys([*old, *new])]
    for key in EXACT_PROVENANCE:
        old, new = entry["provenance"].get(key), recomputed["provenance"].get(key)
        rows.append({"value": key, "entry": old, "recomputed": new, "tolerance": "exact",
                     "status": "ok" if old == new else "differs"})
    old, new = entry["provenance"].get("reference") or {}, recomputed["provenance"].get("reference") or {}
    rows += [_row(f"reference.{part}[{key}]", old.get(part, {}).get(key), new.get(part, {}).get(key), REFERENCE)
             for part in ("families", "labels") for key in dict.fromkeys([*old.get(part, {}), *new.get(part, {})])]
    return all(r["status"] == "ok" for r in rows), rows


def _row(name: str, old, new, score: Score) -> dict:
    tolerance = " or ".join([f"{score.tolerance:g} relative"] * bool(score.tolerance)
                            + [f"{score.absolute:g} absolute"] * bool(score.absolute)) or "exact"
    return {"value": name, "entry": old, "recomputed": new, "tolerance": tolerance,
            "status": "ok" if _close(old, new, score) else "differs"}


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
                     *(format_score(k, e["scores"].get(k)) for k in SCORES)])
    labels = list(dict.fromkeys(label for e in entries for label in e["scores"].get(BY_LABEL) or {}))
    per_label = [[f"`{e['id']}`", *(format_score(label, (e["scores"].get(BY_LABEL) or {}).get(label))
                                    for label in labels)]
                 for e in entries]
    lines = [f"# Leaderboard — suite `{suite}`", "",
             f"Neural-frame profile of every model, sorted by {SCORES[by].title.rstrip(' ↑↓')} "
             f"({SCORES[by].better} first).  Scores are read at each model's penultimate layer from its "
             f"frame statistics on the suite's fixed evaluation points; ↓/↑ mark the end that sorts first.  "
             f"Definitions and how to submit a model: [SUBMITTING.md](../SUBMITTING.md).", "",
             tabulate(rows, headers=["#", "model", "id", "entry", "training", *_headers(entries)],
                      tablefmt="github", disable_numparse=True), "",
             "## Augmentation invariance per transform", "",
             "The model's relative sensitivity along each augmentation tangent at the penultimate layer "
             "over the suite's standard models', divided by the same ratio for noise (< 1: more invariant).", "",
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
                             format_score(k, e["scores"].get(k))) for k in SCORES]
        rows.append("<tr>" + cell(i, str(i)) + cell(e["display_name"], f"{name}<br><code>{esc(e['id'])}</code>", "text")
                    + cell(_kind(e), _kind(e), "text") + cell(e["role"], esc(e["role"]), "text")
                    + "".join(scores_cells) + f'<td class="text">{_sparkline(e["profile"], low, high)}</td></tr>')
    legend = "".join(f'<span style="color:{c}">━ {f}</span>' for f, c in _FAMILY_COLOURS.items())
    definitions = "".join(f"<li><b>{esc(s.title.rstrip(' ↑↓'))}</b>: {esc(s.definition)}.</li>"
                          for s in SCORES.values())
    page = string.Template((Path(__file__).parent / "templates" / "leaderboard.html").read_text())
    return page.substitute(suite=esc(suite), sorted_by=esc(SCORES[by].title), legend=legend, header=header,
                           rows="".join(f"\n{row}" for row in rows) + "\n", definitions=definitions)

