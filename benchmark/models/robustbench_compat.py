"""Make robustbench 1.1.1 (the PyPI release) import cleanly.

Two packaging problems of that release, worked around here and nowhere else:
- it imports `autoattack`, but its dependency `pyautoattack` installs that code as the module
  `pyautoattack`: alias the module (and its `state` submodule) under the old name;
- it imports `pkg_resources`, which setuptools removed in version 81: requirements.lock pins
  setuptools below 81, and the deprecation warning it prints is silenced.
(Its wheel also installs a top-level package called `tests`; pytest runs in importlib mode so
it cannot shadow the project's own tests.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from types import ModuleType


def import_robustbench() -> ModuleType:
    """Import robustbench (utils and model zoo loaded) and return the package."""
    from ..errors import NFBenchError

    if importlib.util.find_spec("pkg_resources") is None:
        raise NFBenchError("robustbench 1.1.1 imports pkg_resources, which setuptools>=81 no longer ships: "
                           "pip install 'setuptools<81' (requirements.lock pins 80.10.2)")
    try:
        importlib.import_module("autoattack")
    except ImportError:
        for name in ("", ".state", ".autoattack"):
            sys.modules.setdefault(f"autoattack{name}", importlib.import_module(f"pyautoattack{name}"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        robustbench = importlib.import_module("robustbench")
        importlib.import_module("robustbench.utils")
        importlib.import_module("robustbench.model_zoo")
    return robustbench


def zoo_entry(name: str, dataset: str, threat_model: str) -> dict:
    """RobustBench's registry entry {model: factory, gdrive_id: …} for one model."""
    from ..errors import NFBenchError, one_of

    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    datasets = {d.value: d for d in model_dicts}
    if dataset not in datasets:
        raise NFBenchError(f"robustbench: {one_of(dataset, datasets, 'dataset')}")
    threats = {t.value: t for t in model_dicts[datasets[dataset]]}
    if threat_model not in threats:
        raise NFBenchError(f"robustbench {dataset}: {one_of(threat_model, threats, 'threat model')}")
    zoo = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)]
    if name not in zoo:
        raise NFBenchError(f"robustbench {dataset}/{threat_model}: {one_of(name, zoo, 'model')}")
    return zoo[name]
