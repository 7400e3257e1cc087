"""dvc.yaml and the stage commands cannot drift: every stage's cmd passes each file the stage reads
or writes, and those are exactly its declared data deps and outs.

A stage command takes its paths as `--NAME PATH` options (`cli._stage_paths`, defaults the
pipeline's places); an option whose help says "read" must name a declared dep, one that says
"written" a declared out (outs, metrics or plots).  Code deps (benchmark/…) are not passed.
"""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from benchmark import cli

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# Deps a stage depends on without reading, each with why.
TRIGGERS = {("fetch", "models/.sources/${key}.json"): "a replaced source checkpoint changes it: refetch",
            ("fetch_generative", "models/.sources/${key}.json"): "a replaced source checkpoint changes it: refetch"}


def _stage(name: str) -> dict:
    return STAGES[name].get("do", STAGES[name])


def _paths(entries) -> set[str]:
    """The paths of a deps/outs/metrics/plots list (an entry is a path or {path: options})."""
    return {e if isinstance(e, str) else next(iter(e)) for e in entries or []}


def _declared(stage: dict) -> tuple[set[str], set[str]]:
    deps = {p for p in _paths(stage.get("deps")) if not p.startswith("benchmark/")}
    outs = set().union(*(_paths(stage.get(k)) for k in ("outs", "metrics", "plots")))
    return deps, outs


def _passed(cmd: str) -> tuple[str, dict[str, str]]:
    """The subcommand of a stage's cmd and its --NAME PATH options (NAME as the parser's dest)."""
    words = shlex.split(cmd)
    assert words[0] == "nfbench", cmd
    command, options = words[1], {}
    known = cli._stage_paths()[command]
    for i, word in enumerate(words):
        if word.startswith("--"):
            name = word[2:].replace("-", "_")
            assert name in known, f"{cmd!r}: {word} is not a path option of `nfbench {command}`"
            options[name] = words[i + 1]
    return command, options


@pytest.mark.parametrize("name", sorted(STAGES))
def test_the_cmd_passes_exactly_the_declared_data_deps_and_outs(name):
    stage = _stage(name)
    command, options = _passed(stage["cmd"])
    deps, outs = _declared(stage)
    help_of = cli._stage_paths()[command]
    for option, path in options.items():
        what = help_of[option][1]
        if " read" in what:
            assert path in deps, f"{name}: --{option} {path} is read but not among the deps {sorted(deps)}"
        else:
            assert " written" in what, f"`nfbench {command}` --{option}: say whether it is read or written"
            assert path in outs, f"{name}: --{option} {path} is written but not among the outs {sorted(outs)}"
    missing = {p for p in deps | outs if p not in options.values() and (name, p) not in TRIGGERS}
    assert not missing, f"{name}: declared but not passed on its cmd: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_cmd_parses(name):
    """The cmd as written is a valid command line (interpolations stand in for values)."""
    args = cli.parser().parse_args(shlex.split(_stage(name)["cmd"])[1:])
    assert args.func.__name__ == f"cmd_{args.command}"


def test_every_stage_command_takes_every_path_option_dvc_yaml_could_pass():
    """Each DVC stage's command has path options, and every path option is used by some stage."""
    commands = {shlex.split(_stage(name)["cmd"])[1] for name in STAGES}
    assert commands == set(cli._stage_paths())
    used = set()
    for name in STAGES:
        command, options = _passed(_stage(name)["cmd"])
        used |= {(command, option) for option in options}
    every = {(c, o) for c, options in cli._stage_paths().items() for o in options}
    assert used == every, f"path options no stage passes: {sorted(every - used)}"


@pytest.fixture
def params():
    from benchmark.config import load_params

    return load_params(ROOT / "params.yaml")


def test_the_metrics_stage_names_a_missing_input(params, tmp_path):
    """It reads the frame files and metrics/models.json (its declared deps), and says which is missing."""
    from benchmark.errors import NFBenchError
    from benchmark.stages import metrics

    paths = {"frames": tmp_path / "frames", "accuracies": tmp_path / "models.json", "out": tmp_path / "points",
             "summary": tmp_path / "summary.json"}
    first = next(iter(params["models"]))
    frame = tmp_path / "frames" / f"{first}.safetensors"
    with pytest.raises(NFBenchError, match="^" + re.escape(f"{frame} does not exist; run `nfbench frames`")):
        metrics.run(params, **paths)
    (tmp_path / "frames").mkdir()
    frame.touch()
    missing = f"{tmp_path / 'models.json'} does not exist; run `nfbench evaluate`"
    with pytest.raises(NFBenchError, match="^" + re.escape(missing)):
        metrics.run(params, **paths)
    assert not (tmp_path / "points").exists() and not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_code_dependency_exists(name):
    """A module moved or renamed without dvc.yaml fails here, not in the first `dvc repro`."""
    code = [p for p in _paths(_stage(name).get("deps")) if p.startswith("benchmark/")]
    assert code and [p for p in code if not (ROOT / p).exists()] == []
