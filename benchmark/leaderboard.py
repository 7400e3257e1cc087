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
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from .attacks import attack_name
from .errors import NFBenchError, one_of
from .metrics import FrameStatistics, as_float64, layer_means, nanmean
from .regression import ROUNDING
from .scores import BY_LABEL, SCORES, decode_replicates, is_reference, rank_ranges, reproduces
from .vocab import DATASET_DIMS, shown_architecture

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


@dataclass(frozen=True)
class Ranking:
    """How a table ranks its entries: by which score, and which entries it ranks at all.

    A model is ranked when its clean accuracy is at least chance + above_chance and, when
    below_standard is set, at least the suite's standard models' mean − below_standard (the
    suite's `leaderboard.ranked_if`); a near-chance network's frame says nothing about what
    training did, however invariant it looks.
    """

    by: str
    primary: str
    chance: float
    above_chance: float
    below_standard: float | None = None
    reference: str | None = None       # the architecture family of the standard models (`scores.is_reference`)

    @classmethod
    def of(cls, params: Mapping, by: str | None = None) -> Ranking:
        """The suite's ranking (params.yaml `leaderboard`), sorted by `by` (default: its primary score)."""
        settings = params["leaderboard"]
        if by is not None and by not in SCORES:
            raise NFBenchError(f"--sort: {one_of(by, SCORES, 'score')}")
        return cls(by or settings["primary"], settings["primary"], 1 / DATASET_DIMS[params["data"]["dataset"]][2],
                   **settings["ranked_if"], reference=settings["reference"])


# (ranked: [(rank as shown, entry)] best first, unranked: [(why not, entry)])
Standing = tuple[list[tuple[str, Mapping]], list[tuple[str, Mapping]]]


def rank(entries: Iterable[Mapping], ranking: Ranking) -> Standing:
    """(ranked, unranked): the ranked entries best first with their rank as shown (the range of
    ranks over the bootstrap replicates of the primary score, e.g. "2–5"; the position when
    sorting by another score), and the others with the reason they are not ranked."""
    entries = list(entries)
    standard = [e["scores"].get("clean_acc") for e in entries
                if e["kind"] == "suite" and is_reference(e, ranking.reference)]
    standard_acc = sum(standard) / len(standard) if standard and None not in standard else None
    reasons = {e["id"]: _unranked(e, ranking, standard_acc) for e in entries}
    ranked = sort_entries([e for e in entries if reasons[e["id"]] is None], ranking.by)
    unranked = sort_entries([e for e in entries if reasons[e["id"]] is not None], ranking.by)
    if ranking.by == ranking.primary and SCORES[ranking.by].measure is not None:
        missing = [e["id"] for e in ranked if ranking.by not in e["replicates"]]
        if missing:
            raise NFBenchError(f"entry {missing[0]}: no bootstrap replicates of the primary score {ranking.by}; "
                               f"score it again with the suite's leaderboard settings (nfbench submit --replace, "
                               f"or nfbench leaderboard for the suite's own)")
        ranges = rank_ranges({e["id"]: decode_replicates(e["replicates"][ranking.by]) for e in ranked},
                             SCORES[ranking.by].better)
        shown = [f"{lo}" if lo == hi else f"{lo}–{hi}" for lo, hi in (ranges[e["id"]] for e in ranked)]
    else:
        shown = [str(i) for i in range(1, len(ranked) + 1)]
    return list(zip(shown, ranked)), [(reasons[e["id"]], e) for e in unranked]


def _unranked(entry: Mapping, ranking: Ranking, standard_acc: float | None) -> str | None:
    """Why an entry is not ranked (None: it is)."""
    acc = entry["scores"].get("clean_acc")
    if acc is None:
        return "no clean accuracy"
    if acc < ranking.chance + ranking.above_chance:
        return (f"clean accuracy {acc:.1%} is less than {100 * ranking.above_chance:g} points above chance "
                f"({ranking.chance:.1%}): its frame says nothing about what training did")
    if ranking.below_standard is not None and standard_acc is not None and acc < standard_acc - ranking.below_standard:
        return (f"clean accuracy {acc:.1%} is more than {100 * ranking.below_standard:g} points below the suite's "
                f"standard models' mean ({standard_acc:.1%})")
    return None


def ranking_text(ranking: Ranking) -> str:
    """The one line above a table that says how it is sorted and what its rank column means."""
    score = SCORES[ranking.by]
    floors = f"at least {100 * ranking.above_chance:g} points above chance" + (
        f" and at most {100 * ranking.below_standard:g} points below the standard models' mean"
        if ranking.below_standard is not None else "")
    ranges = ranking.by == ranking.primary and score.measure is not None
    ranks = ("`#` is the rank range: the central 95 % of the ranks a model takes across the bootstrap replicates, "
             "so models whose scores are indistinguishable share ranks" if ranges
             else f"`#` is the position (rank ranges are computed for the suite's primary frame score, "
                  f"{SCORES[ranking.primary].title.rstrip(' ↑↓')})")
    primary = " (the suite's primary score)" if ranking.by == ranking.primary else ""
    return (f"Ranked by {score.title.rstrip(' ↑↓')}, {score.better} first{primary}; {ranks}.  Only models with a "
            f"clean accuracy {floors} are ranked; the others are listed under Not ranked.")


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


def _row_cells(entry: Mapping) -> list[str]:
    name = entry["display_name"].replace("|", "\\|")
    link = _link(entry)
    return [f"[{name}]({link})" if link else name, f"`{entry['id']}`", _kind(entry), entry["role"],
            shown_architecture(entry.get("architecture"))]


def leaderboard_markdown(standing: Standing, suite: str, ranking: Ranking) -> str:
    """reports/leaderboard.md: the ranked table, the entries not ranked, then invariance per augmentation
    (`standing`: `rank`'s result for `ranking`)."""
    ranked, unranked = standing
    entries = [e for _, e in ranked] + [e for _, e in unranked]
    rows = [[shown, *_row_cells(e), *(" ".join(_shown(e, k)).strip() for k in SCORES)] for shown, e in ranked]
    shut_out = [[*_row_cells(e), format_score("clean_acc", e["scores"].get("clean_acc")), reason]
                for reason, e in unranked]
    labels = _labels(*entries)
    per_label = [[f"`{e['id']}`", *(" ".join(_shown(e, "augmentation_invariance", label)).strip()
                                    for label in labels)]
                 for e in entries]
    lines = [f"# Leaderboard — suite `{suite}`", "",
             "Neural-frame profile of every model.  Scores are read at each model's penultimate layer from its "
             "frame statistics on the suite's fixed evaluation points, each with its 95 % interval in "
             "brackets (bootstrap over the points and the standard models, as the claims draw; accuracies: "
             "Wilson); ↓/↑ mark the end that ranks first.  Definitions and how to submit a model: "
             "[SUBMITTING.md](../SUBMITTING.md).", "",
             ranking_text(ranking), "",
             tabulate(rows, headers=["#", "model", "id", "entry", "training", "architecture", *_headers(entries)],
                      tablefmt="github", disable_numparse=True), ""]
    if shut_out:
        lines += ["## Not ranked", "",
                  tabulate(shut_out, headers=["model", "id", "entry", "training", "architecture", "clean acc.",
                                              "why not ranked"], tablefmt="github", disable_numparse=True), ""]
    lines += ["## Augmentation invariance per transform", "",
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


def leaderboard_html(standing: Standing, suite: str, ranking: Ranking) -> str:
    """reports/leaderboard.html: the ranked table (sortable by clicking a header; each score with
    its interval; one sparkline per model of its family sensitivities along depth), then the
    entries not ranked; no external resources (`standing`: `rank`'s result for `ranking`)."""
    ranked, unranked = standing
    entries = [e for _, e in ranked] + [e for _, e in unranked]
    values = [v for e in entries for vs in e["profile"]["families"].values() for v in vs if v is not None and v > 0]
    low, high = (min(values), max(values)) if values else (0.1, 1.0)
    esc = html.escape

    def cell(value, text: str, kind: str = "") -> str:
        return f'<td class="{kind}" data-value="{esc(str(value))}">{text}</td>'

    def described(e: Mapping) -> str:
        link = _link(e)
        name = f'<a href="{esc(link)}">{esc(e["display_name"])}</a>' if link else esc(e["display_name"])
        architecture = shown_architecture(e.get("architecture"))
        return (cell(e["display_name"], f"{name}<br><code>{esc(e['id'])}</code>", "text")
                + cell(_kind(e), _kind(e), "text") + cell(e["role"], esc(e["role"]), "text")
                + cell(architecture, esc(architecture), "text"))

    head = [("#", ""), ("model", "text"), ("entry", "text"), ("training", "text"), ("architecture", "text"),
            *((h, "") for h in _headers(entries)), ("profile (sensitivity vs depth)", "text")]
    header = "".join(f'<th class="{kind}" data-col>{esc(h)}</th>' if i < len(head) - 1
                     else f'<th class="{kind}">{esc(h)}</th>' for i, (h, kind) in enumerate(head))
    rows = []
    for i, (shown, e) in enumerate(ranked, 1):
        scores_cells = [cell("" if e["scores"].get(k) is None else repr(e["scores"][k]),
                             '{}<br><small class="ci">{}</small>'.format(*map(esc, _shown(e, k)))) for k in SCORES]
        rows.append("<tr>" + cell(i, esc(shown), "rank") + described(e) + "".join(scores_cells)
                    + f'<td class="text">{_sparkline(e["profile"], low, high)}</td></tr>')
    shut_out = "".join("<tr>" + described(e) + cell(e["scores"].get("clean_acc"),
                                                    format_score("clean_acc", e["scores"].get("clean_acc")))
                       + cell(reason, esc(reason), "text") + "</tr>" for reason, e in unranked)
    unranked_section = ("<h2>Not ranked</h2><table><thead><tr><th class=\"text\">model</th><th class=\"text\">entry"
                        "</th><th class=\"text\">training</th><th>clean acc.</th><th class=\"text\">why not ranked"
                        f"</th></tr></thead><tbody>{shut_out}</tbody></table>") if unranked else ""
    legend = "".join(f'<span style="color:{c}">━ {f}</span>' for f, c in _FAMILY_COLOURS.items())
    definitions = "".join(f"<li><b>{esc(s.title.rstrip(' ↑↓'))}</b>: {esc(s.definition)}.</li>"
                          for s in SCORES.values())
    page = string.Template((Path(__file__).parent / "templates" / "leaderboard.html").read_text())
    return page.substitute(suite=esc(suite), ranking=esc(ranking_text(ranking).replace("`", "")), legend=legend,
                           header=header, rows="".join(f"\n{row}" for row in rows) + "\n",
                           unranked=unranked_section, definitions=definitions)
