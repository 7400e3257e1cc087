"""`nfbench replicate --seeds ...`: retrain the suite's models with other seeds and judge the conclusions.

A replication keeps the protocol (evaluation points, perturbations, the published autoencoder,
the tasks) and retrains every model the suite trains here (source local) with new seeds, in a
scratch workspace `.replicate/seeds-<seeds>/` holding a copy of the pipeline; `dvc repro` runs
there up to the report, and its claims are compared with the committed reference in replicate
mode (`regression.agreement`): per row agrees, borderline or disagrees.  The workspace is kept
for inspection (its dvc.lock, metrics and reports); rerunning with the same seeds resumes it.
With `executor: ray` every stage's driver uses one cluster, started here unless RAY_ADDRESS
names one: each model to retrain is one task (`models.fetch`), and replications with other seed
sets can share the cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from .errors import NFBenchError
from .executor import open_executor
from .storage import read_json, write_json, write_text

WORKSPACES = Path(".replicate")
PIPELINE = ("dvc.yaml", ".dvcignore", "benchmark", "tasks", "suites")    # what `dvc repro` needs to see


def seed_map(params: Mapping, seeds: list[int]) -> dict[int, int]:
    """The suite's seeds (of its local models, ascending) -> the replication's, in order."""
    local = [spec for spec in params["models"].values() if spec["source"] == "local"]
    if not local:
        raise NFBenchError(f"suite {params['suite']} has no models trained here (source local) to retrain")
    ours = sorted({int(spec["seed"]) for spec in local})
    if len(seeds) != len(ours):
        raise NFBenchError(f"--seeds: suite {params['suite']}'s models use {len(ours)} seeds "
                           f"({', '.join(map(str, ours))}); give {len(ours)} new ones, got {len(seeds)}")
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise NFBenchError(f"--seeds: must be {len(ours)} distinct non-negative integers, got {seeds}")
    shared = sorted(set(seeds) & set(ours))
    if shared:
        raise NFBenchError(f"--seeds: {', '.join(map(str, shared))} already train the reference models; "
                           f"a replication needs seeds disjoint from {', '.join(map(str, ours))}")
    return dict(zip(ours, seeds))


def replicate_params(raw: Mapping, params: Mapping, mapping: Mapping[int, int], tracking_uri: str) -> dict:
    """params.yaml of the replication: local models retrained with the mapped seeds (their published
    checkpoints dropped), everything else, the autoencoder's published checkpoint included, kept."""
    out = yaml.safe_load(yaml.safe_dump(dict(raw)))
    for entry in out["models"].values():
        if entry.get("source") == "local":
            if "seeds" in entry:
                entry["seeds"] = [mapping[int(s)] for s in entry["seeds"]]
            else:
                entry["seed"] = mapping[int(entry.get("seed", 0))]
            entry.pop("published", None)
    out["tracking"] = {**(out.get("tracking") or {}), "uri": tracking_uri,
                       "experiment": f"nfbench-{params['suite']}-replications"}
    return out


def prepare(params: Mapping, seeds: list[int], root: Path = Path("."), params_file: Path = Path("params.yaml"),
            tracking_uri: str | None = None) -> Path:
    """The scratch workspace of a replication: the pipeline, its params, the published autoencoder."""
    from .tracking import tracking_uri as default_uri

    mapping = seed_map(params, seeds)
    workspace = root / WORKSPACES / f"seeds-{'-'.join(map(str, seeds))}"
    workspace.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE:
        source, dest = root / name, workspace / name
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest)
    for spec in params["generative"].values():        # protocol artifacts travel as they are
        if "published" in spec:
            path = Path(spec["published"]["checkpoint"])
            (workspace / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / path, workspace / path)
    raw = yaml.safe_load((root / params_file).read_text())
    write_text(workspace / "params.yaml",
               yaml.safe_dump(replicate_params(raw, params, mapping, tracking_uri or default_uri(params)),
                              sort_keys=False, width=4096))
    if not (workspace / ".dvc").is_dir():
        _run(["dvc", "init", "--no-scm", "-q"], workspace)
        _run(["dvc", "config", "core.analytics", "false"], workspace)
    return workspace


def _run(cmd: list[str], cwd: Path, ray_address: str | None = None) -> None:
    """`cmd` in `cwd`; `ray_address`: the cluster the stages' drivers connect to (RAY_ADDRESS)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
           **({"RAY_ADDRESS": ray_address} if ray_address else {})}
    env.pop("MLFLOW_TRACKING_URI", None)              # the workspace's params name the store
    result = subprocess.run(cmd, cwd=cwd, env=env)
    if result.returncode != 0:
        raise NFBenchError(f"`{' '.join(cmd)}` failed in {cwd} (exit {result.returncode}); its output is above")


def run(params: Mapping, seeds: list[int], reference: Path, *, root: Path = Path(".")) -> tuple[bool, list[dict], Path]:
    """Prepare the workspace, run the pipeline there, compare its claims with `reference`."""
    from .regression import compare, replication_totals

    workspace = prepare(params, seeds, root)
    print(f"[replicate] seeds {' '.join(map(str, seeds))}: running the pipeline in {workspace}", file=sys.stderr)
    with open_executor(params) as executor:          # one cluster for every stage: a task per model trained
        _run(["dvc", "repro", "report"], workspace, executor.address)
    fresh = read_json(workspace / "reports" / "claims.json")
    ok, rows = compare(fresh, read_json(reference), "replicate")
    write_json(workspace / "agreement.json", {"seeds": list(seeds), "reference": str(reference), "ok": ok,
                                              "totals": replication_totals(rows),
                                              "rows": [{k: r[k] for k in ("task", "statistic", "subject", "status",
                                                                          "why")} for r in rows]})
    return ok, rows, workspace


def judge(params: Mapping, seeds: list[int], reference: Path, *, root: Path = Path(".")) -> tuple[str, str | None]:
    """`nfbench replicate`: run the replication, write its report to <workspace>/agreement.md and
    return (the report, None), or (the report, the one-line failure) when rows disagree."""
    from .regression import check_report, summary

    if not Path(reference).is_file():
        raise NFBenchError(f"no reference at {reference} to replicate "
                           f"(make it with `dvc repro && nfbench check --update`)")
    ok, rows, workspace = run(params, seeds, reference, root=root)
    report = check_report(rows, "replicate", workspace / "reports" / "claims.json", reference)
    write_text(workspace / "agreement.md", report + "\n")
    if ok:
        return report, None
    return report, (f"{summary(rows).get('disagrees', 0)} of {len(rows)} rows of the replication with seeds "
                    f"{' '.join(map(str, seeds))} disagree with {reference} (table above, and "
                    f"{workspace / 'agreement.md'})")
