"""Pipeline stages: thin shells that read files, call the math, write files.

One module per DVC stage and `nfbench` subcommand:  data, sources → fetch → evaluate, frames →
metrics → claims → report, and leaderboard.  Stages never import each other: they talk only
through the files named in benchmark/pipeline.py (DVC tracks them), which also holds the
per-model steps several stages run; MLflow mirrors them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def announce(stage: str) -> Iterator[dict]:
    """Time a stage and print its one-line summary: `[stage] what it did in N s -> where`."""
    info: dict = {"did": "done", "out": ""}
    start = time.perf_counter()
    yield info
    out = f" -> {info['out']}" if info["out"] else ""
    print(f"[{stage}] {info['did']} in {time.perf_counter() - start:.1f} s{out}", file=sys.stderr)
