"""The CI regression check behind `nfbench check`: fresh claims against a committed reference.

A fresh result passes when it has exactly the reference's rows (keyed by task, statistic and
subject), every verdict (and every finding's category) is unchanged, and every value stays
within its row's tolerance:  |fresh − reference| ≤ max(absolute, relative · |reference|).
The tolerance is the fresh row's (the task files are the source of truth; the reference is
data), falling back to the reference row's.  Intervals are not compared: they move with the
value, and a verdict that depends on them is compared directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from tabulate import tabulate

__all__ = ["compare", "format_table", "allowed_change"]

_EPS = 1e-12            # round-off allowance on top of the tolerance


def _key(row: Mapping) -> tuple[str, str, str]:
    return (str(row.get("task")), str(row.get("statistic")), str(row.get("subject")))


def allowed_change(tolerance: Mapping | None, reference_value: float | None) -> float:
    """max(absolute, relative · |reference|) for a row's tolerance."""
    tolerance = tolerance or {}
    ref = abs(reference_value) if isinstance(reference_value, (int, float)) else 0.0
    return max(float(tolerance.get("absolute", 0.0)), float(tolerance.get("relative", 0.0)) * ref)


def _verdict(row: Mapping | None) -> str | None:
    if row is None:
        return None
    return f"finding: {row.get('category')}" if row.get("verdict") == "finding" else row.get("verdict")


def compare(fresh: Mapping, reference: Mapping) -> tuple[bool, list[dict]]:
    """(ok, rows): one row per compared result with its status (`ok` or what went wrong)."""
    rows: list[dict] = []
    for field in ("suite", "seed"):
        if fresh.get(field) != reference.get(field):
            rows.append({"task": f"({field})", "statistic": "", "subject": "", "reference": reference.get(field),
                         "fresh": fresh.get(field), "allowed": None, "verdict": "",
                         "status": f"{field} differs"})
    ref_rows = {_key(r): r for r in reference.get("rows", [])}
    new_rows = {_key(r): r for r in fresh.get("rows", [])}
    keys = list(ref_rows) + [k for k in new_rows if k not in ref_rows]
    for key in keys:
        ref, new = ref_rows.get(key), new_rows.get(key)
        task, statistic, subject = key
        ref_value = ref.get("value") if ref else None
        new_value = new.get("value") if new else None
        tolerance = (new or {}).get("tolerance") or (ref or {}).get("tolerance")
        allowed = allowed_change(tolerance, ref_value)
        v_ref, v_new = _verdict(ref), _verdict(new)
        if ref is None:
            status = "new (not in the reference)"
        elif new is None:
            status = "missing (in the reference only)"
        elif v_ref != v_new:
            status = "verdict changed"
        elif not _within(ref_value, new_value, allowed):
            status = "moved beyond tolerance"
        else:
            status = "ok"
        rows.append({"task": task, "statistic": statistic, "subject": subject, "reference": ref_value,
                     "fresh": new_value, "allowed": allowed,
                     "verdict": v_ref if v_ref == v_new else f"{v_ref} -> {v_new}", "status": status})
    return all(r["status"] == "ok" for r in rows), rows


def _within(ref, new, allowed: float) -> bool:
    if ref is None or new is None:
        return ref is None and new is None
    if not (math.isfinite(ref) and math.isfinite(new)):
        return ref == new
    return abs(new - ref) <= allowed + _EPS


def format_table(rows: list[dict], *, only_problems: bool = False) -> str:
    """A GitHub table of the comparison (problems first when showing every row)."""
    shown = [r for r in rows if r["status"] != "ok"] if only_problems else \
        sorted(rows, key=lambda r: r["status"] == "ok")
    if not shown:
        return "(no differences)"

    def num(v):
        return "—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [[r["task"], r["statistic"], r["subject"], num(r["reference"]), num(r["fresh"]),
              "—" if r["allowed"] is None else f"±{r['allowed']:.3g}", r["verdict"], r["status"]] for r in shown]
    return tabulate(table, headers=["task", "statistic", "subject", "reference", "fresh", "allowed",
                                    "verdict", "status"], tablefmt="github", disable_numparse=True)
