"""Where per-model and per-shard work runs: in this process, or as tasks on a Ray cluster.

One interface, two backends, chosen by params.yaml's `executor` (local | ray) or the standard
RAY_ADDRESS, which selects ray:
  local  today's behaviour: each task runs here, one after another; Ray is never imported.
  ray    each task is a Ray task on the cluster at RAY_ADDRESS, or on a local cluster started
         here (its dashboard address is printed); a task asks for one GPU where the cluster has
         GPUs, else one CPU, and computes with the driver's torch thread count (the same bits).
A task's inputs travel through Ray's object store, as tensors and bytes, never as paths: workers
need the pinned environment but no checkout and no shared filesystem (this package's code and a
submitted model's own module travel with the job).  Results come back to the driver, which alone
writes files (atomically, benchmark/storage.py), so DVC's outputs and the leaderboard's entries
are written exactly as without Ray.

A task is prepared on the driver (reading files, fetching a model) and run where the backend
puts it.  Outcomes come back as tasks finish; a task whose preparation or run raises NFBenchError
comes back as its one-line error, so one bad task neither stops nor corrupts the others.  One
tqdm bar counts the tasks and names the failed ones.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NFBenchError

CONNECT_TIMEOUT_S = 5.0        # an address that does not answer within this is reported, not waited on


def resolve_device(setting: str):
    """The torch.device of params.yaml `device` (auto: CUDA when present): where this process, or a
    task on a worker, computes."""
    import torch

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise NFBenchError(f"params.yaml: device: {setting!r} asked for, but CUDA is not available here; "
                           f"use auto or cpu")
    return torch.device(setting)


@dataclass(frozen=True)
class Task:
    """One unit of work: its name (a card id, a range of points) and how the driver prepares its
    arguments for the executor's function."""
    name: str
    prepare: Callable[[], tuple]


@dataclass(frozen=True)
class Outcome:
    """A finished task: its value, or the one-line error that stopped it."""
    name: str
    value: Any = None
    error: str | None = None


class LocalExecutor:
    """Each task in this process, one after another: exactly what nfbench did before executors."""

    workers = 1
    address = None          # no cluster

    def share(self, obj: Any) -> Any:
        return obj

    def run(self, fn: Callable, tasks: list[Task], desc: str) -> Iterator[Outcome]:
        with _Progress(tasks, desc) as progress:
            for task in tasks:
                try:
                    outcome = Outcome(task.name, fn(*task.prepare()))
                except NFBenchError as exc:
                    outcome = Outcome(task.name, error=str(exc))
                progress.done(outcome)
                yield outcome


class RayExecutor:
    """Tasks on a Ray cluster (already connected to by `open_executor`), as many at once as it has
    GPUs, or CPUs when it has none."""

    def __init__(self, address: str):
        import ray

        self.address = address                      # the cluster's GCS: what RAY_ADDRESS names
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        self.resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        self.workers = gpus or cpus

    def share(self, obj: Any) -> Any:
        """Put `obj` into the object store once, for every task that reads it (with the code of
        classes from modules the workers cannot import: a submitted model's own module)."""
        import ray

        _ship_code_of(obj)
        return ray.put(obj)

    def run(self, fn: Callable, tasks: list[Task], desc: str) -> Iterator[Outcome]:
        import ray

        remote = ray.remote(_with_threads).options(**self.resources)
        threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
        with _Progress(tasks, desc) as progress:
            pending, failed = {}, []
            for task in tasks:
                try:
                    args = task.prepare()
                except NFBenchError as exc:
                    failed.append(Outcome(task.name, error=str(exc)))
                    continue
                for arg in args:
                    _ship_code_of(arg)
                pending[remote.remote(fn, threads, *args)] = task.name
            for outcome in failed:
                progress.done(outcome)
                yield outcome
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                name = pending.pop(ref)
                try:
                    outcome = Outcome(name, ray.get(ref))
                except ray.exceptions.RayTaskError as exc:
                    if not isinstance(exc.cause, NFBenchError):
                        raise
                    outcome = Outcome(name, error=str(exc.cause))
                except ray.exceptions.RayError as exc:      # a worker or node died under the task
                    outcome = Outcome(name, error=f"{name}: its Ray worker failed ({str(exc).splitlines()[0]})")
                progress.done(outcome)
                yield outcome


def _with_threads(fn: Callable, threads: int | None, *args) -> Any:
    """A Ray task: `fn(*args)` with the driver's torch CPU thread count (Ray gives a task as many as
    the CPUs it asked for), since a CPU matmul's float sums depend on how many threads split them:
    a task's result is then the bits the driver would have computed."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


Executor = LocalExecutor | RayExecutor
LOCAL = LocalExecutor()


@contextlib.contextmanager
def open_executor(params: Mapping, *, cpus: int | None = None) -> Iterator[Executor]:
    """The executor params.yaml's `executor` (or RAY_ADDRESS) asks for, connected for the block.

    ray without RAY_ADDRESS starts a local cluster (`cpus` CPUs, by default all), stopped after
    the block; a cluster this process is already connected to is used as it is and kept.
    """
    address = os.environ.get("RAY_ADDRESS") or None
    if params.get("executor", "local") == "local" and address is None:
        yield LOCAL
        return
    try:
        import ray
    except ImportError:
        raise NFBenchError("executor: ray (or RAY_ADDRESS set) needs Ray installed here and on the workers "
                           "(pip install -r requirements.lock pins ray[default]); or executor: local") from None
    if ray.is_initialized():
        yield RayExecutor(ray.get_runtime_context().gcs_address)
        return
    if address is not None:
        _check_reachable(address)
    context = ray.init(address=address, num_cpus=None if address else cpus, runtime_env=_runtime_env(),
                       include_dashboard=None if address else True, logging_level="WARNING",
                       log_to_driver=False)
    try:
        if address is None:
            print(f"[executor] started a local Ray cluster ({int(ray.cluster_resources().get('CPU', 0))} CPUs); "
                  f"dashboard http://{context.dashboard_url}", file=sys.stderr)
        yield RayExecutor(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in seconds, naming the address, where Ray itself would retry for a minute."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise NFBenchError(f"RAY_ADDRESS {address!r}: expected HOST:PORT (a cluster's GCS), "
                           f"ray://HOST:PORT (Ray Client) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise NFBenchError(f"RAY_ADDRESS {address!r}: no Ray cluster answers there ({exc}); start one "
                           f"(ray start --head) or unset RAY_ADDRESS to run here") from None


def _runtime_env() -> dict:
    """The job's code: this package as the driver has it, so workers need no checkout of their own."""
    import benchmark

    return {"py_modules": [benchmark]}


_INSTALLED = tuple(str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib", "stdlib"))


def _ship_code_of(obj: Any) -> None:
    """Serialize by value the modules defining `obj`'s classes (for a torch module, its
    submodules' too) that are neither installed packages nor this one: a submitted model's own
    module (submissions/<module>.py) exists on the driver only."""
    from ray import cloudpickle

    modules = getattr(obj, "modules", None)
    objects = list(modules()) if callable(modules) and not isinstance(obj, type) else [obj]
    for item in objects:
        module = sys.modules.get(type(item).__module__)
        path = getattr(module, "__file__", None)
        if (module is None or path is None or module.__name__.split(".")[0] == "benchmark"
                or str(Path(path).resolve()).startswith(_INSTALLED)):
            continue
        cloudpickle.register_pickle_by_value(module)


class _Progress:
    """One bar over the tasks (shown for more than one), its postfix naming the failed ones."""

    def __init__(self, tasks: list[Task], desc: str):
        from tqdm import tqdm

        self.failed: list[str] = []
        self.bar = tqdm(total=len(tasks), desc=desc, unit="task", leave=False,
                        disable=None if len(tasks) > 1 else True)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def done(self, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.failed.append(outcome.name)
            self.bar.set_postfix_str(f"failed: {', '.join(self.failed)}")
        self.bar.update()


def run_all(executor: Executor, fn: Callable, tasks: Iterable[Task], desc: str) -> list[Any]:
    """Every task's value in task order; the first failure (after all ran) as its NFBenchError."""
    tasks = list(tasks)
    outcomes = {o.name: o for o in executor.run(fn, tasks, desc)}
    for task in tasks:
        if outcomes[task.name].error is not None:
            raise NFBenchError(outcomes[task.name].error)
    return [outcomes[t.name].value for t in tasks]
