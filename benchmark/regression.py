"""The checks behind `nfbench check`: fresh claims against a committed reference, in two modes.

`check` is the command's whole work and `check_report` the table it prints (`nfbench replicate`
prints it too); cli.py only parses the arguments.

Rows are keyed by (task, statistic, subject); the reference and the fresh result must have the
same rows in both modes.

reproduce — the same artifacts (published checkpoints, points, autoencoder) on any machine, CPU
    or GPU: every verdict and finding category identical, and every value within float
    rounding, |fresh − reference| ≤ max(ROUNDING["absolute"], ROUNDING["relative"]·|reference|).
    A verdict change is a regression.

replicate — the models retrained with other seeds: values move like a change of seed, so rows
    are judged by their conclusions.  With b the verdict boundary of a tested row (threshold −
    margin for `below` and `at_least`, threshold + margin for `above` and `at_most`) and the
    *margin band* [b − margin, b + margin], a row
      agrees      when both verdicts (a finding's category) are the same;
      borderline  when they differ, are not opposite (supported ↔ not supported), and both
                  intervals touch the margin band — the difference is a call at the boundary;
                  for a finding: adjacent categories (it moved by one);
      disagrees   otherwise: opposite verdicts, a decided verdict clear of the band against an
                  inconclusive one, a finding more than one category away, a statistic defined
                  in one result and not in the other.
    Only a disagreement fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from tabulate import tabulate

from .errors import NFBenchError
from .storage import read_json, write_bytes

__all__ = ["ROUNDING", "MODES", "compare", "agreement", "summary", "replication_totals", "format_table",
           "allowed_change", "check", "check_report"]

MODES = ("reproduce", "replicate")
# What float rounding moves between machines, measured (README, "Reproduce and replicate"): the
# embedded suite's published checkpoints on this machine's AVX2 kernels and on the portable ones
# (ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41: another CPU type's code paths) gave
# identical verdicts and moved no claim statistic by more than 7.5e-5 relative (2.2e-4 on the
# 42-model suite before it, where the tolerance was set).  Not 1e-6: the Grams agree to ~3e-6,
# but a pre-activation within rounding of a ReLU's or max-pool's kink switches that unit's
# derivative, so 0.3 % of the per-point sensitivities move by far more.  The tolerance leaves a
# factor of 9 over the largest change seen (a GPU was not measured); a replication (other
# seeds) moves the statistics by a median 14 times the tolerance.
ROUNDING = {"relative": 2e-3, "absolute": 1e-9}


def _key(row: Mapping) -> tuple[str, str, str]:
    return (str(row.get("task")), str(row.get("statistic")), str(row.get("subject")))


def allowed_change(reference_value: float | None, tolerance: Mapping = ROUNDING) -> float:
    """max(absolute, relative · |reference|): how far a reproduced value may move."""
    ref = abs(reference_value) if isinstance(reference_value, (int, float)) else 0.0
    return max(float(tolerance["absolute"]), float(tolerance["relative"]) * ref)


def _verdict(row: Mapping | None) -> str | None:
    if row is None:
        return None
    return f"finding: {row.get('category')}" if row.get("verdict") == "finding" else row.get("verdict")


def compare(fresh: Mapping, reference: Mapping, mode: str = "reproduce") -> tuple[bool, list[dict]]:
    """(ok, rows): one row per compared result with its status and why; results of two different
    suites are refused (their rows could match by name alone)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if fresh.get("suite") != reference.get("suite"):
        raise NFBenchError(f"the results are of suite {fresh.get('suite')!r}, the reference of suite "
                           f"{reference.get('suite')!r}: only results of one suite compare (each suite's "
                           f"reference is reports/reference/<suite>/)")
    rows: list[dict] = []
    if fresh.get("seed") != reference.get("seed"):         # another bootstrap seed: other intervals
        rows.append({"task": "(seed)", "statistic": "", "subject": "", "reference": reference.get("seed"),
                     "fresh": fresh.get("seed"), "status": "differs" if mode == "reproduce" else "disagrees",
                     "why": "the results are of another bootstrap seed"})
    ref_rows = {_key(r): r for r in reference.get("rows", [])}
    new_rows = {_key(r): r for r in fresh.get("rows", [])}
    for key in list(ref_rows) + [k for k in new_rows if k not in ref_rows]:
        ref, new = ref_rows.get(key), new_rows.get(key)
        task, statistic, subject = key
        row = {"task": task, "statistic": statistic, "subject": subject, "reference": ref, "fresh": new}
        if ref is None or new is None:
            status = "differs" if mode == "reproduce" else "disagrees"
            why = "not in the reference" if ref is None else "missing from the fresh results"
        elif mode == "reproduce":
            status, why = _reproduced(ref, new)
        else:
            status, why = agreement(ref, new)
        rows.append({**row, "status": status, "why": why})
    bad = {"reproduce": ("differs",), "replicate": ("disagrees",)}[mode]
    return not any(r["status"] in bad for r in rows), rows


def _reproduced(ref: Mapping, new: Mapping) -> tuple[str, str]:
    v_ref, v_new = _verdict(ref), _verdict(new)
    if v_ref != v_new:
        return "differs", f"verdict changed: {v_ref} -> {v_new}"
    a, b = ref.get("value"), new.get("value")
    if a is None or b is None:
        return ("ok", "not run in both") if a is None and b is None else ("differs", "defined in one result only")
    allowed = allowed_change(a)
    moved = abs(b - a) if math.isfinite(a) and math.isfinite(b) else (0.0 if a == b else math.inf)
    if moved > allowed:
        return "differs", f"moved {moved:.3g}, beyond rounding (±{allowed:.3g})"
    return "ok", f"same verdict, moved {moved:.2g} (≤ ±{allowed:.2g})"


def _band(expected: Mapping) -> tuple[float, float, float]:
    """(boundary, band low, band high) of a tested expectation."""
    direction, t, m = expected["direction"], expected["threshold"], expected["margin"]
    b = t - m if direction in ("below", "at_least") else t + m
    return b, b - m, b + m


def _touches(row: Mapping, low: float, high: float) -> bool:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if lo is None or hi is None:                       # no interval: it spans everything
        return True
    return lo <= high and hi >= low


def agreement(ref: Mapping, new: Mapping) -> tuple[str, str]:
    """(agrees | borderline | disagrees, why) of a replicated row against its reference row."""
    v_ref, v_new = _verdict(ref), _verdict(new)
    if v_ref == v_new:
        return "agrees", f"both {v_ref}"
    if "not run" in (ref.get("verdict"), new.get("verdict")):
        return "disagrees", f"{v_ref} -> {v_new}: the statistic is defined in one result only"
    expected = ref.get("expectation") or {}
    if "finding" in expected:              # categories in the order of their bins (JSON sorts the keys)
        bins = expected["finding"]
        names = sorted(bins, key=lambda name: -math.inf if bins[name][0] is None else bins[name][0])
        a, b = (names.index(r["category"]) if r.get("category") in names else None for r in (ref, new))
        if a is None or b is None or abs(a - b) > 1:
            return "disagrees", f"{v_ref} -> {v_new}: more than one category apart"
        return "borderline", f"{v_ref} -> {v_new}: the adjacent category"
    if {ref.get("verdict"), new.get("verdict")} == {"supported", "not supported"}:
        return "disagrees", f"{v_ref} -> {v_new}: opposite verdicts"
    boundary, low, high = _band(expected)
    if _touches(ref, low, high) and _touches(new, low, high):
        return "borderline", f"{v_ref} -> {v_new}: both intervals touch the margin band [{low:.3g}, {high:.3g}]"
    return "disagrees", f"{v_ref} -> {v_new}: an interval lies clear of the margin band [{low:.3g}, {high:.3g}]"


def summary(rows: list[dict]) -> dict[str, int]:
    """Counts of each status."""
    out: dict[str, int] = {}
    for r in rows:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def replication_totals(rows: list[dict]) -> dict[str, dict[str, int]]:
    """The counts a replication is judged by, verdict rows (tested claims) and findings apart: a
    finding has no verdict, only a category, so "borderline" for it means the adjacent category.
    {"verdicts": {status: n}, "findings": {status: n}}."""
    out: dict[str, dict[str, int]] = {"verdicts": {}, "findings": {}}
    for r in rows:
        finding = any(isinstance(side, Mapping) and side.get("verdict") == "finding"
                      for side in (r["reference"], r["fresh"]))
        counts = out["findings" if finding else "verdicts"]
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return out


def _cell(row: Mapping | None) -> str:
    if row is None:
        return "—"
    if row.get("value") is None:
        return _verdict(row) or "—"
    ci = f" [{row['ci_low']:.3g}, {row['ci_high']:.3g}]" if row.get("ci_low") is not None else ""
    return f"{row['value']:.4g}{ci} {_verdict(row)}"


def format_table(rows: list[dict], mode: str, *, only_problems: bool = False) -> str:
    """A GitHub table of the comparison, problems first: each row's reference and fresh value with
    interval and verdict, its status and why."""
    order = {"differs": 0, "disagrees": 0, "borderline": 1}
    shown = [r for r in rows if r["status"] not in ("ok", "agrees")] if only_problems else \
        sorted(rows, key=lambda r: order.get(r["status"], 2))
    if not shown:
        return "(no differences)"
    table = [[r["task"], r["subject"], _cell(r["reference"]) if isinstance(r["reference"], Mapping) or
              r["reference"] is None else str(r["reference"]),
              _cell(r["fresh"]) if isinstance(r["fresh"], Mapping) or r["fresh"] is None else str(r["fresh"]),
              r["status"], r["why"]] for r in shown]
    measured = "reproduced" if mode == "reproduce" else "replicated"
    return tabulate(table, headers=["task", "subject", "reference", measured, "status", "why"],
                    tablefmt="github", disable_numparse=True)


def check(fresh: Path, reference: Path, mode: str = "reproduce", *, update: bool = False) -> tuple[str, str | None]:
    """`nfbench check`: the claims file `fresh` against the reference claims file `reference`.

    Returns (what to print, None) when they reproduce (replicate), or (the table, the one-line
    failure) when they do not; `update`: copy `fresh` over `reference` instead of comparing.
    """
    fresh, reference = Path(fresh), Path(reference)
    if not fresh.is_file():
        raise NFBenchError(f"{fresh} does not exist; run the pipeline (dvc repro) first")
    if update:
        write_bytes(reference, fresh.read_bytes())
        return f"{reference} now holds the results of {fresh}", None
    if not reference.is_file():
        raise NFBenchError(f"no reference at {reference} (create it with `nfbench check --update`)")
    ok, rows = compare(read_json(fresh), read_json(reference), mode)
    text = check_report(rows, mode, fresh, reference)
    if ok:
        return text, None
    bad = summary(rows).get("differs" if mode == "reproduce" else "disagrees", 0)
    return text, (f"{bad} of {len(rows)} result(s) of {fresh} "
                  + ("do not reproduce" if mode == "reproduce" else "disagree with")
                  + f" {reference} ({mode} mode)")


def check_report(rows: list[dict], mode: str, fresh, reference) -> str:
    """The check's table under a line saying what the mode demands, and the totals."""
    demand = (f"reproduce mode (same artifacts): every verdict identical, every value within float rounding "
              f"(±max({ROUNDING['absolute']:g}, {ROUNDING['relative']:g}·|reference|)); any difference fails"
              if mode == "reproduce" else
              "replicate mode (retrained models): rows agree, are borderline (a call at the verdict boundary) "
              "or disagree; only a disagreement fails")
    counts = summary(rows)
    lines = [f"{len(rows)} rows: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    if mode == "replicate":
        totals = replication_totals(rows)
        verdicts, findings = totals["verdicts"], totals["findings"]
        n_v, n_f = sum(verdicts.values()), sum(findings.values())
        lines.append(f"verdict rows: {verdicts.get('agrees', 0)}/{n_v} agree"
                     + (f" ({verdicts.get('agrees', 0) / n_v:.0%})" if n_v else "")
                     + f", {verdicts.get('borderline', 0)} borderline, {verdicts.get('disagrees', 0)} disagree")
        lines.append(f"findings: {findings.get('agrees', 0)}/{n_f} in the same category, "
                     f"{findings.get('borderline', 0)} in the adjacent one, {findings.get('disagrees', 0)} further")
    return "\n".join([f"{fresh} against {reference} — {demand}", "", format_table(rows, mode), "", *lines])
