"""Model architectures, training recipes and the registry of models the benchmark can load.

`fetch` is the one way models get into the store: a published checkpoint where one applies (a
verified copy, no torch), otherwise `zoo` trains, downloads or imports them.  Models to train
are trained in parallel worker processes, or as tasks on a Ray cluster (benchmark/executor.py),
one CPU thread each (`training.TRAINING_THREADS`), so the weights do not depend on how many run
at once or on the machine's core count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import published, store


@dataclass(frozen=True)
class Wanted:
    """A model to fetch: its id, spec, store directory and whether it is an autoencoder;
    `what` starts its error messages (default `model '<id>'`); `downloads`: where downloaded
    source checkpoints (RobustBench's) are kept, by default `root`."""

    id: str
    spec: Mapping
    root: Path
    generative: bool = False
    what: str | None = None
    downloads: Path | None = None

    @property
    def label(self) -> str:
        return self.what or f"{'generative model' if self.generative else 'model'} {self.id!r}"


def fetch(wanted: list[Wanted], params: Mapping, *, progress: bool = True,
          workers: int | None = None) -> Iterator[tuple[Wanted, dict, str]]:
    """Install each wanted model; yields (wanted, manifest, why its published checkpoint was not
    used, or "") as each is done: published ones first, then the trained ones as they finish
    (in parallel: one task each on a Ray cluster with `executor: ray`, else `workers` processes,
    by default one per CPU core), then the downloaded ones."""
    to_train: list[tuple[Wanted, str]] = []
    others: list[Wanted] = []
    for w in wanted:
        if w.spec.get("source") != "local":
            others.append(w)
            continue
        manifest, why_not = published.install(w.id, w.spec, params, root=w.root, generative=w.generative,
                                              what=w.label)
        if manifest is not None:
            yield w, manifest, ""
        else:
            to_train.append((w, why_not))
    yield from _train(to_train, params, progress, workers)
    if others:
        from . import zoo

        for w in others:
            yield w, zoo.obtain(w.id, w.spec, params, root=w.root, generative=w.generative, progress=progress,
                                what=w.label, downloads=w.downloads), ""


def _train(items: list[tuple[Wanted, str]], params: Mapping, progress: bool,
           workers: int | None) -> Iterator[tuple[Wanted, dict, str]]:
    """Train local models and install each as it finishes (only this process writes the store)."""
    if not items:
        return
    from ..executor import open_executor
    from . import zoo

    def install(w: Wanted, result: tuple[bytes, dict]) -> dict:
        checkpoint, manifest = result
        return store.install(w.id, w.root, lambda dest: dest.write_bytes(checkpoint), manifest)

    with open_executor(params) as executor:
        if executor.address:                                  # a Ray cluster: one task per model
            yield from _train_on_cluster(items, params, executor, install)
            return

    workers = min(len(items), workers or os.cpu_count() or 1)
    if workers == 1:
        for w, why_not in items:
            yield w, install(w, zoo.train(w.spec, params, generative=w.generative, progress=progress)), why_not
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    # spawn: a fork of a process that has started torch's thread pools can deadlock
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool, \
            tqdm(total=len(items), desc=f"train {len(items)} models ({workers} at a time)", unit="model",
                 leave=False, disable=None if progress else True) as bar:
        futures = {pool.submit(_train_one, dict(w.spec), dict(params), w.generative): (w, why_not)
                   for w, why_not in items}
        for future in as_completed(futures):
            w, why_not = futures[future]
            manifest = install(w, future.result())
            bar.update()
            yield w, manifest, why_not


def _train_on_cluster(items: list[tuple[Wanted, str]], params: Mapping, executor,
                      install) -> Iterator[tuple[Wanted, dict, str]]:
    """One executor task per model, the dataset sent once through the object store; a failure
    stops the stage after the models already trained are installed."""
    from ..data import load_suite_dataset
    from ..errors import NFBenchError
    from ..executor import Task

    data = executor.share(load_suite_dataset(params["data"]))
    by_id = {w.id: (w, why_not) for w, why_not in items}
    tasks = [Task(w.id, lambda w=w: (dict(w.spec), dict(params), w.generative, data)) for w, _ in items]
    for outcome in executor.run(_train_one, tasks, f"train {len(items)} models"):
        if outcome.error is not None:
            raise NFBenchError(outcome.error)
        w, why_not = by_id[outcome.name]
        yield w, install(w, outcome.value), why_not


def _train_one(spec: dict, params: dict, generative: bool, data=None) -> tuple[bytes, dict]:
    """A worker's job: train one model (no progress bar of its own)."""
    from . import zoo

    return zoo.train(spec, params, generative=generative, progress=False, data=data)


__all__ = ["Wanted", "fetch", "published", "store"]
