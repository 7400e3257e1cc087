"""One-line user-facing errors: what is wrong, where, and what is valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NFBenchError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits 2."""


def one_of(name: str, valid: Iterable[str], what: str = "name") -> str:
    """Describe the valid choices for an unknown `name`, closest matches first."""
    valid = sorted(set(valid))
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    if close:
        return f"unknown {what} {name!r}; did you mean {', '.join(map(repr, close))}?"
    shown = ", ".join(valid[:12]) + (f", … ({len(valid)} in all)" if len(valid) > 12 else "")
    return f"unknown {what} {name!r}; valid: {shown}"
