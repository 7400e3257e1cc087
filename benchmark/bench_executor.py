"""`nfbench bench executor`: what scoring a model zoo costs in this process and on Ray, and what Ray adds.

The zoo is the first N fetched classifiers of the suite, each scored as a card's executor task
is (`pipeline.measure`: accuracies on the test split, PGD on the evaluation points, frames at
them), from the suite's points and autoencoder; the entries themselves (statistics and scores,
on the driver, milliseconds) are not written.  Backends, each run `repeats` times after a warm-up
(min and median reported; the cores are shared, so run the rows side by side):
  local       every task here, one after another (`executor: local`),
  ray × W     a local Ray cluster of W CPUs, W tasks at once.
Ray's overhead is measured with empty tasks on the warm cluster, one at a time (a round trip:
submit, schedule, run, return), and the cluster's start and warm-up (its workers' start and
imports, one model each) apart.
Needs the suite's points, autoencoder and models: `nfbench data && nfbench fetch vae <entries>`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

from .errors import NFBenchError
from .executor import Task, open_executor


def zoo(params: Mapping, size: int) -> list[str]:
    """The first `size` classifiers of the suite whose model directories are here."""
    from .models import store
    from .pipeline import model_root

    here = [m for m, spec in params["models"].items() if store.status(m, model_root(spec)) == "present"]
    if len(here) < size:
        raise NFBenchError(f"--models {size}: only {len(here)} of suite {params['suite']}'s classifiers are fetched; "
                           f"run `nfbench data && nfbench fetch vae <entries>` first")
    return here[:size]


def nothing() -> None:
    """An empty task: what Ray costs around a task's own work."""


def score_zoo(params: Mapping, ids: list[str], executor) -> float:
    """Seconds to run every model's card task on `executor`."""
    from .data import load_suite_dataset
    from .models import store, zoo
    from .pipeline import measure, model_root, suite_frame

    start = time.perf_counter()
    data, at = executor.share(load_suite_dataset(params["data"])), executor.share(suite_frame(params))

    def prepare(model_id: str) -> tuple:
        spec = params["models"][model_id]
        root = model_root(spec)
        net = executor.share(zoo.load(model_id, spec, root))
        return params, model_id, spec, net, data, at, store.read_manifest(model_id, root)["sha256"]

    tasks = [Task(m, lambda m=m: prepare(m)) for m in ids]
    for outcome in executor.run(measure, tasks, f"score {len(ids)} models"):
        if outcome.error is not None:
            raise NFBenchError(f"{outcome.name}: {outcome.error}")
    return time.perf_counter() - start


def round_trip(executor, count: int) -> float:
    """Seconds per empty task, run one after another: submit, schedule, run, return."""
    start = time.perf_counter()
    for i in range(count):
        list(executor.run(nothing, [Task(str(i), lambda: ())], "empty task"))
    return (time.perf_counter() - start) / count


def bench_executor(params: Mapping, size: int = 6, workers: tuple[int, ...] = (1, 2), repeats: int = 3,
                   echo=print) -> list[dict]:
    from tabulate import tabulate

    from .bench import machine

    ids = zoo(params, size)
    echo(f"machine: {machine()}")
    echo(f"zoo: {len(ids)} models of suite {params['suite']} ({', '.join(ids)}), "
         f"{params['data']['eval_points']} points")
    rows = []

    def row(backend: str, times: list[float], **extra) -> None:
        rows.append({"backend": backend, "min s": round(min(times), 2), "median s": round(statistics.median(times), 2),
                     "s / model (min)": round(min(times) / len(ids), 2), **extra})

    with open_executor({**params, "executor": "local"}) as local:
        score_zoo(params, ids[:1], local)                              # warm-up: imports, first kernels
        row("local", [score_zoo(params, ids, local) for _ in range(repeats)])
    for count in workers:
        start = time.perf_counter()
        with open_executor({**params, "executor": "ray"}, cpus=count) as ray:
            started = time.perf_counter() - start
            score_zoo(params, ids[:count], ray)                        # warm-up: workers start, import, run
            warm = time.perf_counter() - start - started
            times = [score_zoo(params, ids, ray) for _ in range(repeats)]
            empty = [round_trip(ray, 20) for _ in range(repeats)]
        row(f"ray × {count}", times, **{"cluster start s": round(started, 1), "warm-up s": round(warm, 1),
                                        "empty task ms (min / median)": f"{1000 * min(empty):.1f} / "
                                                                        f"{1000 * statistics.median(empty):.1f}"})
    echo(tabulate(rows, headers="keys", tablefmt="github", missingval=""))
    return rows
