"""The executor on a real local Ray cluster (2 CPUs, no mocks): sharded frames, a rescore with a
broken card, an interrupted rescore resumed, a model trained as a task, an unreachable cluster;
and the local backend without Ray at all.

Every test runs on the leaderboard tests' miniature suite (tests/test_leaderboard.py); the
cluster is started once for the module by the executor itself, as `executor: ray` without
RAY_ADDRESS does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from benchmark.config import load_params, validate_params
from benchmark.errors import NFBenchError
from benchmark.executor import open_executor
from benchmark.pipeline import point_shards
from benchmark.stages import frames, leaderboard
from benchmark.storage import read_json
from tests import test_leaderboard as board
from tests.test_leaderboard import ROOT, TESTS, write_card

suite, project = board.suite, board.project          # its miniature suite's fixtures

CHUNK = 12          # 6 frame vectors: 2 points a chunk, so the suite's 8 points make 2 shards of 2 chunks


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs, connected to for the module; yields its address."""
    pytest.importorskip("ray")
    with open_executor({"executor": "ray"}, cpus=2) as executor:
        assert executor.workers == 2 and executor.resources == {"num_cpus": 1}
        yield executor.address


def ray_params(executor: str = "ray", **frames_settings) -> dict:
    params = load_params()
    params["frames"] = {**params["frames"], **frames_settings}
    return {**params, "executor": executor}


def driver_env(**extra: str) -> dict:
    """The environment of an nfbench driver run as a subprocess in the test's checkout."""
    path = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.mark.slow
def test_sharded_frames_are_the_local_frames_bit_for_bit(cluster, project):
    params = ray_params(chunk_size=CHUNK)
    assert len(point_shards(8, 6, CHUNK, 2)) == 2
    frames.run({**params, "executor": "local"}, track=False, out=project / "local", plots=project / "local-plots")
    frames.run(params, track=False, out=project / "ray", plots=project / "ray-plots")
    for name in ("local", "ray"):
        assert [p.name for p in (project / name).iterdir()] == ["base-std.safetensors"]
    for local, ray in (("local", "ray"), ("local-plots", "ray-plots")):
        [path] = (project / local).iterdir()
        assert path.read_bytes() == (project / ray / path.name).read_bytes()


@pytest.mark.slow
def test_a_rescore_with_a_broken_card_writes_the_good_entries_and_names_the_field(cluster, project, capsys):
    write_card(project, "good-a", seed=1)
    write_card(project, "good-b", seed=2)
    write_card(project, "broken", seed=3, model={"sha256": "0" * 64})
    with pytest.raises(leaderboard.NFBenchError) as failed:
        leaderboard.rescore(ray_params())
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("1 of 3 cards not scored: submissions/broken.yaml: model.sha256: sha256 of ")
    entries = project / "leaderboard" / "embedded"
    assert sorted(p.name for p in entries.glob("*.json")) == ["good-a.json", "good-b.json"]
    assert not list(entries.glob(".*"))                                   # no half-written file
    markdown = (project / "reports" / "leaderboard.md").read_text()
    assert "Tiny good-a" in markdown and "Tiny good-b" in markdown and "broken" not in markdown
    assert not (project / "models" / "submissions" / "broken").exists()
    # the same cards scored here, without Ray, give the same entries (but their dates)
    local = ray_params("local")
    cards = [leaderboard.load_card(f"submissions/good-{s}.yaml", local) for s in "ab"]
    for card, entry, error in leaderboard.score_cards(local, cards, project / "models" / "submissions"):
        written = read_json(entries / f"{card.id}.json")
        for e in (written, entry):
            e["provenance"].pop("date")
        assert error is None and written == entry


@pytest.mark.slow
def test_an_interrupted_rescore_finishes_only_the_missing_entries(cluster, project):
    ids = [f"slow-{i}" for i in range(4)]
    for i, card_id in enumerate(ids):
        write_card(project, card_id, factory="slow", seed=i)
    entries = project / "leaderboard" / "embedded"
    driver = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "leaderboard", "rescore"], cwd=project,
                              env=driver_env(RAY_ADDRESS=cluster), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(entries.glob("*.json")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    stderr = driver.communicate()[1].decode()
    done = {p.stem: p.read_bytes() for p in entries.glob("*.json")}
    assert driver.returncode == -signal.SIGKILL, stderr
    assert 1 <= len(done) < len(ids), f"the driver was killed with {len(done)} entries written; {stderr}"
    rescored = leaderboard.rescore(ray_params())
    assert sorted(e["id"] for e in rescored) == sorted(set(ids) - set(done))
    assert all((entries / f"{card_id}.json").read_bytes() == data for card_id, data in done.items())
    assert sorted(p.stem for p in entries.glob("*.json")) == ids
    assert leaderboard.rescore(ray_params()) == []                   # everything current: nothing redone


def test_an_unreachable_ray_address_fails_in_seconds_naming_it(project):
    pytest.importorskip("ray")
    write_card(project, "far-away", seed=1)
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "benchmark.cli", "leaderboard", "rescore"], cwd=project,
                         env=driver_env(RAY_ADDRESS="127.0.0.1:9"), capture_output=True, text=True, timeout=60)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0].startswith("nfbench: error: RAY_ADDRESS '127.0.0.1:9': no Ray cluster answers there")
    assert time.monotonic() - start < 20
    assert not list((project / "leaderboard" / "embedded").glob("*.json"))


def test_executor_local_never_imports_ray(project):
    """`executor: local` is the loop nfbench always ran: with Ray unimportable it computes the same frames."""
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["executor"] == load_params()["executor"] == "local"
    code = ("import sys; sys.modules['ray'] = None; from benchmark.cli import main; "
            "code = main(['frames', '--no-track', '--out', 'frames-without-ray']); "
            "assert 'ray' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]; sys.exit(code)")
    env = {k: v for k, v in driver_env().items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert (project / "frames-without-ray" / "base-std.safetensors").read_bytes() == \
        (project / "frames" / "base-std.safetensors").read_bytes()


@pytest.mark.slow
def test_a_model_trained_as_a_ray_task_is_the_model_trained_here(cluster, project):
    from benchmark.config import validate_model
    from benchmark.models import Wanted, fetch

    spec = validate_model("quick", {"role": "standard", "source": "local", "recipe": "standard", "epochs": 1,
                                    "seed": 5}, "quick")
    trained = {}
    for executor in ("local", "ray"):
        root = project / f"trained-{executor}"
        [(_, manifest, _)] = fetch([Wanted("quick", spec, root)], ray_params(executor), progress=False)
        [path] = (root / "quick").glob("*.safetensors")
        trained[executor] = path.read_bytes()
    assert manifest["source"] == "local" and trained["local"] == trained["ray"]


def test_a_bad_executor_names_the_key_and_its_values():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    with pytest.raises(NFBenchError, match=r"^params.yaml: executor: must be local \(this process\) or ray "
                                           r"\(a Ray cluster\), got 'rey'$"):
        validate_params({**raw, "executor": "rey"})


def test_executor_ray_without_ray_installed_says_so_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)                   # `import ray` fails as if not installed
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(NFBenchError, match=r"^executor: ray \(or RAY_ADDRESS set\) needs Ray installed"):
        with open_executor({"executor": "ray"}):
            pass
